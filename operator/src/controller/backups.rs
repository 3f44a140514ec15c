//! `status.backup` between converges: the operator looks at the repository and the primary's
//! archiver again once a minute (one SSH round trip to each), so that BackupReady follows a
//! repository that stops answering without waiting for the next converge.

use std::time::Duration;

use super::backend::Backend;
use crate::api::{BackupStatus, PostgresCluster, PostgresClusterStatus};
use crate::engine::{backup_look, connect};

/// How often the operator looks at backups between converges.
pub const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Whether `status.backup` is due for another look: backups are on, and the last look (a
/// converge's or this module's) is older than [`LOOK_EVERY`].
pub fn due(pgc: &PostgresCluster, status: &PostgresClusterStatus) -> bool {
    if pgc.spec.backup.is_none() {
        return false;
    }
    let checked = status.backup.as_ref().and_then(|b| b.checked_at.as_deref());
    let age = checked
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t));
    age.is_none_or(|a| a.as_secs() >= LOOK_EVERY.as_secs() as i64)
}

/// Looks at the repository host and the primary over SSH (host keys as status pinned them).
pub async fn look(
    backend: &dyn Backend,
    pgc: &PostgresCluster,
    (private_key, known_hosts): (&str, Option<&str>),
    status: &PostgresClusterStatus,
) -> Option<BackupStatus> {
    let spec = &pgc.spec;
    spec.backup.as_ref()?;
    let hosts = backup_look::hosts(spec, status.primary.as_deref());
    let conns = connect::connect_cluster(
        &spec.ssh,
        private_key,
        known_hosts,
        &status.hosts,
        &hosts,
        backend.connector(),
    )
    .await;
    backup_look::look_through(spec, conns, status).await
}
