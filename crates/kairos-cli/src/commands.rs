//! One function per command: call the API, then print with [`crate::render`].

use std::io::{Read as _, Write};
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::api::{Answer, Api, Auth, Body, CliError, Exit};
use crate::cli::{
    AuditArgs, AuditCommand, Command, ConfigCommand, DecideArgs, ExchangeArgs, GrantsArgs,
    KeysArgs, KeysCommand, RenewArgs, RequestArgs, RequestsArgs, RevokeArgs, UserCommand,
};
use crate::{render, time, wire};

pub(crate) mod recert;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    /// `--json`: the server's JSON (JSON Lines for `audit`).
    Json,
}

/// Where a command writes, and how.
pub struct Io<'a> {
    pub out: &'a mut (dyn Write + Send),
    pub err: &'a mut (dyn Write + Send),
    pub format: Format,
}

impl Io<'_> {
    pub(crate) fn json(&self) -> bool {
        self.format == Format::Json
    }

    pub(crate) fn out(&mut self, s: &str) -> Result<(), CliError> {
        self.out.write_all(s.as_bytes())?;
        Ok(())
    }

    pub(crate) fn err(&mut self, s: &str) -> Result<(), CliError> {
        self.err.write_all(s.as_bytes())?;
        Ok(())
    }

    /// `--json`: the server's JSON; otherwise the rendered text.
    pub(crate) fn show(
        &mut self,
        answer: &Answer,
        text: impl FnOnce() -> Result<String, CliError>,
    ) -> Result<(), CliError> {
        if self.json() {
            self.out(&render::pretty(&answer.json))
        } else {
            let text = text()?;
            self.out(&text)
        }
    }
}

/// What to print when a token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    /// The grant, then the token on its own line.
    Everything,
    /// `--token-only`: the token alone, for `TOKEN=$(kairos request … --token-only)`.
    TokenOnly,
}

impl Show {
    fn from_flag(token_only: bool) -> Self {
        if token_only {
            Self::TokenOnly
        } else {
            Self::Everything
        }
    }
}

const OAUTH_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const OAUTH_TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The longest single long-poll; the server caps it at 60s.
const POLL_STEP: Duration = Duration::from_secs(30);

