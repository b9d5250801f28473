//! Talking to the server: URLs, the bearer token, and turning answers into [`CliError`]s.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long an ordinary call may take; long polls add their wait on top.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command failed. `Display` is what the user reads after `error: `.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or local state the user must fix (exit 2).
    Usage(String),
    /// No API token for an endpoint that needs one (exit 2).
    NoToken,
    /// The server could not be reached (exit 1).
    Unreachable { addr: String, detail: String },
    /// The server refused (exit 1), or policy denied (`code == "denied"`, exit 3).
    Api {
        status: StatusCode,
        code: String,
        message: String,
        policies: Vec<String>,
    },
    /// A failure the command itself reports, already worded (exit 1).
    Failed(String),
    /// Writing our own output failed (e.g. a closed pipe).
    Output(std::io::Error),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) | Self::NoToken => Exit::Usage,
            Self::Api { code, .. } if is_denial(code) => Exit::Denied,
            Self::Unreachable { .. } | Self::Api { .. } | Self::Failed(_) | Self::Output(_) => {
                Exit::Failure
            }
        }
    }
}

fn is_denial(code: &str) -> bool {
    code == "denied" || code == "access_denied"
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Failed(m) => f.write_str(m),
            Self::NoToken => f.write_str("no API token: set KAIROS_TOKEN or pass --token"),
            Self::Unreachable { addr, detail } => write!(
                f,
                "cannot reach Kairos at {addr}: is the server running? (set KAIROS_ADDR)\n  cause: {detail}"
            ),
            Self::Api {
                status,
                code,
                message,
                policies,
            } => {
                write!(f, "{message} ({code}, HTTP {})", status.as_u16())?;
                if !policies.is_empty() {
                    write!(f, "\n  policies: {}", policies.join(", "))?;
                }
                Ok(())
            }
            Self::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Output(e)
    }
}

/// The process exit status of a client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The server refused, could not be reached, or the command's check failed.
    Failure,
    /// Bad usage or a local error (config file, missing token).
    Usage,
    /// Policy denied the request.
    Denied,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Denied => 3,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        Self::from(e.code())
    }
}

/// Whether an endpoint needs the API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Required,
    /// Public endpoints (health, token exchange): no `Authorization` header is sent.
    None,
}

/// What a call sends.
pub enum Body<'a> {
    Empty,
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

/// A decoded answer: its status and the server's JSON, untouched for `--json`.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
}

impl Answer {
    /// Reads the JSON into one of the [`crate::wire`] shapes.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CliError> {
        decode(&self.json)
    }
}

pub fn decode<T: DeserializeOwned>(json: &Value) -> Result<T, CliError> {
    T::deserialize(json).map_err(|e| {
        CliError::Failed(format!(
            "the server's answer is not what this CLI expects ({e}); is the server the same version? \
             (--json prints it as it is)"
        ))
    })
}

/// The server, as seen by the CLI.
pub struct Api {
    client: reqwest::Client,
    base: Url,
    shown_addr: String,
    token: Option<SecretString>,
}

