//! Unit tests of the connection path: which key each host must present.

use std::sync::LazyLock;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};

use super::*;
use crate::exec::{FakeExecutor, Verdict, fingerprint};

/// The key every host presents in these tests, and its fingerprint.
pub(crate) const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAINoWbwysPakwNWmU1dVfi3z20GJQ9aCqngBASPdrtG8c";
pub(crate) const K1_FP: &str = "SHA256:f7RiKdzv9DsFFYv57Z69x6qziEE/1EEyl673HKshhcc";
/// Another key's fingerprint.
pub(crate) const K2_FP: &str = "SHA256:a3jxvEaaOufW5+MfqHOmJK40BtJe0WqkBH8jw8TqvfQ";

/// A throwaway client key (OpenSSH PEM), derived from a fixed seed.
pub(crate) static TEST_KEY: LazyLock<String> = LazyLock::new(|| {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    key.to_openssh(LineEnding::LF).unwrap().to_string()
});

/// A [`Connector`] to hosts that all present [`K1`], checked the way `SshExecutor` checks it;
/// a trusted host answers with a [`FakeExecutor`].
pub(crate) fn presenting_k1(host: String, cfg: SshConfig) -> Connecting {
    Box::pin(async move {
        let key: PublicKey = russh::keys::parse_public_key_base64(K1).unwrap();
        let got = fingerprint(&key);
        match cfg.known_hosts.check(&host, cfg.port, &key) {
            Verdict::Trusted => Ok((Arc::new(FakeExecutor::new(&host)) as Arc<dyn Executor>, got)),
            Verdict::Mismatch { expected } => Err(ExecError::HostKeyMismatch {
                host,
                expected,
                got,
            }),
            Verdict::Unknown => Err(ExecError::UnknownHostKey { host, got }),
        }
    })
}

fn ssh() -> SshSpec {
    crate::render::tests::spec().ssh
}

fn status(host: &str, fp: &str) -> HostStatus {
    HostStatus {
        host: host.into(),
        host_key_fingerprint: Some(fp.into()),
        ..Default::default()
    }
}

#[test]
fn known_hosts_wins_then_the_pin_then_first_use() {
    let file = KnownHosts::parse(&format!("a ssh-ed25519 {K1}\n"));
    assert!(matches!(
        host_policy(&file, Some(K2_FP)),
        KnownHosts::File(_)
    ));
    assert!(
        matches!(host_policy(&KnownHosts::TrustFirstUse, Some(K2_FP)), KnownHosts::Pinned(fp) if fp == K2_FP)
    );
    assert!(matches!(
        host_policy(&KnownHosts::TrustFirstUse, None),
        KnownHosts::TrustFirstUse
    ));
    let p = pinned(&[status("a", K1_FP), HostStatus::default()]);
    assert_eq!(p.len(), 1);
    assert_eq!(p["a"], K1_FP);
}

#[tokio::test]
async fn a_pinned_key_that_does_not_match_is_refused() {
    let hosts = ["a".to_string(), "b".to_string(), "c".to_string()];
    let pins = [status("a", K2_FP), status("b", K1_FP)];
    let c = connect_cluster(&ssh(), &TEST_KEY, None, &pins, &hosts, presenting_k1).await;
    let err = c["a"].conn.as_ref().err().expect("a refused");
    assert_eq!(
        (&err.kind, err.host.as_str()),
        (&HostErrorKind::HostKey, "a")
    );
    let err = err.to_string();
    assert!(
        err.starts_with("connect: a: host key mismatch") && err.contains(K2_FP),
        "{err}"
    );
    assert!(c["a"].fingerprint.is_none());
    assert_eq!(c["b"].fingerprint.as_deref(), Some(K1_FP));
    assert_eq!(c["c"].fingerprint.as_deref(), Some(K1_FP));
}

#[tokio::test]
async fn known_hosts_is_checked_even_where_a_key_is_pinned() {
    let hosts = ["a".to_string(), "b".to_string()];
    let known = format!("a ssh-ed25519 {K1}\n");
    let pins = [status("a", K2_FP), status("b", K1_FP)];
    let c = connect_cluster(
        &ssh(),
        &TEST_KEY,
        Some(&known),
        &pins,
        &hosts,
        presenting_k1,
    )
    .await;
    assert!(c["a"].conn.is_ok());
    let err = c["b"].conn.as_ref().err().expect("b unknown");
    assert_eq!(err.kind, HostErrorKind::HostKey);
    assert!(err.to_string().contains("not in known_hosts"), "{err}");
}

#[tokio::test]
async fn a_bad_private_key_fails_every_host() {
    let hosts = ["a".to_string(), "b".to_string()];
    let c = connect_cluster(&ssh(), "not a key", None, &[], &hosts, presenting_k1).await;
    for h in &hosts {
        let err = c[h].conn.as_ref().err().expect("fails");
        assert!(err.kind.is_connection());
        let err = err.to_string();
        assert!(
            err.starts_with("connect: spec.ssh.privateKeySecret: "),
            "{err}"
        );
    }
}