pub async fn dispatch(api: &Api, command: Command, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match command {
        Command::Request(a) => request(api, a, io).await,
        Command::Grants(a) => grants(api, a, io).await,
        Command::Grant { id } => {
            let ans = api.get(&["v1", "grants", &id], &[]).await?;
            io.show(&ans, || Ok(render::grant_detail(&ans.decode()?)))?;
            Ok(Exit::Success)
        }
        Command::Requests(a) => requests(api, a, io).await,
        Command::ShowRequest { id, wait } => {
            let ans = match wait {
                Some(wait) => wait_for_decision(api, &id, wait).await?.0,
                None => api.get(&["v1", "requests", &id], &[]).await?,
            };
            io.show(&ans, || {
                let r: wire::RequestResponse = ans.decode()?;
                Ok(render::request_status(&r))
            })?;
            Ok(Exit::Success)
        }
        Command::Release { grant_id, wait } => {
            let ans = api
                .send::<Value>(Method::POST, &["v1", "grants", &grant_id, "release"], None)
                .await?;
            let Some(wait) = wait else {
                io.show(&ans, || Ok(render::ended(&ans.decode()?, "released")))?;
                return Ok(Exit::Success);
            };
            let (ans, verified) = wait_verified_gone(api, &grant_id, wait).await?;
            io.show(&ans, || Ok(render::grant_detail(&ans.decode()?)))?;
            if verified {
                Ok(Exit::Success)
            } else {
                io.err(&format!(
                    "not verified gone within {}: Kairos keeps retrying; `kairos grant {}` shows when it is\n",
                    humantime::format_duration(wait),
                    render::clean(&grant_id)
                ))?;
                Ok(Exit::Failure)
            }
        }
        Command::Revoke(a) => revoke(api, a, io).await,
        Command::Renew(a) => renew(api, a, io).await,
        Command::Approve(a) => decide(api, a, Decision::Approve, io).await,
        Command::Deny(a) => decide(api, a, Decision::Deny, io).await,
        Command::Apply {
            file,
            dry_run,
            allow_remove_all,
        } => apply(api, &file, dry_run, allow_remove_all, io).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let ans = api.get(&["v1", "config"], &[]).await?;
            io.show(&ans, || Ok(render::config(&ans.json)))?;
            Ok(Exit::Success)
        }
        Command::Entitlements { mine } => {
            let ans = api.get(&["v1", "entitlements"], &[]).await?;
            if mine && !io.json() {
                io.err("as the workload of this token:\n")?;
            }
            io.show(&ans, || Ok(render::entitlements_table(&ans.decode()?)))?;
            Ok(Exit::Success)
        }
        Command::Audit(a) => audit(api, a, io).await,
        Command::Keys(a) => keys(api, a, io).await,
        Command::User { command } => user(api, command, io).await,
        Command::Alerts(a) => crate::governance::alerts(api, a, io).await,
        Command::Posture => crate::governance::posture(api, io).await,
        Command::Identity { command } => crate::identity::run(api, command, io).await,
        Command::Introspect { access_token } => {
            let token = from_stdin_if_dash(access_token, "token")?;
            let form = [("token", token.expose_secret())];
            let ans = api
                .call(
                    Method::POST,
                    &["v1", "oauth", "introspect"],
                    &[],
                    Body::Form(&form),
                    Auth::Required,
                    Duration::ZERO,
                )
                .await?;
            io.show(&ans, || Ok(render::introspection(&ans.decode()?)))?;
            Ok(Exit::Success)
        }
        Command::Exchange(a) => exchange(api, a, io).await,
        // `run` serves it on the process's own stdin and stdout.
        Command::Mcp(_) => Err(CliError::Usage(
            "kairos mcp speaks on stdin and stdout; start it as an agent runtime's MCP server process".into(),
        )),
        Command::Recert { command } => recert::recert(api, command, io).await,
        Command::Exception { command } => recert::exception(api, command, io).await,
        Command::Review { command } => crate::reviews::run(api, command, io).await,
        Command::Notifications(a) => crate::notifications::run(api, a, io).await,
        Command::Health => {
            let ans = api
                .call(
                    Method::GET,
                    &["v1", "health"],
                    &[],
                    Body::Empty,
                    Auth::None,
                    Duration::ZERO,
                )
                .await?;
            io.show(&ans, || Ok(render::health(&ans.decode()?)))?;
            Ok(Exit::Success)
        }
    }
}

/// `-` means: read the secret from stdin, so it stays out of shell history and `ps`.
fn from_stdin_if_dash(value: SecretString, what: &str) -> Result<SecretString, CliError> {
    if value.expose_secret() != "-" {
        return Ok(value);
    }
    let mut s = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| CliError::Usage(format!("cannot read the {what} from stdin: {e}")))?;
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(CliError::Usage(format!("no {what} on stdin")));
    }
    Ok(SecretString::from(trimmed))
}

