//! Health probes: an HTTP GET of `health.path` (2xx = healthy), or a TCP connect to the service
//! port when no path is configured. A round probes its targets concurrently as a task of its own,
//! so a slow VM never holds the reconciler's loop.

use std::time::Duration;

use crate::config::PoolConfig;

/// The health probe of one pool: an HTTP GET of `health.path` (2xx = healthy), or a TCP
/// connect to the service port when no path is configured.
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
    path: Option<String>,
    port: u16,
    timeout: Duration,
}

impl Prober {
    pub fn new(pool: &PoolConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(pool.health.timeout)
            // A fresh connection per probe: an idle keep-alive must not hide a dead listener.
            .pool_max_idle_per_host(0)
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            http,
            path: pool.health.path.clone(),
            port: pool.service_port,
            timeout: pool.health.timeout,
        }
    }

    pub async fn check(&self, ip: &str) -> bool {
        match &self.path {
            Some(path) => {
                let url = format!("http://{ip}:{}{path}", self.port);
                matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
            }
            None => {
                let addr = format!("{ip}:{}", self.port);
                matches!(
                    tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                )
            }
        }
    }
}
