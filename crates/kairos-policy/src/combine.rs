//! How the decisions of the two engines (Cedar and Rego) make one decision. Pure: no
//! policies, only the engines' answers.
//!
//! Each engine in use decides on its own, with its own default deny (Cedar: nothing
//! permits; Rego: no `allow` entry). Then:
//!
//! 1. **deny wins**: if any engine denies, the request is denied, with the determining
//!    rules and reasons of every engine that denied;
//! 2. otherwise every engine permits; if any asks for approvals, the request is
//!    **pending** with the largest N asked for, with the rules and reasons of both;
//! 3. otherwise it is **granted**, with the rules and reasons of both.
//!
//! So with both engines configured a request is granted only if both grant it: adding a
//! Rego file never loosens what the Cedar files decide, and the other way round.

use kairos_domain::{Decision, DecisionOutcome};

/// The one decision for the engines' decisions (Cedar's first). With no decision (no
/// engine in use) nothing permits, so deny.
pub(crate) fn combine(decisions: &[Decision]) -> Decision {
    let Some(first) = decisions.first() else {
        return Decision {
            outcome: DecisionOutcome::Deny,
            policies: Vec::new(),
            reason: "no policy engine is configured: nothing permits any request".to_owned(),
        };
    };
    if decisions.len() == 1 {
        return first.clone();
    }
    let denying: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.outcome == DecisionOutcome::Deny)
        .collect();
    if !denying.is_empty() {
        return merged(DecisionOutcome::Deny, &denying);
    }
    let approvals = decisions
        .iter()
        .map(|d| match d.outcome {
            DecisionOutcome::Pending { approvals } => approvals,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let all: Vec<&Decision> = decisions.iter().collect();
    if approvals > 0 {
        // The engines that asked for the most approvals explain first.
        let mut ordered = all.clone();
        ordered.sort_by_key(|d| match d.outcome {
            DecisionOutcome::Pending { approvals: n } => std::cmp::Reverse(n),
            _ => std::cmp::Reverse(0),
        });
        return merged(DecisionOutcome::Pending { approvals }, &ordered);
    }
    merged(DecisionOutcome::Grant, &all)
}

/// `outcome` with the policies of `from` (in order, without repeats) and their reasons
/// joined with "; ".
fn merged(outcome: DecisionOutcome, from: &[&Decision]) -> Decision {
    let mut policies: Vec<String> = Vec::new();
    for d in from {
        for p in &d.policies {
            if !policies.contains(p) {
                policies.push(p.clone());
            }
        }
    }
    let mut reasons: Vec<&str> = Vec::new();
    for d in from {
        if !d.reason.is_empty() && !reasons.contains(&d.reason.as_str()) {
            reasons.push(&d.reason);
        }
    }
    Decision {
        outcome,
        policies,
        reason: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(outcome: DecisionOutcome, policy: &str, reason: &str) -> Decision {
        Decision {
            outcome,
            policies: vec![policy.to_owned()],
            reason: reason.to_owned(),
        }
    }
    fn deny(policy: &str) -> Decision {
        d(DecisionOutcome::Deny, policy, &format!("{policy} denies"))
    }
    fn grant(policy: &str) -> Decision {
        d(DecisionOutcome::Grant, policy, &format!("{policy} grants"))
    }
    fn pending(n: u32, policy: &str) -> Decision {
        d(
            DecisionOutcome::Pending { approvals: n },
            policy,
            &format!("{policy} wants {n}"),
        )
    }

    /// The engines' decisions, and the expected outcome, policies and reason.
    fn check(input: &[Decision], expected: (DecisionOutcome, &[&str], &str)) {
        let got = combine(input);
        let (outcome, policies, reason) = expected;
        assert_eq!(got.outcome, outcome, "{input:?} → {got:?}");
        assert_eq!(got.policies, policies, "{input:?} → {got:?}");
        assert_eq!(got.reason, reason, "{input:?} → {got:?}");
    }

    #[test]
    fn one_engine_decides_alone() {
        check(&[grant("c")], (DecisionOutcome::Grant, &["c"], "c grants"));
        check(&[deny("r")], (DecisionOutcome::Deny, &["r"], "r denies"));
        check(
            &[pending(2, "r")],
            (
                DecisionOutcome::Pending { approvals: 2 },
                &["r"],
                "r wants 2",
            ),
        );
    }

    #[test]
    fn no_engine_denies() {
        let got = combine(&[]);
        assert_eq!(got.outcome, DecisionOutcome::Deny);
        assert!(got.policies.is_empty());
    }

    #[test]
    fn deny_wins_from_either_engine() {
        let deny_outcome = DecisionOutcome::Deny;
        check(&[grant("c"), deny("r")], (deny_outcome, &["r"], "r denies"));
        check(&[deny("c"), grant("r")], (deny_outcome, &["c"], "c denies"));
        check(
            &[pending(3, "c"), deny("r")],
            (deny_outcome, &["r"], "r denies"),
        );
        check(
            &[deny("c"), pending(1, "r")],
            (deny_outcome, &["c"], "c denies"),
        );
        check(
            &[deny("c"), deny("r")],
            (deny_outcome, &["c", "r"], "c denies; r denies"),
        );
    }

    #[test]
    fn otherwise_the_larger_approvals_with_both_reasons() {
        check(
            &[grant("c"), pending(1, "r")],
            (
                DecisionOutcome::Pending { approvals: 1 },
                &["r", "c"],
                "r wants 1; c grants",
            ),
        );
        check(
            &[pending(2, "c"), grant("r")],
            (
                DecisionOutcome::Pending { approvals: 2 },
                &["c", "r"],
                "c wants 2; r grants",
            ),
        );
        check(
            &[pending(1, "c"), pending(3, "r")],
            (
                DecisionOutcome::Pending { approvals: 3 },
                &["r", "c"],
                "r wants 3; c wants 1",
            ),
        );
        check(
            &[pending(2, "c"), pending(2, "r")],
            (
                DecisionOutcome::Pending { approvals: 2 },
                &["c", "r"],
                "c wants 2; r wants 2",
            ),
        );
    }

    #[test]
    fn granted_only_when_both_grant() {
        check(
            &[grant("c"), grant("r")],
            (DecisionOutcome::Grant, &["c", "r"], "c grants; r grants"),
        );
    }

    #[test]
    fn repeated_policies_and_reasons_are_listed_once() {
        let a = grant("same");
        check(
            &[a.clone(), a],
            (DecisionOutcome::Grant, &["same"], "same grants"),
        );
    }
}