fn opt_query(pairs: &[(&'static str, Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect()
}

async fn request(api: &Api, a: RequestArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let public_key = match &a.public_key_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            CliError::Failed(format!(
                "cannot read --public-key-file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let body = json!({
        "entitlement": a.entitlement,
        "ttl": a.ttl,
        "task": {"kind": a.task.task_kind, "ref": a.task.task_ref, "reason": a.task.reason},
        "identity": a.identity,
        "public_key": public_key,
    });
    let mut ans = api
        .send(Method::POST, &["v1", "requests"], Some(&body))
        .await?;
    let mut resp: wire::RequestResponse = ans.decode()?;
    let show = Show::from_flag(a.token_only);
    if ans.status == StatusCode::ACCEPTED || resp.request.state == "pending" {
        let Some(wait) = a.wait else {
            if show == Show::TokenOnly {
                return Err(CliError::Failed(format!(
                    "no token: request {id} is pending approval ({} needed); wait for it with `kairos request-status {id} --wait`",
                    resp.request.approvals_needed(),
                    id = render::clean(&resp.request.id),
                )));
            }
            io.show(&ans, || Ok(render::pending(&resp.request)))?;
            return Ok(Exit::Success);
        };
        if !io.json() && show == Show::Everything {
            let n = resp.request.approvals_needed();
            io.err(&format!(
                "request {} needs {n} approval{} ({}); waiting up to {}…\n",
                render::clean(&resp.request.id),
                if n == 1 { "" } else { "s" },
                render::clean(&resp.request.decision.reason),
                humantime::format_duration(wait)
            ))?;
        }
        (ans, resp) = wait_for_decision(api, &resp.request.id, wait).await?;
    }
    settled(&ans, &resp, show, a.wait, io)
}

/// Long-polls the request until it leaves `pending` or `wait` is over.
async fn wait_for_decision(
    api: &Api,
    id: &str,
    wait: Duration,
) -> Result<(Answer, wire::RequestResponse), CliError> {
    let deadline = Instant::now() + wait;
    loop {
        let started = Instant::now();
        let step = deadline
            .saturating_duration_since(started)
            .min(POLL_STEP)
            .max(Duration::from_secs(1));
        let ans = api
            .call(
                Method::GET,
                &["v1", "requests", id],
                &[("wait", format!("{}s", step.as_secs()))],
                Body::Empty,
                Auth::Required,
                step,
            )
            .await?;
        let resp: wire::RequestResponse = ans.decode()?;
        if resp.request.state != "pending" || Instant::now() >= deadline {
            return Ok((ans, resp));
        }
        // A server that answers at once (no long-poll) must not be hammered.
        let floor = Duration::from_secs(1);
        if started.elapsed() < floor {
            tokio::time::sleep(floor - started.elapsed()).await;
        }
    }
}

/// Prints a request that is (or should be) decided: granted, denied, expired or still pending.
fn settled(
    ans: &Answer,
    resp: &wire::RequestResponse,
    show: Show,
    waited: Option<Duration>,
    io: &mut Io<'_>,
) -> Result<Exit, CliError> {
    let r = &resp.request;
    let id = render::clean(&r.id);
    match r.state.as_str() {
        "granted" => {
            if show == Show::TokenOnly {
                let Some(c) = &resp.credential else {
                    return Err(CliError::Failed(format!(
                        "request {id} was granted, but the token goes to {}, not to you",
                        render::clean(&r.identity)
                    )));
                };
                io.out(&format!("{}\n", c.secret_line()))?;
                grant_on_stderr(
                    resp.grant
                        .as_ref()
                        .map(|g| g.id.as_str())
                        .or(r.grant_id.as_deref()),
                    io,
                )?;
                if let Some(review) = &resp.review_id {
                    io.err(&format!(
                        "break-glass review: {} (open until an owner files it)\n",
                        render::clean(review)
                    ))?;
                }
            } else {
                io.show(ans, || Ok(render::granted(resp)))?;
            }
            Ok(Exit::Success)
        }
        "denied" => {
            if io.json() {
                io.out(&render::pretty(&ans.json))?;
            }
            let by = r.denial.as_ref().map_or_else(
                || format!("by policy: {}", r.decision.reason),
                |d| format!("by {}: {}", d.approver, d.reason),
            );
            io.err(&format!(
                "error: request {id} denied {}\n",
                render::clean(&by)
            ))?;
            Ok(Exit::Denied)
        }
        "pending" => {
            if io.json() {
                io.out(&render::pretty(&ans.json))?;
            }
            let waited = waited.map_or_else(String::new, |w| {
                format!(" after {}", humantime::format_duration(w))
            });
            Err(CliError::Failed(format!(
                "request {id} is still pending{waited}: {} more approval(s) needed; check with `kairos request-status {id}`",
                r.approvals_needed()
            )))
        }
        other => {
            if io.json() {
                io.out(&render::pretty(&ans.json))?;
            }
            Err(CliError::Failed(format!(
                "request {id} {}: no access was granted",
                render::clean(other)
            )))
        }
    }
}

async fn grants(api: &Api, a: GrantsArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let query = opt_query(&[
        ("state", a.state.map(|s| s.as_str().to_owned())),
        ("identity", a.identity),
        ("task_ref", a.task_ref),
        ("entitlement", a.entitlement),
        ("limit", a.limit.map(|l| l.to_string())),
    ]);
    let ans = api.get(&["v1", "grants"], &query).await?;
    io.show(&ans, || {
        let list: wire::GrantList = ans.decode()?;
        Ok(render::grants_table(&list.grants))
    })?;
    Ok(Exit::Success)
}

async fn requests(api: &Api, a: RequestsArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let query = opt_query(&[
        ("state", a.state.map(|s| s.as_str().to_owned())),
        ("identity", a.identity),
        ("limit", a.limit.map(|l| l.to_string())),
    ]);
    let ans = api.get(&["v1", "requests"], &query).await?;
    io.show(&ans, || {
        let list: wire::RequestList = ans.decode()?;
        Ok(render::requests_table(&list.requests))
    })?;
    Ok(Exit::Success)
}

async fn revoke(api: &Api, a: RevokeArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let reason = a.reason;
    let ans = match (a.grant_id, a.identity, a.task_ref) {
        (Some(id), None, None) => {
            let body = reason.map(|reason| json!({ "reason": reason }));
            api.send::<Value>(
                Method::POST,
                &["v1", "grants", &id, "revoke"],
                body.as_ref(),
            )
            .await?
        }
        (None, Some(identity), None) => {
            api.send(
                Method::POST,
                &["v1", "grants", "revoke"],
                Some(&json!({ "identity": identity, "reason": reason })),
            )
            .await?
        }
        (None, None, Some(task_ref)) => {
            api.send(
                Method::POST,
                &["v1", "grants", "revoke"],
                Some(&json!({ "task_ref": task_ref, "reason": reason })),
            )
            .await?
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of GRANT_ID, --identity or --task-ref".into(),
            ));
        }
    };
    io.show(&ans, || {
        let list: wire::GrantList = ans.decode()?;
        Ok(render::revoked(&list.grants))
    })?;
    Ok(Exit::Success)
}

