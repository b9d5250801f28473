//! RabbitMQ users through Kairos, on the machine's RabbitMQ (AMQP on 5672, management API
//! on 15672, guest/guest): credentials issued per second beside the management API's own
//! `PUT /api/users/{name}` + `PUT /api/permissions/{vhost}/{name}` at the same
//! concurrency, and verified revocations per second (every issued user revoked with one
//! operator call) beside `DELETE /api/users/{name}`.
//!
//! Everything runs in a scratch virtual host and under a scratch user prefix, both removed
//! at the end, on failure and on Ctrl-C (see [`crate::guard`]).

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::accounts::{self, Revocation};
use crate::guard::{self, ScratchDir};
use crate::load::{self, LoadResult, MakeRequest};
use crate::server::{self, ConfigExtras, Issuer, Server, ServerOptions};
use crate::stats::{human, thousands};
use crate::{Plan, cpu};

/// The management API, as the machine's RabbitMQ serves it.
const API: &str = "http://127.0.0.1:15672/api";
const ADMIN_USER: &str = "guest";
const ADMIN_PASSWORD: &str = "guest";
/// The AMQP listener the issued users log in to.
const AMQP_HOST: &str = "127.0.0.1";
const AMQP_PORT: u16 = 5672;
/// The environment variable that carries the target's admin URL to the server.
const ADMIN_URL_ENV: &str = "KAIROS_BENCH_RABBITMQ_ADMIN";
const ENTITLEMENT: &str = "bench-mq/publish";
/// The task reference of every user Kairos issues in the run (all revoked together).
const ISSUE_TASK: &str = "bench-mq";

/// A scratch virtual host and user prefix on the machine's RabbitMQ.
pub struct Scratch {
    pub vhost: String,
    pub prefix: String,
}

impl Scratch {
    /// Registers the names for cleanup, then creates the virtual host.
    async fn create(http: &reqwest::Client) -> anyhow::Result<Self> {
        let hex = format!("{:016x}", rand_u64());
        let scratch = Self {
            vhost: format!("kairos-bench-{}", &hex[..10]),
            prefix: format!("kbq{}_", &hex[..8]),
        };
        guard::track_rabbitmq(&scratch.vhost, &scratch.prefix);
        admin(
            http,
            reqwest::Method::PUT,
            &format!("vhosts/{}", scratch.vhost),
        )
        .json(&json!({}))
        .send()
        .await
        .context("the management API at 127.0.0.1:15672 (is rabbitmq_management enabled?)")?
        .error_for_status()
        .context("creating the bench's virtual host")?;
        Ok(scratch)
    }

    /// Kairos's managed prefix: the scratch prefix and `a`, so the floor's users (`…f`)
    /// never look managed to it.
    fn managed(&self) -> String {
        format!("{}a", self.prefix)
    }

    fn floor_user(&self, client: usize, i: u64) -> String {
        format!("{}f{client}_{i}", self.prefix)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_vhost_and_users(&self.vhost, &self.prefix);
        guard::untrack_rabbitmq(&self.vhost);
    }
}

/// A random u64 from the system's generator (names only; nothing secret).
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

fn admin(http: &reqwest::Client, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http.request(method, format!("{API}/{path}"))
        .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
}

/// Deletes `vhost` and every user starting with `prefix`. Synchronous (through curl), so
/// it works from `Drop` and from the signal handler.
pub fn remove_vhost_and_users(vhost: &str, prefix: &str) {
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-s", "-u", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    // A prefix always looks like kbq<hex>_ (see Scratch::create); anything else is not ours.
    if prefix.starts_with("kbq") && prefix.ends_with('_') {
        let users: Vec<String> = curl(&[&format!("{API}/users?columns=name")])
            .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|u| u["name"].as_str())
            .filter(|u| u.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        for chunk in users.chunks(1_000) {
            let body = json!({ "users": chunk }).to_string();
            let _ = curl(&[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                &format!("{API}/users/bulk-delete"),
            ]);
        }
    }
    if vhost.starts_with("kairos-bench-") {
        let _ = curl(&["-X", "DELETE", &format!("{API}/vhosts/{vhost}")]);
    }
}

/// CPU ticks of RabbitMQ's Erlang VM (`beam.smp`), summed over its processes.
fn rabbitmq_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "beam.smp")
        })
        .filter_map(cpu::pid_ticks)
        .sum()
}

