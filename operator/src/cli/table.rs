//! Plain-text tables for the terminal: the apply summary and the status view.

use std::fmt::Write;

use crate::api::PostgresClusterStatus;
use crate::engine::Report;

/// The end-of-apply summary: per host changes and time, per phase time, the verdict.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:>7} {:>7} {:>7} {:>9}  ERROR",
        "HOST", "STEPS", "CHANGED", "TRIPS", "TIME"
    );
    for (host, h) in &r.hosts {
        let err = h
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<20} {:>7} {:>7} {:>7} {:>8.1}s  {err}",
            host,
            h.steps.len(),
            h.changed,
            h.round_trips,
            h.duration_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(s);
    for p in &r.phases {
        let _ = writeln!(
            s,
            "phase {:<32} {:>8.1}s",
            p.phase,
            p.duration_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(s);
    s.push_str(&status(&r.status, &r.problems));
    let _ = writeln!(
        s,
        "changed: {}   total: {:.1}s   {}",
        r.changed,
        r.duration_ms as f64 / 1000.0,
        if r.healthy { "HEALTHY" } else { "NOT HEALTHY" }
    );
    s
}

/// `patronictl list` + `etcdctl member list` + HAProxy routing.
pub fn status(st: &PostgresClusterStatus, problems: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<18} {:<8} {:<10} {:>3} {:>10}",
        "MEMBER", "HOST", "ROLE", "STATE", "TL", "LAG(B)"
    );
    for m in &st.members {
        let tl = m.timeline.map(|t| t.to_string()).unwrap_or_default();
        let lag = m.lag_bytes.map(|l| l.to_string()).unwrap_or_default();
        let pending = if m.pending_restart {
            " *restart pending"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{:<16} {:<18} {:<8} {:<10} {:>3} {:>10}{pending}",
            m.name, m.host, m.role, m.state, tl, lag
        );
    }
    if let Some(e) = &st.etcd {
        let _ = writeln!(
            s,
            "\nETCD {}/{} healthy, leader {}",
            e.healthy,
            e.desired,
            e.leader.as_deref().unwrap_or("-")
        );
        for m in &e.members {
            let _ = writeln!(
                s,
                "  {:<16} {:<28} {}",
                m.name,
                m.client_url.as_deref().unwrap_or(""),
                if m.healthy { "healthy" } else { "UNHEALTHY" }
            );
        }
    }
    for h in &st.haproxy {
        let _ = writeln!(
            s,
            "\nHAPROXY {}: read-write -> [{}], read-only -> [{}]",
            h.host,
            h.primary_backends.join(", "),
            h.replica_backends.join(", ")
        );
    }
    if st.patroni_paused == Some(true) {
        let _ = writeln!(s, "\nPatroni is PAUSED (maintenance mode)");
    }
    if let Some(b) = &st.backup {
        backups(&mut s, b);
    }
    if !problems.is_empty() {
        let _ = writeln!(s, "\nPROBLEMS:");
        for p in problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    let _ = writeln!(s);
    s
}

/// The backup lines of the status table: the newest backup of each type, archiving, the
/// recovery window, and whether all is in order.
fn backups(s: &mut String, b: &crate::api::BackupStatus) {
    let verdict = if b.ready { "in order" } else { "NOT IN ORDER" };
    let _ = writeln!(s, "\nBACKUPS {verdict}: {}", b.message);
    let kinds = [
        ("full", &b.full),
        ("diff", &b.differential),
        ("incr", &b.incremental),
    ];
    for (kind, r) in kinds {
        if let Some(r) = r {
            let _ = writeln!(
                s,
                "  {kind:<5} {:<36} {}  {} s, {} B in the repository",
                r.label, r.finished, r.duration_seconds, r.repository_bytes
            );
        }
    }
    if let Some(a) = &b.archive {
        let wal = a.last_archived_wal.as_deref().unwrap_or("-");
        let at = a.last_archived_time.as_deref().unwrap_or("-");
        let _ = writeln!(s, "  archived {wal} at {at}");
    }
    if let Some(w) = &b.recovery_window {
        let _ = writeln!(s, "  recoverable from {} to {}", w.earliest, w.latest);
    }
}

/// `pgmetal plan` as text: numbered steps, disruptive ones marked; or the refusal.
pub fn plan(planned: &Result<Vec<crate::plan::Step>, crate::plan::Refusal>) -> String {
    match planned {
        Err(refused) => format!("REFUSED: {refused}\n"),
        Ok(steps) if steps.is_empty() => {
            "No topology change: apply converges configuration only.\n".into()
        }
        Ok(steps) => {
            let mut out = String::new();
            for (i, s) in steps.iter().enumerate() {
                let mark = if s.disruptive() { "  [disruptive]" } else { "" };
                out.push_str(&format!("{:>2}. {}{mark}\n", i + 1, s.describe()));
            }
            out
        }
    }
}