async fn renew(api: &Api, a: RenewArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let ans = api
        .send(
            Method::POST,
            &["v1", "grants", &a.grant_id, "renew"],
            Some(&json!({ "ttl": a.ttl })),
        )
        .await?;
    if Show::from_flag(a.token_only) == Show::TokenOnly {
        let resp: wire::RenewResponse = ans.decode()?;
        let Some(credential) = resp.credential else {
            return Err(CliError::Failed(format!(
                "no token: the renewal of {} is pending approval as request {}; check with `kairos request-status`",
                render::clean(&resp.grant.id),
                render::clean(resp.request.as_ref().map_or("?", |r| r.id.as_str()))
            )));
        };
        io.out(&format!("{}\n", credential.secret_line()))?;
        grant_on_stderr(Some(&resp.grant.id), io)?;
    } else {
        io.show(&ans, || Ok(render::renewed(&ans.decode()?)))?;
    }
    Ok(Exit::Success)
}

#[derive(Debug, Clone, Copy)]
enum Decision {
    Approve,
    Deny,
}

async fn decide(api: &Api, a: DecideArgs, d: Decision, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let verb = match d {
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    };
    let ans = api
        .send(
            Method::POST,
            &["v1", "requests", &a.request_id, verb],
            Some(&json!({ "reason": a.reason })),
        )
        .await?;
    io.show(&ans, || match d {
        Decision::Approve => Ok(render::approved(&ans.decode()?)),
        Decision::Deny => {
            let r: wire::Request = ans.decode()?;
            Ok(format!("denied {}\n", render::clean(&r.id)))
        }
    })?;
    Ok(Exit::Success)
}

/// `--token-only` keeps stdout for the secret; the grant id that `release` needs goes to
/// stderr.
fn grant_on_stderr(id: Option<&str>, io: &mut Io<'_>) -> Result<(), CliError> {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => io.err(&format!("grant: {}\n", render::clean(id))),
        None => Ok(()),
    }
}

async fn apply(
    api: &Api,
    file: &std::path::Path,
    dry_run: bool,
    allow_remove_all: bool,
    io: &mut Io<'_>,
) -> Result<Exit, CliError> {
    let body = crate::bundle::read(file).map_err(CliError::Usage)?;
    let mut query = Vec::new();
    if dry_run {
        query.push(("dry_run", "true".to_owned()));
    }
    if allow_remove_all {
        query.push(("allow_remove_all", "true".to_owned()));
    }
    let ans = api
        .call(
            Method::POST,
            &["v1", "config", "apply"],
            &query,
            Body::Json(&body),
            Auth::Required,
            Duration::ZERO,
        )
        .await?;
    io.show(&ans, || Ok(render::applied(&ans.decode()?)))?;
    Ok(Exit::Success)
}

