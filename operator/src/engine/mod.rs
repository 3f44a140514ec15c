//! The convergence engine: brings hosts to the desired state over SSH, phase by phase, and
//! reports what it changed. Idempotent: a second run with the same spec changes nothing.
//!
//! Phases: prepare (facts, package source, install, take over package defaults; all hosts) →
//! etcd (all members at once) → wait for etcd quorum → Patroni on the preferred primary (it
//! bootstraps) → replicas → HAProxy → Patroni dynamic configuration (parameters, pause,
//! pending restarts) → observe until healthy.

pub mod connect;
pub mod facts;
pub mod files;
pub mod observe;
pub mod packages;
pub mod patroni_api;
pub mod report;
mod units;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Executor};
use crate::model::{ClusterSecrets, DesiredFile};
use crate::render::{self, InitialClusterState, Layout, member_name, roles};
use facts::HostFacts;
use patroni_api::PatroniApi;
use report::Recorder;
pub use report::{Progress, Quiet, Report};

/// A host's connection: an executor, or why there is none (the host is skipped, others go on).
pub type Connection = Result<Arc<dyn Executor>, String>;

/// One converge of one cluster.
pub struct Engine<'a> {
    spec: &'a PostgresClusterSpec,
    secrets: &'a ClusterSecrets,
    conns: BTreeMap<String, Connection>,
    progress: &'a dyn Progress,
    facts: Mutex<BTreeMap<String, HostFacts>>,
    rec: Recorder,
    api: PatroniApi,
}

type StepResult<T> = Result<(T, bool, Vec<String>), String>;

impl<'a> Engine<'a> {
    /// An engine for `spec` using one connection per host (see [`Connection`]).
    pub fn new(
        spec: &'a PostgresClusterSpec,
        secrets: &'a ClusterSecrets,
        conns: BTreeMap<String, Connection>,
        progress: &'a dyn Progress,
    ) -> Self {
        let api = PatroniApi::new(spec.patroni.rest_api_port, secrets.restapi.clone());
        Engine {
            spec,
            secrets,
            conns,
            progress,
            facts: Mutex::default(),
            rec: Recorder::default(),
            api,
        }
    }

    /// Runs every phase and returns the report with the observed status.
    pub async fn converge(self) -> Report {
        let started = Instant::now();
        for (host, conn) in &self.conns {
            if let Err(e) = conn {
                self.rec.host_error(host, format!("connect: {e}"));
            }
        }
        if self.spec.paused {
            // Maintenance: no converge; only make sure Patroni is paused, then report.
            let res = self.timed("pause patroni", self.dynamic_config()).await;
            return self.finish(started, res.err().into_iter().collect()).await;
        }
        let all = render::all_hosts(self.spec);
        self.phase("prepare hosts", &all, |h| self.prepare(h)).await;
        let etcd_hosts = self.spec.etcd.hosts.clone();
        self.phase("etcd", &etcd_hosts, |h| self.etcd(h)).await;
        let quorum = self.timed("wait for etcd quorum", self.wait_etcd()).await;
        if let Err(e) = quorum {
            return self.finish(started, vec![e]).await;
        }
        let primary = vec![self.spec.postgres.primary.clone()];
        let replicas = self.spec.postgres.replicas.clone();
        let members: Vec<String> = primary.iter().chain(&replicas).cloned().collect();
        let bootstrapped = self
            .api
            .cluster_any(&members)
            .await
            .is_ok_and(|v| v.leaders().len() == 1);
        if bootstrapped {
            // A leader exists: the members converge together, no ordering needed.
            self.phase("patroni members", &members, |h| self.patroni(h, false))
                .await;
        } else {
            self.phase("patroni primary", &primary, |h| self.patroni(h, true))
                .await;
            self.phase("patroni replicas", &replicas, |h| self.patroni(h, false))
                .await;
        }
        let lbs = self.spec.haproxy.hosts.clone();
        self.phase("haproxy", &lbs, |h| self.haproxy(h)).await;
        let dcs = self
            .timed("patroni dynamic configuration", self.dynamic_config())
            .await;
        let mut problems = Vec::new();
        if let Err(e) = dcs {
            problems.push(e);
        }
        self.finish(started, problems).await
    }

