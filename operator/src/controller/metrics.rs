//! Prometheus metrics (`pgmetal_*`) and the `/metrics`, `/healthz`, `/readyz` HTTP endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Help text of every metric, by name before the `pgmetal_` prefix and `_total`/`_seconds` suffixes.
const HELP: &[(&str, &str)] = &[
    ("reconciles", "Reconciles started, per cluster"),
    (
        "reconcile_errors",
        "Failed reconciles, per cluster and reason",
    ),
    (
        "reconcile_duration",
        "Wall time of one reconcile, per cluster",
    ),
    ("ssh_step_duration", "Wall time of one SSH step, per step"),
    (
        "observe_duration",
        "Wall time of one observation of a cluster's hosts",
    ),
    (
        "cluster_ready",
        "1 if the cluster's Ready condition is True, else 0",
    ),
    (
        "leader",
        "1 while this replica holds the leader Lease, else 0",
    ),
];

/// One label, e.g. `[("cluster", name)]`; two for errors.
type Labels<const N: usize> = [(&'static str, String); N];
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// 50 ms .. ~27 min, for whole reconciles.
fn slow() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// 10 ms .. ~5.5 min, for SSH steps and observations.
fn fast() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// Registers `metric` under `name` (with its [`HELP`]) and returns it.
fn add<M: Metric + Clone>(r: &mut Registry, name: &str, unit: Option<Unit>, metric: M) -> M {
    let help = HELP
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, h)| *h);
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, metric.clone()),
        None => r.register(name, help, metric.clone()),
    }
    metric
}

fn histograms<const N: usize>(new: fn() -> Histogram) -> Histograms<N> {
    Family::new_with_constructor(new)
}

fn cluster(name: &str) -> Labels<1> {
    [("cluster", name.to_owned())]
}

/// The operator's metrics, all registered under the `pgmetal_` prefix. Share it via `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels<1>, Counter>,
    reconcile_errors: Family<Labels<2>, Counter>,
    reconcile_duration: Histograms<1>,
    ssh_step_duration: Histograms<1>,
    observe_duration: Histogram,
    cluster_ready: Family<Labels<1>, Gauge>,
    leader: Gauge,
}

