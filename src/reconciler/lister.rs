//! One VM list per location: a [`Lister`] task makes one list call per interval for every pool
//! of that (api_url, location) and hands the result to all of them through a watch channel.
//! A pool can ask for an early list (after a clone or delete call ends) with [`ListerHandle::poke`];
//! pokes that arrive while a list is in flight are folded into one more list.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

use crate::clock;
use crate::idch::{CloudClient, Vm};
use crate::shutdown::Shutdown;

/// The outcome of one list call.
#[derive(Debug, Clone)]
pub enum ListOutcome {
    Ok(Arc<Vec<Vm>>),
    Failed {
        message: String,
        /// The cloud refuses our API key: an operator must fix the configuration.
        config_error: bool,
    },
}

/// One list call: when it began (a clone call that ended before `started` and whose VM is not
/// in `vms` did not create it), when it ended, and what it returned.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Increases by one per list call.
    pub seq: u64,
    pub started: f64,
    pub finished: f64,
    pub outcome: ListOutcome,
}

/// What a pool holds of its location's lister.
#[derive(Clone)]
pub struct ListerHandle {
    /// The newest listing (`None` before the first one ends). Written only by the lister task.
    pub listings: watch::Receiver<Option<Arc<Listing>>>,
    poke: Arc<Notify>,
}

impl ListerHandle {
    /// Asks for a list as soon as possible.
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

pub struct Lister {
    cloud: CloudClient,
    interval: Duration,
    tx: watch::Sender<Option<Arc<Listing>>>,
    poke: Arc<Notify>,
}

impl Lister {
    pub fn new(cloud: CloudClient, interval: Duration) -> (Lister, ListerHandle) {
        let (tx, rx) = watch::channel(None);
        let poke = Arc::new(Notify::new());
        let handle = ListerHandle {
            listings: rx,
            poke: poke.clone(),
        };
        (
            Lister {
                cloud,
                interval,
                tx,
                poke,
            },
            handle,
        )
    }

    /// Lists at once, then every `interval` and on every poke, until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut was_ok = true;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
                _ = self.poke.notified() => {}
            }
            seq += 1;
            let started = clock::now();
            let outcome = tokio::select! {
                _ = shutdown.wait() => return,
                r = self.cloud.list_vms() => r,
            };
            let outcome = match outcome {
                Ok(vms) => {
                    if !was_ok {
                        info!("cloud reachable again");
                    }
                    was_ok = true;
                    ListOutcome::Ok(Arc::new(vms))
                }
                Err(e) => {
                    if was_ok {
                        warn!(error = %e, "cannot list VMs; pools keep their last good view");
                    }
                    if e.is_config_error() {
                        error!(error = %e, "IDCloudHost refuses our API key: fix the configuration");
                    }
                    was_ok = false;
                    ListOutcome::Failed {
                        message: e.to_string(),
                        config_error: e.is_config_error(),
                    }
                }
            };
            let listing = Listing {
                seq,
                started,
                finished: clock::now(),
                outcome,
            };
            self.tx.send_replace(Some(Arc::new(listing)));
            // The next periodic list is an interval after this one, not after the poke.
            tick.reset();
        }
    }
}
