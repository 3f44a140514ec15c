//! Failovers as the operator sees them: the primary moved from one host to another without a
//! switchover. Recorded in `status.lastFailover` and announced with an Event.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Failover, PostgresClusterStatus};

/// Where the operator last saw a cluster's primary, when, and how far each replica lagged then.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The primary's host.
    pub host: String,
    /// When (the last observation in which it answered for itself as the primary).
    pub at: Instant,
    /// Replication lag in bytes by replica host, as observed then.
    pub lags: BTreeMap<String, i64>,
}

impl Sighting {
    /// The sighting in `observed`, if it has a primary.
    pub fn of(observed: &PostgresClusterStatus, at: Instant) -> Option<Sighting> {
        let lags = observed.members.iter();
        Some(Sighting {
            host: observed.primary.clone()?,
            at,
            lags: lags
                .filter_map(|m| Some((m.host.clone(), m.lag_bytes?)))
                .collect(),
        })
    }
}

/// The failover since the `last` sighting of a primary (or, after an operator restart, the
/// primary `old` status names), if the primary `observed` now is another host and no
/// switchover of pgmetal's moved it (`switched`).
pub fn detect(
    last: Option<&Sighting>,
    old: &PostgresClusterStatus,
    observed: &PostgresClusterStatus,
    switched: bool,
    now: (Timestamp, Instant),
) -> Option<Failover> {
    let from = last.map(|s| s.host.as_str()).or(old.primary.as_deref())?;
    let to = observed.primary.as_deref()?;
    if from == to || switched {
        return None;
    }
    Some(Failover {
        at: Some(Time(now.0)),
        from: from.to_string(),
        to: to.to_string(),
        writes_unavailable_seconds: last
            .map(|s| now.1.duration_since(s.at).as_secs_f64().ceil() as i64),
        lag_bytes_at_failover: last.and_then(|s| s.lags.get(to).copied()),
    })
}

/// The Event's note for a failover.
pub fn note(f: &Failover) -> String {
    let mut note = format!("the primary moved from {} to {} (a failover)", f.from, f.to);
    if let Some(s) = f.writes_unavailable_seconds {
        note.push_str(&format!("; writes unavailable for at most {s} s"));
    }
    if let Some(lag) = f.lag_bytes_at_failover {
        note.push_str(&format!(
            "; {} lagged {lag} bytes when last seen before",
            f.to
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::MemberStatus;

    fn status(primary: &str, lag_of_b: Option<i64>) -> PostgresClusterStatus {
        let m = |host: &str, lag| MemberStatus {
            host: host.into(),
            lag_bytes: lag,
            ..Default::default()
        };
        PostgresClusterStatus {
            primary: Some(primary.into()),
            members: vec![m("a", None), m("b", lag_of_b)],
            ..Default::default()
        }
    }

    #[test]
    fn a_moved_primary_is_a_failover_unless_pgmetal_switched_it() {
        let now = (Timestamp::now(), Instant::now());
        let seen = Sighting::of(
            &status("a", Some(4096)),
            now.1 - Duration::from_millis(7_200),
        )
        .unwrap();
        let leaderless = PostgresClusterStatus::default();
        let f = detect(Some(&seen), &leaderless, &status("b", None), false, now)
            .expect("a failover, across a leaderless observation");
        assert_eq!((f.from.as_str(), f.to.as_str()), ("a", "b"));
        assert_eq!(f.writes_unavailable_seconds, Some(8));
        assert_eq!(f.lag_bytes_at_failover, Some(4096));
        let text = note(&f);
        assert!(
            text.contains("at most 8 s") && text.contains("4096 bytes"),
            "{text}"
        );
        let after_switch = detect(Some(&seen), &leaderless, &status("b", None), true, now);
        assert_eq!(after_switch, None);
        assert_eq!(
            detect(Some(&seen), &leaderless, &status("a", None), false, now),
            None
        );
        // No primary now (the failover is still going on): nothing yet.
        assert_eq!(
            detect(Some(&seen), &status("a", None), &leaderless, false, now),
            None
        );
        // The operator restarted in between: the old status names the primary, when is unknown.
        let f = detect(None, &status("a", None), &status("b", None), false, now).unwrap();
        assert_eq!((f.from.as_str(), f.writes_unavailable_seconds), ("a", None));
    }
}