impl Api {
    pub fn new(
        client: reqwest::Client,
        addr: &str,
        token: Option<SecretString>,
    ) -> Result<Self, CliError> {
        let bad = || {
            CliError::Usage(format!(
                "--addr {addr:?} is not an http(s) URL such as http://127.0.0.1:8740"
            ))
        };
        let base = Url::parse(addr.trim()).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        let mut shown = base.clone();
        // Never echo credentials someone put into the URL.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Ok(Self {
            client,
            shown_addr: shown.as_str().trim_end_matches('/').to_owned(),
            base,
            token: token.filter(|t| !t.expose_secret().trim().is_empty()),
        })
    }

    /// `{addr}/{segments…}`, each segment percent-encoded so an id can never change the path.
    pub fn url(&self, segments: &[&str]) -> Result<Url, CliError> {
        // The URL parser would drop these instead of encoding them.
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(CliError::Usage(format!(
                "{bad:?} is not a valid name or id"
            )));
        }
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// One call; `Ok` only for a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Body<'_>,
        auth: Auth,
        extra_timeout: Duration,
    ) -> Result<Answer, CliError> {
        let mut req = self
            .client
            .request(method, self.url(segments)?)
            .timeout(CALL_TIMEOUT + extra_timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(v),
            Body::Form(f) => req.form(f),
        };
        if auth == Auth::Required {
            let token = self.token.as_ref().ok_or(CliError::NoToken)?;
            req = req.bearer_auth(token.expose_secret());
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(e))?;
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        // The token endpoint answers "approval needed" as RFC 8628's 400
        // `authorization_pending`: an outcome to show, not a failure.
        if status.is_success()
            || (status == StatusCode::BAD_REQUEST && json["error"] == "authorization_pending")
        {
            Ok(Answer { status, json })
        } else {
            Err(api_error(status, &json))
        }
    }

    /// Shorthand for the common case: a JSON call needing the token, no query.
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Answer, CliError> {
        let json;
        let body = match body {
            Some(b) => {
                json = serde_json::to_value(b)
                    .map_err(|e| CliError::Failed(format!("cannot encode the request: {e}")))?;
                Body::Json(&json)
            }
            None => Body::Empty,
        };
        self.call(method, segments, &[], body, Auth::Required, Duration::ZERO)
            .await
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        self.call(
            Method::GET,
            segments,
            query,
            Body::Empty,
            Auth::Required,
            Duration::ZERO,
        )
        .await
    }

    fn transport_error(&self, e: reqwest::Error) -> CliError {
        // The token travels in a header, never in the URL; the URL is dropped anyway so
        // that credentials someone put into --addr are not echoed.
        let e = e.without_url();
        let addr = self.shown_addr.clone();
        let cause = root_cause(&e);
        if cause.contains("CertificateRequired") {
            CliError::Failed(format!(
                "Kairos at {addr} accepts only clients with a certificate ({cause}): give yours \
                 with --cert-file and --key-file (or KAIROS_CERT_FILE and KAIROS_KEY_FILE)"
            ))
        } else if e.is_connect() && cause.contains("certificate") {
            CliError::Failed(format!(
                "Kairos at {addr} answered with a TLS certificate this client does not trust ({cause}): \
                 give the CA that signed it with --ca-file or KAIROS_CA_FILE"
            ))
        } else if e.is_connect() {
            CliError::Unreachable {
                addr,
                detail: cause,
            }
        } else if e.is_timeout() {
            CliError::Failed(format!("Kairos at {addr} did not answer in time"))
        } else {
            CliError::Failed(format!(
                "talking to Kairos at {addr} failed: {}",
                error_chain(&e)
            ))
        }
    }
}

