//! Facts about a host: OS family and version (from /etc/os-release), installed packages, systemd,
//! and the PostgreSQL server certificate in place (public; its key is never read back).

use std::collections::BTreeSet;

use super::snapshot::{Snapshot, Targets};
use crate::exec::{Cmd, ExecError, Executor};
use crate::model::OsFamily;

/// What pgmetal needs to know about a host before changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// OS family, deciding package manager and paths.
    pub os: OsFamily,
    /// `ID` and `VERSION_ID` from /etc/os-release, e.g. `debian 12`.
    pub os_release: String,
    /// Names of installed packages.
    pub installed: BTreeSet<String>,
    /// The PostgreSQL server certificate pgmetal issued earlier (PEM), if there is one.
    pub postgres_cert: Option<String>,
    /// The CA certificate pgmetal put on the host earlier (PEM), if there is one: the CA the
    /// host's services still trust and serve certificates from until the converge replaces it.
    pub ca_cert: Option<String>,
    /// That certificate's file is newer than the running PostgreSQL's configuration: a renewal
    /// was written but not loaded (a converge interrupted between the two).
    pub postgres_cert_unloaded: bool,
    /// Units whose new configuration was written but not yet loaded: a converge interrupted
    /// between the write and the restart or reload left their marker (see
    /// `units::pending_marker`).
    pub pending: BTreeSet<String>,
}

/// Why facts could not be established.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The host runs an OS family pgmetal does not manage.
    #[error(
        "unsupported operating system {0:?}: pgmetal manages Debian/Ubuntu and RHEL-family hosts"
    )]
    Unsupported(String),
    /// The host does not run systemd as init.
    #[error("systemd is not running as init (pgmetal manages services with systemctl)")]
    NoSystemd,
    /// Running the probe failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// One round trip: os-release, whether systemd is PID 1, the installed packages, the
