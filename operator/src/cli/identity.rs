//! The CLI never replaces a cluster's identity by accident: before it creates passwords or a
//! CA, it asks the spec's hosts whether they already carry this cluster (its claim, a CA of
//! pgmetal's). If one does, the secrets file was forgotten, not missing: refused, naming the
//! file the hosts expect, unless `--new-secrets` asks for a new identity on purpose.

use std::path::Path;

use crate::api::{PostgresClusterSpec, TlsMode};
use crate::engine::{claim, connect};
use crate::exec::{Cmd, SshConfig};

/// What the hosts carry that belongs to a cluster, read over SSH (data, never a trust anchor:
/// it only decides whether creating new secrets is refused).
const CARRIED: &str =
    r#"[ -f "$1" ] && cat -- "$1"; echo '@@ca'; [ -f "$2" ] && cat -- "$2"; exit 0"#;

/// Whether this run would create the cluster's secrets or its CA beside `secrets`.
pub fn would_create(secrets: &Path, tls: TlsMode) -> bool {
    let (crt, key) = super::secrets_file::ca_paths(secrets);
    let ca_missing = tls == TlsMode::Managed && !crt.exists() && !key.exists();
    !secrets.exists() || ca_missing
}

/// One host's sign that it already belongs to cluster `name`, for the refusal: its claim
/// counts only when the secrets file is `missing` (a cluster without TLS gets its first CA when
/// TLS is turned on); a CA of pgmetal's always does.
fn carried(host: &str, text: &str, (name, missing): (&str, bool)) -> Option<String> {
    let (claim_text, ca) = text.split_once("@@ca").unwrap_or((text, ""));
    let ours = claim::Owner {
        name: name.to_string(),
        uid: None,
    };
    let claimed = claim::Owner::parse(claim_text)
        .filter(|c| ours.owns(c))
        .filter(|_| missing);
    let print = crate::tls::fingerprint(ca);
    match (claimed, print) {
        (None, None) => None,
        (c, p) => {
            let claim = c.map(|c| format!("is claimed by {c}"));
            let ca = p.map(|p| format!("trusts the CA with SHA-256 fingerprint {p}"));
            let what: Vec<String> = claim.into_iter().chain(ca).collect();
            Some(format!("{host} {}", what.join(" and ")))
        }
    }
}

/// Refuses, before anything is created, when the secrets (or the CA) beside `secrets` are
/// missing but a host of `spec` already carries cluster `name`.
pub async fn guard(
    secrets: &Path,
    (name, spec): (&str, &PostgresClusterSpec),
    ssh: &SshConfig,
) -> Result<(), String> {
    let missing = !secrets.exists();
    let hosts = crate::render::all_hosts(spec);
    let conns = connect::connect_all(&hosts, ssh, &Default::default()).await;
    let cmd = Cmd::script(CARRIED).args([claim::PATH, crate::render::CA_CERT]);
    let mut signs = Vec::new();
    for (host, c) in conns {
        let Ok(ex) = c.conn else { continue };
        let out = ex
            .run_ok(&cmd, "read the host's claim and CA")
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        signs.extend(carried(&host, &out.stdout_str(), (name, missing)));
    }
    if signs.is_empty() {
        return Ok(());
    }
    let (crt, _) = super::secrets_file::ca_paths(secrets);
    Err(format!(
        "{} (or its CA {}) does not exist, but the hosts of cluster {name} already carry a cluster of pgmetal's: {}. \
         Run pgmetal with --secrets naming the file this cluster was created with (its CA files \
         lie beside it). Creating new passwords and a new CA replaces the cluster's identity \
         (clients and members stop trusting each other until every host is reissued): only if \
         that is what you want, pass --new-secrets",
        secrets.display(),
        crt.display(),
        signs.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_carrying_the_cluster_is_named_with_its_ca() {
        let ca = crate::tls::new_ca(
            "pg",
            time::OffsetDateTime::now_utc(),
            crate::tls::CA_LIFETIME,
        )
        .unwrap();
        let print = crate::tls::fingerprint(&ca.cert).unwrap();
        assert_eq!(print.len(), 95, "{print}");
        let mine = claim::Owner {
            name: "pg".into(),
            uid: None,
        }
        .render();
        let text = format!("{mine}@@ca\n{}", ca.cert);
        let sign = carried("h1", &text, ("pg", true)).unwrap();
        assert!(
            sign.contains("h1 is claimed by pg") && sign.contains(&print),
            "{sign}"
        );
        assert_eq!(carried("h1", "@@ca\n", ("pg", true)), None, "a fresh host");
        assert_eq!(
            carried("h1", &format!("{mine}@@ca\n"), ("pg", false)),
            None,
            "the secrets are there, the cluster had no CA: TLS turned on makes its first"
        );
        assert!(
            carried("h1", &text, ("pg", false)).is_some_and(|s| !s.contains("claimed")),
            "a CA on the hosts with only the CA files missing"
        );
        let other = claim::Owner {
            name: "other".into(),
            uid: None,
        }
        .render();
        assert_eq!(
            carried("h1", &format!("{other}@@ca\n"), ("pg", true)),
            None,
            "another cluster's host is the engine's to refuse"
        );
    }

    #[test]
    fn only_a_missing_file_creates() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.yaml");
        assert!(would_create(&s, TlsMode::Disabled));
        std::fs::write(&s, "x").unwrap();
        assert!(!would_create(&s, TlsMode::Disabled));
        assert!(would_create(&s, TlsMode::Managed), "the CA is missing");
        let (crt, key) = crate::cli::secrets_file::ca_paths(&s);
        std::fs::write(crt, "c").unwrap();
        std::fs::write(key, "k").unwrap();
        assert!(!would_create(&s, TlsMode::Managed));
    }
}
