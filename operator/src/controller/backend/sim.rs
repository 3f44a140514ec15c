//! Simulated hosts for the many-clusters benchmark (issue 13): each cluster's hosts answer as
//! healthy Debian hosts where every command succeeds, its Patroni as a healthy cluster whose
//! leader is the spec's primary, its etcd as a healthy cluster of the spec's etcd hosts. It
//! measures the operator (API traffic, reconcile times, memory), not the hosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Backend, Resolved};
use crate::api::PostgresClusterSpec;
use crate::engine::connect::{Connecting, Connector};
use crate::engine::etcd_api::Etcd;
use crate::engine::fake::{FakeEtcd, FakePatroni, view};
use crate::engine::patroni_api::Patroni;
use crate::exec::SshConfig;
use crate::exec::fake::FakeExecutor;
use crate::render;

/// The OS probe's answer of a simulated host: Debian 12 with systemd, nothing installed.
const DEBIAN: &str = "ID=debian\nVERSION_ID=12\n@@systemd\nyes\n@@packages\n";

/// The host key fingerprint every simulated host presents (pinned at its first connection).
pub const FINGERPRINT: &str = "SHA256:simulated-host-key";

/// One simulated cluster: its Patroni and its etcd.
#[derive(Clone)]
struct World {
    patroni: FakePatroni,
    etcd: FakeEtcd,
}

/// Simulated hosts for any number of clusters, each created at its first use and keyed by its
/// primary host (so every simulated cluster needs hosts of its own).
#[derive(Default)]
pub struct Simulated {
    worlds: Mutex<HashMap<String, World>>,
}

impl Simulated {
    fn world(&self, spec: &PostgresClusterSpec) -> World {
        let mut worlds = self.worlds.lock().unwrap_or_else(|p| p.into_inner());
        let key = spec.postgres.primary.clone();
        worlds
            .entry(key)
            .or_insert_with(|| {
                let replicas: Vec<&str> =
                    spec.postgres.replicas.iter().map(String::as_str).collect();
                let live = view(&spec.postgres.primary, &replicas);
                let patroni = FakePatroni::new(live, render::dcs_config(spec));
                World {
                    etcd: FakeEtcd::new(true).serving(&patroni),
                    patroni,
                }
            })
            .clone()
    }

    /// Patroni of the cluster whose primary was `primary` fails over to `to`, as after a power
    /// cut: `to` leads, every other member streams from it. False when no such cluster was seen.
    pub fn fail_over(&self, primary: &str, to: &str) -> bool {
        let worlds = self.worlds.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = worlds.get(primary) else {
            return false;
        };
        let members = w.patroni.current().members;
        let others: Vec<String> = members
            .iter()
            .filter_map(|m| m.host.clone())
            .filter(|h| h != to)
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        w.patroni.then(view(to, &others));
        true
    }
}

/// A simulated host: every command succeeds; the OS probe finds Debian 12.
fn simulated_host(host: String, _cfg: SshConfig) -> Connecting {
    Box::pin(async move {
        let ex = FakeExecutor::new(&host);
        ex.on_contains("/etc/os-release", 0, DEBIAN);
        Ok((Arc::new(ex) as _, FINGERPRINT.to_string()))
    })
}

impl Backend for Simulated {
    fn connector(&self) -> Connector {
        simulated_host
    }

    fn patroni(
        &self,
        spec: &PostgresClusterSpec,
        _: &Resolved,
        _: Vec<String>,
    ) -> Arc<dyn Patroni> {
        Arc::new(self.world(spec).patroni)
    }

    fn etcd(&self, spec: &PostgresClusterSpec, _: &Resolved) -> Arc<dyn Etcd> {
        Arc::new(self.world(spec).etcd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PostgresClusterSpec {
        serde_saphyr::from_str(
            "ssh: {privateKeySecret: {name: k, key: k}}\npostgres: {primary: s1, replicas: [s2, s3]}\netcd: {hosts: [s1, s2, s3]}\n",
        )
        .unwrap()
    }

    fn resolved() -> Resolved {
        Resolved {
            private_key: String::new(),
            known_hosts: None,
            secrets: crate::model::ClusterSecrets {
                superuser: "su".into(),
                replication: "rep".into(),
                rewind: "rw".into(),
                restapi: "api".into(),
                haproxy_stats: "stats".into(),
                s3: Default::default(),
            },
            ca: None,
            pins: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_simulated_cluster_is_healthy_and_fails_over() {
        let sim = Simulated::default();
        let (api, etcd) = (
            sim.patroni(&spec(), &resolved(), vec![]),
            sim.etcd(&spec(), &resolved()),
        );
        let hosts: Vec<String> = ["s1", "s2", "s3"].map(String::from).into();
        assert_eq!(etcd.status(&spec()).await.healthy, 3);
        let leader = api.cluster_any(&hosts).await.unwrap().leader_host(&hosts);
        assert_eq!(leader.as_deref(), Some("s1"));
        assert!(sim.fail_over("s1", "s2"));
        assert!(!sim.fail_over("nowhere", "s2"));
        // The same cluster's clients see the new leader (the next look, after the queued one).
        let api = sim.patroni(&spec(), &resolved(), vec![]);
        let _ = api.cluster_any(&hosts).await;
        let leader = api.cluster_any(&hosts).await.unwrap().leader_host(&hosts);
        assert_eq!(leader.as_deref(), Some("s2"));
        assert_eq!(api.node("s2").await.unwrap().role, "primary");
    }

    #[tokio::test]
    async fn a_simulated_host_answers_the_os_probe() {
        let key = &crate::engine::connect::tests::TEST_KEY;
        let cfg = SshConfig::new("root", key, crate::exec::KnownHosts::TrustFirstUse).unwrap();
        let (ex, fp) = simulated_host("s1".into(), cfg).await.unwrap();
        assert_eq!(fp, FINGERPRINT);
        let out = ex
            .run(&crate::exec::Cmd::script("cat /etc/os-release"))
            .await
            .unwrap();
        assert!(out.stdout_str().contains("ID=debian"));
    }
}
