//! Latency samples and the percentiles reported from them.

use std::time::Duration;

/// Latency samples of one measured phase, sorted once for percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile (`p` in 0..=100); zero when there are no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.sorted, p)
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest sample such that at least
/// `p` percent of the samples are less than or equal to it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1234567.8` → `"1,234,568"`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in the unit that reads best: `850 ns`, `12.3 µs`, `4.56 ms`.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples_ms: &[u64], p: f64, expected_ms: u64) {
        let l = Latencies::new(
            samples_ms
                .iter()
                .map(|&m| Duration::from_millis(m))
                .collect(),
        );
        assert_eq!(l.percentile(p), Duration::from_millis(expected_ms), "p{p}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        check(&hundred, 50.0, 50);
        check(&hundred, 99.0, 99);
        check(&hundred, 100.0, 100);
        check(&hundred, 0.0, 1);
        check(&[7], 99.0, 7);
        check(&[], 50.0, 0);
        check(&[1, 2, 3], 50.0, 2);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(human(Duration::from_nanos(850)), "850 ns");
        assert_eq!(human(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(human(Duration::from_millis(1286)), "1.29 s");
    }
}
