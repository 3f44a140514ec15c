//! pg_hba.conf lines for Patroni's `postgresql.pg_hba`.

use crate::api::PostgresClusterSpec;

/// pgmetal's pg_hba lines, then the user's `spec.postgres.pgHba` lines verbatim.
///
/// Local: OS user postgres by peer, the PostgreSQL exporter by peer through a pg_ident map
/// (monitoring on); Patroni's own superuser connection over 127.0.0.1 (it
/// connects to `localhost` by TCP), and its replication connection to its own member (Patroni 4
/// reads a replica's timeline and LSN through it when the leader is gone: without it no replica
/// counts as the healthiest, and a synchronous-mode cluster never fails over). Members:
/// replication and all databases (pg_rewind).
/// HAProxy hosts: all databases. Every TCP line requires scram-sha-256, and TLS (`hostssl`)
/// when `spec.tls` is on: libpq's default `sslmode=prefer` (Patroni's, pg_rewind's and most
/// clients') then encrypts without any change on the client.
pub(crate) fn pg_hba(spec: &PostgresClusterSpec) -> Vec<String> {
    let pg = &spec.postgres;
    let repl = hba_name(&pg.replication.name);
    let host = if spec.tls.enabled() {
        "hostssl"
    } else {
        "host"
    };
    let mut lines = vec![
        "local all postgres peer".to_string(),
        format!("{host} all all 127.0.0.1/32 scram-sha-256"),
        format!("{host} replication {repl} 127.0.0.1/32 scram-sha-256"),
    ];
    lines.extend(super::monitoring::pg_hba(spec));
    for m in spec.postgres.hosts() {
        let a = hba_address(m);
        lines.push(format!("{host} replication {repl} {a} scram-sha-256"));
        lines.push(format!("{host} all all {a} scram-sha-256"));
    }
    for h in &spec.haproxy.hosts {
        lines.push(format!("{host} all all {} scram-sha-256", hba_address(h)));
    }
    let mut out: Vec<String> = Vec::new();
    for l in lines.into_iter().chain(pg.pg_hba.iter().cloned()) {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// A pg_hba address: `/32` or `/128` for IP literals, DNS names as they are.
fn hba_address(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{host}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{host}/128"),
        Err(_) => host.to_string(),
    }
}

/// A role name in pg_hba: plain names as they are, anything else (or a keyword) double-quoted.
fn hba_name(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let keyword = matches!(
        name,
        "all" | "sameuser" | "samerole" | "samegroup" | "replication"
    );
    if plain && !keyword && !name.is_empty() {
        name.to_string()
    } else {
        format!("\"{name}\"")
    }
}
