//! Kairos's connector for RabbitMQ: a grant's dynamic account is a RabbitMQ user, made and
//! removed through the management plugin's HTTP API.
//!
//! # What each operation sends
//!
//! - **provision**: `PUT /api/users/{account}` (the password, no tags: not a management
//!   user), `PUT /api/permissions/{vhost}/{account}` (the entitlement's configure, write and
//!   read patterns) and either `PUT /api/topic-permissions/{vhost}/{account}` (when the
//!   entitlement has a `topic`) or `DELETE` of it (so a retried provision converges to
//!   exactly the entitlement). `PUT` of a user replaces its password, so every step is safe
//!   to repeat. If a step fails, the connector deletes the user (best effort) so nothing of
//!   the account is left behind. A virtual host that does not exist, or a pattern RabbitMQ
//!   refuses, is `BadPrivileges`.
//! - **renew**: nothing. RabbitMQ users have no expiry (see below).
//! - **revoke** (idempotent): `GET /api/connections/username/{account}` (the sessions the
//!   revocation ends, counted), `DELETE /api/users/{account}` (from then on a login is
//!   refused; 404 means it was already gone), then `DELETE /api/connections/{name}` for the
//!   connections listed before and for any the user still has (RabbitMQ 3.8+ also closes a
//!   deleted user's connections by itself, asynchronously; the connector does not rely on
//!   it, and 404 for a connection already closed is fine; a 500, which RabbitMQ answers when
//!   the connection ends while it is being closed, is followed by a look at the connection
//!   and counts as closed once it is gone). The connections are closed even
//!   when the user was already gone, so a revocation that crashed between the steps
//!   finishes on its retry.
//! - **verify_gone** (method `api+amqp`): `GET /api/users/{account}` is 404, the user has no
//!   connection left, and, when the password is known, an AMQP 0-9-1 login (`PLAIN`) with it
//!   on the AMQP port is refused with 403 `ACCESS_REFUSED` ([`amqp`](crate) probe). Without a
//!   password the method is `api`.
//! - **list_managed**: `GET /api/users?columns=name`, filtered by the managed prefix.
//! - **list_sessions**: `GET /api/connections?columns=user,peer_host`, filtered likewise
//!   (this list comes from the management statistics, so a new connection appears in it
//!   after the next statistics interval, 5 s by default; revoke does not rely on it).
//! - **server_facts**: `GET /api/overview`: the cluster name and node name.
//!
//! # No native expiry
//!
//! RabbitMQ users never expire by themselves: if Kairos is down at the grant's end the user
//! stays until Kairos comes back; the revocation queue then removes it and the receipt's
//! `verified_at` tells when ([`NO_NATIVE_EXPIRY`]).
//!
//! # Admin URL and errors
//!
//! The admin URL is `http://user:password@host:15672` (or `https://…`, checked against the
//! public web roots, or against the CA certificates of the PEM file named by
//! `?ssl-ca=/path/ca.pem`). The admin user needs the `administrator` tag (users,
//! permissions, other users' connections). Credentials go in a basic-auth header, never in
//! a request URL, so no error can quote them; errors are scrubbed of the password and the
//! admin URL anyway. Each request times out after [`RabbitMqSettings::timeout`].
//! Connection errors, timeouts and 502/503/504 are `Unreachable`; 401/403 `AdminRefused`;
//! any other failure `Failed` with RabbitMQ's reason.
//!
//! Workloads connect over AMQP to [`RabbitMqSettings::amqp_host`] (default the admin URL's
//! host) and [`RabbitMqSettings::amqp_port`] (default 5672), and the connection info's
//! `database` is the virtual host. The login check of `verify_gone` connects to the admin
//! URL's host on the AMQP port (Kairos reaches the server where it administers it).
//!
//! The connector only touches users that carry its managed prefix.

mod amqp;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Privileges,
    RabbitMqPermissions, Revocability, Revoked, ServerFacts, ServerIdentity, Session, Verification,
};
use kairos_domain::Timestamp;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The managed prefix when the target does not name one.
pub const DEFAULT_MANAGED_PREFIX: &str = "kairos_";

