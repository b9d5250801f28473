//! `kairos recert …` and `kairos exception …`: recertification and standing exceptions.

use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::Io;
use crate::api::{Api, CliError, Exit};
use crate::render::{Table, clean};

#[derive(Debug, Clone, Subcommand)]
pub enum RecertCommand {
    /// List the recertifications of identities and standing exceptions, due soonest first.
    List(RecertListArgs),
    /// As an owner of its team, re-attest an identity (or, with --exception, a standing
    /// exception): its next cycle starts now, and an identity suspended because its
    /// recertification was overdue is resumed.
    Attest(AttestArgs),
    /// As an owner of its team, retire an identity for good instead of attesting it: its
    /// grants end (verified gone) and its requests are refused.
    Retire {
        /// The identity to retire.
        name: String,
        /// Why it is no longer needed (required).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("which").args(["due", "overdue"]).multiple(false)))]
pub struct RecertListArgs {
    /// Only those whose owners' review is open (not yet overdue).
    #[arg(long)]
    pub due: bool,
    /// Only those past their due date (identities among them are suspended).
    #[arg(long)]
    pub overdue: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("subject").args(["name", "exception"]).required(true).multiple(false)))]
pub struct AttestArgs {
    /// The identity to re-attest.
    pub name: Option<String>,
    /// Re-attest this standing exception instead of an identity.
    #[arg(long, value_name = "NAME")]
    pub exception: Option<String>,
    /// Why it should keep existing (required).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ExceptionCommand {
    /// List the standing exceptions: static secrets with their owner, rotation, end date,
    /// compensating controls and what is wrong with them.
    List,
    /// Record that an exception's secret was rotated now (an owner of its team, an
    /// operator or an admin).
    Rotated {
        /// The exception.
        name: String,
        /// How or where it was rotated (a ticket, a change).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

// ---- wire: the fields printed (lenient, as in `wire.rs`) ---------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Recert {
    pub kind: String,
    pub subject: String,
    pub team: String,
    pub recertify_every: String,
    pub last_attested_at: Option<String>,
    pub attested_by: Option<String>,
    pub due_at: String,
    pub review_opens_at: String,
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RecertList {
    pub recertifications: Vec<Recert>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Finding {
    pub finding: String,
    pub since: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Exception {
    pub name: String,
    pub identity: String,
    pub owner: String,
    pub system: String,
    pub secret_ref: String,
    pub rotate_every: String,
    pub ends: String,
    pub allowed_sources: Vec<String>,
    pub last_rotated_at: Option<String>,
    pub rotated_by: Option<String>,
    pub rotation_due_at: String,
    pub findings: Vec<Finding>,
    pub recertification: Recert,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ExceptionList {
    pub exceptions: Vec<Exception>,
}

// ---- commands ------------------------------------------------------------------------------

pub async fn recert(api: &Api, command: RecertCommand, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match command {
        RecertCommand::List(a) => {
            let query: Vec<(&str, String)> = if a.due {
                vec![("state", "due".into())]
            } else if a.overdue {
                vec![("state", "overdue".into())]
            } else {
                Vec::new()
            };
            let ans = api.get(&["v1", "recertifications"], &query).await?;
            io.show(&ans, || {
                let list: RecertList = ans.decode()?;
                Ok(recert_table(&list.recertifications))
            })?;
        }
        RecertCommand::Attest(a) => {
            let (kind, name) = match (&a.name, &a.exception) {
                (_, Some(exception)) => ("exception", exception.as_str()),
                (Some(name), None) => ("identity", name.as_str()),
                (None, None) => {
                    return Err(CliError::Usage(
                        "name the identity to attest, or --exception NAME".into(),
                    ));
                }
            };
            let body = json!({ "reason": a.reason });
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "recertifications", kind, name, "attest"],
                    Some(&body),
                )
                .await?;
            io.show(&ans, || Ok(attested(&ans.decode()?)))?;
        }
        RecertCommand::Retire { name, reason } => {
            let body = json!({ "reason": reason });
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "recertifications", "identity", &name, "retire"],
                    Some(&body),
                )
                .await?;
            io.show(&ans, || {
                let n = ans.json["grants_ended"].as_u64().unwrap_or(0);
                Ok(format!(
                    "retired identity {}: {n} live grant(s) ended; its requests are refused from now on\n",
                    clean(&name)
                ))
            })?;
        }
    }
    Ok(Exit::Success)
}

pub async fn exception(
    api: &Api,
    command: ExceptionCommand,
    io: &mut Io<'_>,
) -> Result<Exit, CliError> {
    match command {
        ExceptionCommand::List => {
            let ans = api.get(&["v1", "exceptions"], &[]).await?;
            io.show(&ans, || {
                let list: ExceptionList = ans.decode()?;
                Ok(exceptions_table(&list.exceptions))
            })?;
        }
        ExceptionCommand::Rotated { name, note } => {
            let body = json!({ "note": note });
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "exceptions", &name, "rotated"],
                    Some(&body),
                )
                .await?;
            io.show(&ans, || Ok(rotated(&ans.decode()?)))?;
        }
    }
    Ok(Exit::Success)
}

// ---- rendering (pure) ------------------------------------------------------------------

