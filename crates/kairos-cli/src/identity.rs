//! `kairos identity`: registered identities with their lifecycle state, owners and orphan
//! flag; suspend, resume and retire them (`/v1/identities`).

use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Api, CliError, Exit};
use crate::commands::Io;
use crate::render::{Table, clean};

#[derive(Debug, Clone, Subcommand)]
pub enum IdentityCommand {
    /// List identities with their state (active, suspended, retired), team, owners and
    /// whether they are orphaned (their team has no active owner).
    List,
    /// Show one identity: state and why, owners, and its orphan flag.
    Show {
        /// The identity's name.
        name: String,
    },
    /// Suspend an identity: its live grants end (revoked and verified gone) and its
    /// requests are refused until it is resumed. Admins, operators, its team's owners.
    Suspend {
        /// The identity's name.
        name: String,
        /// Why (mandatory; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Resume a suspended identity (not one suspended for an overdue recertification:
    /// an owner attests that with `kairos recert attest`).
    Resume {
        /// The identity's name.
        name: String,
        /// Why (mandatory; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Retire an identity for good: its live grants end and it is never resumed.
    Retire {
        /// The identity's name.
        name: String,
        /// Why (mandatory; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub state: String,
    pub cause: Option<String>,
    pub reason: String,
    pub by: String,
    pub since: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Orphan {
    pub since: String,
    pub team: String,
    pub grace_ends: Option<String>,
    pub suspended_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Identity {
    pub name: String,
    pub kind: String,
    pub team: String,
    pub issuer: String,
    pub subject: String,
    pub status: Status,
    pub owners: Vec<String>,
    pub active_owners: Vec<String>,
    pub orphaned: bool,
    pub orphan: Option<Orphan>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IdentityList {
    pub identities: Vec<Identity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndedGrant {
    pub id: String,
    pub entitlement: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StateChange {
    pub identity: String,
    pub status: Status,
    pub grants_ended: Vec<EndedGrant>,
}

pub(crate) async fn run(
    api: &Api,
    command: IdentityCommand,
    io: &mut Io<'_>,
) -> Result<Exit, CliError> {
    let (name, verb, reason) = match command {
        IdentityCommand::List => {
            let ans = api.get(&["v1", "identities"], &[]).await?;
            io.show(&ans, || Ok(list(&ans.decode()?)))?;
            return Ok(Exit::Success);
        }
        IdentityCommand::Show { name } => {
            let ans = api.get(&["v1", "identities", &name], &[]).await?;
            io.show(&ans, || Ok(show(&ans.decode()?)))?;
            return Ok(Exit::Success);
        }
        IdentityCommand::Suspend { name, reason } => (name, "suspend", reason),
        IdentityCommand::Resume { name, reason } => (name, "resume", reason),
        IdentityCommand::Retire { name, reason } => (name, "retire", reason),
    };
    let body = json!({ "reason": reason });
    let ans = api
        .send(
            Method::POST,
            &["v1", "identities", &name, verb],
            Some(&body),
        )
        .await?;
    io.show(&ans, || Ok(changed(&ans.decode()?)))?;
    Ok(Exit::Success)
}

fn state_of(s: &Status) -> String {
    match &s.cause {
        Some(cause) => format!("{} ({cause})", s.state),
        None => s.state.clone(),
    }
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn list(l: &IdentityList) -> String {
    if l.identities.is_empty() {
        return "no identities\n".into();
    }
    let mut t = Table::new([
        "NAME",
        "STATE",
        "TEAM",
        "OWNERS",
        "ACTIVE OWNERS",
        "ORPHANED",
    ]);
    for i in &l.identities {
        let orphaned = match &i.orphan {
            Some(o) => format!("since {}", o.since),
            None if i.orphaned => "yes".into(),
            None => "no".into(),
        };
        t.row([
            i.name.as_str(),
            &state_of(&i.status),
            &i.team,
            &or_none(&i.owners),
            &or_none(&i.active_owners),
            &orphaned,
        ]);
    }
    t.render()
}

pub fn show(i: &Identity) -> String {
    let mut t = Table::plain();
    t.row(["identity:", &i.name])
        .row(["kind:", &i.kind])
        .row(["team:", &i.team])
        .row(["issuer:", &i.issuer])
        .row(["subject:", &i.subject])
        .row(["state:", &state_of(&i.status)]);
    if let Some(since) = &i.status.since {
        t.row(["since:", since])
            .row(["by:", &i.status.by])
            .row(["reason:", &i.status.reason]);
    }
    t.row(["owners:", &or_none(&i.owners)])
        .row(["active owners:", &or_none(&i.active_owners)]);
    match &i.orphan {
        Some(o) => {
            t.row([
                "orphaned:",
                &format!("since {} (team {} has no active owner)", o.since, o.team),
            ]);
            if let Some(at) = &o.grace_ends {
                t.row([
                    "suspended at:",
                    &format!("{at} unless an owner can act again"),
                ]);
            }
            if let Some(at) = &o.suspended_at {
                t.row(["suspended as orphan:", at]);
            }
        }
        None => {
            t.row(["orphaned:", "no"]);
        }
    }
    t.render()
}

pub fn changed(c: &StateChange) -> String {
    let mut out = format!(
        "identity {} is {}: {}\n",
        clean(&c.identity),
        clean(&state_of(&c.status)),
        clean(&c.status.reason)
    );
    let n = c.grants_ended.len();
    if n > 0 {
        out.push_str(&format!(
            "ended {n} live grant{} (each is revoked and verified gone):\n",
            if n == 1 { "" } else { "s" }
        ));
        let mut t = Table::new(["GRANT", "ENTITLEMENT"]);
        for g in &c.grants_ended {
            t.row([g.id.as_str(), &g.entitlement]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn sample() -> IdentityList {
        serde_json::from_value(json!({"identities": [
            {"name": "nightly", "kind": "ci-job", "team": "payments", "issuer": "ci",
             "subject": "repo:x", "owners": ["carol"], "active_owners": [],
             "status": {"state": "suspended", "cause": "orphaned", "reason": "no owner",
                        "by": "system:governance", "since": "2026-01-01T00:00:00.000Z"},
             "orphaned": true,
             "orphan": {"since": "2025-12-31T00:00:00.000Z", "team": "payments",
                        "suspended_at": "2026-01-01T00:00:00.000Z"}},
            {"name": "deployer", "kind": "ci-job", "team": "ops", "issuer": "ci",
             "subject": "repo:y", "owners": ["dan"], "active_owners": ["dan"],
             "status": {"state": "active", "reason": "", "by": ""}, "orphaned": false}
        ]}))
        .unwrap()
    }

    #[test]
    fn the_list_shows_state_cause_owners_and_orphans() {
        let text = list(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].contains("suspended (orphaned)"), "{text}");
        assert!(lines[1].contains("since 2025-12-31"), "{text}");
        assert!(
            lines[2].contains("active") && lines[2].ends_with("no"),
            "{text}"
        );
    }

    #[test]
    fn show_says_why_and_since_when() {
        let l = sample();
        let text = show(&l.identities[0]);
        for needle in [
            "state:",
            "suspended (orphaned)",
            "by:",
            "system:governance",
            "team payments has no active owner",
            "suspended as orphan:",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let text = show(&l.identities[1]);
        assert!(!text.contains("since:"), "never changed: {text}");
        assert!(text.contains("orphaned:") && text.contains("no"), "{text}");
    }
}
