//! How the operator reaches a cluster's hosts, Patroni and etcd: over the network (SSH, HTTPS,
//! etcd's gRPC) for real; simulated hosts (feature `sim`) in the many-clusters benchmark, the one
//! place where fakes stand in for hosts.

use std::sync::Arc;

use super::dereference::Resolved;
use crate::api::PostgresClusterSpec;
use crate::engine::connect::{Connector, over_ssh};
use crate::engine::etcd_api::{Etcd, EtcdClient};
use crate::engine::patroni_api::{Patroni, PatroniApi};

/// Where connections and clients come from.
pub trait Backend: Send + Sync {
    /// Opens one connection to a host (verifying its key as [`connect_cluster`] says).
    ///
    /// [`connect_cluster`]: crate::engine::connect::connect_cluster
    fn connector(&self) -> Connector;
    /// The Patroni client of the cluster of `spec`; `trusted` are the hosts the REST password
    /// and the client certificate may go to (see [`PatroniApi::trusting`]).
    fn patroni(
        &self,
        spec: &PostgresClusterSpec,
        resolved: &Resolved,
        trusted: Vec<String>,
    ) -> Arc<dyn Patroni>;
    /// The etcd client of the cluster of `spec`.
    fn etcd(&self, spec: &PostgresClusterSpec, resolved: &Resolved) -> Arc<dyn Etcd>;
}

/// The real hosts: SSH, Patroni's REST API, etcd's client API.
#[derive(Debug, Default, Clone, Copy)]
pub struct Network;

impl Backend for Network {
    fn connector(&self) -> Connector {
        over_ssh
    }

    fn patroni(
        &self,
        spec: &PostgresClusterSpec,
        resolved: &Resolved,
        trusted: Vec<String>,
    ) -> Arc<dyn Patroni> {
        let api = PatroniApi::for_cluster(spec, &resolved.secrets, resolved.ca.as_ref());
        Arc::new(api.trusting(trusted))
    }

    fn etcd(&self, spec: &PostgresClusterSpec, resolved: &Resolved) -> Arc<dyn Etcd> {
        Arc::new(EtcdClient::for_cluster(spec, resolved.ca.as_ref()))
    }
}

#[cfg(any(test, feature = "sim"))]
pub mod sim;