/// One phase, with RabbitMQ's share of the CPU beside the bench's usual split.
#[derive(Debug, Clone)]
pub struct Phase {
    pub load: LoadResult,
    /// Cores RabbitMQ's Erlang VM used during the phase.
    pub rabbitmq_cores: f64,
}

/// Runs `f`, noting the cores RabbitMQ used while it ran.
async fn with_rabbitmq_cpu<Fut>(f: Fut) -> Phase
where
    Fut: Future<Output = LoadResult>,
{
    let before = rabbitmq_ticks();
    let started = Instant::now();
    let load = f.await;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let rabbitmq_cores =
        rabbitmq_ticks().saturating_sub(before) as f64 / cpu::ticks_per_sec() / secs;
    Phase {
        load,
        rabbitmq_cores,
    }
}

#[derive(Debug, Clone)]
pub struct RabbitMqResult {
    /// The management plugin's version, as `GET /api/overview` says.
    pub version: String,
    /// Kairos: `POST /v1/requests` for a RabbitMQ user, closed loop.
    pub issue: Phase,
    /// The management API: `PUT /api/users/{name}` + `PUT /api/permissions/{vhost}/{name}`
    /// as one step, as many clients as Kairos's.
    pub create_floor: Phase,
    /// Every user Kairos issued, revoked with one operator call; `accounts_left` counts the
    /// issued users the API still lists afterwards.
    pub revocation: Result<(Revocation, f64), String>,
    /// The management API: `DELETE /api/users/{name}` on the floor's users.
    pub delete_floor: Phase,
    pub server_log_tail: Vec<String>,
}

fn config_extras(scratch: &Scratch) -> ConfigExtras {
    let managed = scratch.managed();
    ConfigExtras {
        toml: format!(
            r#"
[[target]]
name = "bench-mq"
kind = "rabbitmq"
admin_url_env = "{ADMIN_URL_ENV}"
managed_prefix = "{managed}"
# Kept out of the figures: the reconciler's pass lists every user; here it runs once, at
# start, when there are none.
reconcile_interval = "1h"

[[entitlement]]
name = "{ENTITLEMENT}"
target = "bench-mq"
tier = "low"
max_ttl = "1h"

[entitlement.rabbitmq]
vhost = "{vhost}"
configure = "^$"
write = "^bench\\."
read = "^bench\\."
"#,
            vhost = scratch.vhost,
        ),
        cedar: format!(
            r#"
@id("bench-mq-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"{ENTITLEMENT}")
when {{ context.task_kind == "job" }};
"#
        ),
    }
}

/// Runs the whole RabbitMQ section.
pub async fn measure(
    kairos: &std::path::Path,
    issuer: &Issuer,
    platform: &str,
    plan: Plan,
) -> anyhow::Result<RabbitMqResult> {
    let http = load::client(plan.clients)?;
    let overview: Value = admin(&http, reqwest::Method::GET, "overview")
        .send()
        .await
        .context("the management API at 127.0.0.1:15672 (is rabbitmq_management enabled?)")?
        .error_for_status()?
        .json()
        .await?;
    let version = format!(
        "RabbitMQ {}, management {}",
        overview["rabbitmq_version"].as_str().unwrap_or("?"),
        overview["management_version"].as_str().unwrap_or("?")
    );
    let scratch = Arc::new(Scratch::create(&http).await?);

    // Floor: the same concurrency creating users with a password and their permissions
    // straight through the management API, as the connector does for each grant.
    eprintln!("  management API PUT user + PUT permissions floor...");
    let _ = create_floor(&http, &scratch, plan.clients, plan.warmup).await;
    let create = create_floor(&http, &scratch, plan.clients, plan.http).await;

    let dir = ScratchDir::new("rabbitmq")?;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &config_extras(&scratch))?;
    let server = Server::start(
        kairos,
        &ServerOptions {
            data: dir.path().join("data"),
            config,
            log: dir.path().join("server.log"),
            store: None,
            envs: vec![(
                ADMIN_URL_ENV.to_owned(),
                format!("http://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:15672"),
            )],
            args: Vec::new(),
        },
    )?;

    // One user first, and log in with it: the figure counts working credentials.
    let first: Value = http
        .post(server.url("/v1/requests"))
        .bearer_auth(platform)
        .json(&accounts::request_body_for(ENTITLEMENT, ISSUE_TASK))
        .send()
        .await?
        .error_for_status()
        .context("the first RabbitMQ user request failed; see the server log")?
        .json()
        .await?;
    check_login(&first["credential"], &scratch.managed()).await?;

    eprintln!("  Kairos RabbitMQ credentials (POST /v1/requests)...");
    let make: MakeRequest = {
        let (http, url, platform, body) = (
            http.clone(),
            server.url("/v1/requests"),
            platform.to_owned(),
            accounts::request_body_for(ENTITLEMENT, ISSUE_TASK),
        );
        Arc::new(move || http.post(&url).bearer_auth(&platform).json(&body))
    };
    let issue = with_rabbitmq_cpu(load::drive(
        plan.clients,
        plan.warmup,
        plan.http,
        Some(server.pid()),
        make,
    ))
    .await;

    eprintln!("  revoking every issued user at once...");
    let before = rabbitmq_ticks();
    let revocation = async {
        let mut r = accounts::revoke_all(&http, &server, ISSUE_TASK, plan.revoke_timeout).await?;
        let secs = r.until_all_verified.as_secs_f64().max(1e-3);
        let cores = rabbitmq_ticks().saturating_sub(before) as f64 / cpu::ticks_per_sec() / secs;
        r.accounts_left = Some(users_with(&http, &scratch.managed()).await?.len() as i64);
        anyhow::Ok((r, cores))
    }
    .await
    .map_err(|e| format!("{e:#}"));
    let server_log_tail = server.log_tail(5);
    drop(server);

    eprintln!("  management API DELETE user floor...");
    let mut floor_users = users_with(&http, &format!("{}f", scratch.prefix)).await?;
    floor_users.sort();
    let delete = delete_floor(&http, floor_users, plan.clients).await;

    Ok(RabbitMqResult {
        version,
        issue,
        create_floor: create,
        revocation,
        delete_floor: delete,
        server_log_tail,
    })
}

