//! The status conditions, computed purely from what a reconcile learned, and merged with the
//! previous ones so that `lastTransitionTime` only moves when a condition's status changes.
//! Condition types and reasons are named here once (the split-brain reasons come from
//! [`SplitBrain::reason`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::Failback;
use crate::engine::HostError;
use crate::engine::observe::Verdict;
use crate::engine::split_brain::SplitBrain;

/// The condition types pgmetal writes, in the order it writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// `spec.paused` is set.
    ReconciliationPaused,
    /// Every etcd member is healthy.
    EtcdHealthy,
    /// One Patroni leader, every replica streaming.
    PatroniHealthy,
    /// HAProxy routes to the leader and the replicas.
    RoutingReady,
    /// This reconcile changed the hosts, or a switchover runs or waits.
    Progressing,
    /// Something is wrong with a host or a member.
    Degraded,
    /// The cluster is healthy.
    Ready,
    /// Backups are in order (`spec.backup` only): the repository answers, WAL is archived, no
    /// scheduled backup is overdue.
    BackupReady,
    /// `Progressing` again, under the name kstatus reads.
    Reconciling,
    /// An invalid spec or missing Secret stops all work (kstatus).
    Stalled,
}

impl ConditionType {
    /// All types, in the order [`compute`] writes them.
    pub const ALL: [ConditionType; 10] = [
        Self::ReconciliationPaused,
        Self::EtcdHealthy,
        Self::PatroniHealthy,
        Self::RoutingReady,
        Self::Progressing,
        Self::Degraded,
        Self::Ready,
        Self::BackupReady,
        Self::Reconciling,
        Self::Stalled,
    ];

    /// The `type` field's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReconciliationPaused => "ReconciliationPaused",
            Self::EtcdHealthy => "EtcdHealthy",
            Self::PatroniHealthy => "PatroniHealthy",
            Self::RoutingReady => "RoutingReady",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Ready => "Ready",
            Self::BackupReady => "BackupReady",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }

    /// The type of a condition, if pgmetal writes it.
    pub fn of(c: &Condition) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == c.type_)
    }
}

/// A condition's `status` (pgmetal never writes `Unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
}

impl Status {
    /// The `status` field's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
        }
    }
}

impl From<bool> for Status {
    fn from(ok: bool) -> Self {
        if ok { Self::True } else { Self::False }
    }
}

