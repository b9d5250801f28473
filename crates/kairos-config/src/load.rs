//! From a bundle to a validated catalog, collecting every problem on the way.
//!
//! Each section is read item by item through [`Table`], which records a problem and
//! carries on, so one run reports all of them. Cross-references are checked afterwards
//! against the names *declared* (even by items that are otherwise broken), so a typo
//! in one team does not also produce an error at every identity it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::Range;

use kairos_domain::{
    EntitlementName, IdentityName, Period, SourceRange, TargetName, TeamName, Ttl, UserName,
};
use kairos_governance::usage::Share;
use kairos_policy::{PolicySet, PolicySource, Tier};

use crate::bundle::{line_of, resolve};
use crate::catalog::{
    Binding, Catalog, ClientCertificates, DbTarget, DpopSettings, Entitlement, GovernanceSettings,
    Identity, Issuer, IssuerName, JwksRef, OrphanAction, OverCap, Privileges, RabbitMqPermissions,
    RabbitMqTopic, RecertSettings, SecretRef, ServerSettings, ServerTls, SshPrivileges, SshTarget,
    StoreLocation, Target, TargetKind, Team, TierCaps, TrustDomain,
};
use crate::tree::{self, Entry, Node, Value};
use crate::{ConfigBundle, ConfigError, ConfigErrors};

mod console;
mod exceptions;
mod notify;
mod sets;
pub(crate) use notify::check_url as check_channel_url;

pub(crate) fn load(bundle: &ConfigBundle) -> Result<Catalog, ConfigErrors> {
    let main = bundle.main_path.as_str();
    let Some(text) = bundle.files.get(main) else {
        return Err(ConfigError {
            file: main.to_owned(),
            line: None,
            column: None,
            key: None,
            message: "the main catalog file is missing from the bundle".into(),
        }
        .into());
    };
    let root = tree::parse(text).map_err(|e| ConfigError {
        file: main.to_owned(),
        // An error at the very end (an unclosed bracket) belongs to the last line.
        line: e
            .span
            .map(|s| line_of(text, s.start.min(text.trim_end().len()))),
        column: None,
        key: None,
        message: format!("TOML syntax error: {}", e.message),
    })?;
    let mut cx = Cx {
        file: main,
        text,
        bundle,
        errors: Vec::new(),
    };
    let catalog = read_catalog(&mut cx, &root);
    match catalog {
        Some(catalog) if cx.errors.is_empty() => Ok(catalog),
        None if cx.errors.is_empty() => Err(ConfigError {
            file: main.to_owned(),
            line: None,
            column: None,
            key: None,
            message: "internal error: the catalog was refused without a reason; please report this"
                .into(),
        }
        .into()),
        _ => Err(ConfigErrors::new(cx.errors)),
    }
}

// ---------------------------------------------------------------------------------
// Reading with located errors

struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    bundle: &'a ConfigBundle,
    errors: Vec<ConfigError>,
}

impl Cx<'_> {
    fn error(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: Some(line_of(self.text, span.start)),
            column: None,
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.into(),
        });
    }
    fn line(&self, span: &Range<usize>) -> u32 {
        line_of(self.text, span.start)
    }
}

/// A value and where it was written.
struct At<T> {
    value: T,
    span: Range<usize>,
}

/// The problem was recorded; the item cannot be built.
struct Invalid;

type Field<T> = Result<Option<At<T>>, Invalid>;

/// One TOML table being read: remembers which keys were read, so that the rest can be
/// reported as unknown (or as secrets written inline).
struct Table<'n> {
    path: String,
    span: Range<usize>,
    entries: &'n [Entry],
    used: Vec<bool>,
}

impl<'n> Table<'n> {
    fn of(cx: &mut Cx<'_>, path: String, node: &'n Node) -> Option<Self> {
        match &node.value {
            Value::Table(entries) => Some(Self {
                path,
                span: node.span.clone(),
                entries,
                used: vec![false; entries.len()],
            }),
            other => {
                cx.error(
                    &node.span,
                    &path,
                    format!("expected a table, found {}", other.type_name()),
                );
                None
            }
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn node(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        Some(&self.entries[i].node)
    }

    /// An optional string key, converted by `parse` (whose error is the message).
    fn opt<T, E: Display>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        parse: impl FnOnce(&'n str) -> Result<T, E>,
    ) -> Field<T> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let path = self.key(key);
        let Value::String(s) = &node.value else {
            cx.error(
                &node.span,
                &path,
                format!("expected a string, found {}", node.value.type_name()),
            );
            return Err(Invalid);
        };
        match parse(s) {
            Ok(value) => Ok(Some(At {
                value,
                span: node.span.clone(),
            })),
            Err(e) => {
                cx.error(&node.span, &path, e.to_string());
                Err(Invalid)
            }
        }
    }

    fn req<T, E: Display>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        parse: impl FnOnce(&'n str) -> Result<T, E>,
    ) -> Result<At<T>, Invalid> {
        match self.opt(cx, key, parse)? {
            Some(at) => Ok(at),
            None => {
                self.missing(cx, key);
                Err(Invalid)
            }
        }
    }

    fn missing(&self, cx: &mut Cx<'_>, key: &str) {
        let where_ = if self.path.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.path)
        };
        cx.error(
            &self.span,
            &self.key(key),
            format!("required key `{key}` is missing{where_}"),
        );
    }

    /// An optional number key (an integer or a float), converted by `parse`.
    fn number<T, E: Display>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        parse: impl FnOnce(f64) -> Result<T, E>,
    ) -> Field<T> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let path = self.key(key);
        #[allow(clippy::cast_precision_loss)]
        let n = match &node.value {
            Value::Integer(i) => *i as f64,
            Value::Float(f) => *f,
            other => {
                cx.error(
                    &node.span,
                    &path,
                    format!("expected a number, found {}", other.type_name()),
                );
                return Err(Invalid);
            }
        };
        match parse(n) {
            Ok(value) => Ok(Some(At {
                value,
                span: node.span.clone(),
            })),
            Err(e) => {
                cx.error(&node.span, &path, e.to_string());
                Err(Invalid)
            }
        }
    }

    /// An optional boolean key.
    fn flag(&mut self, cx: &mut Cx<'_>, key: &str) -> Result<Option<bool>, Invalid> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::Boolean(b) => Ok(Some(*b)),
            other => {
                cx.error(
                    &node.span,
                    &self.key(key),
                    format!("expected true or false, found {}", other.type_name()),
                );
                Err(Invalid)
            }
        }
    }

    /// An optional array of strings, each converted by `parse`.
    fn list<T, E: Display>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        parse: impl Fn(&'n str) -> Result<T, E>,
    ) -> Result<Option<Vec<At<T>>>, Invalid> {
        let Some(node) = self.node(key) else {
            return Ok(None);
        };
        let path = self.key(key);
        let Value::Array(items) = &node.value else {
            cx.error(
                &node.span,
                &path,
                format!(
                    "expected an array of strings, found {}",
                    node.value.type_name()
                ),
            );
            return Err(Invalid);
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match &item.value {
                Value::String(s) => match parse(s) {
                    Ok(value) => out.push(At {
                        value,
                        span: item.span.clone(),
                    }),
                    Err(e) => {
                        cx.error(&item.span, &item_path, e.to_string());
                        ok = false;
                    }
                },
                other => {
                    cx.error(
                        &item.span,
                        &item_path,
                        format!("expected a string, found {}", other.type_name()),
                    );
                    ok = false;
                }
            }
        }
        if ok { Ok(Some(out)) } else { Err(Invalid) }
    }

    /// Reports the keys nobody read.
    fn finish(&self, cx: &mut Cx<'_>, known: &[&str]) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let path = self.key(&entry.key);
            if looks_secret(&entry.key) {
                // Never echo the value.
                cx.error(
                    &entry.node.span,
                    &path,
                    format!(
                        "looks like a secret written into the catalog; secrets never sit in this file (it is kept in Git): \
                         use `{0}_env = \"ENV_VAR\"` or `{0}_file = \"/path/to/file\"` instead, and rotate the secret if it was committed",
                        entry.key
                    ),
                );
            } else {
                cx.error(
                    &entry.node.span,
                    &path,
                    format!(
                        "unknown key `{}`{}; known keys here: {}",
                        entry.key,
                        self.table_name(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// Where `key` was written, or the table itself when it was not.
    fn span_of(&self, key: &str) -> Range<usize> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or_else(|| self.span.clone(), |e| e.node.span.clone())
    }

    fn table_name(&self) -> String {
        if self.path.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.path)
        }
    }
}

/// Keys that name a secret. `*_env` and `*_file` keys are fine: they point at one.
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.ends_with("_env") || key.ends_with("_file") {
        return false;
    }
    const ANYWHERE: [&str; 3] = ["password", "passwd", "secret"];
    const WORDS: [&str; 7] = [
        "token",
        "admin_url",
        "master_key",
        "private_key",
        "api_key",
        "credentials",
        "dsn",
    ];
    ANYWHERE.iter().any(|w| key.contains(w))
        || WORDS
            .iter()
            .any(|w| key == *w || key.ends_with(&format!("_{w}")))
}

fn string_list(items: Option<Vec<At<String>>>) -> Vec<String> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.value)
        .collect()
}

/// The `[[section]]` arrays of the root, as (path, table node) pairs.
fn section<'n>(cx: &mut Cx<'_>, root: &mut Table<'n>, name: &str) -> Vec<(String, &'n Node)> {
    let Some(node) = root.node(name) else {
        return Vec::new();
    };
    match &node.value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{name}[{i}]"), item))
            .collect(),
        other => {
            cx.error(
                &node.span,
                name,
                format!(
                    "expected an array of tables (write each one under `[[{name}]]`), found {}",
                    other.type_name()
                ),
            );
            Vec::new()
        }
    }
}

/// The raw `name` strings of a section, for reference checks.
fn declared(items: &[(String, &Node)]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|(_, node)| match &node.value {
            Value::Table(entries) => entries.iter().find(|e| e.key == "name"),
            _ => None,
        })
        .filter_map(|e| match &e.node.value {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// A successfully read item and where its keys were.
struct Item<T> {
    value: T,
    path: String,
    name_span: Range<usize>,
    spans: BTreeMap<&'static str, Range<usize>>,
}

impl<T> Item<T> {
    fn span(&self, key: &str) -> &Range<usize> {
        self.spans.get(key).unwrap_or(&self.name_span)
    }
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

// ---------------------------------------------------------------------------------
// Value parsers; their errors become messages

fn text(what: &'static str, max: usize) -> impl Fn(&str) -> Result<String, String> {
    move |s: &str| {
        if s.trim().is_empty() {
            Err(format!("{what} must not be empty"))
        } else if s.chars().count() > max {
            Err(format!("{what} is longer than {max} characters"))
        } else if s.chars().any(char::is_control) {
            Err(format!("{what} must not contain control characters"))
        } else {
            Ok(s.to_owned())
        }
    }
}

fn kind_word(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
    {
        return Err(format!(
            "kind {s:?} must be 1-64 lowercase letters, digits, '-' or '_' (e.g. ci-job, service, bot, agent)"
        ));
    }
    Ok(s.to_owned())
}

/// An HTTP header name, as the server reads it (lowercase).
fn header_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{:?} is not an HTTP header name; write one like \"x-forwarded-for\" (letters, digits, '-')",
            s.chars().take(64).collect::<String>()
        ))
    }
}

fn env_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an environment variable name; use letters, digits and '_', e.g. KAIROS_MASTER_KEY"
        ))
    }
}

fn file_path(s: &str) -> Result<String, String> {
    text("file path", 4096)(s)
}

