//! The CLI's secrets file: a YAML map of the cluster passwords, generated (mode 0600) when
//! missing; and beside it the cluster's CA (`<name>.ca.crt`, and `<name>.ca.key` mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};

use crate::model::ClusterSecrets;
use crate::tls::{CertKey, KeyPem};

/// A strong random password: 32 alphanumeric characters (~190 bits).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Reads `path`, or creates it with fresh passwords when it does not exist.
pub fn load_or_create(path: &Path) -> Result<(ClusterSecrets, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut s: ClusterSecrets = serde_saphyr::from_str(&text).map_err(|e| {
                format!(
                    "{}: expected keys superuser, replication, rewind, restapi (and \
                     haproxyStats): {e}",
                    path.display()
                )
            })?;
            if s.haproxy_stats.is_empty() {
                // A file from before the statistics page had a password: one is added, and
                // the file replaced in one step (the other passwords are kept as they are).
                s.haproxy_stats = generate_password();
                replace(path, &s)?;
                eprintln!(
                    "added a password for HAProxy's statistics page (haproxyStats) to {}",
                    path.display()
                );
            }
            Ok((s, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = ClusterSecrets {
                superuser: generate_password(),
                replication: generate_password(),
                rewind: generate_password(),
                restapi: generate_password(),
                haproxy_stats: generate_password(),
                s3: Default::default(),
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

/// The CA files beside the secrets file `secrets`: `<stem>.ca.crt` and `<stem>.ca.key`.
pub fn ca_paths(secrets: &Path) -> (PathBuf, PathBuf) {
    let stem = secrets
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pgmetal-secrets".into());
    let dir = secrets.parent().unwrap_or(Path::new(""));
    (
        dir.join(format!("{stem}.ca.crt")),
        dir.join(format!("{stem}.ca.key")),
    )
}

/// Reads the CA beside `secrets` when both files are there (`spec.tls` off: a cluster moving
/// back to plain text is still read over HTTPS until it has moved).
pub fn load_ca(secrets: &Path) -> Option<CertKey> {
    let (crt, key) = ca_paths(secrets);
    Some(CertKey {
        cert: std::fs::read_to_string(crt).ok()?,
        key: KeyPem(std::fs::read_to_string(key).ok()?),
    })
}

/// Reads the CA beside `secrets`, or creates it for `cluster` when neither file exists. One
/// file without the other is refused: a new CA would invalidate what clients trust.
pub fn load_or_create_ca(secrets: &Path, cluster: &str) -> Result<(CertKey, bool), String> {
    let (crt, key) = ca_paths(secrets);
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    };
    match (read(&crt)?, read(&key)?) {
        (Some(cert), Some(k)) => Ok((
            CertKey {
                cert,
                key: KeyPem(k),
            },
            false,
        )),
        (None, None) => {
            let now = time::OffsetDateTime::now_utc();
            let ca = crate::tls::new_ca(cluster, now, crate::tls::CA_LIFETIME)
                .map_err(|e| e.to_string())?;
            write_new(&key, &ca.key.0, 0o600)?;
            write_new(&crt, &ca.cert, 0o644)?;
            Ok((ca, true))
        }
        _ => Err(format!(
            "{} and {} belong together and one is missing: restore it (a new CA would break \
             every client that trusts the old one), or remove both to start a new CA",
            crt.display(),
            key.display()
        )),
    }
}

/// Replaces the secrets file `path` with `s`: written beside it (mode 0600), then renamed over
/// it, so that an interruption leaves the old file or the new one, never half of one.
fn replace(path: &Path, s: &ClusterSecrets) -> Result<(), String> {
    let text = crate::to_yaml(s).map_err(|e| e.to_string())?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".pgmetal-new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &text, 0o600)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// How many former CAs the pins file remembers.
const PINS_KEPT: usize = 8;

/// The fingerprints of the CAs this cluster has used, from `<stem>.ca.pins` beside `secrets`
/// (only pgmetal writes it), with `current`'s added when it is new: the former CAs a converge
/// trusts while the hosts still hold them. The file is replaced in one step.
pub fn pins(secrets: &Path, current: Option<&CertKey>) -> Result<Vec<String>, String> {
    let (crt, _) = ca_paths(secrets);
    let path = crt.with_extension("pins");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut pins: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let now = current.and_then(|ca| crate::tls::fingerprint(&ca.cert));
    let Some(now) = now.filter(|f| !pins.contains(f)) else {
        return Ok(pins);
    };
    pins.push(now);
    let skip = pins.len().saturating_sub(PINS_KEPT);
    pins.drain(..skip);
    let text = format!(
        "# pgmetal: the SHA-256 fingerprints of this cluster's CAs, newest last. A CA the hosts\n\
         # hold is trusted during a CA move only when it is listed here.\n{}\n",
        pins.join("\n")
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".pgmetal-new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = write_new(&tmp, &text, 0o644).and_then(|()| {
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    });
    // A read-only directory: this run still pins the CA it uses; a later CA move trusts the
    // hosts' former CA only if the file could be written.
    if let Err(e) = written {
        eprintln!("warning: could not record the CA's fingerprint: {e}");
    }
    Ok(pins)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
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

    #[test]
    fn a_file_without_the_stats_password_gets_one_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, "superuser: su\nreplication: r\nrewind: w\nrestapi: a\n").unwrap();
        let (a, created) = load_or_create(&p).unwrap();
        assert!(!created && a.superuser == "su" && a.restapi == "a");
        assert_eq!(a.haproxy_stats.len(), 32);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, _) = load_or_create(&p).unwrap();
        assert_eq!(a, b, "added once, then read back");
    }

    #[test]
    fn ca_is_created_once_beside_the_secrets_and_never_half() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        let (a, created) = load_or_create_ca(&p, "pg").unwrap();
        assert!(created && a.cert.contains("BEGIN CERTIFICATE"));
        let (crt, key) = ca_paths(&p);
        assert_eq!(crt, dir.path().join("s.ca.crt"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&crt), mode(&key)), (0o644, 0o600));
        let (b, created) = load_or_create_ca(&p, "pg").unwrap();
        assert!(!created && a == b);
        std::fs::remove_file(&key).unwrap();
        let e = load_or_create_ca(&p, "pg").unwrap_err();
        assert!(e.contains("one is missing"), "{e}");
        assert!(crt.exists(), "nothing replaced");
    }

    #[test]
    fn the_cas_used_are_pinned_beside_the_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("s.yaml");
        let now = time::OffsetDateTime::now_utc();
        let first = crate::tls::new_ca("one", now, crate::tls::CA_LIFETIME).unwrap();
        let second = crate::tls::new_ca("two", now, crate::tls::CA_LIFETIME).unwrap();
        let print = |ca: &CertKey| crate::tls::fingerprint(&ca.cert).unwrap();
        assert!(pins(&secrets, None).unwrap().is_empty());
        assert_eq!(pins(&secrets, Some(&first)).unwrap(), [print(&first)]);
        assert_eq!(
            pins(&secrets, Some(&first)).unwrap(),
            [print(&first)],
            "once"
        );
        let both = pins(&secrets, Some(&second)).unwrap();
        assert_eq!(
            both,
            [print(&first), print(&second)],
            "the former CA stays pinned"
        );
        let text = std::fs::read_to_string(dir.path().join("s.ca.pins")).unwrap();
        assert!(
            text.contains(&print(&first)) && text.starts_with("# pgmetal"),
            "{text}"
        );
    }
}
