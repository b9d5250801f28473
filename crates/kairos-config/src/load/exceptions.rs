//! `[[exception]]`: standing exceptions, the static secrets that cannot be removed yet.
//!
//! The catalog holds a **reference** to where each secret lives (`vault:kv/legacy/billing`),
//! never the secret. [`secret_ref_problem`] decides what is a reference: see its rules.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kairos_domain::{ExceptionName, IdentityName, Period, TeamName, Timestamp};

use super::{Cx, Item, Node, Table, item, reference, text, unique};
use crate::catalog::Exception;

const EXCEPTION_KEYS: [&str; 11] = [
    "name",
    "identity",
    "owner",
    "system",
    "secret_ref",
    "reason",
    "rotate_every",
    "ends",
    "allowed_sources",
    "scope_note",
    "recertify_every",
];

/// Reads every `[[exception]]`, checks names are unique and references are declared.
pub(super) fn read_all(
    cx: &mut Cx<'_>,
    items: &[(String, &Node)],
    identities: &BTreeSet<String>,
    teams: &BTreeSet<String>,
) -> Vec<Item<Exception>> {
    let read: Vec<Item<Exception>> = items
        .iter()
        .filter_map(|(path, node)| read_exception(cx, path, node))
        .collect();
    let read = unique(cx, "exception", read, |e| e.name.to_string());
    for item in &read {
        reference(
            cx,
            item,
            "identity",
            "identity",
            item.value.identity.as_str(),
            identities,
        );
        reference(cx, item, "owner", "team", item.value.owner.as_str(), teams);
    }
    read
}

fn read_exception(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<Exception>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", ExceptionName::parse);
    let identity = t.req(cx, "identity", IdentityName::parse);
    let owner = t.req(cx, "owner", TeamName::parse);
    let system = t.req(cx, "system", text("system", 200));
    let secret_ref = t.req(cx, "secret_ref", secret_reference);
    let reason = t.req(cx, "reason", text("reason", 1000));
    let rotate_every = t.req(cx, "rotate_every", Period::parse);
    let ends = t.req(cx, "ends", end_date);
    let allowed_sources = t.list(cx, "allowed_sources", cidr);
    let scope_note = t.opt(cx, "scope_note", text("scope_note", 1000));
    let recertify_every = t.opt(cx, "recertify_every", Period::parse);
    // Unknown keys are reported (an inline `secret` or `password` as a secret, without its
    // value), but the item is still cross-checked: any error refuses the catalog anyway.
    t.finish(cx, &EXCEPTION_KEYS);
    let (
        Ok(name),
        Ok(identity),
        Ok(owner),
        Ok(system),
        Ok(secret_ref),
        Ok(reason),
        Ok(rotate_every),
        Ok(ends),
        Ok(allowed_sources),
        Ok(scope_note),
        Ok(recertify_every),
    ) = (
        name,
        identity,
        owner,
        system,
        secret_ref,
        reason,
        rotate_every,
        ends,
        allowed_sources,
        scope_note,
        recertify_every,
    )
    else {
        return None;
    };
    Some(item(
        &t,
        &EXCEPTION_KEYS,
        Exception {
            name: name.value,
            identity: identity.value,
            owner: owner.value,
            system: system.value,
            secret_ref: secret_ref.value,
            reason: reason.value,
            rotate_every: rotate_every.value,
            ends: ends.value,
            allowed_sources: allowed_sources
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.value)
                .collect(),
            scope_note: scope_note.map(|n| n.value),
            recertify_every: recertify_every.map(|p| p.value),
        },
    ))
}

/// `ends`: RFC 3339 (`2027-03-31T18:00:00Z`) or a date (`2027-03-31`, which means the
/// start of that day, 00:00 UTC).
fn end_date(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    let is_date = t.len() == 10
        && t.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let parsed = if is_date {
        Timestamp::parse_rfc3339(&format!("{t}T00:00:00Z"))
    } else if t.contains('T') || t.contains(' ') {
        Timestamp::parse_rfc3339(t)
    } else {
        None
    };
    parsed.ok_or_else(|| {
        format!(
            "ends {:?} is not a date; write YYYY-MM-DD (the start of that day, UTC) or an RFC 3339 time such as 2027-03-31T18:00:00Z",
            t.chars().take(40).collect::<String>()
        )
    })
}

/// An allowed source: a CIDR (`10.20.0.0/16`, `2001:db8::/32`) or one address (taken as
/// `/32` or `/128`). Written back in its canonical form.
fn cidr(s: &str) -> Result<String, String> {
    let shown = || s.chars().take(60).collect::<String>();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!(
            "allowed source {:?} is not a CIDR; write e.g. \"10.20.0.0/16\", \"2001:db8::/32\" or one address",
            shown()
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix {
        None => max,
        Some(p) => p.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            format!(
                "allowed source {:?}: the prefix length must be 0-{max}",
                shown()
            )
        })?,
    };
    let masked = mask(ip, prefix);
    if masked != ip {
        return Err(format!(
            "allowed source {:?} has host bits set after /{prefix}; did you mean \"{masked}/{prefix}\"?",
            shown()
        ));
    }
    Ok(format!("{ip}/{prefix}"))
}

