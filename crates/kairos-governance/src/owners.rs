//! Owners are people: who counts as an active owner, which identities are orphaned, when
//! an orphan's grace ends, and what one look at an identity's ownership calls for.
//!
//! **Active owner**: a name in the team's `owners` that is a Kairos user who is a person
//! (any role but `resource-server`), not disabled, and holds at least one API token that
//! is not revoked: someone who can log in and act on the identity today. A name that is
//! not a user yet counts as no one (the configuration may be applied before people are
//! added; the apply report warns about each such name).
//!
//! **Orphaned**: an identity whose owner team has no active owner. A retired identity is
//! never flagged (it will not act again).

use std::collections::BTreeMap;
use std::time::Duration;

use kairos_domain::{IdentityName, TeamName, Timestamp, UserName};

/// What ownership needs to know about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonFacts {
    pub name: UserName,
    /// A person (admin, operator, approver, auditor), not a resource server.
    pub person: bool,
    /// Enabled, with at least one API token that is not revoked.
    pub can_act: bool,
}

/// The users Kairos knows, as ownership sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct People {
    known: BTreeMap<UserName, PersonFacts>,
}

impl People {
    pub fn new(people: impl IntoIterator<Item = PersonFacts>) -> Self {
        Self {
            known: people.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    /// Whether `name` counts as an active owner (see the module docs).
    pub fn is_active(&self, name: &UserName) -> bool {
        self.known.get(name).is_some_and(|p| p.person && p.can_act)
    }

    /// What is wrong with `name` as a team's owner or approver, if anything.
    fn problem(&self, name: &UserName) -> Option<&'static str> {
        match self.known.get(name) {
            None => Some("is not a Kairos user (yet)"),
            Some(p) if !p.person => Some("is a resource server, not a person"),
            Some(p) if !p.can_act => Some("has no live API token (revoked or disabled)"),
            Some(_) => None,
        }
    }
}

/// A team's people as the catalog names them.
#[derive(Debug, Clone, Copy)]
pub struct TeamPeople<'a> {
    pub team: &'a TeamName,
    pub owners: &'a [UserName],
    pub approvers: &'a [UserName],
}

/// One warning per owner or approver who is not an active person, and per team with no
/// active owner: a configuration may name people before they are added, so these are
/// warnings, not errors; such a team counts as having no active owner until they are.
pub fn people_warnings(teams: &[TeamPeople<'_>], people: &People) -> Vec<String> {
    let mut out = Vec::new();
    for t in teams {
        for (list, names) in [("owners", t.owners), ("approvers", t.approvers)] {
            for name in names {
                if let Some(problem) = people.problem(name) {
                    out.push(format!(
                        "team {}: {list} names {name}, who {problem}; add the user with `kairos user add {name} --role approver --team {}`",
                        t.team, t.team
                    ));
                }
            }
        }
        if !t.owners.iter().any(|o| people.is_active(o)) {
            out.push(format!(
                "team {} has no active owner: its identities are orphaned until one of its owners is a user with a live API token",
                t.team
            ));
        }
    }
    out
}

/// The identities (with their owner team) whose team has no active owner. `owners` maps
/// each team to its `owners`; a team missing from it has none.
pub fn orphaned<'a>(
    identities: impl IntoIterator<Item = (&'a IdentityName, &'a TeamName)>,
    owners: &BTreeMap<&TeamName, &[UserName]>,
    people: &People,
) -> BTreeMap<IdentityName, TeamName> {
    let mut active_teams: BTreeMap<&TeamName, bool> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (identity, team) in identities {
        let active = *active_teams.entry(team).or_insert_with(|| {
            owners
                .get(team)
                .is_some_and(|names| names.iter().any(|n| people.is_active(n)))
        });
        if !active {
            out.insert(identity.clone(), team.clone());
        }
    }
    out
}

/// When the grace of an orphan flagged at `detected_at` ends.
pub fn grace_ends(detected_at: Timestamp, grace: Duration) -> Timestamp {
    detected_at.plus(grace)
}

/// An identity's orphan flag as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanFlag {
    pub detected_at: Timestamp,
    /// When the orphan action suspended it (done once per flag).
    pub suspended_at: Option<Timestamp>,
}

/// What one look at an identity's ownership calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanStep {
    /// Newly orphaned under this team: flag it (audit, alert).
    Flag(TeamName),
    /// Flagged, but it has an active owner again (or is retired): clear the flag.
    Clear,
    /// Flagged, its grace is over and the orphan action has not run for this flag: apply
    /// `orphan_action` (suspend it, or leave it flagged).
    GraceOver { detected_at: Timestamp },
    /// Nothing to do.
    Wait,
}

