//! Start-up: binds the listener, wires the state, the routes and one reconciler per pool.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, Secrets};
use crate::control::PoolControl;
use crate::http::auth::WebhookAuth;
use crate::http::{self, AppState};
use crate::idch::CloudClient;
use crate::metrics::Metrics;
use crate::reconciler::lister::Lister;
use crate::reconciler::{Deps, PoolReconciler};
use crate::shutdown::Shutdown;
use crate::snapshot::State;
use crate::store::{Store, Writer};

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    app: AppState,
    http: crate::config::HttpConfig,
    reconcilers: Vec<PoolReconciler>,
    /// Target tracking, one per pool with `[pool.target]` (`tracker.rs`).
    trackers: Vec<crate::tracker::Tracker>,
    lister: Lister,
    /// For the charging fetcher (`billing.rs`).
    cloud: crate::idch::CloudClient,
}

/// How `run` was asked to run, beside the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `--dry-run`: the reconcilers plan and record their steps (outcome `dry_run`) and take
    /// none: the only cloud calls are reads (the list, a booting clone's fetch).
    pub dry_run: bool,
}

/// A running service (see [`Application::spawn`]).
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: Shutdown,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and the reconcilers and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.handle.await.context("service task panicked")?
    }
}

impl Application {
    /// Builds the service from a validated configuration and its resolved secrets. Binds the
    /// listener (port 0 is allowed: see [`Application::addr`]).
    pub async fn build(config: Config, secrets: Secrets) -> anyhow::Result<Application> {
        Self::build_with(config, secrets, RunOptions::default()).await
    }

    /// [`Application::build`] with the command line's options (`--dry-run`).
    pub async fn build_with(
        config: Config,
        secrets: Secrets,
        options: RunOptions,
    ) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new());
        let Admitted {
            cloud,
            webhook_auth,
        } = admit(&config, &secrets)?;
        let cloud = cloud.with_metrics(metrics.clone());
        let store = Arc::new(Store::open(&config.state_path)?);
        // Secrets built by hand (tests, the demo) may leave the notify URLs out: read them here.
        let notify_urls = if secrets.notify_urls.len() == config.notify.len() {
            secrets.notify_urls.clone()
        } else {
            config.resolve_notify_urls()?
        };
        if let Some(notifier) =
            crate::notify::Notifier::start(&config.notify, notify_urls, metrics.clone())?
        {
            store.observe(notifier.observer());
        }
        let pools: Vec<_> = config.pools.iter().cloned().map(Arc::new).collect();
        let state = Arc::new(State::new(pools.clone(), metrics.clone()));
        let controls = pools
            .iter()
            .map(|p| PoolControl::load(p.clone(), store.clone(), metrics.clone()).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // One lister per (api_url, location): the configuration has one of each, so one lister
        // serves every pool.
        let (lister, lister_handle) = Lister::new(cloud.clone(), config.reconcile_interval);
        let deps = Deps {
            cloud: cloud.clone(),
            traefik_poll_interval: config.traefik.poll_interval,
            state: state.clone(),
            store: store.clone(),
            writer: Writer::start(store.clone()),
            lister: lister_handle,
            dry_run: options.dry_run,
        };
        let reconcilers = controls
            .iter()
            .enumerate()
            .map(|(i, c)| PoolReconciler::new(i, c.clone(), &deps))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Secrets built by hand (tests, the demo) may leave the Prometheus tokens out.
        let target_tokens = if secrets.target_tokens.is_empty() {
            config.resolve_target_tokens()?
        } else {
            secrets.target_tokens.clone()
        };
        let mut trackers = Vec::new();
        for control in &controls {
            let token = target_tokens.get(&control.config.name).cloned();
            if let Some(t) = crate::tracker::Tracker::new(control.clone(), state.clone(), token)? {
                trackers.push(t);
            }
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen: cannot bind {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = AppState {
            state: state.clone(),
            read_token: secrets.read_token.map(Arc::new),
            webhook_auth: Arc::new(webhook_auth),
            controls: Arc::new(controls),
            store,
            charging: crate::billing::Charging::new(config.cloud.billing_account_id),
        };
        Ok(Application {
            listener,
            addr,
            state,
            app,
            http: config.http.clone(),
            reconcilers,
            trackers,
            lister,
            cloud,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `stop` completes, then stops the reconcilers and drains open requests.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            trigger.trigger();
        });
        self.serve(shutdown).await
    }

    /// Runs in the background; for tests and the embedded default.
    pub fn spawn(self) -> Running {
        let shutdown = Shutdown::new();
        let addr = self.addr;
        let state = self.state.clone();
        let handle = tokio::spawn(self.serve(shutdown.clone()));
        Running {
            addr,
            state,
            shutdown,
            handle,
        }
    }

    /// Accepts connections until shutdown, at most `http.max_connections` at once (beyond it
    /// they wait in the listen backlog). A connection must send each request's header within
    /// `http.header_timeout` (also when idle between kept-alive requests) and each request must
    /// finish within `http.request_timeout`, so a stalled client cannot hold a slot for long.
    /// On shutdown: stop accepting, let open requests finish (at most `request_timeout`), then
    /// stop the reconcilers.
    async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::server::graceful::GracefulShutdown;
        use hyper_util::service::TowerToHyperService;

        let mut tasks: Vec<_> = self
            .reconcilers
            .into_iter()
            .map(|r| tokio::spawn(r.run(shutdown.clone())))
            .collect();
        tasks.push(tokio::spawn(self.lister.run(shutdown.clone())));
        tasks.push(tokio::spawn(
            self.app.charging.clone().run(self.cloud, shutdown.clone()),
        ));
        for control in self.app.controls.iter() {
            tasks.push(tokio::spawn(crate::scheduler::run(
                control.clone(),
                shutdown.clone(),
            )));
        }
        for tracker in self.trackers {
            tasks.push(tokio::spawn(tracker.run(shutdown.clone())));
        }
        let limits = self.http;
        let router = http::with_request_timeout(http::router(self.app), limits.request_timeout);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.context("the connection semaphore closed")?,
                _ = shutdown.wait() => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.wait() => break,
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let service = TowerToHyperService::new(router.clone());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
                drop(permit);
            });
        }
        drop(self.listener);
        if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("open connections did not finish within http.request_timeout");
        }
        shutdown.trigger();
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a reconciler or lister task panicked");
            }
        }
        Ok(())
    }
}

