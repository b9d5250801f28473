//! Routing: which channels an event goes to. A channel names the events it takes and,
//! optionally, the teams whose events it takes; an event goes to every channel that takes
//! its kind and, when the channel names teams, whose team is among them (an approval
//! request concerns the approving team, so it reaches that team's channel).

use std::collections::BTreeSet;

use crate::event::{Event, EventKind};

/// How a channel is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack-compatible incoming webhook (Block Kit JSON).
    Slack,
    /// A generic webhook, signed per the Standard Webhooks specification.
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack" => Some(Self::Slack),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// A channel's routing rule (its address and secret live with the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The channel's name: letters, digits, `-` and `_` (it is part of message ids).
    pub channel: String,
    pub kind: ChannelKind,
    pub events: BTreeSet<EventKind>,
    /// Empty: events of every team, and events of no team.
    pub teams: BTreeSet<String>,
}

impl Route {
    pub fn takes(&self, event: &Event) -> bool {
        self.events.contains(&event.kind)
            && (self.teams.is_empty()
                || event.team.as_ref().is_some_and(|t| self.teams.contains(t)))
    }
}

/// The routes that take `event`, in the order given.
pub fn routes_for<'r>(event: &Event, routes: &'r [Route]) -> Vec<&'r Route> {
    routes.iter().filter(|r| r.takes(event)).collect()
}

/// The idempotency key of `event` on `channel`: the same on every replica and every
/// retry, so a receiver can drop duplicates (`webhook-id`).
pub fn message_id(seq: i64, channel: &str) -> String {
    format!("kairos-{seq}-{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_domain::Timestamp;

    fn event(kind: EventKind, team: Option<&str>) -> Event {
        Event {
            kind,
            seq: 1,
            at: Timestamp::from_millis(0),
            team: team.map(str::to_owned),
            title: String::new(),
            actor: String::new(),
            reason: None,
            fields: Vec::new(),
            link: None,
        }
    }

    fn route(name: &str, events: &[EventKind], teams: &[&str]) -> Route {
        Route {
            channel: name.into(),
            kind: ChannelKind::Webhook,
            events: events.iter().copied().collect(),
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn check(e: Event, expected: &[&str]) {
        let routes = [
            route("all-pending", &[EventKind::RequestPending], &[]),
            route(
                "dba",
                &[EventKind::RequestPending, EventKind::BreakGlass],
                &["dba"],
            ),
            route("payments", &[EventKind::RequestPending], &["payments"]),
            route(
                "security",
                &[EventKind::BreakGlass, EventKind::ResidueRemoved],
                &[],
            ),
        ];
        let got: Vec<&str> = routes_for(&e, &routes)
            .iter()
            .map(|r| r.channel.as_str())
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn routing() {
        check(
            event(EventKind::RequestPending, Some("dba")),
            &["all-pending", "dba"],
        );
        check(
            event(EventKind::RequestPending, Some("payments")),
            &["all-pending", "payments"],
        );
        check(
            event(EventKind::BreakGlass, Some("dba")),
            &["dba", "security"],
        );
        // No team known: only channels that do not filter by team.
        check(event(EventKind::ResidueRemoved, None), &["security"]);
        check(event(EventKind::RequestPending, None), &["all-pending"]);
        check(event(EventKind::RequestDenied, Some("dba")), &[]);
    }

    #[test]
    fn message_ids_are_stable() {
        assert_eq!(message_id(42, "ops"), "kairos-42-ops");
    }
}
