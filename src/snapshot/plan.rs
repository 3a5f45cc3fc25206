//! What each pool's reconciler last planned, for `GET /v1/pools/{pool}/plan`: a document of its
//! own beside the snapshot (one `ArcSwap` per pool, written only by that pool's reconciler), since
//! nothing else is rendered from it and `/traefik` never waits on it.

use crate::pool::plan::Described;

/// One pool's plan as its reconciler last published it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanView {
    pub pool: String,
    /// `run --dry-run`: steps are planned and recorded, never taken.
    pub dry_run: bool,
    /// When the planner returned `steps` (in a dry run: when it first returned this same list).
    /// `None` until it returned any.
    pub computed_at: Option<f64>,
    /// The desired size the steps were planned for; `None` before the first plan.
    pub desired: Option<u32>,
    /// A normal run: the steps taken by the most recent reconcile pass that took any (every
    /// round of that pass), kept until the next such pass. A dry run: the steps the most recent
    /// pass would take now, none taken (empty when the pool has converged).
    pub steps: Vec<Described>,
    /// Cloud calls under way now (a dry run makes none but reads).
    pub in_flight: Vec<InFlight>,
    /// When the planner next needs to be asked on its own (a deadline it knows of); `None`: only
    /// when something changes (a list, a probe, desired).
    pub next_check: Option<f64>,
}

/// A cloud call in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// The VM's name (for a clone: the name it will get).
    pub vm: String,
    /// The executor's key: the VM's uuid, or a clone call's name.
    pub key: String,
    /// `clone`, `delete` or `release_ip`.
    pub call: &'static str,
}

impl PlanView {
    pub fn new(pool: &str, dry_run: bool) -> PlanView {
        PlanView {
            pool: pool.to_string(),
            dry_run,
            computed_at: None,
            desired: None,
            steps: Vec::new(),
            in_flight: Vec::new(),
            next_check: None,
        }
    }
}
