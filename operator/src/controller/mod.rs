//! The Kubernetes operator: a kube-runtime Controller for PostgresCluster with a finalizer,
//! leader election, metrics and health endpoints.

pub mod backend;
pub mod backups;
pub mod cleanup;
pub mod conditions;
pub mod converge_task;
pub mod dereference;
pub mod failover;
#[cfg(test)]
mod fake_api;
pub mod hosts;
pub mod lease;
pub mod metrics;
pub mod publish;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
pub mod recovery_window;
mod step_events;
pub mod switchover;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::api::PostgresCluster;
use crate::engine::patroni_api::Patroni;

/// Field manager for server-side apply, and the events' reporting controller.
pub const MANAGER: &str = "pgmetal";
/// The finalizer that stops services on the hosts before the resource goes away.
pub const FINALIZER: &str = "pgmetal.io/cleanup";

/// Reconcile errors; every one is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer machinery failed, or the apply or cleanup it ran (the inner error).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Cleaning the hosts failed.
    #[error("cleanup: {0}")]
    Cleanup(cleanup::Unclean),
    /// The Secrets could not be read (other than missing: that is a status, not an error).
    #[error("{0}")]
    Secrets(#[from] dereference::DerefError),
}

impl Error {
    /// The `reason` label of `pgmetal_reconcile_errors_total`: what failed, looking through the
    /// finalizer to the apply or cleanup error it wraps.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(_) => "Kube",
            Error::Cleanup(_) => "Cleanup",
            Error::Secrets(_) => "Secrets",
            Error::Finalizer(e) => match &**e {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.metric_label(),
                _ => "Finalizer",
            },
        }
    }
}

/// What the operator remembers between reconciles of one cluster (lost on restart, which then
/// simply converges again).
#[derive(Clone, Debug)]
pub struct Memo {
    /// Hash of spec and Secrets at the last converge.
    pub inputs: String,
    /// When the last converge ran.
    pub converged_at: Instant,
    /// After a failed converge: when to try again (backoff).
    pub retry_at: Option<Instant>,
    /// Consecutive failed converges.
    pub failures: u32,
    /// The hosts the last converge could not reach or finish (Degraded until the next one).
    pub host_errors: Vec<crate::engine::HostError>,
    /// What failed the last converge as a whole (etcd quorum, Patroni's dynamic configuration,
    /// publishing haproxy.cfg), if anything did.
    pub failure: Option<crate::engine::Failure>,
}

