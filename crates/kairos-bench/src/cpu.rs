//! Where the CPU went during a phase, from `/proc`: the Kairos server process, the
//! PostgreSQL processes alive at both ends of the phase, this bench (the load generator and
//! its waited-for children such as pgbench), and the whole machine. A figure far below its
//! target with the machine's cores not busy points at waiting (fsync, locks, one
//! serialised writer); with them busy, at CPU.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime (+ cutime + cstime when `children`) of a process, in ticks.
fn process_ticks(pid: &str, children: bool) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields start after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is index 0, so utime (field 14) is index 11.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let own = get(11)? + get(12)?;
    Some(if children {
        own + get(13)? + get(14)?
    } else {
        own
    })
}

/// utime + stime of one process, in ticks (None once it has exited).
pub fn pid_ticks(pid: u32) -> Option<u64> {
    process_ticks(&pid.to_string(), false)
}

/// Ticks of every live process whose command is `postgres`, by pid.
fn postgres_ticks() -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{name}/comm")).unwrap_or_default();
        if comm.trim() == "postgres"
            && let Some(t) = process_ticks(&name, false)
        {
            out.insert(name, t);
        }
    }
    out
}

/// (busy, total) ticks over all CPUs, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The name the store's writer thread runs under (`/proc/…/comm` keeps its first 15 bytes).
const WRITER_THREAD: &str = "kairos-store-wr";

/// A thread's time on a CPU and waiting in the run queue for one, in nanoseconds
/// (`/proc/PID/task/TID/schedstat`), and whether it is the store's writer.
#[derive(Debug, Clone, Copy)]
struct ThreadTime {
    writer: bool,
    on_cpu: u64,
    waiting: u64,
}

/// Every thread of process `pid`, by thread id.
fn thread_times(pid: u32) -> std::collections::HashMap<String, ThreadTime> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let mut fields = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
        if let (Some(Some(on_cpu)), Some(Some(waiting))) = (fields.next(), fields.next()) {
            out.insert(
                entry.file_name().to_string_lossy().into_owned(),
                ThreadTime {
                    writer: comm.trim() == WRITER_THREAD,
                    on_cpu,
                    waiting,
                },
            );
        }
    }
    out
}

/// The server's threads over a phase, in cores (seconds per second): the store's writer
/// and every other thread, each on a CPU and runnable but waiting for one. Threads that
/// lived through the whole phase only (the writer and the HTTP workers do).
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads {
    pub writer_on_cpu: f64,
    pub writer_waiting: f64,
    pub rest_on_cpu: f64,
    pub rest_waiting: f64,
}

/// A point in time to measure a phase from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    server_pid: Option<u32>,
    server: Option<u64>,
    threads: std::collections::HashMap<String, ThreadTime>,
    postgres: std::collections::HashMap<String, u64>,
    bench: Option<u64>,
    machine: Option<(u64, u64)>,
}

/// Cores used on average over a phase, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The Kairos server process (None when there was none).
    pub server: Option<f64>,
    /// PostgreSQL processes alive at both ends of the phase.
    pub postgres: f64,
    /// This bench process and the children it waited for (pgbench).
    pub bench: f64,
    /// Everything on the machine (other builds included), out of `cores`.
    pub machine: f64,
    pub cores: usize,
    /// The phase's length, in seconds.
    pub secs: f64,
    /// The server's threads (None without a server, or when `/proc` has no schedstat).
    pub threads: Option<Threads>,
}

impl Snapshot {
    pub fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            server_pid,
            server: server_pid.and_then(|p| process_ticks(&p.to_string(), false)),
            threads: server_pid.map(thread_times).unwrap_or_default(),
            postgres: postgres_ticks(),
            bench: process_ticks("self", true),
            machine: machine_ticks(),
        }
    }

    /// Usage from this snapshot until now.
    pub fn usage(&self) -> Usage {
        let now = Self::take(self.server_pid);
        let secs = now.at.duration_since(self.at).max(Duration::from_millis(1));
        let hz = ticks_per_sec();
        let cores = |ticks: u64| ticks as f64 / hz / secs.as_secs_f64();
        let postgres: u64 = now
            .postgres
            .iter()
            .filter_map(|(pid, t)| {
                self.postgres
                    .get(pid)
                    .map(|before| t.saturating_sub(*before))
            })
            .sum();
        let machine = match (self.machine, now.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                // Fraction of all CPU time that was busy, times the number of CPUs.
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64 * n as f64
            }
            _ => 0.0,
        };
        Usage {
            server: match (self.server, now.server) {
                (Some(a), Some(b)) => Some(cores(b.saturating_sub(a))),
                _ => None,
            },
            postgres: cores(postgres),
            bench: match (self.bench, now.bench) {
                (Some(a), Some(b)) => cores(b.saturating_sub(a)),
                _ => 0.0,
            },
            machine,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            secs: secs.as_secs_f64(),
            threads: self.threads_until(&now, secs),
        }
    }

    fn threads_until(&self, now: &Self, secs: Duration) -> Option<Threads> {
        let mut t = Threads::default();
        let mut any = false;
        for (tid, after) in &now.threads {
            let Some(before) = self.threads.get(tid) else {
                continue;
            };
            any = true;
            let on_cpu = after.on_cpu.saturating_sub(before.on_cpu) as f64;
            let waiting = after.waiting.saturating_sub(before.waiting) as f64;
            if after.writer {
                t.writer_on_cpu += on_cpu;
                t.writer_waiting += waiting;
            } else {
                t.rest_on_cpu += on_cpu;
                t.rest_waiting += waiting;
            }
        }
        let ns = secs.as_secs_f64() * 1e9;
        any.then_some(Threads {
            writer_on_cpu: t.writer_on_cpu / ns,
            writer_waiting: t.writer_waiting / ns,
            rest_on_cpu: t.rest_on_cpu / ns,
            rest_waiting: t.rest_waiting / ns,
        })
    }
}

impl Usage {
    /// `kairos 0.91, PostgreSQL 0.40, bench 0.62; machine 1.97 of 2` (PostgreSQL left out
    /// when it did nothing).
    pub fn describe(&self) -> String {
        let server = self
            .server
            .map_or(String::new(), |s| format!("kairos {s:.2}, "));
        let postgres = if self.postgres >= 0.005 {
            format!("PostgreSQL {:.2}, ", self.postgres)
        } else {
            String::new()
        };
        format!(
            "{server}{postgres}bench {:.2}; machine {:.2} of {}",
            self.bench, self.machine, self.cores
        )
    }
}