fn tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s)
        .ok_or_else(|| format!("tier {s:?} is unknown; use low, medium, high or critical"))
}

fn binding(s: &str) -> Result<Binding, String> {
    match s {
        "dpop" => Ok(Binding::Dpop),
        "mtls" => Ok(Binding::Mtls),
        "any" => Ok(Binding::Any),
        _ => Err(format!(
            "require_binding {s:?} is unknown; use \"dpop\" (tokens bound to a DPoP proof key, RFC 9449), \"mtls\" (bound to the client certificate, RFC 8705) or \"any\" (either)"
        )),
    }
}

/// The `[dpop]` table.
fn read_dpop(cx: &mut Cx<'_>, node: &Node) -> DpopSettings {
    let mut settings = DpopSettings::default();
    let Some(mut t) = Table::of(cx, "dpop".into(), node) else {
        return settings;
    };
    if let Ok(Some(nonce)) = t.flag(cx, "nonce") {
        settings.nonce = nonce;
    }
    if let Ok(Some(age)) = t.opt(cx, "proof_max_age", |s| {
        let ttl = Ttl::parse(s).map_err(|e| e.to_string())?;
        if ttl.as_secs() > 600 {
            return Err(format!(
                "proof_max_age {ttl} is too long: a proof is meant for one request; use 10m or less (the default is 60s)"
            ));
        }
        Ok(ttl)
    }) {
        settings.proof_max_age = age.value;
    }
    t.finish(cx, &["nonce", "proof_max_age"]);
    settings
}

fn over_cap(s: &str) -> Result<OverCap, String> {
    match s {
        "refuse" => Ok(OverCap::Refuse),
        "cap" => Ok(OverCap::Cap),
        _ => Err(format!(
            "over_cap {s:?} is unknown; use \"refuse\" (refuse longer requests) or \"cap\" (grant the cap instead)"
        )),
    }
}

fn scope(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "scope {s:?} must be 1-256 characters without spaces, e.g. \"orders:read\""
        ));
    }
    Ok(s.to_owned())
}

/// A value quoted for a message, cut short when long (templates can be).
fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

/// The kinds of `[[target]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindWord {
    Token,
    Postgres,
    MariaDb,
    Redis,
    RabbitMq,
    Ssh,
}

impl KindWord {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Postgres => "postgres",
            Self::MariaDb => "mariadb",
            Self::Redis => "redis",
            Self::RabbitMq => "rabbitmq",
            Self::Ssh => "ssh",
        }
    }
}

fn target_kind(s: &str) -> Result<KindWord, String> {
    match s {
        "token" => Ok(KindWord::Token),
        "postgres" => Ok(KindWord::Postgres),
        "mariadb" => Ok(KindWord::MariaDb),
        "redis" => Ok(KindWord::Redis),
        "rabbitmq" => Ok(KindWord::RabbitMq),
        "ssh" => Ok(KindWord::Ssh),
        "postgresql" => Err(format!(
            "target kind {s:?} is unknown; write \"postgres\" (supported: postgres, mariadb, redis, rabbitmq, ssh, token)"
        )),
        _ => Err(format!(
            "target kind {s:?} is unknown; supported: postgres, mariadb, redis, rabbitmq, ssh, token"
        )),
    }
}

/// A TCP port, 1-65535.
fn port_number(n: f64) -> Result<u16, String> {
    if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(n as u16)
    } else {
        Err(format!(
            "{n} is not a port: write a whole number from 1 to 65535"
        ))
    }
}

fn scram_iterations(n: f64) -> Result<u32, String> {
    let (max, default) = (
        DbTarget::MAX_SCRAM_ITERATIONS,
        DbTarget::DEFAULT_SCRAM_ITERATIONS,
    );
    if n.fract() == 0.0 && (1.0..=f64::from(max)).contains(&n) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(n as u32)
    } else {
        Err(format!(
            "{n} is not an iteration count: write a whole number from 1 to {max} \
             (default {default}, which every client accepts; 1 is as safe for Kairos's random \
             passwords and cheapest, where the target's clients accept it)"
        ))
    }
}

/// `[a-z][a-z0-9_]{0,19}`: safe in every account name, before any quoting.
fn managed_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 20
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "managed_prefix {} must be 1-20 characters: a lowercase letter, then lowercase letters, digits or '_' (e.g. \"kairos_\")",
            quoted(s)
        ))
    }
}

/// A host name or IP address, without scheme, port or path.
fn connect_host(s: &str) -> Result<String, String> {
    let ip = s.parse::<std::net::IpAddr>().is_ok()
        || s.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|r| r.parse::<std::net::Ipv6Addr>().is_ok());
    let name = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ip || name {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "connect_host {} must be a host name or IP address, without scheme, port or path (e.g. \"orders-db.internal\")",
            quoted(s)
        ))
    }
}

/// The host part of a MariaDB account: `%`, `10.0.%`, `app.internal`,
/// `10.0.0.0/255.255.255.0`. Never a quote: it goes between quotes.
fn account_host(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '_' | '-' | '.' | ':' | '/'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "account_host {} must be a MariaDB host pattern: letters, digits and . - _ % : / (e.g. \"%\", \"10.0.%\", \"app.internal\")",
            quoted(s)
        ))
    }
}

/// One SQL statement with `{{role}}` where the account goes.
fn grant_template(s: &str) -> Result<String, String> {
    const ROLE: &str = "{{role}}";
    let why = if s.trim().is_empty() {
        Some("is empty; write one SQL statement, e.g. \"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{role}}\"".to_owned())
    } else if s.len() > 4096 {
        Some("is longer than 4096 bytes".to_owned())
    } else if s.contains(';') {
        Some(
            "contains ';': each entry is exactly one SQL statement; write several entries instead"
                .to_owned(),
        )
    } else if s
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        Some("contains control characters".to_owned())
    } else if !s.contains(ROLE) {
        Some(
            "does not contain {{role}}: write it where the account goes, e.g. \"... TO {{role}}\""
                .to_owned(),
        )
    } else if let Some(bad) = s
        .match_indices("{{")
        .map(|(i, _)| &s[i..])
        .find(|rest| !rest.starts_with(ROLE))
    {
        let shown: String = bad.chars().take(12).collect();
        Some(format!(
            "has an unknown placeholder starting {shown:?}; the only placeholder is {{{{role}}}}"
        ))
    } else if ["'", "\"", "`"]
        .iter()
        .any(|q| s.contains(&format!("{q}{ROLE}")) || s.contains(&format!("{ROLE}{q}")))
    {
        Some(
            "quotes {{role}}; leave it bare: it is replaced by the account, already quoted"
                .to_owned(),
        )
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("grant template {} {why}", quoted(s))),
        None => Ok(s.to_owned()),
    }
}

/// Reports each entry of `key` that hands out administration (the entitlement did not
/// say `danger_allow_admin_grants = true`). The entry itself is not echoed: a statement
/// that changes an account may carry a password.
fn refuse_admin(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    key: &str,
    entries: &Result<Option<Vec<At<String>>>, Invalid>,
    problem: fn(&str) -> Option<String>,
) {
    let Ok(Some(entries)) = entries else { return };
    for (i, entry) in entries.iter().enumerate() {
        if let Some(why) = problem(&entry.value) {
            cx.error(
                &entry.span,
                &format!("{}[{i}]", t.key(key)),
                format!(
                    "{why}: an account Kairos hands out must not administer the target or change accounts; \
                     grant only what the task needs, or, if this entitlement really must hand out administration, \
                     say so with `danger_allow_admin_grants = true` in it"
                ),
            );
        }
    }
}

/// The SQL a privilege template is made of, for the admin check: comments become spaces
/// (the text of MariaDB's executable `/*! … */` comments is kept, as MariaDB runs it),
/// identifier quotes (`"`, `` ` ``) go, and the rest is upper-cased words and the
/// punctuation between them, e.g. `alter/**/"role" x` → ["ALTER", "ROLE", "X"].
fn sql_words(sql: &str) -> Vec<String> {
    let mut text = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| &after[n..]);
            text.push(' ');
        } else if let Some(after) = rest.strip_prefix('#') {
            rest = after.find('\n').map_or("", |n| &after[n..]);
            text.push(' ');
        } else if let Some(after) = rest.strip_prefix("/*!") {
            // Executable comment: its version number, then SQL that runs.
            let body = after.trim_start_matches(|c: char| c.is_ascii_digit());
            rest = body;
            text.push(' ');
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |n| &after[n + 2..]);
            text.push(' ');
        } else if let Some(after) = rest.strip_prefix("*/") {
            rest = after;
            text.push(' ');
        } else {
            if !matches!(c, '"' | '`') {
                text.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, '_' | '$') {
            word.extend(c.to_uppercase());
        } else {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                words.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Why a SQL privilege template hands out administration or changes accounts, if it does.
fn admin_grant_problem(sql: &str) -> Option<String> {
    let words = sql_words(sql);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let has = |seq: &[&str]| w.windows(seq.len()).any(|win| win == seq);
    for (verb, what) in [
        ("ALTER", "changes an account"),
        ("CREATE", "creates an account"),
        ("DROP", "drops an account"),
        ("RENAME", "renames an account"),
    ] {
        for object in ["ROLE", "USER", "GROUP"] {
            if has(&[verb, object]) {
                return Some(format!("{verb} {object} {what}"));
            }
        }
    }
    if has(&["SET", "PASSWORD"]) {
        return Some("SET PASSWORD changes an account's password".to_owned());
    }
    for attribute in [
        "SUPERUSER",
        "CREATEROLE",
        "CREATEDB",
        "BYPASSRLS",
        "REPLICATION",
        "SUPER",
        "SHUTDOWN",
        "PROXY",
    ] {
        if w.contains(&attribute) {
            return Some(format!("{attribute} is an administrative privilege"));
        }
    }
    for option in [
        &["WITH", "ADMIN"][..],
        &["WITH", "GRANT", "OPTION"],
        &["GRANT", "OPTION"],
    ] {
        if has(option) {
            return Some(format!(
                "{} lets the account hand its privileges to others",
                option.join(" ")
            ));
        }
    }
    for role in [
        "PG_EXECUTE_SERVER_PROGRAM",
        "PG_READ_SERVER_FILES",
        "PG_WRITE_SERVER_FILES",
    ] {
        if w.contains(&role) {
            return Some(format!(
                "{} is as powerful as a superuser",
                role.to_ascii_lowercase()
            ));
        }
    }
    // MariaDB global privileges: `ON *.*` with ALL (or ALL PRIVILEGES).
    if has(&["ON", "*", ".", "*"]) && w.contains(&"ALL") {
        return Some("ALL ON *.* hands out every privilege on the whole server".to_owned());
    }
    None
}

/// Why a Redis ACL rule hands out administration, if it does.
fn admin_acl_problem(rule: &str) -> Option<String> {
    let lower = rule.to_ascii_lowercase();
    if lower == "allcommands" || lower == "+@all" {
        return Some(format!(
            "{rule} allows every command, administration included"
        ));
    }
    if lower == "+@admin" || lower == "+@dangerous" {
        return Some(format!("{rule} allows administrative commands"));
    }
    const ADMIN_COMMANDS: [&str; 8] = [
        "acl",
        "config",
        "module",
        "debug",
        "shutdown",
        "replicaof",
        "slaveof",
        "failover",
    ];
    let command = lower
        .strip_prefix('+')
        .map(|c| c.split('|').next().unwrap_or(c));
    match command {
        Some(c) if ADMIN_COMMANDS.contains(&c) => {
            Some(format!("{rule} allows an administrative command"))
        }
        _ => None,
    }
}

/// One Redis ACL rule that shapes what the account may do (keys, channels, commands,
/// categories), never one that touches how it authenticates or whether it is enabled:
/// Kairos owns those. The same grammar as the Redis connector's, so that a catalog that
/// loads never fails at provisioning for its rules.
fn acl_rule(s: &str) -> Result<String, String> {
    match acl_rule_problem(s) {
        // `>password`, `#hash`, `!hash` (also after a space: `+get >password`) carry a
        // secret: never echo such a rule; the key path names the entry.
        Some(why) if s.contains(['>', '<', '#', '!']) => Err(format!("this ACL rule {why}")),
        Some(why) => Err(format!("ACL rule {} {why}", quoted(s))),
        None => Ok(s.to_owned()),
    }
}

fn acl_rule_problem(s: &str) -> Option<&'static str> {
    // Accepted as they are (case-insensitively, as Redis compares them).
    const KEYWORDS: [&str; 6] = [
        "allkeys",
        "allchannels",
        "allcommands",
        "nocommands",
        "resetkeys",
        "resetchannels",
    ];
    let lower = s.to_ascii_lowercase();
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    };
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > 512 {
        return Some("is longer than 512 bytes");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(
            "must be one rule without spaces; write each rule as its own entry, e.g. acl = [\"~sessions:*\", \"+get\"]",
        );
    }
    if !s.is_ascii() {
        return Some("contains a non-ASCII character");
    }
    if KEYWORDS.contains(&lower.as_str()) {
        return None;
    }
    match lower.as_str() {
        "nopass" | "on" | "off" | "reset" | "resetpass" => {
            return Some(
                "would change how the account authenticates or whether it is enabled; Kairos sets the password and enables the account itself: remove it",
            );
        }
        "clearselectors" => return Some("touches selectors, which are not supported"),
        "sanitize-payload" | "skip-sanitize-payload" => {
            return Some("changes payload sanitisation, which is not supported");
        }
        _ => {}
    }
    if s.starts_with(['>', '<', '#', '!']) {
        return Some("would set or remove a password; Kairos sets the password itself: remove it");
    }
    if s.starts_with('(') {
        return Some("is a selector; selectors are not supported: write plain rules");
    }
    if let Some(pattern) = s.strip_prefix('~').or_else(|| s.strip_prefix('&')) {
        return pattern.is_empty().then_some("has an empty pattern");
    }
    if let Some(permission) = lower.strip_prefix('%') {
        return match permission.split_once('~') {
            Some(("r" | "w" | "rw", "")) => Some("has an empty pattern"),
            Some(("r" | "w" | "rw", _)) => None,
            _ => Some(
                "is not a key permission Kairos accepts: write %R~pattern, %W~pattern or %RW~pattern",
            ),
        };
    }
    if let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) {
        let ok = match rest.strip_prefix('@') {
            Some(category) => name_ok(category),
            None => match rest.split_once('|') {
                Some((command, sub)) => name_ok(command) && name_ok(sub),
                None => name_ok(rest),
            },
        };
        return (!ok).then_some("is not a valid +cmd, -cmd, +cmd|sub, +@category or -@category");
    }
    Some(
        "is not a Redis ACL rule Kairos accepts; use key patterns (~keys, %R~keys, %W~keys, %RW~keys), channels (&channels), commands (+cmd, -cmd, +cmd|sub, +@category, -@category) or allkeys, allchannels, allcommands, nocommands, resetkeys, resetchannels",
    )
}

