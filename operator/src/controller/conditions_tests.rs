//! Unit tests of the conditions: what each set of facts writes, merging and transitions.

use super::*;

fn get<'a>(cs: &'a [Condition], t: &str) -> &'a Condition {
    cs.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn healthy_cluster_is_ready_and_not_degraded() {
    let f = Facts {
        verdict: Some(Verdict::default()),
        haproxy_hosts: 1,
        ..Default::default()
    };
    let cs = compute(&f, Some(3));
    assert_eq!(cs.len(), 9);
    assert_eq!(get(&cs, "Ready").status, "True");
    assert_eq!(get(&cs, "Degraded").status, "False");
    assert_eq!(get(&cs, "Progressing").status, "False");
    assert_eq!(get(&cs, "Ready").observed_generation, Some(3));
    assert_eq!(get(&cs, "Reconciling").status, "False");
    assert_eq!(get(&cs, "Stalled").status, "False");
}

#[test]
fn ready_never_comes_with_reconciling() {
    // The status that picks up a converge's changes on a healthy cluster: Progressing and
    // Reconciling say what changed, so Ready waits for the next look (kstatus: InProgress,
    // never Ready and InProgress at once).
    let healthy = Facts {
        verdict: Some(Verdict::default()),
        ..Default::default()
    };
    let picked_up = Facts {
        changed: 60,
        ..healthy.clone()
    };
    let cs = compute(&picked_up, Some(3));
    assert_eq!(get(&cs, "Reconciling").status, "True");
    assert_eq!(get(&cs, "Ready").status, "False");
    assert_eq!(get(&cs, "Ready").reason, "Converging");
    assert!(get(&cs, "Ready").message.contains("60 changes"));
    let cs = compute(&healthy, Some(3));
    assert_eq!(
        (
            get(&cs, "Ready").status.as_str(),
            get(&cs, "Reconciling").status.as_str()
        ),
        ("True", "False")
    );
    // A generation already Ready stays Ready through a drift repair's changes.
    let repaired = Facts {
        settled: true,
        ..picked_up
    };
    assert_eq!(get(&compute(&repaired, Some(3)), "Ready").status, "True");
}

#[test]
fn reconciling_mirrors_progressing() {
    for f in [
        Facts {
            changed: 2,
            ..Default::default()
        },
        Facts {
            switchover: Some("switched over from a to b (spec)".into()),
            ..Default::default()
        },
        Facts {
            settled: true,
            ..Default::default()
        },
    ] {
        let cs = compute(&f, Some(4));
        let (p, r) = (get(&cs, "Progressing"), get(&cs, "Reconciling"));
        assert_eq!(
            (&r.status, &r.reason, &r.message, r.observed_generation),
            (&p.status, &p.reason, &p.message, p.observed_generation)
        );
        assert!(is_mirror(r) && !is_mirror(p));
    }
    let cs = compute(
        &Facts {
            changed: 2,
            ..Default::default()
        },
        None,
    );
    assert_eq!(get(&cs, "Reconciling").status, "True");
    assert_eq!(get(&cs, "Reconciling").reason, "Converging");
    assert_eq!(get(&cs, "Stalled").status, "False");
}

#[test]
fn unreachable_host_and_failover_are_degraded_naming_hosts() {
    let f = Facts {
        verdict: Some(Verdict {
            patroni: vec!["Patroni: member on 10.0.0.1 is not registered".into()],
            ..Default::default()
        }),
        host_errors: vec![crate::engine::HostError::new(
            "10.0.0.1",
            Some("connect"),
            crate::engine::Failure::new(crate::engine::HostErrorKind::Unreachable, "timed out"),
        )],
        off_preferred: Some(OffPreferred {
            actual: "10.0.0.2".into(),
            preferred: "10.0.0.1".into(),
            failback: Failback::Manual,
        }),
        ..Default::default()
    };
    let cs = compute(&f, None);
    let d = get(&cs, "Degraded");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "HostFailed")
    );
    assert!(
        d.message.contains("10.0.0.1") && d.message.contains("failback is Manual"),
        "{}",
        d.message
    );
    assert_eq!(get(&cs, "Ready").status, "False");
    assert_eq!(get(&cs, "PatroniHealthy").status, "False");
}

#[test]
fn blocked_spec_is_not_ready_with_its_reason() {
    let f = Facts {
        blocked: Some(Blocked {
            reason: reason::SECRET_MISSING,
            message: "Secret ssh not found".into(),
        }),
        ..Default::default()
    };
    let r = compute(&f, None)
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (r.reason.as_str(), r.message.as_str()),
        ("SecretMissing", "Secret ssh not found")
    );
}

