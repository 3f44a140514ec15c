//! The convergence engine: brings hosts to the desired state over SSH, phase by phase, and
//! reports what it changed. Idempotent: a second run with the same spec changes nothing.
//!
//! Phases: observe the topology and plan ([`crate::plan`]) → prepare (facts, package source,
//! install, take over package defaults; all hosts) → etcd membership steps → etcd (all members
//! at once when bootstrapping, else one at a time) → wait for etcd quorum → a switchover step →
//! Patroni on the preferred primary (it bootstraps) → replicas → members leaving → HAProxy →
//! former hosts decommissioned → Patroni dynamic configuration (parameters, pause, pending
//! restarts) → observe until healthy.

mod backup;
pub mod backup_look;
pub mod capped;
pub mod claim;
pub mod connect;
mod dcs_config;
pub mod error;
pub mod etcd_api;
mod etcd_tls;
pub mod facts;
#[cfg(any(test, feature = "sim"))]
pub mod fake;
pub mod files;
pub mod first_contact;
pub mod identity;
mod monitoring;
pub mod observe;
pub mod packages;
pub mod passwords;
pub mod patroni_api;
pub mod patroni_view;
pub mod report;
pub mod requests;
pub mod rest_tls;
pub mod schemes;
pub mod snapshot;
pub mod split_brain;
mod steps;
pub mod teardown;
mod tls;
pub mod topology;
mod units;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Counted, Executor};
use crate::model::{ClusterSecrets, DesiredFile};
use crate::{plan, render};
pub use error::Failure;
pub use error::{HostError, HostErrorKind};
use etcd_api::Etcd;
use facts::HostFacts;
use patroni_api::{Patroni, PatroniApi};
use report::Recorder;
pub use report::{Progress, Quiet, Report};

/// A host's connection: an executor, or why there is none (the host is skipped, others go on).
pub type Connection = Result<Arc<dyn Executor>, HostError>;

/// One converge of one cluster.
pub struct Engine<'a> {
    spec: &'a PostgresClusterSpec,
    secrets: &'a ClusterSecrets,
    conns: BTreeMap<String, Connection>,
    /// The round trips made through each connection (the same executors as `conns`).
    counters: BTreeMap<String, Arc<Counted>>,
    progress: &'a dyn Progress,
    facts: Mutex<BTreeMap<String, HostFacts>>,
    rec: Recorder,
    api: Arc<dyn Patroni>,
    etcd: Arc<dyn Etcd>,
    waits: Waits,
    owner: claim::Owner,
    /// etcd's member list as last read (None: no etcd runs).
    live: Mutex<Option<Vec<etcd_api::LiveMember>>>,
    /// Member operations the annotations ask for.
    asked: requests::Asked,
    /// The cluster's CA, which signs the certificates (`spec.tls`).
    ca: Option<crate::tls::CertKey>,
    /// SHA-256 fingerprints of the cluster's former CAs, recorded where only pgmetal writes: a CA
    /// the hosts still hold is trusted during a move only when it is one of these.
    pins: std::collections::BTreeSet<String>,
    /// What the facts probe saw on each host where nothing has changed yet.
    snapshots: Mutex<BTreeMap<String, snapshot::Snapshot>>,
    /// Hosts whose certificate this converge issued anew (their pgBackRest server reloads it).
    reissued: Mutex<std::collections::BTreeSet<String>>,
    /// Whether every Patroni speaks the spec's scheme to etcd (None: not read yet).
    clients_moved: Mutex<Option<bool>>,
    /// The etcd member that moves to the spec's transport before the others (see
    /// `etcd_tls`).
    vanguard: Mutex<Option<String>>,
    /// A Patroni member may owe a restart for its etcd section (written now, or left owed).
    etcd_section_changed: std::sync::atomic::AtomicBool,
}

/// How long the engine waits for etcd quorum, a Patroni member and a healthy observation, and
/// how often it looks again.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For etcd quorum (polled every `every`).
    pub etcd: Duration,
    /// For a Patroni member to lead or stream (polled every `every`).
    pub patroni: Duration,
    /// For a healthy observation at the end (polled every `2 * every`).
    pub observe: Duration,
    /// Between two looks.
    pub every: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            etcd: Duration::from_secs(120),
            patroni: Duration::from_secs(300),
            observe: Duration::from_secs(90),
            every: Duration::from_secs(1),
        }
    }
}