/// The step for one identity at `now`: `orphaned_under` is its team when it is orphaned
/// now, `flag` its stored flag, `retired` whether it is retired for good.
pub fn orphan_step(
    now: Timestamp,
    orphaned_under: Option<&TeamName>,
    flag: Option<&OrphanFlag>,
    retired: bool,
    grace: Duration,
) -> OrphanStep {
    match (orphaned_under, flag) {
        (_, Some(_)) if retired => OrphanStep::Clear,
        (None, Some(_)) => OrphanStep::Clear,
        (Some(team), None) if !retired => OrphanStep::Flag(team.clone()),
        (Some(_), Some(f))
            if f.suspended_at.is_none() && now >= grace_ends(f.detected_at, grace) =>
        {
            OrphanStep::GraceOver {
                detected_at: f.detected_at,
            }
        }
        _ => OrphanStep::Wait,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn u(name: &str) -> UserName {
        UserName::parse(name).unwrap()
    }
    fn t(name: &str) -> TeamName {
        TeamName::parse(name).unwrap()
    }
    fn i(name: &str) -> IdentityName {
        IdentityName::parse(name).unwrap()
    }
    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// carol: an active person; dave: revoked; rs: a resource server; erin: never added.
    fn people() -> People {
        People::new([
            PersonFacts {
                name: u("carol"),
                person: true,
                can_act: true,
            },
            PersonFacts {
                name: u("dave"),
                person: true,
                can_act: false,
            },
            PersonFacts {
                name: u("rs"),
                person: false,
                can_act: true,
            },
        ])
    }

    #[test]
    fn an_active_owner_is_a_person_who_can_act() {
        let p = people();
        assert!(p.is_active(&u("carol")));
        assert!(!p.is_active(&u("dave")), "revoked");
        assert!(!p.is_active(&u("rs")), "not a person");
        assert!(!p.is_active(&u("erin")), "not a user");
    }

    /// One case per line: a team's owners → whether its identity is orphaned.
    #[test]
    fn identities_of_teams_without_an_active_owner_are_orphaned() {
        let check = |owners: &[&str], orphan: bool| {
            let names: Vec<UserName> = owners.iter().map(|o| u(o)).collect();
            let team = t("payments");
            let identity = i("nightly");
            let mut map = BTreeMap::new();
            map.insert(&team, names.as_slice());
            let got = orphaned([(&identity, &team)], &map, &people());
            assert_eq!(got.contains_key(&identity), orphan, "owners {owners:?}");
            if orphan {
                assert_eq!(got[&identity], team);
            }
        };
        check(&["carol"], false);
        check(&["dave", "carol"], false);
        check(&["dave"], true);
        check(&["erin"], true);
        check(&["rs"], true);
        check(&[], true);
    }

    #[test]
    fn a_team_missing_from_the_owner_map_has_no_owner() {
        let (team, identity) = (t("ghosts"), i("bot"));
        let got = orphaned([(&identity, &team)], &BTreeMap::new(), &people());
        assert_eq!(got.get(&identity), Some(&team));
    }

    #[test]
    fn warnings_name_each_missing_person_and_each_ownerless_team() {
        let (pay, ops) = (t("payments"), t("ops"));
        let (owners_pay, appr_pay) = ([u("carol"), u("erin")], [u("dave")]);
        let owners_ops = [u("rs")];
        let teams = [
            TeamPeople {
                team: &pay,
                owners: &owners_pay,
                approvers: &appr_pay,
            },
            TeamPeople {
                team: &ops,
                owners: &owners_ops,
                approvers: &[],
            },
        ];
        let w = people_warnings(&teams, &people());
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].contains("team payments: owners names erin, who is not a Kairos user"));
        assert!(w[0].contains("kairos user add erin"));
        assert!(w[1].contains("approvers names dave, who has no live API token"));
        assert!(w[2].contains("owners names rs, who is a resource server"));
        assert!(w[3].contains("team ops has no active owner"));
        assert!(
            !w.iter()
                .any(|x| x.contains("team payments has no active owner")),
            "carol owns payments: {w:#?}"
        );
    }

    #[test]
    fn the_grace_runs_from_detection() {
        assert_eq!(grace_ends(at(1_000), Duration::from_secs(2)), at(3_000));
    }

    /// One case per line: (orphaned now, flag, retired, now) → step, with a 10 s grace.
    #[test]
    fn each_look_calls_for_one_step() {
        let team = t("payments");
        let flag = OrphanFlag {
            detected_at: at(1_000),
            suspended_at: None,
        };
        let suspended = OrphanFlag {
            suspended_at: Some(at(11_000)),
            ..flag
        };
        let grace = Duration::from_secs(10);
        let check = |now: i64, orphan: bool, f: Option<&OrphanFlag>, retired: bool, want| {
            let got = orphan_step(at(now), orphan.then_some(&team), f, retired, grace);
            assert_eq!(
                got, want,
                "now {now} orphan {orphan} flag {f:?} retired {retired}"
            );
        };
        check(0, true, None, false, OrphanStep::Flag(team.clone()));
        check(0, false, None, false, OrphanStep::Wait);
        check(0, true, None, true, OrphanStep::Wait);
        check(5_000, true, Some(&flag), false, OrphanStep::Wait);
        check(10_999, true, Some(&flag), false, OrphanStep::Wait);
        check(
            11_000,
            true,
            Some(&flag),
            false,
            OrphanStep::GraceOver {
                detected_at: at(1_000),
            },
        );
        check(99_000, true, Some(&suspended), false, OrphanStep::Wait);
        check(5_000, false, Some(&flag), false, OrphanStep::Clear);
        check(99_000, false, Some(&suspended), false, OrphanStep::Clear);
        check(5_000, true, Some(&flag), true, OrphanStep::Clear);
    }
}