impl Memo {
    /// The memo after a converge that left `host_errors` and `failure`: any of them makes it a
    /// failed converge, retried with backoff 15 s, 30 s, ... up to 5 minutes.
    pub fn after(
        inputs: String,
        failures: u32,
        host_errors: Vec<crate::engine::HostError>,
        failure: Option<crate::engine::Failure>,
    ) -> Self {
        let ok = host_errors.is_empty() && failure.is_none();
        let failures = if ok { 0 } else { failures + 1 };
        let retry_at = (!ok).then(|| {
            Instant::now()
                + Duration::from_secs((15u64 << failures.saturating_sub(1).min(5)).min(300))
        });
        Memo {
            inputs,
            converged_at: Instant::now(),
            retry_at,
            failures,
            host_errors,
            failure,
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    memos: Mutex<HashMap<String, Memo>>,
    sightings: Mutex<HashMap<String, failover::Sighting>>,
    /// The converge tasks: running, or finished and not yet picked up.
    pub converges: Arc<converge_task::Converges>,
    /// How hosts, Patroni and etcd are reached.
    pub backend: Arc<dyn backend::Backend>,
    /// Each cluster's Patroni client for observation, kept across reconciles (its connections
    /// and TLS sessions with them) while the cluster's inputs stay the same.
    observers: Mutex<HashMap<String, Observer>>,
    /// The fingerprints of the CAs each cluster's converges used (this process's memory; with
    /// the CA Secret pgmetal made, the former CAs a CA move trusts while hosts still hold them).
    ca_pins: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
}

/// A cluster's Patroni client for observation, and what it was made for.
struct Observer {
    /// The inputs it was made from (spec, Secrets, CA, trusted hosts).
    made_for: String,
    made_at: Instant,
    api: Arc<dyn Patroni>,
}

/// A kept observation client is made anew after this long (its client certificate lasts a day).
const OBSERVER_MAX_AGE: Duration = Duration::from_secs(3600);

impl Context {
    /// The CAs cluster `key` is known to have used, with `current` (its CA now) added: the
    /// former CAs its converge may trust while hosts still hold them.
    pub fn ca_pins(&self, key: &str, current: Option<&crate::tls::CertKey>) -> Vec<String> {
        let Ok(mut m) = self.ca_pins.lock() else {
            return Vec::new();
        };
        let pins = m.entry(key.to_string()).or_default();
        pins.extend(current.and_then(|c| crate::tls::fingerprint(&c.cert)));
        pins.iter().cloned().collect()
    }

    /// The memo of a cluster (`namespace/name`).
    pub fn memo(&self, key: &str) -> Option<Memo> {
        self.memos.lock().ok().and_then(|m| m.get(key).cloned())
    }
    /// Where the primary of a cluster was last seen.
    pub fn sighting(&self, key: &str) -> Option<failover::Sighting> {
        self.sightings.lock().ok().and_then(|m| m.get(key).cloned())
    }
    /// Remember where the primary of a cluster was seen.
    pub fn saw(&self, key: &str, s: failover::Sighting) {
        if let Ok(mut m) = self.sightings.lock() {
            m.insert(key.to_string(), s);
        }
    }
    /// Remember a converge.
    pub fn remember(&self, key: &str, memo: Memo) {
        if let Ok(mut m) = self.memos.lock() {
            m.insert(key.to_string(), memo);
        }
    }

    /// The Patroni client that observes cluster `key`: the one kept for it when it was made for
    /// the same inputs `made_for` less than [`OBSERVER_MAX_AGE`] ago, else `make()`'s (kept).
    pub fn observer(
        &self,
        key: &str,
        made_for: &str,
        make: impl FnOnce() -> Arc<dyn Patroni>,
    ) -> Arc<dyn Patroni> {
        let Ok(mut kept) = self.observers.lock() else {
            return make();
        };
        if let Some(o) = kept.get(key)
            && o.made_for == made_for
            && o.made_at.elapsed() < OBSERVER_MAX_AGE
        {
            return o.api.clone();
        }
        let api = make();
        let o = Observer {
            made_for: made_for.to_string(),
            made_at: Instant::now(),
            api: api.clone(),
        };
        kept.insert(key.to_string(), o);
        api
    }

    /// Forgets everything kept for cluster `key` (named `name` in the metrics): it is gone.
    pub fn forget(&self, key: &str, name: &str) {
        if let Ok(mut m) = self.memos.lock() {
            m.remove(key);
        }
        if let Ok(mut m) = self.sightings.lock() {
            m.remove(key);
        }
        if let Ok(mut m) = self.observers.lock() {
            m.remove(key);
        }
        if let Ok(mut m) = self.ca_pins.lock() {
            m.remove(key);
        }
        self.metrics.forget_cluster(name);
    }
}

/// Options of `pgmetal operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "pgmetal-leader")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: crate::telemetry::LogFormat,
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No Kubernetes client could be configured (kubeconfig or in-cluster).
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// Leader election failed (not: lost later, which ends the run normally).
    #[error("leader election: {0}")]
    Lease(#[source] kube::Error),
    /// The address of /metrics, /healthz and /readyz cannot be bound (an operator whose probes
    /// are not served would be restarted by its liveness probe, or worse, run unseen).
    #[error("--metrics-addr {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it could not be bound.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the operator until a signal arrives or leadership is lost.
pub async fn run(opts: Options) -> Result<(), StartError> {
    run_with(opts, Arc::new(backend::Network)).await
}

/// [`run`], reaching hosts, Patroni and etcd through `backend` (simulated hosts in the
/// many-clusters benchmark).
pub async fn run_with(opts: Options, backend: Arc<dyn backend::Backend>) -> Result<(), StartError> {
    crate::telemetry::init(opts.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = opts.metrics_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Metrics { addr, source })?;
    let client = Client::try_default().await.map_err(StartError::Client)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(metrics::Health::default());
    health.live.store(true, Ordering::SeqCst);
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), health.clone()));
    let identity = opts
        .identity
        .clone()
        .unwrap_or_else(|| format!("pgmetal-{}", std::process::id()));
    let mut leadership = lead(&client, &opts, &identity).await?;
    metrics.set_leader(true);
    health.ready.store(true, Ordering::SeqCst);
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter(identity)),
        memos: Mutex::default(),
        sightings: Mutex::default(),
        converges: Arc::default(),
        backend,
        observers: Mutex::default(),
        ca_pins: Mutex::default(),
    });
    let converges = ctx.converges.clone();
    let controller = control(client, opts.namespace.as_deref(), ctx);
    until_done(controller, &mut leadership, &health).await;
    // No converge outlives leadership: another replica may start converging now.
    converges.abort_all();
    metrics.set_leader(false);
    health.set_ready(false);
    health.set_live(false);
    leadership.release().await;
    server.abort();
    Ok(())
}

