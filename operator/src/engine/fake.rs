//! Test fakes for the engine's clients: `FakePatroni` (a scripted cluster view, recorded calls)
//! and `FakeEtcd` (a scripted health), to drive the engine and the switchover without hosts,
//! and the simulated clusters of the many-clusters benchmark (feature `sim`).

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use serde_json::Value;

use super::error::Failure;
use super::etcd_api::{Etcd, LiveMember};
use super::patroni_api::{ApiError, ClusterMember, ClusterView, MemberAction, NodeStatus, Patroni};
use crate::api::{EtcdMemberStatus, EtcdStatus, PostgresClusterSpec};
use crate::render::member_name;

/// A member for a scripted view: `role` and `state` as Patroni writes them, lag 0.
pub fn member(host: &str, role: &str, state: &str) -> ClusterMember {
    ClusterMember {
        name: member_name(host),
        role: role.into(),
        state: state.into(),
        host: Some(host.into()),
        timeline: Some(1),
        lag: Some(Value::from(0)),
        pending_restart: false,
    }
}

/// A healthy view: `leader` leads, every other host streams.
pub fn view(leader: &str, replicas: &[&str]) -> ClusterView {
    let mut members = vec![member(leader, "leader", "running")];
    members.extend(replicas.iter().map(|h| member(h, "replica", "streaming")));
    ClusterView {
        members,
        pause: false,
    }
}

#[derive(Default)]
struct PatroniState {
    /// Views answered in turn; the last one stays.
    views: VecDeque<ClusterView>,
    /// Hosts whose REST API does not answer.
    down: BTreeSet<String>,
    /// `GET /config`.
    config: Value,
    /// An error for the next switchover, if any.
    switchover_error: Option<String>,
    /// How many more restart/reinit requests answer that another action is in progress.
    busy: usize,
    /// How many more `PATCH /config` requests answer `409 Conflict`.
    conflicts: usize,
    /// `GET /config` answers `502`: the DCS holds no dynamic configuration yet.
    no_config: bool,
    /// `GET /cluster` fails everywhere (the DCS cannot be read) while `GET /patroni` answers.
    no_view: bool,
    /// Restarts and reinits carried out per host (each changes its postmaster start time).
    starts: std::collections::BTreeMap<String, u32>,
    /// Hosts whose REST API still serves the scheme the spec does not ask for.
    other_scheme: BTreeSet<String>,
    /// Hosts the engine allowed to be read in plain text.
    plain: BTreeSet<String>,
    /// Members (names) that stay on their timeline when a switchover moves the others on.
    behind: BTreeSet<String>,
    /// Every call, e.g. `cluster h1`, `switchover h1 a->b`.
    calls: Vec<String>,
}

/// How many calls a [`FakePatroni`] keeps (the older half goes when full).
const MAX_CALLS: usize = 4096;

/// The etcd cluster ID a healthy [`FakeEtcd`] reports.
pub const FAKE_ETCD_CLUSTER_ID: &str = "cdf818194e3a8c32";

/// The system identifier every fake member reports.
pub const FAKE_SYSTEM_IDENTIFIER: &str = "7301234567890123456";

/// An in-memory [`Patroni`]. Cloning shares the state.
#[derive(Clone, Default)]
pub struct FakePatroni {
    state: Arc<Mutex<PatroniState>>,
}

impl FakePatroni {
    /// A fake answering `view` from every host and `config` for `GET /config`.
    pub fn new(view: ClusterView, config: Value) -> Self {
        let fake = Self::default();
        fake.st().views.push_back(view);
        fake.st().config = config;
        fake
    }

    fn st(&self) -> MutexGuard<'_, PatroniState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After the views queued so far, `view` is answered (from then on, if last).
    pub fn then(&self, view: ClusterView) -> &Self {
        self.st().views.push_back(view);
        self
    }

    /// `host`'s REST API serves the scheme the spec does not ask for, until asked twice (the
    /// converge's first look, then its wait after the new configuration).
    pub fn other_scheme(&self, host: &str) -> &Self {
        self.st().other_scheme.insert(host.into());
        self
    }

    /// The hosts the engine allowed to be read in plain text.
    pub fn allowed_plain(&self) -> BTreeSet<String> {
        self.st().plain.clone()
    }

    /// `host`'s member stays on its timeline after a switchover: it does not follow.
    pub fn stays_behind(&self, host: &str) -> &Self {
        self.st().behind.insert(member_name(host));
        self
    }

