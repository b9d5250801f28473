//! The SCRAM-SHA-256 verifier PostgreSQL stores in `pg_authid.rolpassword` (RFC 5802,
//! RFC 7677), computed client-side so the plaintext never reaches the server.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};

/// The iteration count of the verifiers of the passwords Kairos generates, unless a target
/// sets `scram_iterations`: PostgreSQL's own default, and the least that every client
/// accepts. Some refuse to log in below it (pgjdbc releases that bundle the 2.x SCRAM
/// client, for one: "iteration must be >= 4096"), since RFC 7677 asks servers for at least
/// this many.
///
/// The count costs CPU three times per account, and buys nothing for Kairos's passwords:
/// - Kairos derives the verifier (about a millisecond here at 4,096).
/// - PostgreSQL, at `CREATE ROLE … PASSWORD '<verifier>'`, checks that the password is not
///   empty by verifying the empty string against the verifier: the same derivation again,
///   on the database server, inside Kairos's serialised provisioning transaction (measured
///   on PostgreSQL 15: about 4.5 ms a role at 4,096 iterations, 0.48 ms at 256, 0.12 ms at
///   1).
/// - The workload's client derives it at every login.
///
/// Iterations slow the guessing of a *chosen*, low-entropy password from a stolen
/// verifier. Kairos's passwords are 192 random bits, out of reach of any number of
/// guesses at any count, so a target whose clients accept it may set `scram_iterations =
/// 1` (libpq and so psql, sqlx and node-postgres do) and provision several times faster.
pub const SCRAM_ITERATIONS: NonZeroU32 = match NonZeroU32::new(4096) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// The salt length PostgreSQL itself uses.
pub const SCRAM_SALT_LEN: usize = 16;

/// `SCRAM-SHA-256$<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`, the format of
/// `pg_authid.rolpassword`, which `CREATE ROLE … PASSWORD '<verifier>'` stores as is.
///
/// - SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
/// - ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = SHA-256(ClientKey)
/// - ServerKey = HMAC(SaltedPassword, "Server Key")
///
/// The password is used byte for byte, without SASLprep. SASLprep leaves printable ASCII
/// unchanged, so for such passwords (what Kairos generates; the connector refuses others)
/// the verifier matches what libpq and sqlx compute when they log in.
pub fn scram_sha256_verifier(password: &str, salt: &[u8], iterations: NonZeroU32) -> String {
    let mut salted = [0u8; digest::SHA256_OUTPUT_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key.as_ref()),
        B64.encode(server_key.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// The RFC 7677 section 3 exchange (user "user", password "pencil"): the verifier's
    /// ServerKey must produce the server signature `v=` of the RFC, and its StoredKey must
    /// accept the RFC's client proof `p=` (StoredKey = SHA-256(proof XOR HMAC(StoredKey, AuthMessage))).
    #[test]
    fn rfc7677_exchange() {
        let salt = b64("W22ZaJ0SNY7soEsUEjb6gQ==");
        let verifier = scram_sha256_verifier("pencil", &salt, SCRAM_ITERATIONS);

        let rest = verifier.strip_prefix("SCRAM-SHA-256$4096:").unwrap();
        let (salt_b64, keys) = rest.split_once('$').unwrap();
        assert_eq!(salt_b64, "W22ZaJ0SNY7soEsUEjb6gQ==");
        let (stored_b64, server_b64) = keys.split_once(':').unwrap();
        let (stored_key, server_key) = (b64(stored_b64), b64(server_b64));

        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

        let server_sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &server_key),
            auth_message.as_bytes(),
        );
        assert_eq!(
            B64.encode(server_sig.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );

        let client_sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &stored_key),
            auth_message.as_bytes(),
        );
        let proof = b64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_sig.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            digest::digest(&digest::SHA256, &client_key).as_ref(),
            stored_key.as_slice()
        );
    }

    /// A verifier PostgreSQL 15 computed itself (`SET password_encryption = 'scram-sha-256';
    /// CREATE ROLE … PASSWORD 'correct horse battery staple'`, read from `pg_authid`).
    #[test]
    fn matches_postgresql() {
        let expected = POSTGRES_VECTOR;
        let salt_b64 = expected
            .strip_prefix("SCRAM-SHA-256$4096:")
            .and_then(|r| r.split_once('$'))
            .map(|(s, _)| s)
            .unwrap();
        assert_eq!(
            scram_sha256_verifier(
                "correct horse battery staple",
                &b64(salt_b64),
                SCRAM_ITERATIONS
            ),
            expected
        );
    }

    const POSTGRES_VECTOR: &str = "SCRAM-SHA-256$4096:jXNW5lpZj6wlI4XTdwjkjA==$1+hU21kxijYJn5i3S1uTn0LtXNm81NlBuwvfvP5SegM=:9uEd+wheePgDsuwl2Q9itR/ClnKoVmc/SXATcR1sUi8=";
}
