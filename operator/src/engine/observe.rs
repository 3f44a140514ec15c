//! Observation: read the real state (etcd members and health, Patroni `/cluster`, HAProxy stats)
//! into the status type, and judge whether the cluster is healthy. Cheap: no SSH, no file work.

use std::sync::Arc;
use std::time::Duration;

use super::capped;
use super::etcd_api::{Etcd, EtcdClient};
use super::patroni_api::{
    ClusterMember, ClusterView, Member as _, NodeStatus, Patroni, Role, State,
};
use crate::api::{EtcdStatus, HaproxyStatus, MemberStatus, PostgresClusterSpec};
use crate::render::{host_port, member_name};

/// Everything observed in one pass.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// etcd as seen through its client API.
    pub etcd: EtcdStatus,
    /// Patroni's cluster view, if any member answered.
    pub patroni: Option<ClusterView>,
    /// Per HAProxy host: routing, or the error reading its stats.
    pub haproxy: Vec<Result<HaproxyStatus, StatsError>>,
    /// PostgreSQL hosts whose own Patroni reports a read-write primary (normally exactly one).
    pub primaries: Vec<Primary>,
    /// The system identifier each answering member reports, by host.
    pub system_identifiers: std::collections::BTreeMap<String, String>,
}

/// A member whose own Patroni (`GET /patroni`) reports a read-write primary, with the timeline
/// of its current WAL: unlike `/cluster`, which repeats what each member last wrote into the
/// DCS, this changes the moment PostgreSQL is promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// The host, as named in the spec.
    pub host: String,
    /// The timeline it writes on.
    pub timeline: Option<i64>,
}

/// HAProxy's statistics page could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HAProxy stats on {host}: {source}")]
pub struct StatsError {
    /// The HAProxy host.
    pub host: String,
    /// The HTTP error, or a body over the limit.
    pub source: Arc<capped::BodyError>,
}

/// Routing of one HAProxy host from its CSV statistics.
pub async fn haproxy(
    spec: &PostgresClusterSpec,
    (host, password): (&str, &str),
) -> Result<HaproxyStatus, StatsError> {
    let url = format!(
        "http://{}/stats;csv",
        host_port(host, spec.haproxy.stats_port)
    );
    let read = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let r = client
            .get(url)
            .basic_auth(crate::render::STATS_USER, Some(password))
            .send()
            .await?
            .error_for_status()?;
        capped::body(r, capped::MAX_BODY).await
    };
    let bytes = read.await.map_err(|e| StatsError {
        host: host.to_string(),
        source: Arc::new(e),
    })?;
    Ok(parse_haproxy_csv(host, &String::from_utf8_lossy(&bytes)))
}

/// Parses `show stat` CSV: servers that are UP in the `primary` and `replicas` listeners.
pub fn parse_haproxy_csv(host: &str, csv: &str) -> HaproxyStatus {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return HaproxyStatus {
            host: host.into(),
            ..Default::default()
        };
    };
    let mut out = HaproxyStatus {
        host: host.into(),
        ..Default::default()
    };
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(p), Some(s), Some(state)) = (f.get(px), f.get(sv), f.get(st)) else {
            continue;
        };
        if matches!(*s, "FRONTEND" | "BACKEND") || !state.starts_with("UP") {
            continue;
        }
        match *p {
            "primary" => out.primary_backends.push(s.to_string()),
            "replicas" => out.replica_backends.push(s.to_string()),
            _ => {}
        }
    }
    out
}

/// Observe everything once.
/// `stats` is the password of HAProxy's statistics page; `ca` the cluster's CA (etcd's TLS).
pub async fn observe(
    spec: &PostgresClusterSpec,
    api: &dyn Patroni,
    ca: Option<&crate::tls::CertKey>,
    stats: &str,
) -> Observation {
    let etcd = EtcdClient::for_cluster(spec, ca);
    observe_with(spec, (api, &etcd), stats).await
}

/// Observe everything once, through the given Patroni and etcd clients.
pub async fn observe_with(
    spec: &PostgresClusterSpec,
    (api, etcd): (&dyn Patroni, &dyn Etcd),
    stats: &str,
) -> Observation {
    let pg_hosts: Vec<String> = spec.postgres.hosts().cloned().collect();
    let nodes = futures::future::join_all(pg_hosts.iter().map(|h| api.node(h)));
    let (etcd, patroni, nodes) = tokio::join!(etcd.status(spec), api.cluster_any(&pg_hosts), nodes);
    let haproxy =
        futures::future::join_all(spec.haproxy.hosts.iter().map(|h| haproxy(spec, (h, stats))))
            .await;
    let answered: Vec<(String, NodeStatus)> = pg_hosts
        .into_iter()
        .zip(nodes)
        .filter_map(|(host, n)| Some((host, n.ok()?)))
        .collect();
    let primaries = answered
        .iter()
        .filter(|(_, n)| n.is_primary())
        .map(|(host, n)| Primary {
            host: host.clone(),
            timeline: n.timeline,
        })
        .collect();
    let system_identifiers = answered
        .into_iter()
        .filter_map(|(host, n)| Some((host, n.database_system_identifier?)))
        .collect();
    Observation {
        etcd,
        patroni: patroni.ok(),
        haproxy,
        primaries,
        system_identifiers,
    }
}