/// Waits for the Lease: returns once this replica leads.
async fn lead(
    client: &Client,
    opts: &Options,
    identity: &str,
) -> Result<lease::Leadership, StartError> {
    tracing::info!(%identity, lease = %opts.lease_name, "waiting for leadership");
    let cfg = lease::LeaseConfig {
        namespace: opts.lease_namespace.clone(),
        name: opts.lease_name.clone(),
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    };
    let leadership = lease::acquire(client.clone(), cfg)
        .await
        .map_err(StartError::Lease)?;
    tracing::info!(%identity, "leading");
    Ok(leadership)
}

/// The events' reporting controller and this replica's identity.
fn reporter(identity: String) -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance: Some(identity),
    }
}

/// Runs the controller until it stops (a signal) or leadership is lost, beating the health
/// heartbeat from the same task: if that task is wedged, /healthz fails.
async fn until_done(
    controller: impl Future<Output = ()>,
    leadership: &mut lease::Leadership,
    health: &metrics::Health,
) {
    let heartbeat = async {
        let mut tick = tokio::time::interval(metrics::HEARTBEAT_EVERY);
        loop {
            tick.tick().await;
            health.beat();
        }
    };
    tokio::select! {
        _ = controller => tracing::info!("controller stopped"),
        _ = leadership.lost() => tracing::error!("leadership lost: exiting so that only one replica converges"),
        _ = heartbeat => {}
    }
}

/// The controller's main loop over PostgresClusters. Ends on a signal.
///
/// Secrets are not watched: a watch needs `list` and `watch` on every Secret in reach. Each
/// reconcile (every 5 s, 15 s while blocked) reads the Secrets its cluster names, by name, and a
/// change to their content starts a converge ([`reconcile`]'s inputs hash), so a rotated
/// password or key is acted on within one interval with `get` alone.
async fn control(client: Client, namespace: Option<&str>, ctx: Arc<Context>) {
    // DeserializeGuard: one malformed object becomes a logged error instead of breaking the watch.
    let clusters: Api<DeserializeGuard<PostgresCluster>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Controller::new(clusters, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await
}

async fn reconcile(
    guard: Arc<DeserializeGuard<PostgresCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let pgc = match &guard.0 {
        Ok(pgc) => Arc::new(pgc.clone()),
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            tracing::warn!(cluster = %name, error = %invalid, "malformed PostgresCluster ignored until it changes");
            ctx.metrics.reconcile_error(&name, "Malformed");
            return Ok(Action::await_change());
        }
    };
    let ns = pgc.namespace().unwrap_or_else(|| "default".into());
    let api: Api<PostgresCluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, pgc, |event| async {
        match event {
            Finalizer::Apply(p) => reconcile::apply(p, ctx.clone()).await,
            Finalizer::Cleanup(p) => cleanup::cleanup(p, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(
    guard: Arc<DeserializeGuard<PostgresCluster>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let name = guard.name_any();
    tracing::warn!(cluster = %name, error = %err, "reconcile error");
    ctx.metrics.reconcile_error(&name, err.metric_label());
    Action::requeue(Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn metric_label_looks_through_the_finalizer() {
        let refused = crate::engine::HostError::new(
            "a",
            Some("connect"),
            crate::engine::Failure::new(crate::engine::HostErrorKind::Unreachable, "refused"),
        );
        let cleanup = || Error::Cleanup(cleanup::Unclean(vec![refused.clone()]));
        let wrapped = |e: F<Error>| Error::Finalizer(Box::new(e));
        assert_eq!(cleanup().metric_label(), "Cleanup");
        assert_eq!(
            wrapped(F::CleanupFailed(cleanup())).metric_label(),
            "Cleanup"
        );
        assert_eq!(wrapped(F::ApplyFailed(cleanup())).metric_label(), "Cleanup");
        assert_eq!(wrapped(F::UnnamedObject).metric_label(), "Finalizer");
        let e = wrapped(F::CleanupFailed(cleanup()));
        assert_eq!(
            e.to_string(),
            "finalizer: failed to clean up object: cleanup: could not clean up every host (a: connect: refused); retrying. To delete without cleaning, remove the finalizer by hand"
        );
    }
}
