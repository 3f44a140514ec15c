//! The `pgmetal.io/v1alpha1` API: the PostgresCluster custom resource, its spec and status.

pub mod backup;
mod defaults;
pub mod monitoring;
pub mod spec;
pub mod status;
pub mod tls;

pub use backup::{
    ArchiveStatus, BackupRecord, BackupRepository, BackupRetention, BackupSchedule, BackupSpec,
    BackupStatus, BackupType, BootstrapSpec, RecoverySpec, RecoveryWindow, S3Repository,
    S3UriStyle,
};
pub use monitoring::MonitoringSpec;
pub use spec::*;
pub use status::*;
pub use tls::{TlsMode, TlsSpec};