#[test]
fn blocked_spec_is_stalled_with_readys_reason() {
    for reason in [reason::SECRET_MISSING, reason::INVALID_SPEC] {
        let f = Facts {
            blocked: Some(Blocked {
                reason,
                message: "what is wrong".into(),
            }),
            ..Default::default()
        };
        let cs = compute(&f, Some(2));
        let s = get(&cs, "Stalled");
        assert_eq!(
            (s.status.as_str(), s.reason.as_str(), s.message.as_str()),
            ("True", reason, "what is wrong")
        );
        assert!(is_bad(s) && is_mirror(s));
        assert_eq!(get(&cs, "Reconciling").status, "False");
    }
}

#[test]
fn merge_keeps_transition_time_when_status_is_unchanged() {
    let f = Facts {
        verdict: Some(Verdict::default()),
        ..Default::default()
    };
    let mut old = compute(&f, None);
    let then = Time(
        k8s_openapi::jiff::Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(1))
            .unwrap(),
    );
    old.iter_mut()
        .for_each(|c| c.last_transition_time = then.clone());
    let new = merge(&old, compute(&f, None));
    assert!(new.iter().all(|c| c.last_transition_time == then));
    let broken = Facts {
        verdict: Some(Verdict {
            etcd: vec!["etcd: 2/3".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let new = merge(&old, compute(&broken, None));
    assert_ne!(get(&new, "EtcdHealthy").last_transition_time, then);
    assert_eq!(get(&new, "PatroniHealthy").last_transition_time, then);
    assert!(
        is_bad(get(&new, "EtcdHealthy"))
            && !is_bad(get(&new, "ReconciliationPaused"))
            && is_bad(get(&new, "Degraded"))
    );
    let changed: Vec<String> = transitions(&old, &new)
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(
        changed.contains(&"EtcdHealthy".to_string())
            && !changed.contains(&"PatroniHealthy".to_string())
    );
}

#[test]
fn compute_writes_every_type_once_in_order() {
    let with_backups = Facts {
        backup: Some((true, String::new())),
        ..Facts::default()
    };
    let types: Vec<_> = compute(&with_backups, None)
        .iter()
        .map(|c| ConditionType::of(c).unwrap())
        .collect();
    assert_eq!(types, ConditionType::ALL);
    assert!(
        compute(&Facts::default(), None)
            .iter()
            .all(|c| c.status == Status::True.as_str() || c.status == Status::False.as_str())
    );
}

#[test]
fn a_running_converge_is_progressing_and_not_ready() {
    let msg = "converging the hosts: phase etcd (10.0.0.1: write files)";
    let f = Facts {
        verdict: Some(Verdict::default()),
        converging: Some(msg.into()),
        haproxy_hosts: 1,
        ..Default::default()
    };
    assert!(f.healthy(), "the cluster itself is healthy");
    let cs = compute(&f, Some(2));
    for t in ["Progressing", "Reconciling", "Ready"] {
        let c = get(&cs, t);
        assert_eq!((c.reason.as_str(), c.message.as_str()), ("Converging", msg));
    }
    assert_eq!(get(&cs, "Progressing").status, "True");
    assert_eq!(get(&cs, "Reconciling").status, "True");
    assert_eq!(get(&cs, "Ready").status, "False");
    assert!(!is_bad(get(&cs, "Ready")), "a converge is not a problem");
    assert_eq!(get(&cs, "Degraded").status, "False");
    // Never observed: Ready says so rather than the converge.
    let cs = compute(
        &Facts {
            converging: Some(msg.into()),
            ..Default::default()
        },
        None,
    );
    assert_eq!(get(&cs, "Ready").reason, "NotObserved");
    assert_eq!(get(&cs, "Progressing").message, msg);
    // Finished with no change and no error: Progressing False.
    let done = Facts {
        verdict: Some(Verdict::default()),
        ..Default::default()
    };
    let cs = compute(&done, None);
    assert_eq!(get(&cs, "Progressing").status, "False");
    assert_eq!(get(&cs, "Progressing").message, "The hosts match the spec.");
    assert_eq!(get(&cs, "Ready").status, "True");
}

#[test]
fn reconciling_until_a_generation_is_first_ready_then_degraded_is_not_reconciling() {
    let unhealthy = Verdict {
        patroni: vec!["replica b is not streaming".into()],
        ..Default::default()
    };
    let waiting = Facts {
        verdict: Some(unhealthy.clone()),
        haproxy_hosts: 1,
        ..Default::default()
    };
    let cs = compute(&waiting, Some(5));
    let r = get(&cs, "Reconciling");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("True", "WaitingForReady")
    );
    assert!(
        r.message.contains("replica b is not streaming"),
        "{}",
        r.message
    );
    assert!(!settled(&cs, Some(5)), "not Ready yet");
    assert_eq!(
        get(&cs, "Progressing").status,
        "False",
        "the hosts match the spec"
    );

    let ready = Facts {
        verdict: Some(Verdict::default()),
        ..waiting.clone()
    };
    let cs = compute(&ready, Some(5));
    assert_eq!(get(&cs, "Reconciling").status, "False");
    assert!(settled(&cs, Some(5)));
    assert!(
        !settled(&cs, Some(6)),
        "a new generation waits for Ready again"
    );

    // A replica fails later in the same generation: Degraded, and not Reconciling.
    let later = Facts {
        settled: true,
        ..waiting.clone()
    };
    let cs = compute(&later, Some(5));
    assert_eq!(get(&cs, "Reconciling").status, "False");
    assert_eq!(get(&cs, "Degraded").status, "True");
    assert!(settled(&cs, Some(5)), "stays settled");

    // Blocked or paused: never waiting, and never settled by it.
    for f in [
        Facts {
            blocked: Some(Blocked {
                reason: reason::SECRET_MISSING,
                message: "create it".into(),
            }),
            ..waiting.clone()
        },
        Facts {
            paused: true,
            ..waiting
        },
    ] {
        let cs = compute(&f, Some(5));
        assert_eq!(get(&cs, "Reconciling").status, "False");
        assert!(!settled(&cs, Some(5)));
    }
}

#[test]
fn a_converge_that_failed_as_a_whole_is_degraded_and_not_ready() {
    let failure = crate::engine::Failure::new(
        crate::engine::HostErrorKind::Etcd,
        "etcd has no healthy quorum after 120 s (1/3 healthy)",
    );
    let f = Facts {
        verdict: Some(Verdict::default()),
        haproxy_hosts: 1,
        converge_failure: Some(failure),
        settled: true,
        ..Default::default()
    };
    assert!(!f.healthy());
    let cs = compute(&f, Some(2));
    let d = get(&cs, "Degraded");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "ConvergeFailed")
    );
    assert!(d.message.contains("1/3 healthy"), "{}", d.message);
    assert_eq!(get(&cs, "Ready").status, "False");
}