fn mask(ip: IpAddr, prefix: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The secret stores a reference may point into, by scheme.
pub(crate) const SECRET_REF_SCHEMES: [&str; 14] = [
    "vault",
    "openbao",
    "aws-sm",
    "aws-ssm",
    "gcp-sm",
    "azure-kv",
    "k8s",
    "1password",
    "infisical",
    "doppler",
    "cyberark",
    "sops",
    "env",
    "file",
];

fn secret_reference(s: &str) -> Result<String, String> {
    match secret_ref_problem(s) {
        // Never echo the value: it may be the very secret.
        Some(why) => Err(format!(
            "secret_ref must say where the secret lives, never hold it: this value {why}. Write `SCHEME:LOCATION` with a scheme among {}, e.g. \"vault:kv/legacy/billing\"; if a secret was written here, rotate it",
            SECRET_REF_SCHEMES.join(", ")
        )),
        None => Ok(s.to_owned()),
    }
}

/// Why `s` is not a reference to a secret, if it is not. The rules, in order:
///
/// 1. one word of at most 512 characters (no spaces, line breaks or control characters:
///    PEM blocks and pasted files have them);
/// 2. `SCHEME:LOCATION` with a known scheme ([`SECRET_REF_SCHEMES`]) and a location;
/// 3. no password in a URL (`//user:password@host`) and no query parameter named like a
///    credential (`password=`, `token=`, `secret=`, `key=`, `sig=`, …);
/// 4. nothing in a well-known secret format: PEM headers, AWS access key ids, GitHub,
///    GitLab, Slack, Stripe, OpenAI and Google API keys, JWTs, Kairos API tokens;
/// 5. nothing that looks random: a run of 20 or more letters and digits that mixes
///    upper case, lower case and digits and changes between them often (at least one
///    pair in three), or a location whose letters and digits (24 or more) change class
///    at nearly every other character (at least 45% of neighbouring pairs). Names,
///    paths and ids (`kv/legacy/billing-db`, `BillingDatabase`, a UUID, an AWS ARN) pass.
pub(crate) fn secret_ref_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.chars().count() > 512 {
        return Some("is longer than 512 characters");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains spaces, line breaks or control characters");
    }
    let Some((scheme, location)) = s.split_once(':') else {
        return Some("has no `SCHEME:` prefix");
    };
    if !SECRET_REF_SCHEMES.contains(&scheme) {
        return Some("does not start with a known scheme");
    }
    if location.is_empty() {
        return Some("has no location after the scheme");
    }
    if let Some(rest) = location.strip_prefix("//") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        {
            return Some("carries a password in its URL");
        }
    }
    if let Some((_, query)) = location.split_once('?') {
        let credential_param = query.split(['&', ';']).any(|pair| {
            let name = pair
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            [
                "password",
                "passwd",
                "pwd",
                "pass",
                "secret",
                "token",
                "key",
                "apikey",
                "api_key",
                "sig",
                "signature",
                "auth",
                "credential",
                "credentials",
            ]
            .iter()
            .any(|w| {
                name == *w || name.ends_with(&format!("_{w}")) || name.ends_with(&format!("-{w}"))
            })
        });
        if credential_param {
            return Some("has a query parameter named like a credential");
        }
    }
    if known_secret_format(location) {
        return Some("is in the format of a well-known kind of secret");
    }
    if looks_random(location) {
        return Some("looks like random key material rather than a path or a name");
    }
    None
}