    async fn finish(self, started: Instant, mut problems: Vec<String>) -> Report {
        let t = Instant::now();
        self.progress.phase("observe");
        let deadline = Instant::now() + Duration::from_secs(90);
        let obs = loop {
            let obs = observe::observe(self.spec, &self.api).await;
            if observe::problems(self.spec, &obs).is_empty()
                || Instant::now() > deadline
                || !self.rec.failed().is_empty()
            {
                break obs;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        self.rec.phase("observe", t);
        problems.extend(observe::problems(self.spec, &obs));
        for host in self.rec.failed() {
            problems.insert(
                0,
                format!("host {host} did not converge (see hosts.{host}.error)"),
            );
        }
        let mut report = self.rec.finish();
        report.status = crate::status::from_observation(self.spec, &obs);
        report.healthy = problems.is_empty();
        report.problems = problems;
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
        Fut: Future<Output = Result<(), String>>,
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
                self.progress
                    .host_done(h, res.as_ref().err().map(String::as_str));
            }
        });
        self.timed(name, futures::future::join_all(jobs)).await;
    }

    fn exec(&self, host: &str) -> Result<Arc<dyn Executor>, String> {
        match self.conns.get(host) {
            Some(Ok(e)) => Ok(e.clone()),
            Some(Err(e)) => Err(format!("connect: {e}")),
            None => Err("no connection".into()),
        }
    }

    fn host_facts(&self, host: &str) -> Result<HostFacts, String> {
        self.facts
            .lock()
            .ok()
            .and_then(|f| f.get(host).cloned())
            .ok_or_else(|| "facts: not gathered".to_string())
    }

    /// Runs one named step: progress, timing and the record; errors name the step.
    async fn step<T>(
        &self,
        host: &str,
        name: &str,
        fut: impl Future<Output = StepResult<T>>,
    ) -> Result<T, String> {
        self.progress.step(host, name);
        let t = Instant::now();
        match fut.await {
            Ok((v, changed, detail)) => {
                self.rec.step(host, name, changed, t, detail);
                Ok(v)
            }
            Err(e) => Err(format!("{name}: {e}")),
        }
    }

    async fn prepare(&self, host: &str) -> Result<(), String> {
        let ex = self.exec(host)?;
        let facts = self
            .step(host, "facts", async {
                facts::gather(&*ex)
                    .await
                    .map(|f| (f, false, vec![]))
                    .map_err(|e| e.to_string())
            })
            .await?;
        let os = facts.os;
        let r = roles(self.spec, host);
        let repo: Vec<DesiredFile> = packages::repository_file(self.spec, os)
            .into_iter()
            .collect();
        let repo_changed = self
            .step(host, "package source", async {
                let w = files::sync(&*ex, &repo).await.map_err(|e| e.to_string())?;
                Ok((!w.is_empty(), !w.is_empty(), w))
            })
            .await?;
        let missing: Vec<String> = packages::wanted(self.spec, os, r)
            .into_iter()
            .filter(|p| !facts.installed.contains(p))
            .collect();
        self.step(host, "install packages", async {
            if missing.is_empty() {
                return Ok(((), false, vec![]));
            }
            if repo_changed || os == crate::model::OsFamily::Debian {
                ex.run_ok(&packages::refresh(os), "refresh package index")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            ex.run_ok(&packages::install(os, &missing), "install packages")
                .await
                .map_err(|e| e.to_string())?;
            Ok(((), true, missing.clone()))
        })
        .await?;
        if let Some(cmd) = packages::takeover(os, self.spec, r) {
            self.step(host, "take over package defaults", async {
                let out = ex
                    .run_ok(&cmd, "take over package defaults")
                    .await
                    .map_err(|e| e.to_string())?;
                let did: Vec<String> = out.stdout_str().lines().map(String::from).collect();
                Ok(((), !did.is_empty(), did))
            })
            .await?;
        }
        if let Ok(mut f) = self.facts.lock() {
            f.insert(host.to_string(), facts);
        }
        Ok(())
    }

    async fn etcd(&self, host: &str) -> Result<(), String> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let mut want = vec![
            render::etcd_config(self.spec, host, os, InitialClusterState::New)
                .map_err(|e| e.to_string())?,
        ];
        want.extend(render::systemd_units(
            os,
            render::Roles {
                etcd: true,
                ..Default::default()
            },
        ));
        self.ensure_dir(host, &*ex, &self.spec.etcd.data_dir, &layout.etcd_user)
            .await?;
        let written = self.write(host, &*ex, &want).await?;
        // All members must start together (each waits for quorum): never block on the start.
        units::ensure(
            self,
            host,
            &*ex,
            &layout.etcd_unit,
            !written.is_empty(),
            units::OnChange::Restart,
            true,
        )
        .await
    }

    async fn wait_etcd(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let st = observe::etcd(self.spec).await;
            if st.healthy == st.desired {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd has no healthy quorum after 120 s ({}/{} healthy): check `journalctl -u etcd` on the etcd hosts",
                    st.healthy, st.desired
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn patroni(&self, host: &str, bootstrap: bool) -> Result<(), String> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let r = roles(self.spec, host);
        let mut want = vec![
            render::patroni_config(self.spec, self.secrets, host, os).map_err(|e| e.to_string())?,
        ];
        want.extend(render::systemd_units(
            os,
            render::Roles { etcd: false, ..r },
        ));
        self.ensure_dir(host, &*ex, &layout.data_dir, &layout.postgres_user)
            .await?;
        let written = self.write(host, &*ex, &want).await?;
        units::ensure(
            self,
            host,
            &*ex,
            &layout.patroni_unit,
            !written.is_empty(),
            units::OnChange::Reload,
            false,
        )
        .await?;
        let name = member_name(host);
        let what = if bootstrap { "leader" } else { "streaming" };
        self.step(host, &format!("wait for patroni {what}"), async {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                if let Ok(view) = self.api.cluster(host).await {
                    let me = view.members.iter().find(|m| m.name == name);
                    let ok = match me {
                        Some(m) if bootstrap => m.role == "leader" && m.state == "running",
                        Some(m) => m.role == "leader" || m.state == "streaming" || (m.state == "running" && m.lag.as_ref().is_some_and(|l| l.is_number())),
                        None => false,
                    };
                    if ok {
                        return Ok(((), false, vec![]));
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!("member {name} did not become {what} within 300 s: check `journalctl -u patroni` on {host}"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await
    }

    async fn haproxy(&self, host: &str) -> Result<(), String> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let cfg = render::haproxy_config(self.spec).map_err(|e| e.to_string())?;
        let written = self.write(host, &*ex, std::slice::from_ref(&cfg)).await?;
        if !written.is_empty() {
            ex.run_ok(
                &Cmd::new("haproxy").args(["-c", "-q", "-f", &layout.haproxy_config]),
                "check haproxy.cfg",
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        units::ensure(
            self,
            host,
            &*ex,
            &layout.haproxy_unit,
            !written.is_empty(),
            units::OnChange::Reload,
            false,
        )
        .await
    }

    /// Parameters, timing and pause through `PATCH /config`, then restarts only where pending.
    async fn dynamic_config(&self) -> Result<(), String> {
        let members: Vec<String> = std::iter::once(self.spec.postgres.primary.clone())
            .chain(self.spec.postgres.replicas.clone())
            .collect();
        let view = self
            .api
            .cluster_any(&members)
            .await
            .map_err(|e| e.to_string())?;
        let Some(leader) = view
            .leaders()
            .first()
            .and_then(|l| members.iter().find(|h| member_name(h) == l.name))
            .cloned()
        else {
            return Err("Patroni has no leader: dynamic configuration not applied".into());
        };
        let current = self.api.config(&leader).await.map_err(|e| e.to_string())?;
        let mut desired = render::dcs_config(self.spec);
        // `pause` is only written when it must change, so an unpaused cluster has no diff.
        if self.spec.paused || current.get("pause") == Some(&serde_json::Value::Bool(true)) {
            desired["pause"] = serde_json::Value::Bool(self.spec.paused);
        }
        let Some(patch) = patroni_api::config_patch(&current, &desired) else {
            return Ok(());
        };
        let t = Instant::now();
        self.progress.step(&leader, "patroni dynamic configuration");
        self.api
            .patch_config(&leader, &patch)
            .await
            .map_err(|e| e.to_string())?;
        self.rec.step(
            &leader,
            "patroni dynamic configuration",
            true,
            t,
            vec![patch.to_string()],
        );
        // Members see the change on their next loop; then some need a restart.
        tokio::time::sleep(Duration::from_secs(
            u64::from(self.spec.patroni.loop_wait) + 3,
        ))
        .await;
        let view = self.api.cluster(&leader).await.map_err(|e| e.to_string())?;
        let mut pending: Vec<(&String, bool)> = members
            .iter()
            .filter_map(|h| {
                view.members
                    .iter()
                    .find(|m| m.name == member_name(h) && m.pending_restart)
                    .map(|m| (h, m.role == "leader"))
            })
            .collect();
        pending.sort_by_key(|(_, is_leader)| *is_leader); // replicas first, the leader last
        for (host, _) in pending {
            let t = Instant::now();
            self.progress.step(host, "restart for pending parameters");
            self.api
                .restart_pending(host)
                .await
                .map_err(|e| e.to_string())?;
            self.rec
                .step(host, "restart for pending parameters", true, t, vec![]);
        }
        Ok(())
    }

    async fn ensure_dir(
        &self,
        host: &str,
        ex: &dyn Executor,
        dir: &str,
        owner: &str,
    ) -> Result<bool, String> {
        self.step(host, &format!("directory {dir}"), async {
            let out = ex
                .run_ok(&Cmd::script(r#"[ -d "$1" ] && exit 0; install -d -m 0700 -o "$2" -g "$2" "$1" && echo created"#).args([dir, owner]), "create directory")
                .await
                .map_err(|e| e.to_string())?;
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
    ) -> Result<Vec<String>, String> {
        self.rec.files(host, want);
        self.step(host, "write files", async {
            let w = files::sync(ex, want).await.map_err(|e| e.to_string())?;
            if w.iter().any(|p| p.starts_with("/etc/systemd/system/")) {
                let reload = Cmd::new("systemctl").arg("daemon-reload");
                ex.run_ok(&reload, "systemctl daemon-reload")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok((w.clone(), !w.is_empty(), w))
        })
        .await
    }
}
