//! pgBackRest's configuration and systemd units (`spec.backup`): on each member, its TLS server
//! and the repository it archives to; on the repository host, the repository, the members it
//! backs up, and the backup timers.
//!
//! Every exchange goes through pgBackRest's TLS server (port `backup.port`), authenticated both
//! ways with certificates from the cluster's CA: a member accepts only the repository host's
//! certificate, the repository only the members'. Each host's certificate is the one at
//! [`POSTGRES_PEM`] (server and client authentication, common name = the host).

use super::tls::{CA_CERT, POSTGRES_PEM};
use super::{Layout, RenderError, check_text, cron};
use crate::api::{BackupSpec, BackupType, PostgresClusterSpec, S3Repository};
use crate::model::{ClusterSecrets, DesiredFile};

/// pgBackRest's configuration file (its default path).
pub const PGBACKREST_CONF: &str = "/etc/pgbackrest/pgbackrest.conf";
/// pgBackRest's TLS server, on every member and on the repository host.
pub const SERVER_UNIT: &str = "pgmetal-pgbackrest";
/// Every unit pgmetal enables for backups (stopped and disabled when backups are turned off).
pub const UNITS: [&str; 3] = [
    "pgmetal-pgbackrest.service",
    "pgmetal-backup-full.timer",
    "pgmetal-backup-diff.timer",
];
/// The backup service on the repository host (instances `full` and `diff`).
pub const BACKUP_UNIT: &str = "pgmetal-backup@";
/// The log directory pgBackRest writes to.
pub const LOG_DIR: &str = "/var/log/pgbackrest";

/// The client certificate (and key, one 0600 file) a new cluster restores with
/// (`spec.bootstrap.recovery`), common name [`RESTORE_CN`].
pub const RESTORE_PEM: &str = "/etc/pgmetal/tls/restore.pem";
/// The common name every repository host accepts for its stanza beside its members': a
/// cluster issued a certificate by the same CA restores from it.
pub const RESTORE_CN: &str = "pgmetal-restore";

/// The node exporter's textfile directory (Debian's package).
const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";
/// Run after a backup succeeded (argument: its type): the node exporter's textfile says when.
const SUCCEEDED: &str = "/etc/pgmetal/backup-succeeded.sh";
const SUCCEEDED_SCRIPT: &str = r#"#!/bin/sh
# Managed by pgmetal: records a successful backup of type $1 for the node exporter.
f=/var/lib/prometheus/node-exporter/pgmetal_backup_$1.prom
t=$(mktemp "$f.XXXXXX") || exit 1
printf '# TYPE pgmetal_backup_last_success_timestamp_seconds gauge\npgmetal_backup_last_success_timestamp_seconds{type="%s"} %s\n' "$1" "$(date +%s)" >"$t" && chmod 644 "$t" && mv -f "$t" "$f"
"#;

/// The CAs that sign the S3 endpoints' certificates (`caBundle`).
pub const S3_CA: &str = "/etc/pgmetal/tls/s3-ca.crt";
/// The host's trust store (Debian's ca-certificates), for an endpoint without `caBundle`.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// With S3, the backup service's condition: it exits 0 only where the local Patroni leads.
const LEADS: &str = "/etc/pgmetal/backup-leads.py";
const LEADS_SCRIPT: &str = r#"#!/usr/bin/python3
# Managed by pgmetal: exits 0 only where the local Patroni leads (a backup runs there).
import ssl, sys, urllib.request
url, ca = sys.argv[1], sys.argv[2]
try:
    urllib.request.urlopen(url, context=ssl.create_default_context(cafile=ca), timeout=10)
except Exception as e:
    print(f"no backup here: {url} says this member does not lead ({e})", file=sys.stderr)
    sys.exit(1)
"#;

/// The pgBackRest binary of the distribution's package.
const PGBACKREST: &str = "/usr/bin/pgbackrest";

