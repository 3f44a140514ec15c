//! Member operations asked for declaratively, by annotations on the resource (or on the CLI's
//! manifest): a rolling restart (`pgmetal.io/restart-at: <any new value, e.g. a timestamp>`)
//! a replica's reinitialization (`pgmetal.io/reinit: <host>`) and a backup
//! (`pgmetal.io/backup-now: <any new value>`, of the type `pgmetal.io/backup-type` names:
//! `full`, the default, or `diff`). Each value is carried out
//! once: what was done is recorded in etcd (and mirrored in `status.requests`), so re-applying
//! the same manifest does nothing. Removing an annotation forgets its record, so the same value
//! can be asked again later.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Engine;
use super::error::{Failure, HostErrorKind};
use super::patroni_api::{ClusterView, Member as _, MemberAction};
use super::patroni_view::Handover;
use crate::api::RequestsStatus;
use crate::render::member_name;

/// Annotation asking for a rolling restart of every member.
pub const RESTART_AT: &str = "pgmetal.io/restart-at";
/// Annotation asking to reinitialize one replica (its host).
pub const REINIT: &str = "pgmetal.io/reinit";
/// Annotation asking for a backup now (any new value, e.g. a timestamp).
pub const BACKUP_NOW: &str = "pgmetal.io/backup-now";
/// Annotation naming the type of that backup: `full` (default) or `diff`.
pub const BACKUP_TYPE: &str = "pgmetal.io/backup-type";

/// What the annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// `pgmetal.io/restart-at`.
    pub restart_at: Option<String>,
    /// `pgmetal.io/reinit`.
    pub reinit: Option<String>,
    /// `pgmetal.io/backup-now`, and the type `pgmetal.io/backup-type` names.
    pub backup_now: Option<(String, crate::api::BackupType)>,
    /// `pgmetal.io/adopt`: the hosts whose existing PostgreSQL data the cluster adopts on first
    /// contact, each with its system identifier (see [`super::first_contact`]).
    pub adopt: BTreeMap<String, String>,
    /// `pgmetal.io/take-over-from-cli`: the CLI cluster whose hosts the operator takes over.
    pub take_over: Option<String>,
}