fn issuer_url(s: &str) -> Result<String, String> {
    https_url("issuer", s)
}

/// `https://…`; plain `http://` only for a local development issuer.
fn https_url(what: &str, s: &str) -> Result<String, String> {
    let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .any(|p| {
            s.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    let https = s
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty());
    if (https || local) && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{what} {s:?} must be an https:// URL (plain http:// is allowed only for localhost)"
        ))
    }
}

fn store_url(s: &str) -> Result<String, String> {
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err("store must be a URL: sqlite://path or postgres://host/db".into());
    };
    match scheme {
        "sqlite" => Ok(s.to_owned()),
        "postgres" | "postgresql" => {
            let authority = rest
                .trim_start_matches("//")
                .split(['/', '?'])
                .next()
                .unwrap_or_default();
            let has_password = authority
                .rsplit_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':'));
            if has_password || rest.contains("password=") {
                // Never echo the URL: it holds a password.
                Err("this store URL carries a password; secrets never sit in the catalog: put the URL in an environment variable and write `store_env = \"KAIROS_STORE_URL\"` instead".into())
            } else {
                Ok(s.to_owned())
            }
        }
        other => Err(format!(
            "store scheme {other:?} is not supported; use sqlite://path or postgres://host/db"
        )),
    }
}

fn listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("listen {s:?} is not an address; write IP:port, e.g. \"127.0.0.1:8740\"")
    })
}

/// Checks a JWKS document: `{"keys": [...]}` with public keys only.
fn jwks(s: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(s).map_err(|e| format!("is not JSON: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("is not a JWKS: expected an object {\"keys\": [...]}")?;
    if keys.is_empty() {
        return Err(
            "is a JWKS with no keys; tokens from this issuer could never be verified".into(),
        );
    }
    for (i, key) in keys.iter().enumerate() {
        let Some(key) = key.as_object() else {
            return Err(format!("key {i} is not a JSON object"));
        };
        if !key.get("kty").is_some_and(|k| k.is_string()) {
            return Err(format!("key {i} has no \"kty\" (key type)"));
        }
        const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
        if let Some(member) = PRIVATE.iter().find(|m| key.contains_key(**m)) {
            return Err(format!(
                "key {i} holds private key material (\"{member}\"); a JWKS used for verification holds public keys only: remove it, and rotate that key"
            ));
        }
    }
    // The server verifies workload tokens with these keys: refuse here, with the file and
    // key, a JWKS it could not use.
    kairos_crypto::workload::check_jwks(&value)
        .map_err(|reason| format!("is unusable: {reason}"))?;
    Ok(value)
}

// ---------------------------------------------------------------------------------
// Sections

const ROOT_KEYS: [&str; 15] = [
    "server",
    "trust_domain",
    "dpop",
    "console",
    "tiers",
    "governance",
    "issuer",
    "team",
    "identity",
    "target",
    "entitlement",
    "exception",
    "notify",
    "set_receiver",
    "policy",
];

fn read_catalog(cx: &mut Cx<'_>, root_node: &Node) -> Option<Catalog> {
    let mut root = Table::of(cx, String::new(), root_node)?;

    let server = root.node("server").and_then(|n| read_server(cx, n));
    let (tiers, tier_bindings) = match root.node("tiers") {
        Some(n) => read_tiers(cx, n),
        None => (TierCaps::default(), BTreeMap::new()),
    };
    let dpop = match root.node("dpop") {
        Some(n) => read_dpop(cx, n),
        None => DpopSettings::default(),
    };
    let (governance, recert) = match root.node("governance") {
        Some(n) => read_governance(cx, n),
        None => (GovernanceSettings::default(), RecertSettings::default()),
    };
    let trust_domain_items = section(cx, &mut root, "trust_domain");
    let issuer_items = section(cx, &mut root, "issuer");
    let team_items = section(cx, &mut root, "team");
    let identity_items = section(cx, &mut root, "identity");
    let target_items = section(cx, &mut root, "target");
    let entitlement_items = section(cx, &mut root, "entitlement");
    let exception_items = section(cx, &mut root, "exception");
    let notify_items = section(cx, &mut root, "notify");
    let set_receiver_items = section(cx, &mut root, "set_receiver");
    let policy = root.node("policy");
    let console_node = root.node("console");
    root.finish(cx, &ROOT_KEYS);

    let declared_issuers = declared(&issuer_items);
    let declared_teams = declared(&team_items);
    let declared_targets = declared(&target_items);
    let declared_identities = declared(&identity_items);

    let trust_domains: Vec<Item<TrustDomain>> = trust_domain_items
        .iter()
        .filter_map(|(path, node)| read_trust_domain(cx, path, node))
        .collect();
    let trust_domains = unique(cx, "trust domain", trust_domains, |t| t.name.clone());
    let issuers: Vec<Item<Issuer>> = issuer_items
        .iter()
        .filter_map(|(path, node)| read_issuer(cx, path, node, &trust_domains))
        .collect();
    let teams: Vec<Item<Team>> = team_items
        .iter()
        .filter_map(|(path, node)| read_team(cx, path, node))
        .collect();
    let identities: Vec<Item<Identity>> = identity_items
        .iter()
        .filter_map(|(path, node)| read_identity(cx, path, node))
        .collect();
    let targets: Vec<Item<Target>> = target_items
        .iter()
        .filter_map(|(path, node)| read_target(cx, path, node))
        .collect();
    let entitlements: Vec<Item<DraftEntitlement>> = entitlement_items
        .iter()
        .filter_map(|(path, node)| read_entitlement(cx, path, node))
        .collect();

    let issuers = unique(cx, "issuer", issuers, |i| i.name.to_string());
    let teams = unique(cx, "team", teams, |t| t.name.to_string());
    let identities = unique(cx, "identity", identities, |i| i.name.to_string());
    let targets = unique(cx, "target", targets, |t| t.name.to_string());
    let entitlements = unique(cx, "entitlement", entitlements, |e| e.name.to_string());
    check_prefixes(cx, &targets);

    // Issuer URLs identify issuers in tokens, so they must be unique too.
    let mut by_url: BTreeMap<&str, &Item<Issuer>> = BTreeMap::new();
    for item in issuers.iter().filter(|i| !i.value.issuer.is_empty()) {
        if let Some(first) = by_url.insert(&item.value.issuer, item) {
            let message = format!(
                "issuer URL {:?} is already used by issuer {} (line {}); each issuer URL may appear once",
                item.value.issuer,
                first.value.name,
                cx.line(first.span("issuer"))
            );
            cx.error(item.span("issuer"), &item.key("issuer"), message);
        }
    }

    let mut by_subject: BTreeMap<(IssuerName, String), IdentityName> = BTreeMap::new();
    let mut subject_at: BTreeMap<(IssuerName, String), u32> = BTreeMap::new();
    let mut by_spiffe_id: BTreeMap<String, IdentityName> = BTreeMap::new();
    let mut spiffe_at: BTreeMap<String, u32> = BTreeMap::new();
    for item in &identities {
        let identity = &item.value;
        reference(
            cx,
            item,
            "owner",
            "team",
            identity.owner.as_str(),
            &declared_teams,
        );
        if let Some(spiffe_id) = &identity.spiffe_id {
            let td = spiffe_id
                .strip_prefix("spiffe://")
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default();
            let declared_td = trust_domains.iter().any(|t| t.value.name == td)
                || issuers
                    .iter()
                    .any(|i| i.value.spiffe_trust_domain.as_deref() == Some(td));
            if !declared_td {
                let message = format!(
                    "the trust domain {td:?} of this SPIFFE ID is not declared; add a [[trust_domain]] (for X.509-SVIDs) or an [[issuer]] with spiffe_trust_domain = {td:?} (for JWT-SVIDs)"
                );
                cx.error(item.span("spiffe_id"), &item.key("spiffe_id"), message);
            }
            if let Some(first) = by_spiffe_id.get(spiffe_id) {
                let message = format!(
                    "identity {} has the same SPIFFE ID {spiffe_id:?} as identity {first} (line {}); an SVID must map to one identity",
                    identity.name,
                    spiffe_at.get(spiffe_id).copied().unwrap_or(0),
                );
                cx.error(item.span("spiffe_id"), &item.key("spiffe_id"), message);
            } else {
                spiffe_at.insert(spiffe_id.clone(), cx.line(item.span("spiffe_id")));
                by_spiffe_id.insert(spiffe_id.clone(), identity.name.clone());
            }
        }
        let (Some(issuer), Some(subject)) = (&identity.issuer, &identity.subject) else {
            continue;
        };
        reference(
            cx,
            item,
            "issuer",
            "issuer",
            issuer.as_str(),
            &declared_issuers,
        );
        let key = (issuer.clone(), subject.clone());
        if let Some(first) = by_subject.get(&key) {
            let message = format!(
                "identity {} has the same issuer ({issuer}) and subject {subject:?} as identity {first} (line {}); a token must map to one identity",
                identity.name,
                subject_at.get(&key).copied().unwrap_or(0),
            );
            cx.error(item.span("subject"), &item.key("subject"), message);
        } else {
            subject_at.insert(key.clone(), cx.line(item.span("subject")));
            by_subject.insert(key, identity.name.clone());
        }
    }

    for item in &targets {
        if let Some(owner) = &item.value.owner {
            reference(cx, item, "owner", "team", owner.as_str(), &declared_teams);
        }
    }

    let target_kinds: BTreeMap<&str, &TargetKind> = targets
        .iter()
        .map(|t| (t.value.name.as_str(), &t.value.kind))
        .collect();
    let mut built: Vec<Entitlement> = Vec::new();
    for item in &entitlements {
        let e = &item.value;
        if e.name.target() != e.target.as_str() {
            let message = format!(
                "entitlement {} belongs to target {:?} (the part before '/'), but target is {:?}; rename it `{}/{}` or fix target",
                e.name,
                e.name.target(),
                e.target.as_str(),
                e.target,
                e.name.role()
            );
            cx.error(item.span("target"), &item.key("target"), message);
        } else {
            reference(
                cx,
                item,
                "target",
                "target",
                e.target.as_str(),
                &declared_targets,
            );
        }
        if let Some(team) = &e.approval_team {
            reference(
                cx,
                item,
                "approval_team",
                "team",
                team.as_str(),
                &declared_teams,
            );
        }
        let cap = tiers.cap(e.tier);
        if e.max_ttl > cap {
            let message = format!(
                "max_ttl {} is longer than the {} tier allows ({}); lower max_ttl or raise tiers.{}",
                e.max_ttl, e.tier, cap, e.tier
            );
            cx.error(item.span("max_ttl"), &item.key("max_ttl"), message);
        }
        // Break-glass access is short: its effective cap (max_ttl within the tier's cap) is
        // at most an hour.
        let effective = e.max_ttl.min(cap);
        if e.break_glass && effective.as_secs() > Entitlement::BREAK_GLASS_MAX_CAP_SECS {
            let message = format!(
                "entitlement {} is break_glass, so its grants must be short: its cap is {effective} (max_ttl {} within the {} tier's {cap}), over the 1h break-glass access may last; lower max_ttl to 1h or less",
                e.name, e.max_ttl, e.tier
            );
            cx.error(item.span("max_ttl"), &item.key("max_ttl"), message);
        }
        // An undefined target was reported above.
        let Some(kind) = target_kinds.get(e.target.as_str()) else {
            continue;
        };
        if let Some(privileges) = privileges(cx, item, kind) {
            built.push(Entitlement {
                name: e.name.clone(),
                target: e.target.clone(),
                tier: e.tier,
                max_ttl: e.max_ttl,
                scopes: match &privileges {
                    Privileges::Scopes(scopes) => scopes.clone(),
                    Privileges::Sql(_)
                    | Privileges::RedisAcl(_)
                    | Privileges::RabbitMq(_)
                    | Privileges::Ssh(_) => Vec::new(),
                },
                privileges,
                over_cap: e.over_cap,
                approval_team: e.approval_team.clone(),
                break_glass: e.break_glass,
                require_binding: e.require_binding,
            });
        }
    }

    let exceptions =
        exceptions::read_all(cx, &exception_items, &declared_identities, &declared_teams);

    let notify = notify::read_all(cx, &notify_items, &declared_teams);
    let set_receivers = sets::read_all(cx, &set_receiver_items);

    let console = match console_node {
        Some(n) => console::read(cx, n, &declared_teams).unwrap_or_default(),
        None => crate::catalog::ConsoleSettings::default(),
    };

    let policies = read_policies(cx, policy);

    let catalog = Catalog {
        server,
        tiers,
        governance,
        issuers: issuers
            .into_iter()
            .map(|i| (i.value.name.clone(), i.value))
            .collect(),
        teams: teams
            .into_iter()
            .map(|t| (t.value.name.clone(), t.value))
            .collect(),
        identities: identities
            .into_iter()
            .map(|i| (i.value.name.clone(), i.value))
            .collect(),
        by_subject,
        by_spiffe_id,
        trust_domains: trust_domains
            .into_iter()
            .map(|t| (t.value.name.clone(), t.value))
            .collect(),
        tier_bindings,
        targets: targets
            .into_iter()
            .map(|t| (t.value.name.clone(), t.value))
            .collect(),
        entitlements: built.into_iter().map(|e| (e.name.clone(), e)).collect(),
        policies: policies?,
        recert,
        exception_ends_at: exceptions
            .iter()
            .map(|e| {
                (
                    e.value.name.clone(),
                    (cx.file.to_owned(), cx.line(e.span("ends")), e.key("ends")),
                )
            })
            .collect(),
        exceptions: exceptions
            .into_iter()
            .map(|e| (e.value.name.clone(), e.value))
            .collect(),
        notify,
        set_receivers,
        console,
        dpop,
    };
    Some(catalog)
}

/// Drops (and reports) items whose name was already used in their section.
fn unique<T>(
    cx: &mut Cx<'_>,
    kind: &str,
    items: Vec<Item<T>>,
    name: impl Fn(&T) -> String,
) -> Vec<Item<T>> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for item in items {
        let n = name(&item.value);
        if let Some(line) = seen.get(&n) {
            let message = format!("{kind} {n:?} is already defined at line {line}");
            cx.error(&item.name_span, &item.key("name"), message);
            continue;
        }
        seen.insert(n, cx.line(&item.name_span));
        out.push(item);
    }
    out
}

fn reference<T>(
    cx: &mut Cx<'_>,
    item: &Item<T>,
    key: &str,
    kind: &str,
    name: &str,
    declared: &BTreeSet<String>,
) {
    if declared.contains(name) {
        return;
    }
    let kinds = match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{kind}s"),
    };
    let defined = if declared.is_empty() {
        format!("no {kinds} are defined")
    } else {
        let mut names: Vec<&str> = declared.iter().map(String::as_str).take(20).collect();
        if declared.len() > names.len() {
            names.push("…");
        }
        format!("defined {kinds}: {}", names.join(", "))
    };
    let message = format!("{kind} {name:?} is not defined; {defined}");
    cx.error(item.span(key), &item.key(key), message);
}

