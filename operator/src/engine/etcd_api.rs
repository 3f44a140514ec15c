//! etcd through its client API (etcd-client): health and member list for observation, and the
//! membership changes the planner's steps make (member add and remove, one at a time). With a
//! CA, pgmetal speaks TLS with a client certificate of its own, and plain text to a member that
//! does not speak TLS yet (or any more).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, DeleteOptions, Identity, TlsOptions};
use futures::future::BoxFuture;

use super::error::{Failure, HostErrorKind};
use crate::api::{EtcdMemberStatus, EtcdStatus, PostgresClusterSpec};
use crate::render::{Transport, etcd_url, member_name, url_host};
use crate::tls::{CertKey, Scheme};

/// One member of a running etcd cluster, as its member list has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMember {
    /// etcd's member ID.
    pub id: u64,
    /// The member's name (pgmetal names members after their host); empty until it started.
    pub name: String,
    /// The peer URLs it was added or bootstrapped with.
    pub peer_urls: Vec<String>,
    /// Whether it answers on its client URLs (a member not started yet has none).
    pub healthy: bool,
}

impl LiveMember {
    /// The host of its first peer URL.
    pub fn host(&self) -> String {
        self.peer_urls
            .first()
            .map(|u| url_host(u).to_string())
            .unwrap_or_default()
    }

    /// What the planner knows of it.
    pub fn planned(&self) -> crate::plan::EtcdMember {
        crate::plan::EtcdMember {
            id: self.id,
            host: self.host(),
            healthy: self.healthy,
        }
    }
}

/// What the engine needs from etcd ([`EtcdClient`] for real, a fake in tests).
pub trait Etcd: Send + Sync {
    /// Member list, leader and per-endpoint health for `spec`'s etcd hosts.
    fn status<'a>(&'a self, spec: &'a PostgresClusterSpec) -> BoxFuture<'a, EtcdStatus>;
    /// The member list, each member's health included, from the first of `hosts` whose etcd
    /// answers; `None` when none does (no etcd running yet).
    fn members<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Option<Vec<LiveMember>>>;
    /// Adds `host` as a member (through the first of `hosts` that answers); returns the member
    /// list after the add, the new member included.
    fn add_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        host: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LiveMember>, Failure>>;
    /// Sets the peer URL of member `id` to `url` (through the first of `hosts` that answers):
    /// a member moving between plain text and TLS.
    fn update_peer<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        id: u64,
        url: String,
    ) -> BoxFuture<'a, Result<(), Failure>>;
    /// Removes member `id` (through the first of `hosts` that answers).
    fn remove_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        id: u64,
    ) -> BoxFuture<'a, Result<(), Failure>>;
    /// The value of `key`, if set.
    fn get_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Failure>>;
    /// Sets `key` to `value`.
    fn put_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: &'a str,
        value: String,
    ) -> BoxFuture<'a, Result<(), Failure>>;
    /// Deletes `key` (a Patroni member's key).
    fn delete_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: String,
    ) -> BoxFuture<'a, Result<(), Failure>>;
    /// Allows asking `host` in plain text (see [`EtcdClient::allow_plain`]).
    fn allow_plain(&self, _host: &str) {}
}

/// The real [`Etcd`], through etcd-client.
#[derive(Debug, Clone, Default)]
pub struct EtcdClient {
    /// pgmetal's TLS identity for the cluster, when it has a CA.
    tls: Option<Arc<ClientIdentity>>,
    /// The scheme the spec asks for, tried first.
    wanted: Option<Scheme>,
    /// Why the cluster's CA could not issue pgmetal's client certificate: no connection is
    /// then made (never plain text instead), and failures say why.
    unusable: Option<String>,
    /// The hosts whose etcd configuration, read over SSH, says it serves clients in plain text
    /// (or was changed and not loaded yet): the only ones asked in plain text while the spec
    /// asks for TLS.
    plain: super::schemes::PlainHosts,
}

