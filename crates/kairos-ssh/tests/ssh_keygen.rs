//! Certificates and KRLs checked by OpenSSH's own `ssh-keygen`, a tool someone else
//! wrote: `-L` prints a certificate's fields, `-Q` tests a certificate against a KRL.
// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use kairos_ssh::{Krl, KrlSection, PublicKey, UserCertificate, ed25519_public_blob};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

struct Ca(Ed25519KeyPair);

impl Ca {
    fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }
    fn public(&self) -> [u8; 32] {
        self.0.public_key().as_ref().try_into().unwrap()
    }
    fn sign(&self, cert: &UserCertificate<'_>) -> String {
        let body = cert.body(&self.public());
        let sig: [u8; 64] = self.0.sign(body.signed_data()).as_ref().try_into().unwrap();
        body.finish(&sig, "test").to_openssh().to_owned()
    }
}

fn user_key(dir: &Path, kind: &str, bits: Option<&str>) -> PublicKey {
    let path = dir.join(format!("id_{kind}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-f"]).arg(&path);
    if let Some(b) = bits {
        cmd.args(["-b", b]);
    }
    assert!(cmd.status().unwrap().success());
    let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    PublicKey::parse_openssh(&line).unwrap()
}

fn spec(key: &PublicKey, serial: u64) -> UserCertificate<'_> {
    UserCertificate {
        key,
        nonce: [5; 32],
        serial,
        key_id: format!("kairos:grant-{serial}:ci-deployer"),
        principals: vec!["deploy".into(), "ops".into()],
        valid_after: 1_700_000_000,
        valid_before: 4_000_000_000,
        force_command: Some("/usr/bin/uptime".into()),
        source_address: vec!["10.0.0.0/8".into(), "127.0.0.1/32".into()],
        extensions: vec!["permit-pty".into(), "permit-agent-forwarding".into()],
    }
}

fn list(cert_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(cert_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ssh_keygen_reads_every_field_for_each_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    for (kind, bits) in [
        ("ed25519", None),
        ("ecdsa", Some("384")),
        ("rsa", Some("2048")),
    ] {
        let key = user_key(dir.path(), kind, bits);
        let path = dir.path().join(format!("{kind}-cert.pub"));
        std::fs::write(&path, ca.sign(&spec(&key, 4242))).unwrap();
        let shown = list(&path);
        for expected in [
            "user certificate",
            "Serial: 4242",
            "Key ID: \"kairos:grant-4242:ci-deployer\"",
            "force-command /usr/bin/uptime",
            "source-address 10.0.0.0/8,127.0.0.1/32",
            "permit-agent-forwarding",
            "permit-pty",
            "deploy",
            "ops",
            "Signing CA: ED25519",
        ] {
            assert!(
                shown.contains(expected),
                "{kind}: no {expected:?} in\n{shown}"
            );
        }
        assert!(!shown.contains("permit-port-forwarding"), "{shown}");
        // valid_before is 4000000000 = 2096-10-02T07:06:40Z (shown in local time: TZ=UTC here or not,
        // the year is enough to know the field was read).
        assert!(shown.contains("to 2096-10-0"), "{shown}");
    }
}

#[test]
fn ssh_keygen_finds_listed_serials_revoked_and_others_not() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Ca::new(), Ca::new());
    let key = user_key(dir.path(), "ed25519", None);
    let write = |name: &str, line: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, line).unwrap();
        p
    };
    let revoked = write("revoked-cert.pub", ca.sign(&spec(&key, 7)));
    let kept = write("kept-cert.pub", ca.sign(&spec(&key, 8)));
    let same_serial_other_ca = write("other-cert.pub", other_ca.sign(&spec(&key, 7)));
    let krl = Krl {
        version: 3,
        generated: 1_700_000_000,
        comment: "kairos".into(),
        sections: vec![KrlSection {
            ca_key: ed25519_public_blob(&ca.public()),
            serials: vec![9, 7, 7, 1],
            ranges: vec![],
        }],
    };
    let bytes = krl.encode();
    let krl_path = dir.path().join("krl");
    std::fs::write(&krl_path, &bytes).unwrap();
    let query = |cert: &Path| {
        let out = Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(&krl_path)
            .arg(cert)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = query(&revoked);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("REVOKED"), "{out}");
    let (code, out) = query(&kept);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok"), "{out}");
    assert_eq!(query(&same_serial_other_ca).0, Some(0));

    // Read back: what we wrote is what we parse, sorted and deduplicated.
    let back = Krl::parse(&bytes).unwrap();
    assert_eq!(back.version, 3);
    assert_eq!(back.sections[0].serials, vec![1, 7, 9]);
    assert!(back.revokes(&ed25519_public_blob(&ca.public()), 7));
    assert!(!back.revokes(&ed25519_public_blob(&ca.public()), 8));
    assert!(!back.revokes(&ed25519_public_blob(&other_ca.public()), 7));

    // A KRL that ssh-keygen wrote is read too (its own encoding of serials).
    let spec_file = write("spec", "serial: 20-30\nserial: 44\n".into());
    let ca_pub = write(
        "ca.pub",
        kairos_ssh::ed25519_public_line(&ca.public(), "ca"),
    );
    let theirs = dir.path().join("their.krl");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-k", "-f"])
        .arg(&theirs)
        .arg("-s")
        .arg(ca_pub.as_os_str())
        .arg(spec_file.as_os_str())
        .status()
        .unwrap();
    assert!(status.success());
    let parsed = Krl::parse(&std::fs::read(&theirs).unwrap()).unwrap();
    let blob = ed25519_public_blob(&ca.public());
    for (serial, listed) in [(19, false), (20, true), (30, true), (31, false), (44, true)] {
        assert_eq!(parsed.revokes(&blob, serial), listed, "serial {serial}");
    }
    assert_eq!(Krl::parse(b"not a krl"), Err(kairos_ssh::KrlError::Magic));
}
