//! Private downstream systems a test owns alone and may stop, start or kill: a PostgreSQL
//! cluster (`initdb` + `pg_ctl` from `pg_config --bindir`) and a `redis-server`, each on a
//! free port under a temporary directory, torn down when dropped (even when the test
//! panics). The machine's shared PostgreSQL, MariaDB and Redis are never touched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, chown};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{stderr, stdout};

/// A free TCP port on 127.0.0.1 (free when probed: whoever binds it may retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `Some((uid, gid))` of the `postgres` system user when we run as root, None otherwise.
fn server_user() -> Option<(u32, u32)> {
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        stdout(&out).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// How a private PostgreSQL authenticates TCP logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAuth {
    /// Every login is trusted (no password is checked, so neither is `VALID UNTIL`).
    Trust,
    /// The superuser `postgres` is trusted; every other role logs in with its password
    /// (`scram-sha-256`), so `VALID UNTIL` and wrong passwords are refused as in production.
    Passwords,
}

/// A private PostgreSQL cluster (`initdb` + `pg_ctl`, superuser `postgres`) on a free port,
/// which a test may stop and start. initdb and postgres refuse to run as root: then the
/// directory belongs to the `postgres` user and every server command runs through
/// `runuser -u postgres --`. Stopped (`-m immediate`) when dropped; its roles go with its
/// directory.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    /// Every login trusted.
    pub fn start() -> Self {
        Self::start_with(PgAuth::Trust)
    }

    pub fn start_with(auth: PgAuth) -> Self {
        let bindir = Command::new("pg_config").arg("--bindir").output().unwrap();
        assert!(bindir.status.success(), "{}", stderr(&bindir));
        let dir = tempfile::Builder::new()
            .prefix("kairos-it-pg-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if let Some((uid, gid)) = server_user() {
            for p in ["", "sock"] {
                chown(dir.path().join(p), Some(uid), Some(gid)).unwrap();
            }
        }
        let mut pg = Self {
            dir,
            bindir: PathBuf::from(stdout(&bindir).trim()),
            port: 0,
        };
        let out = pg
            .server_cmd("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", stderr(&out));
        if auth == PgAuth::Passwords {
            // Written by us (root or not): the server only needs to read it.
            std::fs::write(
                pg.data().join("pg_hba.conf"),
                "local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
        }
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start().status.success() {
                return pg;
            }
        }
        panic!("private PostgreSQL did not start:\n{}", pg.log());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:PORT` (the superuser; append `/database`).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        match server_user() {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn pg_ctl_start(&self) -> Output {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().join("sock").display()
        );
        self.server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap()
    }

    /// Starts it again after [`PrivatePg::stop`], on the same port and data.
    pub fn restart(&self) {
        let out = self.pg_ctl_start();
        assert!(out.status.success(), "restart failed:\n{}", self.log());
    }

    /// `pg_ctl stop -m fast`: sessions are disconnected, the port stops answering.
    pub fn stop(&self) {
        let out = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "stop failed: {}", stderr(&out));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

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