impl Asked {
    /// From a resource's annotations (empty values ask for nothing).
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |k: &str| {
            let v = annotations?.get(k)?.trim();
            (!v.is_empty()).then(|| v.to_string())
        };
        let kind = match get(BACKUP_TYPE).as_deref() {
            Some("diff" | "differential") => crate::api::BackupType::Differential,
            _ => crate::api::BackupType::Full,
        };
        Asked {
            restart_at: get(RESTART_AT),
            reinit: get(REINIT),
            backup_now: get(BACKUP_NOW).map(|v| (v, kind)),
            adopt: super::first_contact::adoptions(annotations),
            take_over: get(super::claim::TAKE_OVER),
        }
    }

    /// True when no member operation is asked (adoption is not one: it acts on first contact).
    fn asks_nothing(&self) -> bool {
        self.restart_at.is_none() && self.reinit.is_none() && self.backup_now.is_none()
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl Engine<'_> {
    fn requests_key(&self) -> String {
        format!("/pgmetal/{}/requests", self.spec.patroni.scope)
    }

    /// Carries out what is asked and not yet done, then records it (in etcd and the report).
    pub(super) async fn carry_out_requests(&self, leader: &str) -> Result<(), Failure> {
        let endpoints = self.etcd_endpoints();
        let key = self.requests_key();
        let recorded = match self.etcd.get_key(self.spec, &endpoints, &key).await {
            Ok(recorded) => recorded,
            // Nothing asked: forgetting an old record can wait for the next converge.
            Err(_) if self.asked.asks_nothing() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut done: RequestsStatus = recorded
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let before = done.clone();
        let asked = self.asked.clone();
        if asked.restart_at.is_none() {
            (done.restart_at, done.restarted_at) = (None, None);
        }
        if asked.reinit.is_none() {
            (done.reinit, done.reinitialized_at) = (None, None);
        }
        if asked.backup_now.is_none() {
            (done.backup_now, done.backed_up_at) = (None, None);
        }
        if let Some(at) = asked
            .restart_at
            .filter(|a| done.restart_at.as_ref() != Some(a))
        {
            let name = format!("rolling restart ({RESTART_AT}: {at})");
            self.timed(&name, self.rolling_restart()).await?;
            (done.restart_at, done.restarted_at) = (Some(at), Some(now()));
            self.save_requests(&done).await?;
        }
        if let Some(host) = asked.reinit.filter(|h| done.reinit.as_ref() != Some(h)) {
            let name = format!("reinitialize {host} ({REINIT})");
            self.timed(&name, self.reinitialize(&host)).await?;
            (done.reinit, done.reinitialized_at) = (Some(host), Some(now()));
            self.save_requests(&done).await?;
        }
        if let Some((value, kind)) = asked
            .backup_now
            .filter(|(v, _)| done.backup_now.as_ref() != Some(v))
        {
            let name = format!("{} backup ({BACKUP_NOW}: {value})", kind.as_str());
            self.timed(&name, self.backup_now(kind, Some(leader)))
                .await?;
            (done.backup_now, done.backed_up_at) = (Some(value), Some(now()));
            self.save_requests(&done).await?;
        }
        if done != before {
            self.save_requests(&done).await?;
        }
        self.rec.requests(done);
        Ok(())
    }

    async fn save_requests(&self, done: &RequestsStatus) -> Result<(), Failure> {
        let value = serde_json::to_string(done)
            .map_err(|e| Failure::new(HostErrorKind::Other, e.to_string()))?;
        let endpoints = self.etcd_endpoints();
        let key = self.requests_key();
        self.etcd.put_key(self.spec, &endpoints, &key, value).await
    }

    async fn view(&self) -> Result<(ClusterView, String), Failure> {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let view = self.api.cluster_any(&members).await?;
        let leader = view
            .leader_host(&members)
            .ok_or_else(|| Failure::new(HostErrorKind::Patroni, "Patroni has no single leader"))?;
        Ok((view, leader))
    }

    /// Asks `host`'s member for `action` (again while Patroni is busy with another action,
    /// such as the demotion a switchover left running) and waits until it streams (or leads).
    async fn act_and_wait(&self, host: &str, action: MemberAction) -> Result<(), Failure> {
        let t = Instant::now();
        self.progress.step(host, action.label());
        let started = |n: super::patroni_api::NodeStatus| n.postmaster_start_time;
        let before = self.api.node(host).await.ok().and_then(started);
        let (limit, every) = (self.waits.patroni, self.waits.every * 2);
        let attempt = || async move {
            match self.api.act(host, action).await {
                Err(e) if e.message.contains("already in progress") => Err(e),
                done => Ok(done),
            }
        };
        super::poll(limit, every, attempt).await??;
        // A reinitialization runs in the background: wait until PostgreSQL started again.
        let before = &before;
        let restarted = || async move {
            let now = self.api.node(host).await.ok().and_then(started);
            if now.is_some() && now != *before {
                Ok(())
            } else {
                Err(())
            }
        };
        super::poll(limit, every, restarted).await.map_err(|()| {
            let why = format!(
                "PostgreSQL on {host} did not start again within {} s",
                limit.as_secs()
            );
            Failure::new(HostErrorKind::Patroni, why)
        })?;
        let name = member_name(host);
        self.wait_member_healthy(host, &name).await?;
        self.rec.step(host, action.label(), true, t, vec![]);
        Ok(())
    }

    /// Waits until member `name` is a healthy replica or the running leader.
    async fn wait_member_healthy(&self, host: &str, name: &str) -> Result<(), Failure> {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let (members, name) = (&members, name);
        let (limit, every) = (self.waits.patroni, self.waits.every);
        super::poll(limit, every, || async move {
            let view = self.api.cluster_any(members).await.map_err(|_| ())?;
            let m = view.members.iter().find(|m| m.name == name);
            match m {
                Some(m) if m.is_running_leader() || m.is_healthy_replica() => Ok(()),
                _ => Err(()),
            }
        })
        .await
        .map_err(|()| {
            let why = format!(
                "member {name} did not stream again within {} s: check `journalctl -u patroni` on {host}",
                limit.as_secs()
            );
            Failure::new(HostErrorKind::Patroni, why)
        })
    }

    /// Replicas restart one at a time; then the primary hands over to a streaming replica,
    /// restarts, and takes the primary back when the spec prefers it.
    async fn rolling_restart(&self) -> Result<(), Failure> {
        let (view, leader) = self.view().await?;
        let replicas: Vec<String> = self
            .spec
            .postgres
            .hosts()
            .filter(|h| **h != leader)
            .filter(|h| view.members.iter().any(|m| m.name == member_name(h)))
            .cloned()
            .collect();
        for r in &replicas {
            self.act_and_wait(r, MemberAction::Restart).await?;
        }
        let Some(to) = replicas.first() else {
            // A single member restarts in place.
            return self.act_and_wait(&leader, MemberAction::Restart).await;
        };
        self.hand_over((&leader, to), view.followers(&member_name(&leader)))
            .await?;
        self.act_and_wait(&leader, MemberAction::Restart).await?;
        if self.spec.postgres.primary == leader {
            let (view, _) = self.view().await?;
            self.hand_over((to, &leader), view.followers(&member_name(to)))
                .await?;
        }
        Ok(())
    }

    /// A switchover from the leader `from` to `to`, waited for until it is done (see
    /// [`ClusterView::after_switchover`]): `to` leads, and `followers` (member names: the old
    /// leader and the replicas that streamed before, unless it leaves) stream on its timeline.
    pub(super) async fn hand_over(
        &self,
        (from, to): (&str, &str),
        followers: Vec<String>,
    ) -> Result<(), Failure> {
        let t = Instant::now();
        let (leader, candidate) = (member_name(from), member_name(to));
        // Through the candidate, which must answer anyway.
        self.api.switchover(to, &leader, &candidate).await?;
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let (limit, every) = (self.waits.patroni, self.waits.every);
        let waits = (limit, every);
        let done =
            super::patroni_api::settled(&*self.api, &members, (&candidate, &followers), waits)
                .await;
        let secs = limit.as_secs();
        let why = match done {
            Ok(()) => {
                let did = vec![format!("{from} -> {to}")];
                self.rec.step(to, "switchover", true, t, did);
                return Ok(());
            }
            Err(Handover::Behind(behind)) => format!(
                "switched over from {from} to {to}, but {} did not stream on its timeline within \
                 {secs} s: check `journalctl -u patroni` there",
                behind.join(", ")
            ),
            Err(_) => format!(
                "the switchover from {from} to {to} left no running leader on {to} within {secs} s"
            ),
        };
        Err(Failure::new(HostErrorKind::Patroni, why))
    }

    /// Reinitializes the replica on `host`: a new basebackup replaces its data. Refused for the
    /// leader and for a host that is no member of the spec.
    async fn reinitialize(&self, host: &str) -> Result<(), Failure> {
        let (view, leader) = self.view().await?;
        let member = view.members.iter().any(|m| m.name == member_name(host));
        let named = self.spec.postgres.hosts().any(|h| h == host);
        if host == leader || !member || !named {
            let what = if host == leader {
                "the primary"
            } else {
                "no replica of this cluster"
            };
            let why = format!(
                "{REINIT} names {host}, which is {what}: only a replica is reinitialized (its data is replaced \
                 by a basebackup). Nothing was changed. Name a replica, or remove the annotation"
            );
            return Err(Failure::new(HostErrorKind::Refused, why));
        }
        self.act_and_wait(host, MemberAction::Reinitialize).await
    }
}
