//! IDCloudHost's own month-to-date figures (`GET charging/usage`, PROTOCOLS.md E.2.6), shown by
//! `GET /v1/pools/{pool}/cost` beside the service's lifecycle record. With
//! `[idcloudhost] billing_account_id` set, one task fetches them at start and every
//! [`FETCH_EVERY`] and keeps the last answer (or why there is none); the HTTP layer only reads
//! it, so a cost request never calls the cloud.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::idch::wire::ChargingRow;
use crate::idch::CloudClient;
use crate::shutdown::Shutdown;

/// How often the figures are fetched: they are hourly figures, so more often tells nothing.
pub const FETCH_EVERY: Duration = Duration::from_secs(600);

/// The last fetch: its rows, or the error it met.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub at: f64,
    pub rows: Result<Vec<ChargingRow>, String>,
}

/// The shared last answer; empty until the first fetch ends (or without a billing account).
#[derive(Debug, Default)]
pub struct Charging {
    pub billing_account_id: Option<u64>,
    last: ArcSwapOption<Fetched>,
}

impl Charging {
    pub fn new(billing_account_id: Option<u64>) -> Arc<Charging> {
        Arc::new(Charging {
            billing_account_id,
            last: ArcSwapOption::empty(),
        })
    }

    pub fn last(&self) -> Option<Arc<Fetched>> {
        self.last.load_full()
    }

    /// Fetches until `shutdown`; returns at once without a billing account.
    pub async fn run(self: Arc<Self>, cloud: CloudClient, shutdown: Shutdown) {
        let Some(account) = self.billing_account_id else {
            return;
        };
        let mut tick = tokio::time::interval(FETCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let rows = cloud
                .charging_usage(account)
                .await
                .map_err(|e| e.to_string());
            if let Err(e) = &rows {
                tracing::warn!(error = %e, "cannot read charging/usage; the cost endpoint shows why");
            }
            self.last.store(Some(Arc::new(Fetched {
                at: crate::clock::now(),
                rows,
            })));
        }
    }
}

/// Month-to-date hours and cost the cloud billed for these VMs (by uuid): running rows, and
/// rows whose description ends in `, stopped` (as the invoices name them; UNVERIFIED for the
/// Charging API).
pub fn billed<'a>(
    rows: &'a [ChargingRow],
    uuids: &std::collections::HashSet<&str>,
) -> (f64, f64, f64, usize) {
    let mine: Vec<&'a ChargingRow> = rows
        .iter()
        .filter(|r| uuids.contains(r.owner_uuid.as_str()))
        .collect();
    let stopped = |r: &&ChargingRow| r.description.trim_end().ends_with(", stopped");
    let running_hours = mine.iter().filter(|r| !stopped(r)).map(|r| r.hours).sum();
    let stopped_hours = mine.iter().filter(|r| stopped(r)).map(|r| r.hours).sum();
    let cost = mine.iter().map(|r| r.cost).sum();
    let vms = mine
        .iter()
        .map(|r| r.owner_uuid.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    (running_hours, stopped_hours, cost, vms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(uuid: &str, description: &str, hours: f64, price: f64) -> ChargingRow {
        serde_json::from_value(serde_json::json!({
            "owner_uuid": uuid, "description": description, "price": price,
            "price_unit": "h", "hours": hours, "cost": hours * price,
        }))
        .unwrap()
    }

    #[test]
    fn only_the_pools_vms_are_summed_by_state() {
        let rows = vec![
            row("a", "web-1, 2 CPUs, 2 GB RAM, 20 GB disk", 3.0, 0.02882),
            row(
                "a",
                "web-1, 2 CPUs, 2 GB RAM, 20 GB disk, stopped",
                2.0,
                0.0028,
            ),
            row("b", "web-2, 2 CPUs, 2 GB RAM, 20 GB disk", 1.0, 0.02882),
            row("other", "db, 4 CPUs", 10.0, 0.1),
        ];
        let uuids: std::collections::HashSet<&str> = ["a", "b"].into();
        let (running, stopped, cost, vms) = billed(&rows, &uuids);
        assert_eq!((running, stopped, vms), (4.0, 2.0, 2));
        assert!((cost - (4.0 * 0.02882 + 2.0 * 0.0028)).abs() < 1e-12);
    }
}
