//! Turning answers into text: aligned tables, `key: value` blocks, and JSON Lines.
//!
//! Everything here is pure (answer in, string out) so it is tested with sample JSON.

use std::fmt::Write as _;

use serde_json::Value;

use crate::wire;

/// Columns separated by two spaces, each as wide as its widest cell; no trailing blanks.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        let mut t = Self::default();
        t.row(header);
        t
    }

    /// Rows with no header (for `key  value` blocks).
    pub fn plain() -> Self {
        Self::default()
    }

    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows
            .push(cells.into_iter().map(|c| clean(c.as_ref())).collect());
        self
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Server-supplied text could carry newlines, terminal escape sequences or Unicode
/// bidirectional controls (U+202E turns the rest of a line around); shown escaped
/// (`\u{202e}`) so a cell stays one line, reads as sent, and cannot drive the terminal.
pub use kairos_domain::text::clean;

const NONE: &str = "-";

pub(crate) fn or_none(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or(NONE)
}

fn task(t: &wire::Task) -> String {
    format!("{}:{}", t.kind, t.reference)
}

/// JSON as the server sent it, pretty, with a final newline.
pub fn pretty(json: &Value) -> String {
    let mut s = serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
    s.push('\n');
    s
}

/// One compact JSON value per line.
pub fn json_lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

pub fn grants_table(grants: &[wire::Grant]) -> String {
    if grants.is_empty() {
        return "no grants\n".into();
    }
    let mut t = Table::new([
        "ID",
        "IDENTITY",
        "ENTITLEMENT",
        "STATE",
        "EXPIRES",
        "ENDED",
        "VERIFIED",
    ]);
    for g in grants {
        let r = g.receipt.as_ref();
        t.row([
            g.id.as_str(),
            &g.identity,
            &g.entitlement,
            &g.state,
            &g.expires_at,
            or_none(r.map(|r| r.reason.as_str())),
            or_none(r.and_then(|r| r.verified_at.as_deref())),
        ]);
    }
    t.render()
}

pub fn grant_detail(g: &wire::Grant) -> String {
    let mut t = Table::plain();
    t.row(["grant:", &g.id])
        .row(["state:", &g.state])
        .row(["identity:", &g.identity])
        .row(["entitlement:", &g.entitlement])
        .row(["target:", &g.target])
        .row(["audience:", &g.audience])
        .row(["scopes:", &g.scopes.join(" ")])
        .row(["task:", &task(&g.task)])
        .row(["reason:", &g.task.reason])
        .row(["request:", &g.request_id])
        .row(["issued:", &g.issued_at])
        .row(["expires:", &g.expires_at])
        .row(["max expires:", &g.max_expires_at]);
    match &g.usage {
        Some(u) => {
            t.row([
                "used:",
                &format!(
                    "{} time{}, first {}, last {}",
                    u.uses,
                    if u.uses == 1 { "" } else { "s" },
                    u.first_used_at,
                    u.last_used_at
                ),
            ]);
            t.row([
                "last use:",
                &format!(
                    "by {} from {}",
                    or_none(u.last_client.as_deref()),
                    or_none(u.last_source.as_deref())
                ),
            ]);
        }
        None => {
            t.row(["used:", "never (no introspection or session seen)"]);
        }
    }
    if let Some(r) = &g.receipt {
        receipt_rows(&mut t, r);
    }
    t.render()
}

