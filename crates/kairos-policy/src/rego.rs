//! Policies written in Rego, evaluated in process by `regorus`.
//!
//! Each `.rego` file stands alone: it is parsed, checked and compiled into its own
//! prepared policy when the set is compiled, together with a small Kairos-written module
//! that reads the file's `deny` and `allow` rules as one value. A decision evaluates
//! every file's prepared policy on the request's input document (see [`input_value`])
//! and turns what they say into one Kairos decision (see [`decide`]).
//!
//! The contract (the crate docs show it to operators):
//!
//! - `deny[id] := reason`: a partial object rule; any entry denies.
//! - `allow[id] := reason` or `allow[id] := {"approvals": N, "reason": reason}`: any
//!   entry permits; the largest N (0 to 10) over the entries says whether the request is
//!   granted at once or waits for N approvals.
//! - Nothing allows → deny.
//!
//! A rule is named in decisions and the audit log as `<file name>:<id>`, e.g.
//! `base.rego:no-incident-admin`.

use std::collections::BTreeMap;

use kairos_domain::{Decision, DecisionOutcome, Principal};
use regorus::Value;

use crate::error::{PolicyError, PolicyErrorKind, SourceLocation};
use crate::{MAX_APPROVALS, PolicyAction, PolicyInput, PolicySource};

/// The package of the module Kairos adds beside each file.
const ENTRY_PACKAGE: &str = "__kairos_decision";
/// The rule Kairos evaluates: `{"deny": data.<pkg>.deny, "allow": data.<pkg>.allow}`.
const ENTRY_RULE: &str = "data.__kairos_decision.decision";

/// How deep `{` and `[` may nest in a `.rego` file. regorus's parser takes time that
/// doubles with every level (measured: 3 ms at 12, 0.6 s at 20, 9 s at 24, valid or
/// not), so a deeper file is refused before it is parsed; real policies stay far below.
pub const MAX_REGO_NESTING: usize = 12;

/// The longest one file's evaluation may take. A rule can loop for as long as its author
/// wrote it to (nested iterations over large ranges, say): past this, regorus stops the
/// evaluation with an error, and an evaluation error denies the request (the decision
/// names the file and says why). Decisions take microseconds; this is far above any real
/// policy and far below a request's time budget.
pub const REGO_EVALUATION_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Work units between two looks at the clock while evaluating (regorus counts them).
const CLOCK_CHECK_EVERY: std::num::NonZeroU32 = std::num::NonZeroU32::MIN.saturating_add(63);

/// Sets [`REGO_EVALUATION_LIMIT`] for every evaluation in this process, before the first
/// (called as each file is compiled, not per decision).
/// A compiled policy is evaluated by an engine regorus makes for each call, which takes
/// the process-wide setting.
fn limit_evaluation_time() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        regorus::utils::limits::set_fallback_execution_timer_config(Some(
            regorus::utils::limits::ExecutionTimerConfig {
                limit: REGO_EVALUATION_LIMIT,
                check_interval: CLOCK_CHECK_EVERY,
            },
        ));
    });
}

/// The rules of a file Kairos reads.
const RULES: [&str; 2] = ["deny", "allow"];

/// The input document's fields, by object; `None` marks a value that is not an object.
const INPUT_FIELDS: [(&str, Option<&[&str]>); 4] = [
    ("action", None),
    ("principal", Some(&["name", "kind", "owner", "issuer"])),
    (
        "resource",
        Some(&["name", "target", "role", "tier", "max_ttl_secs"]),
    ),
    (
        "context",
        Some(&[
            "ttl_secs",
            "task_kind",
            "task_ref",
            "reason",
            "requester",
            "requester_kind",
            "renewal",
            "break_glass",
            "open_reviews",
            "source_ip",
        ]),
    ),
];

/// One compiled `.rego` file.
#[derive(Debug, Clone)]
pub(crate) struct RegoModule {
    /// The file's name without its directories: the prefix of its rules' names.
    pub name: String,
    compiled: regorus::CompiledPolicy,
}