/// Logs in over AMQP with an issued credential.
async fn check_login(cred: &Value, prefix: &str) -> anyhow::Result<()> {
    let (user, password) = accounts::user_and_password(cred, prefix)?;
    let password = SecretString::from(password.to_owned());
    let accepted = kairos_connector_rabbitmq::amqp_login_accepted(
        AMQP_HOST,
        AMQP_PORT,
        user,
        &password,
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| anyhow::anyhow!("logging in with the issued user: {e}"))?;
    if !accepted {
        bail!("RabbitMQ refused the issued user {user}'s login");
    }
    Ok(())
}

/// The users whose names start with `prefix`.
async fn users_with(http: &reqwest::Client, prefix: &str) -> anyhow::Result<Vec<String>> {
    let users: Value = admin(http, reqwest::Method::GET, "users?columns=name")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(users
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .filter(|u| u.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Sends one management API request and reads the answer; a failure says which call.
async fn call(request: reqwest::RequestBuilder, what: &str) -> Result<(), String> {
    let resp = request
        .send()
        .await
        .map_err(|e| format!("{what}: sending: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{what}: reading the body: {e}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

/// `clients` loops of PUT user (a random 32-character password) + PUT permissions, for
/// `duration`. The users stay: the delete floor removes them.
async fn create_floor(
    http: &reqwest::Client,
    scratch: &Arc<Scratch>,
    clients: usize,
    duration: Duration,
) -> Phase {
    let deadline = Instant::now() + duration;
    let epoch = rand_u64() % 1_000_000;
    let (http, scratch) = (http.clone(), Arc::clone(scratch));
    with_rabbitmq_cpu(load::steps(clients, None, move |client, i| {
        let (http, scratch) = (http.clone(), Arc::clone(&scratch));
        async move {
            if Instant::now() >= deadline {
                return None;
            }
            // Unique across the warm-up and the timed phase.
            let user = scratch.floor_user(client, epoch * 1_000_000 + i);
            let password = format!("{:016x}{:016x}", rand_u64(), rand_u64());
            let put_user = admin(&http, reqwest::Method::PUT, &format!("users/{user}"))
                .json(&json!({"password": password, "tags": ""}));
            if let Err(e) = call(put_user, "PUT /api/users/{name}").await {
                return Some(Err(e));
            }
            let put_permissions = admin(
                &http,
                reqwest::Method::PUT,
                &format!("permissions/{}/{user}", scratch.vhost),
            )
            .json(&json!({"configure": "^$", "write": "^bench\\.", "read": "^bench\\."}));
            Some(call(put_permissions, "PUT /api/permissions/{vhost}/{name}").await)
        }
    }))
    .await
}

/// `clients` loops of `DELETE /api/users/{name}` until `users` are all gone.
async fn delete_floor(http: &reqwest::Client, users: Vec<String>, clients: usize) -> Phase {
    let users = Arc::new(users);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = http.clone();
    with_rabbitmq_cpu(load::steps(clients, None, move |_client, _i| {
        let (http, users, next) = (http.clone(), Arc::clone(&users), Arc::clone(&next));
        async move {
            let user = users.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))?;
            let delete = admin(&http, reqwest::Method::DELETE, &format!("users/{user}"));
            Some(call(delete, "DELETE /api/users/{name}").await)
        }
    }))
    .await
}

/// Management API calls the connector makes per revocation (`revoke` and `verify_gone` in
/// `kairos-connector-rabbitmq`): the user's connections listed, the user deleted, its
/// connections listed again (to close any opened meanwhile), the user read back, its
/// connections listed once more. Plus one AMQP login, refused.
const REVOKE_CALLS: f64 = 5.0;

/// What bounds the figures, from the calls each makes and where the CPU went.
fn bounds(r: &RabbitMqResult) -> String {
    let issue = &r.issue.load;
    let mut text = format!(
        "**What bounds it.** Issuing makes the same two management API calls as the create \
         floor, plus Kairos's own work (policy, the grant's store write, the answer). While \
         Kairos issued, RabbitMQ used {:.2} cores and Kairos {:.2}, of a machine {:.2} of {} \
         busy",
        r.issue.rabbitmq_cores,
        issue.usage.server.unwrap_or(0.0),
        issue.usage.machine,
        issue.usage.cores,
    );
    if issue.usage.machine >= 0.85 * issue.usage.cores.max(1) as f64 {
        text.push_str(
            ": the two shared the cores, so Kairos's share of the CPU is what it costs against \
             the floor here.",
        );
    } else {
        text.push_str(": the cores were not all busy, so part of the gap is waiting.");
    }
    if let Ok((v, rabbitmq)) = &r.revocation {
        let calls = v.per_sec() * REVOKE_CALLS;
        let share = calls / r.delete_floor.load.per_sec().max(1e-9);
        let _ = write!(
            text,
            " A revocation makes {REVOKE_CALLS:.0} management API calls (the user's connections \
             listed, the user deleted, its connections listed again, the user read back, its \
             connections listed once more) and one refused AMQP login, against the delete \
             floor's one call: {} verified revocations/s are {} API calls/s, {:.0}% of the \
             floor's {}/s, with RabbitMQ at {rabbitmq:.2} cores and Kairos at {:.2}. ",
            thousands(v.per_sec()),
            thousands(calls),
            100.0 * share,
            thousands(r.delete_floor.load.per_sec()),
            v.usage.server.unwrap_or(0.0),
        );
        text.push_str(if share >= 0.8 {
            "The management API is the bound, but not through the number of calls: fewer \
             calls were tried and measured (quick runs of about 6,000 users, 2026-12-07). A \
             batch path that listed the users once, deleted them in one `POST \
             /api/users/bulk-delete` and verified against one listing (three calls a user \
             instead of five) revoked 533–554/s against 597/s one user at a time, with \
             RabbitMQ at 1.10 cores instead of 1.38: the bulk delete took about 1 s per \
             1,000 users, since RabbitMQ deletes them one after another inside it. Keeping \
             the per-user revoke and sharing only the verification's user listing (four \
             calls) gave 530–565/s. What sets the pace is RabbitMQ's own work per deleted \
             user, so neither was kept. (The per-user connection listings cannot be shared: \
             the endpoint that lists every connection lags behind by a statistics interval, \
             5 s by default, and would miss a connection opened just before the \
             revocation.)"
        } else {
            "The management API was not saturated: the bound is the batch's own pace (a \
             target's batch revokes, then checks, a few users at a time, each call a round \
             trip, and one batch per target runs at a time)."
        });
    }
    text
}

/// The section of BENCHMARKS.md.
pub fn render(s: &mut String, result: &Result<RabbitMqResult, String>, clients: usize) {
    let _ = writeln!(s, "### RabbitMQ users\n");
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(s, "Failed: `{}`\n", e.replace(['\n', '`'], " "));
            return;
        }
    };
    let _ = writeln!(
        s,
        "{}, on this machine, through its management API. {clients} clients throughout. A \
         Kairos credential is a `POST /v1/requests` that the policy grants at once: the \
         connector creates the user with a random password (`PUT /api/users/{{name}}`) and \
         sets its permissions on the bench's virtual host (`PUT /api/permissions/…`), and the \
         grant is recorded. Revocation: one operator call ends every user issued in the run; \
         each is then deleted (its connections listed and closed) and verified gone (the API \
         lists no such user and no connection of it, and an AMQP login with the old password \
         is refused). CPU in cores over the phase.\n",
        r.version
    );
    let _ = writeln!(
        s,
        "| phase | users | failed | seconds | per second | p50 | p99 | Kairos | RabbitMQ | bench | machine |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let row = |s: &mut String, what: &str, p: &Phase| {
        let l = &p.load;
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {:.1} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} of {} |",
            thousands(l.ok as f64),
            l.failed,
            l.elapsed.as_secs_f64(),
            thousands(l.per_sec()),
            human(l.latencies.percentile(50.0)),
            human(l.latencies.percentile(99.0)),
            l.usage
                .server
                .map_or_else(|| "—".to_owned(), |c| format!("{c:.2}")),
            p.rabbitmq_cores,
            l.usage.bench,
            l.usage.machine,
            l.usage.cores,
        );
    };
    row(s, "Kairos: credentials issued", &r.issue);
    row(s, "floor: `PUT` user + `PUT` permissions", &r.create_floor);
    match &r.revocation {
        Ok((v, rabbitmq)) => {
            let _ = writeln!(
                s,
                "| Kairos: verified revocations, all at once | {} | {} failed attempts | {:.1} | {} | {} | {} | {} | {rabbitmq:.2} | {:.2} | {:.2} of {} |",
                thousands(v.verified as f64),
                v.failed_attempts,
                v.until_all_verified.as_secs_f64(),
                thousands(v.per_sec()),
                human(v.end_to_verified.percentile(50.0)),
                human(v.end_to_verified.percentile(99.0)),
                v.usage
                    .server
                    .map_or_else(|| "—".to_owned(), |c| format!("{c:.2}")),
                v.usage.bench,
                v.usage.machine,
                v.usage.cores,
            );
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "| Kairos: verified revocations | failed: {} | | | | | | | | | |",
                e.replace(['\n', '|'], " ")
            );
        }
    }
    row(s, "floor: `DELETE` user", &r.delete_floor);
    let _ = writeln!(s);
    let ratio = |a: f64, b: f64| format!("{:.0}%", 100.0 * a / b.max(1e-9));
    let _ = write!(
        s,
        "Kairos issued credentials at {} of the management API's own create rate",
        ratio(r.issue.load.per_sec(), r.create_floor.load.per_sec())
    );
    if let Ok((v, _)) = &r.revocation {
        let _ = write!(
            s,
            " and verified revocations at {} of its delete rate; the revocation latency columns \
             are per grant, `verified_at` − `ended_at` from the receipts (all ended at once, so \
             they include the wait in the revocation queue). Issued users the API \
             still listed afterwards: {}. Verification methods on the receipts: {}",
            ratio(v.per_sec(), r.delete_floor.load.per_sec()),
            v.accounts_left
                .map_or_else(|| "not counted".to_owned(), |n| n.to_string()),
            v.methods
                .iter()
                .map(|(m, n)| format!("`{m}` {}", thousands(*n as f64)))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let _ = writeln!(s, ".\n");
    let _ = writeln!(s, "{}\n", bounds(r));
    for (what, p) in [
        ("Kairos issuance", &r.issue),
        ("the create floor", &r.create_floor),
        ("the delete floor", &r.delete_floor),
    ] {
        if let Some(f) = &p.load.first_failure {
            let _ = writeln!(
                s,
                "First failure in {what}: `{}`\n",
                f.replace(['\n', '`'], " ")
            );
        }
    }
    if !r.server_log_tail.is_empty() {
        let _ = writeln!(
            s,
            "RabbitMQ-target server log (last lines, `RUST_LOG=warn`):\n\n```text\n{}\n```\n",
            r.server_log_tail.join("\n")
        );
    }
}
