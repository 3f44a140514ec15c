//! The reconcile pipeline for one PostgresCluster: validate → dereference → pick up a finished
//! converge → start a converge task when one is due → observe → switchover / fail-back (never
//! while a converge runs) → status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::conditions::{self, Blocked, Facts, OffPreferred, reason};
use super::converge_task::{Live, Outcome, Running, Start};
use super::dereference::{self, Resolved};
use super::hosts::{connect_hosts, record_hosts, verified_hosts};
use super::step_events::{StepEvents, publish_steps};
use super::switchover::{self, Decision};
use super::{Context, Error, Memo, failover};
use crate::api::{FailbackStatus, HostStatus, PostgresCluster, PostgresClusterStatus};
use crate::engine::etcd_api::Etcd;
use crate::engine::patroni_api::Patroni;
use crate::engine::{self, observe, split_brain};

/// Observation interval: status follows a failover within this plus one observation.
pub const OBSERVE_EVERY: Duration = Duration::from_secs(5);
/// A converge with no spec or Secret change still runs this often, to correct drift.
const RECONVERGE_EVERY: Duration = Duration::from_secs(600);

/// Reconciles an existing (not deleted) PostgresCluster.
pub async fn apply(pgc: Arc<PostgresCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(&pgc.name_any());
    let spec = &pgc.spec;
    let old = pgc.status.clone().unwrap_or_default();
    let mut facts = Facts {
        paused: spec.paused,
        haproxy_hosts: spec.haproxy.hosts.len(),
        settled: conditions::settled(&old.conditions, pgc.metadata.generation),
        ..Default::default()
    };
    let mut status = remembered(&old);
    let resolved = match prepare(&ctx, &pgc).await {
        Ok(r) => r,
        Err((blocked, action)) => {
            ctx.metrics.reconcile_error(&pgc.name_any(), blocked.reason);
            facts.blocked = Some(blocked);
            write_status(&ctx, &pgc, &old, status, &facts).await?;
            return Ok(action);
        }
    };
    let key = key(&pgc);
    let inputs = inputs_hash(&pgc, &resolved);
    let verified = verified_hosts(spec, &old.hosts);
    let made_for = format!("{inputs} {}", verified.join(","));
    let api = ctx.observer(&key, &made_for, || {
        ctx.backend.patroni(spec, &resolved, verified)
    });
    let etcd = ctx.backend.etcd(spec, &resolved);
    let finished = ctx.converges.take_finished(&key);
    if let Some(done) = &finished {
        pick_up(&ctx, &key, done, &mut status, &mut facts);
    }
    if let Some(m) = ctx.memo(&key) {
        // What the last converge left stays Degraded until the next one.
        (facts.host_errors, facts.converge_failure) = (m.host_errors, m.failure);
    }
    let stats = resolved.secrets.haproxy_stats.clone();
    let ssh_key = (resolved.private_key.clone(), resolved.known_hosts.clone());
    let strays = strays(spec, &old);
    start_if_due(
        &ctx,
        &pgc,
        (resolved, inputs),
        &key,
        (&status.hosts, strays),
    );
    let running = ctx.converges.running(&key);
    facts.converging = announced(running.as_ref());
    let busy = running.is_some();
    let observed = observe_and_switch(
        &ctx,
        &pgc,
        (&*api, &*etcd, &stats),
        (&old, busy),
        &mut status,
        &mut facts,
    )
    .await;
    status = over(status, observed);
    if !busy && super::backups::due(&pgc, &status) {
        let key = (ssh_key.0.as_str(), ssh_key.1.as_deref());
        status.backup = super::backups::look(&*ctx.backend, &pgc, key, &status).await;
    }
    status.plan = running.map(|r| r.plan).unwrap_or_default();
    ctx.metrics
        .set_cluster_ready(&pgc.name_any(), facts.healthy());
    if let Err(e) = write_status(&ctx, &pgc, &old, status, &facts).await {
        // Not lost: the next reconcile writes it.
        if let Some(done) = finished {
            ctx.converges.restore(&key, done);
        }
        return Err(e);
    }
    Ok(requeue(&ctx, &key))
}

/// What status remembers from one reconcile to the next; the rest is observed afresh.
fn remembered(s: &PostgresClusterStatus) -> PostgresClusterStatus {
    PostgresClusterStatus {
        preferred_primary: s.preferred_primary.clone(),
        hosts: s.hosts.clone(),
        leader_timeline: s.leader_timeline.clone(),
        failback: s.failback.clone(),
        last_failover: s.last_failover.clone(),
        system_identifier: s.system_identifier.clone(),
        etcd_cluster_id: s.etcd_cluster_id.clone(),
        requests: s.requests.clone(),
        backup: s.backup.clone(),
        ..Default::default()
    }
}

