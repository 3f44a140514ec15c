//! etcd through its client API (etcd-client): health and member list for observation, and the
//! membership changes the planner's steps make (member add and remove, one at a time).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, DeleteOptions};
use futures::future::BoxFuture;

use super::error::{Failure, HostErrorKind};
use crate::api::{EtcdMemberStatus, EtcdStatus, PostgresClusterSpec};
use crate::render::{etcd_url, member_name, url_host};

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
}

/// The real [`Etcd`], through etcd-client.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdClient;

fn options() -> Option<ConnectOptions> {
    Some(
        ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3)),
    )
}

/// One client per etcd endpoint for the whole process, reused by every converge and every
/// observation (an operator watching many clusters would otherwise open a connection per
/// endpoint per observation). A client whose request failed is dropped, and the next use
/// connects again. pgmetal runs one tokio runtime per process, which the clients' channels
/// live on.
static CLIENTS: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, Client>>> =
    std::sync::LazyLock::new(Default::default);

/// The process's client for endpoint `url`, connected now when there is none.
async fn client(url: &str) -> Result<Client, etcd_client::Error> {
    if let Some(c) = CLIENTS.lock().ok().and_then(|m| m.get(url).cloned()) {
        return Ok(c);
    }
    let c = Client::connect([url], options()).await?;
    if let Ok(mut m) = CLIENTS.lock() {
        m.insert(url.to_string(), c.clone());
    }
    Ok(c)
}

/// Drops the client of `url` after a failed request: the next use connects again.
fn forget(url: &str) {
    if let Ok(mut m) = CLIENTS.lock() {
        m.remove(url);
    }
}

/// Whether the member behind `url` answers a status request, through the reused client.
async fn status_of(url: &str) -> Option<(Client, etcd_client::StatusResponse)> {
    let mut c = client(url).await.ok()?;
    match c.status().await {
        Ok(s) => Some((c, s)),
        Err(_) => {
            forget(url);
            None
        }
    }
}

fn etcd_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(HostErrorKind::Etcd, format!("etcd {what}: {e}"))
}

/// The endpoint and client of the first of `hosts` whose etcd answers a status request.
async fn first_answering(spec: &PostgresClusterSpec, hosts: &[String]) -> Option<(String, Client)> {
    for host in hosts {
        let ep = etcd_url(host, spec.etcd.client_port);
        if let Some((c, _)) = status_of(&ep).await {
            return Some((ep, c));
        }
    }
    None
}

/// Runs `op` against the first answering member, up to 3 times a second apart: a request that
/// lands during a leader election ("leader changed") succeeds on the next try. When no member
/// answers at all on the first try (a cluster not bootstrapped yet), it fails at once.
async fn with_retries<T, F>(
    spec: &PostgresClusterSpec,
    hosts: &[String],
    mut op: impl FnMut(Client) -> F,
) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, Failure>>,
{
    let mut last = connect_failure(hosts);
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let Some((ep, c)) = first_answering(spec, hosts).await else {
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

fn connect_failure(hosts: &[String]) -> Failure {
    etcd_failure(
        "membership change",
        format!("no etcd member answers on [{}]", hosts.join(", ")),
    )
}

/// Whether an etcd member answers on one of `urls`.
async fn answers(urls: &[String]) -> bool {
    for url in urls {
        if status_of(url).await.is_some() {
            return true;
        }
    }
    false
}

async fn live(members: &[etcd_client::Member]) -> Vec<LiveMember> {
    let each = members.iter().map(|m| async move {
        LiveMember {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            healthy: answers(m.client_urls()).await,
        }
    });
    futures::future::join_all(each).await
}

impl Etcd for EtcdClient {
    fn status<'a>(&'a self, spec: &'a PostgresClusterSpec) -> BoxFuture<'a, EtcdStatus> {
        Box::pin(etcd(spec))
    }

    fn members<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
    ) -> BoxFuture<'a, Option<Vec<LiveMember>>> {
        Box::pin(async move {
            let listed = with_retries(spec, hosts, |mut c| async move {
                let list = c
                    .member_list()
                    .await
                    .map_err(|e| etcd_failure("member list", e))?;
                Ok(list.members().to_vec())
            })
            .await
            .ok()?;
            Some(live(&listed).await)
        })
    }

    fn add_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        host: &'a str,
    ) -> BoxFuture<'a, Result<Vec<LiveMember>, Failure>> {
        Box::pin(async move {
            let (_, mut c) = first_answering(spec, hosts)
                .await
                .ok_or_else(|| connect_failure(hosts))?;
            let url = etcd_url(host, spec.etcd.peer_port);
            let added = c
                .member_add([url], None)
                .await
                .map_err(|e| etcd_failure(&format!("member add {host}"), e))?;
            Ok(live(added.member_list()).await)
        })
    }

    fn remove_member<'a>(
        &'a self,
        spec: &'a PostgresClusterSpec,
        hosts: &'a [String],
        id: u64,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let (_, mut c) = first_answering(spec, hosts)
                .await
                .ok_or_else(|| connect_failure(hosts))?;
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
        Box::pin(with_retries(spec, hosts, move |mut c| async move {
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
        Box::pin(with_retries(spec, hosts, move |mut c| {
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
        Box::pin(with_retries(spec, hosts, move |mut c| {
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

/// etcd member list, leader and per-endpoint health through etcd-client, every endpoint at
/// once.
pub async fn etcd(spec: &PostgresClusterSpec) -> EtcdStatus {
    let mut status = EtcdStatus {
        desired: spec.etcd.hosts.len() as i32,
        ..Default::default()
    };
    let urls: Vec<String> = spec
        .etcd
        .hosts
        .iter()
        .map(|h| etcd_url(h, spec.etcd.client_port))
        .collect();
    let answers = futures::future::join_all(urls.iter().map(|u| status_of(u))).await;
    let mut leader_id = None;
    let mut names = BTreeMap::new();
    for ((host, ep), answer) in spec.etcd.hosts.iter().zip(urls).zip(answers) {
        let mut cluster_id = None;
        let healthy = answer.is_some();
        if let Some((mut c, s)) = answer {
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
