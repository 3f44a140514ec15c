//! The `pgmetal.io/v1alpha1` API: the PostgresCluster custom resource, its spec and status.

mod defaults;
pub mod monitoring;
pub mod spec;
pub mod status;
pub mod tls;

pub use monitoring::MonitoringSpec;
pub use spec::*;
pub use status::*;
pub use tls::{TlsMode, TlsSpec};