/// Parses, checks and compiles one `.rego` file. Problems go to `errors`.
pub(crate) fn compile_file(
    file: &PolicySource,
    errors: &mut Vec<PolicyError>,
) -> Option<RegoModule> {
    // Every module is made here before it is evaluated (its sample evaluation below
    // included), so the limit is in force for all of them.
    limit_evaluation_time();
    let name = file_name(&file.path).to_owned();
    if let Some(offset) = too_deep(&file.text) {
        errors.push(PolicyError::at(
            SourceLocation::from_offset(&file.path, &file.text, offset),
            PolicyErrorKind::Syntax(format!(
                "brackets nest more than {MAX_REGO_NESTING} deep here; Kairos refuses deeper `{{` and `[` nesting in Rego (parsing time grows exponentially with it): move the inner part into a rule of its own"
            )),
        ));
        return None;
    }
    let mut engine = regorus::Engine::new();
    let package = match engine.add_policy(file.path.clone(), file.text.clone()) {
        Ok(package) => package,
        Err(e) => {
            errors.push(located(file, &e.to_string(), PolicyErrorKind::Syntax));
            return None;
        }
    };
    if package == format!("data.{ENTRY_PACKAGE}") {
        errors.push(PolicyError::at(
            SourceLocation::from_offset(&file.path, &file.text, 0),
            PolicyErrorKind::Invalid {
                policy: name,
                message: format!("package {ENTRY_PACKAGE} is Kairos's own: choose another name, e.g. `package kairos`"),
            },
        ));
        return None;
    }
    let before = errors.len();
    let defined = check_rules(file, &name, &engine, errors);
    check_input_refs(file, &name, errors);
    check_data_refs(file, &name, &package, errors);
    if errors.len() > before {
        return None;
    }

    let read = |rule: &str| {
        if defined.contains(&rule) {
            format!("{rule} := {package}.{rule}\n")
        } else {
            String::new()
        }
    };
    let entry = format!(
        "package {ENTRY_PACKAGE}\n\ndefault deny := {{}}\n{}\ndefault allow := {{}}\n{}\ndecision := {{\"deny\": deny, \"allow\": allow}}\n",
        read("deny"),
        read("allow"),
    );
    if let Err(e) = engine.add_policy(format!("{}#kairos", file.path), entry) {
        errors.push(located(file, &e.to_string(), |m| {
            PolicyErrorKind::Invalid {
                policy: name.clone(),
                message: m,
            }
        }));
        return None;
    }
    let compiled = match engine.compile_with_entrypoint(&ENTRY_RULE.into()) {
        Ok(compiled) => compiled,
        Err(e) => {
            errors.push(located(file, &e.to_string(), |m| {
                PolicyErrorKind::Invalid {
                    policy: name.clone(),
                    message: m,
                }
            }));
            return None;
        }
    };
    let module = RegoModule { name, compiled };
    // One evaluation now, so that what fails on every request (an unknown function, a
    // value of the wrong shape for every input) fails the load instead.
    if let Some(sample) = sample_input() {
        match module.evaluate(&sample) {
            Ok(_) => {}
            Err(message) => {
                errors.push(located(file, &message, |m| PolicyErrorKind::Invalid {
                    policy: module.name.clone(),
                    message: format!("evaluating it on a sample request failed: {m}"),
                }));
                return None;
            }
        }
    }
    Some(module)
}

/// What one file's rules say about one request.
#[derive(Debug, Default)]
struct Said {
    /// (rule name, reason)
    denies: Vec<(String, String)>,
    /// (rule name, approvals, reason)
    allows: Vec<(String, u32, Option<String>)>,
}

