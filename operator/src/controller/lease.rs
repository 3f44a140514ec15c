//! Leader election over a `coordination.k8s.io/v1` Lease, so that two operator replicas never converge the same cluster at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// Where the Lease lives, who we are, and how long a claim lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease object.
    pub namespace: String,
    /// Name of the Lease object.
    pub name: String,
    /// This replica's identity (e.g. the pod name); must differ between replicas.
    pub identity: String,
    /// How long a claim stays valid without renewal (written as `leaseDurationSeconds`, rounded up).
    pub lease_duration: Duration,
    /// How often the holder renews and a contender retries.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// A config with the defaults: 15 s lease, renewed every 5 s.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn duration_secs(&self) -> i32 {
        let ms = self.lease_duration.as_millis().max(1000);
        i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
    }

    /// The holder gives up once no renewal succeeded for this long: one renew interval short of the
    /// lease duration (client-go's 10 s of 15 s), so it stops before a contender may take over.
    fn renew_deadline(&self) -> Duration {
        let d = self.lease_duration.saturating_sub(self.renew_every);
        d.max(self.lease_duration / 2)
    }
}

/// Proof of holding the Lease; a background task keeps renewing it until released, lost or dropped.
#[derive(Debug)]
pub struct Leadership {
    leader: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
    api: Api<Lease>,
    cfg: LeaseConfig,
}

/// What one acquire-or-renew attempt found.
#[derive(Debug)]
enum Attempt {
    /// We hold the Lease (created, taken over, or renewed).
    Held,
    /// Someone else holds a valid claim.
    HeldBy(String),
    /// Another writer changed the Lease between our read and write; retry.
    Conflict,
}

/// Blocks until this identity holds the lease, then keeps renewing it in a background task.
///
/// Transient failures (network, 5xx, 429, conflicts) are retried every `renew_every`; client
/// errors such as 403 (missing RBAC) or 404 (missing namespace) are returned.
pub async fn acquire(client: kube::Client, cfg: LeaseConfig) -> Result<Leadership, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    loop {
        let started = Instant::now();
        match timeout(cfg.renew_every, try_acquire_or_renew(&api, &cfg)).await {
            Ok(Ok(Attempt::Held)) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                let (tx, rx) = watch::channel(true);
                let task = tokio::spawn(renew_loop(api.clone(), cfg.clone(), tx, started));
                return Ok(Leadership {
                    leader: rx,
                    task: Some(task),
                    api,
                    cfg,
                });
            }
            Ok(Ok(other)) => tracing::debug!(lease = %cfg.name, ?other, "lease not free yet"),
            Ok(Err(e)) if is_fatal(&e) => return Err(e),
            other => tracing::warn!(lease = %cfg.name, ?other, "acquiring lease failed; retrying"),
        }
        sleep(cfg.renew_every.saturating_sub(started.elapsed())).await;
    }
}

impl Leadership {
    /// Resolves when leadership is gone: renewals failed for longer than the renew deadline
    /// (`lease_duration - renew_every`), or another holder took the Lease. Stop converging then.
    pub async fn lost(&mut self) {
        // An error means the renew task ended, which only happens after it cleared the flag.
        let _ = self.leader.wait_for(|held| !*held).await;
    }

    /// Whether this replica still holds the Lease.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Best effort: stop renewing and clear `holderIdentity` so a successor takes over at once.
    pub async fn release(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let cleared = async {
            let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
                return Ok(false);
            }
            let now = MicroTime(Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            self.api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        };
        match timeout(self.cfg.renew_every, cleared).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.cfg.name, "released leadership"),
            Ok(Ok(false)) => {
                tracing::debug!(lease = %self.cfg.name, "lease no longer ours; nothing to release")
            }
            Ok(Err::<_, kube::Error>(e)) => {
                tracing::warn!(lease = %self.cfg.name, error = %e, "releasing lease failed")
            }
            Err(_) => tracing::warn!(lease = %self.cfg.name, "releasing lease timed out"),
        }
    }
}

impl Drop for Leadership {
    /// Dropping without `release` stops renewing; the Lease then expires after its duration.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Renews every `renew_every`; on failure retries twice as often until the renew deadline passes.
async fn renew_loop(
    api: Api<Lease>,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    mut last_ok: Instant,
) {
    let deadline = cfg.renew_deadline();
    let mut interval = cfg.renew_every;
    loop {
        let remaining = deadline.saturating_sub(last_ok.elapsed());
        sleep(interval.min(remaining)).await;
        let remaining = deadline.saturating_sub(last_ok.elapsed());
        if remaining.is_zero() {
            tracing::error!(lease = %cfg.name, "could not renew lease before the deadline; leadership lost");
            break;
        }
        let started = Instant::now();
        match timeout(remaining, try_acquire_or_renew(&api, &cfg)).await {
            Ok(Ok(Attempt::Held)) => {
                last_ok = started;
                interval = cfg.renew_every;
                continue;
            }
            Ok(Ok(Attempt::HeldBy(holder))) => {
                tracing::error!(lease = %cfg.name, %holder, "another replica took the lease; leadership lost");
                break;
            }
            other => tracing::warn!(lease = %cfg.name, ?other, "lease renewal failed"),
        }
        interval = cfg.renew_every / 2;
    }
    let _ = tx.send(false);
}

/// One round of client-go's `tryAcquireOrRenew`, guarded by `resourceVersion`.
async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.duration_secs()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                Ok(Attempt::Conflict)
            }
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(cfg.identity.as_str());
    if !ours {
        if let Some(holder) = holder.as_ref().filter(|_| !expired(spec, now)) {
            return Ok(Attempt::HeldBy(holder.clone()));
        }
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(cfg.duration_secs());
    // `lease.metadata.resource_version` is still the one we read: a concurrent writer gets 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(s)) if s.is_conflict() => Ok(Attempt::Conflict),
        Err(e) => Err(e),
    }
}

/// True when `renewTime + leaseDurationSeconds` is in the past (or the record is incomplete).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    // Cannot overflow: timestamps are < 2^48 ms, durations < 2^41 ms.
    renew.0.as_millisecond() + i64::from(secs) * 1000 < now.as_millisecond()
}

/// Errors not worth retrying: client errors other than conflicts and rate limiting.
fn is_fatal(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renew_ms: i64, secs: i32) -> LeaseSpec {
        let renew = Timestamp::from_millisecond(renew_ms).ok().map(MicroTime);
        LeaseSpec {
            renew_time: renew,
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn expiry_uses_renew_time_plus_duration() {
        let now = Timestamp::from_millisecond(100_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(!expired(&spec(90_000, 15), now));
        assert!(expired(&spec(84_000, 15), now));
        assert!(expired(&LeaseSpec::default(), now));
    }

    #[test]
    fn durations_round_up_and_deadline_precedes_expiry() {
        let mut cfg = LeaseConfig::new("ns", "l", "me");
        assert_eq!(cfg.duration_secs(), 15);
        assert_eq!(cfg.renew_deadline(), Duration::from_secs(10));
        cfg.lease_duration = Duration::from_millis(2500);
        cfg.renew_every = Duration::from_secs(2);
        assert_eq!(cfg.duration_secs(), 3);
        assert_eq!(cfg.renew_deadline(), Duration::from_millis(1250));
    }
}