/// The remembered fields over a fresh observation; the system identifier and the etcd cluster
/// ID are recorded once (what Wipe checks data directories against).
fn over(kept: PostgresClusterStatus, observed: PostgresClusterStatus) -> PostgresClusterStatus {
    PostgresClusterStatus {
        system_identifier: kept
            .system_identifier
            .or(observed.system_identifier.clone()),
        etcd_cluster_id: kept.etcd_cluster_id.or(observed.etcd_cluster_id.clone()),
        preferred_primary: kept.preferred_primary,
        hosts: kept.hosts,
        leader_timeline: kept.leader_timeline,
        failback: kept.failback,
        last_failover: kept.last_failover,
        requests: kept.requests,
        backup: kept.backup,
        ..observed
    }
}

/// Observe again within [`OBSERVE_EVERY`], sooner when a failed converge's backoff ends (a
/// running converge's outcome is picked up within that interval too).
fn requeue(ctx: &Context, key: &str) -> Action {
    let retry = ctx
        .memo(key)
        .and_then(|m| m.retry_at)
        .map(|t| t.saturating_duration_since(Instant::now()));
    Action::requeue(retry.map_or(OBSERVE_EVERY, |r| {
        r.clamp(Duration::from_secs(1), OBSERVE_EVERY)
    }))
}

/// The running converge the conditions announce (Progressing and Reconciling True, Ready
/// False): not a paused cluster's maintenance pass, not the periodic drift check.
pub fn announced(running: Option<&Running>) -> Option<String> {
    running
        .filter(|r| !r.paused && !r.drift_check)
        .map(|r| r.message.clone())
}

/// A Patroni member the spec does not name (a removed host that came back) starts a converge
/// (which decommissions it) at most this often.
const STRAY_EVERY: Duration = Duration::from_secs(30);

/// Whether the last observation saw a Patroni member on a host the spec does not name.
fn strays(spec: &crate::api::PostgresClusterSpec, old: &PostgresClusterStatus) -> bool {
    let named = crate::render::all_hosts(spec);
    old.members.iter().any(|m| !named.contains(&m.host))
}

/// Whether a converge is due: never converged (since the operator started), the spec or a
/// Secret changed, a failed converge's backoff is over, or the last one is old (drift).
pub fn due(memo: Option<&Memo>, inputs: &str) -> bool {
    memo.is_none_or(|m| {
        m.inputs != inputs
            || m.retry_at.is_some_and(|t| Instant::now() >= t)
            || m.converged_at.elapsed() > RECONVERGE_EVERY
    })
}

/// Takes a finished converge into this reconcile: its memo (with its errors), hosts and changes.
fn pick_up(
    ctx: &Context,
    key: &str,
    done: &Outcome,
    status: &mut PostgresClusterStatus,
    facts: &mut Facts,
) {
    ctx.remember(key, done.memo.clone());
    status.hosts = done.hosts.clone();
    if done.requests.is_some() {
        status.requests = done.requests.clone();
    }
    status.backup = done.backup.clone();
    facts.changed = done.changed;
}

/// Starts a converge task when one is due (always when paused: it keeps Patroni in
/// maintenance mode) and none is running or waiting to be picked up.
fn start_if_due(
    ctx: &Arc<Context>,
    pgc: &Arc<PostgresCluster>,
    (resolved, inputs): (Resolved, String),
    key: &str,
    (hosts, strays): (&[HostStatus], bool),
) {
    let memo = ctx.memo(key);
    let stray_due = strays
        && memo
            .as_ref()
            .is_some_and(|m| m.converged_at.elapsed() > STRAY_EVERY);
    if !pgc.spec.paused && !stray_due && !due(memo.as_ref(), &inputs) {
        return;
    }
    let drift_check = memo
        .as_ref()
        .is_some_and(|m| m.inputs == inputs && m.retry_at.is_none());
    let start = Start {
        inputs,
        failures: memo.map_or(0, |m| m.failures),
        hosts: hosts.to_vec(),
        paused: pgc.spec.paused,
        drift_check,
    };
    let (c, p) = (ctx.clone(), pgc.clone());
    let work = move |live, start| converge(c, p, resolved, start, live);
    if ctx.converges.start(key, start, work) {
        tracing::info!(cluster = %key, "converge started");
    }
}