/// Every reason pgmetal writes on a condition.
pub mod reason {
    /// ReconciliationPaused=True.
    pub const SPEC_PAUSED: &str = "SpecPaused";
    /// ReconciliationPaused=False.
    pub const ACTIVE: &str = "Active";
    /// BackupReady=True.
    pub const BACKUPS_IN_ORDER: &str = "BackupsInOrder";
    /// BackupReady=False (the message says why).
    pub const BACKUPS_NOT_IN_ORDER: &str = "BackupsNotInOrder";
    /// EtcdHealthy=True.
    pub const ALL_MEMBERS_HEALTHY: &str = "AllMembersHealthy";
    /// EtcdHealthy or PatroniHealthy False; a Degraded problem from the observation.
    pub const MEMBERS_UNHEALTHY: &str = "MembersUnhealthy";
    /// PatroniHealthy=True.
    pub const LEADER_AND_REPLICAS_RUNNING: &str = "LeaderAndReplicasRunning";
    /// RoutingReady without HAProxy hosts.
    pub const NO_HAPROXY_HOSTS: &str = "NoHAProxyHosts";
    /// RoutingReady=True.
    pub const ROUTING_TO_LEADER: &str = "RoutingToLeader";
    /// RoutingReady=False.
    pub const ROUTING_WRONG: &str = "RoutingWrong";
    /// Progressing=True for a switchover.
    pub const SWITCHOVER: &str = "Switchover";
    /// Progressing=True for changed hosts or a running converge; Ready=False while one runs.
    pub const CONVERGING: &str = "Converging";
    /// Progressing=False.
    pub const CONVERGED: &str = "Converged";
    /// Degraded=True for a converge that failed as a whole (etcd quorum, dynamic configuration);
    /// Progressing=False after any failed converge, until the retry.
    pub const CONVERGE_FAILED: &str = "ConvergeFailed";
    /// Degraded=True for a host another cluster claims (the message names it).
    pub const HOST_CLAIMED: &str = "HostClaimed";
    /// Degraded=True for an unclaimed host holding data or services pgmetal did not make (the
    /// message names them, and the annotation that adopts PostgreSQL data).
    pub const HOST_NOT_FREE: &str = "HostNotFree";
    /// Degraded=True and Stalled=True: the planner refused a topology change (quorum, a data
    /// directory of another cluster); nothing was changed, and the message says what to do.
    pub const TOPOLOGY_REFUSED: &str = "TopologyRefused";
    /// Degraded=True for a host that failed or is unreachable.
    pub const HOST_FAILED: &str = "HostFailed";
    /// Degraded=True for a primary other than the preferred one.
    pub const FAILED_OVER: &str = "FailedOver";
    /// Degraded=False.
    pub const AS_DESIRED: &str = "AsDesired";
    /// Ready=True.
    pub const CLUSTER_HEALTHY: &str = "ClusterHealthy";
    /// Ready=False while paused.
    pub const PAUSED: &str = "Paused";
    /// Ready=False with problems observed.
    pub const NOT_HEALTHY: &str = "NotHealthy";
    /// Ready=False before any observation.
    pub const NOT_OBSERVED: &str = "NotObserved";
    /// Stalled=False.
    pub const NOT_STALLED: &str = "NotStalled";
    /// Reconciling=True: the hosts match the spec and this generation has not been Ready yet.
    pub const WAITING_FOR_READY: &str = "WaitingForReady";
    /// Ready=False and Stalled=True: the spec does not validate.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Ready=False and Stalled=True: a referenced Secret or key is missing.
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// Ready=False and Stalled=True: `bootstrap.recovery.targetTime` lies outside the source
    /// cluster's recovery window (looked at again: the window grows).
    pub const OUTSIDE_RECOVERY_WINDOW: &str = "OutsideRecoveryWindow";
}

/// A problem that stops all work (invalid spec, missing Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// [`reason::INVALID_SPEC`], [`reason::SECRET_MISSING`] or
    /// [`reason::OUTSIDE_RECOVERY_WINDOW`].
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The actual primary is not the preferred one (after a failover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPreferred {
    /// The host running the leader.
    pub actual: String,
    /// `spec.postgres.primary`.
    pub preferred: String,
    /// `spec.patroni.failback`.
    pub failback: Failback,
}

/// Everything the conditions are derived from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `spec.paused`.
    pub paused: bool,
    /// A problem that stops all work.
    pub blocked: Option<Blocked>,
    /// Hosts the last converge could not reach or finish.
    pub host_errors: Vec<HostError>,
    /// What failed the last converge as a whole (etcd quorum, dynamic configuration).
    pub converge_failure: Option<crate::engine::Failure>,
    /// The observation's verdict (None when nothing could be observed).
    pub verdict: Option<Verdict>,
    /// Changes made by the converge this reconcile picked up; > 0 means Progressing.
    pub changed: usize,
    /// A converge of the hosts is running: what it is doing. Progressing, and not Ready.
    pub converging: Option<String>,
    /// A switchover in progress or just done: a message.
    pub switchover: Option<String>,
    /// The actual primary, when it is not the preferred one.
    pub off_preferred: Option<OffPreferred>,
    /// HAProxy hosts in the spec.
    pub haproxy_hosts: usize,
    /// A forked history or two primaries (the split-brain guard).
    pub split_brain: Option<SplitBrain>,
    /// This generation has been Ready once (see [`settled`]): a later problem is Degraded, not
    /// Reconciling.
    pub settled: bool,
    /// Whether backups are in order, and what `status.backup` says (None without backups).
    pub backup: Option<(bool, String)>,
}

impl Facts {
    /// Observed, with no problem in the observation, no failed host and no split brain.
    pub fn healthy(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| v.all().is_empty())
            && self.host_errors.is_empty()
            && self.converge_failure.is_none()
            && self.split_brain.is_none()
    }
}

/// One reason for Degraded, in the order they are reported.
struct Problem {
    reason: &'static str,
    message: String,
}