fn read_server(cx: &mut Cx<'_>, node: &Node) -> Option<ServerSettings> {
    let mut t = Table::of(cx, "server".into(), node)?;
    let listen = t.opt(cx, "listen", listen);
    let store = t.opt(cx, "store", store_url);
    let store_env = t.opt(cx, "store_env", env_name);
    let pending_timeout = t.opt(cx, "pending_timeout", Ttl::parse);
    let key_file = t.opt(cx, "master_key_file", file_path);
    let key_env = t.opt(cx, "master_key_env", env_name);
    let checkpoint_file = t.opt(cx, "audit_checkpoint_file", file_path);
    let checkpoint_interval = t.opt(cx, "audit_checkpoint_interval", Ttl::parse);
    let proxy_header = t.opt(cx, "trusted_proxy_header", header_name);
    let proxies = t.list(cx, "trusted_proxies", SourceRange::parse);
    let tls = read_server_tls(cx, &mut t);
    let proxying = match (proxy_header, proxies) {
        (Ok(Some(header)), Ok(Some(proxies))) if !proxies.is_empty() => Ok(Some((
            header.value,
            proxies.into_iter().map(|p| p.value).collect::<Vec<_>>(),
        ))),
        (Ok(Some(header)), Ok(_)) => {
            cx.error(
                &header.span,
                &t.key("trusted_proxy_header"),
                "a trusted proxy header needs `trusted_proxies` (the proxies' address blocks, e.g. [\"10.0.0.0/8\"]): only a peer inside them may set it, or any caller could claim any address",
            );
            Err(Invalid)
        }
        (Ok(None), Ok(Some(proxies))) if !proxies.is_empty() => {
            cx.error(
                &proxies[0].span,
                &t.key("trusted_proxies"),
                "`trusted_proxies` needs `trusted_proxy_header` (e.g. \"x-forwarded-for\"): the header the proxies put the client's address in",
            );
            Err(Invalid)
        }
        (Ok(_), Ok(_)) => Ok(None),
        _ => Err(Invalid),
    };
    let store = one_of(cx, &t, ("store", store), ("store_env", store_env));
    let master_key = one_of(
        cx,
        &t,
        ("master_key_file", key_file),
        ("master_key_env", key_env),
    );
    t.finish(
        cx,
        &[
            "listen",
            "store",
            "store_env",
            "pending_timeout",
            "master_key_file",
            "master_key_env",
            "audit_checkpoint_file",
            "audit_checkpoint_interval",
            "trusted_proxy_header",
            "trusted_proxies",
            "tls_cert_file",
            "tls_key_file",
            "tls_client_ca_file",
            "tls_client_auth",
        ],
    );
    let defaults = ServerSettings::default();
    let (
        Ok(listen),
        Ok(store),
        Ok(pending_timeout),
        Ok(master_key),
        Ok(checkpoint_file),
        Ok(checkpoint_interval),
        Ok(proxying),
        Ok(tls),
    ) = (
        listen,
        store,
        pending_timeout,
        master_key,
        checkpoint_file,
        checkpoint_interval,
        proxying,
        tls,
    )
    else {
        return None;
    };
    Some(ServerSettings {
        listen: listen.map_or(defaults.listen, |a| a.value),
        store: match store {
            Some(Either::First(url)) => StoreLocation::Url(url),
            Some(Either::Second(var)) => StoreLocation::Env(var),
            None => defaults.store,
        },
        pending_timeout: pending_timeout.map_or(defaults.pending_timeout, |a| a.value),
        master_key: master_key.map(|k| match k {
            Either::First(path) => SecretRef::File(path),
            Either::Second(var) => SecretRef::Env(var),
        }),
        audit_checkpoint_file: checkpoint_file.map(|f| f.value),
        audit_checkpoint_interval: checkpoint_interval
            .map_or(defaults.audit_checkpoint_interval, |a| a.value),
        trusted_proxy_header: proxying.as_ref().map(|(h, _)| h.clone()),
        trusted_proxies: proxying.map(|(_, p)| p).unwrap_or_default(),
        tls,
    })
}

#[derive(Clone, Copy)]
enum ClientAuth {
    Optional,
    Required,
}

fn client_auth(s: &str) -> Result<ClientAuth, String> {
    match s {
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        _ => Err(format!(
            "{:?} is not a client certificate mode; use \"optional\" (ask, serve clients without one) or \"required\" (refuse clients without a verified certificate)",
            s.chars().take(64).collect::<String>()
        )),
    }
}