/// Validates the spec and reads its Secrets; when either fails, what blocks the cluster and when
/// to look again.
async fn prepare(ctx: &Context, pgc: &PostgresCluster) -> Result<Resolved, (Blocked, Action)> {
    if let Err(e) = crate::validate::validate(pgc, None) {
        let blocked = Blocked {
            reason: reason::INVALID_SPEC,
            message: e.to_string(),
        };
        return Err((blocked, Action::await_change()));
    }
    if let Err(message) = super::recovery_window::check(&ctx.client, pgc).await {
        let blocked = Blocked {
            reason: reason::OUTSIDE_RECOVERY_WINDOW,
            message,
        };
        return Err((blocked, Action::requeue(Duration::from_secs(30))));
    }
    dereference::resolve(&ctx.client, pgc).await.map_err(|e| {
        let blocked = Blocked {
            reason: reason::SECRET_MISSING,
            message: e.to_string(),
        };
        (blocked, Action::requeue(Duration::from_secs(15)))
    })
}

/// The converge task's work: converges the hosts (paused: no SSH, only Patroni's maintenance
/// mode), reporting its phase to `live`, and returns what happened to each host.
async fn converge(
    ctx: Arc<Context>,
    pgc: Arc<PostgresCluster>,
    resolved: Resolved,
    start: Start,
    live: Arc<Live>,
) -> Outcome {
    let spec = &pgc.spec;
    let mut hosts = start.hosts;
    // Paused: no SSH; only Patroni's pause is set, through hosts verified before.
    let (conns, verified) = if start.paused {
        (BTreeMap::new(), verified_hosts(spec, &hosts))
    } else {
        let conns = connect_hosts(&*ctx.backend, (&pgc, &resolved), &mut hosts).await;
        (conns, Vec::new())
    };
    let owner = owner(&pgc);
    let secrets = &resolved.secrets;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let run = async {
        let progress = StepEvents { live: &live, tx };
        let asked = engine::requests::Asked::from_annotations(pgc.metadata.annotations.as_ref());
        let trusted = engine::trusted(&conns, verified);
        let api = ctx.backend.patroni(spec, &resolved, trusted);
        let clients = (api, ctx.backend.etcd(spec, &resolved));
        let mut pins = ctx.ca_pins(&key(&pgc), resolved.ca.as_ref());
        pins.extend(resolved.pins.iter().cloned());
        engine::Engine::with_clients((owner, spec), secrets, conns, &progress, clients)
            .with_ca(resolved.ca.clone())
            .with_pins(pins)
            .with_requests(asked)
            .converge()
            .await
    };
    let (report, ()) = tokio::join!(run, publish_steps(&ctx, &pgc, rx));
    for h in report.hosts.values() {
        for s in &h.steps {
            ctx.metrics.ssh_step(&s.step, s.duration_ms as f64 / 1000.0);
        }
    }
    tracing::info!(cluster = %key(&pgc), changed = report.changed, healthy = report.healthy, duration_ms = report.duration_ms, problems = ?report.problems, "converged");
    let host_errors = record_hosts(&report, start.paused, &mut hosts);
    let published = super::publish::publish_all(&ctx, &pgc, secrets).await;
    if let Err(e) = &published {
        tracing::warn!(cluster = %key(&pgc), error = %e, "could not publish haproxy.cfg or the scrape targets; retrying with backoff");
        ctx.metrics
            .reconcile_error(&pgc.name_any(), e.metric_label());
    }
    if report.changed > 0 {
        let note = format!("{} changes applied to the hosts", report.changed);
        publish(&ctx, &pgc, EventType::Normal, "Converged", &note).await;
    }
    let failure = report.failure.clone().or(published.err().map(|e| {
        let kind = crate::engine::HostErrorKind::Kubernetes;
        crate::engine::Failure::new(
            kind,
            format!("publishing haproxy.cfg or scrape targets: {e}"),
        )
    }));
    Outcome {
        hosts,
        requests: report.requests.clone(),
        backup: report.status.backup.clone(),
        changed: report.changed,
        memo: Memo::after(start.inputs, start.failures, host_errors, failure),
    }
}

