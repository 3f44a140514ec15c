//! etcd under `spec.tls` as a client sees it: plain text refused on the client port, TLS
//! without a client certificate refused, the cluster's chain on the client and peer ports, a
//! request with a certificate of the cluster's CA answered, and metrics in plain HTTP on 2381.

use std::path::Path;

use super::Lab;
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