/// PostgreSQL server certificate (its path is the script's first argument; the key beside it in
/// that file never leaves the host), then the [`Snapshot`] of the [`Targets`] that follow
/// (`FILES... --units UNITS... --dirs DIRS... --enabled UNITS... --queries
/// NAME|PSQL|SOCKET|PORT|SQL...`): each file's hash, mode and owners, the units enabled and
/// running, the directories that exist, the units enabled, and the name of each read-only
/// query of the local PostgreSQL that answered `1`.
const PROBE: &str = r#"cat /etc/os-release; echo '@@systemd'; test -d /run/systemd/system && echo yes || echo no
echo '@@packages'
if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' 2>/dev/null | awk '$2 ~ /^ii/ {print $1}'
elif command -v rpm >/dev/null 2>&1; then rpm -qa --qf '%{NAME}\n'; fi
echo '@@postgres-cert'; sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' -- "$1" 2>/dev/null || true
echo '@@ca'; sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' -- "$2" 2>/dev/null || true
shift 2
echo '@@files'
for a in "$@"; do
  case "$a" in --units) m=u; echo '@@units'; continue;; --dirs) m=d; echo '@@dirs'; continue;;
    --enabled) m=e; echo '@@enabled'; continue;; --queries) m=q; echo '@@queries'; continue;; esac
  case "${m:-f}" in
    f) [ -f "$a" ] && printf '%s %s %s\n' "$(sha256sum < "$a" | cut -d' ' -f1)" "$(stat -c '%a %U %G' "$a")" "$a";;
    u) systemctl is-enabled --quiet "$a" 2>/dev/null && systemctl is-active --quiet "$a" && echo "$a";;
    d) [ -d "$a" ] && echo "$a";;
    e) systemctl is-enabled --quiet "$a" 2>/dev/null && echo "$a";;
    q) name=${a%%|*}; r=${a#*|}; psql=${r%%|*}; r=${r#*|}; sock=${r%%|*}; r=${r#*|}; port=${r%%|*}; sql=${r#*|}
       [ -x "$psql" ] && [ -d "$sock" ] && [ "$(PGCONNECT_TIMEOUT=3 runuser -u postgres -- "$psql" -X -At -h "$sock" -p "$port" -d postgres -c "$sql" 2>/dev/null)" = 1 ] && echo "$name";;
  esac
done
true"#;

/// Reads the facts of the host behind `exec`.
pub async fn gather(exec: &dyn Executor) -> Result<HostFacts, FactsError> {
    Ok(gather_with(exec, &Targets::default()).await?.0)
}

/// Reads the facts of the host behind `exec` and, in the same round trip, a [`Snapshot`] of
/// `targets`.
pub async fn gather_with(
    exec: &dyn Executor,
    targets: &Targets,
) -> Result<(HostFacts, Snapshot), FactsError> {
    let mut args = vec![
        crate::render::POSTGRES_PEM.to_string(),
        crate::render::CA_CERT.to_string(),
    ];
    args.extend(targets.args());
    let out = exec.run_ok(&Cmd::script(PROBE).args(args), "facts").await?;
    let text = out.stdout_str();
    let (facts, seen) = text.split_once("@@files").unwrap_or((&text, ""));
    let (mut facts, seen) = (parse(facts)?, Snapshot::parse(seen));
    facts.postgres_cert_unloaded = seen.answered(super::snapshot::CERT_UNLOADED);
    facts.pending = targets
        .units
        .iter()
        .filter(|u| seen.has_file(&super::units::pending_marker(u)))
        .cloned()
        .collect();
    Ok((facts, seen))
}

/// Parses the output of `PROBE`.
pub fn parse(text: &str) -> Result<HostFacts, FactsError> {
    let (os_release, rest) = text.split_once("@@systemd").unwrap_or((text, ""));
    let (systemd, rest) = rest.split_once("@@packages").unwrap_or((rest, ""));
    let (packages, certs) = rest.split_once("@@postgres-cert").unwrap_or((rest, ""));
    let (cert, ca) = certs.split_once("@@ca").unwrap_or((certs, ""));
    let pem = |text: &str| {
        let text = text.trim();
        text.contains("BEGIN CERTIFICATE")
            .then(|| format!("{text}\n"))
    };
    let (postgres_cert, ca_cert) = (pem(cert), pem(ca));
    if systemd.trim() != "yes" {
        return Err(FactsError::NoSystemd);
    }
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let (id, like, version) = (field("ID"), field("ID_LIKE"), field("VERSION_ID"));
    let family_of = |word: &str| match word {
        "debian" | "ubuntu" => Some(OsFamily::Debian),
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" => Some(OsFamily::RedHat),
        _ => None,
    };
    let os = std::iter::once(id.as_str())
        .chain(like.split_whitespace())
        .find_map(family_of)
        .ok_or_else(|| FactsError::Unsupported(format!("{id} {version}")))?;
    let installed = packages
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    Ok(HostFacts {
        os,
        os_release: format!("{id} {version}"),
        installed,
        postgres_cert,
        ca_cert,
        postgres_cert_unloaded: false,
        pending: BTreeSet::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_with_packages() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n@@systemd\nyes\n@@packages\nhaproxy\npatroni\n";
        let f = parse(text).unwrap();
        assert_eq!(f.os, OsFamily::Debian);
        assert_eq!(f.os_release, "debian 12");
        assert!(f.installed.contains("patroni") && f.installed.len() == 2);
        assert_eq!(f.postgres_cert, None);
        let with_cert = format!(
            "{text}@@postgres-cert\n-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
        );
        let f = parse(&with_cert).unwrap();
        assert!(f.installed.len() == 2 && f.postgres_cert.unwrap().starts_with("-----BEGIN"));
        assert_eq!(f.ca_cert, None);
        let with_ca = format!(
            "{with_cert}@@ca\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
        );
        let f = parse(&with_ca).unwrap();
        assert!(f.postgres_cert.unwrap().contains("MII"));
        assert!(f.ca_cert.unwrap().contains("\nCA\n"));
    }

    #[tokio::test]
    async fn a_certificate_written_but_not_loaded_is_a_fact() {
        let host = crate::exec::FakeExecutor::new("a");
        let out = "ID=debian\nVERSION_ID=12\n@@systemd\nyes\n@@packages\n@@postgres-cert\n\
                   @@files\n@@units\n@@dirs\n@@enabled\n@@queries\ncert-unloaded\n";
        host.on_contains("/etc/os-release", 0, out);
        let (f, _) = gather_with(&host, &Targets::default()).await.unwrap();
        assert!(f.postgres_cert_unloaded);
        host.on_contains(
            "/etc/os-release",
            0,
            &out.replace("cert-unloaded", "role-in-place"),
        );
        let (f, seen) = gather_with(&host, &Targets::default()).await.unwrap();
        assert!(!f.postgres_cert_unloaded && seen.answered(super::super::snapshot::ROLE_IN_PLACE));
    }

    #[test]
    fn rocky_is_redhat_through_id_like() {
        let text = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n@@systemd\nyes\n@@packages\n";
        assert_eq!(parse(text).unwrap().os, OsFamily::RedHat);
        let text = "ID=\"weird\"\nID_LIKE=\"rhel\"\n@@systemd\nyes\n@@packages\n";
        assert_eq!(parse(text).unwrap().os, OsFamily::RedHat);
    }

    #[test]
    fn refuses_unknown_os_and_missing_systemd() {
        assert!(matches!(
            parse("ID=alpine\n@@systemd\nyes\n@@packages\n"),
            Err(FactsError::Unsupported(_))
        ));
        assert!(matches!(
            parse("ID=debian\n@@systemd\nno\n@@packages\n"),
            Err(FactsError::NoSystemd)
        ));
    }
}
