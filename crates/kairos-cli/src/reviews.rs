//! `kairos review`: after-action reviews of break-glass grants (list, show, file), with
//! their arguments, the JSON the CLI reads, and how they print.

use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Api, CliError, Exit};
use crate::commands::Io;
use crate::render::{Table, clean};

#[derive(Debug, Clone, Subcommand)]
pub enum ReviewCommand {
    /// List after-action reviews, newest first (all of them unless a state is given).
    List(ReviewListArgs),
    /// Show one review.
    Show {
        /// The review id (rev_…).
        id: String,
    },
    /// File a review (owners of the identity's team): what happened and what follows.
    File {
        /// The review id (rev_…).
        id: String,
        /// What the break-glass access was used for, what was found, what follows.
        #[arg(long, value_name = "TEXT")]
        summary: String,
    },
}

#[derive(Debug, Clone, Default, Args)]
#[command(group(ArgGroup::new("which").args(["open", "overdue", "filed"])))]
pub struct ReviewListArgs {
    /// Only reviews not filed yet (overdue ones included).
    #[arg(long)]
    pub open: bool,
    /// Only reviews not filed and past their due time.
    #[arg(long)]
    pub overdue: bool,
    /// Only filed reviews.
    #[arg(long)]
    pub filed: bool,
    /// Only reviews of this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<u32>,
}

/// A review as the server shows it (`GET /v1/reviews/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Review {
    pub id: String,
    pub grant_id: String,
    pub request_id: String,
    pub identity: String,
    pub entitlement: String,
    pub requester: String,
    pub task_ref: String,
    pub opened_at: String,
    pub due_at: String,
    pub state: String,
    pub status: String,
    pub overdue: bool,
    pub escalated_at: Option<String>,
    pub filed_by: Option<String>,
    pub filed_at: Option<String>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReviewList {
    pub reviews: Vec<Review>,
}

pub async fn run(api: &Api, command: ReviewCommand, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match command {
        ReviewCommand::List(a) => {
            let state = if a.open {
                Some("open")
            } else if a.overdue {
                Some("overdue")
            } else if a.filed {
                Some("filed")
            } else {
                None
            };
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(s) = state {
                query.push(("state", s.to_owned()));
            }
            if let Some(i) = a.identity {
                query.push(("identity", i));
            }
            if let Some(l) = a.limit {
                query.push(("limit", l.to_string()));
            }
            let ans = api.get(&["v1", "reviews"], &query).await?;
            io.show(&ans, || {
                let list: ReviewList = ans.decode()?;
                Ok(table(&list.reviews))
            })?;
        }
        ReviewCommand::Show { id } => {
            let ans = api.get(&["v1", "reviews", &id], &[]).await?;
            io.show(&ans, || Ok(detail(&ans.decode()?)))?;
        }
        ReviewCommand::File { id, summary } => {
            let body = json!({ "summary": summary });
            let ans = api
                .send(Method::POST, &["v1", "reviews", &id, "file"], Some(&body))
                .await?;
            io.show(&ans, || {
                let r: Review = ans.decode()?;
                Ok(format!(
                    "filed {} (grant {}, identity {})\n",
                    clean(&r.id),
                    clean(&r.grant_id),
                    clean(&r.identity)
                ))
            })?;
        }
    }
    Ok(Exit::Success)
}

const NONE: &str = "-";

pub fn table(reviews: &[Review]) -> String {
    if reviews.is_empty() {
        return "no reviews\n".into();
    }
    let mut t = Table::new([
        "ID",
        "STATUS",
        "IDENTITY",
        "ENTITLEMENT",
        "INCIDENT",
        "REQUESTER",
        "DUE",
        "FILED BY",
    ]);
    for r in reviews {
        t.row([
            r.id.as_str(),
            r.status.as_str(),
            r.identity.as_str(),
            r.entitlement.as_str(),
            r.task_ref.as_str(),
            r.requester.as_str(),
            r.due_at.as_str(),
            r.filed_by.as_deref().unwrap_or(NONE),
        ]);
    }
    t.render()
}

