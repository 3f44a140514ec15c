//! Unit tests of the converge tasks' bookkeeping: when one starts, that a second never runs
//! beside it, how its outcome is picked up, cancelled or lost.

use std::time::{Duration, Instant};

use super::*;
use crate::controller::reconcile::due;

const KEY: &str = "ns/pg";

fn start(inputs: &str) -> Start {
    Start {
        inputs: inputs.into(),
        failures: 2,
        hosts: vec![HostStatus {
            host: "10.0.0.1".into(),
            ..Default::default()
        }],
        paused: false,
        drift_check: false,
    }
}

fn outcome(start: Start, changed: usize) -> Outcome {
    Outcome {
        hosts: start.hosts,
        requests: None,
        backup: None,
        changed,
        memo: Memo::after(start.inputs, start.failures, vec![], None),
    }
}

async fn wait_finished(c: &Converges) -> Outcome {
    for _ in 0..1000 {
        if let Some(o) = c.take_finished(KEY) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the converge did not finish");
}

fn failed() -> crate::engine::Failure {
    let why = "etcd has no healthy quorum";
    crate::engine::Failure::new(crate::engine::HostErrorKind::Etcd, why)
}

#[test]
fn a_converge_is_due_first_on_change_after_backoff_and_against_drift() {
    assert!(due(None, "a"));
    let fresh = Memo::after("a".into(), 0, vec![], None);
    assert!(!due(Some(&fresh), "a"));
    assert!(due(Some(&fresh), "b"));
    let over = Memo {
        retry_at: Some(Instant::now()),
        ..Memo::after("a".into(), 0, vec![], Some(failed()))
    };
    assert!(due(Some(&over), "a"));
    let backing_off = Memo::after("a".into(), 0, vec![], Some(failed()));
    assert!(!due(Some(&backing_off), "a"));
}

#[test]
fn a_converge_that_failed_as_a_whole_backs_off_15_s_then_doubles_up_to_5_minutes() {
    let mut failures = 0;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let m = Memo::after("a".into(), failures, vec![], Some(failed()));
        let wait = m
            .retry_at
            .expect("a failed converge is retried")
            .duration_since(m.converged_at);
        waits.push(wait.as_secs_f64().round() as u64);
        failures = m.failures;
    }
    assert_eq!(waits, [15, 30, 60, 120, 240, 300, 300]);
    let ok = Memo::after("a".into(), failures, vec![], None);
    assert_eq!(
        (ok.failures, ok.retry_at),
        (0, None),
        "success resets the backoff"
    );
}

#[tokio::test]
async fn one_converge_at_a_time_and_its_outcome_is_picked_up_once() {
    let c = Arc::new(Converges::default());
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let started = c.start(KEY, start("a"), |live, s| async move {
        live.phase("etcd");
        live.step("10.0.0.1", "write files");
        let _ = wait.await;
        outcome(s, 3)
    });
    assert!(started);
    tokio::task::yield_now().await;
    let running = c.running(KEY).unwrap();
    assert_eq!(
        running.message,
        "converging the hosts: phase etcd (10.0.0.1: write files)"
    );
    assert!(!running.paused);
    assert!(c.take_finished(KEY).is_none());
    let second = c.start(KEY, start("b"), |_, s| async move { outcome(s, 0) });
    assert!(!second, "a second converge started beside the first");
    go.send(()).unwrap();
    let done = wait_finished(&c).await;
    assert_eq!((done.changed, done.memo.inputs.as_str()), (3, "a"));
    assert_eq!(done.memo.failures, 0);
    assert!(c.running(KEY).is_none());
    assert!(c.take_finished(KEY).is_none(), "picked up twice");
    assert!(c.start(KEY, start("b"), |_, s| async move { outcome(s, 0) }));
}