impl RegoModule {
    fn evaluate(&self, input: &Value) -> Result<Said, String> {
        let value = self
            .compiled
            .eval_with_input(input.clone())
            .map_err(|e| e.to_string())?;
        let field = |name: &str| -> Result<Vec<(String, Value)>, String> {
            let v = &value[name];
            if *v == Value::Undefined {
                return Ok(Vec::new());
            }
            let object = v.as_object().map_err(|_| {
                format!(
                    "`{name}` must be a partial object rule (`{name}[\"rule-id\"] := ...`), got {}",
                    show(v)
                )
            })?;
            object
                .iter()
                .map(|(k, v)| match k {
                    Value::String(id) if !id.is_empty() => {
                        Ok((format!("{}:{id}", self.name), v.clone()))
                    }
                    other => Err(format!(
                        "the keys of `{name}` name rules and must be non-empty strings, got {}",
                        show(other)
                    )),
                })
                .collect()
        };
        let mut said = Said::default();
        for (id, v) in field("deny")? {
            match v {
                Value::String(reason) => said.denies.push((id, reason.to_string())),
                other => {
                    return Err(format!(
                        "deny entry {id} must be a reason string, got {}",
                        show(&other)
                    ));
                }
            }
        }
        for (id, v) in field("allow")? {
            let (approvals, reason) = allow_value(&id, &v)?;
            said.allows.push((id, approvals, reason));
        }
        Ok(said)
    }
}

