//! Validation of a PostgresCluster before any work: the CRD's schema and its CEL rules
//! evaluated locally (so the CLI, which has no API server, enforces exactly what the API server
//! enforces), plus the few checks a schema cannot express.

mod schema;

use std::collections::BTreeSet;

use thiserror::Error;

use crate::api::PostgresCluster;

/// One problem with the resource, naming the field a person must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the field, e.g. `spec.etcd.hosts`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// The resource is invalid; nothing was done.
#[derive(Debug, Error)]
#[error("invalid PostgresCluster: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError(pub Vec<Violation>);

/// Validates a new resource, or an update of `old` when given (immutable fields).
pub fn validate(
    obj: &PostgresCluster,
    old: Option<&PostgresCluster>,
) -> Result<(), ValidationError> {
    let mut out = schema::violations(obj);
    let cel = match old {
        Some(old) => kube::core::cel::validate_cel_update(obj, old),
        None => kube::core::cel::validate_cel(obj),
    };
    if let Err(errors) = cel {
        out.extend(errors.into_vec().into_iter().map(|e| Violation {
            field: e.field_path.trim_start_matches('.').to_string(),
            message: e.message,
        }));
    }
    out.extend(beyond_schema(obj));
    if out.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(out))
    }
}

/// Checks that neither OpenAPI nor CEL express (or that only the API server would enforce).
fn beyond_schema(obj: &PostgresCluster) -> Vec<Violation> {
    let spec = &obj.spec;
    let mut out = Vec::new();
    let mut v = |field: &str, message: String| {
        out.push(Violation {
            field: field.into(),
            message,
        })
    };
    let ports = [
        ("spec.ssh.port", spec.ssh.port),
        ("spec.postgres.port", spec.postgres.port),
        ("spec.patroni.restApiPort", spec.patroni.rest_api_port),
        ("spec.etcd.clientPort", spec.etcd.client_port),
        ("spec.etcd.peerPort", spec.etcd.peer_port),
        ("spec.haproxy.primaryPort", spec.haproxy.primary_port),
        ("spec.haproxy.replicaPort", spec.haproxy.replica_port),
        ("spec.haproxy.statsPort", spec.haproxy.stats_port),
        (
            "spec.monitoring.nodeExporterPort",
            spec.monitoring.node_exporter_port,
        ),
        (
            "spec.monitoring.postgresExporterPort",
            spec.monitoring.postgres_exporter_port,
        ),
    ];
    for (field, port) in ports {
        if port == 0 {
            v(field, "port must be between 1 and 65535".into());
        }
    }
    if spec.postgres.replicas.len() > 15 {
        v("spec.postgres.replicas", "at most 15 replicas".into());
    }
    if spec.haproxy.hosts.len() > 8 {
        v("spec.haproxy.hosts", "at most 8 HAProxy hosts".into());
    }
    // Patroni writes parameters into postgresql.conf: a line break would start another setting.
    for (k, val) in &spec.postgres.parameters {
        if val.chars().any(char::is_control) {
            v(
                &format!("spec.postgres.parameters.{k}"),
                "must not contain line breaks or other control characters".into(),
            );
        }
    }
    let pip = &spec.packages.patroni;
    if pip.source == crate::api::PatroniSource::Pip && !safe_patroni_release(&pip.version) {
        v(
            "spec.packages.patroni.version",
            format!(
                "{} is not a Patroni release pgmetal installs: give MAJOR.MINOR.PATCH, 4.0.6 or later (earlier releases can let a healed old primary discard the new primary's writes)",
                pip.version
            ),
        );
    }
    if let Err((field, message)) = spec.tls.durations() {
        v(field, message);
    }
    if let Err((field, message)) = spec.tls.provided_ca() {
        v(field, message);
    }
    // systemd's timers take what the schedules become; a schedule they cannot take is named.
    if let Some(b) = &spec.backup {
        let schedules = [
            ("spec.backup.schedule.full", &b.schedule.full),
            (
                "spec.backup.schedule.differential",
                &b.schedule.differential,
            ),
        ];
        for (field, cron) in schedules {
            if field.ends_with("differential") && cron.trim().is_empty() {
                continue;
            }
            if let Err(why) = crate::render::cron::on_calendar(cron) {
                v(field, why);
            }
        }
    }
    // Two spellings of one machine would get two Patroni members with one data directory.
    let mut names = BTreeSet::new();
    for host in spec.postgres.hosts() {
        if !names.insert(host.to_ascii_lowercase()) {
            v(
                "spec.postgres.replicas",
                format!("host {host} is listed twice (names are case-insensitive)"),
            );
        }
    }
    out
}

/// True for `MAJOR.MINOR.PATCH` at or above 4.0.6, the first release that ignores stale etcd
/// members (and, since 3.0.3, updates the leader key only if it still holds it).
fn safe_patroni_release(version: &str) -> bool {
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let exact = version
        .split('.')
        .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    exact && parts.len() == 3 && (parts[0], parts[1], parts[2]) >= (4, 0, 6)
}

#[cfg(test)]
mod patroni_release_tests {
    #[test]
    fn only_releases_with_the_partition_fixes_are_accepted() {
        for ok in ["4.0.6", "4.1.5", "5.0.0", "4.10.0"] {
            assert!(super::safe_patroni_release(ok), "{ok}");
        }
        for bad in [
            "3.0.2",
            "4.0.5",
            "4.1",
            "4.1.5; rm -rf /",
            "4.1.5.1",
            "",
            "4..1",
            "v4.1.5",
            "4.1.5rc1",
        ] {
            assert!(!super::safe_patroni_release(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tls_tests {
    use crate::api::TlsMode;

    #[test]
    fn a_provided_ca_is_named_exactly_when_the_mode_is_provided() {
        let mut tls = crate::api::TlsSpec::default();
        assert_eq!(tls.provided_ca(), Ok(None));
        tls.mode = TlsMode::Provided;
        let (field, why) = tls.provided_ca().unwrap_err();
        assert!(
            field == "spec.tls.caSecret" && why.contains("required"),
            "{why}"
        );
        tls.ca_secret = Some("issuer-ca".into());
        assert_eq!(tls.provided_ca(), Ok(Some("issuer-ca")));
        tls.mode = TlsMode::Managed;
        let (field, why) = tls.provided_ca().unwrap_err();
        assert!(
            field == "spec.tls.caSecret" && why.contains("only read"),
            "{why}"
        );
    }
}

#[cfg(test)]
mod backup_tests {
    use super::*;

    #[test]
    fn a_backup_schedule_systemd_cannot_take_is_named() {
        let mut spec = crate::render::tests::spec();
        let backup = serde_json::json!({"repository": {"host": "10.9.9.9"}, "schedule": {"full": "0 1 5 * 1", "differential": ""}});
        spec.backup = Some(serde_json::from_value(backup).unwrap());
        let obj = PostgresCluster::new("c", spec);
        let v = beyond_schema(&obj);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "spec.backup.schedule.full");
        assert!(v[0].message.contains("not both"), "{}", v[0].message);
    }
}
