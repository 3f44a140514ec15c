//! etcd under `spec.tls` as a client sees it: plain text refused on the client port, TLS
//! without a client certificate refused, the cluster's chain on the client and peer ports, a
//! request with a certificate of the cluster's CA answered, and metrics in plain HTTP on 2381;
//! and the cluster's CA replaced and restored under a writer.

use std::path::Path;

use super::Lab;
use super::common::writer::{Target, Writer, lost_by_server};
use super::rest::{client_cert, curl};
use super::tls::served_serial;

/// The checks on each etcd member, with the CLI's files in `dir`.
pub fn check(lab: &Lab, dir: &Path) {
    let ca = dir.join("secrets.ca.crt");
    let ca_arg = ca.display().to_string();
    let ours = client_cert(dir, "etcd-client", Some((&ca, &dir.join("secrets.ca.key"))));
    for h in &lab.hosts[..3] {
        let (code, body) = curl(&[&format!("http://{h}:2379/version")]);
        assert!(
            code != "200" && !body.contains("etcdserver"),
            "{h}: plain HTTP to the client port is refused: {code} {body}"
        );
        let version = format!("https://{h}:2379/version");
        let (code, body) = curl(&["--cacert", &ca_arg, &version]);
        assert!(
            code != "200" && !body.contains("etcdserver"),
            "{h}: TLS without a client certificate is refused: {code} {body}"
        );
        let (crt, key) = (ours.0.as_str(), ours.1.as_str());
        let (code, body) = curl(&["--cacert", &ca_arg, "--cert", crt, "--key", key, &version]);
        assert!(
            code == "200" && body.contains("etcdserver"),
            "{h}: with a certificate of the cluster's CA: {code} {body}"
        );
        served_serial(h, 2379, &ca);
        served_serial(h, 2380, &ca);
        let (code, body) = curl(&[&format!("http://{h}:2381/metrics")]);
        assert!(
            code == "200" && body.contains("etcd_server_has_leader 1"),
            "{h}: metrics in plain HTTP on 2381: {code}"
        );
    }
    eprintln!("etcd TLS: plain text and certificate-less TLS refused on 3 members");
}

/// Whether etcd on `host` answers plain HTTP on its client port.
pub fn answers_plain_text(host: &str) -> bool {
    let (code, body) = curl(&[&format!("http://{host}:2379/version")]);
    code == "200" && body.contains("etcdserver")
}

/// How many CA certificates etcd on `host` trusts.
fn trusted(lab: &Lab, host: &str) -> usize {
    let out = lab.ssh_ok(
        host,
        "grep -c 'BEGIN CERTIFICATE' /etc/pgmetal/tls/etcd-trust.crt",
    );
    out.trim().parse().unwrap()
}

/// The cluster moves to a CA someone else keeps (`tls.mode: Provided`: for the CLI, another CA
/// in the files beside its secrets file), then back to its own. Each move converges at once
/// (etcd trusts both CAs until every certificate is reissued), the next apply drops the old CA
/// from etcd's trust, and etcd answers only clients of the new CA; a writer through HAProxy
/// loses no acknowledged write. Leaves the cluster on `base` with its own CA.
pub fn ca_moves(
    lab: &Lab,
    dir: &Path,
    (base, password): (&str, &str),
    apply: impl Fn(&str) -> super::Run,
) {
    let (crt, key) = (dir.join("secrets.ca.crt"), dir.join("secrets.ca.key"));
    let (own_crt, own_key) = (dir.join("own.ca.crt"), dir.join("own.ca.key"));
    std::fs::rename(&crt, &own_crt).unwrap();
    std::fs::rename(&key, &own_key).unwrap();
    super::common::openssl_ca(&crt, &key, "provided pgmetal CA");
    let provided =
        format!("{base}  tls:\n    mode: Provided\n    caSecret: read-from-files-by-the-cli\n");
    let target = Target {
        host: lab.hosts[3].clone(),
        port: 5000,
        password: password.to_string(),
    };
    let writer = Writer::start(target.clone(), 3_000_000);
    for (i, (what, manifest)) in [("to another CA", provided.as_str()), ("back", base)]
        .into_iter()
        .enumerate()
    {
        if i == 1 {
            std::fs::rename(&own_crt, &crt).unwrap();
            std::fs::rename(&own_key, &key).unwrap();
        }
        let run = apply(manifest);
        assert_eq!(run.status, 0, "CA moved {what}: {:#}", run.report);
        assert_eq!(
            trusted(lab, &lab.hosts[0]),
            2,
            "{what}: etcd trusts both CAs"
        );
        let again = apply(manifest);
        assert_eq!(
            again.status, 0,
            "CA moved {what}, again: {:#}",
            again.report
        );
        assert_eq!(
            trusted(lab, &lab.hosts[0]),
            1,
            "{what}: then the new CA only"
        );
        check(lab, dir);
        eprintln!(
            "TIMING CA moved {what}: apply {:.1}s, then {:.1}s to drop the old CA from etcd",
            run.secs, again.secs
        );
    }
    let (failed, acks) = (writer.failures(), writer.stop());
    let stored = target.stored_ids().expect("read the writer's ids back");
    let lost = lost_by_server(&acks, &stored);
    assert!(
        lost.is_empty(),
        "acknowledged writes lost while the CA moved: {lost:?}"
    );
    eprintln!(
        "TIMING two CA moves under a writer: {} acknowledged, {failed} failed, 0 lost",
        acks.len()
    );
}

/// Root on the HAProxy host writes its own CA where pgmetal keeps the cluster's. After a routine
/// apply, etcd still trusts the cluster's CA alone and refuses a client of the planted CA (a
/// host's file is data, never a trust anchor); the apply puts the cluster's CA back.
pub fn planted_ca(lab: &Lab, dir: &Path, apply: impl Fn() -> super::Run) {
    let (crt, key) = (dir.join("planted.ca.crt"), dir.join("planted.ca.key"));
    super::common::openssl_ca(&crt, &key, "planted");
    let d = &lab.hosts[3];
    let pem = std::fs::read_to_string(&crt).unwrap();
    lab.ssh_ok(d, &format!("printf '%s' '{pem}' > /etc/pgmetal/tls/ca.crt"));
    let run = apply();
    assert_eq!(
        run.status, 0,
        "apply after the planted CA: {:#}",
        run.report
    );
    for h in &lab.hosts[..3] {
        assert_eq!(
            trusted(lab, h),
            1,
            "{h}: etcd trusts the cluster's CA alone"
        );
    }
    let ca = dir.join("secrets.ca.crt").display().to_string();
    let theirs = client_cert(dir, "planted-client", Some((&crt, &key)));
    let a = &lab.hosts[0];
    let version = format!("https://{a}:2379/version");
    let (code, body) = curl(&[
        "--cacert", &ca, "--cert", &theirs.0, "--key", &theirs.1, &version,
    ]);
    assert!(
        code != "200" && !body.contains("etcdserver"),
        "a client of the planted CA is refused: {code} {body}"
    );
    let now = lab.ssh_ok(d, "cat /etc/pgmetal/tls/ca.crt");
    let ours = std::fs::read_to_string(dir.join("secrets.ca.crt")).unwrap();
    assert_eq!(
        now.trim(),
        ours.trim(),
        "the apply put the cluster's CA back on {d}"
    );
    eprintln!("planted CA on {d}: etcd trusts 1 CA on 3 members, refuses its client");
}