async fn audit(api: &Api, a: AuditArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    if let Some(AuditCommand::Checkpoint) = a.command {
        let ans = api
            .send(
                Method::POST,
                &["v1", "audit", "checkpoints"],
                Some(&json!({})),
            )
            .await?;
        io.show(&ans, || {
            let line = json!({
                "seq": ans.json["seq"],
                "hash": ans.json["hash"],
                "at": ans.json["at"],
                "kid": ans.json["kid"],
                "checkpoint": ans.json["checkpoint"],
            });
            Ok(format!("{line}\n"))
        })?;
        return Ok(Exit::Success);
    }
    if let Some(AuditCommand::Verify {
        checkpoints: Some(file),
    }) = &a.command
    {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CliError::Usage(format!(
                "cannot read checkpoint file {}: {e}",
                file.display()
            ))
        })?;
        let lines = checkpoint_lines(&file.display().to_string(), &text)?;
        let body = json!({ "checkpoints": lines.iter().map(|(_, c)| c).collect::<Vec<_>>() });
        let ans = api
            .send(Method::POST, &["v1", "audit", "verify"], Some(&body))
            .await?;
        let v: wire::CheckpointsVerify = ans.decode()?;
        let places: Vec<String> = lines
            .iter()
            .map(|(n, _)| format!("{}:{n}", file.display()))
            .collect();
        let (out, err) = render::checkpoints_verified(&v, &places);
        if io.json() {
            io.out(&render::pretty(&ans.json))?;
        } else {
            io.out(&out)?;
        }
        io.err(&err)?;
        return Ok(if v.ok { Exit::Success } else { Exit::Failure });
    }
    if let Some(AuditCommand::Verify { checkpoints: None }) = a.command {
        let ans = api.get(&["v1", "audit", "verify"], &[]).await?;
        let v: wire::Verify = ans.decode()?;
        let (out, err) = render::verified(&v);
        if io.json() {
            io.out(&render::pretty(&ans.json))?;
        } else {
            io.out(&out)?;
        }
        io.err(&err)?;
        return Ok(if v.ok { Exit::Success } else { Exit::Failure });
    }
    let f = a.filter;
    let now = SystemTime::now();
    let when = |flag: &str, v: Option<String>| {
        v.map(|v| time::resolve_time(flag, &v, now))
            .transpose()
            .map_err(CliError::Usage)
    };
    let query = opt_query(&[
        ("identity", f.identity),
        ("grant", f.grant),
        ("request", f.request),
        ("task_ref", f.task_ref),
        ("since", when("since", f.since)?),
        ("until", when("until", f.until)?),
        ("limit", f.limit.map(|l| l.to_string())),
    ]);
    let ans = api.get(&["v1", "audit"], &query).await?;
    let list: wire::AuditList = ans.decode()?;
    if io.json() {
        io.out(&render::json_lines(&list.records))?;
    } else {
        let records = list
            .records
            .iter()
            .map(crate::api::decode)
            .collect::<Result<Vec<wire::AuditRecord>, _>>()?;
        io.out(&render::audit_table(&records))?;
    }
    Ok(Exit::Success)
}

async fn keys(api: &Api, a: KeysArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match a.command {
        None => {
            let ans = api.get(&["v1", "keys"], &[]).await?;
            io.show(&ans, || Ok(render::keys_table(&ans.decode()?)))?;
        }
        Some(KeysCommand::Rotate { alg }) => {
            let body = json!({ "alg": alg.map(|a| a.as_str()) });
            let ans = api.send(Method::POST, &["v1", "keys"], Some(&body)).await?;
            io.show(&ans, || {
                let k: wire::Keys = ans.decode()?;
                Ok(format!(
                    "rotated: the current signing key is {}\n{}",
                    render::clean(&k.current_kid),
                    render::keys_table(&k)
                ))
            })?;
        }
    }
    Ok(Exit::Success)
}

