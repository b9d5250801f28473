//! `kind = "rabbitmq"` targets and their `[entitlement.rabbitmq]` permissions: what loads,
//! and the errors (file, line, key) for what does not.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{
    Catalog, ConfigBundle, Privileges, RabbitMqPermissions, RabbitMqTopic, SecretRef, TargetKind,
};
use kairos_domain::{EntitlementName, TargetName};

const JWKS: &str = include_str!("fixtures/ci-jwks.json");
const POLICY: &str = "@id(\"allow-all\")\npermit (principal, action, resource);\n";

fn bundle(toml: &str) -> ConfigBundle {
    let mut files = BTreeMap::new();
    files.insert("ci-jwks.json".to_owned(), JWKS.to_owned());
    files.insert("policies/base.cedar".to_owned(), POLICY.to_owned());
    files.insert("kairos.toml".to_owned(), toml.to_owned());
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files,
    }
}

fn load(toml: &str) -> Catalog {
    Catalog::from_bundle(&bundle(toml)).unwrap_or_else(|e| panic!("catalog refused:\n{e}"))
}

fn check(toml: &str, expected: &[&str]) {
    let errors = match Catalog::from_bundle(&bundle(toml)) {
        Ok(_) => panic!("catalog accepted, expected {expected:?}"),
        Err(e) => e.to_string(),
    };
    for want in expected {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
}

/// Fourteen lines: an issuer, a team and the rabbitmq target `queues`; what tests append
/// starts on line 15.
const PRE: &str = r#"[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "ci-jwks.json"

[[team]]
name = "payments"
owners = ["carol"]

[[target]]
name = "queues"
kind = "rabbitmq"
admin_url_env = "QUEUES_ADMIN_URL"
"#;

fn pre(rest: &str) -> String {
    assert_eq!(PRE.lines().count(), 14);
    format!("{PRE}{rest}")
}

/// `[[entitlement]]` on line 15 (name on 16), then `[entitlement.rabbitmq]` on line 19 and
/// `body` from line 20.
fn rabbitmq_entitlement(body: &str) -> String {
    pre(&format!(
        "[[entitlement]]\nname = \"queues/orders\"\ntier = \"low\"\nmax_ttl = \"1h\"\n[entitlement.rabbitmq]\n{body}"
    ))
}

#[test]
fn rabbitmq_targets_and_permissions_load() {
    let catalog = load(&rabbitmq_entitlement(
        r#"vhost = "/"
configure = "^$"
write = "^orders\\."
read = "^orders\\."
topic = { exchange = "amq.topic", write = "^orders\\.created$", read = "^$" }
"#,
    ));
    let target = catalog
        .target(&TargetName::parse("queues").unwrap())
        .unwrap();
    assert_eq!(target.kind_name(), "rabbitmq");
    let TargetKind::RabbitMq(db) = &target.kind else {
        panic!("{:?}", target.kind)
    };
    assert_eq!(db.admin_url, SecretRef::Env("QUEUES_ADMIN_URL".into()));
    assert_eq!(db.amqp_port, Some(5672));
    assert_eq!(db.managed_prefix, "kairos_");
    assert_eq!(db.account_host, None);
    let e = catalog
        .entitlement(&EntitlementName::parse("queues/orders").unwrap())
        .unwrap();
    assert_eq!(
        e.privileges,
        Privileges::RabbitMq(RabbitMqPermissions {
            vhost: "/".into(),
            configure: "^$".into(),
            write: "^orders\\.".into(),
            read: "^orders\\.".into(),
            topic: Some(RabbitMqTopic {
                exchange: "amq.topic".into(),
                write: "^orders\\.created$".into(),
                read: "^$".into(),
            }),
        })
    );
    assert_eq!(e.privileges.key(), "rabbitmq");
    assert_eq!(e.privileges.entries()[0], "vhost=/");
    assert!(e.scopes.is_empty());

    // amqp_port and connect_host are the workloads' address.
    let catalog = load(&format!(
        "{PRE}connect_host = \"mq.internal\"\namqp_port = 5671\nmanaged_prefix = \"kmq_\"\n\n[[entitlement]]\nname = \"queues/x\"\ntier = \"low\"\nmax_ttl = \"1h\"\nrabbitmq = {{ vhost = \"prod\", configure = \"\", write = \"\", read = \"^x$\" }}\n"
    ));
    let target = catalog
        .target(&TargetName::parse("queues").unwrap())
        .unwrap();
    let db = target.db().unwrap();
    assert_eq!(db.amqp_port, Some(5671));
    assert_eq!(db.connect_host.as_deref(), Some("mq.internal"));
    assert_eq!(db.managed_prefix, "kmq_");
}

#[test]
fn bad_patterns_are_refused_with_file_line_and_key() {
    check(
        &rabbitmq_entitlement(
            "vhost = \"/\"\nconfigure = \"^$\"\nwrite = \"^orders(\"\nread = \"^(?=x)\"\n",
        ),
        &[
            "kairos.toml:22: entitlement[0].rabbitmq.write: \"^orders(\" is not a valid regular expression",
            "kairos.toml:23: entitlement[0].rabbitmq.read: \"^(?=x)\" is not a valid regular expression",
        ],
    );
    check(
        &rabbitmq_entitlement(
            "vhost = \"/\"\nconfigure = \"^$\"\nwrite = \"^$\"\nread = \"^$\"\ntopic = { exchange = \"amq.topic\", write = \"[\" }\n",
        ),
        &[
            "kairos.toml:24: entitlement[0].rabbitmq.topic.write: \"[\" is not a valid regular expression",
            "kairos.toml:24: entitlement[0].rabbitmq.topic.read: required key `read` is missing",
        ],
    );
}

#[test]
fn missing_unknown_and_misplaced_keys_are_errors() {
    check(
        &rabbitmq_entitlement("vhost = \"\"\nconfigure = \"^$\"\nwrite = \"^$\"\nqueue = \"x\"\n"),
        &[
            "kairos.toml:20: entitlement[0].rabbitmq.vhost: the virtual host must not be empty",
            "entitlement[0].rabbitmq.read: required key `read` is missing",
            "kairos.toml:23: entitlement[0].rabbitmq.queue: unknown key `queue`",
        ],
    );
    // No permissions at all, or another kind's.
    check(
        &pre(
            "[[entitlement]]\nname = \"queues/orders\"\ntier = \"low\"\nmax_ttl = \"1h\"\nacl = [\"+get\"]\n",
        ),
        &[
            "kairos.toml:19: entitlement[0].acl: `acl` applies only to redis targets; target queues is rabbitmq: write its permissions as [entitlement.rabbitmq]",
            "kairos.toml:16: entitlement[0].rabbitmq: rabbitmq permissions are required",
        ],
    );
    // rabbitmq permissions on another kind of target.
    check(
        &pre(
            "[[target]]\nname = \"cache\"\nkind = \"redis\"\nadmin_url_env = \"C\"\n\n[[entitlement]]\nname = \"cache/x\"\ntier = \"low\"\nmax_ttl = \"1h\"\nacl = [\"+get\"]\nrabbitmq = { vhost = \"/\", configure = \"\", write = \"\", read = \"\" }\n",
        ),
        &[
            "kairos.toml:25: entitlement[0].rabbitmq: `rabbitmq` applies only to rabbitmq targets; target cache is redis",
        ],
    );
    // amqp_port belongs to rabbitmq targets and is a port.
    check(
        &pre(
            "amqp_port = 70000\n\n[[target]]\nname = \"cache\"\nkind = \"redis\"\nadmin_url_env = \"C\"\namqp_port = 5672\n",
        ),
        &[
            "kairos.toml:15: target[0].amqp_port: 70000 is not a port",
            "kairos.toml:21: target[1].amqp_port: `amqp_port` applies only to rabbitmq targets; this target's kind is redis",
        ],
    );
    // The admin URL is a reference.
    check(
        &pre("admin_url = \"http://guest:guest@localhost:15672\"\n")
            .replace("admin_url_env = \"QUEUES_ADMIN_URL\"\n", ""),
        &["kairos.toml:14: target[0].admin_url: looks like a secret"],
    );
}
