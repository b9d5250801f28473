//! The few Kairos API calls the figures read back: metrics, grant listings, receipts.

use std::time::Duration;

use anyhow::Context;
use kairos_domain::Timestamp;
use serde_json::Value;

use crate::server::{ADMIN_TOKEN, Server};

/// The value of an unlabelled metric (`name value`) in a Prometheus/OpenMetrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// `GET /metrics`.
pub async fn metrics(http: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    Ok(http
        .get(server.url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// `GET /v1/grants?…` as the admin: every matching grant (the API returns all when no
/// limit is given).
pub async fn list_grants(
    http: &reqwest::Client,
    server: &Server,
    query: &[(&str, &str)],
) -> anyhow::Result<Vec<Value>> {
    let body: Value = http
        .get(server.url("/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .query(query)
        .timeout(Duration::from_secs(300))
        .send()
        .await?
        .error_for_status()
        .context("listing grants")?
        .json()
        .await?;
    Ok(body["grants"].as_array().cloned().unwrap_or_default())
}

/// A grant's RFC 3339 time field (`expires_at`, or `receipt.verified_at` as a path).
pub fn time(grant: &Value, path: &[&str]) -> Option<Timestamp> {
    let mut v = grant;
    for p in path {
        v = v.get(p)?;
    }
    Timestamp::parse_rfc3339(v.as_str()?)
}

/// `b - a`, signed, in milliseconds.
pub fn millis_between(a: Timestamp, b: Timestamp) -> i64 {
    b.as_millis() - a.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_metrics() {
        let text = "# TYPE kairos_revocations_verified counter\n\
                    kairos_revocations_verified_total 42\n\
                    kairos_revoking_grants 3\n\
                    kairos_revoking_grants_other 9\n";
        assert_eq!(
            metric(text, "kairos_revocations_verified_total"),
            Some(42.0)
        );
        assert_eq!(metric(text, "kairos_revoking_grants"), Some(3.0));
        assert_eq!(metric(text, "kairos_missing"), None);
    }
}