async fn user(api: &Api, command: UserCommand, io: &mut Io<'_>) -> Result<Exit, CliError> {
    match command {
        UserCommand::Add {
            name,
            role,
            teams,
            targets,
        } => {
            let body = json!({
                "name": name, "role": role.as_str(), "teams": teams, "targets": targets,
            });
            let ans = api
                .send(Method::POST, &["v1", "users"], Some(&body))
                .await?;
            io.show(&ans, || Ok(render::new_user(&ans.decode()?)))?;
            if io.json() {
                io.err("note: the token is shown once; Kairos keeps only its hash\n")?;
            }
        }
        UserCommand::List => {
            let ans = api.get(&["v1", "users"], &[]).await?;
            io.show(&ans, || {
                let list: wire::UserList = ans.decode()?;
                Ok(render::users_table(&list.users))
            })?;
        }
        UserCommand::Revoke { name } => {
            let ans = api
                .send::<Value>(Method::POST, &["v1", "users", &name, "revoke"], None)
                .await?;
            io.show(&ans, || {
                let r: wire::Revoked = ans.decode()?;
                let n = r.revoked_tokens;
                Ok(format!(
                    "revoked {n} API token{} of {}\n",
                    if n == 1 { "" } else { "s" },
                    render::clean(&name)
                ))
            })?;
        }
    }
    Ok(Exit::Success)
}

async fn exchange(api: &Api, a: ExchangeArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let show = Show::from_flag(a.token_only);
    let subject = from_stdin_if_dash(a.subject_token, "subject token")?;
    let mut form = vec![
        ("grant_type", OAUTH_GRANT_TYPE),
        ("subject_token", subject.expose_secret()),
        ("subject_token_type", OAUTH_TOKEN_TYPE_JWT),
        ("scope", a.entitlement.as_str()),
        ("task_kind", a.task.task_kind.as_str()),
        ("task_ref", a.task.task_ref.as_str()),
        ("task_reason", a.task.reason.as_str()),
    ];
    if let Some(ttl) = &a.ttl {
        form.push(("ttl", ttl));
    }
    let ans = api
        .call(
            Method::POST,
            &["v1", "oauth", "token"],
            &[],
            Body::Form(&form),
            Auth::None,
            Duration::ZERO,
        )
        .await?;
    if ans.json["error"] == "authorization_pending" {
        let pending: wire::OAuthError = ans.decode()?;
        if show == Show::TokenOnly {
            return Err(CliError::Failed(format!(
                "no token: approval needed ({}); request {}",
                render::clean(&pending.error_description),
                render::clean(pending.request_id.as_deref().unwrap_or("?"))
            )));
        }
        io.show(&ans, || Ok(render::exchange_pending(&pending)))?;
        return Ok(Exit::Success);
    }
    let x: wire::TokenExchange = ans.decode()?;
    if show == Show::TokenOnly {
        io.out(&format!("{}\n", x.access_token))?;
        grant_on_stderr(Some(&x.grant_id), io)?;
    } else {
        io.show(&ans, || Ok(render::exchanged(&x)))?;
    }
    Ok(Exit::Success)
}

