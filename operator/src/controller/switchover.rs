//! Declarative switchover and fail-back: decide (pure) whether the primary must move to
//! `spec.postgres.primary`, with the checks patronictl makes, then ask Patroni to do it.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Failback, FailbackStatus, MemberStatus, PostgresClusterSpec};
use crate::engine::patroni_api::Member as _;
use crate::engine::patroni_api::{Patroni, settled};
use crate::engine::patroni_view::Handover;
use crate::render::member_name;

/// What else decides whether the primary may move now.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// Paused (the spec, or Patroni's maintenance mode): nothing moves.
    pub paused: bool,
    /// `status.failback`: the clocks of automatic fail-back.
    pub failback: Option<&'a FailbackStatus>,
    /// Now.
    pub now: Timestamp,
}

/// What to do about the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The primary is where it should be (or may stay where it is).
    Stay,
    /// Switch over from the current leader's host to the preferred host.
    Switchover {
        from: String,
        to: String,
        why: String,
        /// An automatic fail-back (not a switchover the spec asked for).
        failback: bool,
    },
    /// The primary should move but the candidate is not ready; the message says why.
    Wait(String),
}

/// Decides from the spec, the last enacted preferred primary and the observed members.
/// `enacted` is `status.preferredPrimary`: when the spec names another host the user asked
/// for a switchover; when they agree, a different actual primary means a failover happened.
pub fn decide(
    spec: &PostgresClusterSpec,
    enacted: Option<&str>,
    members: &[MemberStatus],
    gate: &Gate,
) -> Decision {
    let target = &spec.postgres.primary;
    let Some(leader) = members.iter().find(|m| m.is_leader()) else {
        return Decision::Stay;
    };
    if &leader.host == target || gate.paused {
        return Decision::Stay;
    }
    let asked = enacted != Some(target.as_str());
    if !asked && spec.patroni.failback == Failback::Manual {
        return Decision::Stay;
    }
    let why = if asked {
        format!("spec.postgres.primary is {target}")
    } else {
        format!("fail-back to the preferred primary {target}")
    };
    let Some(c) = members.iter().find(|m| &m.host == target) else {
        return Decision::Wait(format!("{why}, but {target} is not a Patroni member yet"));
    };
    if !c.is_healthy_replica() {
        return Decision::Wait(format!(
            "{why}, but {target} is {} (not streaming)",
            c.state
        ));
    }
    match c.lag_bytes {
        Some(lag) if lag as u64 <= spec.patroni.maximum_lag_on_failover => {
            if let Some(wait) = (!asked).then(|| hysteresis(spec, gate)).flatten() {
                return Decision::Wait(format!("{why}, but {wait}"));
            }
            Decision::Switchover {
                from: leader.host.clone(),
                to: target.clone(),
                why,
                failback: !asked,
            }
        }
        Some(lag) => Decision::Wait(format!(
            "{why}, but {target} lags {lag} bytes (limit {})",
            spec.patroni.maximum_lag_on_failover
        )),
        None => Decision::Wait(format!("{why}, but the lag of {target} is unknown")),
    }
}

/// Why an automatic fail-back must wait although the preferred primary is caught up: it has
/// not been healthy for `failbackDelaySeconds`, or the last fail-back is more recent than
/// `failbackMinIntervalSeconds`.
fn hysteresis(spec: &PostgresClusterSpec, gate: &Gate) -> Option<String> {
    let p = &spec.patroni;
    let target = &spec.postgres.primary;
    let secs = |t: &Time| gate.now.duration_since(t.0).as_secs().max(0);
    let healthy = gate
        .failback
        .and_then(|f| f.preferred_healthy_since.as_ref())
        .map_or(0, secs);
    if healthy < i64::from(p.failback_delay_seconds) {
        return Some(format!(
            "{target} has been a healthy replica for {healthy} s of the {} s spec.patroni.failbackDelaySeconds asks",
            p.failback_delay_seconds
        ));
    }
    let last = gate.failback.and_then(|f| f.last_at.as_ref()).map(secs)?;
    (last < i64::from(p.failback_min_interval_seconds)).then(|| {
        format!(
            "the last fail-back was {last} s ago, and spec.patroni.failbackMinIntervalSeconds allows one per {} s",
            p.failback_min_interval_seconds
        )
    })
}