/// The hosts the REST password and pgmetal's client certificate may go to: those connected
/// now (their keys verified), and `verified` (verified by an earlier connection).
pub fn trusted(conns: &BTreeMap<String, Connection>, verified: Vec<String>) -> Vec<String> {
    let connected = conns.iter().filter(|(_, c)| c.is_ok()).map(|(h, _)| h);
    connected.cloned().chain(verified).collect()
}

type StepResult<T> = Result<(T, bool, Vec<String>), Failure>;

/// Runs `attempt` until it returns `Ok`, every `every`; once `limit` has passed, returns its
/// next `Err` instead of waiting again. How the engine and the switchover wait for hosts.
pub(crate) async fn poll<T, E, F: Future<Output = Result<T, E>>>(
    limit: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E> {
    let deadline = Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(last) if Instant::now() > deadline => return Err(last),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

impl<'a> Engine<'a> {
    /// An engine for `owner`'s cluster `spec` using one connection per host (see
    /// [`Connection`]); it converges only hosts that `owner` claims or can claim. The Patroni
    /// REST password goes only to the hosts connected: a connection exists only to a host whose
    /// SSH key was verified (connect fails closed). `ca` is the cluster's CA: it signs the
    /// certificates (`spec.tls`), and pgmetal reaches Patroni's REST API with it.
    pub fn new(
        (owner, spec): (claim::Owner, &'a PostgresClusterSpec),
        (secrets, ca): (&'a ClusterSecrets, Option<crate::tls::CertKey>),
        conns: BTreeMap<String, Connection>,
        progress: &'a dyn Progress,
    ) -> Self {
        let trusted = trusted(&conns, Vec::new());
        let api = PatroniApi::for_cluster(spec, secrets, ca.as_ref());
        let clients: (Arc<dyn Patroni>, Arc<dyn Etcd>) = (
            Arc::new(api.trusting(trusted)),
            Arc::new(etcd_api::EtcdClient::for_cluster(spec, ca.as_ref())),
        );
        Self::with_clients((owner, spec), secrets, conns, progress, clients).with_ca(ca)
    }

    /// An engine that talks to Patroni and etcd through `clients` (fakes in tests).
    pub fn with_clients(
        (owner, spec): (claim::Owner, &'a PostgresClusterSpec),
        secrets: &'a ClusterSecrets,
        conns: BTreeMap<String, Connection>,
        progress: &'a dyn Progress,
        (api, etcd): (Arc<dyn Patroni>, Arc<dyn Etcd>),
    ) -> Self {
        let mut counters = BTreeMap::new();
        let conns = conns
            .into_iter()
            .map(|(h, c)| {
                let c = c.map(|ex| {
                    let counted = Arc::new(Counted::new(ex));
                    counters.insert(h.clone(), counted.clone());
                    counted as Arc<dyn Executor>
                });
                (h, c)
            })
            .collect();
        Engine {
            owner,
            spec,
            secrets,
            conns,
            counters,
            progress,
            facts: Mutex::default(),
            rec: Recorder::default(),
            api,
            etcd,
            waits: Waits::default(),
            live: Mutex::default(),
            asked: requests::Asked::default(),
            ca: None,
            pins: Default::default(),
            snapshots: Mutex::default(),
            reissued: Mutex::default(),
            clients_moved: Mutex::default(),
            etcd_section_changed: Default::default(),
            vanguard: Mutex::default(),
        }
    }

    /// The same engine, issuing certificates from the cluster's CA `ca` (`spec.tls`); for an
    /// engine with given clients (tests), since [`Engine::new`] takes the CA itself.
    pub fn with_ca(mut self, ca: Option<crate::tls::CertKey>) -> Self {
        self.ca = ca;
        self
    }

    /// The same engine, trusting the former CAs whose fingerprints are `pins` while the hosts
    /// still hold them (see [`tls`]).
    pub fn with_pins(mut self, pins: impl IntoIterator<Item = String>) -> Self {
        self.pins = pins.into_iter().collect();
        self
    }

    /// The same engine, carrying out the member operations `asked` (see [`requests`]).
    pub fn with_requests(mut self, asked: requests::Asked) -> Self {
        self.asked = asked;
        self
    }

    /// The same engine with other waiting limits (tests use short ones).
    pub fn with_waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }

    /// Runs every phase and returns the report with the observed status. On a running cluster
    /// the planner's topology steps run one at a time between the phases that need them.
    pub async fn converge(self) -> Report {
        let started = Instant::now();
        let named = render::all_hosts(self.spec);
        for (host, conn) in self.conns.iter().filter(|(h, _)| named.contains(h)) {
            if let Err(e) = conn {
                self.rec.host_error(host, e.clone());
            }
        }
        if self.spec.paused {
            // Maintenance: no converge; only make sure Patroni is paused, then report.
            let res = self.timed("pause patroni", self.dynamic_config()).await;
            return self.finish(started, res.err()).await;
        }
        let observed = self
            .timed("observe topology", self.observe_topology())
            .await;
        let steps = match plan::plan(self.spec, &observed) {
            Ok(steps) => steps,
            Err(refused) => {
                let failure = Failure::new(HostErrorKind::Refused, refused.to_string());
                return self.finish(started, Some(failure)).await;
            }
        };
        self.rec.plan(&steps);
        self.progress.plan(&steps);
        self.record_topology().await;
        let res = self.converge_planned(&steps).await;
        self.record_topology().await;
        self.finish(started, res.err()).await
    }

    /// The steps a converge would take now, read-only: what runs (etcd, Patroni, the claims of
    /// former hosts) and the plan, or why the planner refuses.
    pub async fn plan(&self) -> Result<Vec<plan::Step>, plan::Refusal> {
        let observed = self.observe_topology().await;
        plan::plan(self.spec, &observed)
    }

    /// The phases, with the planner's `steps` run where they belong: etcd membership after the
    /// hosts are prepared, a switchover before the Patroni phase, members leaving after it,
    /// former hosts decommissioned last.
    async fn converge_planned(&self, steps: &[plan::Step]) -> Result<(), Failure> {
        use plan::Step as S;
        let bootstrap = self.live_etcd().is_none();
        let all = render::all_hosts(self.spec);
        self.phase("prepare hosts", &all, |h| self.prepare(h)).await;
        self.trust_the_hosts_cas();
        let etcd_change = |s: &S| matches!(s, S::AddEtcdMember { .. } | S::RemoveEtcdMember { .. });
        self.run_steps(steps, etcd_change).await?;
        self.etcd_members().await;
        let failed = self.rec.failed();
        if self.spec.etcd.hosts.iter().all(|h| failed.contains(h)) {
            let why =
                "no etcd host could be converged (see the hosts' errors): no quorum to wait for";
            return Err(Failure::new(error::HostErrorKind::Etcd, why));
        }
        self.timed("wait for etcd quorum", self.wait_etcd()).await?;
        if bootstrap {
            self.refresh_etcd().await;
            let etcd_hosts = self.spec.etcd.hosts.clone();
            self.phase("etcd initial cluster", &etcd_hosts, |h| self.seal_etcd(h))
                .await;
        }
        let before_patroni = |s: &S| matches!(s, S::Switchover { .. } | S::AddReplica { .. });
        self.run_steps(steps, before_patroni).await?;
        self.patroni_members().await;
        self.etcd_second_pass().await?;
        self.run_steps(steps, |s| matches!(s, S::RemoveReplica { .. }))
            .await?;
        let lbs = self.spec.haproxy.hosts.clone();
        let spec_checks = |h| self.haproxy(h, render::RestChecks::Spec);
        self.phase("haproxy", &lbs, spec_checks).await;
        self.run_steps(steps, |s| matches!(s, S::Decommission { .. }))
            .await?;
        let leader = self
            .timed("patroni dynamic configuration", self.dynamic_config())
            .await?;
        self.backup_phases(&all, &leader).await;
        self.phase("monitoring", &all, |h| self.monitoring(h)).await;
        if self.spec.monitoring.enabled {
            let leader = vec![leader.clone()];
            self.phase("monitoring role", &leader, |h| self.monitor_role(h))
                .await;
        }
        self.carry_out_requests(&leader).await
    }

    /// Runs the steps that `which` selects, in plan order, numbered in the whole plan.
    async fn run_steps(
        &self,
        steps: &[plan::Step],
        which: impl Fn(&plan::Step) -> bool,
    ) -> Result<(), Failure> {
        for (i, step) in steps.iter().enumerate().filter(|(_, s)| which(s)) {
            self.run_step(i + 1, steps.len(), step).await?;
        }
        Ok(())
    }

    /// The etcd phase: one member at a time in a healthy cluster (quorum is never lost), all
    /// together when bootstrapping or recovering (each member waits for the others).
    pub(super) async fn etcd_members(&self) {
        if self.live_etcd().is_some() && self.clients_moved.lock().is_ok_and(|m| m.is_none()) {
            self.read_clients_moved().await;
        }
        let etcd_hosts = self.spec.etcd.hosts.clone();
        let running = self.etcd.status(self.spec).await;
        if running.desired > 0 && running.healthy == running.desired {
            let one_at_a_time = tokio::sync::Mutex::new(());
            let turn = &one_at_a_time;
            self.phase("etcd (one member at a time)", &etcd_hosts, |h| async move {
                let _turn = turn.lock().await;
                self.etcd(h, true).await
            })
            .await;
        } else {
            self.phase("etcd", &etcd_hosts, |h| self.etcd(h, false))
                .await;
        }
    }

    /// The Patroni phases: with a leader, every member together (after the leader has any
    /// changed password, so that the new configuration authenticates); otherwise the primary
    /// first (it bootstraps), then the replicas.
    async fn patroni_members(&self) {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        if self.rest_scheme_moves(&members).await {
            // Until every member serves the new scheme, HAProxy checks each in both.
            let lbs = self.spec.haproxy.hosts.clone();
            let both = |h| self.haproxy(h, render::RestChecks::Both);
            self.phase("haproxy (REST checks in both schemes)", &lbs, both)
                .await;
        }
        let view = self.api.cluster_any(&members).await;
        let leader = view.ok().and_then(|v| v.leader_host(&members));
        if let Some(leader) = leader {
            let rotated = self
                .timed("passwords", self.rotate_passwords(&leader))
                .await;
            if let Err(e) = rotated {
                // Not one member gets a password its role does not have yet.
                self.rec.host_error(&leader, e);
                return;
            }
            self.phase("patroni members", &members, |h| self.patroni(h, false))
                .await;
            return;
        }
        let primary = vec![self.spec.postgres.primary.clone()];
        let replicas = self.spec.postgres.replicas.clone();
        self.phase("patroni primary", &primary, |h| self.patroni(h, true))
            .await;
        self.phase("patroni replicas", &replicas, |h| self.patroni(h, false))
            .await;
    }

    /// Observes until healthy (or a limit), and reports: `failure` is what stopped the cluster
    /// as a whole (etcd quorum, Patroni's dynamic configuration), if anything did.
    async fn finish(self, started: Instant, failure: Option<Failure>) -> Report {
        let mut problems: Vec<String> = failure.iter().map(Failure::to_string).collect();
        let t = Instant::now();
        self.progress.phase("observe");
        // Until healthy, or 90 s, or a host or the whole converge failed (waiting would not
        // help): the last observation.
        let this = &self;
        let failed = failure.is_some();
        let obs = poll(self.waits.observe, self.waits.every * 2, || async move {
            let obs = observe::observe_with(
                this.spec,
                (&*this.api, &*this.etcd),
                &this.secrets.haproxy_stats,
            )
            .await;
            let done = observe::problems(this.spec, &obs).is_empty()
                || failed
                || !this.rec.failed().is_empty();
            if done { Ok(obs) } else { Err(obs) }
        })
        .await
        .unwrap_or_else(|obs| obs);
        self.rec.phase("observe", t);
        problems.extend(observe::problems(self.spec, &obs));
        for host in self.rec.failed() {
            problems.insert(
                0,
                format!("host {host} did not converge (see hosts.{host}.error)"),
            );
        }
        let mut status = crate::status::from_observation(self.spec, &obs);
        status.backup = self.look_at_backups(&status).await;
        let mut report = self.rec.finish();
        for (host, c) in &self.counters {
            if c.round_trips() > 0 {
                report.hosts.entry(host.clone()).or_default().round_trips = c.round_trips();
            }
        }
        report.status = status;
        report.healthy = problems.is_empty();
        report.problems = problems;
        report.failure = failure;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    async fn timed<T>(&self, name: &str, fut: impl Future<Output = T>) -> T {
        self.progress.phase(name);
        let t = Instant::now();
        let out = fut.await;
        self.rec.phase(name, t);
        out
    }

    /// Runs `work` on every host of a phase concurrently, skipping hosts that already failed.
    async fn phase<'h, F, Fut>(&self, name: &str, hosts: &'h [String], work: F)
    where
        F: Fn(&'h str) -> Fut,
        Fut: Future<Output = Result<(), HostError>>,
    {
        if hosts.is_empty() {
            return;
        }
        let failed = self.rec.failed();
        let jobs = hosts.iter().filter(|h| !failed.contains(h)).map(|h| {
            let fut = work(h.as_str());
            async move {
                let res = fut.await;
                if let Err(e) = &res {
                    self.rec.host_error(h, e.clone());
                }
                let text = res.as_ref().err().map(ToString::to_string);
                self.progress.host_done(h, text.as_deref());
            }
        });
        self.timed(name, futures::future::join_all(jobs)).await;
    }

    fn exec(&self, host: &str) -> Result<Arc<dyn Executor>, HostError> {
        match self.conns.get(host) {
            Some(Ok(e)) => Ok(e.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(HostError::new(
                host,
                None,
                Failure::new(HostErrorKind::Other, "no connection"),
            )),
        }
    }

    fn host_facts(&self, host: &str) -> Result<HostFacts, HostError> {
        self.facts
            .lock()
            .ok()
            .and_then(|f| f.get(host).cloned())
            .ok_or_else(|| {
                let f = Failure::new(HostErrorKind::Other, "not gathered");
                HostError::new(host, Some("facts"), f)
            })
    }

    /// Runs one named step: progress, timing and the record; errors name the step.
    async fn step<T>(
        &self,
        host: &str,
        name: &str,
        fut: impl Future<Output = StepResult<T>>,
    ) -> Result<T, HostError> {
        self.progress.step(host, name);
        let t = Instant::now();
        match fut.await {
            Ok((v, changed, detail)) => {
                if changed {
                    self.drop_snapshot(host);
                }
                self.rec.step(host, name, changed, t, detail);
                Ok(v)
            }
            Err(f) => {
                self.drop_snapshot(host);
                Err(HostError::new(host, Some(name), f))
            }
        }
    }

    async fn ensure_dir(
        &self,
        host: &str,
        ex: &dyn Executor,
        dir: &str,
        owner: &str,
    ) -> Result<bool, HostError> {
        let present = self.dir_present(host, dir);
        self.step(host, &format!("directory {dir}"), async {
            if present {
                return Ok((false, false, vec![]));
            }
            let out = ex
                .run_ok(&Cmd::script(r#"[ -d "$1" ] && exit 0; install -d -m 0700 -o "$2" -g "$2" -- "$1" && echo created"#).args([dir, owner]), "create directory")
                .await?;
            let created = out.stdout_str().contains("created");
            Ok((created, created, vec![]))
        })
        .await
    }

    async fn write(
        &self,
        host: &str,
        ex: &dyn Executor,
        want: &[DesiredFile],
    ) -> Result<Vec<String>, HostError> {
        self.write_for(host, ex, want, None).await
    }

    /// [`Engine::write`] of the configuration of `unit`, whose pending marker is written first
    /// when anything changes (see [`units::pending_marker`]).
    async fn write_for(
        &self,
        host: &str,
        ex: &dyn Executor,
        want: &[DesiredFile],
        unit: Option<&str>,
    ) -> Result<Vec<String>, HostError> {
        self.rec.files(host, want);
        let in_place = self.files_in_place(host, want);
        let marker = unit.map(units::pending_marker);
        self.step(host, "write files", async {
            if in_place {
                return Ok((vec![], false, vec![]));
            }
            let w = files::sync_for(ex, want, marker.as_deref()).await?;
            if w.iter().any(|p| p.starts_with("/etc/systemd/system/")) {
                let reload = Cmd::new("systemctl").arg("daemon-reload");
                ex.run_ok(&reload, "systemctl daemon-reload").await?;
            }
            Ok((w.clone(), !w.is_empty(), w))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_ok_or_the_last_err_after_the_limit() {
        let mut n = 0;
        let r: Result<u32, u32> = poll(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            let k = n;
            async move { if k == 3 { Ok(k) } else { Err(k) } }
        })
        .await;
        assert_eq!(r, Ok(3));

        let started = Instant::now();
        let mut n = 0;
        let r: Result<(), u32> = poll(Duration::from_millis(50), Duration::from_millis(10), || {
            n += 1;
            let k = n;
            async move { Err(k) }
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(matches!(r, Err(k) if k > 1), "{r:?}");
    }
}

#[cfg(test)]
#[path = "converge_tests.rs"]
mod converge_tests;