/// The AMQP port workloads connect to when the target does not name one.
pub const DEFAULT_AMQP_PORT: u16 = 5672;

/// How long each request (and the login check) may take before the target counts as
/// unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`Revocability::native_expiry`] is `None` for RabbitMQ.
pub const NO_NATIVE_EXPIRY: &str = "RabbitMQ has no expiry for users: if Kairos is down at \
    the grant's end the user stays until Kairos comes back; the revocation queue then removes \
    it and the receipt's verified_at tells when";

/// The verification method when the password was known and an AMQP login was attempted.
pub const VERIFY_METHOD: &str = "api+amqp";

/// The verification method when no password was given (only the API was asked).
pub const VERIFY_METHOD_API_ONLY: &str = "api";

/// Where and how to reach one RabbitMQ target.
#[derive(Debug, Clone)]
pub struct RabbitMqSettings {
    /// The target's name in the catalog (appears in errors).
    pub target: String,
    /// `http(s)://user:password@host:port[/path]` of the management API.
    pub admin_url: SecretString,
    /// Every user Kairos creates here starts with this ([`DEFAULT_MANAGED_PREFIX`]).
    pub managed_prefix: String,
    /// The AMQP host workloads connect to; `None`: the admin URL's host.
    pub amqp_host: Option<String>,
    /// The AMQP port ([`DEFAULT_AMQP_PORT`]).
    pub amqp_port: u16,
    /// Per-request timeout ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl RabbitMqSettings {
    /// Settings with the default prefix, AMQP address and timeout.
    pub fn new(target: impl Into<String>, admin_url: SecretString) -> Self {
        Self {
            target: target.into(),
            admin_url,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_owned(),
            amqp_host: None,
            amqp_port: DEFAULT_AMQP_PORT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The [`Connector`] for one RabbitMQ server (see the crate docs). Cheap to clone: the
/// HTTP client is shared.
#[derive(Clone)]
pub struct RabbitMqConnector {
    target: String,
    prefix: String,
    timeout: Duration,
    http: reqwest::Client,
    /// The management API's base, without credentials.
    base: url::Url,
    admin_user: String,
    admin_password: SecretString,
    /// The admin URL's host (the login check connects there) and `host:port`.
    admin_host: String,
    admin_addr: String,
    amqp_host: String,
    amqp_port: u16,
    /// Texts that must never appear in an error: the admin URL and its password.
    secrets: Vec<SecretString>,
}

impl fmt::Debug for RabbitMqConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqConnector")
            .field("target", &self.target)
            .field("amqp_host", &self.amqp_host)
            .field("amqp_port", &self.amqp_port)
            .field("managed_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How many users a batch revokes, or checks, at once: each takes several management API
/// calls, and one at a time leaves the API mostly idle waiting on round trips; more at
/// once than this only queues inside RabbitMQ.
const BATCH_CONCURRENCY: usize = 8;

/// What a management API request answered.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl RabbitMqConnector {
    /// Checks the settings; connects nothing (the first operation does).
    pub fn new(settings: RabbitMqSettings) -> Result<Self, ConnectorError> {
        let RabbitMqSettings {
            target,
            admin_url,
            managed_prefix,
            amqp_host,
            amqp_port,
            timeout,
        } = settings;
        let failed = |reason: &str| ConnectorError::Failed {
            target: target.clone(),
            reason: reason.to_owned(),
        };
        if managed_prefix.is_empty()
            || !managed_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(failed(
                "the managed prefix must be non-empty and only a-z, 0-9 and _",
            ));
        }
        if timeout.is_zero() {
            return Err(failed("the timeout must be more than zero"));
        }
        // The parse error is not shown: it might quote the URL, password included.
        let mut base = url::Url::parse(admin_url.expose_secret()).map_err(|_| {
            failed("the admin URL is not a valid http(s)://user:password@host:port URL")
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(failed(
                "the admin URL must be http://… or https://… (the management API's address, e.g. http://admin:pw@127.0.0.1:15672)",
            ));
        }
        let Some(host) = base.host_str().map(str::to_owned) else {
            return Err(failed("the admin URL has no host"));
        };
        let port = base.port_or_known_default().unwrap_or(15672);
        let decode = percent_decode;
        let admin_user = decode(base.username());
        let admin_password = SecretString::from(base.password().map(decode).unwrap_or_default());
        if admin_user.is_empty() {
            return Err(failed(
                "the admin URL names no user: write http://user:password@host:port",
            ));
        }
        let ca_file = base
            .query_pairs()
            .find(|(k, _)| k == "ssl-ca")
            .map(|(_, v)| v.into_owned());
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!(
                "kairos-connector-rabbitmq/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(path) = &ca_file {
            if base.scheme() != "https" {
                return Err(failed(
                    "the admin URL names a CA file (ssl-ca) but is http://: write https:// for TLS",
                ));
            }
            let pem = std::fs::read(path).map_err(|e| {
                failed(&format!(
                    "cannot read the CA file {path} (ssl-ca in the admin URL): {e}"
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                failed(&format!(
                    "the CA file {path} (ssl-ca in the admin URL) holds no usable PEM certificate: {e}"
                ))
            })?;
            if certs.is_empty() {
                return Err(failed(&format!(
                    "the CA file {path} (ssl-ca in the admin URL) holds no PEM certificate"
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|_| failed("the HTTP client for the admin URL could not be built"))?;
        // The base keeps scheme, host, port and path; credentials and query go.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        let secrets = [admin_url.clone(), admin_password.clone()]
            .into_iter()
            .filter(|s| !s.expose_secret().is_empty())
            .collect();
        Ok(Self {
            amqp_host: amqp_host.unwrap_or_else(|| host.clone()),
            amqp_port,
            admin_addr: format!("{host}:{port}"),
            admin_host: host,
            target,
            prefix: managed_prefix,
            timeout,
            http,
            base,
            admin_user,
            admin_password,
            secrets,
        })
    }

    /// `{base}/api/{segments…}`, each segment percent-encoded (so vhost `/` is `%2F`).
    /// `op` on every item, [`BATCH_CONCURRENCY`] at a time; the results in the items'
    /// order.
    async fn each<I, R, F, Fut>(&self, items: Vec<I>, op: F) -> Vec<Result<R, ConnectorError>>
    where
        I: Send + 'static,
        R: Send + 'static,
        F: Fn(Self, I) -> Fut,
        Fut: Future<Output = Result<R, ConnectorError>> + Send + 'static,
    {
        let mut out: Vec<Option<Result<R, ConnectorError>>> =
            std::iter::repeat_with(|| None).take(items.len()).collect();
        let mut pending = items.into_iter().enumerate();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < BATCH_CONCURRENCY {
                let Some((i, item)) = pending.next() else {
                    break;
                };
                let work = op(self.clone(), item);
                running.spawn(async move { (i, work.await) });
            }
            match running.join_next().await {
                Some(Ok((i, result))) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(result);
                    }
                }
                // A task that ended without its answer leaves its slot empty (below).
                Some(Err(_)) => {}
                None => break,
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ConnectorError::Failed {
                        target: self.target.clone(),
                        reason: "the operation's task ended without an answer; it is retried"
                            .into(),
                    })
                })
            })
            .collect()
    }

    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("api").extend(segments);
        }
        url
    }

    fn scrub(&self, text: impl Into<String>) -> String {
        let mut text = text.into();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            if text.contains(secret) {
                text = text.replace(secret, "<redacted>");
            }
        }
        text
    }