/// An INI file: `[section]` then `key=value` lines. Keys are constants; values are validated
/// fields (host names, paths, numbers) and are checked for control characters.
struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Ini {
    fn render(&self, host: &str) -> Result<String, RenderError> {
        let mut out = String::from("# Managed by pgmetal: local changes are overwritten.\n");
        for (name, entries) in &self.sections {
            out.push_str(&format!("\n[{name}]\n"));
            for (k, v) in entries {
                check_text(&format!("backup ({k})"), host, v, false)?;
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        Ok(out)
    }
}

fn kv(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The backup repository host, if backups go to one.
pub fn repository_host(spec: &PostgresClusterSpec) -> Option<&str> {
    spec.backup.as_ref()?.repository.host.as_deref()
}

/// The stanza (pgBackRest's name for one cluster's backups): Patroni's scope.
pub fn stanza(spec: &PostgresClusterSpec) -> &str {
    &spec.patroni.scope
}

/// The TLS server settings every pgBackRest host shares; `clients` are the common names it
/// accepts, for the cluster's stanza.
fn server(spec: &PostgresClusterSpec, b: &BackupSpec, clients: &[&str]) -> Vec<(String, String)> {
    let mut out = vec![
        kv("log-level-console", "warn"),
        kv("log-level-file", "info"),
        kv("tls-server-address", "*"),
        kv("tls-server-port", b.port),
        kv("tls-server-ca-file", CA_CERT),
        kv("tls-server-cert-file", POSTGRES_PEM),
        kv("tls-server-key-file", POSTGRES_PEM),
    ];
    // One line per client: `client-cn=stanza-list`, repeated.
    let auth = |cn: &&str| kv("tls-server-auth", format!("{cn}={}", stanza(spec)));
    out.extend(clients.iter().map(auth));
    out
}

/// `pgbackrest.conf` on member `host`: with backups, its data directory, the repository it
/// archives to (the repository host, whose TLS server alone may use the member's; or an S3
/// bucket, with retention and the other members the leader backs up from); with a recovery,
/// the source's stanza and repository.
pub fn member_conf(
    spec: &PostgresClusterSpec,
    host: &str,
    layout: &Layout,
    secrets: &ClusterSecrets,
) -> Result<DesiredFile, RenderError> {
    let pg = || {
        vec![
            kv("pg1-path", &layout.data_dir),
            kv("pg1-port", spec.postgres.port),
            kv("pg1-socket-path", &layout.unix_socket_dir),
        ]
    };
    let mut global = vec![
        kv("log-level-console", "warn"),
        kv("log-level-file", "info"),
    ];
    let mut sections = Vec::new();
    if let Some(b) = &spec.backup {
        match (&b.repository.host, &b.repository.s3) {
            (Some(repo), _) => {
                global = server(spec, b, &[repo.as_str()]);
                global.extend(repository(repo, b.port, POSTGRES_PEM));
                sections.push((stanza(spec).to_string(), pg()));
            }
            (None, Some(s3)) => {
                let others: Vec<&str> = spec
                    .postgres
                    .hosts()
                    .map(String::as_str)
                    .filter(|h| *h != host)
                    .collect();
                global = server(spec, b, &others);
                let field = "backup.repository.s3";
                global.extend(s3_repository(s3, &b.repository.path, secrets, field, host)?);
                global.extend(backup_settings(b));
                let mut section = pg();
                if b.from_standby {
                    section.extend(remote_members(spec, b, &others, 2, layout));
                }
                sections.push((stanza(spec).to_string(), section));
            }
            (None, None) => {}
        }
    }
    if let Some(r) = recovery(spec) {
        let mut section = pg();
        match (&r.host, &r.s3) {
            (Some(h), _) => {
                section.push(kv("repo1-type", "posix"));
                section.extend(repository(h, r.port, RESTORE_PEM));
            }
            (None, Some(s3)) => {
                let field = "bootstrap.recovery.s3";
                section.extend(s3_repository(s3, &r.path, secrets, field, host)?);
            }
            (None, None) => {}
        }
        sections.push((r.stanza.clone(), section));
    }
    let mut all = vec![("global".to_string(), global)];
    all.extend(sections);
    conf_file(Ini { sections: all }.render(host)?, layout)
}

/// The settings that reach an S3 bucket with the credentials `credentialsSecret` names; which
/// are missing is an error naming `field`.
fn s3_repository(
    s3: &S3Repository,
    path: &str,
    secrets: &ClusterSecrets,
    field: &str,
    host: &str,
) -> Result<Vec<(String, String)>, RenderError> {
    let name = &s3.credentials_secret;
    let Some(creds) = secrets.s3.get(name) else {
        let why = format!(
            "no S3 credentials named {name} (a Secret with accessKeyId and secretAccessKey; \
             the CLI: s3: {{{name}: {{accessKeyId: ..., secretAccessKey: ...}}}} in the secrets file)"
        );
        return Err(super::invalid(
            &format!("{field}.credentialsSecret"),
            host,
            why,
        ));
    };
    let (endpoint, port) = s3.host_port();
    let mut out = vec![
        kv("repo1-type", "s3"),
        kv("repo1-path", path),
        kv("repo1-s3-endpoint", endpoint),
        kv("repo1-storage-port", port),
        kv("repo1-s3-bucket", &s3.bucket),
        kv("repo1-s3-region", &s3.region),
        kv("repo1-s3-uri-style", s3.uri_style.as_str()),
        kv("repo1-s3-key", &creds.access_key_id),
        kv("repo1-s3-key-secret", &creds.secret_access_key),
    ];
    // Always named: a stanza section otherwise inherits the global one (another bucket's).
    let ca = match s3.ca_bundle {
        Some(_) => S3_CA,
        None => SYSTEM_CAS,
    };
    out.push(kv("repo1-storage-ca-file", ca));
    Ok(out)
}

/// Retention and how a backup starts, wherever backups are taken.
fn backup_settings(b: &BackupSpec) -> Vec<(String, String)> {
    let mut out = vec![
        kv("repo1-retention-full", b.retention.full),
        kv("start-fast", "y"),
        kv("backup-standby", if b.from_standby { "y" } else { "n" }),
    ];
    if let Some(diff) = b.retention.differential {
        out.push(kv("repo1-retention-diff", diff));
    }
    out
}

/// `pgN-*` settings for `members`, numbered from `first`, each reached through its TLS server
/// (the members share one layout: one OS family per cluster).
fn remote_members(
    spec: &PostgresClusterSpec,
    b: &BackupSpec,
    members: &[&str],
    first: usize,
    l: &Layout,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let n = i + first;
        let pg = |what: &str, v: String| (format!("pg{n}-{what}"), v);
        out.extend([
            pg("host", member.to_string()),
            pg("host-type", "tls".into()),
            pg("host-port", b.port.to_string()),
            pg("host-ca-file", CA_CERT.into()),
            pg("host-cert-file", POSTGRES_PEM.into()),
            pg("host-key-file", POSTGRES_PEM.into()),
            pg("path", l.data_dir.clone()),
            pg("port", spec.postgres.port.to_string()),
            pg("socket-path", l.unix_socket_dir.clone()),
        ]);
    }
    out
}

/// The settings that reach a repository host's TLS server with the certificate in `pem`.
fn repository(host: &str, port: u16, pem: &str) -> Vec<(String, String)> {
    vec![
        kv("repo1-host", host),
        kv("repo1-host-type", "tls"),
        kv("repo1-host-port", port),
        kv("repo1-host-ca-file", CA_CERT),
        kv("repo1-host-cert-file", pem),
        kv("repo1-host-key-file", pem),
    ]
}

/// The CAs of the S3 endpoints this cluster reaches (`caBundle` of the backup repository and
/// of the restore's source), when either gives any.
pub fn s3_ca_file(spec: &PostgresClusterSpec) -> Option<DesiredFile> {
    let bundles: Vec<&str> = [s3(spec), recovery(spec).and_then(|r| r.s3.as_ref())]
        .into_iter()
        .flatten()
        .filter_map(|s| s.ca_bundle.as_deref())
        .collect();
    if bundles.is_empty() {
        return None;
    }
    let mut text = bundles.join("\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Some(DesiredFile {
        path: S3_CA.into(),
        content: text.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}

/// The S3 bucket of `spec.backup`, if backups go to one.
pub fn s3(spec: &PostgresClusterSpec) -> Option<&S3Repository> {
    spec.backup.as_ref()?.repository.s3.as_ref()
}

/// Whether `host` takes the scheduled backups: the repository host, or with S3 every member
/// (where the backup service runs only on the Patroni leader).
pub fn takes_backups(spec: &PostgresClusterSpec, host: &str) -> bool {
    let r = super::roles(spec, host);
    match s3(spec) {
        Some(_) => r.postgres,
        None => r.backup,
    }
}

/// `spec.bootstrap.recovery`, if set.
pub fn recovery(spec: &PostgresClusterSpec) -> Option<&crate::api::RecoverySpec> {
    spec.bootstrap.as_ref()?.recovery.as_ref()
}

/// The restore Patroni runs instead of initdb to bootstrap a cluster from another's backup:
/// pgBackRest picks the newest backup before the target, and writes the recovery settings
/// (`restore_command`, the target, promotion at the target) that Patroni keeps. Without
/// `--delta`, pgBackRest refuses a data directory that holds anything: a restore only ever
/// fills an empty one.
pub fn restore_command(spec: &PostgresClusterSpec) -> Option<String> {
    let r = recovery(spec)?;
    let target = match (&r.target_time, &r.target_lsn) {
        (Some(t), _) => format!(" --type=time '--target={t}' --target-action=promote"),
        (None, Some(lsn)) => format!(" --type=lsn --target={lsn} --target-action=promote"),
        (None, None) => String::new(),
    };
    Some(format!(
        "{PGBACKREST} --stanza={}{target} restore",
        r.stanza
    ))
}

/// `pgbackrest.conf` on the repository host: the repository and its retention, and every
/// member reached through its TLS server.
pub fn repository_conf(
    spec: &PostgresClusterSpec,
    b: &BackupSpec,
    layout: &Layout,
) -> Result<DesiredFile, RenderError> {
    let Some(host) = b.repository.host.as_deref() else {
        return Err(super::invalid(
            "backup.repository.host",
            "*",
            "no repository host".into(),
        ));
    };
    let names: Vec<&str> = spec.postgres.hosts().map(String::as_str).collect();
    let clients: Vec<&str> = names.iter().copied().chain([RESTORE_CN]).collect();
    let mut global = server(spec, b, &clients);
    global.push(kv("repo1-path", &b.repository.path));
    global.extend(backup_settings(b));
    let section = remote_members(spec, b, &names, 1, layout);
    let ini = Ini {
        sections: vec![("global".into(), global), (stanza(spec).into(), section)],
    };
    conf_file(ini.render(host)?, layout)
}

fn conf_file(text: String, layout: &Layout) -> Result<DesiredFile, RenderError> {
    Ok(DesiredFile {
        path: PGBACKREST_CONF.into(),
        content: text.into_bytes(),
        mode: 0o640,
        owner: "root".into(),
        group: layout.postgres_user.clone(),
    })
}

/// The systemd unit of pgBackRest's TLS server (every pgBackRest host runs one).
pub fn server_unit(layout: &Layout) -> DesiredFile {
    unit(
        &format!("{SERVER_UNIT}.service"),
        &format!(
            "[Unit]\nDescription=pgBackRest TLS server (managed by pgmetal)\n\
             After=network-online.target\nWants=network-online.target\n\n\
             [Service]\nUser={u}\nGroup={u}\nExecStart={PGBACKREST} server\n\
             ExecReload=/bin/kill -HUP $MAINPID\nRestart=always\nRestartSec=2\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            u = layout.postgres_user
        ),
    )
}

/// The backup service (`pgmetal-backup@full`, `@diff`) and one timer per scheduled type, on
/// `host`, which [`takes_backups`]. A timer runs whether or not the operator does; with S3,
/// the service runs only where Patroni's local REST API says the member leads.
pub fn backup_units(
    spec: &PostgresClusterSpec,
    b: &BackupSpec,
    host: &str,
    layout: &Layout,
) -> Result<Vec<DesiredFile>, RenderError> {
    let mut service = format!(
        "[Unit]\nDescription=pgBackRest %i backup of {s} (managed by pgmetal)\n\n\
         [Service]\nType=oneshot\nUser={u}\nGroup={u}\n",
        s = stanza(spec),
        u = layout.postgres_user
    );
    if b.repository.s3.is_some() {
        let url = format!(
            "https://{}/primary",
            super::host_port(host, spec.patroni.rest_api_port)
        );
        service.push_str(&format!(
            "ExecCondition=/usr/bin/python3 {LEADS} {url} {CA_CERT}\n"
        ));
    }
    service.push_str(&format!(
        "ExecStart={PGBACKREST} --stanza={} --type=%i backup\n",
        stanza(spec)
    ));
    if spec.monitoring.enabled {
        // As root: the exporter's directory is not the postgres user's.
        service.push_str(&format!("ExecStartPost=+-/bin/sh {SUCCEEDED} %i\n"));
    }
    let mut out = vec![unit(&format!("{BACKUP_UNIT}.service"), &service)];
    if b.repository.s3.is_some() {
        out.push(DesiredFile {
            path: LEADS.into(),
            content: LEADS_SCRIPT.as_bytes().to_vec(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        });
    }
    if spec.monitoring.enabled {
        out.push(DesiredFile {
            path: SUCCEEDED.into(),
            content: SUCCEEDED_SCRIPT.as_bytes().to_vec(),
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        });
    }
    for (t, when) in schedules(b)? {
        let timer = format!(
            "[Unit]\nDescription=Scheduled {t} backup of {s} (managed by pgmetal)\n\n\
             [Timer]\nOnCalendar={when}\nUnit={BACKUP_UNIT}{t}.service\n\n\
             [Install]\nWantedBy=timers.target\n",
            t = t.as_str(),
            s = stanza(spec)
        );
        out.push(unit(&timer_name(t), &timer));
    }
    Ok(out)
}

/// The timer unit of backup type `t`.
pub fn timer_name(t: BackupType) -> String {
    format!("pgmetal-backup-{}.timer", t.as_str())
}

/// The schedules of `spec.backup` as `OnCalendar=` expressions, or which one is wrong.
pub fn schedules(b: &BackupSpec) -> Result<Vec<(BackupType, String)>, RenderError> {
    let mut out = Vec::new();
    let all = [
        (BackupType::Full, "backup.schedule.full", &b.schedule.full),
        (
            BackupType::Differential,
            "backup.schedule.differential",
            &b.schedule.differential,
        ),
    ];
    for (t, field, cron_text) in all {
        if t == BackupType::Differential && cron_text.trim().is_empty() {
            continue;
        }
        let when = cron::on_calendar(cron_text).map_err(|why| super::invalid(field, "*", why))?;
        out.push((t, when));
    }
    Ok(out)
}

fn unit(name: &str, text: &str) -> DesiredFile {
    DesiredFile {
        path: format!("/etc/systemd/system/{name}"),
        content: format!("# Managed by pgmetal: local changes are overwritten.\n{text}")
            .into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// The pgBackRest files `host` needs for its roles: the configuration and the TLS server's
/// unit on members and the repository host, the backup units where backups are taken, and
/// the S3 endpoints' CAs on members.
pub fn host_files(
    spec: &PostgresClusterSpec,
    host: &str,
    layout: &Layout,
    secrets: &ClusterSecrets,
) -> Result<Vec<DesiredFile>, RenderError> {
    let r = super::roles(spec, host);
    let mut out = Vec::new();
    if r.postgres && (spec.backup.is_some() || recovery(spec).is_some()) {
        out.push(member_conf(spec, host, layout, secrets)?);
        out.extend(s3_ca_file(spec));
    }
    let Some(b) = &spec.backup else {
        return Ok(out);
    };
    if r.backup {
        out.push(repository_conf(spec, b, layout)?);
    }
    if takes_backups(spec, host) {
        out.extend(backup_units(spec, b, host, layout)?);
        if spec.monitoring.enabled {
            out.push(schedule_metrics(b)?);
        }
    }
    if r.postgres || r.backup {
        out.push(server_unit(layout));
    }
    Ok(out)
}

/// The node exporter's textfile on the repository host with the longest interval between two
/// scheduled backups of each type: the backup-overdue alert compares the last success with it.
pub fn schedule_metrics(b: &BackupSpec) -> Result<DesiredFile, RenderError> {
    let mut text = String::from(
        "# Managed by pgmetal.\n\
         # HELP pgmetal_backup_max_interval_seconds The longest interval between two scheduled backups of a type.\n\
         # TYPE pgmetal_backup_max_interval_seconds gauge\n",
    );
    for (t, _) in schedules(b)? {
        let cron_text = match t {
            BackupType::Full => &b.schedule.full,
            BackupType::Differential => &b.schedule.differential,
        };
        let gap = cron::longest_interval(cron_text).unwrap_or(0);
        text.push_str(&format!(
            "pgmetal_backup_max_interval_seconds{{type=\"{}\"}} {gap}\n",
            t.as_str()
        ));
    }
    Ok(DesiredFile {
        path: format!("{TEXTFILE_DIR}/pgmetal_backup_schedule.prom"),
        content: text.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}

/// The file that exists once the stanza was created: in a repository on a host, its
/// `backup.info`; with S3, a file pgmetal leaves on the member that created it.
pub fn stanza_marker(b: &BackupSpec, stanza: &str) -> String {
    match b.repository.host {
        Some(_) => format!(
            "{}/backup/{stanza}/backup.info",
            b.repository.path.trim_end_matches('/')
        ),
        None => format!("/etc/pgmetal/backup-stanza-{stanza}.created"),
    }
}

/// Patroni's dynamic parameters that archive every member's WAL to the repository.
pub fn archive_parameters(spec: &PostgresClusterSpec) -> Vec<(&'static str, String)> {
    if spec.backup.is_none() {
        return Vec::new();
    }
    vec![
        ("archive_mode", "on".into()),
        (
            "archive_command",
            format!("{PGBACKREST} --stanza={} archive-push %p", stanza(spec)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OsFamily;

    fn spec() -> PostgresClusterSpec {
        let mut s = crate::render::tests::spec();
        s.backup = Some(
            serde_json::from_value(serde_json::json!({"repository": {"host": "backup1"}})).unwrap(),
        );
        s
    }

    #[test]
    fn members_and_repository_accept_only_each_other() {
        let s = spec();
        let b = s.backup.clone().unwrap();
        let l = Layout::new(&s, OsFamily::Debian);
        let host = s.postgres.primary.clone();
        let secrets = crate::render::tests::secrets();
        let m = member_conf(&s, &host, &l, &secrets).unwrap().content;
        let m = String::from_utf8(m).unwrap();
        assert!(
            m.contains("repo1-host=backup1\nrepo1-host-type=tls\n"),
            "{m}"
        );
        assert!(
            m.contains(&format!("tls-server-auth=backup1={}\n", s.patroni.scope)),
            "{m}"
        );
        assert!(
            m.contains(&format!("[{}]\npg1-path={}\n", s.patroni.scope, l.data_dir)),
            "{m}"
        );
        let r = repository_conf(&s, &b, &l).unwrap();
        assert_eq!((r.mode, r.group.as_str()), (0o640, "postgres"));
        let r = String::from_utf8(r.content).unwrap();
        let names: Vec<&str> = s.postgres.hosts().map(String::as_str).collect();
        for n in &names {
            assert!(
                r.contains(&format!("tls-server-auth={n}={}\n", s.patroni.scope)),
                "{r}"
            );
        }
        assert!(r.contains(&format!("pg2-host={}\n", names[1])), "{r}");
        assert!(
            r.contains("repo1-retention-full=2\n") && r.contains("backup-standby=n\n"),
            "{r}"
        );
        assert!(!r.contains("repo1-retention-diff"), "{r}");
    }

    #[test]
    fn timers_follow_the_schedule_and_archiving_the_stanza() {
        let mut s = spec();
        let l = Layout::new(&s, OsFamily::Debian);
        let b = s.backup.clone().unwrap();
        let units = backup_units(&s, &b, "backup1", &l).unwrap();
        let paths: Vec<&str> = units.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/systemd/system/pgmetal-backup@.service",
                "/etc/pgmetal/backup-succeeded.sh",
                "/etc/systemd/system/pgmetal-backup-full.timer",
                "/etc/systemd/system/pgmetal-backup-diff.timer"
            ]
        );
        let service = String::from_utf8(units[0].content.clone()).unwrap();
        let post = "ExecStartPost=+-/bin/sh /etc/pgmetal/backup-succeeded.sh %i\n";
        assert!(service.contains(post), "{service}");
        let full = String::from_utf8(units[2].content.clone()).unwrap();
        assert!(full.contains("OnCalendar=Sun *-*-* 01:00:00\n"), "{full}");
        let mut nodiff = b.clone();
        nodiff.schedule.differential = String::new();
        assert_eq!(backup_units(&s, &nodiff, "backup1", &l).unwrap().len(), 3);
        let m = String::from_utf8(schedule_metrics(&b).unwrap().content).unwrap();
        assert!(
            m.contains("pgmetal_backup_max_interval_seconds{type=\"full\"} 604800\n"),
            "{m}"
        );
        assert!(
            m.contains("pgmetal_backup_max_interval_seconds{type=\"diff\"} 172800\n"),
            "{m}"
        );
        let mut quiet = s.clone();
        quiet.monitoring.enabled = false;
        assert_eq!(
            backup_units(&quiet, &b, "backup1", &l).unwrap().len(),
            3,
            "no textfile without monitoring"
        );
        let mut bad = b.clone();
        bad.schedule.full = "0 25 * * *".into();
        let err = backup_units(&s, &bad, "backup1", &l)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backup.schedule.full") && err.contains("hour"),
            "{err}"
        );
        let mut r = s.clone();
        let recovery = serde_json::json!({"recovery": {"host": "backup1", "stanza": "old", "targetTime": "2026-11-30 15:04:19+00"}});
        r.bootstrap = Some(serde_json::from_value(recovery).unwrap());
        assert_eq!(
            restore_command(&r).unwrap(),
            "/usr/bin/pgbackrest --stanza=old --type=time '--target=2026-11-30 15:04:19+00' --target-action=promote restore"
        );
        let p = archive_parameters(&s);
        assert_eq!(
            p[1].1,
            format!(
                "/usr/bin/pgbackrest --stanza={} archive-push %p",
                s.patroni.scope
            )
        );
        s.backup = None;
        assert!(archive_parameters(&s).is_empty());
    }

    /// A cluster backing up to S3 (credentials `s3-creds`), with `fromStandby`.
    fn s3_spec() -> (PostgresClusterSpec, ClusterSecrets) {
        let mut s = crate::render::tests::spec();
        let backup = serde_json::json!({"repository": {"path": "/pg/prod", "s3": {
            "endpoint": "s3.lab:9000", "bucket": "backups", "credentialsSecret": "s3-creds",
            "uriStyle": "Path", "caBundle": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"}},
            "fromStandby": true});
        s.backup = Some(serde_json::from_value(backup).unwrap());
        let mut secrets = crate::render::tests::secrets();
        let creds = crate::model::S3Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "SECRET".into(),
        };
        secrets.s3.insert("s3-creds".into(), creds);
        (s, secrets)
    }

    #[test]
    fn with_s3_every_member_reaches_the_bucket_and_backs_up_only_where_it_leads() {
        let (s, secrets) = s3_spec();
        let l = Layout::new(&s, OsFamily::Debian);
        let members: Vec<String> = s.postgres.hosts().cloned().collect();
        let host = members[0].as_str();
        assert!(takes_backups(&s, host) && repository_host(&s).is_none());
        let files = host_files(&s, host, &l, &secrets).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        for p in [
            PGBACKREST_CONF,
            S3_CA,
            LEADS,
            "/etc/systemd/system/pgmetal-backup-full.timer",
        ] {
            assert!(paths.contains(&p), "{p} missing: {paths:?}");
        }
        let conf = String::from_utf8(files[0].content.clone()).unwrap();
        for line in [
            "repo1-type=s3\nrepo1-path=/pg/prod\nrepo1-s3-endpoint=s3.lab\nrepo1-storage-port=9000\n",
            "repo1-s3-bucket=backups\nrepo1-s3-region=us-east-1\nrepo1-s3-uri-style=path\n",
            "repo1-s3-key=AKID\nrepo1-s3-key-secret=SECRET\nrepo1-storage-ca-file=/etc/pgmetal/tls/s3-ca.crt\n",
            "backup-standby=y\n",
            &format!("pg2-host={}\npg2-host-type=tls\n", members[1]),
            &format!("tls-server-auth={}={}\n", members[1], s.patroni.scope),
        ] {
            assert!(conf.contains(line), "{line} missing:\n{conf}");
        }
        assert!(!conf.contains(&format!("pg2-host={host}\n")), "{conf}");
        let service = files
            .iter()
            .find(|f| f.path.ends_with("pgmetal-backup@.service"))
            .unwrap();
        let service = String::from_utf8(service.content.clone()).unwrap();
        let condition = format!(
            "ExecCondition=/usr/bin/python3 {LEADS} https://{host}:8008/primary {CA_CERT}\n"
        );
        assert!(service.contains(&condition), "{service}");
        // Missing credentials name the field; nothing is rendered.
        let err = host_files(&s, host, &l, &crate::render::tests::secrets()).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("backup.repository.s3.credentialsSecret") && err.contains("s3-creds"),
            "{err}"
        );
        assert_eq!(
            stanza_marker(s.backup.as_ref().unwrap(), "x"),
            "/etc/pgmetal/backup-stanza-x.created"
        );
    }

    #[test]
    fn a_restore_from_s3_reads_the_source_bucket() {
        let (mut s, secrets) = s3_spec();
        s.backup = None;
        let recovery = serde_json::json!({"recovery": {"stanza": "old", "path": "/pg/old",
            "s3": {"endpoint": "s3.lab", "bucket": "backups", "credentialsSecret": "s3-creds"}}});
        s.bootstrap = Some(serde_json::from_value(recovery).unwrap());
        let l = Layout::new(&s, OsFamily::Debian);
        let host = s.postgres.primary.clone();
        let conf = member_conf(&s, &host, &l, &secrets).unwrap().content;
        let conf = String::from_utf8(conf).unwrap();
        let want = "[old]\npg1-path=";
        assert!(conf.contains(want), "{conf}");
        let section = &conf[conf.find("[old]").unwrap()..];
        for line in [
            "repo1-type=s3\n",
            "repo1-path=/pg/old\n",
            "repo1-storage-port=443\n",
            "repo1-s3-uri-style=host\n",
        ] {
            assert!(section.contains(line), "{line} missing:\n{conf}");
        }
        let system = "repo1-storage-ca-file=/etc/ssl/certs/ca-certificates.crt\n";
        assert!(section.contains(system), "{conf}");
    }
}
