//! What a converge did: steps per host (run, changed, duration), phase durations, the total of
//! changes, and progress events for people watching.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::api::PostgresClusterStatus;

/// One step on one host.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Step name, e.g. `install packages`.
    pub step: String,
    /// Whether it changed anything on the host.
    pub changed: bool,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// What changed (files written, units restarted), for people.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
}

/// Everything done on one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// Steps that changed something.
    pub changed: usize,
    /// Total time spent in this host's steps.
    pub duration_ms: u64,
    /// The error that stopped this host, naming the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One phase of the converge.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    /// Phase name.
    pub phase: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// The result of one converge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Total changes over all hosts (0 when nothing needed doing).
    pub changed: usize,
    /// True when the cluster is healthy at the end.
    pub healthy: bool,
    /// What is wrong, one line each, when not healthy.
    pub problems: Vec<String>,
    /// Per host.
    pub hosts: BTreeMap<String, HostReport>,
    /// Per phase, in order.
    pub phases: Vec<PhaseRecord>,
    /// Total wall time in milliseconds.
    pub duration_ms: u64,
    /// The observed status at the end.
    pub status: PostgresClusterStatus,
}

/// Receives progress as it happens (a terminal UI, log lines, or nothing).
pub trait Progress: Send + Sync {
    /// A phase begins.
    fn phase(&self, _name: &str) {}
    /// `host` starts `step`.
    fn step(&self, _host: &str, _step: &str) {}
    /// `host` finished its part of the current phase (`error` when it failed).
    fn host_done(&self, _host: &str, _error: Option<&str>) {}
}

/// Progress that shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// Collects step records from concurrent host tasks.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Report>,
}

impl Recorder {
    /// Record a finished step.
    pub fn step(
        &self,
        host: &str,
        step: &str,
        changed: bool,
        started: Instant,
        detail: Vec<String>,
    ) {
        let ms = started.elapsed().as_millis() as u64;
        if let Ok(mut r) = self.inner.lock() {
            let h = r.hosts.entry(host.to_string()).or_default();
            h.steps.push(StepRecord {
                step: step.into(),
                changed,
                duration_ms: ms,
                detail,
            });
            h.changed += usize::from(changed);
            h.duration_ms += ms;
            r.changed += usize::from(changed);
        }
    }

    /// Record the error that stopped a host.
    pub fn host_error(&self, host: &str, error: String) {
        if let Ok(mut r) = self.inner.lock() {
            r.hosts.entry(host.to_string()).or_default().error = Some(error);
        }
    }

    /// Record a finished phase.
    pub fn phase(&self, phase: &str, started: Instant) {
        if let Ok(mut r) = self.inner.lock() {
            r.phases.push(PhaseRecord {
                phase: phase.into(),
                duration_ms: started.elapsed().as_millis() as u64,
            });
        }
    }

    /// Hosts that failed so far.
    pub fn failed(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|r| {
                r.hosts
                    .iter()
                    .filter(|(_, h)| h.error.is_some())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The report so far.
    pub fn finish(self) -> Report {
        self.inner.into_inner().unwrap_or_default()
    }
}
