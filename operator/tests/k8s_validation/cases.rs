//! The cases of `k8s_validation`: manifests the API server must reject (with the field and
//! message), accept, default, and updates it must refuse or allow.

use serde_json::{Value, json};

/// Changes to the valid manifest: (dotted path under `.spec`, new value; null removes).
pub type Changes = Vec<(&'static str, Value)>;

/// A manifest the API server must reject.
pub struct Invalid {
    pub name: &'static str,
    pub changes: Changes,
    /// The field the error names (`spec.` + the rule's field or fieldPath).
    pub field: &'static str,
    /// Text the error must contain: the rule's message exactly as in spec.rs.
    pub message: &'static str,
    /// How many errors the API server lists (1: the rule fires on its own).
    pub errors: usize,
}

pub fn bad(
    name: &'static str,
    changes: Changes,
    field: &'static str,
    message: &'static str,
) -> Invalid {
    Invalid {
        name,
        changes,
        field,
        message,
        errors: 1,
    }
}

pub fn invalid_cases() -> Vec<Invalid> {
    vec![
        bad(
            "backups without TLS",
            vec![
                ("backup", json!({"repository": {"host": "10.213.0.20"}})),
                ("tls.mode", json!("Disabled")),
            ],
            "spec.backup",
            "backup needs tls.mode Managed or Provided",
        ),
        bad(
            "the backup repository on a PostgreSQL host",
            vec![("backup", json!({"repository": {"host": "10.213.0.12"}}))],
            "spec.backup.repository.host",
            "backup.repository.host must not run PostgreSQL for this cluster",
        ),
        bad(
            "pgBackRest on the PostgreSQL port",
            vec![(
                "backup",
                json!({"repository": {"host": "10.213.0.20"}, "port": 5432}),
            )],
            "spec.backup.port",
            "backup.port must differ from every PostgreSQL, Patroni, etcd and HAProxy port",
        ),
        bad(
            "a backup repository on a host and in S3",
            vec![(
                "backup",
                json!({"repository": {"host": "10.213.0.20", "s3": {"endpoint": "s3.lab", "bucket": "pgb", "credentialsSecret": "s3-keys"}}}),
            )],
            "spec.backup.repository",
            "backup.repository: give host or s3, exactly one",
        ),
        bad(
            "an S3 endpoint with a scheme",
            vec![(
                "backup",
                json!({"repository": {"s3": {"endpoint": "https://s3.lab", "bucket": "pgb", "credentialsSecret": "s3-keys"}}}),
            )],
            "spec.backup.repository.s3.endpoint",
            "backup.repository.s3.endpoint must be host or host:port",
        ),
        bad(
            "a restore with neither a repository host nor a bucket",
            vec![("bootstrap", json!({"recovery": {"stanza": "pg-ha"}}))],
            "spec.bootstrap.recovery",
            "bootstrap.recovery: give the source's repository host or its s3 bucket, exactly one",
        ),
        bad(
            "a restore to both a time and an LSN",
            vec![(
                "bootstrap",
                json!({"recovery": {"host": "10.213.0.20", "stanza": "pg-ha", "targetTime": "2026-11-30 15:04:19+00", "targetLsn": "0/3000060"}}),
            )],
            "spec.bootstrap.recovery",
            "give targetTime or targetLsn, not both",
        ),
        bad(
            "renewal margin not shorter than the certificate lifetime",
            vec![
                ("tls.certificateLifetime", json!("1h")),
                ("tls.renewBefore", json!("2h")),
            ],
            "spec.tls",
            "tls.renewBefore must be shorter than tls.certificateLifetime",
        ),
        bad(
            "a provided CA without its Secret",
            vec![("tls.mode", json!("Provided"))],
            "spec.tls",
            "tls.caSecret names the CA's Secret when, and only when, tls.mode is Provided",
        ),
        bad(
            "a CA Secret named while pgmetal manages the CA",
            vec![("tls.caSecret", json!("issuer-ca"))],
            "spec.tls",
            "tls.caSecret names the CA's Secret when, and only when, tls.mode is Provided",
        ),
        bad(
            "certificate lifetime in days",
            vec![("tls.certificateLifetime", json!("90d"))],
            "spec.tls.certificateLifetime",
            "should match",
        ),
        bad(
            "duplicate replica host",
            vec![("postgres.replicas", json!(["10.213.0.12", "10.213.0.12"]))],
            "spec.postgres.replicas",
            "postgres.replicas must not list a host twice",
        ),
        bad(
            "etcd with 2 hosts (even count)",
            vec![("etcd.hosts", json!(["10.213.0.11", "10.213.0.12"]))],
            "spec.etcd.hosts",
            "etcd.hosts must list 1, 3, 5 or 7 members (an odd count keeps a quorum)",
        ),
        bad(
            "duplicate etcd host",
            vec![(
                "etcd.hosts",
                json!(["10.213.0.11", "10.213.0.11", "10.213.0.13"]),
            )],
            "spec.etcd.hosts",
            "etcd.hosts must not list a host twice",
        ),
        bad(
            "primary among replicas",
            vec![("postgres.replicas", json!(["10.213.0.11", "10.213.0.12"]))],
            "spec.postgres.primary",
            "postgres.primary must not also be listed in postgres.replicas",
        ),
        bad(
            "relative postgres.dataDir",
            vec![("postgres.dataDir", json!("data/pg_data"))],
            "spec.postgres.dataDir",
            "postgres.dataDir must be an absolute path of letters, digits and ._+@- only",
        ),
        bad(
            "postgres.dataDir with shell metacharacters",
            vec![("postgres.dataDir", json!("/data/$(reboot)"))],
            "spec.postgres.dataDir",
            "postgres.dataDir must be an absolute path of letters, digits and ._+@- only",
        ),
        bad(
            "postgres.dataDir a shallow shared directory",
            vec![("postgres.dataDir", json!("/data"))],
            "spec.postgres.dataDir",
            "postgres.dataDir must be a directory of its own at least two levels deep (e.g. /data/pg_data), not a system or shared directory",
        ),
        bad(
            "etcd.dataDir a system directory",
            vec![("etcd.dataDir", json!("/var/lib/"))],
            "spec.etcd.dataDir",
            "etcd.dataDir must be a directory of its own at least two levels deep",
        ),
        bad(
            "postgres.binDir with a space",
            vec![("postgres.binDir", json!("/usr/lib/postgresql/15/bin; rm"))],
            "spec.postgres.binDir",
            "postgres.binDir must be an absolute path of letters, digits and ._+@- only",
        ),
        bad(
            "etcd.dataDir with a space",
            vec![("etcd.dataDir", json!("/var/lib/etcd data"))],
            "spec.etcd.dataDir",
            "etcd.dataDir must be an absolute path of letters, digits and ._+@- only",
        ),
        // No CEL rule here: the schema's maximum answers with the OpenAPI message.
        bad(
            "postgres.port out of range",
            vec![("postgres.port", json!(70000))],
            "spec.postgres.port",
            "spec.postgres.port in body should be less than or equal to 65535",
        ),
        bad(
            "etcd.clientPort == etcd.peerPort",
            vec![("etcd.clientPort", json!(2380))],
            "spec.etcd",
            "etcd.clientPort and etcd.peerPort must differ",
        ),
        bad(
            "etcd.clientPort == postgres.port on shared hosts",
            vec![("etcd.clientPort", json!(5432))],
            "spec.etcd",
            "etcd shares hosts with PostgreSQL: etcd.clientPort and etcd.peerPort must differ from postgres.port and patroni.restApiPort",
        ),
        bad(
            "etcd.peerPort == patroni.restApiPort on shared hosts",
            vec![("etcd.peerPort", json!(8008))],
            "spec.etcd",
            "etcd shares hosts with PostgreSQL: etcd.clientPort and etcd.peerPort must differ from postgres.port and patroni.restApiPort",
        ),
        bad(
            "postgres.port == patroni.restApiPort",
            vec![("patroni.restApiPort", json!(5432))],
            "spec.patroni.restApiPort",
            "postgres.port and patroni.restApiPort run on the same hosts and must differ",
        ),
        bad(
            "HAProxy port == postgres.port on a PostgreSQL host",
            vec![
                ("haproxy.hosts", json!(["10.213.0.11"])),
                ("haproxy.primaryPort", json!(5432)),
            ],
            "spec.haproxy",
            "HAProxy shares hosts with PostgreSQL: haproxy.primaryPort, replicaPort and statsPort must differ from postgres.port and patroni.restApiPort",
        ),
        bad(
            "HAProxy stats port == etcd.clientPort on an etcd host",
            vec![
                ("etcd.hosts", json!(["10.213.0.14"])),
                ("haproxy.statsPort", json!(2379)),
            ],
            "spec.haproxy",
            "HAProxy shares hosts with etcd: haproxy.primaryPort, replicaPort and statsPort must differ from etcd.clientPort and etcd.peerPort",
        ),
        bad(
            "HAProxy ports not distinct",
            vec![("haproxy.replicaPort", json!(5000))],
            "spec.haproxy",
            "haproxy.primaryPort, replicaPort and statsPort must all differ",
        ),
        bad(
            "bad patroni.namespace",
            vec![("patroni.namespace", json!("db"))],
            "spec.patroni.namespace",
            "patroni.namespace must look like /name/ (letters, digits, _ . -, starting and ending with /)",
        ),
        bad(
            "bad patroni.scope",
            vec![("patroni.scope", json!("my scope"))],
            "spec.patroni.scope",
            "patroni.scope must be 1-63 letters, digits, _ . or -",
        ),
        bad(
            "bad etcd.clusterToken",
            vec![("etcd.clusterToken", json!("-token"))],
            "spec.etcd.clusterToken",
            "etcd.clusterToken must be 1-63 letters, digits, _ . or -",
        ),
        bad(
            "bad host string",
            vec![("postgres.primary", json!("db1;reboot"))],
            "spec.postgres.primary",
            "postgres.primary must be a DNS name or an IP address",
        ),
        bad(
            "invalid IPv4 replica",
            vec![("postgres.replicas", json!(["10.213.0.12", "300.1.1.1"]))],
            "spec.postgres.replicas",
            "postgres.replicas: every host must be a DNS name or an IP address",
        ),
        bad(
            "invalid IPv4 etcd host",
            vec![(
                "etcd.hosts",
                json!(["10.213.0.11", "10.213.0.12", "10.213.0.256"]),
            )],
            "spec.etcd.hosts",
            "etcd.hosts: every host must be a DNS name or an IP address",
        ),
        bad(
            "bad HAProxy host",
            vec![("haproxy.hosts", json!(["lb_1"]))],
            "spec.haproxy.hosts",
            "haproxy.hosts: every host must be a DNS name or an IP address",
        ),
        bad(
            "duplicate HAProxy host",
            vec![("haproxy.hosts", json!(["10.213.0.14", "10.213.0.14"]))],
            "spec.haproxy.hosts",
            "haproxy.hosts must not list a host twice",
        ),
        bad(
            "postgres.version 9",
            vec![("postgres.version", json!(9))],
            "spec.postgres.version",
            "postgres.version must be one of 13, 14, 15, 16, 17",
        ),
        bad(
            "ttl too small for loopWait + 2 * retryTimeout",
            vec![("patroni.ttl", json!(20)), ("patroni.loopWait", json!(10))],
            "spec.patroni",
            "patroni: loopWait + 2 * retryTimeout must not exceed ttl, or the leader key can expire while the leader is healthy",
        ),
        bad(
            "pgHba line not starting with host/local",
            vec![("postgres.pgHba", json!(["all all 0.0.0.0/0 trust"]))],
            "spec.postgres.pgHba",
            "postgres.pgHba entries must be single pg_hba.conf lines starting with local, host, hostssl or hostnossl",
        ),
        bad(
            "pgHba entry with two lines",
            vec![(
                "postgres.pgHba",
                json!(["host all all 10.213.0.0/24 md5\nlocal all all trust"]),
            )],
            "spec.postgres.pgHba",
            "postgres.pgHba entries must be single pg_hba.conf lines starting with local, host, hostssl or hostnossl",
        ),
        bad(
            "postgres.parameters key not a setting name",
            vec![("postgres.parameters", json!({"Max Connections": "200"}))],
            "spec.postgres.parameters",
            "postgres.parameters keys must be PostgreSQL setting names (lower case letters, digits, _ and .)",
        ),
        bad(
            "bad postgres.encoding",
            vec![("postgres.encoding", json!("UTF-8'"))],
            "spec.postgres.encoding",
            "postgres.encoding must be an encoding name such as UTF8",
        ),
        bad(
            "bad postgres.locale",
            vec![("postgres.locale", json!("en US"))],
            "spec.postgres.locale",
            "postgres.locale must be a locale name such as C.UTF-8 or en_US.UTF-8",
        ),
        bad(
            "bad superuser name",
            vec![("postgres.superuser", json!({"name": "Postgres"}))],
            "spec.postgres.superuser.name",
            "user names must be lower case letters, digits and _",
        ),
        bad(
            "ssh.user with ;",
            vec![("ssh.user", json!("root;reboot"))],
            "spec.ssh.user",
            "ssh.user must be a plain Unix user name (lower case letters, digits, _ and -)",
        ),
        bad(
            "packages.repository without apt or yumBaseUrl",
            vec![("packages.repository", json!({"yumGpgCheck": true}))],
            "spec.packages.repository",
            "packages.repository needs apt or yumBaseUrl",
        ),
        bad(
            "packages.repository.apt not a deb line",
            vec![("packages.repository", json!({"apt": "rm -rf /"}))],
            "spec.packages.repository.apt",
            "packages.repository.apt must be a single sources.list line starting with 'deb '",
        ),
        bad(
            "packages.repository.yumBaseUrl not a URL",
            vec![(
                "packages.repository",
                json!({"yumBaseUrl": "mirror.internal/el9"}),
            )],
            "spec.packages.repository.yumBaseUrl",
            "packages.repository.yumBaseUrl must be an http(s), ftp or file URL without spaces",
        ),
        // A schema (enum) error: the API server then says it skipped the CEL rules.
        Invalid {
            errors: 2,
            ..bad(
                "unknown deletionPolicy",
                vec![("deletionPolicy", json!("Delete"))],
                "spec.deletionPolicy",
                r#"Unsupported value: "Delete": supported values: "Retain", "Wipe""#,
            )
        },
        // The schema error comes first; the API server then says it skipped the CEL rules.
        Invalid {
            errors: 2,
            ..bad(
                "missing spec.etcd",
                vec![("etcd", Value::Null)],
                "spec.etcd",
                "spec.etcd: Required value",
            )
        },
    ]
}

/// Variants that must be accepted: the cross-field rules fire only when hosts are shared.
pub fn valid_variants() -> Vec<(&'static str, Changes)> {
    vec![
        (
            "backups on a repository host, restored from another cluster's repository",
            vec![
                (
                    "backup",
                    json!({"repository": {"host": "10.213.0.20"}, "schedule": {"full": "30 2 * * 6", "differential": ""}, "retention": {"full": 4, "differential": 6}, "fromStandby": true}),
                ),
                (
                    "bootstrap",
                    json!({"recovery": {"host": "10.213.0.30", "stanza": "pg-old", "targetTime": "2026-11-30 15:04:19.1234+00"}}),
                ),
            ],
        ),
        (
            "etcd on its own host may use postgres.port",
            vec![
                ("etcd.hosts", json!(["10.213.0.15"])),
                ("etcd.clientPort", json!(5432)),
            ],
        ),
        (
            "HAProxy on its own host may use postgres.port",
            vec![
                ("haproxy.primaryPort", json!(5432)),
                ("haproxy.statsPort", json!(8008)),
            ],
        ),
        (
            "HAProxy on a PostgreSQL host with distinct ports",
            vec![("haproxy.hosts", json!(["10.213.0.11", "10.213.0.12"]))],
        ),
        (
            "5 etcd members, no HAProxy",
            vec![
                (
                    "etcd.hosts",
                    json!([
                        "10.213.0.11",
                        "10.213.0.12",
                        "10.213.0.13",
                        "10.213.0.14",
                        "10.213.0.15"
                    ]),
                ),
                ("haproxy.hosts", json!([])),
            ],
        ),
        (
            "backups to S3 and a restore from a bucket",
            vec![
                (
                    "backup",
                    json!({"repository": {"path": "/pg/prod", "s3": {"endpoint": "s3.eu-west-1.amazonaws.com", "bucket": "pg-backups", "region": "eu-west-1", "credentialsSecret": "s3-keys"}}, "fromStandby": true}),
                ),
                (
                    "bootstrap",
                    json!({"recovery": {"stanza": "old", "path": "/pg/old", "s3": {"endpoint": "minio.internal:9000", "bucket": "pg-backups", "credentialsSecret": "s3-keys", "uriStyle": "Path"}, "targetLsn": "0/3000060"}}),
                ),
            ],
        ),
        (
            "DNS host names",
            vec![
                ("postgres.primary", json!("lab1")),
                ("postgres.replicas", json!(["lab2", "lab3.lab.internal"])),
                ("etcd.hosts", json!(["lab1", "lab2", "lab3.lab.internal"])),
                ("haproxy.hosts", json!(["lab4"])),
            ],
        ),
        (
            "ttl exactly loopWait + 2 * retryTimeout",
            vec![
                ("patroni.ttl", json!(20)),
                ("patroni.loopWait", json!(4)),
                ("patroni.retryTimeout", json!(8)),
            ],
        ),
        (
            "every optional setting",
            vec![
                ("ssh.user", json!("pgmetal")),
                ("ssh.sudo", json!(true)),
                ("ssh.port", json!(2222)),
                (
                    "packages.repository",
                    json!({"apt": "deb [trusted=yes] http://10.213.0.1:8089 ./"}),
                ),
                ("postgres.version", json!(16)),
                ("postgres.dataDir", json!("/srv/pg/16/main")),
                ("postgres.binDir", json!("/usr/lib/postgresql/16/bin")),
                (
                    "postgres.parameters",
                    json!({"max_connections": "200", "auto_explain.log_min_duration": "1s"}),
                ),
                (
                    "postgres.pgHba",
                    json!([
                        "host all all 10.213.0.0/24 scram-sha-256",
                        "local all postgres peer"
                    ]),
                ),
                ("patroni.scope", json!("lab-cluster")),
                ("patroni.namespace", json!("/service/pg/")),
                ("patroni.failback", json!("Automatic")),
                ("patroni.synchronousMode", json!(true)),
                ("etcd.clusterToken", json!("lab_token")),
                ("etcd.dataDir", json!("/srv/etcd")),
                ("deletionPolicy", json!("Wipe")),
                ("paused", json!(true)),
            ],
        ),
    ]
}

/// Defaults the API server must fill in: (jsonpath, value as kubectl prints it).
pub const DEFAULTS: &[(&str, &str)] = &[
    (".spec.patroni.namespace", "/db/"),
    (".spec.patroni.scope", "postgres"),
    (".spec.patroni.ttl", "20"),
    (".spec.patroni.loopWait", "2"),
    (".spec.patroni.retryTimeout", "8"),
    (".spec.patroni.failbackDelaySeconds", "60"),
    (".spec.patroni.failbackMinIntervalSeconds", "600"),
    (".spec.etcd.clientPort", "2379"),
    (".spec.etcd.peerPort", "2380"),
    (".spec.etcd.dataDir", "/var/lib/etcd/default.etcd"),
    (".spec.etcd.clusterToken", "etcd_cluster"),
    (".spec.postgres.dataDir", "/data/pg_data"),
    (".spec.postgres.version", "15"),
    (".spec.postgres.port", "5432"),
    (".spec.ssh.user", "root"),
    (".spec.haproxy.primaryPort", "5000"),
    (".spec.deletionPolicy", "Retain"),
    (".spec.tls.mode", "Managed"),
    (".spec.tls.certificateLifetime", "2160h"),
    (".spec.tls.renewBefore", "168h"),
    (".spec.monitoring.enabled", "true"),
];

/// Updates of an immutable field: (field, new value, jsonpath, stored value, message).
pub fn immutable_cases() -> Vec<(
    &'static str,
    Value,
    &'static str,
    &'static str,
    &'static str,
)> {
    vec![
        (
            "postgres.dataDir",
            json!("/data/pg_data2"),
            ".spec.postgres.dataDir",
            "/data/pg_data",
            "postgres.dataDir is immutable",
        ),
        (
            "etcd.clusterToken",
            json!("other_token"),
            ".spec.etcd.clusterToken",
            "etcd_cluster",
            "etcd.clusterToken is immutable",
        ),
        (
            "etcd.dataDir",
            json!("/var/lib/etcd/other"),
            ".spec.etcd.dataDir",
            "/var/lib/etcd/default.etcd",
            "etcd.dataDir is immutable",
        ),
        (
            "patroni.scope",
            json!("other"),
            ".spec.patroni.scope",
            "postgres",
            "patroni.scope is immutable: the running cluster's keys live under it",
        ),
        (
            "patroni.namespace",
            json!("/other/"),
            ".spec.patroni.namespace",
            "/db/",
            "patroni.namespace is immutable",
        ),
        (
            "postgres.version",
            json!(16),
            ".spec.postgres.version",
            "15",
            "postgres.version is immutable: a major upgrade needs pg_upgrade, not a spec change",
        ),
    ]
}

/// Updates that must be accepted: (name, changes, jsonpath, value read back).
pub fn mutable_cases() -> Vec<(&'static str, Changes, &'static str, &'static str)> {
    vec![
        (
            "add a replica",
            vec![(
                "postgres.replicas",
                json!(["10.213.0.12", "10.213.0.13", "10.213.0.14"]),
            )],
            ".spec.postgres.replicas[2]",
            "10.213.0.14",
        ),
        (
            "change postgres.parameters",
            vec![("postgres.parameters", json!({"max_connections": "200"}))],
            ".spec.postgres.parameters.max_connections",
            "200",
        ),
        (
            "switch the preferred primary",
            vec![
                ("postgres.primary", json!("10.213.0.12")),
                ("postgres.replicas", json!(["10.213.0.11", "10.213.0.13"])),
            ],
            ".spec.postgres.primary",
            "10.213.0.12",
        ),
        (
            "pause",
            vec![("paused", json!(true))],
            ".spec.paused",
            "true",
        ),
        (
            "restating the defaults explicitly",
            vec![
                ("postgres.dataDir", json!("/data/pg_data")),
                ("patroni.scope", json!("postgres")),
                ("postgres.version", json!(15)),
            ],
            ".spec.postgres.dataDir",
            "/data/pg_data",
        ),
    ]
}