/// The innermost error, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// reqwest wraps the useful cause (e.g. "Connection refused") a few levels deep.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Reads either error shape the API uses into a [`CliError::Api`].
pub fn api_error(status: StatusCode, json: &Value) -> CliError {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let list = |v: Option<&Value>| {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let fallback_message = || {
        let raw = match json {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let raw: String = raw.chars().take(300).collect();
        let reason = status.canonical_reason().unwrap_or("error");
        if raw.trim().is_empty() {
            format!("the server answered {reason}")
        } else {
            format!("the server answered {reason}: {}", raw.trim())
        }
    };
    let error = json.get("error");
    match error {
        // The API's shape: {"error": {"code", "message", "policies"?}}
        Some(detail @ Value::Object(_)) => CliError::Api {
            status,
            code: text(detail.get("code")).unwrap_or_else(|| "error".into()),
            message: text(detail.get("message")).unwrap_or_else(fallback_message),
            policies: list(detail.get("policies")),
        },
        // RFC 6749 §5.2: {"error": "...", "error_description": "..."}
        Some(Value::String(code)) => CliError::Api {
            status,
            code: code.clone(),
            message: text(json.get("error_description")).unwrap_or_else(|| code.clone()),
            policies: list(json.get("policies")),
        },
        _ => CliError::Api {
            status,
            code: format!("http_{}", status.as_u16()),
            message: fallback_message(),
            policies: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn api(addr: &str) -> Api {
        match Api::new(reqwest::Client::new(), addr, None) {
            Ok(a) => a,
            Err(e) => panic!("{addr}: {e}"),
        }
    }

    #[test]
    fn urls_keep_ids_inside_their_segment() {
        let check = |addr: &str, segs: &[&str], expected: &str| {
            let url = api(addr)
                .url(segs)
                .map(String::from)
                .map_err(|e| e.to_string());
            assert_eq!(url.as_deref(), Ok(expected));
        };
        check(
            "http://127.0.0.1:8740",
            &["v1", "grants"],
            "http://127.0.0.1:8740/v1/grants",
        );
        check(
            "http://h:1/",
            &["v1", "grants", "grt_1"],
            "http://h:1/v1/grants/grt_1",
        );
        check(
            "https://h/kairos/",
            &["v1", "health"],
            "https://h/kairos/v1/health",
        );
        check(
            "http://h",
            &["v1", "grants", "../users"],
            "http://h/v1/grants/..%2Fusers",
        );
        check(
            "http://h",
            &["v1", "users", "a b?c#d"],
            "http://h/v1/users/a%20b%3Fc%23d",
        );
        for id in ["", ".", ".."] {
            let err = api("http://h").url(&["v1", "grants", id]).err();
            assert!(matches!(err, Some(CliError::Usage(_))), "{id:?}: {err:?}");
        }
    }

    #[test]
    fn bad_addresses_are_usage_errors() {
        for addr in ["", "127.0.0.1:8740", "ftp://h", "not a url"] {
            let err = Api::new(reqwest::Client::new(), addr, None).err();
            assert!(
                matches!(err, Some(CliError::Usage(_))),
                "{addr:?} should be refused, got {err:?}"
            );
        }
    }

    fn check_error(status: u16, body: Value, expected: &str, exit: Exit) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        let e = api_error(status, &body);
        assert_eq!(e.to_string(), expected);
        assert_eq!(e.exit(), exit);
    }

    #[test]
    fn error_shapes() {
        check_error(
            400,
            json!({"error": {"code": "bad_ttl", "message": "TTL \"x\" is not a duration"}}),
            "TTL \"x\" is not a duration (bad_ttl, HTTP 400)",
            Exit::Failure,
        );
        check_error(
            403,
            json!({"error": {"code": "denied", "message": "request denied: prod needs a change",
                             "policies": ["policy0", "prod-guard"]}}),
            "request denied: prod needs a change (denied, HTTP 403)\n  policies: policy0, prod-guard",
            Exit::Denied,
        );
        check_error(
            401,
            json!({"error": "invalid_grant", "error_description": "token expired"}),
            "token expired (invalid_grant, HTTP 401)",
            Exit::Failure,
        );
        check_error(
            403,
            json!({"error": "access_denied", "error_description": "no", "policies": ["p"]}),
            "no (access_denied, HTTP 403)\n  policies: p",
            Exit::Denied,
        );
        check_error(
            502,
            Value::String("<html>bad gateway</html>".into()),
            "the server answered Bad Gateway: <html>bad gateway</html> (http_502, HTTP 502)",
            Exit::Failure,
        );
        check_error(
            500,
            Value::Null,
            "the server answered Internal Server Error (http_500, HTTP 500)",
            Exit::Failure,
        );
    }

    #[test]
    fn local_errors_exit_2() {
        assert_eq!(CliError::NoToken.exit(), Exit::Usage);
        assert_eq!(
            CliError::NoToken.to_string(),
            "no API token: set KAIROS_TOKEN or pass --token"
        );
        assert_eq!(CliError::Usage("x".into()).exit(), Exit::Usage);
    }
}