/// The fail-back clocks after this observation: since when the preferred primary has been a
/// healthy replica within the lag limit (reset when it is not), and the last fail-back.
pub fn track(
    spec: &PostgresClusterSpec,
    members: &[MemberStatus],
    old: Option<&FailbackStatus>,
    now: Timestamp,
) -> FailbackStatus {
    let limit = spec.patroni.maximum_lag_on_failover;
    let healthy = members.iter().any(|m| {
        m.host == spec.postgres.primary
            && m.is_healthy_replica()
            && m.lag_bytes.is_some_and(|l| l as u64 <= limit)
    });
    let since = old.and_then(|f| f.preferred_healthy_since.clone());
    FailbackStatus {
        preferred_healthy_since: healthy.then(|| since.unwrap_or(Time(now))),
        last_at: old.and_then(|f| f.last_at.clone()),
    }
}

/// Why a switchover did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    /// The leader's Patroni refused or did not answer `POST /switchover`.
    #[error("switchover to {to}: {source}")]
    Request {
        /// The candidate host.
        to: String,
        /// Patroni's answer.
        source: crate::engine::patroni_api::ApiError,
    },
    /// Patroni accepted it, but the candidate was not the running leader in time.
    #[error("switchover to {to}: {candidate} did not become leader within {} s", .waited.as_secs())]
    NotLeader {
        /// The candidate host.
        to: String,
        /// Its Patroni member name.
        candidate: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The candidate leads, but members that streamed before do not stream on its timeline yet.
    #[error(
        "switched over to {to}, but {} did not stream on its timeline within {} s: until they do, losing {to} could promote a member on the timeline {to} already took",
        .behind.join(", "),
        .waited.as_secs()
    )]
    NotSettled {
        /// The new leader's host.
        to: String,
        /// The members (names) not streaming on its timeline.
        behind: Vec<String>,
        /// How long it was waited for.
        waited: Duration,
    },
}

/// How long a switchover may take to show its new leader with every follower on its timeline.
const SWITCHOVER_LIMIT: Duration = Duration::from_secs(120);

/// Runs the switchover through the current leader and waits until it is done: the new leader
/// runs, and the old leader and every replica that streamed before stream on its timeline.
pub async fn perform(api: &dyn Patroni, from: &str, to: &str) -> Result<(), SwitchoverError> {
    perform_within(api, (from, to), SWITCHOVER_LIMIT).await
}