/// An `allow` entry's value: a reason string, or `{"approvals": N, "reason": "..."}`.
fn allow_value(id: &str, v: &Value) -> Result<(u32, Option<String>), String> {
    let usage = "must be a reason string or {\"approvals\": N, \"reason\": \"...\"}";
    match v {
        Value::String(reason) => Ok((0, non_empty(reason))),
        Value::Object(object) => {
            let mut approvals = 0;
            let mut reason = None;
            for (k, field) in object.iter() {
                match (k.as_string().map(|s| s.as_ref()), field) {
                    (Ok("approvals"), n) => {
                        approvals = n
                            .as_u64()
                            .ok()
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| *n <= MAX_APPROVALS)
                            .ok_or_else(|| {
                                format!(
                                    "allow entry {id}: approvals must be a whole number from 0 to {MAX_APPROVALS}, got {}",
                                    show(n)
                                )
                            })?;
                    }
                    (Ok("reason"), Value::String(r)) => reason = non_empty(r),
                    (Ok("reason"), other) => {
                        return Err(format!(
                            "allow entry {id}: reason must be a string, got {}",
                            show(other)
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "allow entry {id} has an unknown field {}: it {usage}",
                            show(k)
                        ));
                    }
                }
            }
            Ok((approvals, reason))
        }
        other => Err(format!("allow entry {id} {usage}, got {}", show(other))),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

fn show(v: &Value) -> String {
    let mut s = v.to_json_str().unwrap_or_else(|_| format!("{v:?}"));
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// The Rego engine's decision over every `.rego` file (never empty).
pub(crate) fn decide(modules: &[RegoModule], input: &PolicyInput) -> Decision {
    let value = input_value(input);
    let mut denies: Vec<(String, String)> = Vec::new();
    let mut allows: Vec<(String, u32, Option<String>)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for module in modules {
        match module.evaluate(&value) {
            Ok(said) => {
                denies.extend(said.denies);
                allows.extend(said.allows);
            }
            Err(e) => {
                failed.push(module.name.clone());
                let (place, what) = describe(&e);
                errors.push(match place {
                    Some(place) => format!("{place}: {what}"),
                    None => format!("{}: {what}", module.name),
                });
            }
        }
    }
    denies.sort();
    allows.sort_by(|a, b| a.0.cmp(&b.0));

    if !denies.is_empty() || !failed.is_empty() {
        let mut policies: Vec<String> = denies.iter().map(|(id, _)| id.clone()).collect();
        policies.extend(failed);
        let mut reason = denies
            .iter()
            .find_map(|(_, r)| non_empty(r))
            .unwrap_or_else(|| {
                if denies.is_empty() {
                    "a Rego policy failed to evaluate, so the request is denied".to_owned()
                } else {
                    format!("denied by {}", list(&policies[..denies.len()]))
                }
            });
        if !errors.is_empty() {
            reason = format!("{reason} (Rego evaluation failed: {})", errors.join("; "));
        }
        return Decision {
            outcome: DecisionOutcome::Deny,
            policies,
            reason,
        };
    }
    if allows.is_empty() {
        return Decision {
            outcome: DecisionOutcome::Deny,
            policies: Vec::new(),
            reason: match input.action {
                PolicyAction::Request => format!(
                    "no Rego rule allows {} to request {}",
                    input.identity.name, input.entitlement.name
                ),
                PolicyAction::Renew => format!(
                    "no Rego rule allows {} to renew its grant of {} to a lifetime of {} \
                     (Rego sees renewals as input.action == \"renew\")",
                    input.identity.name, input.entitlement.name, input.ttl
                ),
            },
        };
    }
    let approvals = allows.iter().map(|(_, n, _)| *n).max().unwrap_or(0);
    let policies: Vec<String> = allows.iter().map(|(id, _, _)| id.clone()).collect();
    // The reason of an entry that asked for the most approvals explains best.
    let mut by_weight: Vec<&(String, u32, Option<String>)> = allows.iter().collect();
    by_weight.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let annotated = by_weight.iter().find_map(|(_, _, r)| r.clone());
    let (outcome, generated) = match approvals {
        0 => (
            DecisionOutcome::Grant,
            format!("allowed by {}", list(&policies)),
        ),
        n => (
            DecisionOutcome::Pending { approvals: n },
            format!(
                "allowed by {} once {n} approver{} agree{}",
                list(&policies),
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" },
            ),
        ),
    };
    Decision {
        outcome,
        policies,
        reason: annotated.unwrap_or(generated),
    }
}

fn list(ids: &[String]) -> String {
    match ids {
        [one] => format!("Rego rule {one}"),
        many => format!("Rego rules {}", many.join(", ")),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The request as Rego's `input` document: the same facts, under the same names, as
/// Cedar's principal, resource and context (see the crate docs).
pub(crate) fn input_value(input: &PolicyInput) -> Value {
    fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
        Value::from(
            fields
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect::<BTreeMap<Value, Value>>(),
        )
    }
    let requester_kind = match &input.requester {
        Principal::Workload(_) => "workload",
        Principal::User(_) => "user",
        Principal::System(_) => "system",
    };
    let identity = &input.identity;
    let entitlement = &input.entitlement;
    let mut context = object([
        ("ttl_secs", Value::from(input.ttl.as_secs())),
        ("task_kind", Value::from(input.task.kind.as_str())),
        ("task_ref", Value::from(input.task.reference.as_str())),
        ("reason", Value::from(input.task.reason.as_str())),
        ("requester", Value::from(input.requester.to_string())),
        ("requester_kind", Value::from(requester_kind)),
        ("renewal", Value::from(input.action == PolicyAction::Renew)),
        ("break_glass", Value::from(input.circumstances.break_glass)),
        (
            "open_reviews",
            Value::from(u64::from(input.circumstances.open_reviews)),
        ),
    ]);
    if let Some(ip) = input.circumstances.source_ip
        && let Ok(map) = context.as_object_mut()
    {
        map.insert(Value::from("source_ip"), Value::from(ip.to_string()));
    }
    object([
        ("action", Value::from(input.action.as_str())),
        (
            "principal",
            object([
                ("name", Value::from(identity.name.as_str())),
                ("kind", Value::from(identity.kind.as_str())),
                ("owner", Value::from(identity.owner.as_str())),
                ("issuer", Value::from(identity.issuer.as_str())),
            ]),
        ),
        (
            "resource",
            object([
                ("name", Value::from(entitlement.name.as_str())),
                ("target", Value::from(entitlement.name.target())),
                ("role", Value::from(entitlement.name.role())),
                ("tier", Value::from(entitlement.tier.as_str())),
                ("max_ttl_secs", Value::from(entitlement.max_ttl.as_secs())),
            ]),
        ),
        ("context", context),
    ])
}

/// A request every field of which is set, for the evaluation at load.
fn sample_input() -> Option<Value> {
    use kairos_domain::{EntitlementName, IdentityName, Task, TaskKind, TaskRef, TeamName, Ttl};
    let name = IdentityName::parse("sample-identity").ok()?;
    let input = PolicyInput {
        action: PolicyAction::Request,
        identity: crate::IdentityFacts {
            name: name.clone(),
            kind: "ci-job".into(),
            owner: TeamName::parse("sample-team").ok()?,
            issuer: "sample-issuer".into(),
        },
        entitlement: crate::EntitlementFacts {
            name: EntitlementName::parse("sample-target/read").ok()?,
            tier: crate::Tier::Low,
            max_ttl: Ttl::parse("1h").ok()?,
        },
        ttl: Ttl::parse("15m").ok()?,
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse("run-1").ok()?,
            "sample".into(),
        )
        .ok()?,
        requester: Principal::Workload(name),
        circumstances: crate::Circumstances {
            source_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            break_glass: false,
            open_reviews: 0,
        },
    };
    Some(input_value(&input))
}

/// The rules Kairos reads that the file defines, after checking their form: `deny` and
/// `allow` must be partial object rules (`deny["id"] := "reason" if { ... }`).
fn check_rules(
    file: &PolicySource,
    name: &str,
    engine: &regorus::Engine,
    errors: &mut Vec<PolicyError>,
) -> Vec<&'static str> {
    use regorus::unstable::{Expr, Rule, RuleHead};
    let mut defined = Vec::new();
    let mut engine = engine.clone();
    let Some(module) = engine.get_modules().first().cloned() else {
        return defined;
    };
    let root = |mut e: &Expr| -> Option<(String, bool)> {
        // (root variable, whether the head indexes it once: `deny[k]`)
        let mut brackets = 0;
        let mut dots = 0;
        loop {
            match e {
                Expr::Var { value, .. } => {
                    let name = value.as_string().ok()?.to_string();
                    return Some((name, brackets == 1 && dots == 0));
                }
                Expr::RefBrack { refr, .. } => {
                    brackets += 1;
                    e = refr;
                }
                Expr::RefDot { refr, .. } => {
                    dots += 1;
                    e = refr;
                }
                _ => return None,
            }
        }
    };
    for rule in &module.policy {
        let (span, refr, form_ok) = match rule.as_ref() {
            Rule::Spec { span, head, .. } => match head {
                RuleHead::Compr { refr, assign, .. } => (span, refr, assign.is_some()),
                RuleHead::Set { refr, .. } | RuleHead::Func { refr, .. } => (span, refr, false),
            },
            Rule::Default { span, refr, .. } => (span, refr, false),
        };
        let Some((root_name, indexed)) = root(refr) else {
            continue;
        };
        let Some(rule_name) = RULES.iter().find(|r| **r == root_name) else {
            continue;
        };
        if form_ok && indexed {
            if !defined.contains(rule_name) {
                defined.push(*rule_name);
            }
            continue;
        }
        let example = if *rule_name == "deny" {
            "deny[\"no-incident-admin\"] := \"reason shown to the requester\" if { ... }"
        } else {
            "allow[\"ci-read\"] := \"reason\" if { ... }, or allow[\"prod-write\"] := {\"approvals\": 2, \"reason\": \"...\"} if { ... }"
        };
        errors.push(PolicyError::at(
            SourceLocation {
                file: file.path.clone(),
                line: span.line,
                column: span.col,
            },
            PolicyErrorKind::Invalid {
                policy: name.to_owned(),
                message: format!(
                    "`{rule_name}` must be a partial object rule named by rule id, e.g. {example}"
                ),
            },
        ));
    }
    defined
}

/// Every `input.a.b` written in the file must be in the input document, so that a
/// misspelt field (`input.context.tsk_kind`) is an error at load rather than a rule
/// that silently never applies. Only dotted references are checked.
fn check_input_refs(file: &PolicySource, name: &str, errors: &mut Vec<PolicyError>) {
    for (offset, path) in refs(&file.text, "input") {
        if let Some(message) = unknown_input_path(&path) {
            errors.push(PolicyError::at(
                SourceLocation::from_offset(&file.path, &file.text, offset),
                PolicyErrorKind::Invalid {
                    policy: name.to_owned(),
                    message,
                },
            ));
        }
    }
}

/// Each file stands alone and Kairos loads no data document, so `data.…` may only name
/// the file's own package (`data.kairos.helper`); anything else is an unknown reference
/// that would quietly be undefined.
fn check_data_refs(file: &PolicySource, name: &str, package: &str, errors: &mut Vec<PolicyError>) {
    let Some(own) = package.strip_prefix("data.") else {
        return;
    };
    if own.contains(['[', '"']) {
        return;
    }
    let own: Vec<&str> = own.split('.').collect();
    for (offset, path) in refs(&file.text, "data") {
        let n = own.len().min(path.len());
        if own[..n] == path[..n] {
            continue;
        }
        errors.push(PolicyError::at(
            SourceLocation::from_offset(&file.path, &file.text, offset),
            PolicyErrorKind::Invalid {
                policy: name.to_owned(),
                message: format!(
                    "data.{}: unknown reference; each Rego file stands alone and Kairos loads no data document, so only this file's own package ({package}) can be referred to",
                    path.join(".")
                ),
            },
        ));
    }
}

fn unknown_input_path(path: &[&str]) -> Option<String> {
    let written = format!("input.{}", path.join("."));
    let top: Vec<&str> = INPUT_FIELDS.iter().map(|(k, _)| *k).collect();
    let first = path.first()?;
    let Some((_, fields)) = INPUT_FIELDS.iter().find(|(k, _)| k == first) else {
        return Some(format!(
            "{written}: the input document has no field {first:?}; it has {}",
            top.join(", ")
        ));
    };
    let second = path.get(1)?;
    let Some(fields) = fields else {
        return Some(format!(
            "{written}: input.{first} is a string, it has no fields"
        ));
    };
    if !fields.contains(second) {
        return Some(format!(
            "{written}: input.{first} has no field {second:?}; it has {}",
            fields.join(", ")
        ));
    }
    if path.len() > 2 {
        return Some(format!(
            "{written}: input.{first}.{second} is a plain value, it has no fields"
        ));
    }
    None
}

/// Where a comment (`#` to the end of the line) or a string (`"…"` with escapes, or a raw
/// `` `…` ``) starts at `i`: the index just after it.
fn skip_comment_or_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'#' => {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        }
        b'"' => {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        }
        b'`' => {
            i += 1;
            while i < bytes.len() && bytes[i] != b'`' {
                i += 1;
            }
            i += 1;
        }
        _ => return None,
    }
    Some(i.min(bytes.len()))
}