/// Patroni members mapped to the spec's hosts.
pub fn members(spec: &PostgresClusterSpec, view: &ClusterView) -> Vec<MemberStatus> {
    let status = |m: &ClusterMember, host: String| MemberStatus {
        host,
        name: m.name.clone(),
        role: m.role.clone(),
        state: m.state.clone(),
        timeline: m.timeline,
        lag_bytes: m.lag.as_ref().and_then(serde_json::Value::as_i64),
        pending_restart: m.pending_restart,
    };
    let mut out: Vec<MemberStatus> = spec
        .postgres
        .hosts()
        .filter_map(|host| {
            let name = member_name(host);
            view.members
                .iter()
                .find(|m| m.name == name)
                .map(|m| status(m, host.clone()))
        })
        .collect();
    // Members Patroni knows that the spec does not name (e.g. removed from the spec) are shown too.
    for m in &view.members {
        if !out.iter().any(|o| o.name == m.name) {
            out.push(status(m, m.host.clone().unwrap_or_default()));
        }
    }
    out
}

/// What is wrong, by area; each line names the host and is something a person can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// etcd members not healthy.
    pub etcd: Vec<String>,
    /// Patroni: leader count, members not running or streaming.
    pub patroni: Vec<String>,
    /// HAProxy not routing to the leader / the replicas.
    pub routing: Vec<String>,
}

impl Verdict {
    /// Every problem, etcd first.
    pub fn all(&self) -> Vec<String> {
        self.etcd
            .iter()
            .chain(&self.patroni)
            .chain(&self.routing)
            .cloned()
            .collect()
    }
}

/// A flat verdict on the observation: empty when healthy.
pub fn problems(spec: &PostgresClusterSpec, obs: &Observation) -> Vec<String> {
    verdict(spec, obs).all()
}

/// Judges an observation against the spec.
pub fn verdict(spec: &PostgresClusterSpec, obs: &Observation) -> Verdict {
    let mut v = Verdict {
        etcd: etcd_problems(spec, &obs.etcd),
        ..Default::default()
    };
    let Some(view) = &obs.patroni else {
        v.patroni
            .push("Patroni: no member's REST API answered".into());
        return v;
    };
    let ms = members(spec, view);
    v.patroni = patroni_problems(spec, view, &ms);
    let leader = view.leaders().first().map(|l| l.name.clone());
    let mut want_replicas: Vec<String> = ms
        .iter()
        // What HAProxy's check (Patroni's `GET /replica`) accepts: PostgreSQL up, lag known or not.
        .filter(|m| !m.is_leader() && m.state() != State::Other)
        .map(|m| m.name.clone())
        .collect();
    want_replicas.sort();
    for h in &obs.haproxy {
        match h {
            Err(e) => v.routing.push(format!("{e} (unreadable)")),
            Ok(h) => v
                .routing
                .extend(routing_problems(h, leader.as_deref(), &want_replicas)),
        }
    }
    v
}

/// Whether etcd is one cluster with every member of the spec healthy; otherwise which hosts
/// do not answer, or which cluster each host is in.
fn etcd_problems(spec: &PostgresClusterSpec, etcd: &EtcdStatus) -> Vec<String> {
    let host_of = |name: &str| {
        let host = spec.etcd.hosts.iter().find(|h| member_name(h) == name);
        host.map_or(name.to_string(), String::clone)
    };
    let ids: std::collections::BTreeSet<&str> = etcd
        .members
        .iter()
        .filter_map(|m| m.cluster_id.as_deref())
        .collect();
    if ids.len() > 1 {
        let each: Vec<String> = etcd
            .members
            .iter()
            .filter_map(|m| {
                Some(format!(
                    "{} in {}",
                    host_of(&m.name),
                    m.cluster_id.as_ref()?
                ))
            })
            .collect();
        return vec![format!(
            "etcd: the hosts are in {} different etcd clusters ({}): Patroni's DCS is split; \
             stop etcd on the hosts not in this cluster's etcd",
            ids.len(),
            each.join(", ")
        )];
    }
    if etcd.healthy >= etcd.desired {
        return vec![];
    }
    let down: Vec<String> = etcd
        .members
        .iter()
        .filter(|m| !m.healthy)
        // A member is named after its host: the message names the host, as the spec does.
        .map(|m| host_of(&m.name))
        .collect();
    vec![format!(
        "etcd: {}/{} members healthy (not answering: {})",
        etcd.healthy,
        etcd.desired,
        down.join(", ")
    )]
}