/// Observes the cluster, switches over or fails back when due and no converge runs (observing
/// again after), and records the primary, split brain and verdict in the facts. Returns the
/// observed status, with `status.preferred_primary` and `status.leader_timeline` updated.
async fn observe_and_switch(
    ctx: &Context,
    pgc: &PostgresCluster,
    (api, etcd, stats): (&dyn Patroni, &dyn Etcd, &str),
    (old, converging): (&PostgresClusterStatus, bool),
    status: &mut PostgresClusterStatus,
    facts: &mut Facts,
) -> PostgresClusterStatus {
    let spec = &pgc.spec;
    let t = Instant::now();
    let mut obs = observe::observe_with(spec, (api, etcd), stats).await;
    ctx.metrics.observe(t.elapsed().as_secs_f64());
    let mut observed = crate::status::from_observation(spec, &obs);
    let now = Timestamp::now();
    let (decision, clocks) = decide(spec, (old, converging), &observed, now);
    status.failback = Some(clocks.clone());
    let switched = matches!(decision, Decision::Switchover { .. });
    match decision {
        Decision::Switchover {
            from,
            to,
            why,
            failback,
        } => {
            if failback {
                // Counted when started, done or not: an unstable host cannot make it flap.
                status.failback = Some(FailbackStatus {
                    last_at: Some(Time(now)),
                    ..clocks
                });
            }
            switch(ctx, pgc, api, (&from, &to, &why), status, facts).await;
            obs = observe::observe_with(spec, (api, etcd), stats).await;
            observed = crate::status::from_observation(spec, &obs);
        }
        Decision::Wait(msg) => facts.switchover = Some(msg),
        Decision::Stay => {}
    }
    // The primary is seen only when it answers for itself: the DCS keeps naming a dead leader
    // until its key expires.
    let answering = obs
        .primaries
        .iter()
        .any(|p| observed.primary.as_ref() == Some(&p.host));
    record_failover(ctx, pgc, (old, &observed), (switched, answering), status).await;
    facts.off_preferred = off_preferred(spec, observed.primary.as_deref(), status);
    let (mark, split_brain) = split_brain::check(old.leader_timeline.as_ref(), &obs.primaries);
    if let Some(sb) = &split_brain
        && !old.conditions.iter().any(|c| c.reason == sb.reason())
    {
        publish(ctx, pgc, EventType::Warning, sb.reason(), &sb.message()).await;
    }
    status.leader_timeline = mark;
    facts.split_brain = split_brain;
    facts.verdict = Some(observe::verdict(spec, &obs));
    observed
}

/// Records a failover (the primary moved without a switchover of pgmetal's) in
/// `status.lastFailover` with a Warning event, and where the primary is seen now.
async fn record_failover(
    ctx: &Context,
    pgc: &PostgresCluster,
    (old, observed): (&PostgresClusterStatus, &PostgresClusterStatus),
    (switched, answering): (bool, bool),
    status: &mut PostgresClusterStatus,
) {
    let key = key(pgc);
    let now = (Timestamp::now(), Instant::now());
    let last = ctx.sighting(&key);
    if let Some(f) = failover::detect(last.as_ref(), old, observed, switched, now) {
        publish(
            ctx,
            pgc,
            EventType::Warning,
            "FailedOver",
            &failover::note(&f),
        )
        .await;
        status.last_failover = Some(f);
    }
    if let Some(s) = failover::Sighting::of(observed, now.1).filter(|_| answering) {
        ctx.saw(&key, s);
    }
}

/// Whether the primary moves now (never while a converge runs: it waits until the converge
/// task has finished), and the fail-back clocks after this observation.
fn decide(
    spec: &crate::api::PostgresClusterSpec,
    (old, converging): (&PostgresClusterStatus, bool),
    observed: &PostgresClusterStatus,
    now: Timestamp,
) -> (Decision, FailbackStatus) {
    let clocks = switchover::track(spec, &observed.members, old.failback.as_ref(), now);
    if converging {
        return (Decision::Stay, clocks);
    }
    let gate = switchover::Gate {
        paused: spec.paused || observed.patroni_paused == Some(true),
        failback: Some(&clocks),
        now,
    };
    let enacted = old.preferred_primary.as_deref();
    (
        switchover::decide(spec, enacted, &observed.members, &gate),
        clocks,
    )
}

/// Switches over from `from` to `to` (`why`: the spec changed, or fail-back), with events.
async fn switch(
    ctx: &Context,
    pgc: &PostgresCluster,
    api: &dyn Patroni,
    (from, to, why): (&str, &str, &str),
    status: &mut PostgresClusterStatus,
    facts: &mut Facts,
) {
    let note = format!("{why}: switching over from {from} to {to}");
    publish(ctx, pgc, EventType::Normal, "SwitchoverStarted", &note).await;
    match switchover::perform(api, from, to).await {
        Ok(()) => {
            let note = format!("{to} is the primary");
            publish(ctx, pgc, EventType::Normal, "SwitchoverCompleted", &note).await;
            facts.switchover = Some(format!("switched over from {from} to {to} ({why})"));
            status.preferred_primary = Some(to.to_string());
        }
        Err(e) => {
            let settling = matches!(e, switchover::SwitchoverError::NotSettled { .. });
            let reason = ["SwitchoverFailed", "SwitchoverNotSettled"][usize::from(settling)];
            publish(ctx, pgc, EventType::Warning, reason, &e.to_string()).await;
            facts.switchover = Some(match settling {
                true => e.to_string(),
                false => format!("switchover to {to} failed, will retry: {e}"),
            });
        }
    }
}

