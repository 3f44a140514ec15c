//! What a converge did: steps per host (run, changed, duration), phase durations, the total of
//! changes, and progress events for people watching.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::HostError;
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
    /// The error that stopped this host, naming the step (a string in JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::error::as_text"
    )]
    pub error: Option<HostError>,
    /// Commands run on this host's open connection (an upload is one; connecting is not).
    pub round_trips: usize,
    /// SHA-256 over every managed file's path and content hash (changes when any file does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Path -> content hash of the files pgmetal manages here.
    #[serde(skip)]
    files: BTreeMap<String, String>,
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
    /// What stopped the cluster as a whole (etcd quorum, Patroni's dynamic configuration):
    /// the converge failed even if every host did its steps. Also the first line of `problems`.
    #[serde(skip)]
    pub failure: Option<super::Failure>,
    /// Per host.
    pub hosts: BTreeMap<String, HostReport>,
    /// Per phase, in order.
    pub phases: Vec<PhaseRecord>,
    /// Total wall time in milliseconds.
    pub duration_ms: u64,
    /// The observed status at the end.
    pub status: PostgresClusterStatus,
    /// The topology steps this converge planned, in order (see [`crate::plan`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<crate::plan::Step>,
    /// Work left for later that is not a problem (a former host that does not answer yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Hosts no longer in the spec that run nothing of this cluster's any more (decommissioned,
    /// or never claimed): callers stop keeping them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// The member operations asked for by annotation, as carried out (see
    /// [`super::requests`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::api::RequestsStatus>,
}

/// Receives progress as it happens (a terminal UI, log lines, or nothing).
pub trait Progress: Send + Sync {
    /// A phase begins.
    fn phase(&self, _name: &str) {}
    /// `host` starts `step`.
    fn step(&self, _host: &str, _step: &str) {}
    /// The topology steps this converge will take (before the first one runs).
    fn plan(&self, _steps: &[crate::plan::Step]) {}
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

    /// Record the plan.
    pub fn plan(&self, steps: &[crate::plan::Step]) {
        if let Ok(mut r) = self.inner.lock() {
            r.plan = steps.to_vec();
        }
    }

    /// Record a note (work left for later that is not a problem).
    pub fn note(&self, note: String) {
        if let Ok(mut r) = self.inner.lock() {
            r.notes.push(note);
        }
    }

    /// Record a former host that runs nothing of this cluster's any more.
    pub fn released(&self, host: &str) {
        if let Ok(mut r) = self.inner.lock() {
            r.released.push(host.to_string());
        }
    }

    /// Record what the requests' record says now.
    pub fn requests(&self, done: crate::api::RequestsStatus) {
        if let Ok(mut r) = self.inner.lock() {
            r.requests = Some(done);
        }
    }

    /// The former hosts released so far.
    pub fn released_hosts(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|r| r.released.clone())
            .unwrap_or_default()
    }

    /// Record the error that stopped a host.
    pub fn host_error(&self, host: &str, error: HostError) {
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

    /// Record the files a host should have (for its config hash).
    pub fn files(&self, host: &str, files: &[crate::model::DesiredFile]) {
        if let Ok(mut r) = self.inner.lock() {
            let h = r.hosts.entry(host.to_string()).or_default();
            h.files
                .extend(files.iter().map(|f| (f.path.clone(), f.sha256())));
        }
    }

    /// The report so far.
    pub fn finish(self) -> Report {
        let mut report = self.inner.into_inner().unwrap_or_default();
        for h in report.hosts.values_mut().filter(|h| !h.files.is_empty()) {
            use sha2::{Digest, Sha256};
            let mut d = Sha256::new();
            for (path, sha) in &h.files {
                d.update(format!("{path} {sha}\n"));
            }
            h.config_hash = Some(hex::encode(d.finalize()));
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DesiredFile;

    fn f(content: &str) -> DesiredFile {
        DesiredFile {
            path: "/etc/x".into(),
            content: content.into(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        }
    }

    #[test]
    fn config_hash_follows_file_content_and_totals_add_up() {
        let hash = |content: &str| {
            let r = Recorder::default();
            r.files("h", &[f(content)]);
            r.step("h", "write files", true, Instant::now(), vec![]);
            r.step("h", "unit etcd", false, Instant::now(), vec![]);
            r.finish()
        };
        let (a, b) = (hash("one"), hash("two"));
        assert_ne!(a.hosts["h"].config_hash, b.hosts["h"].config_hash);
        assert_eq!(a.hosts["h"].config_hash, hash("one").hosts["h"].config_hash);
        assert_eq!(
            (a.changed, a.hosts["h"].steps.len(), a.hosts["h"].changed),
            (1, 2, 1)
        );
    }
}
