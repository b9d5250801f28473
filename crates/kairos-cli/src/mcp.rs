//! `kairos mcp`: the MCP stdio transport as a bridge. Each line on stdin is one JSON-RPC
//! message (or batch); it is POSTed to the server's `/v1/mcp` with the workload's token,
//! and the answer's messages are written to stdout, one per line. The server does all
//! the work (tools, policy, audit); the bridge holds nothing but the negotiated protocol
//! revision. Messages are forwarded concurrently (a `request_access` that waits for an
//! approval does not hold up a `ping`); answers are written as they come. Nothing but
//! protocol messages goes to stdout; problems go to stderr, never with the token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use kairos_mcp::jsonrpc::{self, Body};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::api::Api;
use crate::cli::{GlobalOpts, McpArgs};

/// The longest one forwarded message may take: a tool waits at most 60 s for a decision.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the workload's token comes from, read again for every message.
#[derive(Clone)]
enum TokenSource {
    File(PathBuf),
    Fixed(SecretString),
    None,
}

impl TokenSource {
    fn read(&self) -> Result<SecretString, String> {
        match self {
            Self::File(path) => read_token_file(path),
            Self::Fixed(t) => Ok(t.clone()),
            Self::None => Err(
                "kairos mcp has no token: set KAIROS_TOKEN_FILE (or --token-file) to the file of the workload's platform JWT, or KAIROS_TOKEN"
                    .into(),
            ),
        }
    }
}

fn read_token_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the token file {} (KAIROS_TOKEN_FILE): {e}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the token file {} (KAIROS_TOKEN_FILE) is empty",
            path.display()
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

#[derive(Clone)]
struct Bridge {
    client: reqwest::Client,
    url: Url,
    token: TokenSource,
    /// The revision `initialize` settled on, sent as `MCP-Protocol-Version` afterwards.
    version: Arc<Mutex<Option<String>>>,
}

/// Serves MCP on stdin/stdout until stdin closes (and the messages in flight are answered).
pub async fn serve_stdio(
    client: reqwest::Client,
    global: &GlobalOpts,
    args: McpArgs,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(client.clone(), &global.addr, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = api
        .url(&["v1", "mcp"])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = match (args.token_file, &global.token) {
        (Some(path), _) => TokenSource::File(path),
        (None, Some(t)) if !t.expose_secret().trim().is_empty() => TokenSource::Fixed(t.clone()),
        (None, _) => TokenSource::None,
    };
    if let Err(m) = token.read() {
        // Not fatal: the file may appear later (a token being projected); each message
        // without one is answered with this error.
        eprintln!("kairos mcp: {m}");
    }
    let bridge = Bridge {
        client,
        url,
        token,
        version: Arc::new(Mutex::new(None)),
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = rx.recv().await {
            let written = async {
                stdout.write_all(line.as_bytes()).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await
            }
            .await;
            if written.is_err() {
                break;
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        if line.trim().is_empty() {
            continue;
        }
        let bridge = bridge.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for answer in bridge.forward(line).await {
                let _ = tx.send(answer.to_string());
            }
        });
    }
    drop(tx);
    let _ = writer.await;
    Ok(ExitCode::SUCCESS)
}

impl Bridge {
    /// Forwards one line; returns the messages to write.
    async fn forward(&self, line: String) -> Vec<Value> {
        let body = match jsonrpc::parse_body(line.as_bytes()) {
            Ok(b) => b,
            Err(e) => return vec![e],
        };
        let ids = jsonrpc::request_ids(&body);
        let failed = |message: String| -> Vec<Value> {
            ids.iter()
                .map(|id| jsonrpc::error(id.clone(), jsonrpc::SERVER_ERROR, message.clone()))
                .collect()
        };
        let token = match self.token.read() {
            Ok(t) => t,
            Err(m) => {
                eprintln!("kairos mcp: {m}");
                return failed(m);
            }
        };
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(FORWARD_TIMEOUT)
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .body(line);
        let version = self.version.lock().ok().and_then(|v| v.clone());
        if let Some(v) = version {
            request = request.header("mcp-protocol-version", v);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let m = format!("cannot reach Kairos at {}: {}", self.url, without_url(&e));
                eprintln!("kairos mcp: {m}");
                return failed(m);
            }
        };
        let status = response.status();
        let event_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                let m = format!("the answer from Kairos broke off: {}", without_url(&e));
                eprintln!("kairos mcp: {m}");
                return failed(m);
            }
        };
        if status == StatusCode::ACCEPTED {
            return Vec::new();
        }
        if !status.is_success() {
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // The API's error shape, or a JSON-RPC error the endpoint refused the message with.
            let (code, message) = match (&json["error"]["code"], &json["error"]["message"]) {
                (Value::String(c), Value::String(m)) => (c.clone(), m.clone()),
                (Value::Number(_), Value::String(m)) => ("invalid_message".into(), m.clone()),
                _ => ("error".into(), text.chars().take(200).collect()),
            };
            let m = format!("Kairos refused the message ({status}, {code}): {message}");
            eprintln!("kairos mcp: {m}");
            if ids.is_empty() && json.get("jsonrpc").is_some() {
                return vec![json];
            }
            return failed(m);
        }
        let messages: Vec<Value> = if event_stream {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        } else {
            match serde_json::from_str(&text) {
                Ok(v @ Value::Array(_)) if matches!(body, Body::Batch(_)) => vec![v],
                Ok(v) => vec![v],
                Err(_) => return failed("Kairos answered with something that is not JSON".into()),
            }
        };
        self.remember_version(&body, &messages);
        messages
    }

    /// After a successful `initialize`, later messages carry its revision.
    fn remember_version(&self, body: &Body, messages: &[Value]) {
        let Body::One(sent) = body else { return };
        if sent.get("method").and_then(Value::as_str) != Some("initialize") {
            return;
        }
        let version = messages
            .iter()
            .find_map(|m| m["result"]["protocolVersion"].as_str());
        if let (Some(v), Ok(mut slot)) = (version, self.version.lock()) {
            *slot = Some(v.to_owned());
        }
    }
}

/// A reqwest error's text without the URL (which the message already names).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}