#[test]
fn a_failed_converge_is_not_progressing_and_degraded_names_the_host_first() {
    use crate::engine::{Failure, HostError, HostErrorKind};
    let claimed = HostError::new(
        "d",
        Some("claim host"),
        Failure::new(HostErrorKind::Claimed, "d belongs to cluster db/other"),
    );
    let f = Facts {
        verdict: Some(Verdict::default()),
        host_errors: vec![claimed],
        converge_failure: Some(Failure::new(
            HostErrorKind::Etcd,
            "no etcd host could be converged",
        )),
        ..Default::default()
    };
    let cs = compute(&f, Some(3));
    let p = get(&cs, "Progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_str()),
        ("False", "ConvergeFailed")
    );
    assert!(!p.message.contains("match the spec"), "{}", p.message);
    let d = get(&cs, "Degraded");
    assert_eq!(d.reason, "HostClaimed", "the cause before its consequence");
    assert!(
        d.message
            .starts_with("host d: claim host: d belongs to cluster db/other"),
        "{}",
        d.message
    );
    // Never Ready at this generation: Reconciling waits for Ready.
    assert_eq!(get(&cs, "Reconciling").status, "True");
    // Ready once before: the failure is Degraded, Reconciling stays False, and stays settled.
    let later = compute(&Facts { settled: true, ..f }, Some(3));
    assert_eq!(get(&later, "Reconciling").status, "False");
    assert!(settled(&later, Some(3)));
}

#[test]
fn backup_ready_appears_only_with_backups_and_says_why() {
    let healthy = Facts {
        verdict: Some(Verdict::default()),
        haproxy_hosts: 1,
        ..Default::default()
    };
    assert!(
        !compute(&healthy, None)
            .iter()
            .any(|c| c.type_ == "BackupReady")
    );
    let why = "WAL archiving is behind: 1 segment(s) waiting since 2026-11-30T15:19:16Z";
    let f = Facts {
        backup: Some((false, why.into())),
        ..healthy.clone()
    };
    let cs = compute(&f, Some(2));
    assert_eq!(cs.len(), 10);
    let b = get(&cs, "BackupReady");
    assert_eq!((b.status.as_str(), b.message.as_str()), ("False", why));
    assert!(is_bad(b), "a backup problem is news");
    assert_eq!(
        get(&cs, "Ready").status,
        "True",
        "the cluster serves all the same"
    );
    let ok = Facts {
        backup: Some((true, "2 backups".into())),
        ..healthy
    };
    assert_eq!(
        get(&compute(&ok, None), "BackupReady").reason,
        reason::BACKUPS_IN_ORDER
    );
}