/// `tls_cert_file` and `tls_key_file` go together; client certificates need both and a CA.
fn read_server_tls(cx: &mut Cx<'_>, t: &mut Table<'_>) -> Result<Option<ServerTls>, Invalid> {
    let cert = t.opt(cx, "tls_cert_file", file_path);
    let key = t.opt(cx, "tls_key_file", file_path);
    let ca = t.opt(cx, "tls_client_ca_file", file_path);
    let auth = t.opt(cx, "tls_client_auth", client_auth);
    let (cert, key, ca, auth) = (cert?, key?, ca?, auth?);
    let ca_span = ca.as_ref().map(|ca| ca.span.clone()).unwrap_or_default();
    let client_certificates = match (ca, auth) {
        (None, None) => ClientCertificates::NotRequested,
        (
            Some(ca),
            None
            | Some(At {
                value: ClientAuth::Optional,
                ..
            }),
        ) => ClientCertificates::Optional { ca_file: ca.value },
        (
            Some(ca),
            Some(At {
                value: ClientAuth::Required,
                ..
            }),
        ) => ClientCertificates::Required { ca_file: ca.value },
        (None, Some(auth)) => {
            cx.error(
                &auth.span,
                &t.key("tls_client_auth"),
                "`tls_client_auth` needs `tls_client_ca_file`: the CA certificates (PEM) that sign the clients' certificates",
            );
            return Err(Invalid);
        }
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ServerTls {
            cert_file: cert.value,
            key_file: key.value,
            client_certificates,
        })),
        (Some(cert), None) => {
            cx.error(
                &cert.span,
                &t.key("tls_cert_file"),
                "`tls_cert_file` needs `tls_key_file`: the certificate's private key (PEM)",
            );
            Err(Invalid)
        }
        (None, Some(key)) => {
            cx.error(
                &key.span,
                &t.key("tls_key_file"),
                "`tls_key_file` needs `tls_cert_file`: the certificate (PEM, a chain allowed)",
            );
            Err(Invalid)
        }
        (None, None) => match client_certificates {
            ClientCertificates::NotRequested => Ok(None),
            ClientCertificates::Optional { .. } | ClientCertificates::Required { .. } => {
                cx.error(
                    &ca_span,
                    &t.key("tls_client_ca_file"),
                    "client certificates need native TLS: set `tls_cert_file` and `tls_key_file` too",
                );
                Err(Invalid)
            }
        },
    }
}

enum Either<T> {
    First(T),
    Second(T),
}

/// At most one of two alternative keys.
fn one_of<T>(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    (first_key, first): (&str, Field<T>),
    (second_key, second): (&str, Field<T>),
) -> Result<Option<Either<T>>, Invalid> {
    match (first?, second?) {
        (Some(a), Some(b)) => {
            let (span, key) = if a.span.start > b.span.start {
                (&a.span, first_key)
            } else {
                (&b.span, second_key)
            };
            cx.error(
                span,
                &t.key(key),
                format!("set either `{first_key}` or `{second_key}`, not both"),
            );
            Err(Invalid)
        }
        (Some(a), None) => Ok(Some(Either::First(a.value))),
        (None, Some(b)) => Ok(Some(Either::Second(b.value))),
        (None, None) => Ok(None),
    }
}

/// The `[governance]` table: the lifecycle settings and the recertification keys.
fn read_governance(cx: &mut Cx<'_>, node: &Node) -> (GovernanceSettings, RecertSettings) {
    let mut settings = GovernanceSettings::default();
    let mut recert = RecertSettings::default();
    let Some(mut t) = Table::of(cx, "governance".into(), node) else {
        return (settings, recert);
    };
    if let Ok(Some(every)) = t.opt(cx, "recertify_every", Period::parse) {
        recert.recertify_every = every.value;
    }
    if let Ok(Some(notice)) = t.opt(cx, "recert_notice", Period::parse) {
        recert.recert_notice = notice.value;
    }
    if let Ok(Some(action)) = t.opt(cx, "orphan_action", |s| match s {
        "suspend" => Ok(OrphanAction::Suspend),
        "flag" => Ok(OrphanAction::Flag),
        other => Err(format!(
            "{other:?} is not an orphan action; write \"suspend\" (end its grants, refuse its requests) or \"flag\" (alert only)"
        )),
    }) {
        settings.orphan_action = action.value;
    }
    if let Ok(Some(grace)) = t.opt(cx, "orphan_grace", Period::parse) {
        settings.orphan_grace = grace.value;
    }
    if let Ok(Some(due)) = t.opt(cx, "review_due", Period::parse) {
        settings.review_due = due.value;
    }
    for (key, slot) in [
        ("shared_max_sources", &mut settings.shared_max_sources),
        ("shared_max_tasks", &mut settings.shared_max_tasks),
    ] {
        if let Ok(Some(n)) = t.number(cx, key, whole_count) {
            *slot = n.value;
        }
    }
    if let Ok(Some(window)) = t.opt(cx, "shared_window", Period::parse) {
        settings.shared_window = window.value;
    }
    if let Ok(Some(after)) = t.opt(cx, "dormant_after", Period::parse) {
        settings.dormant_after = after.value;
    }
    if let Ok(Some(share)) = t.number(cx, "held_past_use_share", Share::new) {
        settings.held_past_use_share = share.value;
    }
    t.finish(cx, &GOVERNANCE_KEYS);
    (settings, recert)
}

const GOVERNANCE_KEYS: [&str; 10] = [
    "orphan_action",
    "orphan_grace",
    "recertify_every",
    "recert_notice",
    "review_due",
    "shared_max_sources",
    "shared_max_tasks",
    "shared_window",
    "dormant_after",
    "held_past_use_share",
];

/// A whole number from 1 to a million (a detector's threshold).
fn whole_count(n: f64) -> Result<u64, String> {
    if n.fract() != 0.0 || !(1.0..=1_000_000.0).contains(&n) {
        return Err(format!(
            "{n} is not a count; write a whole number from 1 to 1000000"
        ));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(n as u64)
}

fn read_tiers(cx: &mut Cx<'_>, node: &Node) -> (TierCaps, BTreeMap<Tier, Binding>) {
    let mut caps = TierCaps::default();
    let mut bindings = BTreeMap::new();
    let Some(mut t) = Table::of(cx, "tiers".into(), node) else {
        return (caps, bindings);
    };
    if let Some(n) = t.node("require_binding")
        && let Some(mut b) = Table::of(cx, "tiers.require_binding".into(), n)
    {
        for tier in Tier::ALL {
            if let Ok(Some(binding)) = b.opt(cx, tier.as_str(), binding) {
                bindings.insert(tier, binding.value);
            }
        }
        b.finish(cx, &Tier::ALL.map(Tier::as_str));
    }
    let mut set: Vec<(Tier, At<Ttl>)> = Vec::new();
    for tier in Tier::ALL {
        if let Ok(Some(ttl)) = t.opt(cx, tier.as_str(), Ttl::parse) {
            caps.set(tier, ttl.value);
            set.push((tier, ttl));
        }
    }
    let mut keys = Tier::ALL.map(Tier::as_str).to_vec();
    keys.push("require_binding");
    t.finish(cx, &keys);
    // A riskier tier must not allow longer grants than a less risky one.
    for (tier, at) in &set {
        if let Some(lower) = Tier::ALL
            .iter()
            .filter(|t| *t < tier)
            .find(|t| caps.cap(**t) < at.value)
        {
            let message = format!(
                "the {tier} tier allows {} but the less risky {lower} tier only {}; riskier tiers must have shorter caps",
                at.value,
                caps.cap(*lower)
            );
            cx.error(&at.span, &format!("tiers.{tier}"), message);
        }
    }
    (caps, bindings)
}

/// Spans of the keys that were read, for later cross-reference errors.
fn spans(t: &Table<'_>, keys: &[&'static str]) -> BTreeMap<&'static str, Range<usize>> {
    keys.iter()
        .filter_map(|k| {
            t.entries
                .iter()
                .find(|e| e.key == *k)
                .map(|e| (*k, e.node.span.clone()))
        })
        .collect()
}

fn item<T>(t: &Table<'_>, keys: &[&'static str], value: T) -> Item<T> {
    let spans = spans(t, keys);
    Item {
        value,
        path: t.path.clone(),
        name_span: spans.get("name").cloned().unwrap_or(t.span.clone()),
        spans,
    }
}

const TRUST_DOMAIN_KEYS: [&str; 2] = ["name", "bundle_file"];

/// A `[[trust_domain]]`: its name and its bundle file, read now and checked by
/// `kairos_crypto::spiffe::TrustBundle::parse` (what the loader accepts, the verifier
/// accepts).
fn read_trust_domain(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<TrustDomain>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", |s| {
        kairos_crypto::spiffe::check_trust_domain(s)
            .map(|()| s.to_owned())
            .map_err(|e| format!("{s:?} is not a trust domain name (e.g. prod.example.org): {e}"))
    });
    let file = t.req(cx, "bundle_file", file_path);
    t.finish(cx, &TRUST_DOMAIN_KEYS);
    let (Ok(name), Ok(file)) = (name, file) else {
        return None;
    };
    let key = resolve(&cx.bundle.main_path, &file.value);
    let bundle = match cx.bundle.files.get(&key) {
        Some(text) => match kairos_crypto::spiffe::TrustBundle::parse(text) {
            Ok(_) => text.clone(),
            Err(problem) => {
                cx.error(
                    &file.span,
                    &t.key("bundle_file"),
                    format!("{:?} {problem}", file.value),
                );
                return None;
            }
        },
        None => {
            cx.error(
                &file.span,
                &t.key("bundle_file"),
                format!(
                    "{:?} is not in the bundle (was it read with the catalog?)",
                    file.value
                ),
            );
            return None;
        }
    };
    Some(item(
        &t,
        &TRUST_DOMAIN_KEYS,
        TrustDomain {
            name: name.value,
            bundle_file: key,
            bundle,
        },
    ))
}

const ISSUER_KEYS: [&str; 7] = [
    "name",
    "issuer",
    "spiffe_trust_domain",
    "audience",
    "jwks_file",
    "jwks_url",
    "max_token_age",
];