    /// One management API request; transport failures become `Unreachable`, and the
    /// answer's status is the caller's to judge (see [`Self::status_error`]).
    async fn request(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Value>,
        op: &str,
    ) -> Result<Answer, ConnectorError> {
        let mut req = self
            .http
            .request(method, url)
            .basic_auth(&self.admin_user, Some(self.admin_password.expose_secret()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.map_err(|e| ConnectorError::Unreachable {
            target: self.target.clone(),
            reason: self.scrub(format!(
                "{op}: the management API at {} did not answer: {}",
                self.admin_addr,
                transport(&e)
            )),
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ConnectorError::Unreachable {
                target: self.target.clone(),
                reason: self.scrub(format!("{op}: reading the answer: {}", transport(&e))),
            })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// The error for an answer that was not what `op` expected.
    fn status_error(&self, op: &str, answer: &Answer) -> ConnectorError {
        let reason = answer
            .body
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let reason = self.scrub(format!("{op}: HTTP {} {reason}", answer.status.as_u16()));
        let target = self.target.clone();
        match answer.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::AdminRefused {
                target,
                reason: format!(
                    "{reason} (the admin URL's user must exist, have that password and the administrator tag)"
                ),
            },
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ConnectorError::Unreachable { target, reason },
            _ => ConnectorError::Failed { target, reason },
        }
    }

    /// Refuses names this connector must not touch.
    fn check_managed(&self, account: &AccountName) -> Result<(), ConnectorError> {
        if account.has_prefix(&self.prefix) {
            Ok(())
        } else {
            Err(ConnectorError::Failed {
                target: self.target.clone(),
                reason: format!(
                    "account {account} does not carry the managed prefix {:?}; Kairos only \
                     provisions and revokes accounts it manages",
                    self.prefix
                ),
            })
        }
    }

    /// Whether the user exists (`GET /api/users/{name}` is 200, not 404).
    async fn user_exists(&self, account: &AccountName) -> Result<bool, ConnectorError> {
        self.exists(&["users", account.as_str()], "GET /api/users/{name}")
            .await
    }

    /// Whether the resource at `segments` exists: 200 yes, 404 no, anything else an error.
    async fn exists(&self, segments: &[&str], op: &str) -> Result<bool, ConnectorError> {
        let answer = self
            .request(Method::GET, self.url(segments), None, op)
            .await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(op, &answer)),
        }
    }

    /// The names of the user's open connections.
    async fn connections_of(&self, account: &AccountName) -> Result<Vec<String>, ConnectorError> {
        let op = "GET /api/connections/username/{name}";
        let answer = self
            .request(
                Method::GET,
                self.url(&["connections", "username", account.as_str()]),
                None,
                op,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.status_error(op, &answer));
        }
        Ok(answer
            .body
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sets the user's permissions (and topic permissions) as the entitlement says.
    async fn set_permissions(
        &self,
        account: &AccountName,
        p: &RabbitMqPermissions,
    ) -> Result<(), ConnectorError> {
        let name = account.as_str();
        let op = "PUT /api/permissions/{vhost}/{name}";
        let answer = self
            .request(
                Method::PUT,
                self.url(&["permissions", &p.vhost, name]),
                Some(json!({"configure": p.configure, "write": p.write, "read": p.read})),
                op,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.privileges_error(op, &answer, &p.vhost));
        }
        let op = "topic-permissions/{vhost}/{name}";
        let url = self.url(&["topic-permissions", &p.vhost, name]);
        let answer = match &p.topic {
            Some(t) => {
                self.request(
                    Method::PUT,
                    url,
                    Some(json!({"exchange": t.exchange, "write": t.write, "read": t.read})),
                    op,
                )
                .await?
            }
            None => self.request(Method::DELETE, url, None, op).await?,
        };
        if answer.status.is_success()
            || (p.topic.is_none() && answer.status == StatusCode::NOT_FOUND)
        {
            Ok(())
        } else {
            Err(self.privileges_error(op, &answer, &p.vhost))
        }
    }

    /// A 400 on permissions is the entitlement's fault (a missing vhost, a bad pattern).
    fn privileges_error(&self, op: &str, answer: &Answer, vhost: &str) -> ConnectorError {
        if answer.status == StatusCode::BAD_REQUEST {
            let reason = answer
                .body
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("bad request");
            ConnectorError::BadPrivileges(self.scrub(format!(
                "RabbitMQ {} refused the permissions on virtual host {vhost:?}: {reason} \
                 (does the virtual host exist, and are the patterns valid regular expressions?)",
                self.target
            )))
        } else {
            self.status_error(op, answer)
        }
    }

    /// Best effort, after a failed provision: the account must not stay half made.
    async fn drop_after_failed_provision(&self, account: &AccountName) {
        let op = "DELETE /api/users/{name}";
        let result = self
            .request(
                Method::DELETE,
                self.url(&["users", account.as_str()]),
                None,
                op,
            )
            .await;
        let problem = match result {
            Ok(a) if a.status.is_success() || a.status == StatusCode::NOT_FOUND => return,
            Ok(a) => self.status_error(op, &a),
            Err(e) => e,
        };
        tracing::warn!(
            target_name = %self.target,
            account = %account,
            error = %problem,
            "could not remove a RabbitMQ user after a failed provision; the reconciler will find it"
        );
    }

    /// Closes the connections named in `known` and every connection the user still has;
    /// how many this call closed (a connection already gone is not counted).
    async fn close_connections(
        &self,
        account: &AccountName,
        known: &[String],
    ) -> Result<u64, ConnectorError> {
        let mut names = known.to_vec();
        for name in self.connections_of(account).await? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut closed = 0;
        for name in names {
            if self.close_connection(&name).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Closes one connection: `true` once it is closed, `false` if it was gone already.
    ///
    /// Deleting the user makes RabbitMQ close the user's connections by itself, so the
    /// management API may be closing a connection that is ending under it; it then answers
    /// 500. A server error is therefore followed by a look at the connection: no longer
    /// there means closed; still there, the delete is tried again, up to three times.
    async fn close_connection(&self, name: &str) -> Result<bool, ConnectorError> {
        let op = "DELETE /api/connections/{name}";
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let answer = self
                .http
                .delete(self.url(&["connections", name]))
                .basic_auth(&self.admin_user, Some(self.admin_password.expose_secret()))
                .header("X-Reason", "access revoked by Kairos")
                .send()
                .await
                .map_err(|e| ConnectorError::Unreachable {
                    target: self.target.clone(),
                    reason: self.scrub(format!("{op}: {}", transport(&e))),
                })?;
            let status = answer.status();
            if status.is_success() {
                return Ok(true);
            }
            if status == StatusCode::NOT_FOUND {
                return Ok(false);
            }
            if status.is_server_error() && attempt < 3 {
                if !self
                    .exists(&["connections", name], "GET /api/connections/{name}")
                    .await?
                {
                    return Ok(true);
                }
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                continue;
            }
            let body = answer.json().await.unwrap_or(Value::Null);
            return Err(self.status_error(op, &Answer { status, body }));
        }
    }
}

/// Whether RabbitMQ at `host:port` accepts an AMQP login as `username` with `password`:
/// the login check of `verify_gone` on its own, for callers that need to know an issued
/// credential works (benches, smoke checks). `Ok(false)` is a refusal (403
/// `ACCESS_REFUSED`); an error means no answer could be had. No virtual host is opened.
pub async fn amqp_login_accepted(
    host: &str,
    port: u16,
    username: &str,
    password: &SecretString,
    timeout: Duration,
) -> Result<bool, String> {
    match amqp::try_login(host, port, username, password, timeout).await {
        Ok(amqp::Login::Accepted) => Ok(true),
        Ok(amqp::Login::Refused(_)) => Ok(false),
        Err(amqp::ProbeError::Io(e) | amqp::ProbeError::Protocol(e)) => {
            Err(e.replace(password.expose_secret(), "<redacted>"))
        }
    }
}

/// `%XX` escapes of a URL's user or password, decoded (other bytes as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A transport error's text with its causes (reqwest's top line alone says little).
fn transport(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl Connector for RabbitMqConnector {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn revocability(&self) -> Revocability {
        Revocability {
            revocable: true,
            kills_sessions: true,
            // See NO_NATIVE_EXPIRY: RabbitMQ users never expire by themselves.
            native_expiry: None,
        }
    }

    fn managed_prefix(&self) -> &str {
        &self.prefix
    }

    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError> {
        let Privileges::RabbitMq(permissions) = req.privileges else {
            return Err(ConnectorError::BadPrivileges(
                "a RabbitMQ target takes RabbitMQ permissions (`[entitlement.rabbitmq]`), not SQL statements or Redis ACL rules".into(),
            ));
        };
        let account = req.account;
        self.check_managed(account)?;
        if permissions.vhost.is_empty() {
            return Err(ConnectorError::BadPrivileges(
                "the virtual host must not be empty (RabbitMQ's default is \"/\")".into(),
            ));
        }
        let op = "PUT /api/users/{name}";
        let answer = self
            .request(
                Method::PUT,
                self.url(&["users", account.as_str()]),
                Some(json!({"password": req.password.expose_secret(), "tags": ""})),
                op,
            )
            .await?;
        if !answer.status.is_success() {
            let e = self.status_error(op, &answer);
            self.drop_after_failed_provision(account).await;
            return Err(e);
        }
        if let Err(e) = self.set_permissions(account, permissions).await {
            self.drop_after_failed_provision(account).await;
            return Err(e);
        }
        tracing::info!(target_name = %self.target, account = %account, vhost = %permissions.vhost, "provisioned RabbitMQ user");
        Ok(ConnectionInfo {
            host: self.amqp_host.clone(),
            port: self.amqp_port,
            database: Some(permissions.vhost.clone()),
            username: account.as_str().to_owned(),
        })
    }

    async fn renew(
        &self,
        _account: &AccountName,
        _valid_until: Timestamp,
    ) -> Result<(), ConnectorError> {
        // RabbitMQ users have no expiry to move (NO_NATIVE_EXPIRY).
        Ok(())
    }

    async fn revoke(&self, account: &AccountName) -> Result<Revoked, ConnectorError> {
        self.check_managed(account)?;
        // The connections open now (what the revocation ends), then the user (from here on
        // a new login is refused, and RabbitMQ starts closing the user's connections by
        // itself), then every connection still listed, those opened meanwhile included.
        let open = self.connections_of(account).await?;
        let op = "DELETE /api/users/{name}";
        let answer = self
            .request(
                Method::DELETE,
                self.url(&["users", account.as_str()]),
                None,
                op,
            )
            .await?;
        let existed = match answer.status {
            s if s.is_success() => true,
            StatusCode::NOT_FOUND => false,
            _ => return Err(self.status_error(op, &answer)),
        };
        let closed = self.close_connections(account, &open).await?;
        let killed = u64::try_from(open.len()).unwrap_or(u64::MAX).max(closed);
        tracing::info!(
            target_name = %self.target,
            account = %account,
            sessions_killed = killed,
            existed,
            "revoked RabbitMQ user"
        );
        Ok(Revoked {
            sessions_killed: killed,
            account_existed: existed,
        })
    }

    async fn verify_gone(
        &self,
        account: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError> {
        if self.user_exists(account).await? {
            return Err(ConnectorError::StillPresent(format!(
                "GET /api/users/{account} still finds the user on {}",
                self.target
            )));
        }
        let open = self.connections_of(account).await?;
        if !open.is_empty() {
            return Err(ConnectorError::StillPresent(format!(
                "user {account} is deleted on {} but {} of its connections are still open",
                self.target,
                open.len()
            )));
        }
        let Some(password) = password else {
            return Ok(Verification {
                method: VERIFY_METHOD_API_ONLY.to_owned(),
                evidence: format!(
                    "GET /api/users/{account} answered 404 on {} and the user has no open \
                     connection; no password was given, so no login was attempted",
                    self.target
                ),
            });
        };
        let login = amqp::try_login(
            &self.admin_host,
            self.amqp_port,
            account.as_str(),
            password,
            self.timeout,
        )
        .await;
        let scrub = |text: String| {
            self.scrub(text)
                .replace(password.expose_secret(), "<redacted>")
        };
        match login {
            Ok(amqp::Login::Refused(text)) => Ok(Verification {
                method: VERIFY_METHOD.to_owned(),
                evidence: scrub(format!(
                    "GET /api/users/{account} answered 404 on {}, the user has no open \
                     connection, and an AMQP login (PLAIN) as {account} with the grant's password \
                     at {}:{} was refused: {} {text}",
                    self.target,
                    self.admin_host,
                    self.amqp_port,
                    amqp::ACCESS_REFUSED
                )),
            }),
            Ok(amqp::Login::Accepted) => Err(ConnectorError::StillPresent(format!(
                "an AMQP login as {account} with the grant's password succeeded on {}",
                self.target
            ))),
            Err(amqp::ProbeError::Io(e)) => Err(ConnectorError::Unreachable {
                target: self.target.clone(),
                reason: scrub(format!("AMQP login check: {e}")),
            }),
            Err(amqp::ProbeError::Protocol(e)) => Err(ConnectorError::Failed {
                target: self.target.clone(),
                reason: scrub(format!("AMQP login check: {e}")),
            }),
        }
    }

    async fn revoke_many(&self, accounts: &[AccountName]) -> Vec<Result<Revoked, ConnectorError>> {
        self.each(accounts.to_vec(), |c, account| async move {
            c.revoke(&account).await
        })
        .await
    }

    async fn verify_gone_many(
        &self,
        accounts: &[(AccountName, Option<SecretString>)],
    ) -> Vec<Result<Verification, ConnectorError>> {
        self.each(accounts.to_vec(), |c, (account, password)| async move {
            c.verify_gone(&account, password.as_ref()).await
        })
        .await
    }

    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError> {
        let op = "GET /api/overview";
        let answer = self
            .request(Method::GET, self.url(&["overview"]), None, op)
            .await?;
        if !answer.status.is_success() {
            return Err(self.status_error(op, &answer));
        }
        let field = |key: &str| answer.body.get(key).and_then(Value::as_str).unwrap_or("");
        let mut facts = vec![format!("rabbitmq address {}", self.admin_addr)];
        let (cluster, node) = (field("cluster_name"), field("node"));
        if !cluster.is_empty() && !node.is_empty() {
            facts.push(format!("rabbitmq cluster {cluster} node {node}"));
        }
        Ok(ServerFacts {
            identity: ServerIdentity::new(facts),
            warnings: Vec::new(),
        })
    }

    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        let op = "GET /api/users";
        let mut url = self.url(&["users"]);
        url.set_query(Some("columns=name"));
        let answer = self.request(Method::GET, url, None, op).await?;
        if !answer.status.is_success() {
            return Err(self.status_error(op, &answer));
        }
        let mut managed = Vec::new();
        let users = answer.body.as_array().cloned().unwrap_or_default();
        for user in users
            .iter()
            .filter_map(|u| u.get("name").and_then(Value::as_str))
            .filter(|u| u.starts_with(&self.prefix))
        {
            match AccountName::parse(user) {
                Ok(account) => managed.push(account),
                Err(e) => tracing::warn!(
                    target_name = %self.target,
                    error = %e,
                    "a RabbitMQ user carries the managed prefix but is not a valid account name; \
                     Kairos cannot manage it"
                ),
            }
        }
        managed.sort();
        Ok(managed)
    }

    async fn list_sessions(&self) -> Result<Vec<Session>, ConnectorError> {
        let op = "GET /api/connections";
        let mut url = self.url(&["connections"]);
        url.set_query(Some("columns=user,peer_host"));
        let answer = self.request(Method::GET, url, None, op).await?;
        if !answer.status.is_success() {
            return Err(self.status_error(op, &answer));
        }
        Ok(answer
            .body
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| {
                        let user = c.get("user").and_then(Value::as_str)?;
                        if !user.starts_with(&self.prefix) {
                            return None;
                        }
                        let account = AccountName::parse(user).ok()?;
                        let client_addr = c
                            .get("peer_host")
                            .and_then(Value::as_str)
                            .and_then(|h| h.parse().ok());
                        Some(Session {
                            account,
                            client_addr,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
