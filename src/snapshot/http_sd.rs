//! `GET /prometheus/targets`: Prometheus http_sd target groups (PROTOCOLS.md B).
//!
//! One group per existing VM that has an address and is not in the warm pool (stopped, or
//! warming up to be): `targets` = [`{ip}:{exporter_port}`], labels
//! `pool`, `role`, `vm`. Only `targets` and `labels` keys (Prometheus rejects any other), `[]`
//! for none, never `null`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::PoolConfig;
use crate::pool::PoolView;

#[derive(Serialize)]
struct TargetGroup<'a> {
    targets: [String; 1],
    labels: BTreeMap<&'static str, &'a str>,
}

pub fn render(pools: &[(&PoolConfig, &PoolView)]) -> Vec<u8> {
    let mut groups = Vec::new();
    for (config, view) in pools {
        // The warm pool's VMs (stopped, or about to be) are not scraped.
        for b in view.backends.iter().filter(|b| b.state.is_scraped()) {
            let Some(ip) = &b.ip else { continue };
            let mut labels = BTreeMap::new();
            labels.insert("pool", config.name.as_str());
            labels.insert("role", b.role.as_str());
            labels.insert("vm", b.name.as_str());
            groups.push(TargetGroup {
                targets: [format!("{ip}:{}", config.exporter_port)],
                labels,
            });
        }
    }
    serde_json::to_vec(&groups).expect("serializing plain structs cannot fail")
}