fn read_issuer(
    cx: &mut Cx<'_>,
    path: &str,
    node: &Node,
    trust_domains: &[Item<TrustDomain>],
) -> Option<Item<Issuer>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", IssuerName::parse);
    let spiffe_td = t.opt(cx, "spiffe_trust_domain", |s| {
        kairos_crypto::spiffe::check_trust_domain(s)
            .map(|()| s.to_owned())
            .map_err(|e| format!("{s:?} is not a trust domain name: {e}"))
    });
    // A JWT-SVID issuer is found by its trust domain; `issuer` is then optional.
    let issuer = match &spiffe_td {
        Ok(Some(_)) => t.opt(cx, "issuer", issuer_url).map(|i| i.map(|i| i.value)),
        _ => t.req(cx, "issuer", issuer_url).map(|i| Some(i.value)),
    };
    let audience = t.req(cx, "audience", text("audience", 512));
    let file = t.opt(cx, "jwks_file", file_path);
    let url = t.opt(cx, "jwks_url", |s| -> Result<String, String> {
        let url = https_url("jwks_url", s)?;
        kairos_crypto::workload::check_jwks_url(&url)
            .map_err(|why| format!("jwks_url {url:?} cannot be used to fetch keys: {why}"))?;
        Ok(url)
    });
    let max_token_age = t.opt(cx, "max_token_age", Ttl::parse);
    let jwks = match one_of(cx, &t, ("jwks_file", file), ("jwks_url", url)) {
        Ok(Some(Either::First(file))) => {
            let key = resolve(&cx.bundle.main_path, &file);
            let span = t
                .node("jwks_file")
                .map(|n| n.span.clone())
                .unwrap_or(t.span.clone());
            match cx.bundle.files.get(&key).map(|text| jwks(text)) {
                Some(Ok(jwks)) => Ok(JwksRef::Inline { file: key, jwks }),
                Some(Err(problem)) => {
                    cx.error(&span, &t.key("jwks_file"), format!("{file:?} {problem}"));
                    Err(Invalid)
                }
                None => {
                    cx.error(
                        &span,
                        &t.key("jwks_file"),
                        format!("{file:?} is not in the bundle (was it read with the catalog?)"),
                    );
                    Err(Invalid)
                }
            }
        }
        Ok(Some(Either::Second(url))) => Ok(JwksRef::Url(url)),
        Ok(None) if matches!(&spiffe_td, Ok(Some(_))) => {
            // The JWT-SVID keys of the trust domain's bundle.
            let td = spiffe_td
                .as_ref()
                .ok()
                .and_then(|o| o.as_ref())
                .map(|a| a.value.as_str());
            let declared = trust_domains
                .iter()
                .find(|d| Some(d.value.name.as_str()) == td);
            let keys = declared.and_then(|d| {
                kairos_crypto::spiffe::TrustBundle::parse(&d.value.bundle)
                    .ok()
                    .and_then(|b| b.jwt_keys)
                    .map(|jwks| (d.value.bundle_file.clone(), jwks))
            });
            match keys {
                Some((file, jwks)) => Ok(JwksRef::Inline { file, jwks }),
                None => {
                    let span = t
                        .node("spiffe_trust_domain")
                        .map(|n| n.span.clone())
                        .unwrap_or(t.span.clone());
                    cx.error(
                        &span,
                        &t.key("spiffe_trust_domain"),
                        format!(
                            "no keys for this trust domain's JWT-SVIDs: set `jwks_file` or `jwks_url`, or declare a [[trust_domain]] named {:?} whose bundle (SPIFFE bundle format) has `jwt-svid` keys",
                            td.unwrap_or_default()
                        ),
                    );
                    Err(Invalid)
                }
            }
        }
        Ok(None) => {
            cx.error(
                &t.span,
                path,
                "set `jwks_file` (a JWKS file next to this one) or `jwks_url` (an https:// URL) so that tokens from this issuer can be verified",
            );
            Err(Invalid)
        }
        Err(Invalid) => Err(Invalid),
    };
    // Unknown keys are reported, but the item is still cross-checked: any error
    // refuses the whole catalog anyway.
    t.finish(cx, &ISSUER_KEYS);
    let (Ok(name), Ok(issuer), Ok(audience), Ok(jwks), Ok(max_token_age), Ok(spiffe_td)) =
        (name, issuer, audience, jwks, max_token_age, spiffe_td)
    else {
        return None;
    };
    Some(item(
        &t,
        &ISSUER_KEYS,
        Issuer {
            name: name.value,
            issuer: issuer.unwrap_or_default(),
            audience: audience.value,
            jwks,
            spiffe_trust_domain: spiffe_td.map(|t| t.value),
            max_token_age: match max_token_age {
                Some(age) => age.value,
                None => Ttl::from_secs(DEFAULT_MAX_TOKEN_AGE_SECS).ok()?,
            },
        },
    ))
}

/// The longest platform-token lifetime accepted by default: 24 h.
const DEFAULT_MAX_TOKEN_AGE_SECS: u64 = 24 * 3600;

const TEAM_KEYS: [&str; 4] = ["name", "owners", "approvers", "recertify_every"];

fn read_team(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<Team>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", TeamName::parse);
    let owners = match t.list(cx, "owners", UserName::parse) {
        Ok(Some(owners)) if !owners.is_empty() => Ok(owners),
        Ok(Some(_)) => {
            let span = t
                .node("owners")
                .map(|n| n.span.clone())
                .unwrap_or(t.span.clone());
            cx.error(
                &span,
                &t.key("owners"),
                "a team needs at least one owner: someone accountable for its identities",
            );
            Err(Invalid)
        }
        Ok(None) => {
            t.missing(cx, "owners");
            Err(Invalid)
        }
        Err(Invalid) => Err(Invalid),
    };
    let approvers = t.list(cx, "approvers", UserName::parse);
    let recertify_every = t.opt(cx, "recertify_every", Period::parse);
    // Unknown keys are reported, but the item is still cross-checked: any error
    // refuses the whole catalog anyway.
    t.finish(cx, &TEAM_KEYS);
    let (Ok(name), Ok(owners), Ok(approvers), Ok(recertify_every)) =
        (name, owners, approvers, recertify_every)
    else {
        return None;
    };
    let users = |v: Vec<At<UserName>>| v.into_iter().map(|a| a.value).collect();
    Some(item(
        &t,
        &TEAM_KEYS,
        Team {
            name: name.value,
            owners: users(owners),
            approvers: approvers.map(users).unwrap_or_default(),
            recertify_every: recertify_every.map(|p| p.value),
        },
    ))
}

const IDENTITY_KEYS: [&str; 8] = [
    "name",
    "owner",
    "kind",
    "issuer",
    "subject",
    "spiffe_id",
    "allowed_sources",
    "recertify_every",
];

fn read_identity(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<Identity>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", IdentityName::parse);
    let owner = t.req(cx, "owner", TeamName::parse);
    let kind = t.req(cx, "kind", kind_word);
    let issuer = t.opt(cx, "issuer", IssuerName::parse);
    let subject = t.opt(cx, "subject", text("subject", 512));
    let spiffe_id = t.opt(cx, "spiffe_id", |s| {
        kairos_crypto::spiffe::SpiffeId::parse(s)
            .map(|id| id.to_string())
            .map_err(|e| format!("{s:?} is not a SPIFFE ID: {e}"))
    });
    // A platform-token mapping (issuer and subject), a SPIFFE mapping, or both.
    let mapping_ok = match (&issuer, &subject, &spiffe_id) {
        (Ok(Some(_)), Ok(Some(_)), _) | (Ok(None), Ok(None), Ok(Some(_))) => true,
        (Ok(Some(_)), Ok(None), _) => {
            t.missing(cx, "subject");
            false
        }
        (Ok(None), Ok(Some(_)), _) => {
            t.missing(cx, "issuer");
            false
        }
        (Ok(None), Ok(None), Ok(None)) => {
            cx.error(
                &t.span,
                path,
                "an identity needs a way to authenticate: `issuer` and `subject` (a platform token), `spiffe_id` (a SPIFFE SVID), or both",
            );
            false
        }
        _ => false,
    };
    let allowed_sources = t.list(cx, "allowed_sources", SourceRange::parse);
    let recertify_every = t.opt(cx, "recertify_every", Period::parse);
    // Unknown keys are reported, but the item is still cross-checked: any error
    // refuses the whole catalog anyway.
    t.finish(cx, &IDENTITY_KEYS);
    let (
        Ok(name),
        Ok(owner),
        Ok(kind),
        Ok(issuer),
        Ok(subject),
        Ok(spiffe_id),
        Ok(allowed_sources),
        Ok(recertify_every),
        true,
    ) = (
        name,
        owner,
        kind,
        issuer,
        subject,
        spiffe_id,
        allowed_sources,
        recertify_every,
        mapping_ok,
    )
    else {
        return None;
    };
    Some(item(
        &t,
        &IDENTITY_KEYS,
        Identity {
            name: name.value,
            owner: owner.value,
            kind: kind.value,
            issuer: issuer.map(|i| i.value),
            subject: subject.map(|s| s.value),
            spiffe_id: spiffe_id.map(|s| s.value),
            allowed_sources: allowed_sources
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.value)
                .collect(),
            recertify_every: recertify_every.map(|p| p.value),
        },
    ))
}

const TARGET_KEYS: [&str; 13] = [
    "name",
    "kind",
    "owner",
    "audience",
    "admin_url_env",
    "admin_url_file",
    "managed_prefix",
    "connect_host",
    "reconcile_interval",
    "account_host",
    "amqp_port",
    "scram_iterations",
    "krl_file",
];

/// The keys that belong to some target kinds only, and the kinds they belong to.
const KIND_KEYS: [(&str, &[KindWord], &str); 10] = [
    ("audience", &[KindWord::Token], "token targets"),
    (
        "admin_url_env",
        &[
            KindWord::Postgres,
            KindWord::MariaDb,
            KindWord::Redis,
            KindWord::RabbitMq,
        ],
        "postgres, mariadb, redis and rabbitmq targets",
    ),
    (
        "admin_url_file",
        &[
            KindWord::Postgres,
            KindWord::MariaDb,
            KindWord::Redis,
            KindWord::RabbitMq,
        ],
        "postgres, mariadb, redis and rabbitmq targets",
    ),
    (
        "managed_prefix",
        &[
            KindWord::Postgres,
            KindWord::MariaDb,
            KindWord::Redis,
            KindWord::RabbitMq,
        ],
        "postgres, mariadb, redis and rabbitmq targets",
    ),
    (
        "connect_host",
        &[
            KindWord::Postgres,
            KindWord::MariaDb,
            KindWord::Redis,
            KindWord::RabbitMq,
        ],
        "postgres, mariadb, redis and rabbitmq targets",
    ),
    (
        "reconcile_interval",
        &[
            KindWord::Postgres,
            KindWord::MariaDb,
            KindWord::Redis,
            KindWord::RabbitMq,
        ],
        "postgres, mariadb, redis and rabbitmq targets",
    ),
    ("account_host", &[KindWord::MariaDb], "mariadb targets"),
    ("amqp_port", &[KindWord::RabbitMq], "rabbitmq targets"),
    (
        "scram_iterations",
        &[KindWord::Postgres],
        "postgres targets",
    ),
    ("krl_file", &[KindWord::Ssh], "ssh targets"),
];

