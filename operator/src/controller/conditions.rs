//! The status conditions, computed purely from what a reconcile learned, and merged with the
//! previous ones so that `lastTransitionTime` only moves when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::engine::observe::Verdict;

/// Everything the conditions are derived from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `spec.paused`.
    pub paused: bool,
    /// A problem that stops all work (invalid spec, missing Secret): (reason, message).
    pub blocked: Option<(String, String)>,
    /// Hosts that could not be reached or failed a step: (host, error).
    pub host_errors: Vec<(String, String)>,
    /// The observation's verdict (None when nothing could be observed).
    pub verdict: Option<Verdict>,
    /// Changes made by this reconcile (files, units, switchover); > 0 means Progressing.
    pub changed: usize,
    /// A switchover in progress or just done: a message.
    pub switchover: Option<String>,
    /// Actual primary, and the preferred one when they differ: (actual, preferred, failback mode).
    pub off_preferred: Option<(String, String, String)>,
    /// HAProxy hosts in the spec.
    pub haproxy_hosts: usize,
    /// A forked history or two primaries (the split-brain guard).
    pub split_brain: Option<crate::engine::split_brain::SplitBrain>,
}

fn cond(kind: &str, ok: bool, reason: &str, message: String, generation: Option<i64>) -> Condition {
    Condition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// The nine conditions for these facts: pgmetal's own, plus `Reconciling` and `Stalled`, which
/// mirror `Progressing` and a blocked `Ready` for GitOps tools (Flux, Argo CD: kstatus).
pub fn compute(f: &Facts, generation: Option<i64>) -> Vec<Condition> {
    let g = generation;
    let mut out = Vec::new();
    out.push(if f.paused {
        cond("ReconciliationPaused", true, "SpecPaused", "spec.paused is true: pgmetal does not converge the hosts and Patroni is in maintenance mode (no automatic failover). Set spec.paused to false to resume.".into(), g)
    } else {
        cond("ReconciliationPaused", false, "Active", "pgmetal converges the hosts.".into(), g)
    });
    let v = f.verdict.clone().unwrap_or_default();
    let observed = f.verdict.is_some();
    let etcd_ok = observed && v.etcd.is_empty();
    out.push(cond(
        "EtcdHealthy",
        etcd_ok,
        if etcd_ok {
            "AllMembersHealthy"
        } else {
            "MembersUnhealthy"
        },
        if etcd_ok {
            "Every etcd member answers its health check.".into()
        } else if observed {
            v.etcd.join("; ")
        } else {
            "Not observed yet.".into()
        },
        g,
    ));
    let pat_ok = observed && v.patroni.is_empty();
    out.push(cond(
        "PatroniHealthy",
        pat_ok,
        if pat_ok {
            "LeaderAndReplicasRunning"
        } else {
            "MembersUnhealthy"
        },
        if pat_ok {
            "One leader; every replica is streaming.".into()
        } else if observed {
            v.patroni.join("; ")
        } else {
            "Not observed yet.".into()
        },
        g,
    ));
    let route_ok = observed && v.routing.is_empty();
    let route_msg = if f.haproxy_hosts == 0 {
        "No HAProxy hosts in the spec: the rendered haproxy.cfg is published in the ConfigMap <cluster>-haproxy.".to_string()
    } else if route_ok {
        "HAProxy routes read-write to the leader and read-only to the replicas.".into()
    } else if observed {
        v.routing.join("; ")
    } else {
        "Not observed yet.".into()
    };
    out.push(cond(
        "RoutingReady",
        route_ok,
        if f.haproxy_hosts == 0 {
            "NoHAProxyHosts"
        } else if route_ok {
            "RoutingToLeader"
        } else {
            "RoutingWrong"
        },
        route_msg,
        g,
    ));

    let progressing = f.changed > 0 || f.switchover.is_some();
    let prog_msg = match (&f.switchover, f.changed) {
        (Some(s), _) => s.clone(),
        (None, 0) => "The hosts match the spec.".into(),
        (None, n) => format!("{n} changes applied to the hosts in this reconcile."),
    };
    let prog = cond(
        "Progressing",
        progressing,
        if f.switchover.is_some() {
            "Switchover"
        } else if progressing {
            "Converging"
        } else {
            "Converged"
        },
        prog_msg,
        g,
    );
    let reconciling = Condition {
        type_: "Reconciling".into(),
        ..prog.clone()
    };
    out.push(prog);

    let mut degraded: Vec<(String, String)> = Vec::new();
    if let Some(sb) = &f.split_brain {
        degraded.push((sb.reason().into(), sb.message()));
    }
    for (h, e) in &f.host_errors {
        degraded.push(("HostFailed".into(), format!("host {h}: {e}")));
    }
    for p in v.all() {
        degraded.push(("MembersUnhealthy".into(), p));
    }
    if let Some((actual, preferred, mode)) = &f.off_preferred {
        let what = if mode == "Automatic" {
            format!("fail-back to {preferred} follows once it is healthy and caught up")
        } else {
            format!(
                "failback is Manual: set spec.postgres.primary to {actual} to accept it, or switch back by keeping {preferred} and setting spec.patroni.failback to Automatic"
            )
        };
        degraded.push((
            "FailedOver".into(),
            format!(
                "the primary is {actual}, not the preferred {preferred}, after a failover; {what}"
            ),
        ));
    }
    let is_degraded = !degraded.is_empty() && f.blocked.is_none();
    out.push(if is_degraded {
        let reason = degraded[0].0.clone();
        cond(
            "Degraded",
            true,
            &reason,
            degraded
                .iter()
                .map(|d| d.1.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            g,
        )
    } else {
        cond(
            "Degraded",
            false,
            "AsDesired",
            "Nothing is degraded.".into(),
            g,
        )
    });

    let ready = f.blocked.is_none()
        && observed
        && v.all().is_empty()
        && f.host_errors.is_empty()
        && f.split_brain.is_none();
    out.push(match &f.blocked {
        Some((reason, msg)) => cond("Ready", false, reason, msg.clone(), g),
        None if ready => cond(
            "Ready",
            true,
            "ClusterHealthy",
            "etcd healthy, one Patroni leader, replicas streaming, HAProxy routing correctly."
                .into(),
            g,
        ),
        None if f.paused => cond(
            "Ready",
            false,
            "Paused",
            "Reconciliation is paused.".into(),
            g,
        ),
        None => cond(
            "Ready",
            false,
            if observed {
                "NotHealthy"
            } else {
                "NotObserved"
            },
            if is_degraded {
                degraded
                    .iter()
                    .map(|d| d.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                "Waiting for the first observation.".into()
            },
            g,
        ),
    });
    out.push(reconciling);
    out.push(match &f.blocked {
        Some((reason, msg)) => cond("Stalled", true, reason, msg.clone(), g),
        None => cond(
            "Stalled",
            false,
            "NotStalled",
            "The spec is valid and its Secrets are present.".into(),
            g,
        ),
    });
    out
}

/// `Reconciling` and `Stalled` repeat `Progressing` and `Ready` for GitOps tools; their
/// transitions are not announced again as events.
pub fn is_mirror(c: &Condition) -> bool {
    matches!(c.type_.as_str(), "Reconciling" | "Stalled")
}

/// True for a condition a person should look at: Degraded or Stalled True, or a health condition
/// False.
pub fn is_bad(c: &Condition) -> bool {
    match c.type_.as_str() {
        "Degraded" | "Stalled" => c.status == "True",
        "Ready" | "EtcdHealthy" | "PatroniHealthy" | "RoutingReady" => c.status == "False",
        _ => false,
    }
}

/// Keeps each old condition's `lastTransitionTime` when its status did not change.
pub fn merge(old: &[Condition], mut new: Vec<Condition>) -> Vec<Condition> {
    for c in &mut new {
        if let Some(o) = old.iter().find(|o| o.type_ == c.type_)
            && o.status == c.status
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
    new
}

/// Conditions whose status changed (or are new): (type, new status, reason, message), for events.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Condition> {
    new.iter()
        .filter(|c| {
            old.iter()
                .find(|o| o.type_ == c.type_)
                .is_none_or(|o| o.status != c.status || o.reason != c.reason)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
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
            Facts::default(),
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
            host_errors: vec![("10.0.0.1".into(), "connect: timed out".into())],
            off_preferred: Some(("10.0.0.2".into(), "10.0.0.1".into(), "Manual".into())),
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
            blocked: Some(("SecretMissing".into(), "Secret ssh not found".into())),
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
        for reason in ["SecretMissing", "InvalidSpec"] {
            let f = Facts {
                blocked: Some((reason.into(), "what is wrong".into())),
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
}
