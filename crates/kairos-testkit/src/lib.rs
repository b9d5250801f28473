//! Test support shared by the test suites (a dev-dependency only, never shipped).
//!
//! [`PrivatePg`]: a PostgreSQL cluster a test owns alone and may stop, start or kill
//! (`initdb` + `pg_ctl` from `pg_config --bindir`), on a free port under a temporary
//! directory, torn down when dropped (even when the test panics); it never touches the
//! machine's shared PostgreSQL. [`Certificates`]: a CA and a server certificate, for
//! servers that speak TLS. [`StoreDb`] and [`store_suite!`]: each store-suite case on a
//! fresh SQLite file and on a PostgreSQL database of its own.

// Test support: a failed setup step is a failed test, said loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_db;

pub use store_db::{StoreDb, run_case};

use std::os::unix::fs::{MetadataExt, chown};
use std::path::PathBuf;
use std::process::{Command, Output};

/// A free TCP port on 127.0.0.1 (free when probed: whoever binds it may retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How a private PostgreSQL authenticates, and who its superuser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAuth {
    /// Superuser `postgres`; every login is trusted (no password is checked, so neither
    /// is `VALID UNTIL`).
    Trust,
    /// Superuser `postgres`, trusted; every other role logs in with its password over TCP
    /// (`scram-sha-256`), so `VALID UNTIL` and wrong passwords are refused as in production.
    Passwords,
    /// Superuser [`PrivatePg::ADMIN`] with [`PrivatePg::ADMIN_PASSWORD`]; every login,
    /// the superuser's too, needs its password (`scram-sha-256`).
    AdminPassword,
}

/// A private PostgreSQL cluster on a free port, which a test may stop and start. initdb
/// and postgres refuse to run as root: then the directory belongs to the `postgres` system
/// user and every server command runs through `runuser -u postgres --`. Stopped
/// (`-m immediate`) when dropped; its roles go with its directory.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    /// The superuser under [`PgAuth::AdminPassword`].
    pub const ADMIN: &str = "kairos_admin";
    pub const ADMIN_PASSWORD: &str = "private-admin-pw-3b1f9c";

    pub fn start(auth: PgAuth) -> Self {
        let bindir = Command::new("pg_config").arg("--bindir").output().unwrap();
        assert!(bindir.status.success(), "{}", stderr(&bindir));
        let dir = tempfile::Builder::new()
            .prefix("kairos-pg-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("pwfile"), Self::ADMIN_PASSWORD).unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if let Some((uid, gid)) = server_user() {
            for p in ["", "pwfile", "sock"] {
                chown(dir.path().join(p), Some(uid), Some(gid)).unwrap();
            }
        }
        let mut pg = Self {
            dir,
            bindir: PathBuf::from(stdout(&bindir).trim()),
            port: 0,
        };
        let mut initdb = pg.server_cmd("initdb");
        initdb
            .arg("-D")
            .arg(pg.data())
            .args(["-E", "UTF8", "--no-sync", "--no-instructions"]);
        match auth {
            PgAuth::Trust | PgAuth::Passwords => initdb.args(["-U", "postgres", "--auth=trust"]),
            PgAuth::AdminPassword => initdb
                .args(["-U", Self::ADMIN, "--auth=scram-sha-256"])
                .arg(format!(
                    "--pwfile={}",
                    pg.dir.path().join("pwfile").display()
                )),
        };
        let out = initdb.output().unwrap();
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

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:PORT` (the trusted superuser of [`PgAuth::Trust`]
    /// and [`PgAuth::Passwords`]; append `/database`).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// A command for one of the server binaries, as the `postgres` user when we are root.
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

    /// Turns TLS on with new [`Certificates`] and restarts with `ssl = on`. Returns the
    /// CA's certificate, for clients' `sslrootcert` (`sslmode=verify-full` then checks the
    /// server is who it says).
    pub fn enable_tls(&self) -> PathBuf {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let certificates = Certificates::make(&tls);
        // The server reads its key only if no one else may (0600, its own user).
        for (from, file) in [
            (&certificates.cert, "server.crt"),
            (&certificates.key, "server.key"),
        ] {
            let to = self.data().join(file);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some((uid, gid)) = server_user() {
                chown(&to, Some(uid), Some(gid)).unwrap();
            }
        }
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        self.stop();
        self.restart();
        certificates.ca
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

/// A new CA (P-256, a day long) and a server certificate it signed for 127.0.0.1, made
/// with openssl: PEM files in a directory.
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificates {
    /// Writes them into `dir`.
    pub fn make(dir: &std::path::Path) -> Self {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kairos test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }

    /// Another certificate signed by this CA, with a new P-256 key: `NAME.crt` and
    /// `NAME.key` beside the CA's files, for subject `/CN=cn` with the extensions in
    /// `ext` (openssl's `-extfile` syntax, e.g. `"extendedKeyUsage = clientAuth"` for a
    /// client, `"subjectAltName = IP:127.0.0.1"` for another server certificate).
    /// Returns (certificate, key).
    pub fn issue(&self, name: &str, cn: &str, ext: &str) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        std::fs::write(dir.join(&extfile), format!("{ext}\n")).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ]);
        (dir.join(crt), dir.join(key))
    }
}

/// `Some((uid, gid))` of the `postgres` system user when we run as root (the server
/// binaries must then run as that user), None otherwise.
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