/// The offset of the first `{` or `[` (outside comments and strings) that opens a level
/// deeper than [`MAX_REGO_NESTING`].
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in code_bytes(text.as_bytes()) {
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_REGO_NESTING {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Each byte of `bytes` outside comments and strings, with its offset.
fn code_bytes(bytes: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(after) = skip_comment_or_string(bytes, i) {
            i = after;
        }
        let b = *bytes.get(i)?;
        i += 1;
        Some((i - 1, b))
    })
}

/// `(offset, [a, b, ...])` for each `<root>.a.b...` outside comments and strings.
fn refs<'a>(text: &'a str, root: &str) -> Vec<(usize, Vec<&'a str>)> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(after) = skip_comment_or_string(bytes, i) {
            i = after;
            continue;
        }
        match bytes[i] {
            b if ident(b) => {
                let start = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                let preceded_by_dot = start > 0 && bytes[start - 1] == b'.';
                if &text[start..i] != root || preceded_by_dot {
                    continue;
                }
                let mut path = Vec::new();
                while i + 1 < bytes.len() && bytes[i] == b'.' && ident(bytes[i + 1]) {
                    let s = i + 1;
                    i = s;
                    while i < bytes.len() && ident(bytes[i]) {
                        i += 1;
                    }
                    path.push(&text[s..i]);
                }
                if !path.is_empty() {
                    out.push((start, path));
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// A regorus error as a Kairos error at the place it names (`--> file:line:col`), or at
/// the top of the file.
fn located(
    file: &PolicySource,
    message: &str,
    kind: impl FnOnce(String) -> PolicyErrorKind,
) -> PolicyError {
    let mut location = SourceLocation::from_offset(&file.path, &file.text, 0);
    let (place, what) = describe(message);
    if let Some(place) = place {
        let mut parts = place.rsplitn(3, ':');
        let column: Option<u32> = parts.next().and_then(|c| c.trim().parse().ok());
        let line: Option<u32> = parts.next().and_then(|l| l.trim().parse().ok());
        // Only places in the operator's file (not in the module Kairos adds beside it).
        let in_file = parts.next() == Some(file.path.as_str());
        let lines = u32::try_from(file.text.split('\n').count()).unwrap_or(u32::MAX);
        if let (true, Some(line), Some(column)) = (in_file, line, column)
            && (1..=lines).contains(&line)
        {
            location.line = line;
            location.column = column.max(1);
        }
    }
    PolicyError::at(location, kind(what))
}

/// regorus' message without its picture of the line: the place it names first
/// (`file:line:col`), and what is wrong on one line (with any other place it names, e.g.
/// the other rule of a conflict).
fn describe(message: &str) -> (Option<&str>, String) {
    fn place(s: &str) -> Option<&str> {
        let rest = s.split_once("--> ")?.1;
        Some(rest.lines().next().unwrap_or_default().trim())
    }
    let first = place(message);
    let Some((_, rest)) = message.split_once("error: ") else {
        return (first, one_line(message));
    };
    let mut what = match rest.split_once("\n-->") {
        Some((head, tail)) => {
            let head = one_line(head);
            let head = head.trim_end_matches(':');
            match place(&format!("--> {}", tail.trim_start())) {
                Some(other) => format!("{head}: {other}"),
                None => head.to_owned(),
            }
        }
        None => one_line(rest),
    };
    if what.is_empty() {
        what = one_line(message);
    }
    (first, what)
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_refs_skip_comments_and_strings() {
        let text = "# input.nope\nx := \"input.no\" \nallow if input.context.task_kind == `input.x`\ny := data.input.z\n";
        let refs = refs(text, "input");
        assert_eq!(refs.len(), 1, "{refs:?}");
        assert_eq!(refs[0].1, ["context", "task_kind"]);
    }

    #[test]
    fn nesting_is_counted_outside_comments_and_strings() {
        let nested = |depth: usize| format!("x := {}1{}\n", "{".repeat(depth), "}".repeat(depth));
        assert_eq!(too_deep(&nested(MAX_REGO_NESTING)), None);
        assert_eq!(
            too_deep(&nested(MAX_REGO_NESTING + 1)),
            Some(5 + MAX_REGO_NESTING)
        );
        // Closing brackets give levels back: many shallow groups in a row are fine.
        assert_eq!(too_deep(&"[[[1]]] {{2}} ".repeat(100)), None);
        // Mixed kinds count together; the unclosed rest of a broken file counts too.
        assert_eq!(
            too_deep(&"[{".repeat(MAX_REGO_NESTING)),
            Some(MAX_REGO_NESTING)
        );
        // Brackets in comments and strings are not code.
        let hidden = format!(
            "# {0}\ns := \"{0}\\\"{0}\"\nr := `{0}`\n",
            "{[".repeat(MAX_REGO_NESTING)
        );
        assert_eq!(too_deep(&hidden), None);
    }

    #[test]
    fn unknown_input_paths_say_what_exists() {
        assert_eq!(unknown_input_path(&["context", "task_kind"]), None);
        assert_eq!(unknown_input_path(&["action"]), None);
        assert_eq!(unknown_input_path(&["principal"]), None);
        let m = unknown_input_path(&["context", "tsk_kind"]).unwrap_or_default();
        assert!(m.contains("has no field \"tsk_kind\""), "{m}");
        assert!(m.contains("task_kind"), "{m}");
        let m = unknown_input_path(&["user"]).unwrap_or_default();
        assert!(m.contains("principal, resource, context"), "{m}");
        assert!(unknown_input_path(&["action", "x"]).is_some());
        assert!(unknown_input_path(&["resource", "tier", "x"]).is_some());
    }
}
