//! `GET /traefik`: the Traefik HTTP-provider dynamic configuration (PROTOCOLS.md A.4).
//!
//! Per pool one router and one `loadBalancer` service whose servers are exactly the ready
//! backends, seed first, in a stable order: Traefik hashes the raw body, so the same pool must
//! always give the same bytes. With `slow_start`, every server of the pool carries a `weight`
//! (Traefik v3's weighted round robin): the view's ramp weight, else full.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::PoolConfig;
use crate::pool::slow_start::FULL_WEIGHT;
use crate::pool::PoolView;

#[derive(Serialize)]
struct Document<'a> {
    http: Http<'a>,
}

#[derive(Serialize)]
struct Http<'a> {
    routers: BTreeMap<&'a str, Router<'a>>,
    services: BTreeMap<&'a str, Service>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Router<'a> {
    entry_points: &'a [String],
    rule: &'a str,
    service: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    middlewares: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    load_balancer: LoadBalancer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer {
    servers: Vec<Server>,
    pass_host_header: bool,
}

#[derive(Serialize)]
struct Server {
    url: String,
    /// Only when the pool has `slow_start`: then every server has one (weighted round robin).
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
}

/// Renders the document for these pools. A pool with no ready backend keeps its router with an
/// empty server list, so Traefik answers 503 for it instead of dropping the route.
pub fn render(pools: &[(&PoolConfig, &PoolView)]) -> Vec<u8> {
    let mut routers = BTreeMap::new();
    let mut services = BTreeMap::new();
    for (config, view) in pools {
        let name = config.name.as_str();
        routers.insert(
            name,
            Router {
                entry_points: &config.router.entry_points,
                rule: &config.router.rule,
                service: name,
                middlewares: &config.router.middlewares,
                priority: config.router.priority,
            },
        );
        let weighted = !config.slow_start.is_zero();
        let servers = view
            .backends
            .iter()
            .filter(|b| b.state.serves_traffic())
            .filter_map(|b| Some((b, b.ip.as_ref()?)))
            .map(|(b, ip)| Server {
                url: format!("http://{ip}:{}", config.service_port),
                weight: weighted.then(|| view.weights.get(&b.uuid).copied().unwrap_or(FULL_WEIGHT)),
            })
            .collect();
        services.insert(
            name,
            Service {
                load_balancer: LoadBalancer {
                    servers,
                    pass_host_header: true,
                },
            },
        );
    }
    serde_json::to_vec(&Document {
        http: Http { routers, services },
    })
    .expect("serializing plain structs cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Backend, BackendState, Role};

    fn pool(extra: &str) -> PoolConfig {
        crate::config::Config::parse(&format!(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\nclone_prefix = \"web-\"\n{extra}"
        ))
        .unwrap()
        .pools
        .remove(0)
    }

    fn view(weights: &[(&str, u32)]) -> PoolView {
        let backend = |uuid: &str, ip: &str, state| Backend {
            uuid: uuid.into(),
            name: uuid.into(),
            role: if uuid == "s" { Role::Seed } else { Role::Clone },
            ip: Some(ip.into()),
            cloud_status: "running".into(),
            created_at: None,
            state,
            since: 0.0,
        };
        PoolView {
            backends: vec![
                backend("s", "10.0.0.1", BackendState::Ready),
                backend("web-1", "10.0.0.2", BackendState::Ready),
                backend("web-2", "10.0.0.3", BackendState::Booting),
            ],
            synced: true,
            weights: weights.iter().map(|(u, w)| (u.to_string(), *w)).collect(),
            ..PoolView::new("web")
        }
    }

    fn servers(config: &PoolConfig, view: &PoolView) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_slice(&render(&[(config, view)])).unwrap();
        doc["http"]["services"]["web"]["loadBalancer"]["servers"].clone()
    }

    #[test]
    fn no_weight_key_without_slow_start() {
        let body = render(&[(&pool(""), &view(&[]))]);
        assert!(!String::from_utf8(body).unwrap().contains("weight"));
    }

    #[test]
    fn with_slow_start_every_server_has_a_weight() {
        let config = pool("slow_start = \"30s\"");
        assert_eq!(
            servers(&config, &view(&[("web-1", 14)])),
            serde_json::json!([
                {"url": "http://10.0.0.1:3000", "weight": 100},
                {"url": "http://10.0.0.2:3000", "weight": 14}
            ])
        );
        assert_eq!(
            servers(&config, &view(&[])),
            serde_json::json!([
                {"url": "http://10.0.0.1:3000", "weight": 100},
                {"url": "http://10.0.0.2:3000", "weight": 100}
            ])
        );
        // Deterministic: the same view and weights give the same bytes.
        let v = view(&[("web-1", 42)]);
        assert_eq!(render(&[(&config, &v)]), render(&[(&config, &v.clone())]));
    }
}
