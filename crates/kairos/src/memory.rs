//! How the server's process asks the kernel for memory.
//!
//! **Transparent huge pages are off for `kairos server`.** mimalloc (the global allocator)
//! advises the kernel to back its arenas with 2 MiB pages wherever the machine allows it
//! (`madvise` or `always` in `/sys/kernel/mm/transparent_hugepage/enabled`), and hands
//! freed memory back after a short delay. A bulk store write (5,000 grants ended by one
//! operator revoke, their rows read, their audit records sealed) then touches memory the
//! kernel must fault in again, and every such fault zeroes a whole 2 MiB page however
//! little of it is used: measured on the store's writer thread (2026-12-07, `perf`), a
//! third of the end's write went to the kernel clearing pages, and with huge pages off the
//! write took 180–200 ms instead of 250–310 ms and verified revocations rose from about
//! 7,500/s to about 11,000/s (quick benchmark runs, interleaved). Token grants,
//! introspection and credentials were the same or better without them. So the server
//! opts its own process out (`prctl(PR_SET_THP_DISABLE)`), whatever the machine's setting,
//! and leaves the rest of the machine alone.

/// Turns transparent huge pages off for this process (every thread, and children it
/// starts). An `Err` leaves the process as it was: slower on bulk writes, not wrong.
#[cfg(target_os = "linux")]
pub fn no_transparent_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

/// Not Linux: nothing to turn off.
#[cfg(not(target_os = "linux"))]
pub fn no_transparent_huge_pages() -> std::io::Result<()> {
    Ok(())
}
