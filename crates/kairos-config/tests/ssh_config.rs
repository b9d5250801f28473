//! SSH targets and entitlements in the catalog: `kind = "ssh"` with `krl_file`, and
//! `principals` / `force_command` / `source_address` / `extensions`, each error at its
//! file, line and key.
// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{Catalog, ConfigBundle, Privileges, TargetKind};
use kairos_domain::{EntitlementName, TargetName};

const JWKS: &str = include_str!("fixtures/ci-jwks.json");

/// Ten lines that define issuer `ci` and token target `api`; what a test appends starts
/// on line 11.
const PRE: &str = r#"[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "ci-jwks.json"

[[target]]
name = "api"
kind = "token"
audience = "https://api.internal"
"#;

/// An ssh target on lines 11-14.
const SSH: &str =
    "[[target]]\nname = \"bastion\"\nkind = \"ssh\"\nkrl_file = \"/var/lib/kairos/bastion.krl\"\n";

fn bundle(rest: &str) -> ConfigBundle {
    assert_eq!(PRE.lines().count(), 10);
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), format!("{PRE}{rest}")),
            ("ci-jwks.json".into(), JWKS.into()),
        ]),
    }
}

fn load(rest: &str) -> Catalog {
    Catalog::from_bundle(&bundle(rest)).unwrap_or_else(|e| panic!("catalog refused:\n{e}"))
}

/// The refusal must contain `expected` (which names file, line and key).
fn check_refused(rest: &str, expected: &str) {
    match Catalog::from_bundle(&bundle(rest)) {
        Ok(_) => panic!("catalog accepted:\n{rest}"),
        Err(e) => assert!(
            e.to_string().contains(expected),
            "{expected:?} not in:\n{e}"
        ),
    }
}

#[test]
fn an_ssh_entitlement_loads_with_its_options_and_least_privilege_defaults() {
    let catalog = load(&format!(
        "{SSH}[[entitlement]]\nname = \"bastion/login\"\ntier = \"low\"\nmax_ttl = \"1h\"\nprincipals = [\"deploy\", \"ops\"]\n\
         force_command = \"/usr/bin/uptime\"\nsource_address = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\n\
         [[entitlement]]\nname = \"bastion/shell\"\ntier = \"low\"\nmax_ttl = \"1h\"\nprincipals = [\"deploy\"]\n\
         extensions = [\"permit-pty\", \"permit-agent-forwarding\"]\n"
    ));
    let target = catalog
        .target(&TargetName::parse("bastion").unwrap())
        .unwrap();
    let TargetKind::Ssh(ssh) = &target.kind else {
        panic!("not ssh: {target:?}")
    };
    assert_eq!(ssh.krl_file.as_deref(), Some("/var/lib/kairos/bastion.krl"));
    let privileges = |name: &str| {
        let e = catalog
            .entitlement(&EntitlementName::parse(name).unwrap())
            .unwrap();
        match &e.privileges {
            Privileges::Ssh(p) => p.clone(),
            other => panic!("{other:?}"),
        }
    };
    let login = privileges("bastion/login");
    assert_eq!(login.principals, ["deploy", "ops"]);
    assert_eq!(login.force_command.as_deref(), Some("/usr/bin/uptime"));
    assert_eq!(login.source_address, ["10.0.0.0/8", "192.0.2.7"]);
    assert_eq!(
        login.extensions,
        ["permit-pty"],
        "the default: a terminal only"
    );
    assert_eq!(
        privileges("bastion/shell").extensions,
        ["permit-pty", "permit-agent-forwarding"]
    );
}

#[test]
fn ssh_errors_name_file_line_and_key() {
    let ent = |extra: &str| {
        format!(
            "{SSH}[[entitlement]]\nname = \"bastion/login\"\ntier = \"low\"\nmax_ttl = \"1h\"\n{extra}"
        )
    };
    // Lines: the entitlement starts on 15 (its name on 16); `extra` starts on line 19.
    check_refused(
        &ent(""),
        "kairos.toml:16: entitlement[0].principals: principals are required: target bastion is ssh",
    );
    check_refused(
        &ent("principals = []\n"),
        "kairos.toml:19: entitlement[0].principals: principals are required",
    );
    check_refused(
        &ent("principals = [\"-oops\"]\n"),
        "kairos.toml:19: entitlement[0].principals[0]: principal \"-oops\" must be a user name",
    );
    check_refused(
        &ent("principals = [\"deploy\"]\nsource_address = [\"10.0.0.0/33\"]\n"),
        "kairos.toml:20: entitlement[0].source_address[0]: source_address \"10.0.0.0/33\" is not an address block",
    );
    check_refused(
        &ent("principals = [\"deploy\"]\nextensions = [\"permit-everything\"]\n"),
        "kairos.toml:20: entitlement[0].extensions[0]: extension \"permit-everything\" is not an OpenSSH certificate extension",
    );
    check_refused(
        &ent("principals = [\"deploy\"]\nscopes = [\"x\"]\n"),
        "kairos.toml:20: entitlement[0].scopes: `scopes` does not apply to target bastion, which is ssh",
    );
    check_refused(
        &ent("principals = [\"deploy\"]\nforce_command = \"\"\n"),
        "kairos.toml:20: entitlement[0].force_command: force_command must not be empty",
    );
    // The other way round: ssh keys on a token entitlement.
    check_refused(
        "[[entitlement]]\nname = \"api/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"r\"]\nprincipals = [\"deploy\"]\n",
        "kairos.toml:16: entitlement[0].principals: `principals` applies only to ssh targets",
    );
    check_refused(
        "[[entitlement]]\nname = \"api/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"r\"]\nforce_command = \"/bin/true\"\n",
        "kairos.toml:16: entitlement[0].force_command: `force_command` applies only to ssh targets; target api is token",
    );
    // Target keys.
    check_refused(
        "[[target]]\nname = \"bastion\"\nkind = \"ssh\"\nkrl_file = \"relative.krl\"\n",
        "kairos.toml:14: target[1].krl_file: krl_file \"relative.krl\" must be an absolute path",
    );
    check_refused(
        "[[target]]\nname = \"bastion\"\nkind = \"token\"\naudience = \"x\"\nkrl_file = \"/x.krl\"\n",
        "kairos.toml:15: target[1].krl_file: `krl_file` applies only to ssh targets",
    );
    check_refused(
        "[[target]]\nname = \"bastion\"\nkind = \"sshd\"\n",
        "supported: postgres, mariadb, redis, rabbitmq, ssh, token",
    );
}
