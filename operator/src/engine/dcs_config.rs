//! Patroni's dynamic configuration (parameters, timing, pause) in the DCS, written through the
//! leader's REST API, and the restarts it leaves pending.

use std::time::{Duration, Instant};

use super::error::Failure;
use super::{Engine, HostErrorKind, patroni_api};
use crate::engine::patroni_api::Member as _;
use crate::render::{self, member_name};

impl Engine<'_> {
    /// The spec's dynamic configuration against `current`: `pause` only when it must change, so
    /// an unpaused cluster has no diff.
    fn desired_dcs(&self, current: &serde_json::Value) -> serde_json::Value {
        let mut desired = render::dcs_config(self.spec);
        if self.spec.paused || current.get("pause") == Some(&serde_json::Value::Bool(true)) {
            desired["pause"] = serde_json::Value::Bool(self.spec.paused);
        }
        desired
    }

    /// Writes the spec's dynamic configuration through `leader` with `PATCH /config`, or `PUT`
    /// where the DCS holds none. Returns what was written, or `None` when nothing differs.
    ///
    /// The DCS holds none when Patroni bootstrapped nothing (a cluster that adopted its data):
    /// its leader then writes its local settings at a later loop, and until it has, `GET` and
    /// `PATCH /config` answer `502`/`503`; the whole configuration is written instead.
    async fn write_dynamic_config(
        &self,
        leader: &str,
    ) -> Result<Option<serde_json::Value>, Failure> {
        let current = match self.api.config(leader).await {
            Ok(current) => current,
            Err(e) if self.dcs_config_missing().await => {
                tracing::debug!(error = %e, "no dynamic configuration in the DCS yet");
                self.progress.step(leader, "patroni dynamic configuration");
                return self.put_dynamic_config(leader).await.map(Some);
            }
            Err(e) => return Err(e.into()),
        };
        let desired = self.desired_dcs(&current);
        let Some(patch) = patroni_api::config_patch(&current, &desired) else {
            return Ok(None);
        };
        self.progress.step(leader, "patroni dynamic configuration");
        match self.patch_dcs(leader, &patch).await {
            Ok(()) => Ok(Some(patch)),
            Err(e) if !e.is_conflict() && self.dcs_config_missing().await => {
                self.put_dynamic_config(leader).await.map(Some)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT /config` with the spec's whole dynamic configuration; returns it.
    async fn put_dynamic_config(&self, leader: &str) -> Result<serde_json::Value, Failure> {
        let desired = self.desired_dcs(&serde_json::Value::Null);
        self.api.put_config(leader, &desired).await?;
        Ok(desired)
    }

    /// `PATCH /config` through `host`, again after a `409 Conflict`: Patroni answers it when
    /// its cached view of the DCS is older than the store (seen during an etcd member move),
    /// and the same patch succeeds once its watch catches up.
    pub(super) async fn patch_dcs(
        &self,
        host: &str,
        patch: &serde_json::Value,
    ) -> Result<(), patroni_api::ApiError> {
        const TRIES: u32 = 5;
        let mut attempt = 1;
        loop {
            match self.api.patch_config(host, patch).await {
                Err(e) if e.is_conflict() && attempt < TRIES => attempt += 1,
                done => return done,
            }
            tokio::time::sleep(2 * self.waits.every).await;
        }
    }

    /// Whether the DCS provably holds no dynamic configuration for this cluster.
    async fn dcs_config_missing(&self) -> bool {
        let key = format!(
            "{}{}/config",
            self.spec.patroni.namespace, self.spec.patroni.scope
        );
        let stored = self
            .etcd
            .get_key(self.spec, &self.etcd_endpoints(), &key)
            .await;
        matches!(stored, Ok(None))
    }

    /// Parameters, timing and pause through `PATCH /config`, then restarts only where pending.
    /// Returns the leader's host.
    pub(super) async fn dynamic_config(&self) -> Result<String, Failure> {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let view = self.api.cluster_any(&members).await?;
        let Some(leader) = view.leader_host(&members) else {
            let why = "Patroni has no single leader: dynamic configuration not applied";
            return Err(Failure::new(HostErrorKind::Patroni, why));
        };
        let t = Instant::now();
        let Some(patch) = self.write_dynamic_config(&leader).await? else {
            return Ok(leader);
        };
        self.rec.step(
            &leader,
            "patroni dynamic configuration",
            true,
            t,
            vec![patch.to_string()],
        );
        // Members see the change on their next loop; then some need a restart.
        let a_loop = Duration::from_secs(u64::from(self.spec.patroni.loop_wait) + 3);
        tokio::time::sleep(a_loop.min(self.waits.patroni)).await;
        let view = self.api.cluster(&leader).await?;
        let mut pending: Vec<(&String, bool)> = members
            .iter()
            .filter_map(|h| {
                view.members
                    .iter()
                    .find(|m| m.name == member_name(h) && m.pending_restart)
                    .map(|m| (h, m.is_leader()))
            })
            .collect();
        pending.sort_by_key(|(_, is_leader)| *is_leader); // replicas first, the leader last
        for (host, _) in pending {
            let t = Instant::now();
            self.progress.step(host, "restart for pending parameters");
            self.api
                .act(host, patroni_api::MemberAction::RestartPending)
                .await?;
            self.rec
                .step(host, "restart for pending parameters", true, t, vec![]);
        }
        Ok(leader)
    }
}