    /// `host`'s REST API stops answering.
    pub fn down(&self, host: &str) -> &Self {
        self.st().down.insert(host.into());
        self
    }

    /// `GET /cluster` fails on every host; each member still answers for itself.
    pub fn without_view(&self) -> &Self {
        self.st().no_view = true;
        self
    }

    /// The next `n` restart or reinit requests fail as Patroni does while a demotion runs.
    pub fn busy(&self, n: usize) -> &Self {
        self.st().busy = n;
        self
    }

    /// The next `n` `PATCH /config` requests answer `409 Conflict`, as Patroni does when its
    /// cached view of the DCS is older than the store.
    pub fn conflicts(&self, n: usize) -> &Self {
        self.st().conflicts = n;
        self
    }

    /// `GET /config` answers `502`, as Patroni does while the DCS holds no configuration.
    pub fn without_config(&self) -> &Self {
        self.st().no_config = true;
        self
    }

    /// The next switchover fails with `message`.
    pub fn fail_switchover(&self, message: &str) -> &Self {
        self.st().switchover_error = Some(message.into());
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// Member `name` is gone from every view (its key was deleted from the DCS).
    pub fn forget(&self, name: &str) {
        for v in &mut self.st().views {
            v.members.retain(|m| m.name != name);
        }
    }

    /// The view answered now (without advancing).
    pub fn current(&self) -> ClusterView {
        self.st().views.front().cloned().unwrap_or_default()
    }

    /// Records the call; errors when `host` is down.
    fn call(&self, host: &str, what: String) -> Result<MutexGuard<'_, PatroniState>, ApiError> {
        let mut st = self.st();
        // Bounded: the many-clusters simulation asks for hours.
        if st.calls.len() >= MAX_CALLS {
            st.calls.drain(..MAX_CALLS / 2);
        }
        st.calls.push(what);
        if st.down.contains(host) {
            return Err(ApiError {
                host: host.into(),
                message: "connection refused".into(),
                status: None,
            });
        }
        Ok(st)
    }
}

impl Patroni for FakePatroni {
    fn allow_plain(&self, host: &str) {
        self.st().plain.insert(host.into());
    }
    /// Recorded as `scheme h`; a host in the other scheme moves over once asked twice.
    fn serves_wanted_scheme<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            let mut st = self.call(host, format!("scheme {host}"))?;
            let asked = st
                .calls
                .iter()
                .filter(|c| **c == format!("scheme {host}"))
                .count();
            if asked >= 2 {
                st.other_scheme.remove(host);
            }
            Ok(!st.other_scheme.contains(host))
        })
    }
    fn cluster<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<ClusterView, ApiError>> {
        Box::pin(async move {
            let mut st = self.call(host, format!("cluster {host}"))?;
            if st.no_view {
                return Err(ApiError {
                    host: host.into(),
                    message: "503 Service Unavailable: DCS is not accessible".into(),
                    status: Some(503),
                });
            }
            let v = if st.views.len() > 1 {
                st.views.pop_front()
            } else {
                st.views.front().cloned()
            };
            Ok(v.unwrap_or_default())
        })
    }

    fn node<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<NodeStatus, ApiError>> {
        Box::pin(async move {
            let st = self.call(host, format!("node {host}"))?;
            let view = st.views.front().cloned().unwrap_or_default();
            let leads = view.leaders().iter().any(|m| m.name == member_name(host));
            Ok(NodeStatus {
                role: if leads { "primary" } else { "replica" }.into(),
                timeline: Some(1),
                database_system_identifier: Some(FAKE_SYSTEM_IDENTIFIER.into()),
                postmaster_start_time: Some(format!(
                    "start {}",
                    st.starts.get(host).copied().unwrap_or_default()
                )),
            })
        })
    }

    fn config<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let st = self.call(host, format!("config {host}"))?;
            if st.no_config {
                return Err(ApiError {
                    host: host.into(),
                    message: "502 Bad Gateway".into(),
                    status: Some(502),
                });
            }
            Ok(st.config.clone())
        })
    }

    fn patch_config<'a>(
        &'a self,
        host: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let mut st = self.call(host, format!("patch_config {host} {patch}"))?;
            if st.conflicts > 0 {
                st.conflicts -= 1;
                return Err(ApiError {
                    host: host.into(),
                    message: "409 Conflict".into(),
                    status: Some(409),
                });
            }
            Ok(())
        })
    }

    fn put_config<'a>(
        &'a self,
        host: &'a str,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            drop(self.call(host, format!("put_config {host} {config}"))?);
            Ok(())
        })
    }

    /// Recorded as `restart_pending h`, `restart h` or `reinitialize h`.
    fn act<'a>(
        &'a self,
        host: &'a str,
        action: MemberAction,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let what = match action {
                MemberAction::RestartPending => "restart_pending",
                MemberAction::Restart => "restart",
                MemberAction::Reinitialize => "reinitialize",
            };
            let mut st = self.call(host, format!("{what} {host}"))?;
            if st.busy > 0 {
                st.busy -= 1;
                return Err(ApiError {
                    host: host.into(),
                    message: "503 Service Unavailable: switchover: demote already in progress"
                        .into(),
                    status: Some(503),
                });
            }
            *st.starts.entry(host.to_string()).or_default() += 1;
            Ok(())
        })
    }

    /// Succeeds unless scripted to fail; the view then shows `candidate` leading.
    fn switchover<'a>(
        &'a self,
        host: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            let mut st = self.call(host, format!("switchover {host} {leader}->{candidate}"))?;
            if let Some(message) = st.switchover_error.take() {
                return Err(ApiError {
                    host: host.into(),
                    message,
                    status: None,
                });
            }
            let mut v = st.views.back().cloned().unwrap_or_default();
            let next = v
                .members
                .iter()
                .filter_map(|m| m.timeline)
                .max()
                .map(|t| t + 1);
            for m in &mut v.members {
                if m.name == leader {
                    (m.role, m.state) = ("replica".into(), "streaming".into());
                } else if m.name == candidate {
                    (m.role, m.state) = ("leader".into(), "running".into());
                }
                if !st.behind.contains(&m.name) {
                    m.timeline = next;
                }
            }
            st.views = VecDeque::from([v]);
            Ok("Successfully switched over".into())
        })
    }
}