/// Counts a reconcile when created and records its duration when dropped.
#[must_use = "the duration is recorded when the timer is dropped"]
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = &mut Registry::with_prefix("pgmetal");
        let s = Some(Unit::Seconds);
        Self {
            reconciles: add(r, "reconciles", None, Family::default()),
            reconcile_errors: add(r, "reconcile_errors", None, Family::default()),
            reconcile_duration: add(r, "reconcile_duration", s.clone(), histograms(slow)),
            ssh_step_duration: add(r, "ssh_step_duration", s.clone(), histograms(fast)),
            observe_duration: add(r, "observe_duration", s, fast()),
            cluster_ready: add(r, "cluster_ready", None, Family::default()),
            leader: add(r, "leader", None, Gauge::default()),
            registry: std::mem::take(r),
        }
    }

    /// Counts a reconcile of `cluster` now; the returned timer records its duration when dropped.
    pub fn reconcile(&self, cluster_name: &str) -> ReconcileTimer {
        let labels = cluster(cluster_name);
        self.reconciles.get_or_create(&labels).inc();
        let histogram = self.reconcile_duration.get_or_create_owned(&labels);
        let started = Instant::now();
        ReconcileTimer { histogram, started }
    }

    /// Counts a failed reconcile. Keep `reason` to a small fixed set (e.g. an error variant name).
    pub fn reconcile_error(&self, cluster: &str, reason: &str) {
        let labels = [
            ("cluster", cluster.to_owned()),
            ("reason", reason.to_owned()),
        ];
        self.reconcile_errors.get_or_create(&labels).inc();
    }

    /// Records how long one SSH step (e.g. `install_packages`) took.
    pub fn ssh_step(&self, step: &str, seconds: f64) {
        let labels = [("step", step.to_owned())];
        self.ssh_step_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// Records how long one observation round took.
    pub fn observe(&self, seconds: f64) {
        self.observe_duration.observe(seconds);
    }

    /// Sets `pgmetal_cluster_ready{cluster}` to 1 or 0.
    pub fn set_cluster_ready(&self, cluster_name: &str, ready: bool) {
        let gauge = self.cluster_ready.get_or_create(&cluster(cluster_name));
        gauge.set(i64::from(ready));
    }

    /// Sets `pgmetal_leader` to 1 or 0.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Drops the per-cluster series of `cluster` (call when its resource is deleted).
    /// `pgmetal_reconcile_errors_total` stays: that family cannot be listed by cluster.
    pub fn forget_cluster(&self, cluster_name: &str) {
        let labels = cluster(cluster_name);
        self.reconciles.remove(&labels);
        self.reconcile_duration.remove(&labels);
        self.cluster_ready.remove(&labels);
    }

    /// The OpenMetrics text exposition of all metrics (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Liveness and readiness behind `/healthz` and `/readyz`.
///
/// `/healthz` fails when `live` is cleared (the controller's main loop ended) or when the main
/// loop, once started, has not called [`Health::beat`] for `stale_after` (its task is wedged).
/// A replica still waiting for the Lease has no main loop yet and is live.
#[derive(Debug)]
pub struct Health {
    /// Set once this replica is leader and its watches are running; `/readyz` answers 200 then.
    pub ready: AtomicBool,
    /// Cleared when the process is wedged and should be restarted; `/healthz` answers 503 then.
    pub live: AtomicBool,
    /// Milliseconds after `born` of the main loop's last heartbeat; 0 until the loop starts.
    beat_ms: AtomicU64,
    born: Instant,
    /// How old the last heartbeat may be before `/healthz` fails.
    stale_after: Duration,
}

/// How often the controller's main loop calls [`Health::beat`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

impl Default for Health {
    /// Live but not yet ready.
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Live but not yet ready.
    pub fn new() -> Self {
        let (ready, live) = (AtomicBool::new(false), AtomicBool::new(true));
        Self {
            ready,
            live,
            beat_ms: AtomicU64::new(0),
            born: Instant::now(),
            stale_after: HEARTBEAT_EVERY * 6,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Called by the controller's main loop every [`HEARTBEAT_EVERY`] while it runs.
    pub fn beat(&self) {
        self.beat_ms.store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// What `/healthz` reports: the live flag, and a fresh heartbeat once the main loop started.
    pub fn is_live(&self) -> bool {
        let beat = self.beat_ms.load(Ordering::Relaxed);
        let stale = u64::try_from(self.stale_after.as_millis()).unwrap_or(u64::MAX);
        self.live.load(Ordering::Relaxed)
            && (beat == 0 || self.now_ms().saturating_sub(beat) <= stale)
    }

    /// Sets the readiness flag.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Sets the liveness flag.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
}

type AppState = State<(Arc<Metrics>, Arc<Health>)>;

/// The axum router for `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    let text = async |s: AppState| ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.0.0.encode());
    Router::new()
        .route("/metrics", get(text))
        .route("/healthz", get(async |s: AppState| flag(s.0.1.is_live())))
        .route(
            "/readyz",
            get(async |s: AppState| flag(s.0.1.ready.load(Ordering::Relaxed))),
        )
        .with_state((metrics, health))
}

fn flag(ok: bool) -> (StatusCode, &'static str) {
    match ok {
        true => (StatusCode::OK, "ok\n"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ok\n"),
    }
}

/// Serves GET /metrics (text), /healthz (200 while live, see [`Health`]), /readyz (200 once ready)
/// on `listener` until the future is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_has_names_and_labels() {
        let m = Metrics::new();
        drop(m.reconcile("pg-a"));
        m.reconcile_error("pg-a", "ssh");
        m.ssh_step("install_packages", 1.5);
        m.observe(0.2);
        m.set_cluster_ready("pg-a", true);
        m.set_leader(true);
        let text = m.encode();
        for want in [
            "# HELP pgmetal_reconciles Reconciles started, per cluster",
            "pgmetal_reconciles_total{cluster=\"pg-a\"} 1",
            "pgmetal_reconcile_errors_total{cluster=\"pg-a\",reason=\"ssh\"} 1",
            "pgmetal_reconcile_duration_seconds_count{cluster=\"pg-a\"} 1",
            "pgmetal_ssh_step_duration_seconds_sum{step=\"install_packages\"} 1.5",
            "pgmetal_observe_duration_seconds_count 1",
            "pgmetal_cluster_ready{cluster=\"pg-a\"} 1",
            "pgmetal_leader 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        m.forget_cluster("pg-a");
        assert!(!m.encode().contains("pgmetal_cluster_ready{"));
    }

    #[tokio::test]
    async fn serves_metrics_and_health() -> Result<(), Box<dyn std::error::Error>> {
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::new()));
        drop(metrics.reconcile("pg-b"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = router(metrics, health.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let get = |path: &str| http.get(format!("{base}{path}")).send();

        let res = get("/metrics").await?;
        assert_eq!(res.status(), 200);
        let ctype = res.headers().get("content-type").cloned();
        assert_eq!(
            ctype.as_ref().map(|v| v.as_bytes()),
            Some(CONTENT_TYPE.as_bytes())
        );
        let body = res.text().await?;
        assert!(
            body.contains("pgmetal_reconciles_total{cluster=\"pg-b\"} 1"),
            "{body}"
        );
        assert_eq!(get("/healthz").await?.status(), 200);
        assert_eq!(get("/readyz").await?.status(), 503);
        health.set_ready(true);
        assert_eq!(get("/readyz").await?.status(), 200);
        health.set_live(false);
        assert_eq!(get("/healthz").await?.status(), 503);
        assert_eq!(get("/nope").await?.status(), 404);
        server.abort();
        Ok(())
    }

    #[test]
    fn healthz_fails_when_the_main_loop_stops_beating() {
        let health = Health {
            stale_after: Duration::from_millis(50),
            ..Health::new()
        };
        assert!(
            health.is_live(),
            "no main loop yet (waiting for the Lease): live"
        );
        health.beat();
        assert!(health.is_live());
        std::thread::sleep(Duration::from_millis(120));
        assert!(!health.is_live(), "a stale heartbeat is not live");
        health.beat();
        assert!(health.is_live());
        health.set_live(false);
        assert!(!health.is_live());
    }

    #[tokio::test]
    async fn a_taken_metrics_address_stops_the_start() -> Result<(), Box<dyn std::error::Error>> {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = taken.local_addr()?;
        let opts = super::super::Options {
            metrics_addr: addr,
            lease_namespace: "default".into(),
            lease_name: "pgmetal-leader".into(),
            identity: None,
            namespace: None,
            log_format: crate::telemetry::LogFormat::Json,
        };
        let err = super::super::run(opts).await.err();
        let Some(super::super::StartError::Metrics { addr: a, source }) = err else {
            panic!("not a metrics error: {err:?}");
        };
        assert_eq!((a, source.kind()), (addr, std::io::ErrorKind::AddrInUse));
        Ok(())
    }
}
