//! `kairos notifications`: the outbox of messages to Slack and signed webhooks (list them,
//! send a dead one again), with its arguments, the JSON the CLI reads, and how it prints.

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde::Deserialize;

use crate::api::{Api, CliError, Exit};
use crate::commands::Io;
use crate::render::{Table, clean};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NotificationsArgs {
    #[command(subcommand)]
    pub command: Option<NotificationsCommand>,
    /// Only messages in this state (every state when absent).
    #[arg(long, value_enum)]
    pub state: Option<NotificationStateArg>,
    /// Only messages of this channel (its `name` in `[[notify]]`).
    #[arg(long)]
    pub channel: Option<String>,
    /// At most this many, newest first (the server's default is 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NotificationStateArg {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Undelivered for longer than the server's `--notify-dead-after`.
    Dead,
}

impl NotificationStateArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum NotificationsCommand {
    /// Send a dead message again (admins and operators): it is pending at once.
    Retry {
        /// The message id (kairos-<seq>-<channel>).
        id: String,
    },
}

/// A message as the server shows it (`GET /v1/notifications`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Notification {
    pub id: String,
    pub channel: String,
    pub event: String,
    pub state: String,
    pub attempts: u32,
    pub created_at: String,
    pub next_at: Option<String>,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NotificationList {
    pub notifications: Vec<Notification>,
}

pub async fn run(api: &Api, a: NotificationsArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match a.command {
        None => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(s) = a.state {
                query.push(("state", s.as_str().to_owned()));
            }
            if let Some(c) = a.channel {
                query.push(("channel", c));
            }
            if let Some(l) = a.limit {
                query.push(("limit", l.to_string()));
            }
            let ans = api.get(&["v1", "notifications"], &query).await?;
            io.show(&ans, || {
                let list: NotificationList = ans.decode()?;
                Ok(table(&list.notifications))
            })?;
        }
        Some(NotificationsCommand::Retry { id }) => {
            let ans = api
                .send(
                    Method::POST,
                    &["v1", "notifications", &id, "retry"],
                    None::<&serde_json::Value>,
                )
                .await?;
            io.show(&ans, || {
                let n: Notification = ans.decode()?;
                Ok(format!(
                    "{} is pending again (channel {}); it is sent on the next delivery pass\n",
                    clean(&n.id),
                    clean(&n.channel)
                ))
            })?;
        }
    }
    Ok(Exit::Success)
}

const NONE: &str = "-";

pub fn table(list: &[Notification]) -> String {
    if list.is_empty() {
        return "no notifications\n".into();
    }
    let mut t = Table::new([
        "ID",
        "CHANNEL",
        "EVENT",
        "STATE",
        "ATTEMPTS",
        "CREATED",
        "NEXT",
        "LAST ERROR",
    ]);
    for n in list {
        let next = match n.state.as_str() {
            "delivered" => n.delivered_at.as_deref(),
            _ => n.next_at.as_deref(),
        };
        t.row([
            n.id.as_str(),
            n.channel.as_str(),
            n.event.as_str(),
            n.state.as_str(),
            &n.attempts.to_string(),
            n.created_at.as_str(),
            next.unwrap_or(NONE),
            n.last_error.as_deref().unwrap_or(NONE),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use clap::{CommandFactory, Parser};
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: NotificationsArgs,
    }

    fn parse(args: &str) -> Result<NotificationsArgs, clap::Error> {
        let argv = std::iter::once("notifications").chain(args.split_whitespace());
        TestCli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn arguments() {
        TestCli::command().debug_assert();
        let a = parse("--state dead --channel ops --limit 5").unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.state, Some(NotificationStateArg::Dead));
        assert_eq!(a.channel.as_deref(), Some("ops"));
        assert_eq!(a.limit, Some(5));
        let a = parse("").unwrap();
        assert!(a.command.is_none() && a.state.is_none() && a.channel.is_none());
        assert!(parse("--state lost").is_err(), "pending, delivered or dead");
        let a = parse("retry kairos-42-ops").unwrap();
        assert!(
            matches!(a.command, Some(NotificationsCommand::Retry { ref id }) if id == "kairos-42-ops")
        );
        assert!(parse("retry").is_err(), "the id is required");
        assert!(
            parse("--state dead retry kairos-42-ops").is_err(),
            "a filter belongs to the listing"
        );
    }

    #[test]
    fn the_table_shows_when_next_and_why() {
        assert_eq!(table(&[]), "no notifications\n");
        let rows: NotificationList = serde_json::from_value(json!({"notifications": [
            {"id": "kairos-9-ops", "channel": "ops", "event": "request_pending",
             "state": "pending", "attempts": 2, "created_at": "2026-11-26T10:00:00Z",
             "next_at": "2026-11-26T10:00:05Z", "delivered_at": null,
             "last_error": "the receiver answered HTTP 500"},
            {"id": "kairos-8-chat", "channel": "chat", "event": "break_glass",
             "state": "delivered", "attempts": 0, "created_at": "2026-11-26T09:00:00Z",
             "next_at": null, "delivered_at": "2026-11-26T09:00:01Z", "last_error": null},
        ]}))
        .unwrap();
        assert_eq!(
            table(&rows.notifications),
            "ID             CHANNEL  EVENT            STATE      ATTEMPTS  CREATED               NEXT                  LAST ERROR\n\
             kairos-9-ops   ops      request_pending  pending    2         2026-11-26T10:00:00Z  2026-11-26T10:00:05Z  the receiver answered HTTP 500\n\
             kairos-8-chat  chat     break_glass      delivered  0         2026-11-26T09:00:00Z  2026-11-26T09:00:01Z  -\n"
        );
    }
}
