//! Topology changes of a running cluster: observe what runs, plan ([`crate::plan`]), then run
//! the planner's steps one at a time, each followed by its check. etcd membership changes go
//! through the etcd API; a leaving leader is switched over first; a leaving member's data
//! directory is kept; a host that left the spec is decommissioned when it answers.

use std::time::Instant;

use super::error::{Failure, HostErrorKind};
use super::etcd_api::{Etcd, LiveMember};
use super::patroni_api::Member as _;
use super::{Engine, claim, facts};
use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Executor};
use crate::plan::{self, Step};
use crate::render::{self, InitialCluster, InitialClusterState, Layout, member_name};

/// Stops and disables the units given after the etcd data directory (`$1`) and `$2` (`yes`:
/// delete the removed member's data in `$1/member`); prints one line per change.
const RETIRE: &str = r#"data="$1"; wipe="$2"; shift 2
for u in "$@"; do
  systemctl is-enabled --quiet "$u" 2>/dev/null && systemctl disable --quiet "$u" && echo "disabled $u"
  systemctl is-active --quiet "$u" && systemctl stop "$u" && echo "stopped $u"
done
if [ "$wipe" = yes ] && [ -d "$data/member" ]; then rm -rf -- "$data/member" && echo "deleted $data/member"; fi
exit 0"#;

/// The etcd key where pgmetal records the hosts a cluster runs on, and those that left the
/// spec until they are decommissioned: how a later converge, by the CLI or the operator,
/// knows which former hosts to connect to.
pub fn hosts_key(spec: &PostgresClusterSpec) -> String {
    format!("/pgmetal/{}/hosts", spec.patroni.scope)
}