/// Reads a grant until its end is verified (state `ended`, with a receipt) or `wait` has
/// passed; the last answer, and whether it is verified.
async fn wait_verified_gone(
    api: &Api,
    grant_id: &str,
    wait: Duration,
) -> Result<(crate::api::Answer, bool), CliError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    loop {
        let ans = api.get(&["v1", "grants", grant_id], &[]).await?;
        let ended = ans.json["state"] == "ended";
        if ended || tokio::time::Instant::now() + pause > deadline {
            return Ok((ans, ended));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The checkpoints of a checkpoint file with their line numbers: one JSON object a
/// line with a `checkpoint` string (as `kairos server` writes them); blank lines skipped.
fn checkpoint_lines(file: &str, text: &str) -> Result<Vec<(usize, String)>, CliError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let checkpoint = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("checkpoint").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{file}:{}: not a checkpoint line: expected a JSON object with a \"checkpoint\" string, as kairos server writes them",
                    i + 1
                ))
            })?;
        out.push((i + 1, checkpoint));
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!(
            "{file} holds no checkpoints; the server writes them with --audit-checkpoints FILE or [server] audit_checkpoint_file"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checkpoint_files_are_read_line_by_line() {
        let text = "{\"seq\":1,\"checkpoint\":\"a.b.c\"}\n\n{\"checkpoint\":\"d.e.f\"}\n";
        let lines = checkpoint_lines("cp.jsonl", text)
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(lines, [(1, "a.b.c".to_owned()), (3, "d.e.f".to_owned())]);
        let bad = checkpoint_lines("cp.jsonl", "{\"checkpoint\":\"a.b.c\"}\nnope\n")
            .map_err(|e| e.to_string())
            .unwrap_err();
        assert!(
            bad.starts_with("cp.jsonl:2: not a checkpoint line"),
            "{bad}"
        );
        assert!(checkpoint_lines("cp.jsonl", "\n").is_err());
    }

    fn run_settled(
        json: Value,
        show: Show,
        format: Format,
    ) -> (Result<Exit, String>, String, String) {
        let ans = Answer {
            status: StatusCode::OK,
            json,
        };
        let resp: wire::RequestResponse = match ans.decode() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            format,
        };
        let exit = settled(&ans, &resp, show, Some(Duration::from_secs(300)), &mut io)
            .map_err(|e| e.to_string());
        (
            exit,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    fn response(state: &str, denial: Value, credential: Value) -> Value {
        json!({
            "request": {"id": "req_1", "state": state, "identity": "ci", "entitlement": "db/rw",
                        "ttl": "15m", "task": {"kind": "job", "ref": "r1", "reason": "x"},
                        "decision": {"outcome": "pending", "approvals_required": 1, "policies": ["p"],
                                     "reason": "needs a human"},
                        "approvals": [], "denial": denial, "grant_id": "grt_1"},
            "grant": null, "credential": credential, "ttl_capped": false
        })
    }

    #[test]
    fn granted_after_waiting_prints_only_the_token_when_asked() {
        let cred = json!({"kind": "token", "access_token": "eyJ.t", "token_type": "Bearer", "expires_at": "z"});
        let (exit, out, err) = run_settled(
            response("granted", Value::Null, cred),
            Show::TokenOnly,
            Format::Table,
        );
        assert_eq!(exit, Ok(Exit::Success));
        assert_eq!(out, "eyJ.t\n");
        // The grant id `release` needs, kept off stdout.
        assert_eq!(err, "grant: grt_1\n");
    }

    #[test]
    fn denied_after_waiting_exits_3_and_names_the_approver() {
        let denial = json!({"approver": "alice", "at": "t", "reason": "not during the freeze"});
        let (exit, out, err) = run_settled(
            response("denied", denial, Value::Null),
            Show::Everything,
            Format::Table,
        );
        assert_eq!(exit, Ok(Exit::Denied));
        assert_eq!(out, "");
        assert_eq!(
            err,
            "error: request req_1 denied by alice: not during the freeze\n"
        );
    }

    #[test]
    fn still_pending_after_waiting_fails() {
        let (exit, out, _) = run_settled(
            response("pending", Value::Null, Value::Null),
            Show::Everything,
            Format::Json,
        );
        assert_eq!(
            exit,
            Err(
                "request req_1 is still pending after 5m: 1 more approval(s) needed; \
                 check with `kairos request-status req_1`"
                    .into()
            )
        );
        assert!(
            out.contains("\"state\": \"pending\""),
            "--json still prints the answer: {out}"
        );
    }

    #[test]
    fn expired_request_fails() {
        let (exit, _, _) = run_settled(
            response("expired", Value::Null, Value::Null),
            Show::Everything,
            Format::Table,
        );
        assert_eq!(
            exit,
            Err("request req_1 expired: no access was granted".into())
        );
    }

    #[test]
    fn granted_on_behalf_with_token_only_fails() {
        let (exit, out, _) = run_settled(
            response("granted", Value::Null, Value::Null),
            Show::TokenOnly,
            Format::Table,
        );
        assert_eq!(
            exit,
            Err("request req_1 was granted, but the token goes to ci, not to you".into())
        );
        assert_eq!(out, "");
    }
}
