//! Converges run as their own tokio task, at most one per cluster (`namespace/name`): the
//! reconcile starts one when due, keeps observing while it runs, and picks up its outcome.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinHandle;

use super::Memo;
use crate::api::HostStatus;
use crate::engine::Progress;

/// What a finished converge leaves for the next reconcile to write into status.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `status.hosts` after the converge (reachability, pinned keys, hashes, errors).
    pub hosts: Vec<HostStatus>,
    /// Changes the converge made.
    pub changed: usize,
    /// The member operations carried out, as recorded (None when not read).
    pub requests: Option<crate::api::RequestsStatus>,
    /// `status.backup` as the converge looked at it (None without `spec.backup`).
    pub backup: Option<crate::api::BackupStatus>,
    /// The memo to remember (inputs converged, backoff, the hosts that failed).
    pub memo: Memo,
}

/// What a converge starts from.
#[derive(Debug, Clone)]
pub struct Start {
    /// Hash of spec and Secrets being converged.
    pub inputs: String,
    /// Consecutive failed converges before this one.
    pub failures: u32,
    /// `status.hosts` before the converge.
    pub hosts: Vec<HostStatus>,
    /// `spec.paused`: no SSH, only Patroni's maintenance mode.
    pub paused: bool,
    /// Only the periodic check for drift is due (same spec and Secrets, last converge fine):
    /// the conditions do not announce it, so Ready does not drop every ten minutes.
    pub drift_check: bool,
}

impl Start {
    /// The outcome of a converge that ended without a report (it panicked): nothing learned,
    /// counted as a failure so that it is retried with backoff.
    fn lost(self) -> Outcome {
        Outcome {
            hosts: self.hosts,
            requests: None,
            backup: None,
            changed: 0,
            memo: Memo::after(self.inputs, self.failures, vec![], Some(lost())),
        }
    }
}

/// Why a converge that ended without a report failed.
fn lost() -> crate::engine::Failure {
    let why = "the converge ended without a report (it panicked); retrying";
    crate::engine::Failure::new(crate::engine::HostErrorKind::Other, why)
}

/// The phase and the latest host step of a running converge, and its plan, as its engine
/// reports them.
#[derive(Debug, Default)]
pub struct Live {
    now: Mutex<(String, Option<String>)>,
    /// The plan's steps and how many have started.
    plan: Mutex<(Vec<crate::plan::Step>, usize)>,
}

impl Live {
    /// For the conditions: `step <i>/<n>: <what> (<host>: <step>)` while a planned step runs,
    /// else `converging the hosts: phase <name> (<host>: <step>)`.
    pub fn message(&self) -> String {
        let now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let phase = if now.0.is_empty() { "connect" } else { &now.0 };
        let head = match phase.starts_with("step ") {
            true => phase.to_string(),
            false => format!("converging the hosts: phase {phase}"),
        };
        match &now.1 {
            Some(step) => format!("{head} ({step})"),
            None => head,
        }
    }

    /// The plan for `status.plan`: the steps before the running one are done.
    pub fn planned(&self) -> Vec<crate::api::PlannedStep> {
        let plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let started = plan.1;
        let steps = plan.0.iter().enumerate();
        steps
            .map(|(i, s)| crate::api::PlannedStep {
                description: s.describe(),
                disruptive: s.disruptive(),
                done: i + 1 < started,
            })
            .collect()
    }
}

impl Progress for Live {
    fn phase(&self, name: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = (name.to_string(), None);
        let step = name.strip_prefix("step ").and_then(|r| r.split_once('/'));
        if let Some(i) = step.and_then(|(i, _)| i.parse().ok()) {
            self.plan.lock().unwrap_or_else(|e| e.into_inner()).1 = i;
        }
    }
    fn plan(&self, steps: &[crate::plan::Step]) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = (steps.to_vec(), 0);
    }
    fn step(&self, host: &str, step: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        now.1 = Some(format!("{host}: {step}"));
    }
}

/// A running converge, as the reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// What it is doing ([`Live::message`]).
    pub message: String,
    /// Its plan ([`Live::planned`]).
    pub plan: Vec<crate::api::PlannedStep>,
    /// A paused cluster's converge (only Patroni's maintenance mode).
    pub paused: bool,
    /// The periodic drift check (see [`Start::drift_check`]).
    pub drift_check: bool,
}

enum Slot {
    Running {
        id: u64,
        handle: JoinHandle<()>,
        live: Arc<Live>,
        start: Start,
    },
    Finished(Box<Outcome>),
}

/// The converges of every cluster: running, or finished and not yet picked up.
#[derive(Default)]
pub struct Converges {
    slots: Mutex<HashMap<String, Slot>>,
    next: AtomicU64,
}

impl Converges {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `work` as the converge of `key`, unless one is running or its outcome waits to
    /// be picked up; returns whether it started.
    pub fn start<F, Fut>(self: &Arc<Self>, key: &str, start: Start, work: F) -> bool
    where
        F: FnOnce(Arc<Live>, Start) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let mut slots = self.slots();
        if slots.contains_key(key) {
            return false;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live::default());
        let fut = work(live.clone(), start.clone());
        let (me, k) = (self.clone(), key.to_string());
        let handle = tokio::spawn(async move {
            let outcome = fut.await;
            me.finish(&k, id, outcome);
        });
        let slot = Slot::Running {
            id,
            handle,
            live,
            start,
        };
        slots.insert(key.to_string(), slot);
        true
    }

    /// Records the outcome of converge `id`, unless it was cancelled meanwhile.
    fn finish(&self, key: &str, id: u64, outcome: Outcome) {
        let mut slots = self.slots();
        if matches!(slots.get(key), Some(Slot::Running { id: i, .. }) if *i == id) {
            slots.insert(key.to_string(), Slot::Finished(Box::new(outcome)));
        }
    }

    /// Takes the outcome of a finished converge of `key`; a task that ended without one counts
    /// as a failed converge.
    pub fn take_finished(&self, key: &str) -> Option<Outcome> {
        let mut slots = self.slots();
        match slots.get(key)? {
            Slot::Finished(_) => {}
            Slot::Running { handle, .. } if handle.is_finished() => {}
            Slot::Running { .. } => return None,
        }
        match slots.remove(key)? {
            Slot::Finished(outcome) => Some(*outcome),
            Slot::Running { start, .. } => {
                tracing::error!(cluster = %key, "the converge task ended without a report");
                Some(start.lost())
            }
        }
    }

    /// Puts back an outcome that could not be written, unless another converge started.
    pub fn restore(&self, key: &str, outcome: Outcome) {
        self.slots()
            .entry(key.to_string())
            .or_insert(Slot::Finished(Box::new(outcome)));
    }

    /// The running converge of `key`, if any.
    pub fn running(&self, key: &str) -> Option<Running> {
        match self.slots().get(key)? {
            Slot::Running { live, start, .. } => Some(Running {
                message: live.message(),
                plan: live.planned(),
                paused: start.paused,
                drift_check: start.drift_check,
            }),
            Slot::Finished(_) => None,
        }
    }

    /// Cancels the converge of `key` (its steps are idempotent and interruptible) and waits
    /// until it has stopped; forgets an outcome not picked up.
    pub async fn cancel(&self, key: &str) {
        let slot = self.slots().remove(key);
        if let Some(Slot::Running { handle, .. }) = slot {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Aborts every running converge (leadership lost, or shutting down).
    pub fn abort_all(&self) {
        for slot in self.slots().values() {
            if let Slot::Running { handle, .. } = slot {
                handle.abort();
            }
        }
    }
}

#[cfg(test)]
#[path = "converge_task_tests.rs"]
mod tests;