/// pgmetal's client certificate towards a cluster's etcd, issued from its CA and kept in
/// memory only; `id` tells the connections made with it from older ones.
struct ClientIdentity {
    id: u64,
    issued: Instant,
    options: TlsOptions,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientIdentity({}, <CA and client certificate>)",
            self.id
        )
    }
}

/// One identity per CA for the whole process (reissued at half its lifetime), so that the
/// connections below outlive a reconcile.
static IDENTITIES: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, Arc<ClientIdentity>>>> =
    std::sync::LazyLock::new(Default::default);

fn identity(ca: &CertKey) -> Result<Arc<ClientIdentity>, String> {
    let mut ids = IDENTITIES.lock().unwrap_or_else(|p| p.into_inner());
    let half = super::rest_tls::CLIENT_LIFETIME / 2;
    if let Some(id) = ids.get(&ca.cert).filter(|i| i.issued.elapsed() < half) {
        return Ok(id.clone());
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let now = time::OffsetDateTime::now_utc();
    let mine = super::rest_tls::client_certificate(ca, now)
        .map_err(|e| format!("the cluster's CA cannot issue pgmetal's client certificate: {e}"))?;
    let options = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(&ca.cert))
        .identity(Identity::from_pem(&mine.cert, &mine.key.0));
    let made = Arc::new(ClientIdentity {
        id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        issued: Instant::now(),
        options,
    });
    ids.insert(ca.cert.clone(), made.clone());
    Ok(made)
}

impl EtcdClient {
    /// The client for `spec`'s cluster: TLS with pgmetal's client certificate from `ca` when
    /// there is one (even while `spec.tls` is off: etcd may still speak TLS on its way back),
    /// plain text otherwise. A CA that cannot issue it makes the client unusable (see
    /// [`EtcdClient::unusable`]).
    pub fn for_cluster(spec: &PostgresClusterSpec, ca: Option<&CertKey>) -> Self {
        let (tls, unusable) = match ca.map(identity).transpose() {
            Ok(tls) => (tls, None),
            Err(why) => (None, Some(why)),
        };
        EtcdClient {
            tls,
            wanted: Some(Transport::wanted(spec).peer_scheme()),
            unusable,
            plain: Default::default(),
        }
    }

    /// Allows asking `host` in plain text: its etcd configuration, read over SSH, says it
    /// serves clients in plain text (a cluster moving to TLS).
    pub fn allow_plain(&self, host: &str) {
        self.plain.allow(host);
    }

    /// The client URLs of `host` to try: the spec's scheme, then the other one, plain text only
    /// where [`Self::allow_plain`] allowed it (a TLS failure never turns into plain text).
    fn urls(&self, spec: &PostgresClusterSpec, host: &str) -> Vec<String> {
        let port = spec.etcd.client_port;
        match (&self.tls, self.wanted.unwrap_or(Scheme::Http)) {
            (None, wanted) if self.unusable.is_some() => vec![etcd_url(wanted, host, port)],
            (None, _) => vec![etcd_url(Scheme::Http, host, port)],
            (Some(_), first) => {
                let second = first.other();
                let mut urls = vec![etcd_url(first, host, port)];
                if self.plain.allows(second, host) {
                    urls.push(etcd_url(second, host, port));
                }
                urls
            }
        }
    }

    fn options(&self, url: &str) -> Option<ConnectOptions> {
        let o = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3));
        Some(match (&self.tls, Scheme::of_url(url)) {
            (Some(t), Scheme::Https) => o.with_tls(t.options.clone()),
            _ => o,
        })
    }

    fn identity_id(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.id)
    }

    /// The process's client for endpoint `url`, connected now when there is none made with
    /// this identity.
    async fn client(&self, url: &str) -> Result<Client, etcd_client::Error> {
        if let Some(why) = &self.unusable {
            return Err(etcd_client::Error::InvalidArgs(why.clone()));
        }
        let id = self.identity_id();
        let cached = CLIENTS.lock().ok().and_then(|m| m.get(url).cloned());
        if let Some((_, c)) = cached.filter(|(made_with, _)| *made_with == id) {
            return Ok(c);
        }
        let c = Client::connect([url], self.options(url)).await?;
        if let Ok(mut m) = CLIENTS.lock() {
            m.insert(url.to_string(), (id, c.clone()));
        }
        Ok(c)
    }

    /// Whether the member behind `url` answers a status request, through the reused client.
    async fn status_of(&self, url: &str) -> Option<(Client, etcd_client::StatusResponse)> {
        let mut c = self.client(url).await.ok()?;
        match c.status().await {
            Ok(s) => Some((c, s)),
            Err(_) => {
                forget(url);
                None
            }
        }
    }

    /// The URL and answer of the first of `host`'s client URLs that answers.
    async fn host_status(
        &self,
        spec: &PostgresClusterSpec,
        host: &str,
    ) -> Option<(String, Client, etcd_client::StatusResponse)> {
        for url in self.urls(spec, host) {
            if let Some((c, s)) = self.status_of(&url).await {
                return Some((url, c, s));
            }
        }
        None
    }
}