/// Marks the preferred primary as enacted once it leads; after a failover away from an enacted
/// preferred primary, what Degraded reports.
fn off_preferred(
    spec: &crate::api::PostgresClusterSpec,
    actual: Option<&str>,
    status: &mut PostgresClusterStatus,
) -> Option<OffPreferred> {
    let preferred = spec.postgres.primary.as_str();
    if actual == Some(preferred) {
        status.preferred_primary = Some(preferred.to_string());
        return None;
    }
    let actual = actual?;
    (status.preferred_primary.as_deref() == Some(preferred)).then(|| OffPreferred {
        actual: actual.to_string(),
        preferred: preferred.to_string(),
        failback: spec.patroni.failback,
    })
}

/// `namespace/name`: the memo's and the converge task's key, and the logs' cluster.
pub fn key(pgc: &PostgresCluster) -> String {
    format!("{}/{}", pgc.namespace().unwrap_or_default(), pgc.name_any())
}

/// The cluster as its hosts' claims name it: `namespace/name` and the resource's UID.
pub fn owner(pgc: &PostgresCluster) -> engine::claim::Owner {
    engine::claim::Owner {
        name: key(pgc),
        uid: pgc.metadata.uid.clone(),
    }
}

/// What decides whether a converge is due: the spec and the Secrets' content (the CA's
/// certificate included: HAProxy and every certificate follow a changed CA).
fn inputs_hash(pgc: &PostgresCluster, r: &Resolved) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&pgc.spec).unwrap_or_default());
    let asked = engine::requests::Asked::from_annotations(pgc.metadata.annotations.as_ref());
    let backup = asked.backup_now.map(|(v, t)| format!("{v} {}", t.as_str()));
    for part in [asked.restart_at, asked.reinit, backup] {
        h.update(part.unwrap_or_default().as_bytes());
        h.update([0]);
    }
    for part in [
        r.private_key.as_str(),
        r.known_hosts.as_deref().unwrap_or(""),
        &r.secrets.superuser,
        &r.secrets.replication,
        &r.secrets.rewind,
        &r.secrets.restapi,
        &r.secrets.haproxy_stats,
        r.ca.as_ref().map_or("", |ca| ca.cert.as_str()),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (name, c) in &r.secrets.s3 {
        for part in [name, &c.access_key_id, &c.secret_access_key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}

/// Computes conditions, publishes events for transitions, and writes status by server-side apply
/// when anything changed. Never touches spec.
async fn write_status(
    ctx: &Context,
    pgc: &PostgresCluster,
    old: &PostgresClusterStatus,
    mut status: PostgresClusterStatus,
    facts: &Facts,
) -> Result<(), Error> {
    let generation = pgc.metadata.generation;
    let mut facts = facts.clone();
    facts.backup = status.backup.as_ref().map(|b| (b.ready, b.message.clone()));
    let conds = conditions::merge(&old.conditions, conditions::compute(&facts, generation));
    for c in conditions::transitions(&old.conditions, &conds) {
        if conditions::is_mirror(&c) {
            continue;
        }
        let bad = conditions::is_bad(&c);
        // A condition's first appearance is only news when it is bad.
        if !bad && !old.conditions.iter().any(|o| o.type_ == c.type_) {
            continue;
        }
        let kind = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(
            ctx,
            pgc,
            kind,
            &format!("{}{}", c.type_, c.status),
            &c.message,
        )
        .await;
    }
    status.conditions = conds;
    status.observed_generation = generation;
    if &status == old {
        return Ok(());
    }
    let api: Api<PostgresCluster> =
        Api::namespaced(ctx.client.clone(), &pgc.namespace().unwrap_or_default());
    let patch = serde_json::json!({"apiVersion": "pgmetal.io/v1alpha1", "kind": "PostgresCluster", "status": status});
    api.patch_status(
        &pgc.name_any(),
        &PatchParams::apply(super::MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// Best-effort event (a failure to record an event never fails a reconcile).
pub async fn publish(
    ctx: &Context,
    pgc: &PostgresCluster,
    kind: EventType,
    reason: &str,
    note: &str,
) {
    let ev = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pgc.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}