fn read_target(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<Target>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", TargetName::parse);
    let kind = t.req(cx, "kind", target_kind);
    let owner = t.opt(cx, "owner", TeamName::parse);
    let audience = t.opt(cx, "audience", text("audience", 512));
    let admin_env = t.opt(cx, "admin_url_env", env_name);
    let admin_file = t.opt(cx, "admin_url_file", file_path);
    let prefix = t.opt(cx, "managed_prefix", managed_prefix);
    let host = t.opt(cx, "connect_host", connect_host);
    let interval = t.opt(cx, "reconcile_interval", Ttl::parse);
    let account_host = t.opt(cx, "account_host", account_host);
    let amqp_port = t.number(cx, "amqp_port", port_number);
    let scram_iterations = t.number(cx, "scram_iterations", scram_iterations);
    let krl_file = t.opt(cx, "krl_file", krl_file);
    // An inline `admin_url` is reported by `finish` as a secret; saying "admin_url_env
    // is missing" as well would only repeat it.
    let inline_admin_url = t.entries.iter().any(|e| e.key == "admin_url");
    // Unknown keys are reported, but the item is still cross-checked: any error
    // refuses the whole catalog anyway.
    t.finish(cx, &TARGET_KEYS);
    let kind = kind.ok()?.value;

    let mut misplaced = false;
    for (key, kinds, which) in KIND_KEYS {
        if kinds.contains(&kind) {
            continue;
        }
        if let Some(entry) = t.entries.iter().find(|e| e.key == key) {
            cx.error(
                &entry.node.span,
                &t.key(key),
                format!(
                    "`{key}` applies only to {which}; this target's kind is {}",
                    kind.as_str()
                ),
            );
            misplaced = true;
        }
    }

    let built = match kind {
        KindWord::Token => match audience {
            Ok(Some(audience)) => Ok(TargetKind::Token {
                audience: audience.value,
            }),
            Ok(None) => {
                t.missing(cx, "audience");
                Err(Invalid)
            }
            Err(Invalid) => Err(Invalid),
        },
        KindWord::Ssh => krl_file.map(|f| {
            TargetKind::Ssh(SshTarget {
                krl_file: f.map(|f| f.value),
            })
        }),
        KindWord::Postgres | KindWord::MariaDb | KindWord::Redis | KindWord::RabbitMq => {
            let admin_url = match one_of(
                cx,
                &t,
                ("admin_url_env", admin_env),
                ("admin_url_file", admin_file),
            ) {
                Ok(Some(Either::First(var))) => Ok(SecretRef::Env(var)),
                Ok(Some(Either::Second(path))) => Ok(SecretRef::File(path)),
                Ok(None) if inline_admin_url => Err(Invalid),
                Ok(None) => {
                    cx.error(
                        &t.span,
                        &t.key("admin_url_env"),
                        format!(
                            "a {} target needs its admin connection URL: set `admin_url_env` (an environment variable holding it) or `admin_url_file` (a file holding it)",
                            kind.as_str()
                        ),
                    );
                    Err(Invalid)
                }
                Err(Invalid) => Err(Invalid),
            };
            let account_host = match kind {
                KindWord::MariaDb => account_host.map(|h| {
                    Some(h.map_or_else(|| DbTarget::DEFAULT_ACCOUNT_HOST.to_owned(), |h| h.value))
                }),
                _ => Ok(None),
            };
            let amqp_port = match kind {
                KindWord::RabbitMq => {
                    amqp_port.map(|p| Some(p.map_or(DbTarget::DEFAULT_AMQP_PORT, |p| p.value)))
                }
                _ => Ok(None),
            };
            let scram_iterations = match kind {
                KindWord::Postgres => scram_iterations
                    .map(|n| Some(n.map_or(DbTarget::DEFAULT_SCRAM_ITERATIONS, |n| n.value))),
                _ => Ok(None),
            };
            match (
                admin_url,
                prefix,
                host,
                interval,
                account_host,
                amqp_port,
                scram_iterations,
            ) {
                (
                    Ok(admin_url),
                    Ok(prefix),
                    Ok(host),
                    Ok(interval),
                    Ok(account_host),
                    Ok(amqp_port),
                    Ok(scram_iterations),
                ) => {
                    let db = DbTarget {
                        admin_url,
                        managed_prefix: prefix.map_or_else(
                            || DbTarget::DEFAULT_MANAGED_PREFIX.to_owned(),
                            |p| p.value,
                        ),
                        connect_host: host.map(|h| h.value),
                        reconcile_interval: interval
                            .map_or_else(DbTarget::default_reconcile_interval, |i| i.value),
                        account_host,
                        amqp_port,
                        scram_iterations,
                    };
                    Ok(match kind {
                        KindWord::MariaDb => TargetKind::MariaDb(db),
                        KindWord::Redis => TargetKind::Redis(db),
                        KindWord::RabbitMq => TargetKind::RabbitMq(db),
                        _ => TargetKind::Postgres(db),
                    })
                }
                _ => Err(Invalid),
            }
        }
    };
    let (Ok(name), Ok(kind), Ok(owner), false) = (name, built, owner, misplaced) else {
        return None;
    };
    Some(item(
        &t,
        &TARGET_KEYS,
        Target {
            name: name.value,
            kind,
            owner: owner.map(|o| o.value),
        },
    ))
}

/// Two targets of the same kind reached through the same admin reference must not have
/// overlapping managed prefixes: each reconciler would take the other's accounts for
/// residue and drop them.
fn check_prefixes(cx: &mut Cx<'_>, targets: &[Item<Target>]) {
    for (i, item) in targets.iter().enumerate() {
        let Some(db) = item.value.db() else { continue };
        let clash = targets[..i].iter().find(|other| {
            other.value.kind_name() == item.value.kind_name()
                && other.value.db().is_some_and(|o| {
                    o.admin_url == db.admin_url
                        && (o.managed_prefix.starts_with(&db.managed_prefix)
                            || db.managed_prefix.starts_with(&o.managed_prefix))
                })
        });
        let Some(other) = clash else { continue };
        let other_prefix = other
            .value
            .db()
            .map(|o| o.managed_prefix.as_str())
            .unwrap_or_default();
        let how = if other_prefix == db.managed_prefix {
            format!("the same managed prefix {:?}", db.managed_prefix)
        } else {
            format!(
                "managed prefix {:?}, which overlaps its {other_prefix:?}",
                db.managed_prefix
            )
        };
        let defaulted = if item.spans.contains_key("managed_prefix") {
            ""
        } else {
            " (the default)"
        };
        let message = format!(
            "target {} has the same kind ({}) and admin URL ({}) as target {} (line {}) and {how}{defaulted}; each would reconcile (drop) the other's accounts: give them managed prefixes that do not start with one another",
            item.value.name,
            item.value.kind_name(),
            db.admin_url.describe(),
            other.value.name,
            cx.line(&other.name_span),
        );
        cx.error(
            item.span("managed_prefix"),
            &item.key("managed_prefix"),
            message,
        );
    }
}

const ENTITLEMENT_KEYS: [&str; 17] = [
    "name",
    "target",
    "tier",
    "max_ttl",
    "scopes",
    "grants",
    "acl",
    "rabbitmq",
    "over_cap",
    "approval_team",
    "danger_allow_admin_grants",
    "break_glass",
    "require_binding",
    "principals",
    "force_command",
    "source_address",
    "extensions",
];

/// An entitlement's SSH keys as read (before its target's kind says whether they apply).
#[derive(Default)]
struct DraftSsh {
    principals: Option<Vec<String>>,
    force_command: Option<String>,
    source_address: Option<Vec<String>>,
    extensions: Option<Vec<String>>,
}

impl DraftSsh {
    /// The keys given, by name.
    fn present(&self) -> [(&'static str, bool); 3] {
        [
            ("force_command", self.force_command.is_some()),
            ("source_address", self.source_address.is_some()),
            ("extensions", self.extensions.is_some()),
        ]
    }
}

/// An entitlement as read, before its target's kind says which privilege key it needs.
struct DraftEntitlement {
    name: EntitlementName,
    target: TargetName,
    tier: Tier,
    max_ttl: Ttl,
    scopes: Option<Vec<String>>,
    grants: Option<Vec<String>>,
    acl: Option<Vec<String>>,
    rabbitmq: Option<RabbitMqPermissions>,
    over_cap: OverCap,
    approval_team: Option<TeamName>,
    break_glass: bool,
    require_binding: Option<Binding>,
    ssh: DraftSsh,
}

fn read_entitlement(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<DraftEntitlement>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", EntitlementName::parse);
    let target = t.opt(cx, "target", TargetName::parse);
    let tier = t.req(cx, "tier", tier);
    let max_ttl = t.req(cx, "max_ttl", Ttl::parse);
    let scopes = t.list(cx, "scopes", scope);
    let grants = t.list(cx, "grants", grant_template);
    let acl = t.list(cx, "acl", acl_rule);
    let rabbitmq = read_rabbitmq(cx, &mut t);
    let over_cap = t.opt(cx, "over_cap", over_cap);
    let approval_team = t.opt(cx, "approval_team", TeamName::parse);
    let allow_admin = t.flag(cx, "danger_allow_admin_grants");
    let break_glass = t.flag(cx, "break_glass");
    let require_binding = t.opt(cx, "require_binding", binding);
    let principals = t.list(cx, "principals", principal);
    let force_command = t.opt(cx, "force_command", force_command);
    let source_address = t.list(cx, "source_address", cidr);
    let extensions = t.list(cx, "extensions", ssh_extension);
    if !matches!(allow_admin, Ok(Some(true))) {
        refuse_admin(cx, &t, "grants", &grants, admin_grant_problem);
        refuse_admin(cx, &t, "acl", &acl, admin_acl_problem);
    }
    // Unknown keys are reported, but the item is still cross-checked: any error
    // refuses the whole catalog anyway.
    t.finish(cx, &ENTITLEMENT_KEYS);
    let (
        Ok(name),
        Ok(target),
        Ok(tier),
        Ok(max_ttl),
        Ok(scopes),
        Ok(grants),
        Ok(acl),
        Ok(rabbitmq),
        Ok(over_cap),
        Ok(approval_team),
        Ok(_),
        Ok(break_glass),
        Ok(require_binding),
        Ok(principals),
        Ok(force_command),
        Ok(source_address),
        Ok(extensions),
    ) = (
        name,
        target,
        tier,
        max_ttl,
        scopes,
        grants,
        acl,
        rabbitmq,
        over_cap,
        approval_team,
        allow_admin,
        break_glass,
        require_binding,
        principals,
        force_command,
        source_address,
        extensions,
    )
    else {
        return None;
    };
    let name = name.value;
    // `target` may be left out: it is the part of the name before '/'.
    let target = match target {
        Some(t) => t.value,
        None => match TargetName::parse(name.target()) {
            Ok(t) => t,
            Err(e) => {
                cx.error(&t.span, &t.key("name"), e.to_string());
                return None;
            }
        },
    };
    let strings = |items: Option<Vec<At<String>>>| items.map(|v| string_list(Some(v)));
    Some(item(
        &t,
        &ENTITLEMENT_KEYS,
        DraftEntitlement {
            name,
            target,
            tier: tier.value,
            max_ttl: max_ttl.value,
            scopes: strings(scopes),
            grants: strings(grants),
            acl: strings(acl),
            rabbitmq,
            over_cap: over_cap.map_or(OverCap::Refuse, |o| o.value),
            approval_team: approval_team.map(|a| a.value),
            break_glass: break_glass.unwrap_or(false),
            require_binding: require_binding.map(|b| b.value),
            ssh: DraftSsh {
                principals: strings(principals),
                force_command: force_command.map(|f| f.value),
                source_address: strings(source_address),
                extensions: strings(extensions),
            },
        },
    ))
}

const RABBITMQ_KEYS: [&str; 5] = ["vhost", "configure", "write", "read", "topic"];
const RABBITMQ_TOPIC_KEYS: [&str; 3] = ["exchange", "write", "read"];
const RABBITMQ_EXAMPLE: &str = "[entitlement.rabbitmq] vhost = \"/\", configure = \"^$\", write = \"^orders\\\\.\", read = \"^orders\\\\.\"";

/// A RabbitMQ permission pattern: a regular expression RabbitMQ will accept. RabbitMQ
/// matches with PCRE; Kairos checks with Rust's `regex`, so PCRE-only syntax (look-around,
/// back-references) is refused here even though RabbitMQ would take it.
fn rabbitmq_pattern(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("a permission pattern must not contain control characters".into());
    }
    if s.len() > 1024 {
        return Err("a permission pattern is longer than 1024 characters".into());
    }
    regex::Regex::new(s).map(|_| s.to_owned()).map_err(|e| {
        let why = e.to_string();
        let last = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!(
            "{} is not a valid regular expression ({}); write e.g. \"^orders\\\\.\" (names starting with `orders.`) or \"^$\" (nothing)",
            quoted(s),
            last.trim().trim_start_matches("error: ")
        )
    })
}

/// A RabbitMQ virtual host or exchange name.
fn rabbitmq_name(what: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |s: &str| {
        if s.is_empty() {
            Err(format!("{what} must not be empty"))
        } else if s.len() > 255 {
            Err(format!("{what} is longer than 255 bytes"))
        } else if s.chars().any(char::is_control) {
            Err(format!("{what} must not contain control characters"))
        } else {
            Ok(s.to_owned())
        }
    }
}