fn receipt_rows(t: &mut Table, r: &wire::Receipt) {
    t.row([
        "ended:",
        &format!("{} by {} at {}", r.reason, r.ended_by, r.ended_at),
    ]);
    if let Some(at) = &r.revoked_at {
        t.row(["revoked:", at]);
    }
    match &r.verified_at {
        Some(at) => t.row(["verified gone:", at]),
        None => t.row(["verified gone:", "not yet (access is being removed)"]),
    };
    if let Some(m) = &r.method {
        t.row(["method:", m]);
    }
    if let Some(e) = &r.evidence {
        t.row(["evidence:", e]);
    }
    if r.attempts > 0 {
        t.row(["failed attempts:", &r.attempts.to_string()]);
    }
    if let Some(e) = &r.last_error {
        t.row(["last error:", e]);
    }
    for s in r.set_receivers.iter().flatten() {
        let status = match (s.state.as_str(), &s.acknowledged_at) {
            ("acked", Some(at)) => format!("acknowledged at {at}"),
            ("failed", at) => format!(
                "refused{}: {}",
                at.as_deref()
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default(),
                s.last_error.as_deref().unwrap_or("no reason given")
            ),
            ("dead", _) => "NOT acknowledged (given up after a day undelivered)".to_owned(),
            _ => format!(
                "NOT acknowledged yet (waits until {}{})",
                s.wait_until,
                s.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
        };
        t.row([
            "SET receiver:".to_owned(),
            format!("{} ({}): {status}", s.receiver, s.delivery),
        ]);
    }
}

/// After `release`: did access end, and is it verified gone?
pub fn ended(g: &wire::Grant, verb: &str) -> String {
    let mut out = format!("{verb} {}: {}\n", clean(&g.id), clean(&g.state));
    if let Some(r) = &g.receipt {
        let mut t = Table::plain();
        receipt_rows(&mut t, r);
        out.push_str(&t.render());
    }
    out
}

pub fn revoked(grants: &[wire::Grant]) -> String {
    let n = grants.len();
    let mut out = format!("revoked {n} grant{}\n", plural(n));
    if n > 0 {
        out.push_str(&grants_table(grants));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn requests_table(requests: &[wire::Request]) -> String {
    if requests.is_empty() {
        return "no requests\n".into();
    }
    let mut t = Table::new([
        "ID",
        "STATE",
        "IDENTITY",
        "ENTITLEMENT",
        "TTL",
        "TASK",
        "APPROVALS",
        "CREATED",
    ]);
    for r in requests {
        t.row([
            r.id.as_str(),
            &r.state,
            &r.identity,
            &r.entitlement,
            &r.ttl,
            &task(&r.task),
            &format!("{}/{}", r.approvals.len(), r.decision.approvals_required),
            &r.created_at,
        ]);
    }
    t.render()
}

pub fn request_detail(r: &wire::Request) -> String {
    let mut t = Table::plain();
    t.row(["request:", &r.id])
        .row(["state:", &r.state])
        .row(["identity:", &r.identity])
        .row(["entitlement:", &r.entitlement])
        .row(["ttl:", &r.ttl])
        .row(["task:", &task(&r.task)])
        .row(["reason:", &r.task.reason])
        .row(["requester:", &r.requester])
        .row(["created:", &r.created_at])
        .row([
            "decision:",
            &format!("{}: {}", r.decision.outcome, r.decision.reason),
        ]);
    if !r.decision.policies.is_empty() {
        t.row(["policies:", &r.decision.policies.join(", ")]);
    }
    if r.decision.approvals_required > 0 {
        t.row([
            "approvals:",
            &format!("{} of {}", r.approvals.len(), r.decision.approvals_required),
        ]);
    }
    for a in &r.approvals {
        t.row([
            "approved by:",
            &format!("{} at {}: {}", a.approver, a.at, a.reason),
        ]);
    }
    if let Some(d) = &r.denial {
        t.row([
            "denied by:",
            &format!("{} at {}: {}", d.approver, d.at, d.reason),
        ]);
    }
    if let Some(until) = &r.pending_until {
        t.row(["pending until:", until]);
    }
    if let Some(g) = &r.grant_id {
        t.row(["grant:", g]);
    }
    t.render()
}

/// A granted request: the grant, then the token alone on the last line.
pub fn granted(resp: &wire::RequestResponse) -> String {
    let r = &resp.request;
    let mut t = Table::plain();
    let grant_id = resp
        .grant
        .as_ref()
        .map(|g| g.id.as_str())
        .or(r.grant_id.as_deref());
    t.row(["granted:", or_none(grant_id)])
        .row(["request:", &r.id])
        .row(["identity:", &r.identity])
        .row(["entitlement:", &r.entitlement]);
    if let Some(g) = &resp.grant {
        t.row(["state:", &g.state]).row(["expires:", &g.expires_at]);
    }
    if resp.ttl_capped {
        t.row([
            "ttl:",
            &format!("{} (lowered to the entitlement's cap)", r.ttl),
        ]);
    }
    if let Some(review) = &resp.review_id {
        t.row([
            "break-glass:",
            &format!("alert raised; after-action review {review} is open until an owner files it"),
        ]);
    }
    let mut out = t.render();
    match &resp.credential {
        Some(c) => credential_lines(&mut out, c),
        None => {
            let _ = writeln!(
                out,
                "no token in this answer: it is delivered to {}",
                clean(&r.identity)
            );
        }
    }
    out
}

/// A request waiting for approvers.
pub fn pending(r: &wire::Request) -> String {
    let n = r.approvals_needed();
    let mut t = Table::plain();
    t.row(["pending:", &r.id])
        .row(["approvals needed:", &n.to_string()])
        .row(["why:", &r.decision.reason]);
    if !r.decision.policies.is_empty() {
        t.row(["policies:", &r.decision.policies.join(", ")]);
    }
    if let Some(until) = &r.pending_until {
        t.row(["pending until:", until]);
    }
    let mut out = t.render();
    let _ = writeln!(
        out,
        "check with `kairos request-status {id}`, or wait for the decision with `kairos request-status {id} --wait`",
        id = clean(&r.id)
    );
    out
}

/// `request-status`: the request, and the credential when this answer carries it (an
/// account's password is in exactly one answer: it must be printed, whatever the form).
pub fn request_status(resp: &wire::RequestResponse) -> String {
    let mut out = request_detail(&resp.request);
    if let Some(c) = &resp.credential {
        credential_lines(&mut out, c);
    }
    out
}

fn credential_lines(out: &mut String, c: &wire::Credential) {
    if c.kind == "ssh" {
        let _ = writeln!(
            out,
            "ssh certificate (serial {}; save it beside your key as <key>-cert.pub):",
            c.ssh_serial.unwrap_or_default()
        );
        out.push_str(&clean(&c.ssh_certificate));
    } else if c.kind != "token" && !c.kind.is_empty() {
        let _ = writeln!(
            out,
            "{} account (password shown once; Kairos keeps it only sealed):",
            clean(&c.kind)
        );
        out.push_str(&c.secret_line());
    } else {
        out.push_str(&c.access_token);
    }
    out.push('\n');
}

/// After `approve`.
pub fn approved(resp: &wire::RequestResponse) -> String {
    let r = &resp.request;
    let id = clean(&r.id);
    match r.state.as_str() {
        "granted" => {
            let grant = resp
                .grant
                .as_ref()
                .map(|g| g.id.as_str())
                .or(r.grant_id.as_deref());
            format!("approved {id}: granted as {}\n", clean(or_none(grant)))
        }
        "pending" => {
            let n = r.approvals_needed();
            format!("approved {id}: {n} more approval{} needed\n", plural(n))
        }
        other => format!("approved {id}: {}\n", clean(other)),
    }
}

pub fn renewed(resp: &wire::RenewResponse) -> String {
    let Some(credential) = &resp.credential else {
        return match &resp.request {
            Some(r) => format!("renewal of {} {}", clean(&resp.grant.id), pending(r)),
            None => format!("{} was not renewed\n", clean(&resp.grant.id)),
        };
    };
    let mut t = Table::plain();
    t.row(["renewed:", &resp.grant.id])
        .row(["expires:", &credential.expires_at])
        .row(["max expires:", &resp.grant.max_expires_at]);
    let mut out = t.render();
    out.push_str(&credential.access_token);
    out.push('\n');
    out
}

pub fn applied(a: &wire::ApplyResponse) -> String {
    let mut out = String::new();
    if a.dry_run {
        out.push_str("dry run: nothing was changed; applying would do this\n");
    }
    for (label, items) in [
        ("created", &a.created),
        ("changed", &a.changed),
        ("removed", &a.removed),
    ] {
        if !items.is_empty() {
            let items: Vec<String> = items.iter().map(|i| clean(i)).collect();
            let _ = writeln!(out, "{label}: {}", items.join(", "));
        }
    }
    if a.created.is_empty() && a.changed.is_empty() && a.removed.is_empty() {
        out.push_str("no changes\n");
    }
    if !a.grants_ending.is_empty() {
        let n = a.grants_ending.len();
        let _ = writeln!(
            out,
            "{} {n} live grant{} (each is revoked and verified gone):",
            if a.dry_run { "would end" } else { "ended" },
            plural(n)
        );
        let mut t = Table::new([
            "GRANT",
            "IDENTITY",
            "ENTITLEMENT",
            "TARGET",
            "REASON",
            "BECAUSE",
        ]);
        for g in &a.grants_ending {
            let reason = if g.reason.is_empty() {
                "config_removed"
            } else {
                g.reason.as_str()
            };
            t.row([
                g.grant_id.as_str(),
                &g.identity,
                &g.entitlement,
                &g.target,
                reason,
                &g.because,
            ]);
        }
        out.push_str(&t.render());
    }
    for warning in &a.warnings {
        let _ = writeln!(out, "warning: {}", clean(warning));
    }
    out
}

pub fn entitlements_table(list: &wire::EntitlementList) -> String {
    if list.entitlements.is_empty() {
        return "no entitlements\n".into();
    }
    let mut t = Table::new([
        "ENTITLEMENT",
        "TARGET",
        "TIER",
        "MAX TTL",
        "APPROVED BY",
        "ALLOWS",
    ]);
    for e in &list.entitlements {
        t.row([
            e.name.as_str(),
            &e.target,
            &e.tier,
            &e.max_ttl,
            or_none(e.approval_team.as_deref()),
            &format!("{}: {}", e.privileges_kind, e.privileges.join(" ")),
        ]);
    }
    t.render()
}

/// `config show`: one section per kind, one line per entry.
pub fn config(c: &Value) -> String {
    let mut out = String::new();
    if let Some(v) = c.get("version").and_then(Value::as_i64) {
        let at = c.get("applied_at").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(out, "version {v}, applied {}", clean(at));
    } else {
        out.push_str("no configuration applied yet\n");
    }
    let str_of = |v: &Value, key: &str| -> String {
        match v.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
            Some(Value::Null) | None => NONE.to_owned(),
            Some(other) => other.to_string(),
        }
    };
    let list = |key: &str| {
        c.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut section = |title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        let _ = writeln!(out, "\n{title} ({})", rows.len());
        if rows.is_empty() {
            return;
        }
        let mut t = Table::plain();
        t.row(header.iter().map(|h| h.to_uppercase()));
        for r in rows {
            t.row(r);
        }
        out.push_str(&t.render());
    };
    section(
        "issuers",
        &["name", "issuer", "audience", "keys"],
        list("issuers")
            .iter()
            .map(|i| {
                let keys = match i.get("jwks") {
                    Some(j) => match (j.get("url"), j.get("inline")) {
                        (Some(u), _) => format!("url {}", u.as_str().unwrap_or("?")),
                        (_, Some(f)) => format!("file {}", str_of(f, "file")),
                        _ => j.to_string(),
                    },
                    None => NONE.into(),
                };
                vec![
                    str_of(i, "name"),
                    str_of(i, "issuer"),
                    str_of(i, "audience"),
                    keys,
                ]
            })
            .collect(),
    );
    section(
        "teams",
        &["name", "owners", "approvers"],
        list("teams")
            .iter()
            .map(|t| {
                vec![
                    str_of(t, "name"),
                    str_of(t, "owners"),
                    str_of(t, "approvers"),
                ]
            })
            .collect(),
    );
    section(
        "identities",
        &["name", "owner", "kind", "issuer", "subject"],
        list("identities")
            .iter()
            .map(|i| {
                ["name", "owner", "kind", "issuer", "subject"]
                    .iter()
                    .map(|k| str_of(i, k))
                    .collect()
            })
            .collect(),
    );
    section(
        "targets",
        &[
            "name",
            "kind",
            "owner",
            "audience / admin url from",
            "managed prefix",
        ],
        list("targets")
            .iter()
            .map(|t| {
                // `{"kind": "postgres", "admin_url": {"env": "VAR"}, "managed_prefix": …}`
                let kind = t.get("kind").cloned().unwrap_or(Value::Null);
                let kind_name = str_of(&kind, "kind");
                let from = match (kind.get("audience"), kind.get("admin_url")) {
                    (Some(a), _) => a.as_str().unwrap_or("?").to_owned(),
                    (_, Some(r)) => match (r.get("env"), r.get("file")) {
                        (Some(e), _) => format!("env {}", e.as_str().unwrap_or("?")),
                        (_, Some(f)) => format!("file {}", f.as_str().unwrap_or("?")),
                        _ => r.to_string(),
                    },
                    _ => NONE.into(),
                };
                let prefix = kind
                    .get("managed_prefix")
                    .and_then(Value::as_str)
                    .unwrap_or(NONE)
                    .to_owned();
                vec![
                    str_of(t, "name"),
                    kind_name,
                    str_of(t, "owner"),
                    from,
                    prefix,
                ]
            })
            .collect(),
    );
    section(
        "entitlements",
        &["name", "target", "tier", "max ttl", "approved by"],
        list("entitlements")
            .iter()
            .map(|e| {
                ["name", "target", "tier", "max_ttl", "approval_team"]
                    .iter()
                    .map(|k| str_of(e, k))
                    .collect()
            })
            .collect(),
    );
    section(
        "policies",
        &["id"],
        list("policies")
            .iter()
            .map(|p| vec![str_of(p, "id")])
            .collect(),
    );
    out
}

pub fn audit_table(records: &[wire::AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records\n".into();
    }
    let mut t = Table::new(["SEQ", "AT", "KIND", "ACTOR", "IDENTITY", "GRANT", "TASK"]);
    for r in records {
        t.row([
            r.seq.to_string().as_str(),
            &r.at,
            &r.kind,
            &r.actor,
            or_none(r.identity.as_deref()),
            or_none(r.grant_id.as_deref()),
            or_none(r.task_ref.as_deref()),
        ]);
    }
    t.render()
}

/// `audit verify`: (stdout, stderr).
pub fn verified(v: &wire::Verify) -> (String, String) {
    if v.ok {
        let n = v.records;
        (
            format!("audit chain intact: {n} record{}\n", plural_u64(n)),
            String::new(),
        )
    } else {
        let at = v.broken_at.map_or_else(|| "?".into(), |s| s.to_string());
        let problem = clean(v.problem.as_deref().unwrap_or("unknown problem"));
        (
            String::new(),
            format!("AUDIT CHAIN BROKEN at record {at}: {problem}\n"),
        )
    }
}

/// `audit verify --checkpoints`: (stdout, stderr). `places` names each checkpoint
/// (`file:line`) in the order sent.
pub fn checkpoints_verified(v: &wire::CheckpointsVerify, places: &[String]) -> (String, String) {
    let (mut out, mut err) = verified(&wire::Verify {
        ok: v.broken_at.is_none() && v.problem.is_none(),
        records: v.records,
        broken_at: v.broken_at,
        problem: v.problem.clone(),
    });
    let good = v
        .checkpoints
        .iter()
        .filter(|c| c.status == "extended")
        .count();
    for c in v.checkpoints.iter().filter(|c| c.status != "extended") {
        let place = places
            .get(c.index)
            .map_or_else(|| format!("checkpoint {}", c.index + 1), Clone::clone);
        let record = c.seq.map(|s| format!(" (record {s})")).unwrap_or_default();
        let what = match c.status.as_str() {
            "not_extended" => "CHAIN DOES NOT EXTEND IT",
            "forged" => "FORGED",
            "key_gone" => "UNVERIFIABLE (key gone)",
            _ => "NOT A CHECKPOINT",
        };
        let problem = clean(c.problem.as_deref().unwrap_or("unknown problem"));
        err.push_str(&format!("checkpoint {place}{record}: {what}: {problem}\n"));
    }
    let n = v.checkpoints.len() as u64;
    if v.ok {
        out.push_str(&format!("extends all {n} checkpoint{}\n", plural_u64(n)));
    } else if good > 0 {
        err.push_str(&format!(
            "{good} of {n} checkpoint{} extended\n",
            plural_u64(n)
        ));
    }
    (out, err)
}

fn plural_u64(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn keys_table(k: &wire::Keys) -> String {
    let mut t = Table::new(["KID", "ALG", "TYPE", "CURRENT"]);
    for key in &k.jwks.keys {
        let kind = match &key.crv {
            Some(crv) => format!("{} {crv}", key.kty),
            None => key.kty.clone(),
        };
        let current = if key.kid == k.current_kid { "yes" } else { "" };
        t.row([
            key.kid.as_str(),
            or_none(key.alg.as_deref()),
            &kind,
            current,
        ]);
    }
    t.render()
}

pub fn users_table(users: &[wire::User]) -> String {
    if users.is_empty() {
        return "no users\n".into();
    }
    let mut t = Table::new(["NAME", "ROLE", "TEAMS", "CREATED"]);
    for u in users {
        // A resource server has no teams; its targets are shown in their place.
        let teams = if u.targets.is_empty() {
            u.teams.join(",")
        } else {
            format!("targets:{}", u.targets.join(","))
        };
        t.row([
            u.name.as_str(),
            &u.role,
            or_none(Some(&teams)),
            &u.created_at,
        ]);
    }
    t.render()
}

pub fn new_user(n: &wire::NewUser) -> String {
    let teams = if !n.user.targets.is_empty() {
        format!("; targets: {}", n.user.targets.join(", "))
    } else if n.user.teams.is_empty() {
        String::new()
    } else {
        format!("; teams: {}", n.user.teams.join(", "))
    };
    format!(
        "created user {} ({}{})\nAPI token (shown once, Kairos keeps only its hash; it cannot be shown again):\n{}\n",
        clean(&n.user.name),
        clean(&n.user.role),
        clean(&teams),
        n.token
    )
}

pub fn introspection(i: &wire::Introspection) -> String {
    let mut t = Table::plain();
    t.row(["active:", if i.active { "true" } else { "false" }]);
    for (k, v) in &i.claims {
        let shown = match (k.as_str(), v) {
            ("exp" | "iat" | "nbf", Value::Number(n)) => match n.as_u64() {
                Some(secs) => format!("{secs} ({})", unix_time(secs)),
                None => n.to_string(),
            },
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        t.row([format!("{k}:"), shown]);
    }
    t.render()
}

fn unix_time(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn exchanged(x: &wire::TokenExchange) -> String {
    let mut t = Table::plain();
    t.row(["granted:", &x.grant_id])
        .row(["request:", &x.request_id])
        .row(["entitlement:", &x.scope])
        .row(["expires in:", &format!("{}s", x.expires_in)]);
    let mut out = t.render();
    out.push_str(&x.access_token);
    out.push('\n');
    out
}

pub fn exchange_pending(e: &wire::OAuthError) -> String {
    let mut t = Table::plain();
    t.row(["pending:", or_none(e.request_id.as_deref())])
        .row(["why:", &e.error_description]);
    if let Some(p) = e.policies.as_ref().filter(|p| !p.is_empty()) {
        t.row(["policies:", &p.join(", ")]);
    }
    t.render()
}

pub fn health(h: &wire::Health) -> String {
    format!(
        "{} (store: {}, version: {})\n",
        clean(&h.status),
        clean(&h.store),
        clean(&h.version)
    )
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    fn from<T: DeserializeOwned>(v: Value) -> T {
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

    #[test]
    fn table_aligns_columns_without_trailing_blanks() {
        let mut t = Table::new(["ID", "NAME", "NOTE"]);
        t.row(["1", "alpha", ""]).row(["200", "b", "x"]);
        check(t.render(), "ID   NAME   NOTE\n1    alpha\n200  b      x\n");
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut t = Table::plain();
        t.row(["é", "1"]).row(["ab", "2"]);
        check(t.render(), "é   1\nab  2\n");
    }

    #[test]
    fn table_escapes_control_characters() {
        let mut t = Table::plain();
        t.row(["a\nb", "\u{1b}[31mred"]);
        check(t.render(), "a\\nb  \\u{1b}[31mred\n");
    }

    fn grant(id: &str, state: &str, receipt: Value) -> Value {
        json!({
            "id": id, "state": state, "request_id": "req_1", "identity": "ci-deployer",
            "entitlement": "prod-db/read", "target": "prod-db", "audience": "prod-db",
            "scopes": ["read"], "task": {"kind": "change", "ref": "CHG-1", "reason": "deploy"},
            "issued_at": "2026-11-26T10:00:00Z", "expires_at": "2026-11-26T10:15:00Z",
            "max_expires_at": "2026-11-26T11:00:00Z", "receipt": receipt
        })
    }

    fn ended_receipt() -> Value {
        json!({"reason": "released", "ended_by": "ci-deployer", "ended_at": "2026-11-26T10:05:00Z",
               "revoked_at": "2026-11-26T10:05:01Z", "verified_at": "2026-11-26T10:05:02Z",
               "method": "postgres: role dropped", "evidence": "pg_roles has no kairos_x",
               "attempts": 0, "last_error": null})
    }

    #[test]
    fn grants_list() {
        let list: wire::GrantList = from(json!({"grants": [
            grant("grt_1", "active", Value::Null),
            grant("grt_22", "ended", ended_receipt()),
        ]}));
        check(
            grants_table(&list.grants),
            "ID      IDENTITY     ENTITLEMENT   STATE   EXPIRES               ENDED     VERIFIED\n\
             grt_1   ci-deployer  prod-db/read  active  2026-11-26T10:15:00Z  -         -\n\
             grt_22  ci-deployer  prod-db/read  ended   2026-11-26T10:15:00Z  released  2026-11-26T10:05:02Z\n",
        );
        check(grants_table(&[]), "no grants\n");
    }

    #[test]
    fn grant_with_receipt() {
        let g: wire::Grant = from(grant("grt_22", "ended", ended_receipt()));
        check(
            grant_detail(&g),
            "grant:          grt_22\n\
             state:          ended\n\
             identity:       ci-deployer\n\
             entitlement:    prod-db/read\n\
             target:         prod-db\n\
             audience:       prod-db\n\
             scopes:         read\n\
             task:           change:CHG-1\n\
             reason:         deploy\n\
             request:        req_1\n\
             issued:         2026-11-26T10:00:00Z\n\
             expires:        2026-11-26T10:15:00Z\n\
             max expires:    2026-11-26T11:00:00Z\n\
             used:           never (no introspection or session seen)\n\
             ended:          released by ci-deployer at 2026-11-26T10:05:00Z\n\
             revoked:        2026-11-26T10:05:01Z\n\
             verified gone:  2026-11-26T10:05:02Z\n\
             method:         postgres: role dropped\n\
             evidence:       pg_roles has no kairos_x\n",
        );
    }

    #[test]
    fn grant_with_usage() {
        let mut v = grant("grt_5", "active", Value::Null);
        v["usage"] = json!({"first_used_at": "2026-11-26T10:01:00Z",
            "last_used_at": "2026-11-26T10:02:00Z", "uses": 3,
            "last_source": "10.0.0.7", "last_client": "user:orders-rs"});
        let g: wire::Grant = from(v);
        let text = grant_detail(&g);
        assert!(
            text.contains(
                "used:         3 times, first 2026-11-26T10:01:00Z, last 2026-11-26T10:02:00Z\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("last use:     by user:orders-rs from 10.0.0.7\n"),
            "{text}"
        );
    }

    #[test]
    fn release_while_still_revoking() {
        let g: wire::Grant = from(grant(
            "grt_3",
            "revoking",
            json!({"reason": "released", "ended_by": "ci", "ended_at": "2026-11-26T10:05:00Z",
                   "revoked_at": null, "verified_at": null, "method": null, "evidence": null,
                   "attempts": 2, "last_error": "connection refused"}),
        ));
        check(
            ended(&g, "released"),
            "released grt_3: revoking\n\
             ended:            released by ci at 2026-11-26T10:05:00Z\n\
             verified gone:    not yet (access is being removed)\n\
             failed attempts:  2\n\
             last error:       connection refused\n",
        );
    }

    #[test]
    fn revoke_counts_what_ended() {
        check(revoked(&[]), "revoked 0 grants\n");
        let g: wire::Grant = from(grant("grt_1", "ended", ended_receipt()));
        assert!(revoked(&[g]).starts_with("revoked 1 grant\nID "));
    }

    fn request(state: &str, approvals: Value, grant_id: Value) -> Value {
        json!({
            "id": "req_9", "state": state, "identity": "ci-deployer", "entitlement": "prod-db/write",
            "ttl": "15m", "task": {"kind": "change", "ref": "CHG-7", "reason": "migrate"},
            "requester": "ci-deployer",
            "decision": {"outcome": "pending", "approvals_required": 2,
                         "policies": ["prod-write-needs-two"], "reason": "prod writes need two approvers"},
            "approvals": approvals, "denial": null, "created_at": "2026-11-26T10:00:00Z",
            "pending_until": "2026-11-26T11:00:00Z", "grant_id": grant_id
        })
    }

    #[test]
    fn granted_request_ends_with_the_token_alone() {
        let resp: wire::RequestResponse = from(json!({
            "request": request("granted", json!([]), json!("grt_1")),
            "grant": grant("grt_1", "active", Value::Null),
            "credential": {"kind": "token", "access_token": "eyJ.tok.sig", "token_type": "Bearer",
                           "expires_at": "2026-11-26T10:15:00Z"},
            "ttl_capped": true
        }));
        check(
            granted(&resp),
            "granted:      grt_1\n\
             request:      req_9\n\
             identity:     ci-deployer\n\
             entitlement:  prod-db/write\n\
             state:        active\n\
             expires:      2026-11-26T10:15:00Z\n\
             ttl:          15m (lowered to the entitlement's cap)\n\
             eyJ.tok.sig\n",
        );
        assert!(!format!("{resp:?}").contains("eyJ.tok.sig"));
    }

    #[test]
    fn granted_on_behalf_has_no_token() {
        let resp: wire::RequestResponse = from(json!({
            "request": request("granted", json!([]), json!("grt_1")),
            "grant": null, "credential": null, "ttl_capped": false
        }));
        assert!(
            granted(&resp).ends_with("no token in this answer: it is delivered to ci-deployer\n")
        );
    }

    #[test]
    fn pending_request_says_how_many_approvals_remain() {
        let r: wire::Request = from(request(
            "pending",
            json!([{"approver": "alice", "at": "2026-11-26T10:01:00Z", "reason": "ok"}]),
            Value::Null,
        ));
        check(
            pending(&r),
            "pending:           req_9\n\
             approvals needed:  1\n\
             why:               prod writes need two approvers\n\
             policies:          prod-write-needs-two\n\
             pending until:     2026-11-26T11:00:00Z\n\
             check with `kairos request-status req_9`, or wait for the decision with `kairos request-status req_9 --wait`\n",
        );
        check(
            approved(&wire::RequestResponse {
                request: r,
                ..Default::default()
            }),
            "approved req_9: 1 more approval needed\n",
        );
    }

    #[test]
    fn request_list_and_detail() {
        let list: wire::RequestList =
            from(json!({"requests": [request("pending", json!([]), Value::Null)]}));
        check(
            requests_table(&list.requests),
            "ID     STATE    IDENTITY     ENTITLEMENT    TTL  TASK          APPROVALS  CREATED\n\
             req_9  pending  ci-deployer  prod-db/write  15m  change:CHG-7  0/2        2026-11-26T10:00:00Z\n",
        );
        let r: wire::Request = from(request(
            "granted",
            json!([{"approver": "alice", "at": "2026-11-26T10:01:00Z", "reason": "ok"},
                   {"approver": "bob", "at": "2026-11-26T10:02:00Z", "reason": "fine"}]),
            json!("grt_5"),
        ));
        let detail = request_detail(&r);
        assert!(detail.contains("\napprovals:      2 of 2\n"), "{detail}");
        assert!(
            detail.contains("\napproved by:    bob at 2026-11-26T10:02:00Z: fine\n"),
            "{detail}"
        );
        assert!(detail.ends_with("\ngrant:          grt_5\n"), "{detail}");
        check(
            approved(&wire::RequestResponse {
                request: r,
                ..Default::default()
            }),
            "approved req_9: granted as grt_5\n",
        );
    }

    #[test]
    fn renew_prints_expiry_then_token() {
        let resp: wire::RenewResponse = from(json!({
            "grant": grant("grt_1", "active", Value::Null),
            "credential": {"kind": "token", "access_token": "eyJ.new", "token_type": "Bearer",
                           "expires_at": "2026-11-26T10:25:00Z"}
        }));
        check(
            renewed(&resp),
            "renewed:      grt_1\nexpires:      2026-11-26T10:25:00Z\nmax expires:  2026-11-26T11:00:00Z\neyJ.new\n",
        );
    }

    #[test]
    fn a_pending_renewal_names_its_request() {
        let resp: wire::RenewResponse = from(json!({
            "grant": grant("grt_1", "active", Value::Null),
            "credential": null,
            "request": {"id": "req_2", "state": "pending", "renews": "grt_1",
                        "decision": {"outcome": "pending", "approvals_required": 2,
                                     "policies": ["p"], "reason": "needs two"}}
        }));
        let out = renewed(&resp);
        assert!(out.starts_with("renewal of grt_1 pending:"), "{out}");
        assert!(out.contains("req_2") && out.contains("needs two"), "{out}");
    }

    #[test]
    fn apply_lists_changes() {
        let a: wire::ApplyResponse = from(json!({"created": ["identity ci", "target db"],
                                                "changed": [], "removed": ["team old"]}));
        check(
            applied(&a),
            "created: identity ci, target db\nremoved: team old\n",
        );
        check(applied(&wire::ApplyResponse::default()), "no changes\n");
        let a: wire::ApplyResponse = from(json!({"created": [], "changed": ["target m"],
            "removed": [], "warnings": ["target m: MariaDB's event scheduler is off"]}));
        check(
            applied(&a),
            "changed: target m\nwarning: target m: MariaDB's event scheduler is off\n",
        );
    }

    fn audit_sample() -> Value {
        json!({"records": [
            {"seq": 1, "at": "2026-11-26T10:00:00Z", "kind": "request.created", "actor": "ci",
             "identity": "ci", "request_id": "req_1", "grant_id": null, "task_ref": "CHG-1",
             "data": {"ttl": "15m"}, "hash": "ab"},
            {"seq": 12, "at": "2026-11-26T10:00:01Z", "kind": "grant.issued", "actor": "kairos",
             "identity": "ci", "request_id": "req_1", "grant_id": "grt_1", "task_ref": "CHG-1",
             "data": {}, "hash": "cd"}
        ]})
    }

    #[test]
    fn audit_as_table_and_json_lines() {
        let list: wire::AuditList = from(audit_sample());
        let records: Vec<wire::AuditRecord> =
            list.records.iter().map(|v| from(v.clone())).collect();
        check(
            audit_table(&records),
            "SEQ  AT                    KIND             ACTOR   IDENTITY  GRANT  TASK\n\
             1    2026-11-26T10:00:00Z  request.created  ci      ci        -      CHG-1\n\
             12   2026-11-26T10:00:01Z  grant.issued     kairos  ci        grt_1  CHG-1\n",
        );
        let lines = json_lines(&list.records);
        assert_eq!(lines.lines().count(), 2);
        for (line, original) in lines.lines().zip(&list.records) {
            let parsed: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            assert_eq!(&parsed, original);
        }
    }

    #[test]
    fn audit_verify_outcomes() {
        let ok: wire::Verify =
            from(json!({"ok": true, "records": 42, "broken_at": null, "problem": null}));
        assert_eq!(
            verified(&ok),
            ("audit chain intact: 42 records\n".into(), String::new())
        );
        let bad: wire::Verify = from(json!({"ok": false, "records": 42, "broken_at": 17,
                                           "problem": "hash does not match its contents"}));
        assert_eq!(
            verified(&bad),
            (
                String::new(),
                "AUDIT CHAIN BROKEN at record 17: hash does not match its contents\n".into()
            )
        );
    }

    #[test]
    fn checkpoint_verdicts_name_file_line_and_why() {
        let places = ["cp.jsonl:1".to_owned(), "cp.jsonl:2".to_owned()];
        let ok: wire::CheckpointsVerify = from(json!({"ok": true, "records": 9,
            "checkpoints": [{"index": 0, "seq": 4, "status": "extended"},
                            {"index": 1, "seq": 9, "status": "extended"}]}));
        assert_eq!(
            checkpoints_verified(&ok, &places),
            (
                "audit chain intact: 9 records\nextends all 2 checkpoints\n".into(),
                String::new()
            )
        );
        let bad: wire::CheckpointsVerify = from(json!({"ok": false, "records": 9,
            "checkpoints": [{"index": 0, "seq": 4, "status": "extended"},
                            {"index": 1, "status": "forged", "problem": "forged: bad signature"}]}));
        let (out, err) = checkpoints_verified(&bad, &places);
        assert_eq!(out, "audit chain intact: 9 records\n");
        assert_eq!(
            err,
            "checkpoint cp.jsonl:2: FORGED: forged: bad signature\n1 of 2 checkpoints extended\n"
        );
    }

    #[test]
    fn keys_mark_the_current_one() {
        let k: wire::Keys = from(json!({"current_kid": "k2", "jwks": {"keys": [
            {"kid": "k1", "alg": "ES256", "kty": "EC", "crv": "P-256", "x": "..", "y": ".."},
            {"kid": "k2", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": ".."}
        ]}}));
        check(
            keys_table(&k),
            "KID  ALG    TYPE         CURRENT\nk1   ES256  EC P-256\nk2   EdDSA  OKP Ed25519  yes\n",
        );
    }

    #[test]
    fn users_and_new_user() {
        let list: wire::UserList = from(json!({"users": [
            {"name": "alice", "role": "approver", "teams": ["payments", "sre"], "created_at": "2026-11-26T10:00:00Z"},
            {"name": "root", "role": "admin", "teams": [], "created_at": "2026-11-25T10:00:00Z"}
        ]}));
        check(
            users_table(&list.users),
            "NAME   ROLE      TEAMS         CREATED\n\
             alice  approver  payments,sre  2026-11-26T10:00:00Z\n\
             root   admin     -             2026-11-25T10:00:00Z\n",
        );
        let n: wire::NewUser = from(
            json!({"user": {"name": "bob", "role": "operator", "teams": ["sre"],
                                                    "created_at": "x"}, "token": "kai_secret"}),
        );
        check(
            new_user(&n),
            "created user bob (operator; teams: sre)\n\
             API token (shown once, Kairos keeps only its hash; it cannot be shown again):\n\
             kai_secret\n",
        );
        assert!(!format!("{n:?}").contains("kai_secret"));
    }

    #[test]
    fn introspection_shows_claims_and_times() {
        let i: wire::Introspection =
            from(json!({"active": true, "sub": "ci", "exp": 1_795_687_200,
                                                "entitlement": "db/ro"}));
        check(
            introspection(&i),
            "active:       true\n\
             entitlement:  db/ro\n\
             exp:          1795687200 (2026-11-26T10:00:00Z)\n\
             sub:          ci\n",
        );
        check(
            introspection(&from(json!({"active": false}))),
            "active:  false\n",
        );
    }

    #[test]
    fn exchange_outcomes() {
        let x: wire::TokenExchange = from(
            json!({"access_token": "eyJ.x", "issued_token_type": "urn:…",
            "token_type": "Bearer", "expires_in": 900, "scope": "db/ro",
            "grant_id": "grt_1", "request_id": "req_1"}),
        );
        check(
            exchanged(&x),
            "granted:      grt_1\nrequest:      req_1\nentitlement:  db/ro\nexpires in:   900s\neyJ.x\n",
        );
        let p: wire::OAuthError = from(json!({"error": "authorization_pending",
            "error_description": "2 approval(s) needed", "request_id": "req_2", "policies": ["p1"]}));
        check(
            exchange_pending(&p),
            "pending:   req_2\nwhy:       2 approval(s) needed\npolicies:  p1\n",
        );
    }

    #[test]
    fn health_line() {
        let h: wire::Health = from(json!({"status": "ok", "store": "sqlite", "version": "0.1.0"}));
        check(health(&h), "ok (store: sqlite, version: 0.1.0)\n");
    }
}
