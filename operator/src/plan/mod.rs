//! The planner: from the spec and what runs (etcd's member list, Patroni's members, hosts that
//! left the spec), the ordered topology steps that take a running cluster to the spec, or why
//! none may run. A pure function: the engine observes, plans, then runs one step at a time and
//! checks each; a run that stops anywhere plans again from what it then observes.
//!
//! Membership never drops below quorum: a dead outgoing etcd member is removed before its
//! replacement is added (adding first would need a vote it cannot give), a healthy one only
//! after its replacement is healthy.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::PostgresClusterSpec;

/// What the planner needs to know of the running cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// etcd's members (empty when no member answers: nothing runs yet).
    pub etcd: Vec<EtcdMember>,
    /// Patroni's members as `/cluster` lists them (empty when none answers).
    pub patroni: Vec<PatroniMember>,
    /// Hosts no longer in the spec that still carry this cluster's claim (may run its services).
    pub former: Vec<String>,
}

/// One member of the running etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// etcd's member ID.
    pub id: u64,
    /// The host of its peer URL.
    pub host: String,
    /// Whether it answers on its client URL.
    pub healthy: bool,
}

/// One Patroni member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatroniMember {
    /// Its host.
    pub host: String,
    /// It holds the leader key.
    pub leader: bool,
    /// It is a replica that streams (or is running) with known lag: a switchover candidate.
    pub healthy_replica: bool,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Step {
    /// Remove an etcd member through the etcd API (its host is out of the spec or dead).
    RemoveEtcdMember {
        /// The member's host.
        host: String,
        /// The member's ID (hex).
        id: String,
        /// Whether it answered: a healthy member is removed only after its replacement joined.
        healthy: bool,
    },
    /// Add an etcd member through the etcd API, start it on its host, wait until it is healthy.
    AddEtcdMember {
        /// The new member's host.
        host: String,
    },
    /// Switch the primary away from a host that leaves the spec.
    Switchover {
        /// The current leader.
        from: String,
        /// The replica that takes over.
        to: String,
    },
    /// A new PostgreSQL host joins as a replica (basebackup) and streams.
    AddReplica {
        /// The host.
        host: String,
    },
    /// A Patroni member leaves: Patroni stopped and disabled on its host, its member key gone.
    /// Its data directory is kept.
    RemoveReplica {
        /// The host.
        host: String,
    },
    /// A host that left the spec: stop and disable pgmetal's services there (Patroni, etcd,
    /// HAProxy), delete a removed etcd member's data directory, release its claim.
    Decommission {
        /// The host.
        host: String,
    },
}

impl Step {
    /// Whether the step disturbs clients or the DCS (a switchover, an etcd membership change).
    pub fn disruptive(&self) -> bool {
        matches!(
            self,
            Step::RemoveEtcdMember { .. } | Step::AddEtcdMember { .. } | Step::Switchover { .. }
        )
    }

    /// What the step does, for people (Progressing, events, `pgmetal plan`).
    pub fn describe(&self) -> String {
        match self {
            Step::RemoveEtcdMember { host, healthy, .. } => {
                let state = if *healthy { "" } else { " (dead)" };
                format!("removing etcd member {host}{state}")
            }
            Step::AddEtcdMember { host } => format!("adding etcd member {host}"),
            Step::Switchover { from, to } => format!("switching over from {from} to {to}"),
            Step::AddReplica { host } => format!("adding replica {host}"),
            Step::RemoveReplica { host } => format!("removing replica {host}"),
            Step::Decommission { host } => {
                format!("decommissioning {host} (stopping its services, keeping PostgreSQL data)")
            }
        }
    }
}

/// Why the planner refuses a change; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A majority of the running etcd members is down: no membership change can commit.
    #[error(
        "etcd has {healthy} healthy of {members} members; changing its membership needs a majority ({quorum}). \
         Nothing was changed. Start the members that are down ({down}) first"
    )]
    NoQuorum {
        /// Healthy members.
        healthy: usize,
        /// All members.
        members: usize,
        /// The majority needed.
        quorum: usize,
        /// Hosts of the members that are down.
        down: String,
    },
    /// Adding a member while another member is down would leave the cluster without quorum.
    #[error(
        "adding etcd member {host} while {down} is down would need {quorum} of {members} members to vote \
         and only {healthy} can. Nothing was changed. Start {down}, or replace it: remove it from spec.etcd.hosts \
         in the same edit"
    )]
    AddWhileDown {
        /// The member to add.
        host: String,
        /// The members that are down.
        down: String,
        /// Members after the add.
        members: usize,
        /// Healthy members that can vote.
        healthy: usize,
        /// The majority needed.
        quorum: usize,
    },
    /// Removing a healthy member would leave fewer healthy members than a majority.
    #[error(
        "removing etcd member {host} would leave {healthy} healthy of {members} members, under a majority. \
         Nothing was changed. Start the members that are down first"
    )]
    RemoveBelowQuorum {
        /// The member to remove.
        host: String,
        /// Healthy members after the removal.
        healthy: usize,
        /// Members after the removal.
        members: usize,
    },
    /// No member of the running etcd cluster stays in the spec: new members have none to join.
    #[error(
        "spec.etcd.hosts [{want}] keeps none of the running etcd members [{have}]: new members join through \
         one that stays. Nothing was changed. Keep at least one running member in spec.etcd.hosts and move \
         the others one edit at a time"
    )]
    NoMemberStays {
        /// The spec's hosts.
        want: String,
        /// The running members' hosts.
        have: String,
    },
    /// The leader leaves the spec and no replica in the spec can take over.
    #[error(
        "the primary {leader} leaves spec.postgres, and no replica in the spec streams to take over. \
         Nothing was changed. Keep {leader} until a replica in the spec streams"
    )]
    NoCandidate {
        /// The current leader.
        leader: String,
    },
}