pub fn detail(r: &Review) -> String {
    let mut t = Table::plain();
    t.row(["review:", &r.id])
        .row(["status:", &r.status])
        .row(["identity:", &r.identity])
        .row(["entitlement:", &r.entitlement])
        .row(["incident:", &r.task_ref])
        .row(["requester:", &r.requester])
        .row(["grant:", &r.grant_id])
        .row(["request:", &r.request_id])
        .row(["opened:", &r.opened_at])
        .row(["due:", &r.due_at]);
    if let Some(at) = &r.escalated_at {
        t.row(["escalated:", at]);
    }
    if let (Some(by), Some(at)) = (&r.filed_by, &r.filed_at) {
        t.row(["filed:", &format!("by {by} at {at}")]);
    }
    let mut out = t.render();
    match &r.summary {
        // The summary may span lines: each line escaped, indented under its heading.
        Some(summary) => {
            out.push_str("summary:\n");
            for line in summary.lines() {
                out.push_str("  ");
                out.push_str(&clean(line));
                out.push('\n');
            }
        }
        None => {
            out.push_str(&format!(
                "open until an owner of {}'s team files it: kairos review file {} --summary TEXT\n",
                clean(&r.identity),
                clean(&r.id)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use clap::{CommandFactory, Parser};
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ReviewCommand,
    }

    fn parse(args: &str) -> Result<ReviewCommand, clap::Error> {
        let argv = std::iter::once("review").chain(args.split_whitespace());
        TestCli::try_parse_from(argv).map(|c| c.command)
    }

    #[test]
    fn arguments() {
        TestCli::command().debug_assert();
        let Ok(ReviewCommand::List(a)) = parse("list --overdue --identity job --limit 5") else {
            panic!("not list")
        };
        assert!(a.overdue && !a.open && !a.filed);
        assert_eq!(a.identity.as_deref(), Some("job"));
        assert_eq!(a.limit, Some(5));
        assert!(parse("list --open --overdue").is_err(), "one state at most");
        assert!(matches!(parse("show rev_1"), Ok(ReviewCommand::Show { id }) if id == "rev_1"));
        assert!(matches!(
            parse("file rev_1 --summary done"),
            Ok(ReviewCommand::File { id, summary }) if id == "rev_1" && summary == "done"
        ));
        assert!(parse("file rev_1").is_err(), "the summary is required");
    }

    fn review(status: &str, filed: bool) -> Review {
        serde_json::from_value(json!({
            "id": "rev_1", "grant_id": "grt_1", "request_id": "req_1", "identity": "job",
            "entitlement": "db/admin", "requester": "user:olga", "task_ref": "INC-7",
            "opened_at": "2026-11-26T10:00:00Z", "due_at": "2026-11-29T10:00:00Z",
            "state": if filed { "filed" } else { "open" }, "status": status,
            "overdue": status == "overdue",
            "filed_by": if filed { json!("carol") } else { json!(null) },
            "filed_at": if filed { json!("2026-11-27T10:00:00Z") } else { json!(null) },
            "summary": if filed { json!("restarted\n\u{1b}[2Jdone") } else { json!(null) },
        }))
        .unwrap()
    }

    #[test]
    fn table_and_detail() {
        assert_eq!(table(&[]), "no reviews\n");
        assert_eq!(
            table(&[review("overdue", false)]),
            "ID     STATUS   IDENTITY  ENTITLEMENT  INCIDENT  REQUESTER  DUE                   FILED BY\n\
             rev_1  overdue  job       db/admin     INC-7     user:olga  2026-11-29T10:00:00Z  -\n"
        );
        let open = detail(&review("open", false));
        assert!(
            open.ends_with("kairos review file rev_1 --summary TEXT\n"),
            "{open}"
        );
        let filed = detail(&review("filed", true));
        assert!(
            filed.contains("filed:        by carol at 2026-11-27T10:00:00Z\n"),
            "{filed}"
        );
        // Each line of the summary on its own, escapes shown, not run.
        assert!(
            filed.ends_with("summary:\n  restarted\n  \\u{1b}[2Jdone\n"),
            "{filed}"
        );
    }
}