fn cond(
    t: ConditionType,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: t.as_str().into(),
        status: Status::from(ok).as_str().into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// The conditions for these facts (nine, and BackupReady with backups): pgmetal's own, plus `Reconciling` and `Stalled`, which
/// mirror `Progressing` and a blocked `Ready` for GitOps tools (Flux, Argo CD: kstatus).
pub fn compute(f: &Facts, generation: Option<i64>) -> Vec<Condition> {
    let g = generation;
    let v = f.verdict.as_ref();
    let problems = problems(f);
    let progressing = progressing(f, g);
    let reconciling = reconciling(f, &progressing, &problems, g);
    let backup = f.backup.as_ref().map(|(ok, message)| {
        let why = if *ok {
            reason::BACKUPS_IN_ORDER
        } else {
            reason::BACKUPS_NOT_IN_ORDER
        };
        cond(ConditionType::BackupReady, *ok, why, message.clone(), g)
    });
    let mut out = vec![
        paused(f, g),
        health(
            ConditionType::EtcdHealthy,
            v.map(|v| &v.etcd),
            (
                reason::ALL_MEMBERS_HEALTHY,
                "Every etcd member answers its health check.",
            ),
            g,
        ),
        health(
            ConditionType::PatroniHealthy,
            v.map(|v| &v.patroni),
            (
                reason::LEADER_AND_REPLICAS_RUNNING,
                "One leader; every replica is streaming.",
            ),
            g,
        ),
        routing(f, g),
        progressing,
        degraded(f, &problems, g),
        ready(f, &problems, g),
    ];
    out.extend(backup);
    out.extend([reconciling, stalled(f, g)]);
    out
}

fn paused(f: &Facts, g: Option<i64>) -> Condition {
    if f.paused {
        cond(
            ConditionType::ReconciliationPaused,
            true,
            reason::SPEC_PAUSED,
            "spec.paused is true: pgmetal does not converge the hosts and Patroni is in maintenance mode (no automatic failover). Set spec.paused to false to resume.",
            g,
        )
    } else {
        cond(
            ConditionType::ReconciliationPaused,
            false,
            reason::ACTIVE,
            "pgmetal converges the hosts.",
            g,
        )
    }
}

/// EtcdHealthy or PatroniHealthy from that area's problems (None: not observed).
fn health(
    t: ConditionType,
    problems: Option<&Vec<String>>,
    (ok_reason, ok_message): (&str, &str),
    g: Option<i64>,
) -> Condition {
    match problems {
        Some(p) if p.is_empty() => cond(t, true, ok_reason, ok_message, g),
        Some(p) => cond(t, false, reason::MEMBERS_UNHEALTHY, p.join("; "), g),
        None => cond(t, false, reason::MEMBERS_UNHEALTHY, "Not observed yet.", g),
    }
}

fn routing(f: &Facts, g: Option<i64>) -> Condition {
    let v = f.verdict.as_ref();
    let ok = v.is_some_and(|v| v.routing.is_empty());
    let (reason, message) = match v {
        _ if f.haproxy_hosts == 0 => (
            reason::NO_HAPROXY_HOSTS,
            "No HAProxy hosts in the spec: the rendered haproxy.cfg is published in the ConfigMap <cluster>-haproxy.".to_string(),
        ),
        _ if ok => (
            reason::ROUTING_TO_LEADER,
            "HAProxy routes read-write to the leader and read-only to the replicas.".into(),
        ),
        Some(v) => (reason::ROUTING_WRONG, v.routing.join("; ")),
        None => (reason::ROUTING_WRONG, "Not observed yet.".into()),
    };
    cond(ConditionType::RoutingReady, ok, reason, message, g)
}

fn progressing(f: &Facts, g: Option<i64>) -> Condition {
    let (ok, reason, message) = match (&f.switchover, f.changed) {
        _ if f.converging.is_some() => (
            true,
            reason::CONVERGING,
            f.converging.clone().unwrap_or_default(),
        ),
        (Some(s), _) => (true, reason::SWITCHOVER, s.clone()),
        // Not matching the spec, and not progressing until the retry (Degraded says why).
        (None, _) if !f.host_errors.is_empty() || f.converge_failure.is_some() => (
            false,
            reason::CONVERGE_FAILED,
            "The last converge did not finish (see Degraded); it is retried with backoff.".into(),
        ),
        (None, 0) => (false, reason::CONVERGED, "The hosts match the spec.".into()),
        (None, n) => (
            true,
            reason::CONVERGING,
            format!("{n} changes applied to the hosts by the last converge."),
        ),
    };
    cond(ConditionType::Progressing, ok, reason, message, g)
}

/// `Reconciling` (what kstatus reads as InProgress): Progressing, and also a generation that
/// has not been Ready yet while nothing blocks or pauses it (replicas still cloning after a
/// converge); otherwise False, repeating Progressing.
fn reconciling(
    f: &Facts,
    progressing: &Condition,
    problems: &[Problem],
    g: Option<i64>,
) -> Condition {
    let t = ConditionType::Reconciling;
    if let Some(b) = &f.blocked {
        return cond(t, false, b.reason, "Blocked: see Stalled.", g);
    }
    let idle = progressing.status == Status::False.as_str();
    if idle && f.paused {
        return cond(t, false, reason::PAUSED, "Reconciliation is paused.", g);
    }
    if idle && !f.settled && !f.healthy() {
        let why = match problems.is_empty() {
            true => "not observed yet".to_string(),
            false => joined(problems),
        };
        let message =
            format!("The hosts match the spec; waiting for the cluster to be Ready: {why}");
        return cond(t, true, reason::WAITING_FOR_READY, message, g);
    }
    Condition {
        type_: t.as_str().into(),
        ..progressing.clone()
    }
}

/// Whether `generation` has been Ready: the last written `Reconciling` is False for it with
/// reason Converged (written only once healthy, or already settled).
pub fn settled(old: &[Condition], generation: Option<i64>) -> bool {
    old.iter().any(|c| {
        ConditionType::of(c) == Some(ConditionType::Reconciling)
            && c.status == Status::False.as_str()
            && c.observed_generation == generation
            // Written False only once healthy, or, failing later, already settled.
            && [reason::CONVERGED, reason::CONVERGE_FAILED].contains(&c.reason.as_str())
    })
}

/// Everything Degraded reports: split brain, failed hosts, the observation, a failover.
fn problems(f: &Facts) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(sb) = &f.split_brain {
        out.push(Problem {
            reason: sb.reason(),
            message: sb.message(),
        });
    }
    // A host's failure first: it is usually why the converge as a whole failed.
    for e in &f.host_errors {
        out.push(Problem {
            reason: match e.kind {
                crate::engine::HostErrorKind::Claimed => reason::HOST_CLAIMED,
                crate::engine::HostErrorKind::NotFree => reason::HOST_NOT_FREE,
                _ => reason::HOST_FAILED,
            },
            message: format!("host {}: {e}", e.host),
        });
    }
    if let Some(e) = &f.converge_failure {
        out.push(Problem {
            reason: match e.kind {
                crate::engine::HostErrorKind::Refused => reason::TOPOLOGY_REFUSED,
                _ => reason::CONVERGE_FAILED,
            },
            message: format!("the last converge failed: {e}"),
        });
    }
    for p in f.verdict.as_ref().map(Verdict::all).unwrap_or_default() {
        out.push(Problem {
            reason: reason::MEMBERS_UNHEALTHY,
            message: p,
        });
    }
    if let Some(o) = &f.off_preferred {
        out.push(Problem {
            reason: reason::FAILED_OVER,
            message: failed_over(o),
        });
    }
    out
}

