//! Small shared value types passed between the pipeline steps (secrets, host OS, desired files).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The passwords a cluster needs, resolved from Secrets or a local secrets file.
/// `Debug` never prints them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecrets {
    /// PostgreSQL superuser password.
    pub superuser: String,
    /// Replication user password.
    pub replication: String,
    /// pg_rewind user password.
    pub rewind: String,
    /// Patroni REST API password (user `patroni`).
    pub restapi: String,
    /// HAProxy's statistics page password (user `pgmetal`). Files written before it existed
    /// have none; the CLI then adds one.
    #[serde(rename = "haproxyStats", default)]
    pub haproxy_stats: String,
    /// S3 credentials by the name `credentialsSecret` gives them (backup repositories and
    /// restore sources in S3).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub s3: std::collections::BTreeMap<String, S3Credentials>,
}

/// An S3 access key (the keys `accessKeyId` and `secretAccessKey` of a credentials Secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// The access key's id.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecrets { <redacted> }")
    }
}

/// The operating-system family of a host; decides package names, paths and commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsFamily {
    /// Debian, Ubuntu and derivatives (apt, `postgresql-<v>`, `/usr/lib/postgresql/<v>/bin`).
    Debian,
    /// RHEL, Rocky, Alma, CentOS, Fedora (dnf/yum, PGDG `postgresql<v>-server`, `/usr/pgsql-<v>/bin`).
    RedHat,
}

/// A file pgmetal wants on a host, with its exact content and ownership.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path on the host.
    pub path: String,
    /// Exact content.
    pub content: Vec<u8>,
    /// Octal permission bits, e.g. 0o600.
    pub mode: u32,
    /// Owner user name.
    pub owner: String,
    /// Owner group name.
    pub group: String,
}

impl DesiredFile {
    /// Hex SHA-256 of the content: what decides whether the file must be written again.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&self.content))
    }
}

impl fmt::Debug for DesiredFile {
    // Files may hold passwords: print the path and hash, never the content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("owner", &self.owner)
            .field("sha256", &self.sha256())
            .finish()
    }
}