/// One client per etcd endpoint for the whole process, reused by every converge and every
/// observation (an operator watching many clusters would otherwise open a connection per
/// endpoint per observation), with the identity it was made with. A client whose request
/// failed is dropped, and the next use connects again. pgmetal runs one tokio runtime per
/// process, which the clients' channels live on.
type Cached = (u64, Client);
static CLIENTS: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, Cached>>> =
    std::sync::LazyLock::new(Default::default);

/// Drops the client of `url` after a failed request: the next use connects again.
fn forget(url: &str) {
    if let Ok(mut m) = CLIENTS.lock() {
        m.remove(url);
    }
}

fn etcd_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(HostErrorKind::Etcd, format!("etcd {what}: {e}"))
}

impl EtcdClient {
    /// The endpoint and client of the first of `hosts` whose etcd answers a status request.
    async fn first_answering(
        &self,
        spec: &PostgresClusterSpec,
        hosts: &[String],
    ) -> Option<(String, Client)> {
        for host in hosts {
            if let Some((ep, c, _)) = self.host_status(spec, host).await {
                return Some((ep, c));
            }
        }
        None
    }

    /// Runs `op` against the first answering member, up to 3 times a second apart: a request
    /// that lands during a leader election ("leader changed") succeeds on the next try. When no
    /// member answers at all on the first try (a cluster not bootstrapped yet), it fails at once.
    async fn with_retries<T, F>(
        &self,
        spec: &PostgresClusterSpec,
        hosts: &[String],
        mut op: impl FnMut(Client) -> F,
    ) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut last = self.no_answer(hosts);
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let Some((ep, c)) = self.first_answering(spec, hosts).await else {
                if attempt == 0 {
                    break;
                }
                continue;
            };
            match op(c).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    forget(&ep);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The members as pgmetal knows them, each healthy when its host's etcd answers.
    async fn live(
        &self,
        spec: &PostgresClusterSpec,
        members: &[etcd_client::Member],
    ) -> Vec<LiveMember> {
        let each = members.iter().map(|m| async move {
            let mut member = LiveMember {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                healthy: false,
            };
            let started = !m.client_urls().is_empty();
            member.healthy = started && self.host_status(spec, &member.host()).await.is_some();
            member
        });
        futures::future::join_all(each).await
    }
}

impl EtcdClient {
    /// No member of `hosts` answered (and why none could, where the client is unusable).
    fn no_answer(&self, hosts: &[String]) -> Failure {
        let mut why = format!("no etcd member answers on [{}]", hosts.join(", "));
        if let Some(unusable) = &self.unusable {
            why = format!("{why}: {unusable}");
        }
        etcd_failure("membership change", why)
    }
}

impl Etcd for EtcdClient {
    fn allow_plain(&self, host: &str) {
        EtcdClient::allow_plain(self, host)
    }
    fn status<'a>(&'a self, spec: &'a PostgresClusterSpec) -> BoxFuture<'a, EtcdStatus> {
        Box::pin(self.cluster_status(spec))
    }

