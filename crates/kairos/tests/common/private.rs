//! Private downstream systems a test owns alone and may stop, start or kill: a PostgreSQL
//! cluster (`kairos-testkit`'s, shared with the connector's tests) and a `redis-server`,
//! each on a free port under a temporary directory, torn down when dropped (even when the
//! test panics). The machine's shared PostgreSQL, MariaDB and Redis are never touched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Not every test binary that includes this module uses all of it.
#[allow(unused_imports)]
pub use kairos_testkit::{PgAuth, PrivatePg, free_port};

/// A private `redis-server` on a free port, without persistence (`--save ""
/// --appendonly no`), its working directory a temporary one. Killed when dropped.
pub struct PrivateRedis {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kairos-it-redis-")
            .tempdir()
            .unwrap();
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("redis.log")).unwrap();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("redis-server must be installed");
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return Self { child, dir, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "private redis-server did not start: {}",
            std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    /// `redis://127.0.0.1:PORT` (the `default` user, no password: the admin).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A fresh blocking admin connection.
    pub fn admin(&self) -> redis::RedisResult<redis::Connection> {
        redis_connect(&self.url())
    }

    /// ACL users whose name starts with `prefix`.
    pub fn users(&self, prefix: &str) -> Vec<String> {
        let mut c = self.admin().unwrap();
        let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut c).unwrap();
        users
            .into_iter()
            .filter(|u| u.starts_with(prefix))
            .collect()
    }

    /// `(user, client id)` of every connected client whose user starts with `prefix`.
    pub fn clients(&self, prefix: &str) -> Vec<(String, String)> {
        let mut c = self.admin().unwrap();
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
        list.lines()
            .filter_map(|line| {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .map(str::to_owned)
                };
                let (user, id) = (field("user")?, field("id")?);
                user.starts_with(prefix).then_some((user, id))
            })
            .collect()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking connection to `url` (2 s to connect, 5 s per command).
pub fn redis_connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(c)
}

/// Whether the redis-server on `port` answers PING within `timeout` (false if it exited).
fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut c) = redis_connect(&format!("redis://127.0.0.1:{port}")) {
            let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut c);
            if pong.is_ok() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
