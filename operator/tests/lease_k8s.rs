//! Leader election against the real API server of `e2e/lab k8s up` (ignored by a plain
//! `cargo test`; e2e/test runs it with `PGMETAL_K8S=1` and `--include-ignored`).

#[path = "common/k8s.rs"]
mod k8s;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use pgmetal::controller::lease::{self, LeaseConfig};
use tokio::time::timeout;

type Res = Result<(), Box<dyn std::error::Error>>;

const NS: &str = "default";
const LEASE: Duration = Duration::from_secs(5);
const RENEW: Duration = Duration::from_secs(1);

/// A client for the lab API server; panics with the reason when it is not up.
async fn client() -> Result<kube::Client, Box<dyn std::error::Error>> {
    let path = k8s::require_kubeconfig();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn cfg(name: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: LEASE,
        renew_every: RENEW,
        ..LeaseConfig::new(NS, name, identity)
    }
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pgmetal-test-{tag}-{}-{nanos}", std::process::id())
}

async fn holder(
    api: &Api<Lease>,
    name: &str,
) -> Result<(Option<String>, Option<i32>), kube::Error> {
    let spec = api.get(name).await?.spec.unwrap_or_default();
    Ok((spec.holder_identity, spec.lease_transitions))
}

#[tokio::test]
#[ignore = "needs the API server; e2e/test runs it"]
async fn second_contender_waits_until_release() -> Res {
    let client = client().await?;
    let (name, api) = (
        unique("release"),
        Api::<Lease>::namespaced(client.clone(), NS),
    );
    let t = Instant::now();
    let a = lease::acquire(client.clone(), cfg(&name, "a")).await?;
    eprintln!("a acquired a fresh lease in {:?}", t.elapsed());
    assert!(a.is_leader());
    assert_eq!(holder(&api, &name).await?, (Some("a".into()), Some(0)));

    let waiting = timeout(
        Duration::from_secs(6),
        lease::acquire(client.clone(), cfg(&name, "b")),
    )
    .await;
    assert!(waiting.is_err(), "b must not acquire while a renews");
    assert!(a.is_leader());

    let b = tokio::spawn(lease::acquire(client.clone(), cfg(&name, "b")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    a.release().await;
    let b = timeout(LEASE, b).await???;
    eprintln!("b acquired {:?} after a released", t.elapsed());
    assert!(b.is_leader());
    assert_eq!(holder(&api, &name).await?, (Some("b".into()), Some(1)));
    b.release().await;
    assert_eq!(holder(&api, &name).await?.0, None);
    api.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the API server; e2e/test runs it"]
async fn expired_lease_is_taken_over() -> Res {
    let client = client().await?;
    let (name, api) = (
        unique("expire"),
        Api::<Lease>::namespaced(client.clone(), NS),
    );
    let a = lease::acquire(client.clone(), cfg(&name, "a")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(a); // stops renewing without releasing, like a crashed replica
    let t = Instant::now();
    let b = timeout(
        LEASE + RENEW * 3,
        lease::acquire(client.clone(), cfg(&name, "b")),
    )
    .await??;
    let waited = t.elapsed();
    eprintln!("b took over an abandoned lease after {waited:?}");
    assert!(
        waited >= LEASE - RENEW * 2,
        "took over too early: {waited:?}"
    );
    assert_eq!(holder(&api, &name).await?, (Some("b".into()), Some(1)));
    b.release().await;
    api.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the API server; e2e/test runs it"]
async fn lost_fires_when_another_holder_takes_over() -> Res {
    let client = client().await?;
    let (name, api) = (unique("lost"), Api::<Lease>::namespaced(client.clone(), NS));
    let mut a = lease::acquire(client.clone(), cfg(&name, "a")).await?;
    let patch = serde_json::json!({ "spec": { "holderIdentity": "intruder" } });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let t = Instant::now();
    timeout(RENEW * 3, a.lost()).await?;
    eprintln!("lost() fired {:?} after the forced takeover", t.elapsed());
    assert!(!a.is_leader());
    a.release().await; // must not clear the intruder's claim
    assert_eq!(holder(&api, &name).await?.0.as_deref(), Some("intruder"));
    api.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the API server; e2e/test runs it"]
async fn concurrent_contenders_elect_exactly_one() -> Res {
    let client = client().await?;
    let (name, api) = (unique("race"), Api::<Lease>::namespaced(client.clone(), NS));
    let contenders: Vec<_> = (0..6)
        .map(|i| tokio::spawn(lease::acquire(client.clone(), cfg(&name, &format!("c{i}")))))
        .collect();
    tokio::time::sleep(LEASE + RENEW * 2).await;
    let (mut winners, mut waiting) = (Vec::new(), 0);
    for c in contenders {
        if c.is_finished() {
            winners.push(c.await??);
        } else {
            c.abort();
            waiting += 1;
        }
    }
    assert_eq!(
        (winners.len(), waiting),
        (1, 5),
        "exactly one contender may win"
    );
    let (held_by, transitions) = holder(&api, &name).await?;
    eprintln!("race won by {held_by:?}, leaseTransitions {transitions:?}");
    assert_eq!(transitions, Some(0));
    for w in winners {
        assert!(w.is_leader());
        w.release().await;
    }
    api.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}
