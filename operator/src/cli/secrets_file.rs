//! The CLI's secrets file: a YAML map of the cluster passwords, generated (mode 0600) when missing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};

use crate::model::ClusterSecrets;

/// A strong random password: 32 alphanumeric characters (~190 bits).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Reads `path`, or creates it with fresh passwords when it does not exist.
pub fn load_or_create(path: &Path) -> Result<(ClusterSecrets, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let s: ClusterSecrets = serde_saphyr::from_str(&text).map_err(|e| {
                format!(
                    "{}: expected keys superuser, replication, rewind, restapi: {e}",
                    path.display()
                )
            })?;
            Ok((s, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = ClusterSecrets {
                superuser: generate_password(),
                replication: generate_password(),
                rewind: generate_password(),
                restapi: generate_password(),
            };
            let text = crate::to_yaml(&s).map_err(|e| e.to_string())?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(text.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((s, true))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_file_then_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        let (a, created) = load_or_create(&p).unwrap();
        assert!(created && a.superuser.len() == 32 && a.superuser != a.replication);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = load_or_create(&p).unwrap();
        assert!(!created && a == b);
    }
}