async fn perform_within(
    api: &dyn Patroni,
    (from, to): (&str, &str),
    limit: Duration,
) -> Result<(), SwitchoverError> {
    let (leader, candidate) = (member_name(from), member_name(to));
    let followers = api
        .cluster(from)
        .await
        .map(|v| v.followers(&leader))
        .unwrap_or_else(|_| vec![leader.clone()]);
    api.switchover(from, &leader, &candidate)
        .await
        .map_err(|source| SwitchoverError::Request {
            to: to.to_string(),
            source,
        })?;
    let ask = [to.to_string()];
    let waits = (limit, Duration::from_secs(1));
    match settled(api, &ask, (&candidate, &followers), waits).await {
        Ok(()) => Ok(()),
        Err(Handover::Behind(behind)) => Err(SwitchoverError::NotSettled {
            to: to.to_string(),
            behind,
            waited: limit,
        }),
        Err(_) => Err(SwitchoverError::NotLeader {
            to: to.to_string(),
            candidate,
            waited: limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(failback: &str) -> PostgresClusterSpec {
        serde_saphyr::from_str(&format!(
            "ssh: {{privateKeySecret: {{name: k, key: k}}}}\npostgres: {{primary: a, replicas: [b]}}\netcd: {{hosts: [a]}}\npatroni: {{failback: {failback}}}\n"
        ))
        .unwrap()
    }
    /// Not paused, the preferred primary healthy for an hour, no fail-back before.
    fn open() -> Gate<'static> {
        static SETTLED: std::sync::LazyLock<FailbackStatus> =
            std::sync::LazyLock::new(|| FailbackStatus {
                preferred_healthy_since: Some(Time(ago(3600))),
                last_at: None,
            });
        Gate {
            paused: false,
            failback: Some(&SETTLED),
            now: Timestamp::now(),
        }
    }
    fn paused() -> Gate<'static> {
        Gate {
            paused: true,
            ..open()
        }
    }
    fn ago(secs: i64) -> Timestamp {
        Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(secs)
    }
    fn m(host: &str, role: &str, state: &str, lag: Option<i64>) -> MemberStatus {
        MemberStatus {
            host: host.into(),
            name: host.into(),
            role: role.into(),
            state: state.into(),
            lag_bytes: lag,
            ..Default::default()
        }
    }

    #[test]
    fn spec_change_switches_over_when_candidate_is_caught_up() {
        let members = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        assert!(
            matches!(decide(&spec("Manual"), Some("b"), &members, &open()), Decision::Switchover { ref to, .. } if to == "a")
        );
        let lagging = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(50_000_000)),
        ];
        assert!(
            matches!(decide(&spec("Manual"), Some("b"), &lagging, &open()), Decision::Wait(ref w) if w.contains("lags"))
        );
        assert_eq!(
            decide(&spec("Manual"), Some("b"), &members, &paused()),
            Decision::Stay,
            "never while paused"
        );
    }

    #[test]
    fn failover_fails_back_only_when_automatic() {
        let members = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        assert_eq!(
            decide(&spec("Manual"), Some("a"), &members, &open()),
            Decision::Stay
        );
        assert!(matches!(
            decide(&spec("Automatic"), Some("a"), &members, &open()),
            Decision::Switchover { .. }
        ));
        let down = [
            m("b", "leader", "running", None),
            m("a", "replica", "stopped", None),
        ];
        assert!(matches!(
            decide(&spec("Automatic"), Some("a"), &down, &open()),
            Decision::Wait(_)
        ));
        let home = [m("a", "leader", "running", None)];
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &home, &open()),
            Decision::Stay
        );
    }

    #[tokio::test]
    async fn perform_asks_the_leader_with_member_names_and_waits_for_the_candidate() {
        use crate::engine::fake::{FakePatroni, view};
        let api = FakePatroni::new(view("10.0.0.1", &["10.0.0.2"]), serde_json::json!({}));
        perform(&api, "10.0.0.1", "10.0.0.2").await.unwrap();
        let calls = api.calls();
        assert_eq!(calls[0], "cluster 10.0.0.1", "who must follow: {calls:?}");
        assert_eq!(
            calls[1], "switchover 10.0.0.1 10-0-0-1->10-0-0-2",
            "{calls:?}"
        );
        assert!(
            calls[2..].iter().all(|c| c == "cluster 10.0.0.2"),
            "{calls:?}"
        );
        let now = api.current();
        assert_eq!(now.leaders()[0].name, "10-0-0-2");
    }

    #[tokio::test]
    async fn perform_surfaces_patronis_refusal_with_the_host() {
        use crate::engine::fake::{FakePatroni, view};
        let api = FakePatroni::new(view("a", &["b"]), serde_json::json!({}));
        api.fail_switchover("412 Precondition Failed: candidate name does not match");
        let e = perform(&api, "a", "b").await.unwrap_err();
        assert!(
            matches!(e, SwitchoverError::Request { ref to, .. } if to == "b"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("Patroni REST API on a") && e.contains("412"),
            "{e}"
        );
        assert_eq!(api.current().leaders()[0].name, "a", "nothing moved");
        assert_eq!(api.calls().len(), 2, "no waiting after a refusal");
    }

    #[tokio::test]
    async fn a_switchover_is_done_only_when_every_follower_streams_on_the_new_timeline() {
        use crate::engine::fake::{FakePatroni, view};
        // c streamed before but stays on timeline 1: losing b now could promote c there.
        let api = FakePatroni::new(view("a", &["b", "c"]), serde_json::json!({}));
        api.stays_behind("c");
        let e = perform_within(&api, ("a", "b"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SwitchoverError::NotSettled { behind, .. } if behind == &["c".to_string()]),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("switched over to b, but c did not stream on its timeline"),
            "{text}"
        );
        // A member that was down before the switchover is not waited for.
        let mut before = view("a", &["b", "c"]);
        before.members[2].state = "stopped".into();
        let api = FakePatroni::new(before, serde_json::json!({}));
        api.stays_behind("c");
        perform_within(&api, ("a", "b"), Duration::from_secs(2))
            .await
            .unwrap();
        let now = api.current();
        assert_eq!(now.members[0].timeline, Some(2), "a follows on timeline 2");
    }

    #[test]
    fn lag_wait_names_the_lag_and_the_limit_and_pause_wins_over_failback() {
        let lagging = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(50_000_000)),
        ];
        let limit = spec("Automatic").patroni.maximum_lag_on_failover;
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &lagging, &open()),
            Decision::Wait(format!(
                "fail-back to the preferred primary a, but a lags 50000000 bytes (limit {limit})"
            ))
        );
        let caught_up = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &caught_up, &paused()),
            Decision::Stay
        );
    }

    #[test]
    fn fail_back_waits_until_the_preferred_host_has_been_healthy_long_enough_and_not_too_often() {
        let spec = spec("Automatic");
        let members = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        let now = Timestamp::now();
        let before = |secs| Time(now - k8s_openapi::jiff::SignedDuration::from_secs(secs));
        let clocks = |healthy: Option<i64>, last: Option<i64>| FailbackStatus {
            preferred_healthy_since: healthy.map(before),
            last_at: last.map(before),
        };
        let gate = |f| Gate {
            paused: false,
            failback: Some(f),
            now,
        };
        let just_back = clocks(Some(10), None);
        let Decision::Wait(w) = decide(&spec, Some("a"), &members, &gate(&just_back)) else {
            panic!("fail-back after 10 s of health");
        };
        assert!(w.contains("healthy replica for 10 s of the 60 s"), "{w}");
        let flapping = clocks(Some(120), Some(300));
        let Decision::Wait(w) = decide(&spec, Some("a"), &members, &gate(&flapping)) else {
            panic!("a second fail-back within 600 s");
        };
        assert!(
            w.contains("300 s ago") && w.contains("one per 600 s"),
            "{w}"
        );
        let ready = clocks(Some(61), Some(601));
        assert!(matches!(
            decide(&spec, Some("a"), &members, &gate(&ready)),
            Decision::Switchover { failback: true, .. }
        ));
        // A switchover the spec asks for is not held back by the fail-back clocks.
        let asked = decide(&spec, Some("b"), &members, &gate(&just_back));
        assert!(
            matches!(
                asked,
                Decision::Switchover {
                    failback: false,
                    ..
                }
            ),
            "{asked:?}"
        );
    }

    #[test]
    fn the_healthy_clock_starts_when_the_preferred_host_streams_and_resets_when_it_does_not() {
        let spec = spec("Automatic");
        let streaming = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        let now = Timestamp::now();
        let first = track(&spec, &streaming, None, now);
        assert_eq!(first.preferred_healthy_since, Some(Time(now)));
        let later = track(&spec, &streaming, Some(&first), ago(-30));
        assert_eq!(
            later.preferred_healthy_since,
            Some(Time(now)),
            "kept while healthy"
        );
        let down = [
            m("b", "leader", "running", None),
            m("a", "replica", "stopped", None),
        ];
        assert_eq!(
            track(&spec, &down, Some(&later), now).preferred_healthy_since,
            None
        );
        let lagging = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(50_000_000)),
        ];
        assert_eq!(
            track(&spec, &lagging, Some(&later), now).preferred_healthy_since,
            None
        );
        let with_last = FailbackStatus {
            last_at: Some(Time(now)),
            ..later
        };
        assert_eq!(
            track(&spec, &down, Some(&with_last), now).last_at,
            Some(Time(now))
        );
    }
}
