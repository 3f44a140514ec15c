//! Declarative switchover and fail-back: decide (pure) whether the primary must move to
//! `spec.postgres.primary`, with the checks patronictl makes, then ask Patroni to do it.

use std::time::Duration;

use crate::api::{Failback, MemberStatus, PostgresClusterSpec};
use crate::engine::patroni_api::Member as _;
use crate::engine::patroni_api::{ClusterMember, Patroni};
use crate::render::member_name;

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
    paused: bool,
) -> Decision {
    let target = &spec.postgres.primary;
    let Some(leader) = members.iter().find(|m| m.is_leader()) else {
        return Decision::Stay;
    };
    if &leader.host == target || paused {
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
        Some(lag) if lag as u64 <= spec.patroni.maximum_lag_on_failover => Decision::Switchover {
            from: leader.host.clone(),
            to: target.clone(),
            why,
        },
        Some(lag) => Decision::Wait(format!(
            "{why}, but {target} lags {lag} bytes (limit {})",
            spec.patroni.maximum_lag_on_failover
        )),
        None => Decision::Wait(format!("{why}, but the lag of {target} is unknown")),
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
}

/// How long a switchover may take to show its new leader.
const SWITCHOVER_LIMIT: Duration = Duration::from_secs(90);

/// Runs the switchover through the current leader and waits for the new leader.
pub async fn perform(api: &dyn Patroni, from: &str, to: &str) -> Result<(), SwitchoverError> {
    let (leader, candidate) = (member_name(from), member_name(to));
    api.switchover(from, &leader, &candidate)
        .await
        .map_err(|source| SwitchoverError::Request {
            to: to.to_string(),
            source,
        })?;
    let name = &candidate;
    crate::engine::poll(SWITCHOVER_LIMIT, Duration::from_secs(1), || async move {
        let view = api.cluster(to).await.map_err(|_| ())?;
        let leads = |m: &ClusterMember| m.name == *name && m.is_running_leader();
        view.members.iter().any(leads).then_some(()).ok_or(())
    })
    .await
    .map_err(|()| SwitchoverError::NotLeader {
        to: to.to_string(),
        candidate,
        waited: SWITCHOVER_LIMIT,
    })
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
            matches!(decide(&spec("Manual"), Some("b"), &members, false), Decision::Switchover { ref to, .. } if to == "a")
        );
        let lagging = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(50_000_000)),
        ];
        assert!(
            matches!(decide(&spec("Manual"), Some("b"), &lagging, false), Decision::Wait(ref w) if w.contains("lags"))
        );
        assert_eq!(
            decide(&spec("Manual"), Some("b"), &members, true),
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
            decide(&spec("Manual"), Some("a"), &members, false),
            Decision::Stay
        );
        assert!(matches!(
            decide(&spec("Automatic"), Some("a"), &members, false),
            Decision::Switchover { .. }
        ));
        let down = [
            m("b", "leader", "running", None),
            m("a", "replica", "stopped", None),
        ];
        assert!(matches!(
            decide(&spec("Automatic"), Some("a"), &down, false),
            Decision::Wait(_)
        ));
        let home = [m("a", "leader", "running", None)];
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &home, false),
            Decision::Stay
        );
    }

    #[tokio::test]
    async fn perform_asks_the_leader_with_member_names_and_waits_for_the_candidate() {
        use crate::engine::fake::{FakePatroni, view};
        let api = FakePatroni::new(view("10.0.0.1", &["10.0.0.2"]), serde_json::json!({}));
        perform(&api, "10.0.0.1", "10.0.0.2").await.unwrap();
        let calls = api.calls();
        assert_eq!(
            calls[0], "switchover 10.0.0.1 10-0-0-1->10-0-0-2",
            "{calls:?}"
        );
        assert!(
            calls[1..].iter().all(|c| c == "cluster 10.0.0.2"),
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
        assert_eq!(api.calls().len(), 1, "no waiting after a refusal");
    }

    #[test]
    fn lag_wait_names_the_lag_and_the_limit_and_pause_wins_over_failback() {
        let lagging = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(50_000_000)),
        ];
        let limit = spec("Automatic").patroni.maximum_lag_on_failover;
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &lagging, false),
            Decision::Wait(format!(
                "fail-back to the preferred primary a, but a lags 50000000 bytes (limit {limit})"
            ))
        );
        let caught_up = [
            m("b", "leader", "running", None),
            m("a", "replica", "streaming", Some(0)),
        ];
        assert_eq!(
            decide(&spec("Automatic"), Some("a"), &caught_up, true),
            Decision::Stay
        );
    }
}