/// The hosts recorded under [`hosts_key`] (none when etcd does not answer or none is recorded).
pub async fn recorded_hosts(etcd: &dyn Etcd, spec: &PostgresClusterSpec) -> Vec<String> {
    let endpoints = endpoints(spec, std::iter::empty());
    let value = etcd.get_key(spec, &endpoints, &hosts_key(spec)).await;
    let text = value.ok().flatten().unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Where to ask etcd: the spec's etcd hosts first, then the spec's other hosts and `others`.
fn endpoints(spec: &PostgresClusterSpec, others: impl Iterator<Item = String>) -> Vec<String> {
    let mut hosts = spec.etcd.hosts.clone();
    for h in render::all_hosts(spec).into_iter().chain(others) {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

impl Engine<'_> {
    /// Records the hosts this converge connected to or the spec names, less those released,
    /// under [`hosts_key`]. Best effort: a converge whose etcd does not answer records nothing.
    pub(super) async fn record_topology(&self) {
        let released = self.rec.released_hosts();
        let mut hosts = render::all_hosts(self.spec);
        for h in self.conns.keys() {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        hosts.retain(|h| !released.contains(h));
        let Ok(value) = serde_json::to_string(&hosts) else {
            return;
        };
        let key = hosts_key(self.spec);
        let _ = self
            .etcd
            .put_key(self.spec, &self.etcd_endpoints(), &key, value)
            .await;
    }

    /// Hosts in the connections that the spec does not name: they left it.
    pub(super) fn former_hosts(&self) -> Vec<String> {
        let named = render::all_hosts(self.spec);
        let conns = self.conns.keys();
        conns.filter(|h| !named.contains(h)).cloned().collect()
    }

    /// Where to ask etcd: the spec's etcd hosts first, then every other host known.
    pub(super) fn etcd_endpoints(&self) -> Vec<String> {
        let mut hosts = self.spec.etcd.hosts.clone();
        let others = render::all_hosts(self.spec)
            .into_iter()
            .chain(self.former_hosts());
        for h in others {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        hosts
    }

    /// etcd's member list as last seen (None: no etcd runs yet).
    pub(super) fn live_etcd(&self) -> Option<Vec<LiveMember>> {
        self.live.lock().ok().and_then(|l| l.clone())
    }

    /// Reads etcd's member list again.
    pub(super) async fn refresh_etcd(&self) -> Option<Vec<LiveMember>> {
        let endpoints = self.etcd_endpoints();
        let live = self.etcd.members(self.spec, &endpoints).await;
        if let Ok(mut l) = self.live.lock() {
            l.clone_from(&live);
        }
        live
    }

    /// What a member starts with the first time: the live members when etcd runs (it joins),
    /// the spec's hosts when it does not (a bootstrap).
    pub(super) fn initial_cluster(&self) -> InitialCluster {
        let Some(live) = self.live_etcd() else {
            return InitialCluster::bootstrap(self.spec);
        };
        let mut members: Vec<(String, String)> = live
            .iter()
            .filter_map(|m| {
                let name = match m.name.as_str() {
                    "" => member_name(&m.host()),
                    n => n.to_string(),
                };
                Some((name, m.peer_urls.first()?.clone()))
            })
            .collect();
        members.sort();
        InitialCluster {
            state: InitialClusterState::Existing,
            members,
        }
    }

    /// Observes what the planner needs: etcd's members, Patroni's, and the former hosts that
    /// still carry this cluster's claim (or do not answer, and may).
    pub(super) async fn observe_topology(&self) -> plan::Observed {
        self.read_schemes().await;
        let live = self.refresh_etcd().await.unwrap_or_default();
        let former = self.former_hosts();
        let mut ask: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        ask.extend(former.iter().cloned());
        let known: Vec<String> = render::all_hosts(self.spec)
            .into_iter()
            .chain(former.clone())
            .collect();
        let host_of = |name: &str, advertised: Option<&String>| {
            known
                .iter()
                .find(|h| member_name(h) == name)
                .or(advertised)
                .cloned()
                .unwrap_or_else(|| name.to_string())
        };
        let patroni = match self.api.cluster_any(&ask).await {
            Ok(view) => view
                .members
                .iter()
                .map(|m| plan::PatroniMember {
                    host: host_of(&m.name, m.host.as_ref()),
                    leader: m.is_leader(),
                    healthy_replica: m.is_healthy_replica(),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut claimed = Vec::new();
        for host in former {
            match self.claimed_by_us(&host).await {
                Some(false) => self.rec.released(&host),
                _ => claimed.push(host),
            }
        }
        plan::Observed {
            etcd: live.iter().map(LiveMember::planned).collect(),
            patroni,
            former: claimed,
        }
    }

    /// Whether `host`'s claim names this cluster; None when it cannot be read.
    async fn claimed_by_us(&self, host: &str) -> Option<bool> {
        let ex = self.exec(host).ok()?;
        let claim = claim::read(&*ex).await.ok()?;
        Some(claim.is_some_and(|c| self.owner.owns(&c)))
    }

    /// Runs step `i` of `n`: announced, timed, recorded; a failure stops the converge.
    pub(super) async fn run_step(&self, i: usize, n: usize, step: &Step) -> Result<(), Failure> {
        let name = format!("step {i}/{n}: {}", step.describe());
        self.timed(&name, async {
            match step {
                Step::RemoveEtcdMember { host, id, .. } => self.remove_etcd_member(host, id).await,
                Step::AddEtcdMember { host } => self.add_etcd_member(host).await,
                Step::Switchover { from, to } => self.switch_over(from, to).await,
                Step::RemoveReplica { host } => self.remove_replica(host).await,
                Step::Decommission { host } => self.decommission(host).await,
                // The Patroni phase joins it (basebackup, stream), after this check.
                Step::AddReplica { host } => self.check_replica_data(host).await,
            }
        })
        .await
    }

    fn record(&self, host: &str, step: &str, t: Instant, detail: Vec<String>) {
        self.rec.step(host, step, true, t, detail);
    }

    /// Adds `host` to etcd: its data directory must hold no member (of another cluster, or
    /// one removed from this one), then member add, its first start, and a wait until healthy.
    async fn add_etcd_member(&self, host: &str) -> Result<(), Failure> {
        let ex = self.exec(host).map_err(|e| e.failure())?;
        let dir = &self.spec.etcd.data_dir;
        let probe = Cmd::script(r#"[ -d "$1/member" ] && echo taken; exit 0"#).arg(dir);
        let out = ex.run_ok(&probe, "look at the etcd data directory").await?;
        if out.stdout_str().contains("taken") {
            let why = format!(
                "the etcd data directory {dir} on {host} already holds a member (of another etcd cluster, or one \
                 removed from this one): pgmetal never joins it. Nothing was changed. If it holds nothing you \
                 need, delete {dir}/member on {host} and apply again"
            );
            return Err(Failure::new(HostErrorKind::Refused, why));
        }
        let t = Instant::now();
        let endpoints = self.etcd_endpoints();
        let list = self.etcd.add_member(self.spec, &endpoints, host).await?;
        if let Ok(mut l) = self.live.lock() {
            *l = Some(list);
        }
        self.record(host, "etcd member add", t, vec![]);
        self.etcd(host, false).await.map_err(|e| e.failure())?;
        self.wait_member(host, true).await
    }

    /// A joining replica's data directory is empty (a basebackup fills it) or holds this
    /// cluster's system; a directory of another system is refused, never overwritten.
    async fn check_replica_data(&self, host: &str) -> Result<(), Failure> {
        let ex = self.exec(host).map_err(|e| e.failure())?;
        let os = self.host_facts(host).map_err(|e| e.failure())?.os;
        let layout = Layout::new(self.spec, os);
        let Some(found) = super::identity::system_identifier(&*ex, &layout).await? else {
            return Ok(());
        };
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let nodes = futures::future::join_all(members.iter().map(|h| self.api.node(h))).await;
        let want = nodes.into_iter().find_map(|n| {
            n.ok()
                .filter(|n| n.is_primary())?
                .database_system_identifier
        });
        match want {
            Some(want) if want == found => Ok(()),
            want => {
                let want = want.unwrap_or_else(|| "unknown (no primary answers)".into());
                let dir = &layout.data_dir;
                let why = format!(
                    "the PostgreSQL data directory {dir} on {host} holds system {found}, not this cluster's \
                     {want}: pgmetal never joins or overwrites it. Nothing was changed. Move {dir} away on \
                     {host} if it holds nothing you need, then apply again"
                );
                Err(Failure::new(HostErrorKind::Refused, why))
            }
        }
    }

    /// Waits until `host`'s member is healthy (`present`) or gone from the member list.
    async fn wait_member(&self, host: &str, present: bool) -> Result<(), Failure> {
        let (limit, every) = (self.waits.etcd, self.waits.every);
        super::poll(limit, every, || async move {
            let live = self.refresh_etcd().await.unwrap_or_default();
            let m = live.iter().find(|m| m.host() == host);
            let quorum = live.iter().filter(|m| m.healthy).count() >= plan::quorum(live.len());
            let done = match present {
                true => m.is_some_and(|m| m.healthy),
                false => m.is_none() && !live.is_empty(),
            };
            if done && quorum { Ok(()) } else { Err(()) }
        })
        .await
        .map_err(|()| {
            let what = if present { "become healthy" } else { "leave" };
            let why = format!(
                "etcd member {host} did not {what} within {} s: check `journalctl -u etcd` on {host}",
                limit.as_secs()
            );
            Failure::new(HostErrorKind::Etcd, why)
        })
    }

    /// Removes member `id` (hex) through the API; on a host the spec still names, stops etcd and
    /// deletes the removed member's data (a former host's is done by its decommission).
    async fn remove_etcd_member(&self, host: &str, id: &str) -> Result<(), Failure> {
        let id = u64::from_str_radix(id, 16)
            .map_err(|e| Failure::new(HostErrorKind::Other, format!("member ID {id}: {e}")))?;
        let t = Instant::now();
        let mut endpoints = self.etcd_endpoints();
        endpoints.retain(|h| h != host);
        self.etcd.remove_member(self.spec, &endpoints, id).await?;
        self.record(host, "etcd member remove", t, vec![format!("{id:x}")]);
        self.wait_member(host, false).await?;
        if render::all_hosts(self.spec).iter().any(|h| h == host)
            && let Ok(ex) = self.exec(host)
        {
            self.retire(host, &*ex, &["etcd"]).await?;
        }
        Ok(())
    }

    /// Stops and disables `units` (by role) on a claimed host, deleting a removed etcd
    /// member's data when etcd is among them and the host is no member. Never stops the
    /// primary: a host whose own Patroni says it runs the primary is refused (the switchover
    /// step comes first, when Patroni's cluster view could be read).
    async fn retire(&self, host: &str, ex: &dyn Executor, roles: &[&str]) -> Result<(), Failure> {
        if roles.contains(&"patroni") && self.api.node(host).await.is_ok_and(|n| n.is_primary()) {
            let why = format!(
                "{host} still runs the primary, so pgmetal does not stop it: Patroni's cluster view \
                 could not be read to plan a switchover first. Nothing was stopped; apply again"
            );
            return Err(Failure::new(HostErrorKind::Refused, why));
        }
        let os = match self.host_facts(host) {
            Ok(f) => f.os,
            Err(_) => facts::gather(ex).await?.os,
        };
        let layout = Layout::new(self.spec, os);
        let member = self
            .live_etcd()
            .is_some_and(|l| l.iter().any(|m| m.host() == host));
        let wipe = roles.contains(&"etcd") && !member;
        let units = roles.iter().map(|r| match *r {
            "etcd" => layout.etcd_unit.clone(),
            "patroni" => layout.patroni_unit.clone(),
            "haproxy" => layout.haproxy_unit.clone(),
            exporter => exporter.to_string(),
        });
        let mut args = vec![
            self.spec.etcd.data_dir.clone(),
            if wipe { "yes" } else { "no" }.to_string(),
        ];
        args.extend(units);
        let t = Instant::now();
        let out = ex
            .run_ok(&Cmd::script(RETIRE).args(args), "stop services")
            .await?;
        let did: Vec<String> = out.stdout_str().lines().map(String::from).collect();
        self.rec.step(
            host,
            &format!("stop {}", roles.join(", ")),
            !did.is_empty(),
            t,
            did,
        );
        Ok(())
    }

    /// Switches over from the leaving leader to `to`: done when `to` leads and the replicas that
    /// streamed stream on its timeline (the leaving leader is retired next, so it is not waited
    /// for).
    async fn switch_over(&self, from: &str, to: &str) -> Result<(), Failure> {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let leaving = member_name(from);
        let view = self.api.cluster_any(&members).await?;
        let mut followers = view.followers(&leaving);
        followers.retain(|f| *f != leaving);
        self.hand_over((from, to), followers).await
    }

    /// Waits until `done` holds for the cluster view read through `host`.
    async fn wait_patroni(
        &self,
        host: &str,
        done: impl Fn(&super::patroni_api::ClusterView) -> bool,
    ) -> Result<(), Failure> {
        let (limit, every) = (self.waits.patroni, self.waits.every);
        let done = &done;
        super::poll(limit, every, || async move {
            let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
            let view = self.api.cluster_any(&members).await.map_err(|_| ())?;
            if done(&view) { Ok(()) } else { Err(()) }
        })
        .await
        .map_err(|()| {
            let why = format!(
                "Patroni did not settle within {} s (asked through {host})",
                limit.as_secs()
            );
            Failure::new(HostErrorKind::Patroni, why)
        })
    }

    /// A member leaves: Patroni stopped and disabled on its host (when it answers; its data
    /// directory is kept), its member key deleted, and it is gone from `/cluster`.
    async fn remove_replica(&self, host: &str) -> Result<(), Failure> {
        if let Ok(ex) = self.exec(host)
            && self.claimed_by_us(host).await != Some(false)
        {
            let postgres_exporter = crate::render::EXPORTER_UNITS[1];
            self.retire(host, &*ex, &["patroni", postgres_exporter])
                .await?;
        }
        let name = member_name(host);
        let pa = &self.spec.patroni;
        let base = format!(
            "/{}/{}/members/{name}",
            pa.namespace.trim_matches('/'),
            pa.scope
        );
        let t = Instant::now();
        let endpoints = self.etcd_endpoints();
        self.etcd
            .delete_key(self.spec, &endpoints, base.clone())
            .await?;
        self.record(host, "delete patroni member key", t, vec![base]);
        self.wait_patroni(host, |v| !v.members.iter().any(|m| m.name == name))
            .await
            .map_err(|_| {
                let why = format!(
                    "member {name} still registers in Patroni after its key was deleted: Patroni runs on {host}, \
                     which pgmetal could not stop (see hosts.{host}.error); stop it there"
                );
                Failure::new(HostErrorKind::Patroni, why)
            })
    }

    /// A host that left the spec: its services stopped and disabled, a removed etcd member's
    /// data deleted, its claim released. One that does not answer is noted, not failed.
    async fn decommission(&self, host: &str) -> Result<(), Failure> {
        let Ok(ex) = self.exec(host) else {
            self.rec.note(format!(
                "{host} left the spec and does not answer: pgmetal stops its services when it does \
                 (it is no etcd or Patroni member any more)"
            ));
            return Ok(());
        };
        if self.claimed_by_us(host).await != Some(true) {
            self.rec.released(host);
            return Ok(());
        }
        let [node_exporter, postgres_exporter] = crate::render::EXPORTER_UNITS;
        let all = [
            "patroni",
            "etcd",
            "haproxy",
            node_exporter,
            postgres_exporter,
        ];
        self.retire(host, &*ex, &all).await?;
        let t = Instant::now();
        claim::release(&*ex).await?;
        self.record(host, "release claim", t, vec![claim::PATH.into()]);
        self.rec.released(host);
        Ok(())
    }
}
