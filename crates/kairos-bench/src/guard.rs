//! Cleanup that holds even when the run fails or is interrupted.
//!
//! Every process, scratch database (with its role prefix) and scratch directory the bench
//! creates is registered here while it lives. Normal paths clean up through `Drop`; on
//! SIGINT or SIGTERM a watcher thread takes the registry's lock for good, kills the
//! registered processes, drops the registered databases and roles, removes the registered
//! RabbitMQ virtual hosts and users and the registered directories, and exits. Processes are spawned and directories created while holding
//! that lock, and databases are registered before they are created, so nothing can be
//! made behind the cleanup's back: the main thread blocks on the lock until the exit.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::pg;

struct Registry {
    pids: Vec<u32>,
    /// (database, role prefix) on the machine's PostgreSQL.
    databases: Vec<(String, String)>,
    dirs: Vec<PathBuf>,
    /// (virtual host, user prefix) on the machine's RabbitMQ.
    rabbitmq: Vec<(String, String)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    databases: Vec::new(),
    dirs: Vec::new(),
    rabbitmq: Vec::new(),
});

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    match REGISTRY.lock() {
        Ok(mut r) => f(&mut r),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Spawns `cmd` and registers the child, under the registry's lock.
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    with(|r| {
        let child = cmd.spawn()?;
        r.pids.push(child.id());
        Ok(child)
    })
}

pub fn untrack_pid(pid: u32) {
    with(|r| r.pids.retain(|p| *p != pid));
}

pub fn track_database(name: &str, prefix: &str) {
    with(|r| r.databases.push((name.to_owned(), prefix.to_owned())));
}

pub fn untrack_database(name: &str) {
    with(|r| r.databases.retain(|(d, _)| d != name));
}

pub fn track_rabbitmq(vhost: &str, prefix: &str) {
    with(|r| r.rabbitmq.push((vhost.to_owned(), prefix.to_owned())));
}

pub fn untrack_rabbitmq(vhost: &str) {
    with(|r| r.rabbitmq.retain(|(v, _)| v != vhost));
}

pub fn untrack_dir(dir: &std::path::Path) {
    with(|r| r.dirs.retain(|d| d != dir));
}

/// Sends `signal` (`-TERM`, `-KILL`) to a process (no `unsafe`: through `kill(1)`).
pub fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Everything still registered, removed now, then the exit — all under the registry's
/// lock, which is never released. Used on interruption.
fn cleanup_and_exit() -> ! {
    let mut guard = match REGISTRY.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    for pid in guard.pids.drain(..) {
        kill_pid(pid, "-KILL");
    }
    for (db, prefix) in guard.databases.drain(..) {
        pg::drop_database_and_roles(pg::BASE_URL, &db, &prefix);
    }
    for (vhost, prefix) in guard.rabbitmq.drain(..) {
        crate::rabbitmq::remove_vhost_and_users(&vhost, &prefix);
    }
    for dir in guard.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(130);
}

/// A scratch directory, registered for cleanup on interruption and removed on drop.
pub struct ScratchDir {
    dir: Option<tempfile::TempDir>,
}

impl ScratchDir {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = with(|r| {
            let dir = tempfile::Builder::new()
                .prefix(&format!("kairos-bench-{tag}-"))
                .tempdir()?;
            r.dirs.push(dir.path().to_owned());
            anyhow::Ok(dir)
        })?;
        Ok(Self { dir: Some(dir) })
    }

    pub fn path(&self) -> &std::path::Path {
        match &self.dir {
            Some(d) => d.path(),
            None => std::path::Path::new("/nonexistent"),
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            untrack_dir(dir.path());
            let _ = dir.close();
        }
    }
}

/// Watches for SIGINT and SIGTERM on a thread of its own; on either, cleans up and exits.
pub fn install_signal_handler() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("kairos-bench-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let ctrl_c = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                let term = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = ctrl_c => {}
                    () = term => {}
                }
            });
            eprintln!("kairos-bench: interrupted; removing what the run created...");
            cleanup_and_exit();
        })?;
    Ok(())
}
