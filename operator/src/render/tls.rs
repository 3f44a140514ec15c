//! Where the cluster's certificates live on a host, what names they carry, and the files that
//! hold them. Issuing is in [`crate::tls`]; deciding when to issue is the engine's.

use crate::api::PostgresClusterSpec;
use crate::model::DesiredFile;
use crate::tls::CertKey;

/// The directory of pgmetal's certificates on every host.
pub const TLS_DIR: &str = "/etc/pgmetal/tls";
/// The cluster's CA certificate (public), as every host sees it.
pub const CA_CERT: &str = "/etc/pgmetal/tls/ca.crt";
/// The PostgreSQL server certificate followed by its private key, in one file (mode 0600,
/// owned by the postgres user) so that they are replaced together, atomically: an interrupted
/// renewal can never leave a certificate beside another certificate's key.
pub const POSTGRES_PEM: &str = "/etc/pgmetal/tls/postgres.pem";

/// etcd's certificate (server and client authentication: it serves clients and peers and dials
/// peers) followed by its key, owned by the etcd user, like [`POSTGRES_PEM`].
pub const ETCD_PEM: &str = "/etc/pgmetal/tls/etcd.pem";
/// The CAs etcd trusts for clients and peers: the cluster's, and while the cluster's CA is
/// replaced, the ones the hosts still hold, so that members and clients with certificates of
/// either are accepted until every one has a new certificate (etcd reads it only at start).
pub const ETCD_TRUST: &str = "/etc/pgmetal/tls/etcd-trust.crt";
/// What Patroni's `etcd3` section says, which Patroni reads only when it starts: the scheme
/// (`http` or `https`) and the hosts. A change of this file is followed by a restart of
/// Patroni (under pause); its marker says one is owed.
pub const PATRONI_ETCD: &str = "/etc/pgmetal/patroni-etcd";

/// The node exporter's textfile with the certificates' expiry.
pub const EXPIRY_METRICS: &str = "/var/lib/prometheus/node-exporter/pgmetal_tls.prom";

/// The names a PostgreSQL server certificate for `host` carries: the host, every HAProxy host
/// (clients reach the server through them, and `verify-full` checks the name they dialled) and
/// `spec.tls.serviceNames`, each once.
pub fn postgres_names(spec: &PostgresClusterSpec, host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = std::iter::once(host)
        .chain(spec.haproxy.hosts.iter().map(String::as_str))
        .chain(spec.tls.service_names.iter().map(String::as_str));
    for name in all {
        if !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            out.push(name.to_string());
        }
    }
    out
}

/// The names an etcd certificate for `host` carries: the host, and loopback (the member
/// listens there too, and the lab's and a DBA's `etcdctl` on the host dial it).
pub fn etcd_names(host: &str) -> Vec<String> {
    let mut names = vec![host.to_string()];
    if host != "127.0.0.1" {
        names.push("127.0.0.1".into());
    }
    names
}

/// The file saying what Patroni's `etcd3` section says (see [`PATRONI_ETCD`]): the scheme,
/// then the hosts.
pub fn patroni_etcd(spec: &PostgresClusterSpec) -> DesiredFile {
    let scheme = crate::tls::Scheme::when(spec.tls.enabled());
    let port = spec.etcd.client_port;
    let hosts: Vec<String> = spec
        .etcd
        .hosts
        .iter()
        .map(|h| super::host_port(h, port))
        .collect();
    DesiredFile {
        path: PATRONI_ETCD.into(),
        content: format!("{} {}\n", scheme.as_str(), hosts.join(",")).into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// Patroni's local `postgresql.parameters` that turn TLS on with pgmetal's files (empty when
/// `spec.tls` is disabled). Local parameters take precedence over the dynamic configuration.
pub fn postgres_parameters(spec: &PostgresClusterSpec) -> Vec<(&'static str, String)> {
    if !spec.tls.enabled() {
        return Vec::new();
    }
    vec![
        ("ssl", "on".into()),
        ("ssl_ca_file", CA_CERT.into()),
        ("ssl_cert_file", POSTGRES_PEM.into()),
        ("ssl_key_file", POSTGRES_PEM.into()),
    ]
}

/// The CA certificate file: public, readable by every service.
pub fn ca_file(ca_cert: &str) -> DesiredFile {
    DesiredFile {
        path: CA_CERT.into(),
        content: ca_cert.as_bytes().to_vec(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// A newly issued PostgreSQL server certificate and its key, owned by `user` (PostgreSQL
/// refuses a key that others can read).
pub fn postgres_file(issued: &CertKey, user: &str) -> DesiredFile {
    DesiredFile {
        path: POSTGRES_PEM.into(),
        content: format!("{}{}", issued.cert, issued.key.0).into_bytes(),
        mode: 0o600,
        owner: user.into(),
        group: user.into(),
    }
}

/// [`ETCD_TRUST`] with `cas` (PEM), each once, in order.
pub fn etcd_trust_file(cas: &[&str]) -> DesiredFile {
    let mut seen: Vec<&str> = Vec::new();
    for ca in cas.iter().map(|c| c.trim()) {
        if !seen.contains(&ca) {
            seen.push(ca);
        }
    }
    let text: String = seen.iter().map(|c| format!("{c}\n")).collect();
    DesiredFile {
        path: ETCD_TRUST.into(),
        content: text.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// A newly issued etcd certificate and its key, owned by `user` (the etcd user).
pub fn etcd_file(issued: &CertKey, user: &str) -> DesiredFile {
    DesiredFile {
        path: ETCD_PEM.into(),
        ..postgres_file(issued, user)
    }
}

/// The node exporter's textfile with the expiry of the certificates pgmetal keeps on a host
/// (`(name, path, not after as Unix seconds)`) and the renewal margin, for the expiry alert.
pub fn expiry_metrics(certificates: &[(&str, &str, i64)], renew_before_secs: u64) -> DesiredFile {
    let mut text = String::from(
        "# Managed by pgmetal.\n\
         # HELP pgmetal_certificate_expiry_timestamp_seconds When a certificate pgmetal keeps expires.\n\
         # TYPE pgmetal_certificate_expiry_timestamp_seconds gauge\n",
    );
    for (name, path, not_after) in certificates {
        text.push_str(&format!(
            "pgmetal_certificate_expiry_timestamp_seconds{{certificate=\"{name}\",path=\"{path}\"}} {not_after}\n"
        ));
    }
    text.push_str(&format!(
        "# HELP pgmetal_certificate_renew_before_seconds How long before expiry pgmetal reissues a certificate.\n\
         # TYPE pgmetal_certificate_renew_before_seconds gauge\n\
         pgmetal_certificate_renew_before_seconds {renew_before_secs}\n"
    ));
    DesiredFile {
        path: EXPIRY_METRICS.into(),
        content: text.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}