fn or_none(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

pub(crate) fn recert_table(list: &[Recert]) -> String {
    if list.is_empty() {
        return "no recertifications\n".into();
    }
    let mut t = Table::new([
        "KIND",
        "SUBJECT",
        "TEAM",
        "STATUS",
        "DUE",
        "REVIEW OPENS",
        "EVERY",
        "LAST ATTESTED",
        "BY",
    ]);
    for r in list {
        t.row([
            r.kind.as_str(),
            &r.subject,
            &r.team,
            &r.status,
            &r.due_at,
            &r.review_opens_at,
            &r.recertify_every,
            or_none(r.last_attested_at.as_deref()),
            or_none(r.attested_by.as_deref()),
        ]);
    }
    t.render()
}

pub(crate) fn attested(r: &Recert) -> String {
    format!(
        "attested {} {} (team {}): next due {}, review opens {}\n",
        clean(&r.kind),
        clean(&r.subject),
        clean(&r.team),
        clean(&r.due_at),
        clean(&r.review_opens_at),
    )
}

fn findings(e: &Exception) -> String {
    if e.findings.is_empty() {
        return "-".into();
    }
    e.findings
        .iter()
        .map(|f| format!("{} since {}", f.finding, f.since))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn exceptions_table(list: &[Exception]) -> String {
    if list.is_empty() {
        return "no standing exceptions\n".into();
    }
    let mut t = Table::new([
        "NAME",
        "IDENTITY",
        "OWNER",
        "SYSTEM",
        "SECRET REF",
        "ROTATE EVERY",
        "LAST ROTATED",
        "ROTATION DUE",
        "ENDS",
        "SOURCES",
        "RECERT",
        "FINDINGS",
    ]);
    for e in list {
        let sources = if e.allowed_sources.is_empty() {
            "-".to_owned()
        } else {
            e.allowed_sources.join(",")
        };
        t.row([
            e.name.as_str(),
            &e.identity,
            &e.owner,
            &e.system,
            &e.secret_ref,
            &e.rotate_every,
            or_none(e.last_rotated_at.as_deref()),
            &e.rotation_due_at,
            &e.ends,
            &sources,
            &e.recertification.status,
            &findings(e),
        ]);
    }
    t.render()
}

pub(crate) fn rotated(e: &Exception) -> String {
    format!(
        "recorded a rotation of exception {} by {}: next rotation due {}\n",
        clean(&e.name),
        clean(or_none(e.rotated_by.as_deref())),
        clean(&e.rotation_due_at),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        match T::deserialize(&v) {
            Ok(t) => t,
            Err(e) => panic!("sample does not decode: {e}"),
        }
    }

    fn check(actual: String, expected: &str) {
        assert_eq!(
            actual, expected,
            "\n--- got ---\n{actual}--- wanted ---\n{expected}"
        );
    }

    fn sample_recert() -> Value {
        json!({
            "kind": "identity", "subject": "nightly-backup", "team": "payments",
            "recertify_every": "90d", "first_seen_at": "2030-01-01T00:00:00.000Z",
            "last_attested_at": null, "attested_by": null, "reason": null,
            "due_at": "2030-04-01T00:00:00.000Z", "review_opens_at": "2030-03-18T00:00:00.000Z",
            "status": "due"
        })
    }

    #[test]
    fn recertifications_table() {
        let list: RecertList = from(json!({ "recertifications": [sample_recert()] }));
        check(
            recert_table(&list.recertifications),
            "KIND      SUBJECT         TEAM      STATUS  DUE                       REVIEW OPENS              EVERY  LAST ATTESTED  BY\n\
             identity  nightly-backup  payments  due     2030-04-01T00:00:00.000Z  2030-03-18T00:00:00.000Z  90d    -              -\n",
        );
        check(recert_table(&[]), "no recertifications\n");
    }

    #[test]
    fn attestation_says_the_next_due_date() {
        check(
            attested(&from(sample_recert())),
            "attested identity nightly-backup (team payments): next due 2030-04-01T00:00:00.000Z, review opens 2030-03-18T00:00:00.000Z\n",
        );
    }

    #[test]
    fn exceptions_table_shows_findings_and_escapes_text() {
        let list: ExceptionList = from(json!({ "exceptions": [{
            "name": "legacy-billing", "identity": "billing-sync", "owner": "payments",
            "system": "billing-db\u{202e}", "secret_ref": "vault:kv/legacy/billing",
            "reason": "vendor cannot do dynamic accounts yet", "rotate_every": "30d",
            "ends": "2030-06-30T00:00:00.000Z", "allowed_sources": ["10.20.0.0/16"],
            "scope_note": null, "last_rotated_at": null, "rotated_by": null,
            "rotation_note": null, "rotation_due_at": "2030-01-31T00:00:00.000Z",
            "findings": [{"finding": "rotation_overdue", "since": "2030-01-31T00:00:00.000Z"}],
            "recertification": sample_recert()
        }]}));
        let table = exceptions_table(&list.exceptions);
        assert!(table.contains("billing-db\\u{202e}"), "{table}");
        assert!(
            table.contains("rotation_overdue since 2030-01-31T00:00:00.000Z"),
            "{table}"
        );
        assert!(table.contains("10.20.0.0/16"), "{table}");
        check(exceptions_table(&[]), "no standing exceptions\n");
        check(
            rotated(&list.exceptions[0]),
            "recorded a rotation of exception legacy-billing by -: next rotation due 2030-01-31T00:00:00.000Z\n",
        );
    }
}