/// What [`admit`] hands to [`Application::build`].
pub struct Admitted {
    pub cloud: CloudClient,
    pub webhook_auth: WebhookAuth,
}

/// Every refusal `run` makes before it opens the state file and binds the port, in one place:
/// [`Application::build`] starts with it and `check --config` (through [`prepare`]) applies it,
/// so `check` cannot pass a configuration that `run` refuses. Has no side effects.
pub fn admit(config: &Config, secrets: &Secrets) -> anyhow::Result<Admitted> {
    let api_key = secrets
        .api_key
        .clone()
        .context("idcloudhost.api_key: no API key resolved")?;
    let webhook_auth = WebhookAuth::new(&config.auth, secrets);
    if webhook_auth.is_open() && !config.listen.ip().is_loopback() && !config.allow_unauthenticated
    {
        anyhow::bail!(
            "listen = {}: refusing to accept unauthenticated webhooks on a non-loopback address; \
             configure [auth] webhook_token_env, basic_username + basic_password_env or hmac_secret_env, \
             or set allow_unauthenticated = true",
            config.listen
        );
    }
    let cloud = CloudClient::new(&config.cloud, api_key)?;
    Ok(Admitted {
        cloud,
        webhook_auth,
    })
}

/// Reads and validates the file, resolves its secrets and applies [`admit`]: all that `run
/// --config` does before it touches the state file, and all that `check --config` does.
pub fn prepare(path: &Path) -> anyhow::Result<(Config, Secrets)> {
    let config = Config::load(path)?;
    let secrets = config.resolve_secrets()?;
    admit(&config, &secrets)?;
    Ok((config, secrets))
}

/// `idch-autoscaler run --config FILE`.
pub async fn run_from_file(path: &Path) -> anyhow::Result<()> {
    run_from_file_with(path, RunOptions::default()).await
}

/// `idch-autoscaler run --config FILE [--dry-run]`.
pub async fn run_from_file_with(path: &Path, options: RunOptions) -> anyhow::Result<()> {
    let (config, secrets) = prepare(path)?;
    let app = Application::build_with(config, secrets, options).await?;
    if options.dry_run {
        tracing::warn!("dry run: steps are planned and recorded, none is taken");
    }
    tracing::info!(addr = %app.addr(), "idch-autoscaler listening");
    app.run_until(crate::shutdown::signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(top: &str) -> Config {
        Config::parse(&format!(
            "{top}\n[idcloudhost]\napi_url = \"http://127.0.0.1:9\"\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\n"
        ))
        .unwrap()
    }

    fn secrets() -> Secrets {
        Secrets {
            api_key: Some(Secret::new("k")),
            ..Secrets::default()
        }
    }

    #[test]
    fn admit_refuses_open_webhooks_on_a_public_address_only() {
        let err = admit(&config("listen = \"0.0.0.0:4000\""), &secrets())
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .starts_with("listen = 0.0.0.0:4000: refusing"),
            "{err}"
        );
        assert!(admit(&config("listen = \"127.0.0.1:4000\""), &secrets()).is_ok());
        assert!(admit(&config("listen = \"[::1]:4000\""), &secrets()).is_ok());
        let allowed = config("listen = \"0.0.0.0:4000\"\nallow_unauthenticated = true");
        assert!(admit(&allowed, &secrets()).is_ok());
        let mut with_token = secrets();
        with_token.webhook_token = Some(Secret::new("t"));
        assert!(admit(&config("listen = \"0.0.0.0:4000\""), &with_token).is_ok());
        // A read token does not protect the webhooks.
        let mut read_only = secrets();
        read_only.read_token = Some(Secret::new("r"));
        assert!(admit(&config("listen = \"0.0.0.0:4000\""), &read_only).is_err());
    }

    #[test]
    fn admit_refuses_a_missing_api_key() {
        let err = admit(&config(""), &Secrets::default())
            .err()
            .expect("refused");
        assert!(err.to_string().starts_with("idcloudhost.api_key"), "{err}");
    }
}
