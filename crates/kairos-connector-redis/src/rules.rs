//! The entitlement's ACL rules, parsed before anything is sent to Redis.
//!
//! Only rules that shape what the account may *do* are accepted (keys, channels, commands,
//! categories). Rules that touch authentication or the user's state (`on`, `off`, `nopass`,
//! `>password`, `<password`, `#hash`, `!hash`, `reset`, `resetpass`, selectors `(…)`, …) are
//! refused: the connector alone decides how the account logs in and when it is enabled.

use kairos_connectors::{ConnectorError, Privileges};

/// Longest rule accepted (a key pattern longer than this is a configuration mistake).
const MAX_RULE_LEN: usize = 512;

/// Keywords accepted as they are (compared case-insensitively, as Redis does).
const KEYWORDS: [&str; 6] = [
    "allkeys",
    "allchannels",
    "allcommands",
    "nocommands",
    "resetkeys",
    "resetchannels",
];

/// A list of ACL rules that passed [`AclRules::parse`]: each is one printable-ASCII token
/// of an accepted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclRules(Vec<String>);

impl AclRules {
    pub(crate) fn parse(privileges: &Privileges) -> Result<Self, ConnectorError> {
        let rules = match privileges {
            Privileges::RedisAcl(rules) => rules,
            Privileges::Sql(_) | Privileges::RabbitMq(_) => {
                return Err(ConnectorError::BadPrivileges(
                    "a Redis target takes ACL rules (`acl = [...]`), not SQL statements or RabbitMQ permissions".into(),
                ));
            }
        };
        for rule in rules {
            check_rule(rule).map_err(|why| {
                ConnectorError::BadPrivileges(format!("ACL rule {} {why}", shown(rule)))
            })?;
        }
        Ok(Self(rules.clone()))
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// The rule as it may be shown in an error: quoted, escaped, cut at 80 characters.
fn shown(rule: &str) -> String {
    let cut: String = rule.chars().take(80).collect();
    if cut.len() < rule.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn check_rule(rule: &str) -> Result<(), &'static str> {
    if rule.is_empty() {
        return Err("is empty");
    }
    if rule.len() > MAX_RULE_LEN {
        return Err("is too long (at most 512 bytes)");
    }
    if rule.chars().any(char::is_control) {
        return Err("contains a control character; each rule must be one printable token");
    }
    if rule.starts_with('(') {
        return Err("is a selector `(…)`, which is not accepted");
    }
    if rule.chars().any(char::is_whitespace) {
        return Err("contains whitespace; write each rule as its own list entry");
    }
    if !rule.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains a non-ASCII character");
    }
    let lower = rule.to_ascii_lowercase();
    if KEYWORDS.contains(&lower.as_str()) {
        return Ok(());
    }
    if let Some(refused) = touches_auth_or_state(&lower) {
        return Err(refused);
    }
    if let Some(pattern) = rule.strip_prefix('~').or_else(|| rule.strip_prefix('&')) {
        return non_empty_pattern(pattern);
    }
    if let Some(permission) = lower.strip_prefix('%') {
        let (flags, pattern) = permission.split_once('~').ok_or(
            "is a key permission without `~`: write `%R~pattern`, `%W~pattern` or `%RW~pattern`",
        )?;
        return if matches!(flags, "r" | "w" | "rw") {
            non_empty_pattern(pattern)
        } else {
            Err("has key permissions other than `%R~`, `%W~` or `%RW~`")
        };
    }
    if let Some(rest) = rule.strip_prefix('+').or_else(|| rule.strip_prefix('-')) {
        return command_or_category(rest);
    }
    Err(
        "is not an accepted rule: use `~keys`, `%R~keys`, `%W~keys`, `%RW~keys`, `&channels`, \
         `+cmd`, `-cmd`, `+cmd|sub`, `+@category`, `-@category`, `allkeys`, `allchannels`, \
         `allcommands`, `nocommands`, `resetkeys` or `resetchannels`",
    )
}

/// The rules that would change how the account logs in, or its state, named precisely.
fn touches_auth_or_state(lower: &str) -> Option<&'static str> {
    let refused = match lower {
        "on" | "off" => "would change whether the account is enabled, which Kairos decides",
        "nopass" => "would let the account log in without a password",
        "reset" | "resetpass" => {
            "would reset the account's password or rules, which Kairos decides"
        }
        "clearselectors" => "would touch selectors, which are not accepted",
        "sanitize-payload" | "skip-sanitize-payload" => {
            "would change payload sanitisation, which is not accepted"
        }
        _ => match lower.as_bytes().first() {
            Some(b'>' | b'<' | b'#' | b'!') => {
                "would set or remove a password, which Kairos decides"
            }
            _ => return None,
        },
    };
    Some(refused)
}

fn non_empty_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() {
        Err("has an empty pattern")
    } else {
        Ok(())
    }
}

/// `cmd`, `cmd|sub` or `@category` after a `+` or `-`.
fn command_or_category(rest: &str) -> Result<(), &'static str> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    };
    if let Some(category) = rest.strip_prefix('@') {
        return if name_ok(category) {
            Ok(())
        } else {
            Err("is not a valid `+@category`/`-@category`")
        };
    }
    let ok = match rest.split_once('|') {
        Some((command, sub)) => name_ok(command) && name_ok(sub),
        None => name_ok(rest),
    };
    if ok {
        Ok(())
    } else {
        Err("is not a valid `+cmd`, `-cmd` or `+cmd|sub`")
    }
}