/// One leader, and every PostgreSQL host of the spec registered and, if not the leader, a
/// healthy replica.
fn patroni_problems(
    spec: &PostgresClusterSpec,
    view: &ClusterView,
    ms: &[MemberStatus],
) -> Vec<String> {
    let mut out = Vec::new();
    let leaders = view.leaders().len();
    if leaders != 1 {
        out.push(format!("Patroni: {leaders} leaders (want exactly 1)"));
    }
    // Synchronous mode promotes only the synchronous standby: until Patroni has named one, a
    // failover could promote nobody.
    let sync = [Role::SyncStandby, Role::QuorumStandby];
    if spec.patroni.synchronous_mode
        && !spec.postgres.replicas.is_empty()
        && !ms.iter().any(|m| sync.contains(&m.role()))
    {
        out.push("Patroni: no synchronous standby yet (synchronousMode): a failover now could promote no replica".into());
    }
    for host in spec.postgres.hosts() {
        match ms.iter().find(|m| &m.host == host) {
            None => out.push(format!("Patroni: member on {host} is not registered")),
            Some(m) if m.is_leader() || m.is_healthy_replica() => {}
            Some(m) => out.push(format!(
                "Patroni: replica on {host} is {} (not streaming)",
                m.state
            )),
        }
    }
    out
}

/// HAProxy routes read-write to the leader only, and read-only to exactly `want_replicas`.
fn routing_problems(
    h: &HaproxyStatus,
    leader: Option<&str>,
    want_replicas: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    if leader.map(|l| vec![l.to_string()]) != Some(h.primary_backends.clone()) {
        out.push(format!(
            "HAProxy on {}: read-write port routes to [{}], want the leader",
            h.host,
            h.primary_backends.join(", ")
        ));
    }
    let mut got = h.replica_backends.clone();
    got.sort();
    if got != want_replicas {
        out.push(format!(
            "HAProxy on {}: read-only port routes to [{}], want [{}]",
            h.host,
            got.join(", "),
            want_replicas.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_csv() {
        let csv = "# pxname,svname,qcur,status,x\nprimary,FRONTEND,,OPEN,\nprimary,10-0-0-1,0,UP,\nprimary,10-0-0-2,0,DOWN,\nreplicas,10-0-0-2,0,UP,\nreplicas,10-0-0-3,0,UP 1/3,\nreplicas,BACKEND,0,UP,\n";
        let s = parse_haproxy_csv("lb", csv);
        assert_eq!(s.primary_backends, ["10-0-0-1"]);
        assert_eq!(s.replica_backends, ["10-0-0-2", "10-0-0-3"]);
    }

    #[test]
    fn an_etcd_member_not_answering_is_named_by_its_host() {
        let spec: PostgresClusterSpec = serde_saphyr::from_str(
            "ssh: {}\npostgres: {primary: 10.0.0.1}\netcd: {hosts: [10.0.0.1, 10.0.0.2]}\n",
        )
        .unwrap();
        let member = |host: &str, healthy| crate::api::EtcdMemberStatus {
            name: member_name(host),
            client_url: None,
            healthy,
            cluster_id: healthy.then(|| "c1".to_string()),
        };
        let etcd = EtcdStatus {
            members: vec![member("10.0.0.1", false), member("10.0.0.2", true)],
            healthy: 1,
            desired: 2,
            leader: None,
            cluster_id: None,
        };
        assert_eq!(
            etcd_problems(&spec, &etcd),
            ["etcd: 1/2 members healthy (not answering: 10.0.0.1)"]
        );
        // Both answer, each in a cluster of its own: a split DCS, whatever the health says.
        let mut split = etcd.clone();
        split.members = vec![member("10.0.0.1", true), member("10.0.0.2", true)];
        split.members[0].cluster_id = Some("c2".into());
        split.healthy = 2;
        let problems = etcd_problems(&spec, &split);
        assert!(
            problems[0].contains("2 different etcd clusters (10.0.0.1 in c2, 10.0.0.2 in c1)"),
            "{problems:?}"
        );
    }

    #[test]
    fn synchronous_mode_is_healthy_only_with_a_synchronous_standby() {
        use super::super::fake::{member, view};
        let mut spec: PostgresClusterSpec = serde_saphyr::from_str(
            "ssh: {}\npostgres: {primary: a, replicas: [b]}\netcd: {hosts: [a]}\npatroni: {synchronousMode: true}\n",
        )
        .unwrap();
        let obs = |v: ClusterView| Observation {
            etcd: EtcdStatus {
                desired: 1,
                healthy: 1,
                ..Default::default()
            },
            patroni: Some(v),
            ..Default::default()
        };
        let no_sync = obs(view("a", &["b"]));
        let problems = verdict(&spec, &no_sync).patroni;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("no synchronous standby")),
            "{problems:?}"
        );
        let mut with_sync = view("a", &[]);
        with_sync
            .members
            .push(member("b", "sync_standby", "streaming"));
        assert_eq!(
            verdict(&spec, &obs(with_sync)).patroni,
            Vec::<String>::new()
        );
        spec.patroni.synchronous_mode = false;
        assert_eq!(verdict(&spec, &no_sync).patroni, Vec::<String>::new());
    }
}