#[tokio::test]
async fn a_finished_outcome_waits_for_its_pick_up_before_the_next_starts() {
    let c = Arc::new(Converges::default());
    assert!(c.start(KEY, start("a"), |_, s| async move { outcome(s, 1) }));
    let done = wait_finished(&c).await;
    c.restore(KEY, done);
    assert!(c.running(KEY).is_none());
    assert!(!c.start(KEY, start("b"), |_, s| async move { outcome(s, 0) }));
    assert_eq!(c.take_finished(KEY).unwrap().changed, 1);
    // Another cluster is independent.
    assert!(c.start("ns/other", start("a"), |_, s| async move { outcome(s, 0) }));
}

#[tokio::test]
async fn cancel_stops_the_running_converge_and_forgets_it() {
    let c = Arc::new(Converges::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
    assert!(c.start(KEY, start("a"), |live, s| async move {
        live.phase("prepare hosts");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = tx.send("finished");
        outcome(s, 1)
    }));
    tokio::task::yield_now().await;
    c.cancel(KEY).await;
    assert!(c.running(KEY).is_none());
    assert!(c.take_finished(KEY).is_none());
    // The task is gone (its sender dropped) without having finished.
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn a_converge_that_ends_without_a_report_counts_as_failed() {
    let c = Arc::new(Converges::default());
    assert!(c.start(KEY, start("a"), |_, s| async move {
        assert!(s.inputs.is_empty(), "engine bug");
        outcome(s, 0)
    }));
    let lost = wait_finished(&c).await;
    assert_eq!(lost.changed, 0);
    assert_eq!(lost.hosts[0].host, "10.0.0.1");
    assert_eq!((lost.memo.inputs.as_str(), lost.memo.failures), ("a", 3));
    assert!(lost.memo.retry_at.is_some());
}

#[test]
fn live_names_the_phase_and_the_latest_step() {
    let live = Live::default();
    assert_eq!(live.message(), "converging the hosts: phase connect");
    live.phase("patroni replicas");
    assert_eq!(
        live.message(),
        "converging the hosts: phase patroni replicas"
    );
    live.step("10.0.0.2", "start patroni");
    live.phase("haproxy");
    assert_eq!(live.message(), "converging the hosts: phase haproxy");
}

#[test]
fn only_a_converge_of_changed_inputs_is_announced() {
    use crate::controller::reconcile::announced;
    let run = |paused, drift_check| Running {
        message: "converging the hosts: phase etcd".into(),
        plan: vec![],
        paused,
        drift_check,
    };
    assert_eq!(
        announced(Some(&run(false, false))).as_deref(),
        Some("converging the hosts: phase etcd")
    );
    assert_eq!(
        announced(Some(&run(false, true))),
        None,
        "the ten-minute drift check"
    );
    assert_eq!(announced(Some(&run(true, false))), None, "a paused cluster");
    assert_eq!(announced(None), None);
}

#[test]
fn a_planned_step_is_the_progressing_message_and_marks_the_steps_before_it_done() {
    use crate::engine::Progress;
    use crate::plan::Step;
    let live = Live::default();
    let steps = [
        Step::AddEtcdMember { host: "e".into() },
        Step::RemoveEtcdMember {
            host: "c".into(),
            id: "a2".into(),
            healthy: true,
        },
        Step::Decommission { host: "c".into() },
    ];
    live.plan(&steps);
    live.phase("prepare hosts");
    assert_eq!(live.message(), "converging the hosts: phase prepare hosts");
    assert!(live.planned().iter().all(|s| !s.done));
    live.phase("step 2/3: removing etcd member c");
    live.step("c", "etcd member remove");
    assert_eq!(
        live.message(),
        "step 2/3: removing etcd member c (c: etcd member remove)"
    );
    let plan = live.planned();
    assert_eq!(
        plan.iter()
            .map(|s| (s.done, s.disruptive))
            .collect::<Vec<_>>(),
        [(true, true), (false, true), (false, false)]
    );
    assert_eq!(plan[0].description, "adding etcd member e");
}