/// Prefixes of well-known secret formats, anywhere in the text.
fn known_secret_format(s: &str) -> bool {
    const MARKERS: [&str; 17] = [
        "-----BEGIN",
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "xoxr-",
        "sk_live_",
        "rk_live_",
        "sk-proj-",
        "kairos_pat_",
        "AIza",
    ];
    if MARKERS.iter().any(|m| s.contains(m)) {
        return true;
    }
    // A JWT: three base64url parts, the first a JSON header (`eyJ`).
    if s.split(['/', ':', '#', '?', '&', '='])
        .any(|part| part.starts_with("eyJ") && part.split('.').count() == 3)
    {
        return true;
    }
    // AWS access key ids: AKIA/ASIA and 16 upper-case letters or digits.
    let bytes = s.as_bytes();
    bytes.windows(20).any(|w| {
        (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
}

fn class(c: char) -> Option<Class> {
    if c.is_ascii_lowercase() {
        Some(Class::Lower)
    } else if c.is_ascii_uppercase() {
        Some(Class::Upper)
    } else if c.is_ascii_digit() {
        Some(Class::Digit)
    } else {
        None
    }
}

/// Class changes between neighbouring characters of one run, and the run's pairs.
fn changes(run: &[Class]) -> (usize, usize) {
    let pairs = run.len().saturating_sub(1);
    let changed = run.windows(2).filter(|w| w[0] != w[1]).count();
    (changed, pairs)
}

fn looks_random(s: &str) -> bool {
    let mut runs: Vec<Vec<Class>> = vec![Vec::new()];
    for c in s.chars() {
        match class(c) {
            Some(k) => {
                if let Some(run) = runs.last_mut() {
                    run.push(k);
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    let one_run = runs.iter().any(|run| {
        let (changed, pairs) = changes(run);
        run.len() >= 20
            && [Class::Lower, Class::Upper, Class::Digit]
                .iter()
                .all(|k| run.contains(k))
            && changed * 3 >= pairs
    });
    let (changed, pairs, letters) = runs.iter().fold((0, 0, 0), |(c, p, l), run| {
        let (rc, rp) = changes(run);
        (c + rc, p + rp, l + run.len())
    });
    let whole = letters >= 24 && pairs > 0 && changed * 100 >= pairs * 45;
    one_run || whole
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str, ok: bool) {
        let got = secret_ref_problem(s);
        assert_eq!(got.is_none(), ok, "{s:?}: {got:?}");
    }

    #[test]
    fn references_pass() {
        for s in [
            "vault:kv/legacy/billing",
            "vault:kv/data/payments/legacy-billing-db#password",
            "aws-sm:arn:aws:secretsmanager:eu-west-1:123456789012:secret:billing-AbCdEf",
            "aws-ssm:/prod/billing/db-password",
            "gcp-sm:projects/acme-prod/secrets/billing-db/versions/latest",
            "azure-kv:https://acme-prod.vault.azure.net/secrets/BillingDatabasePassword",
            "k8s:payments/legacy-billing#password",
            "1password:op://Production/billing-db/password",
            "1password:op://Production/ugrkd5ldopp3cuhc4qnv5wwlpe/password",
            "vault:kv/legacy/0f8fad5b-d9cb-469f-a165-70867728950e",
            "env:LEGACY_BILLING_PASSWORD",
            "file:/run/secrets/legacy-billing",
            "aws-sm:billing?version-stage=AWSCURRENT",
        ] {
            reference(s, true);
        }
    }

    #[test]
    fn secret_values_and_malformed_references_are_refused() {
        for s in [
            "",
            "hunter2",
            "vault kv/legacy",
            "vault:",
            "password:kv/legacy",
            "vault:-----BEGIN PRIVATE KEY-----",
            "vault:-----BEGIN",
            "vault://admin:s3cret@vault.internal/kv/legacy",
            "azure-kv:https://x.blob.core.windows.net/c?sv=2020&sig=abcdef",
            "vault:kv/legacy?token=abc",
            "aws-sm:AKIAIOSFODNN7EXAMPLE",
            "env:ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "vault:xoxb-1234-5678-abcdef",
            "vault:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "vault:kairos_pat_abc",
            "vault:Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRg",
            "aws-sm:wJalrXUtnFEMI/K7MDENG/bPxRfiCY8zQ2vLp4Tn",
            "vault:9fT2kQ7xW4mZ1pL8vB3nR6cY0hJ5gD2s",
        ] {
            reference(s, false);
        }
    }

    #[test]
    fn a_refusal_never_echoes_the_value() {
        let err = secret_reference("vault:Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRg").unwrap_err();
        assert!(!err.contains("Zm9v"), "{err}");
        assert!(err.contains("vault:kv/legacy/billing"), "{err}");
    }

    #[test]
    fn end_dates() {
        assert_eq!(
            end_date("2027-03-31").unwrap(),
            Timestamp::parse_rfc3339("2027-03-31T00:00:00Z").unwrap()
        );
        assert_eq!(
            end_date("2027-03-31T18:00:00Z").unwrap(),
            Timestamp::parse_rfc3339("2027-03-31T18:00:00Z").unwrap()
        );
        for bad in ["2027-3-31", "31/03/2027", "soon", "2027-13-01", ""] {
            assert!(end_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr("10.20.0.0/16").unwrap(), "10.20.0.0/16");
        assert_eq!(cidr("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(cidr("2001:db8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        let err = cidr("10.20.0.1/16").unwrap_err();
        assert!(err.contains("10.20.0.0/16"), "{err}");
        assert!(cidr("10.20.0.0/33").is_err());
        assert!(cidr("example.com/24").is_err());
    }
}
