//! Deliveries to several destinations at once (notification channels, SET receivers):
//! each destination's items go out one after another, in their order, and at most a given
//! number of destinations are served at a time, so a destination that stalls holds up only
//! its own items.

use std::collections::BTreeMap;
use std::future::Future;

use crate::{BrokerError, Result};

/// Runs `deliver` once per destination of `by_destination`, at most `at_once` at a time,
/// and adds up what each attempted. Every destination is served even when another fails;
/// the first error is returned after all have finished.
pub(crate) async fn per_destination<T, F, Fut>(
    by_destination: BTreeMap<String, Vec<T>>,
    at_once: usize,
    deliver: F,
) -> Result<usize>
where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<usize>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    let mut attempted = 0;
    let mut first_error = None;
    let mut collect =
        |joined: std::result::Result<Result<usize>, tokio::task::JoinError>| match joined {
            Ok(Ok(n)) => attempted += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(BrokerError::internal(e));
            }
        };
    for (_, items) in by_destination {
        if running.len() >= at_once.max(1)
            && let Some(joined) = running.join_next().await
        {
            collect(joined);
        }
        running.spawn(deliver(items));
    }
    while let Some(joined) = running.join_next().await {
        collect(joined);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(attempted),
    }
}
