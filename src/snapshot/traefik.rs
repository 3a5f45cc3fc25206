//! `GET /traefik`: the Traefik HTTP-provider dynamic configuration (PROTOCOLS.md A.4).
//!
//! Per pool one router and one `loadBalancer` service whose servers are exactly the ready
//! backends, seed first, in a stable order: Traefik hashes the raw body, so the same pool must
//! always give the same bytes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::PoolConfig;
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
        let servers = view
            .backends
            .iter()
            .filter(|b| b.state.serves_traffic())
            .filter_map(|b| b.ip.as_ref())
            .map(|ip| Server {
                url: format!("http://{ip}:{}", config.service_port),
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
