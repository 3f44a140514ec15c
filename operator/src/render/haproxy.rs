//! haproxy.cfg (HAProxy 2.6): a read-write port following the Patroni leader, a read-only
//! port balancing over replicas, and a stats page; built from typed sections and tokens. The
//! leader is found by checking each member's Patroni REST API (over HTTPS with `spec.tls`).

use super::layout::HAPROXY_CONFIG;
use super::tls::CA_CERT;
use super::{RenderError, check_all_hosts, host_port, member_name};
use crate::api::PostgresClusterSpec;
use crate::model::{ClusterSecrets, DesiredFile};

/// One word of a configuration line. Only `Endpoint` and `Name` carry spec-derived text:
/// hosts are checked by [`check_all_hosts`], names come from [`member_name`].
enum Token {
    /// A constant keyword or value.
    Kw(&'static str),
    /// A number (port, count).
    Num(u32),
    /// `*:<port>`: listen on every address.
    AnyPort(u16),
    /// `<host>:<port>` (IPv6 in brackets).
    Endpoint(String, u16),
    /// A server name (`[a-z0-9-]` only).
    Name(String),
    /// A crypt(3) hash (`[./0-9A-Za-z$=]` only).
    Hash(String),
}

/// A section header (`global`, `listen primary`, ...) and its lines.
struct Section {
    header: &'static str,
    lines: Vec<Vec<Token>>,
}

fn render(sections: &[Section]) -> String {
    let mut out = String::from("# Managed by pgmetal: local changes are overwritten.\n");
    for s in sections {
        out.push('\n');
        out.push_str(s.header);
        out.push('\n');
        for line in &s.lines {
            let words: Vec<String> = line
                .iter()
                .map(|t| match t {
                    Token::Kw(k) => (*k).to_string(),
                    Token::Num(n) => n.to_string(),
                    Token::AnyPort(p) => format!("*:{p}"),
                    Token::Endpoint(h, p) => host_port(h, *p),
                    Token::Name(n) | Token::Hash(n) => n.clone(),
                })
                .collect();
            out.push_str("    ");
            out.push_str(&words.join(" "));
            out.push('\n');
        }
    }
    out
}

/// Keywords from a space-separated constant.
fn kw(words: &'static str) -> Vec<Token> {
    words.split(' ').map(Token::Kw).collect()
}

/// The user of HAProxy's statistics page; its password is the cluster's `haproxyStats`.
pub const STATS_USER: &str = "pgmetal";

/// The SHA-512 crypt(3) hash of the statistics password, which haproxy.cfg holds instead of
/// the password (the file is world-readable and published in a ConfigMap). Its salt comes
/// from the password itself, so the same password always renders the same file.
pub fn stats_hash(password: &str) -> Result<String, RenderError> {
    use sha_crypt::{PasswordHasher, ShaCrypt};
    use sha2::Digest;
    if password.is_empty() {
        let why = "the haproxyStats password is empty".to_string();
        return Err(super::invalid("haproxy", "*", why));
    }
    let salt = sha2::Sha256::digest(format!("pgmetal haproxy stats {password}"));
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt[..12])
        .map(|h| h.to_string())
        .map_err(|e| super::invalid("haproxy", "*", format!("hashing the stats password: {e}")))
}

/// The statistics page at `/stats` (and the CSV form pgmetal reads), for user [`STATS_USER`]
/// only; with monitoring on, HAProxy's built-in Prometheus exporter at `/metrics`, open like
/// the other exporters.
fn stats(spec: &PostgresClusterSpec, hash: &str) -> [Section; 2] {
    let users = Section {
        header: "userlist pgmetal_stats",
        lines: vec![vec![
            Token::Kw("user"),
            Token::Kw(STATS_USER),
            Token::Kw("password"),
            Token::Hash(hash.to_string()),
        ]],
    };
    let mut lines = vec![
        kw("mode http"),
        vec![Token::Kw("bind"), Token::AnyPort(spec.haproxy.stats_port)],
    ];
    if spec.monitoring.enabled {
        lines.push(kw(
            "http-request use-service prometheus-exporter if { path /metrics }",
        ));
    }
    lines.push(kw(
        "http-request auth realm pgmetal unless { http_auth(pgmetal_stats) }",
    ));
    lines.extend([kw("stats enable"), kw("stats uri /stats")]);
    let page = Section {
        header: "listen stats",
        lines,
    };
    [users, page]
}

