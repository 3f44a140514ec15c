//! What the operator keeps about each host in `status.hosts`: connections that verify (or
//! pin) host keys, which hosts are verified, and each host's outcome of a converge.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backend::Backend;
use super::dereference::Resolved;
use crate::api::{HostStatus, PostgresCluster, PostgresClusterSpec};
use crate::engine::{self, Connection, connect};

/// One connection per host of the spec, and per former host recorded in etcd (see
/// [`engine::topology::recorded_hosts`]; kept in `hosts` until decommissioned, with its pinned
/// key). See [`connect::connect_cluster`] for how host keys are verified; records in `hosts`
/// which hosts answered and the key each presented, so that a key seen first is pinned from
/// then on.
pub async fn connect_hosts(
    backend: &dyn Backend,
    (pgc, r): (&PostgresCluster, &Resolved),
    hosts: &mut Vec<HostStatus>,
) -> BTreeMap<String, Connection> {
    let mut all = crate::render::all_hosts(&pgc.spec);
    let etcd = backend.etcd(&pgc.spec, r);
    for h in engine::topology::recorded_hosts(&*etcd, &pgc.spec).await {
        if !all.contains(&h) {
            all.push(h);
        }
    }
    hosts.retain(|h| all.contains(&h.host));
    for h in &all {
        if !hosts.iter().any(|s| &s.host == h) {
            hosts.push(HostStatus {
                host: h.clone(),
                ..Default::default()
            });
        }
    }
    let connected = connect::connect_cluster(
        &pgc.spec.ssh,
        &r.private_key,
        r.known_hosts.as_deref(),
        hosts,
        &all,
        backend.connector(),
    )
    .await;
    for hs in hosts.iter_mut() {
        if let Some(c) = connected.get(&hs.host) {
            hs.reachable = c.conn.is_ok();
            if let Some(fp) = &c.fingerprint {
                hs.host_key_fingerprint = Some(fp.clone());
            }
        }
    }
    connected.into_iter().map(|(h, c)| (h, c.conn)).collect()
}

/// The hosts of the spec whose SSH host key a converge verified (and pinned in status), and
/// whose last connection succeeded: the only ones the Patroni REST password goes to outside a
/// converge's own connections.
pub fn verified_hosts(spec: &PostgresClusterSpec, hosts: &[HostStatus]) -> Vec<String> {
    let named = crate::render::all_hosts(spec);
    hosts
        .iter()
        .filter(|h| h.reachable && h.host_key_fingerprint.is_some() && named.contains(&h.host))
        .map(|h| h.host.clone())
        .collect()
}

/// Each host's config hash, error and last converge, from a converge's report; returns the
/// hosts' errors.
pub fn record_hosts(
    report: &engine::report::Report,
    paused: bool,
    hosts: &mut [HostStatus],
) -> Vec<engine::HostError> {
    let mut errors = Vec::new();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    for hs in hosts.iter_mut() {
        let h = report.hosts.get(&hs.host);
        if let Some(hash) = h.and_then(|h| h.config_hash.clone()) {
            hs.config_hash = Some(hash);
        }
        match h.and_then(|h| h.error.clone()) {
            Some(e) => {
                hs.reachable = !e.kind.is_connection();
                hs.last_error = Some(e.to_string());
                errors.push(e);
            }
            None => {
                hs.last_error = None;
                if !paused {
                    hs.last_converged = Some(now.clone());
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pinned_reachable_hosts_of_the_spec_are_verified() {
        let spec: PostgresClusterSpec = serde_saphyr::from_str(
            "ssh: {}\npostgres: {primary: a, replicas: [b, c]}\netcd: {hosts: [a, b, c]}\n",
        )
        .unwrap();
        let host = |h: &str, reachable, pinned: bool| HostStatus {
            host: h.into(),
            reachable,
            host_key_fingerprint: pinned.then(|| "SHA256:x".into()),
            ..Default::default()
        };
        let hosts = [
            host("a", true, true),
            host("b", false, true), // its last connection failed (a changed key, or down)
            host("c", true, false), // never verified
            host("gone", true, true), // no longer in the spec
        ];
        assert_eq!(verified_hosts(&spec, &hosts), ["a"]);
    }
}
