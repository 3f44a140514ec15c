//! Input checks shared by the renderers: control characters, host syntax, setting names.

use super::RenderError;
use crate::api::PostgresClusterSpec;
use crate::model::ClusterSecrets;

/// Rejects control characters (a tab too, unless `allow_tab`).
pub(crate) fn check_text(
    field: &str,
    host: &str,
    value: &str,
    allow_tab: bool,
) -> Result<(), RenderError> {
    match value
        .chars()
        .find(|c| c.is_control() && !(allow_tab && *c == '\t'))
    {
        None => Ok(()),
        Some(c) => Err(invalid(
            field,
            host,
            format!("contains the control character U+{:04X}", c as u32),
        )),
    }
}

/// Accepts only what a DNS name or IP address can contain: ASCII letters, digits, `.`, `-`, `:`.
pub(crate) fn check_host(field: &str, host: &str, value: &str) -> Result<(), RenderError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
    if value.is_empty() || !value.chars().all(ok) {
        return Err(invalid(
            field,
            host,
            format!("{value:?} is not a DNS name or IP address"),
        ));
    }
    Ok(())
}

/// Checks every host named in the spec with [`check_host`].
pub(crate) fn check_all_hosts(spec: &PostgresClusterSpec, host: &str) -> Result<(), RenderError> {
    check_host("postgres.primary", host, &spec.postgres.primary)?;
    for h in &spec.postgres.replicas {
        check_host("postgres.replicas", host, h)?;
    }
    for h in &spec.etcd.hosts {
        check_host("etcd.hosts", host, h)?;
    }
    for h in &spec.haproxy.hosts {
        check_host("haproxy.hosts", host, h)?;
    }
    Ok(())
}

/// An [`RenderError::InvalidValue`] for `field` on `host`.
pub(crate) fn invalid(field: &str, host: &str, reason: String) -> RenderError {
    RenderError::InvalidValue {
        field: field.to_string(),
        host: host.to_string(),
        reason,
    }
}

/// Every string that reaches Patroni's config, and the host's role.
pub(crate) fn check_patroni_inputs(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
    host: &str,
) -> Result<(), RenderError> {
    check_all_hosts(spec, host)?;
    let pg = &spec.postgres;
    let texts = [
        ("patroni.scope", spec.patroni.scope.as_str()),
        ("patroni.namespace", &spec.patroni.namespace),
        ("postgres.dataDir", &pg.data_dir),
        ("postgres.binDir", pg.bin_dir.as_deref().unwrap_or("")),
        ("postgres.encoding", &pg.encoding),
        ("postgres.locale", &pg.locale),
        ("postgres.superuser.name", &pg.superuser.name),
        ("postgres.replication.name", &pg.replication.name),
        ("postgres.rewind.name", &pg.rewind.name),
        ("secret: superuser password", &secrets.superuser),
        ("secret: replication password", &secrets.replication),
        ("secret: rewind password", &secrets.rewind),
        ("secret: Patroni REST API password", &secrets.restapi),
    ];
    for (field, value) in texts {
        check_text(field, host, value, false)?;
    }
    for (field, name) in [
        ("postgres.superuser.name", &pg.superuser.name),
        ("postgres.replication.name", &pg.replication.name),
        ("postgres.rewind.name", &pg.rewind.name),
    ] {
        if name.is_empty() || name.contains('"') {
            return Err(invalid(
                field,
                host,
                "must be non-empty and must not contain '\"' (pg_hba)".into(),
            ));
        }
    }
    for (key, value) in &pg.parameters {
        let field = format!("postgres.parameters.{key}");
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            return Err(invalid(
                "postgres.parameters",
                host,
                format!("{key:?} is not a setting name"),
            ));
        }
        check_text(&field, host, value, false)?;
    }
    for (i, line) in pg.pg_hba.iter().enumerate() {
        check_text(&format!("postgres.pgHba[{i}]"), host, line, true)?;
    }
    if !spec.postgres.hosts().any(|h| h == host) {
        return Err(invalid(
            "postgres.primary/replicas",
            host,
            "the host is not a PostgreSQL member".into(),
        ));
    }
    Ok(())
}