    fn members<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Option<Vec<LiveMember>>> {
        Box::pin(async move {
            let listed = self
                .with_retries(spec, hosts, |mut c| async move {
                    let list = c
                        .member_list()
                        .await
                        .map_err(|e| etcd_failure("member list", e))?;
                    Ok(list.members().to_vec())
                })
                .await
                .ok()?;
            Some(self.live(spec, &listed).await)
        })
    }

    fn add_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        host: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LiveMember>, Failure>> {
        Box::pin(async move {
            let (_, mut c) = self
                .first_answering(spec, hosts)
                .await
                .ok_or_else(|| self.no_answer(hosts))?;
            let scheme = Transport::wanted(spec).peer_scheme();
            let url = etcd_url(scheme, host, spec.etcd.peer_port);
            let added = c
                .member_add([url], None)
                .await
                .map_err(|e| etcd_failure(&format!("member add {host}"), e))?;
            Ok(self.live(spec, added.member_list()).await)
        })
    }

    fn update_peer<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        id: u64,
        url: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.with_retries(spec, hosts, move |mut c| {
            let url = url.clone();
            async move {
                c.member_update(id, [url.clone()])
                    .await
                    .map_err(|e| etcd_failure(&format!("member update {id:x} to {url}"), e))?;
                Ok(())
            }
        }))
    }

    fn remove_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        id: u64,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let (_, mut c) = self
                .first_answering(spec, hosts)
                .await
                .ok_or_else(|| self.no_answer(hosts))?;
            c.member_remove(id)
                .await
                .map_err(|e| etcd_failure(&format!("member remove {id:x}"), e))?;
            Ok(())
        })
    }

    fn get_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Failure>> {
        Box::pin(self.with_retries(spec, hosts, move |mut c| async move {
            let got = c
                .get(key, None)
                .await
                .map_err(|e| etcd_failure(&format!("get {key}"), e))?;
            let value = got.kvs().first().map(|kv| kv.value_str().map(String::from));
            value
                .transpose()
                .map_err(|e| etcd_failure(&format!("get {key}"), e))
        }))
    }

    fn put_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: &'a str,
        value: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.with_retries(spec, hosts, move |mut c| {
            let value = value.clone();
            async move {
                c.put(key, value, None)
                    .await
                    .map_err(|e| etcd_failure(&format!("put {key}"), e))?;
                Ok(())
            }
        }))
    }

    fn delete_key<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        key: String,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.with_retries(spec, hosts, move |mut c| {
            let key = key.clone();
            async move {
                c.delete(key.as_str(), None::<DeleteOptions>)
                    .await
                    .map_err(|e| etcd_failure(&format!("delete {key}"), e))?;
                Ok(())
            }
        }))
    }
}

impl EtcdClient {
    /// etcd member list, leader and per-endpoint health through etcd-client, every endpoint at
    /// once.
    pub async fn cluster_status(&self, spec: &PostgresClusterSpec) -> EtcdStatus {
        let mut status = EtcdStatus {
            desired: spec.etcd.hosts.len() as i32,
            ..Default::default()
        };
        let looks = spec.etcd.hosts.iter().map(|h| self.host_status(spec, h));
        let answers = futures::future::join_all(looks).await;
        let mut leader_id = None;
        let mut names = BTreeMap::new();
        for (host, answer) in spec.etcd.hosts.iter().zip(answers) {
            let mut cluster_id = None;
            let healthy = answer.is_some();
            let mut ep = self.urls(spec, host).swap_remove(0);
            if let Some((url, mut c, s)) = answer {
                ep = url;
                leader_id = Some(s.leader());
                cluster_id = s.header().map(|h| format!("{:x}", h.cluster_id()));
                if names.is_empty()
                    && let Ok(list) = c.member_list().await
                {
                    names = list
                        .members()
                        .iter()
                        .map(|m| (m.id(), m.name().to_string()))
                        .collect();
                }
            }
            status.healthy += i32::from(healthy);
            status.cluster_id = status.cluster_id.or(cluster_id.clone());
            status.members.push(EtcdMemberStatus {
                name: member_name(host),
                client_url: Some(ep),
                healthy,
                cluster_id,
            });
        }
        status.leader = leader_id.and_then(|id| names.get(&id).cloned());
        status
    }
}