/// An [`Etcd`] whose members are all healthy or all down; counts the calls. Its member list
/// (the spec's hosts unless [`FakeEtcd::with_members`] set others) follows member add and
/// remove; deleted keys are kept for tests to read.
#[derive(Clone, Default)]
pub struct FakeEtcd {
    healthy: Arc<Mutex<bool>>,
    calls: Arc<Mutex<usize>>,
    /// The member list, when not the spec's hosts (see [`FakeEtcd::with_members`]).
    members: Arc<Mutex<Option<Vec<LiveMember>>>>,
    /// Membership changes and deleted keys, in order (`add h`, `remove h`, `delete key`).
    changes: Arc<Mutex<Vec<String>>>,
    /// Keys set with `put_key`.
    keys: Arc<Mutex<std::collections::BTreeMap<String, String>>>,
    /// The Patroni fake whose members live in this DCS (a deleted member key drops them).
    dcs_of: Arc<Mutex<Option<FakePatroni>>>,
    /// Hosts the engine allowed to be asked in plain text.
    plain: Arc<Mutex<BTreeSet<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Member `i` on `host` with the peer URL `spec` asks for (TLS on port 2380 without one).
fn live_member(
    i: usize,
    host: &str,
    spec: Option<&PostgresClusterSpec>,
    healthy: bool,
) -> LiveMember {
    let (scheme, port) = spec.map_or((crate::tls::Scheme::Https, 2380), |s| {
        let t = crate::render::Transport::wanted(s);
        (t.peer_scheme(), s.etcd.peer_port)
    });
    LiveMember {
        id: 0x100 + i as u64,
        name: member_name(host),
        peer_urls: vec![crate::render::etcd_url(scheme, host, port)],
        healthy,
    }
}

impl FakeEtcd {
    /// The hosts the engine allowed to be asked in plain text.
    pub fn allowed_plain(&self) -> BTreeSet<String> {
        lock(&self.plain).clone()
    }

    /// Every member healthy (`true`) or not answering.
    pub fn new(healthy: bool) -> Self {
        FakeEtcd {
            healthy: Arc::new(Mutex::new(healthy)),
            ..Default::default()
        }
    }

    /// A running cluster whose members are `hosts` (TLS, peer port 2380; `host!` is down),
    /// whatever the spec says.
    pub fn with_members(self, hosts: &[&str]) -> Self {
        let members = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| live_member(i, h.trim_end_matches('!'), None, !h.ends_with('!')));
        *lock(&self.members) = Some(members.collect());
        self
    }

