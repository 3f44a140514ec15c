//! What Patroni's REST API reports: the cluster view (`GET /cluster`), one member's own status
//! (`GET /patroni`), and the roles and states pgmetal reads from them.

use serde::Deserialize;
use serde_json::Value;

/// One member as Patroni's `GET /cluster` reports it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClusterMember {
    /// Member name.
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `standby_leader`, ... (see [`Role`]).
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, ...
    pub state: String,
    /// PostgreSQL host as Patroni advertises it.
    #[serde(default)]
    pub host: Option<String>,
    /// Timeline.
    #[serde(default)]
    pub timeline: Option<i64>,
    /// Lag in bytes (a number) or "unknown".
    #[serde(default)]
    pub lag: Option<Value>,
    /// A restart is pending to apply a changed parameter.
    #[serde(default)]
    pub pending_restart: bool,
}

/// A member's role in Patroni's `GET /cluster` (and `status.members[].role`), for comparisons;
/// the text itself is kept as Patroni wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `leader`: the primary.
    Leader,
    /// `standby_leader`: the leader of a standby cluster.
    StandbyLeader,
    /// `replica`.
    Replica,
    /// `sync_standby`: a synchronous replica.
    SyncStandby,
    /// `quorum_standby`: a quorum-commit replica (Patroni 4).
    QuorumStandby,
    /// Anything else.
    Unknown,
}

impl Role {
    /// The role Patroni names `text`.
    pub fn parse(text: &str) -> Self {
        match text {
            "leader" => Self::Leader,
            "standby_leader" => Self::StandbyLeader,
            "replica" => Self::Replica,
            "sync_standby" => Self::SyncStandby,
            "quorum_standby" => Self::QuorumStandby,
            _ => Self::Unknown,
        }
    }
}

/// A member's state in Patroni's `GET /cluster` (and `status.members[].state`), for
/// comparisons; the text itself is kept as Patroni wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `running`: PostgreSQL runs (a leader; a replica on Patroni 3.0, whatever its WAL source).
    Running,
    /// `streaming`: a replica receiving WAL from its upstream (Patroni 3.1+).
    Streaming,
    /// Anything else: `starting`, `stopped`, `crashed`, `creating replica`, `in archive recovery`, ...
    Other,
}

impl State {
    /// The state Patroni names `text`.
    pub fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "streaming" => Self::Streaming,
            _ => Self::Other,
        }
    }
}

/// What Patroni says of one member, whether read from `GET /cluster` or from status: the one
/// place where "running leader" and "healthy replica" are decided.
pub trait Member {
    /// The role as Patroni wrote it.
    fn role_text(&self) -> &str;
    /// The state as Patroni wrote it.
    fn state_text(&self) -> &str;
    /// Whether Patroni reported a replication lag in bytes.
    fn lag_known(&self) -> bool;

    /// The member's role.
    fn role(&self) -> Role {
        Role::parse(self.role_text())
    }
    /// The member's state.
    fn state(&self) -> State {
        State::parse(self.state_text())
    }
    /// True for the (primary's) leader; a standby cluster's `standby_leader` is not.
    fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }
    /// The leader, with PostgreSQL running.
    fn is_running_leader(&self) -> bool {
        self.is_leader() && self.state() == State::Running
    }
    /// A replica that replicates: streaming, or running with a known lag (Patroni 3.0 reports
    /// `running` for replicas that stream).
    fn is_healthy_replica(&self) -> bool {
        !self.is_leader()
            && match self.state() {
                State::Streaming => true,
                State::Running => self.lag_known(),
                State::Other => false,
            }
    }
}

impl Member for ClusterMember {
    fn role_text(&self) -> &str {
        &self.role
    }
    fn state_text(&self) -> &str {
        &self.state
    }
    fn lag_known(&self) -> bool {
        self.lag.as_ref().is_some_and(Value::is_number)
    }
}

impl Member for crate::api::MemberStatus {
    fn role_text(&self) -> &str {
        &self.role
    }
    fn state_text(&self) -> &str {
        &self.state
    }
    fn lag_known(&self) -> bool {
        self.lag_bytes.is_some()
    }
}

/// `GET /cluster`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ClusterView {
    /// All members registered in the DCS.
    #[serde(default)]
    pub members: Vec<ClusterMember>,
    /// True in maintenance mode.
    #[serde(default)]
    pub pause: bool,
}

impl ClusterView {
    /// Members whose role is leader.
    pub fn leaders(&self) -> Vec<&ClusterMember> {
        self.members
            .iter()
            .filter(|m| matches!(m.role(), Role::Leader | Role::StandbyLeader))
            .collect()
    }

    /// Which of `hosts` runs the leader, when there is exactly one leader.
    pub fn leader_host(&self, hosts: &[String]) -> Option<String> {
        match self.leaders().as_slice() {
            [one] => hosts
                .iter()
                .find(|h| crate::render::member_name(h) == one.name)
                .cloned(),
            _ => None,
        }
    }
}

/// How far a switchover has come, as one cluster view shows it (see
/// [`ClusterView::after_switchover`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// The candidate does not lead with PostgreSQL running yet.
    NotLeading,
    /// It leads, but these members (names) do not stream on its timeline yet: were it lost now,
    /// one of them could be promoted on the timeline it already took, and fork the history.
    Behind(Vec<String>),
    /// It leads, and every follower streams on its timeline.
    Settled,
}

impl ClusterView {
    /// How far a switchover to member `candidate` has come: done only when it leads and each of
    /// `followers` (member names: the old leader, and the replicas that streamed before) is a
    /// healthy replica on its timeline. The one predicate every switchover waits for.
    pub fn after_switchover(&self, candidate: &str, followers: &[String]) -> Handover {
        let leading = |m: &&ClusterMember| m.name == candidate && m.is_running_leader();
        let Some(leader) = self.members.iter().find(leading) else {
            return Handover::NotLeading;
        };
        let follows = |name: &String| {
            self.members
                .iter()
                .any(|m| &m.name == name && m.is_healthy_replica() && m.timeline == leader.timeline)
        };
        let behind: Vec<String> = followers
            .iter()
            .filter(|f| **f != leader.name && !follows(f))
            .cloned()
            .collect();
        match behind.is_empty() {
            true => Handover::Settled,
            false => Handover::Behind(behind),
        }
    }

    /// The members that must follow a switchover away from member `leader`: it, and every
    /// healthy replica (a member that is down follows when it returns).
    pub fn followers(&self, leader: &str) -> Vec<String> {
        let follows = |m: &&ClusterMember| m.name == leader || m.is_healthy_replica();
        self.members
            .iter()
            .filter(follows)
            .map(|m| m.name.clone())
            .collect()
    }
}

/// A member's own report (`GET /patroni`): what its PostgreSQL is, not what the DCS says.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// `master` (Patroni 3) or `primary` (Patroni 4) when PostgreSQL runs read-write, else `replica`.
    #[serde(default)]
    pub role: String,
    /// The timeline PostgreSQL is on.
    #[serde(default)]
    pub timeline: Option<i64>,
    /// PostgreSQL's system identifier (the same on every member of one cluster).
    #[serde(default)]
    pub database_system_identifier: Option<String>,
    /// When PostgreSQL last started: changes with every restart and reinitialization.
    #[serde(default)]
    pub postmaster_start_time: Option<String>,
}

impl NodeStatus {
    /// True when this member's PostgreSQL accepts writes.
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary")
    }
}