/// The majority of `n` voting members.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// The ordered steps that take the running cluster `obs` to `spec`; empty when nothing runs
/// yet (a bootstrap converges every host at once) or the topology already matches.
pub fn plan(spec: &PostgresClusterSpec, obs: &Observed) -> Result<Vec<Step>, Refusal> {
    let mut steps = etcd_steps(spec, &obs.etcd)?;
    steps.extend(patroni_steps(spec, &obs.patroni)?);
    let named = crate::render::all_hosts(spec);
    let mut former: BTreeSet<&String> = obs.former.iter().collect();
    former.extend(obs.etcd.iter().map(|m| &m.host));
    former.extend(obs.patroni.iter().map(|m| &m.host));
    for host in former.into_iter().filter(|h| !named.contains(h)) {
        steps.push(Step::Decommission { host: host.clone() });
    }
    Ok(steps)
}

fn hosts_of<'m>(members: impl IntoIterator<Item = &'m EtcdMember>) -> String {
    members
        .into_iter()
        .map(|m| m.host.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// etcd: dead outgoing members out; then each new member in, followed by one healthy outgoing
/// member out; then the remaining outgoing members out. Every step keeps a majority.
fn etcd_steps(spec: &PostgresClusterSpec, live: &[EtcdMember]) -> Result<Vec<Step>, Refusal> {
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let want = &spec.etcd.hosts;
    let (outgoing, staying): (Vec<&EtcdMember>, Vec<&EtcdMember>) =
        live.iter().partition(|m| !want.contains(&m.host));
    let incoming: Vec<&String> = want
        .iter()
        .filter(|h| !live.iter().any(|m| &m.host == *h))
        .collect();
    if outgoing.is_empty() && incoming.is_empty() {
        return Ok(Vec::new());
    }
    let healthy = live.iter().filter(|m| m.healthy).count();
    if healthy < quorum(live.len()) {
        return Err(Refusal::NoQuorum {
            healthy,
            members: live.len(),
            quorum: quorum(live.len()),
            down: hosts_of(live.iter().filter(|m| !m.healthy)),
        });
    }
    if staying.is_empty() {
        return Err(Refusal::NoMemberStays {
            want: want.join(", "),
            have: hosts_of(live),
        });
    }
    let remove = |m: &EtcdMember| Step::RemoveEtcdMember {
        host: m.host.clone(),
        id: format!("{:x}", m.id),
        healthy: m.healthy,
    };
    let (mut members, mut healthy) = (live.len(), healthy);
    let mut steps = Vec::new();
    let (dead, mut alive): (Vec<&EtcdMember>, Vec<&EtcdMember>) =
        outgoing.into_iter().partition(|m| !m.healthy);
    for m in dead {
        steps.push(remove(m));
        members -= 1;
    }
    for host in incoming {
        if healthy < quorum(members + 1) {
            let down = live.iter().filter(|m| !m.healthy && want.contains(&m.host));
            return Err(Refusal::AddWhileDown {
                host: host.clone(),
                down: hosts_of(down),
                members: members + 1,
                healthy,
                quorum: quorum(members + 1),
            });
        }
        steps.push(Step::AddEtcdMember { host: host.clone() });
        (members, healthy) = (members + 1, healthy + 1);
        if let Some(m) = alive.pop() {
            steps.push(remove(m));
            (members, healthy) = (members - 1, healthy - 1);
        }
    }
    for m in alive {
        if healthy - 1 < quorum(members - 1) {
            return Err(Refusal::RemoveBelowQuorum {
                host: m.host.clone(),
                healthy: healthy - 1,
                members: members - 1,
            });
        }
        steps.push(remove(m));
        (members, healthy) = (members - 1, healthy - 1);
    }
    Ok(steps)
}

/// Patroni: a leader that leaves hands over first; members out of the spec leave; new hosts
/// join as replicas.
fn patroni_steps(
    spec: &PostgresClusterSpec,
    members: &[PatroniMember],
) -> Result<Vec<Step>, Refusal> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let want: Vec<&String> = spec.postgres.hosts().collect();
    let mut steps = Vec::new();
    if let Some(leader) = members
        .iter()
        .find(|m| m.leader && !want.contains(&&m.host))
    {
        let candidates: Vec<&PatroniMember> = members
            .iter()
            .filter(|m| m.healthy_replica && want.contains(&&m.host))
            .collect();
        let to = candidates
            .iter()
            .find(|m| m.host == spec.postgres.primary)
            .or(candidates.first())
            .ok_or_else(|| Refusal::NoCandidate {
                leader: leader.host.clone(),
            })?;
        steps.push(Step::Switchover {
            from: leader.host.clone(),
            to: to.host.clone(),
        });
    }
    for host in want
        .iter()
        .filter(|h| !members.iter().any(|m| &&m.host == *h))
    {
        steps.push(Step::AddReplica {
            host: (*host).clone(),
        });
    }
    for m in members.iter().filter(|m| !want.contains(&&m.host)) {
        steps.push(Step::RemoveReplica {
            host: m.host.clone(),
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