/// `[entitlement.rabbitmq]`: `vhost`, `configure`, `write`, `read` (all required) and
/// optionally `topic = { exchange, write, read }`.
fn read_rabbitmq(
    cx: &mut Cx<'_>,
    parent: &mut Table<'_>,
) -> Result<Option<RabbitMqPermissions>, Invalid> {
    let path = parent.key("rabbitmq");
    let Some(node) = parent.node("rabbitmq") else {
        return Ok(None);
    };
    let Some(mut t) = Table::of(cx, path.clone(), node) else {
        return Err(Invalid);
    };
    let vhost = t.req(cx, "vhost", rabbitmq_name("the virtual host"));
    let configure = t.req(cx, "configure", rabbitmq_pattern);
    let write = t.req(cx, "write", rabbitmq_pattern);
    let read = t.req(cx, "read", rabbitmq_pattern);
    let topic = match t.node("topic") {
        None => Ok(None),
        Some(node) => match Table::of(cx, t.key("topic"), node) {
            None => Err(Invalid),
            Some(mut topic) => {
                let exchange = topic.req(cx, "exchange", rabbitmq_name("the topic exchange"));
                let write = topic.req(cx, "write", rabbitmq_pattern);
                let read = topic.req(cx, "read", rabbitmq_pattern);
                topic.finish(cx, &RABBITMQ_TOPIC_KEYS);
                match (exchange, write, read) {
                    (Ok(exchange), Ok(write), Ok(read)) => Ok(Some(RabbitMqTopic {
                        exchange: exchange.value,
                        write: write.value,
                        read: read.value,
                    })),
                    _ => Err(Invalid),
                }
            }
        },
    };
    t.finish(cx, &RABBITMQ_KEYS);
    match (vhost, configure, write, read, topic) {
        (Ok(vhost), Ok(configure), Ok(write), Ok(read), Ok(topic)) => {
            Ok(Some(RabbitMqPermissions {
                vhost: vhost.value,
                configure: configure.value,
                write: write.value,
                read: read.value,
                topic,
            }))
        }
        _ => Err(Invalid),
    }
}

/// The privileges of an entitlement on a target of `kind`: the key that kind needs must
/// be there and non-empty, and the keys of the other kinds must not be.
fn privileges(
    cx: &mut Cx<'_>,
    item: &Item<DraftEntitlement>,
    kind: &TargetKind,
) -> Option<Privileges> {
    let e = &item.value;
    if let TargetKind::Ssh(_) = kind {
        return ssh_privileges(cx, item);
    }
    let mut ok = true;
    for (key, present) in e.ssh.present() {
        if present {
            let message = format!(
                "`{key}` applies only to ssh targets; target {} is {}",
                e.target,
                kind.as_str()
            );
            cx.error(item.span(key), &item.key(key), message);
            ok = false;
        }
    }
    let role = e.name.role();
    if let TargetKind::RabbitMq(_) = kind {
        let mut ok = true;
        for (other, present, which) in [
            ("scopes", e.scopes.is_some(), "token targets"),
            ("grants", e.grants.is_some(), "postgres and mariadb targets"),
            ("acl", e.acl.is_some(), "redis targets"),
        ] {
            if present {
                cx.error(
                    item.span(other),
                    &item.key(other),
                    format!(
                        "`{other}` applies only to {which}; target {} is rabbitmq: write its permissions as {RABBITMQ_EXAMPLE}",
                        e.target
                    ),
                );
                ok = false;
            }
        }
        let Some(permissions) = &e.rabbitmq else {
            cx.error(
                item.span("rabbitmq"),
                &item.key("rabbitmq"),
                format!(
                    "rabbitmq permissions are required: target {} is rabbitmq, and a user without permissions can do nothing; write e.g. {RABBITMQ_EXAMPLE}",
                    e.target
                ),
            );
            return None;
        };
        return ok.then(|| Privileges::RabbitMq(permissions.clone()));
    }
    if e.rabbitmq.is_some() {
        cx.error(
            item.span("rabbitmq"),
            &item.key("rabbitmq"),
            format!(
                "`rabbitmq` applies only to rabbitmq targets; target {} is {}",
                e.target,
                kind.as_str()
            ),
        );
        return None;
    }
    let (key, list, wrap, example): (_, _, fn(Vec<String>) -> Privileges, _) = match kind {
        TargetKind::Ssh(_) => return None,
        TargetKind::Token { .. } => (
            "scopes",
            &e.scopes,
            Privileges::Scopes,
            format!("scopes = [\"{}:{role}\"]", e.target),
        ),
        TargetKind::Postgres(_) => (
            "grants",
            &e.grants,
            Privileges::Sql,
            "grants = [\"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{role}}\"]".to_owned(),
        ),
        TargetKind::MariaDb(_) => (
            "grants",
            &e.grants,
            Privileges::Sql,
            "grants = [\"GRANT SELECT ON orders.* TO {{role}}\"]".to_owned(),
        ),
        TargetKind::Redis(_) => (
            "acl",
            &e.acl,
            Privileges::RedisAcl,
            "acl = [\"~sessions:*\", \"+get\"]".to_owned(),
        ),
        TargetKind::RabbitMq(_) => return None,
    };
    let kind_name = kind.as_str();
    for (other, present, which) in [
        ("scopes", e.scopes.is_some(), "token targets"),
        ("grants", e.grants.is_some(), "postgres and mariadb targets"),
        ("acl", e.acl.is_some(), "redis targets"),
        ("principals", e.ssh.principals.is_some(), "ssh targets"),
    ] {
        if other != key && present {
            let message = format!(
                "`{other}` applies only to {which}; target {} is {kind_name}: write its privileges as `{key}`, e.g. {example}",
                e.target
            );
            cx.error(item.span(other), &item.key(other), message);
            ok = false;
        }
    }
    match list {
        Some(list) if !list.is_empty() => ok.then(|| wrap(list.clone())),
        _ => {
            let message = match kind {
                TargetKind::Token { .. } => format!(
                    "scopes are required: target {} issues tokens, and a token without scopes grants nothing (e.g. {example})",
                    e.target
                ),
                TargetKind::Postgres(_) | TargetKind::MariaDb(_) => format!(
                    "grants are required: target {} is {kind_name}, and an account without grants can do nothing; write one SQL statement per entry with {{{{role}}}} where the account goes, e.g. {example}",
                    e.target
                ),
                TargetKind::RabbitMq(_) => String::new(),
                TargetKind::Redis(_) => format!(
                    "acl is required: target {} is redis, and an account without ACL rules can do nothing; write one rule per entry, e.g. {example}",
                    e.target
                ),
                TargetKind::Ssh(_) => return None,
            };
            cx.error(item.span(key), &item.key(key), message);
            None
        }
    }
}

/// The privileges of an entitlement on an `ssh` target: `principals` (required, not
/// empty), the critical options and the extensions; the other kinds' keys are refused.
fn ssh_privileges(cx: &mut Cx<'_>, item: &Item<DraftEntitlement>) -> Option<Privileges> {
    let e = &item.value;
    let mut ok = true;
    for (other, present) in [
        ("scopes", e.scopes.is_some()),
        ("grants", e.grants.is_some()),
        ("acl", e.acl.is_some()),
    ] {
        if present {
            let message = format!(
                "`{other}` does not apply to target {}, which is ssh: write what its certificates allow as `principals = [\"deploy\"]` (the user names they may log in as), with optional `force_command`, `source_address` and `extensions`",
                e.target
            );
            cx.error(item.span(other), &item.key(other), message);
            ok = false;
        }
    }
    let principals = match &e.ssh.principals {
        Some(p) if !p.is_empty() => p.clone(),
        _ => {
            let message = format!(
                "principals are required: target {} is ssh, and a certificate without principals logs in as nobody; list the user names it may log in as, e.g. principals = [\"deploy\"]",
                e.target
            );
            cx.error(item.span("principals"), &item.key("principals"), message);
            return None;
        }
    };
    ok.then(|| {
        Privileges::Ssh(SshPrivileges {
            principals,
            force_command: e.ssh.force_command.clone(),
            source_address: e.ssh.source_address.clone().unwrap_or_default(),
            extensions: e.ssh.extensions.clone().unwrap_or_else(|| {
                kairos_ssh::DEFAULT_EXTENSIONS
                    .iter()
                    .map(|x| (*x).to_owned())
                    .collect()
            }),
        })
    })
}

/// `krl_file`: an absolute path (sshd's `RevokedKeys` needs one, and the server's
/// working directory is not the catalog's).
fn krl_file(s: &str) -> Result<String, String> {
    let path = file_path(s)?;
    if !path.starts_with('/') {
        return Err(format!(
            "krl_file {} must be an absolute path (e.g. \"/etc/ssh/kairos.krl\"), the file sshd's RevokedKeys names",
            quoted(s)
        ));
    }
    Ok(path)
}

/// An SSH principal (a user name on the hosts): 1-64 letters, digits, `.`, `_`, `-`, `@`.
fn principal(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "principal {} must be a user name: 1-64 letters, digits, '.', '_', '-' or '@', not starting with '-' (e.g. \"deploy\")",
            quoted(s)
        ))
    }
}

fn force_command(s: &str) -> Result<String, String> {
    text("force_command", 1024)(s)
}

/// An address block for `source_address`: `10.0.0.0/8`, `2001:db8::/32` or one address.
fn cidr(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "source_address {} is not an address block; write a CIDR such as \"10.0.0.0/8\" or one address such as \"192.0.2.7\"",
            quoted(s)
        )
    };
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    if let Some(bits) = bits {
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
    }
    Ok(s.to_owned())
}

fn ssh_extension(s: &str) -> Result<String, String> {
    if kairos_ssh::KNOWN_EXTENSIONS.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "extension {} is not an OpenSSH certificate extension; use some of {}",
            quoted(s),
            kairos_ssh::KNOWN_EXTENSIONS.join(", ")
        ))
    }
}

/// Compiles the policy files matched by `[policy] files`. `None` if anything failed.
fn read_policies(cx: &mut Cx<'_>, node: Option<&Node>) -> Option<PolicySet> {
    let Some(node) = node else {
        return Some(PolicySet::empty());
    };
    let mut t = Table::of(cx, "policy".into(), node)?;
    let globs = t.list(cx, "files", |s| {
        glob::Pattern::new(s)
            .map(|_| s.to_owned())
            .map_err(|e| format!("{s:?} is not a valid glob: {e}"))
    });
    t.finish(cx, &["files"]);
    let globs = globs.ok()?.unwrap_or_default();
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    let mut files: BTreeSet<&str> = BTreeSet::new();
    let mut ok = true;
    for (i, glob) in globs.iter().enumerate() {
        let written = &glob.value;
        let Ok(pattern) = glob::Pattern::new(&resolve(&cx.bundle.main_path, written)) else {
            continue;
        };
        let matched: Vec<&str> = cx
            .bundle
            .files
            .keys()
            .map(String::as_str)
            .filter(|k| *k != cx.bundle.main_path && pattern.matches_with(k, options))
            .collect();
        if matched.is_empty() {
            ok = false;
            cx.error(
                &glob.span,
                &format!("policy.files[{i}]"),
                format!("glob {written:?} matches no file"),
            );
        }
        files.extend(matched);
    }
    if !ok {
        return None;
    }
    let sources: Vec<PolicySource> = files
        .iter()
        .filter_map(|f| {
            cx.bundle.files.get(*f).map(|text| PolicySource {
                path: (*f).to_owned(),
                text: text.clone(),
            })
        })
        .collect();
    match PolicySet::compile(&sources) {
        Ok(set) => Some(set),
        Err(errors) => {
            for e in errors {
                let (file, line, column) = match &e.location {
                    Some(at) => (at.file.clone(), Some(at.line), Some(at.column)),
                    None => (cx.file.to_owned(), None, None),
                };
                cx.errors.push(ConfigError {
                    file,
                    line,
                    column,
                    key: None,
                    message: e.kind.to_string(),
                });
            }
            None
        }
    }
}
