//! Builds the resource's status from an observation (shared by the CLI and the operator).

use crate::api::{PostgresClusterSpec, PostgresClusterStatus};
use crate::engine::observe::{self, Observation};
use crate::engine::patroni_api::Member as _;

/// Status fields that come straight from what was observed (conditions are added by the caller).
pub fn from_observation(spec: &PostgresClusterSpec, obs: &Observation) -> PostgresClusterStatus {
    let members = obs
        .patroni
        .as_ref()
        .map(|v| observe::members(spec, v))
        .unwrap_or_default();
    let desired = 1 + spec.postgres.replicas.len();
    let ready = members
        .iter()
        .filter(|m| m.is_running_leader() || m.is_healthy_replica())
        .count();
    PostgresClusterStatus {
        primary: members
            .iter()
            .find(|m| m.is_leader())
            .map(|m| m.host.clone()),
        ready_members: Some(format!("{ready}/{desired}")),
        members,
        etcd: Some(obs.etcd.clone()),
        haproxy: obs
            .haproxy
            .iter()
            .filter_map(|h| h.as_ref().ok().cloned())
            .collect(),
        patroni_paused: obs.patroni.as_ref().map(|v| v.pause),
        system_identifier: system_identifier(obs),
        etcd_cluster_id: obs.etcd.cluster_id.clone(),
        ..Default::default()
    }
}

/// The system identifier the primary reports (the data every member was copied from).
fn system_identifier(obs: &Observation) -> Option<String> {
    let [primary] = obs.primaries.as_slice() else {
        return None;
    };
    obs.system_identifiers.get(&primary.host).cloned()
}