/// How HAProxy checks the members' Patroni REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestChecks {
    /// In the scheme the spec asks for: HTTPS, verified against the cluster's CA, when
    /// `spec.tls` is on; plain HTTP when it is off.
    Spec,
    /// Both, while members move from one scheme to the other: each member is listed twice, once
    /// per scheme, and whichever entry's check passes routes to it. The entry in the scheme the
    /// spec does not ask for is named `<member>-plain` or `<member>-tls`.
    Both,
}

/// The check options of a server line: HTTPS checks verify the cluster's CA.
fn check(spec: &PostgresClusterSpec, tls: bool) -> Vec<Token> {
    let mut out = kw("maxconn 100 check port");
    out.push(Token::Num(spec.patroni.rest_api_port.into()));
    if tls {
        out.extend(kw("check-ssl verify required ca-file"));
        out.push(Token::Kw(CA_CERT));
    }
    out
}

/// A `listen` section routing to the members whose Patroni answers 200 on `check_uri`.
fn backend(
    spec: &PostgresClusterSpec,
    (header, port, check_uri): (&'static str, u16, &'static str),
    checks: RestChecks,
) -> Section {
    let mut lines = vec![vec![Token::Kw("bind"), Token::AnyPort(port)]];
    if header == "listen replicas" {
        lines.push(kw("balance roundrobin"));
    }
    lines.push(kw(check_uri));
    lines.push(kw("http-check expect status 200"));
    // Checked every second (every 500 ms while a server changes state): the write port follows
    // a promotion within about a second, and sessions to a server marked down are cut.
    lines.push(kw(
        "default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
    ));
    let tls = spec.tls.enabled();
    for h in spec.postgres.hosts() {
        let server = |name: String, tls: bool| {
            let mut line = vec![
                Token::Kw("server"),
                Token::Name(name),
                Token::Endpoint(h.clone(), spec.postgres.port),
            ];
            line.extend(check(spec, tls));
            line
        };
        lines.push(server(member_name(h), tls));
        if checks == RestChecks::Both {
            let suffix = if tls { "-plain" } else { "-tls" };
            lines.push(server(format!("{}{suffix}", member_name(h)), !tls));
        }
    }
    Section { header, lines }
}

/// The haproxy.cfg shared by every HAProxy host (mode 0644, root-owned). Rejects any host
/// that is not a plain DNS name or IP address (whitespace, `#`, quotes, ...).
pub fn haproxy_config(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
) -> Result<DesiredFile, RenderError> {
    haproxy_config_with(spec, secrets, RestChecks::Spec)
}

/// [`haproxy_config`], checking the members' REST API as `checks` says.
pub fn haproxy_config_with(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
    checks: RestChecks,
) -> Result<DesiredFile, RenderError> {
    check_all_hosts(spec, "*")?;
    let hp = &spec.haproxy;
    let [users, page] = stats(spec, &stats_hash(&secrets.haproxy_stats)?);
    let sections = [
        Section {
            header: "global",
            lines: vec![
                vec![Token::Kw("maxconn"), Token::Num(1000)],
                kw("log /dev/log local0"),
                kw("user haproxy"),
                kw("group haproxy"),
            ],
        },
        Section {
            header: "defaults",
            lines: vec![
                kw("mode tcp"),
                kw("log global"),
                kw("retries 2"),
                kw("timeout connect 4s"),
                kw("timeout client 30m"),
                kw("timeout server 30m"),
                kw("timeout check 5s"),
            ],
        },
        users,
        page,
        backend(
            spec,
            (
                "listen primary",
                hp.primary_port,
                "option httpchk GET /primary",
            ),
            checks,
        ),
        backend(
            spec,
            (
                "listen replicas",
                hp.replica_port,
                "option httpchk GET /replica",
            ),
            checks,
        ),
    ];
    Ok(DesiredFile {
        path: HAPROXY_CONFIG.into(),
        content: render(&sections).into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}