    /// [`Self::with_members`] speaking plain text to their peers (a cluster from before TLS).
    pub fn with_plain_members(self, hosts: &[&str]) -> Self {
        let this = self.with_members(hosts);
        for m in lock(&this.members).iter_mut().flatten() {
            m.peer_urls = m
                .peer_urls
                .iter()
                .map(|u| u.replacen("https", "http", 1))
                .collect();
        }
        this
    }

    /// How many times the status was asked.
    pub fn calls(&self) -> usize {
        *lock(&self.calls)
    }

    /// The value of `key`, if set.
    pub fn key(&self, key: &str) -> Option<String> {
        lock(&self.keys).get(key).cloned()
    }

    /// `patroni`'s members are keys in this etcd: deleting a member key forgets the member.
    pub fn serving(self, patroni: &FakePatroni) -> Self {
        *lock(&self.dcs_of) = Some(patroni.clone());
        self
    }

    /// Membership changes and deleted keys, in order.
    pub fn changes(&self) -> Vec<String> {
        lock(&self.changes).clone()
    }

    fn list(&self, spec: &PostgresClusterSpec) -> Option<Vec<LiveMember>> {
        if !*lock(&self.healthy) {
            return None;
        }
        let mut set = lock(&self.members);
        let list = set.get_or_insert_with(|| {
            let hosts = spec.etcd.hosts.iter().enumerate();
            hosts
                .map(|(i, h)| live_member(i, h, Some(spec), true))
                .collect()
        });
        Some(list.clone())
    }
}

impl Etcd for FakeEtcd {
    fn allow_plain(&self, host: &str) {
        lock(&self.plain).insert(host.into());
    }
    fn status<'a>(&'a self, spec: &'a PostgresClusterSpec) -> BoxFuture<'a, EtcdStatus> {
        Box::pin(async move {
            *lock(&self.calls) += 1;
            let healthy = *lock(&self.healthy);
            let members: Vec<EtcdMemberStatus> = spec
                .etcd
                .hosts
                .iter()
                .map(|h| EtcdMemberStatus {
                    name: member_name(h),
                    client_url: None,
                    healthy,
                    cluster_id: healthy.then(|| FAKE_ETCD_CLUSTER_ID.to_string()),
                })
                .collect();
            EtcdStatus {
                desired: members.len() as i32,
                healthy: if healthy { members.len() as i32 } else { 0 },
                leader: healthy.then(|| members[0].name.clone()),
                members,
                cluster_id: healthy.then(|| FAKE_ETCD_CLUSTER_ID.to_string()),
            }
        })
    }

    fn members<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
    ) -> BoxFuture<'a, Option<Vec<LiveMember>>> {
        Box::pin(async move { self.list(spec) })
    }

    fn add_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        host: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LiveMember>, Failure>> {
        Box::pin(async move {
            let mut list = self.list(spec).unwrap_or_default();
            list.push(live_member(list.len() + 10, host, Some(spec), true));
            *lock(&self.members) = Some(list.clone());
            lock(&self.changes).push(format!("add {host}"));
            Ok(list)
        })
    }

    fn update_peer<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        id: u64,
        url: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let mut list = self.list(spec).unwrap_or_default();
            for m in list.iter_mut().filter(|m| m.id == id) {
                m.peer_urls = vec![url.clone()];
            }
            *lock(&self.members) = Some(list);
            lock(&self.changes).push(format!("update {url}"));
            Ok(())
        })
    }

    fn remove_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        id: u64,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let mut list = self.list(spec).unwrap_or_default();
            let gone: Vec<String> = list
                .iter()
                .filter(|m| m.id == id)
                .map(LiveMember::host)
                .collect();
            list.retain(|m| m.id != id);
            *lock(&self.members) = Some(list);
            lock(&self.changes).push(format!("remove {}", gone.join(",")));
            Ok(())
        })
    }

    fn get_key<'a>(
        &'a self,
        _spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Failure>> {
        Box::pin(async move { Ok(lock(&self.keys).get(key).cloned()) })
    }

    fn put_key<'a>(
        &'a self,
        _spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        key: &'a str,
        value: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            lock(&self.keys).insert(key.to_string(), value);
            Ok(())
        })
    }

    fn delete_key<'a>(
        &'a self,
        _spec: &'a PostgresClusterSpec,
        _hosts: &'a [String],
        key: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            if let (Some(p), Some((_, name))) = (&*lock(&self.dcs_of), key.rsplit_once("/members/"))
            {
                p.forget(name);
            }
            lock(&self.changes).push(format!("delete {key}"));
            Ok(())
        })
    }
}