fn failed_over(o: &OffPreferred) -> String {
    let (actual, preferred) = (&o.actual, &o.preferred);
    let what = match o.failback {
        Failback::Automatic => {
            format!("fail-back to {preferred} follows once it is healthy and caught up")
        }
        Failback::Manual => format!(
            "failback is Manual: set spec.postgres.primary to {actual} to accept it, or switch back by keeping {preferred} and setting spec.patroni.failback to Automatic"
        ),
    };
    format!("the primary is {actual}, not the preferred {preferred}, after a failover; {what}")
}

fn joined(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn degraded(f: &Facts, problems: &[Problem], g: Option<i64>) -> Condition {
    match problems.first() {
        Some(first) if f.blocked.is_none() => cond(
            ConditionType::Degraded,
            true,
            first.reason,
            joined(problems),
            g,
        ),
        _ => cond(
            ConditionType::Degraded,
            false,
            reason::AS_DESIRED,
            "Nothing is degraded.",
            g,
        ),
    }
}

fn ready(f: &Facts, problems: &[Problem], g: Option<i64>) -> Condition {
    let t = ConditionType::Ready;
    if let Some(b) = &f.blocked {
        return cond(t, false, b.reason, b.message.clone(), g);
    }
    if let Some(msg) = &f.converging
        && f.verdict.is_some()
    {
        return cond(t, false, reason::CONVERGING, msg.clone(), g);
    }
    // The status that reports a converge's changes still says Progressing (see
    // `progressing`): a generation not Ready yet waits for the next look, so that it first
    // turns Ready with Reconciling=False (kstatus: InProgress until Ready, then Current). A
    // Ready generation stays Ready through a drift repair.
    if f.changed > 0 && !f.settled && f.healthy() {
        let why = format!(
            "{} changes applied to the hosts by the last converge; looking again.",
            f.changed
        );
        return cond(t, false, reason::CONVERGING, why, g);
    }
    if f.healthy() {
        return cond(
            t,
            true,
            reason::CLUSTER_HEALTHY,
            "etcd healthy, one Patroni leader, replicas streaming, HAProxy routing correctly.",
            g,
        );
    }
    if f.paused {
        return cond(t, false, reason::PAUSED, "Reconciliation is paused.", g);
    }
    let reason = if f.verdict.is_some() {
        reason::NOT_HEALTHY
    } else {
        reason::NOT_OBSERVED
    };
    let message = if problems.is_empty() {
        "Waiting for the first observation.".into()
    } else {
        joined(problems)
    };
    cond(t, false, reason, message, g)
}

fn stalled(f: &Facts, g: Option<i64>) -> Condition {
    let refused = f
        .converge_failure
        .as_ref()
        .filter(|e| e.kind == crate::engine::HostErrorKind::Refused);
    match (&f.blocked, refused) {
        (Some(b), _) => cond(ConditionType::Stalled, true, b.reason, b.message.clone(), g),
        (None, Some(e)) => cond(
            ConditionType::Stalled,
            true,
            reason::TOPOLOGY_REFUSED,
            e.message.clone(),
            g,
        ),
        (None, None) => cond(
            ConditionType::Stalled,
            false,
            reason::NOT_STALLED,
            "The spec is valid and its Secrets are present.",
            g,
        ),
    }
}

/// `Reconciling` and `Stalled` repeat `Progressing` and `Ready` for GitOps tools; their
/// transitions are not announced again as events.
pub fn is_mirror(c: &Condition) -> bool {
    matches!(
        ConditionType::of(c),
        Some(ConditionType::Reconciling | ConditionType::Stalled)
    )
}

/// True for a condition a person should look at: Degraded or Stalled True, or a health condition
/// False (Ready False only because a converge runs is expected, not bad).
pub fn is_bad(c: &Condition) -> bool {
    use ConditionType::*;
    match ConditionType::of(c) {
        Some(Degraded | Stalled) => c.status == Status::True.as_str(),
        Some(Ready) if c.reason == reason::CONVERGING => false,
        Some(Ready | EtcdHealthy | PatroniHealthy | RoutingReady | BackupReady) => {
            c.status == Status::False.as_str()
        }
        _ => false,
    }
}

/// Keeps each old condition's `lastTransitionTime` when its status did not change.
pub fn merge(old: &[Condition], mut new: Vec<Condition>) -> Vec<Condition> {
    for c in &mut new {
        if let Some(o) = old.iter().find(|o| o.type_ == c.type_)
            && o.status == c.status
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    new
}

/// Conditions whose status changed (or are new): (type, new status, reason, message), for events.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Condition> {
    new.iter()
        .filter(|c| {
            old.iter()
                .find(|o| o.type_ == c.type_)
                .is_none_or(|o| o.status != c.status || o.reason != c.reason)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
