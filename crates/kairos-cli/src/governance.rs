//! Governance commands: alerts (and, as the lifecycle work lands, identities,
//! recertifications, reviews, exceptions and the posture).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Api, CliError, Exit};
use crate::commands::Io;
use crate::render::{Table, clean, or_none};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
    /// `open`, `acknowledged`, `resolved`, or `unresolved` (the default: open or
    /// acknowledged); `all` for every state.
    #[arg(long, default_value = "unresolved")]
    pub state: String,
    /// Only alerts of this kind (e.g. `use_after_end`, `orphaned`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only alerts about this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// At most this many, newest first.
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AlertsCommand {
    /// Show one alert with its facts and what it maps to (OWASP NHI, NIST CSF).
    Show {
        /// The alert id (alr_…).
        id: String,
    },
    /// Say that someone is on it (it stays unresolved).
    Ack {
        /// The alert id (alr_…).
        id: String,
        /// What is being done; kept in the audit log.
        #[arg(long)]
        note: String,
    },
    /// Close it, saying what was done.
    Resolve {
        /// The alert id (alr_…).
        id: String,
        /// What was done; kept in the audit log.
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Alert {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub identity: Option<String>,
    pub state: String,
    pub message: String,
    pub detail: serde_json::Value,
    pub opened_at: String,
    pub last_seen_at: String,
    pub occurrences: u64,
    pub updated_by: Option<String>,
    pub note: Option<String>,
    pub owasp_nhi: String,
    pub owasp_nhi_title: String,
    pub nist_csf: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct AlertList {
    alerts: Vec<Alert>,
}

pub(crate) async fn alerts(api: &Api, a: AlertsArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match a.command {
        None => {
            let mut query = Vec::new();
            if a.state != "all" {
                query.push(("state", a.state.clone()));
            }
            if let Some(k) = a.kind {
                query.push(("kind", k));
            }
            if let Some(i) = a.identity {
                query.push(("identity", i));
            }
            if let Some(l) = a.limit {
                query.push(("limit", l.to_string()));
            }
            let ans = api.get(&["v1", "alerts"], &query).await?;
            io.show(&ans, || {
                let list: AlertList = ans.decode()?;
                Ok(alerts_table(&list.alerts))
            })?;
        }
        Some(AlertsCommand::Show { id }) => {
            let ans = api.get(&["v1", "alerts", &id], &[]).await?;
            io.show(&ans, || Ok(alert_detail(&ans.decode()?)))?;
        }
        Some(AlertsCommand::Ack { id, note }) => {
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "alerts", &id, "acknowledge"],
                    Some(&json!({ "note": note })),
                )
                .await?;
            io.show(&ans, || Ok(alert_detail(&ans.decode()?)))?;
        }
        Some(AlertsCommand::Resolve { id, note }) => {
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "alerts", &id, "resolve"],
                    Some(&json!({ "note": note })),
                )
                .await?;
            io.show(&ans, || Ok(alert_detail(&ans.decode()?)))?;
        }
    }
    Ok(Exit::Success)
}

fn alerts_table(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".into();
    }
    let mut t = Table::new([
        "ID", "KIND", "STATE", "SUBJECT", "SEEN", "OPENED", "OWASP", "MESSAGE",
    ]);
    for a in alerts {
        t.row([
            a.id.as_str(),
            &a.kind,
            &a.state,
            &a.subject,
            &a.occurrences.to_string(),
            &a.opened_at,
            &a.owasp_nhi,
            &a.message,
        ]);
    }
    t.render()
}

fn alert_detail(a: &Alert) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<12} {}\n", clean(v)));
    line("alert", &a.id);
    line("kind", &a.kind);
    line("state", &a.state);
    line("subject", &a.subject);
    line("identity", or_none(a.identity.as_deref()));
    line("message", &a.message);
    line("opened", &a.opened_at);
    line(
        "last seen",
        &format!("{} ({} time(s))", a.last_seen_at, a.occurrences),
    );
    line(
        "owasp nhi",
        &format!("{} {}", a.owasp_nhi, a.owasp_nhi_title),
    );
    line("nist csf", &a.nist_csf.join(", "));
    if let Some(by) = &a.updated_by {
        line("handled by", by);
    }
    if let Some(note) = &a.note {
        line("note", note);
    }
    if a.detail.as_object().is_some_and(|o| !o.is_empty()) {
        line("detail", &a.detail.to_string());
    }
    out
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Posture {
    at: String,
    window_days: u32,
    identities: PostureIdentities,
    standing_privilege: Vec<GrantHours>,
    total_grant_hours: f64,
    findings: Vec<Finding>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct PostureIdentities {
    total: u64,
    active: u64,
    suspended: u64,
    retired: u64,
    by_owner: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct GrantHours {
    identity: String,
    grant_hours: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Finding {
    id: String,
    severity: String,
    count: u64,
    subjects: Vec<String>,
    owasp_nhi: String,
    nist_csf: Vec<String>,
    detail: Option<String>,
}

/// `kairos posture`: the report as tables (or the server's JSON with `--json`).
pub(crate) async fn posture(api: &Api, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let ans = api.get(&["v1", "posture"], &[]).await?;
    io.show(&ans, || Ok(posture_text(&ans.decode()?)))?;
    Ok(Exit::Success)
}

fn posture_text(p: &Posture) -> String {
    let i = &p.identities;
    let mut out = format!(
        "posture at {} (figures over the last {} days)\n\nidentities: {} ({} active, {} suspended, {} retired)\n",
        clean(&p.at),
        p.window_days,
        i.total,
        i.active,
        i.suspended,
        i.retired
    );
    let mut owners = Table::new(["OWNER TEAM", "IDENTITIES"]);
    for (team, n) in &i.by_owner {
        owners.row([team.as_str(), &n.to_string()]);
    }
    out.push_str(&owners.render());
    out.push('\n');
    let mut t = Table::new([
        "FINDING",
        "SEVERITY",
        "COUNT",
        "OWASP",
        "NIST CSF",
        "SUBJECTS / DETAIL",
    ]);
    for f in &p.findings {
        let what = match (&f.detail, f.subjects.is_empty()) {
            (Some(d), _) => d.clone(),
            (None, false) => f.subjects.join(", "),
            (None, true) => String::new(),
        };
        t.row([
            f.id.as_str(),
            &f.severity,
            &f.count.to_string(),
            &f.owasp_nhi,
            &f.nist_csf.join(" "),
            &what,
        ]);
    }
    out.push_str(&t.render());
    if !p.standing_privilege.is_empty() {
        out.push_str(&format!(
            "\nstanding privilege: {} grant-hours; most:\n",
            p.total_grant_hours
        ));
        let mut s = Table::new(["IDENTITY", "GRANT-HOURS"]);
        for g in &p.standing_privilege {
            s.row([g.identity.as_str(), &g.grant_hours.to_string()]);
        }
        out.push_str(&s.render());
    }
    out
}
