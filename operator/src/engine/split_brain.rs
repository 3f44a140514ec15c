//! The split-brain guard: remembers the highest timeline a leader was seen on, and reports a
//! leader whose history forked from it, or two members that both run a read-write primary.
//!
//! Every promotion (failover or switchover) starts a new, higher timeline. A leader on a lower
//! timeline, or a different leader on the highest one, therefore did not follow the newest
//! history: writes acknowledged on the other branch are about to be, or were, discarded.

use super::observe::Primary;
use crate::api::LeaderTimeline;

/// What the guard found.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitBrain {
    /// The leader is on a timeline below the highest seen, or on the highest with another leader.
    TimelineRegressed {
        /// The current leader's host and timeline.
        leader: String,
        timeline: i64,
        /// The highest timeline seen before, and who led it.
        highest: LeaderTimeline,
    },
    /// More than one member's own Patroni reports a read-write primary.
    TwoPrimaries {
        /// The hosts that accept writes.
        hosts: Vec<String>,
    },
}

impl SplitBrain {
    /// The Degraded condition's reason and the Event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SplitBrain::TimelineRegressed { .. } => "TimelineRegressed",
            SplitBrain::TwoPrimaries { .. } => "TwoPrimaries",
        }
    }

    /// What happened and what to do, naming the hosts.
    pub fn message(&self) -> String {
        match self {
            SplitBrain::TimelineRegressed {
                leader,
                timeline,
                highest,
            } => format!(
                "the leader {leader} is on timeline {timeline}, but {} already led timeline {}: \
                 the history forked and writes acknowledged by {} after the fork may be lost. \
                 Do not reinitialise either host: keep {}'s data directory (or a copy of it) until \
                 its writes are recovered; the condition clears when a leader reaches a newer timeline",
                highest.leader, highest.timeline, highest.leader, highest.leader
            ),
            SplitBrain::TwoPrimaries { hosts } => format!(
                "{} each run a read-write primary: clients may write to any of them and one side's \
                 writes will be lost. Stop PostgreSQL on every host but the Patroni leader",
                hosts.join(" and ")
            ),
        }
    }
}

/// Checks what the members report about themselves against the highest timeline seen before.
/// Returns the mark to keep (never lower than the old one) and what is wrong, if anything.
///
/// Only each member's own report counts (role and WAL timeline from `GET /patroni`): the DCS
/// view (`/cluster`) names a new leader before it is promoted and repeats a member's old
/// timeline for up to `loop_wait` after, which read as a fork during every switchover.
pub fn check(
    mark: Option<&LeaderTimeline>,
    primaries: &[Primary],
) -> (Option<LeaderTimeline>, Option<SplitBrain>) {
    if primaries.len() > 1 {
        let hosts = primaries.iter().map(|p| p.host.clone()).collect();
        return (mark.cloned(), Some(SplitBrain::TwoPrimaries { hosts }));
    }
    let Some((host, timeline)) = primaries
        .first()
        .and_then(|p| Some((p.host.clone(), p.timeline?)))
    else {
        return (mark.cloned(), None);
    };
    match mark {
        Some(h) if timeline < h.timeline || (timeline == h.timeline && host != h.leader) => (
            mark.cloned(),
            Some(SplitBrain::TimelineRegressed {
                leader: host,
                timeline,
                highest: h.clone(),
            }),
        ),
        Some(h) if timeline == h.timeline => (mark.cloned(), None),
        _ => (
            Some(LeaderTimeline {
                timeline,
                leader: host,
            }),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(host: &str, timeline: i64) -> Vec<Primary> {
        vec![Primary {
            host: host.into(),
            timeline: Some(timeline),
        }]
    }

    fn mark(timeline: i64, leader: &str) -> LeaderTimeline {
        LeaderTimeline {
            timeline,
            leader: leader.into(),
        }
    }

    #[test]
    fn a_promotion_to_a_newer_timeline_moves_the_mark() {
        let (keep, found) = check(Some(&mark(1, "a")), &primary("b", 2));
        assert_eq!((keep, found), (Some(mark(2, "b")), None));
        let (keep, found) = check(None, &primary("a", 1));
        assert_eq!((keep, found), (Some(mark(1, "a")), None));
        let (keep, found) = check(Some(&mark(2, "b")), &primary("b", 2));
        assert_eq!((keep, found), (Some(mark(2, "b")), None));
    }

    #[test]
    fn the_old_primary_taking_the_cluster_back_is_a_regression() {
        // The reported failure: a promoted on timeline 2, then the healed old primary c also
        // promoted itself onto a timeline 2 of its own.
        let (keep, found) = check(Some(&mark(2, "a")), &primary("c", 2));
        assert_eq!(
            keep,
            Some(mark(2, "a")),
            "the mark never moves down or sideways"
        );
        let found = found.expect("a fork on the same timeline");
        assert_eq!(found.reason(), "TimelineRegressed");
        assert!(
            found.message().contains("c is on timeline 2")
                && found.message().contains("a already led timeline 2")
        );
        let (_, found) = check(Some(&mark(3, "a")), &primary("a", 2));
        assert!(matches!(
            found,
            Some(SplitBrain::TimelineRegressed { timeline: 2, .. })
        ));
    }

    #[test]
    fn two_writable_members_are_two_primaries() {
        let both = [primary("a", 1), primary("c", 2)].concat();
        let (keep, found) = check(Some(&mark(1, "a")), &both);
        assert_eq!(keep, Some(mark(1, "a")));
        let found = found.unwrap();
        assert_eq!(found.reason(), "TwoPrimaries");
        assert!(found.message().starts_with("a and c each run"));
    }

    #[test]
    fn no_primary_yet_or_no_timeline_keeps_the_mark() {
        // Mid-switchover the new leader may hold the leader key while still in recovery: no
        // member reports a primary, and nothing is judged.
        let (keep, found) = check(Some(&mark(4, "a")), &[]);
        assert_eq!((keep, found), (Some(mark(4, "a")), None));
        let unknown = [Primary {
            host: "b".into(),
            timeline: None,
        }];
        assert_eq!(
            check(Some(&mark(4, "a")), &unknown),
            (Some(mark(4, "a")), None)
        );
    }
}
