//! Packages: which ones a host needs, where they come from, installing them, and taking over the
//! services Debian packages create on install (default PostgreSQL cluster, single-node etcd).

use crate::api::{PatroniPackage, PatroniSource, PostgresClusterSpec};
use crate::exec::{Cmd, INSTALL_TIMEOUT};
use crate::model::{DesiredFile, OsFamily};
use crate::render::Roles;

/// The packages a host needs for its roles, honouring `spec.packages.names` overrides.
pub fn wanted(spec: &PostgresClusterSpec, os: OsFamily, roles: Roles) -> Vec<String> {
    let v = spec.postgres.version;
    let names = &spec.packages.names;
    let pick = |custom: &Vec<String>, debian: Vec<String>, redhat: Vec<String>| {
        if !custom.is_empty() {
            custom.clone()
        } else if os == OsFamily::Debian {
            debian
        } else {
            redhat
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    if roles.postgres {
        out.extend(pick(
            &names.postgres,
            vec![format!("postgresql-{v}")],
            vec![
                format!("postgresql{v}-server"),
                format!("postgresql{v}-contrib"),
            ],
        ));
        out.extend(match spec.packages.patroni.source {
            // Patroni itself comes from pip (install_patroni); the driver is compiled against the distro's libpq.
            PatroniSource::Pip => pick(
                &Vec::new(),
                s(&["python3-venv", "python3-psycopg2"]),
                s(&["python3", "python3-psycopg2"]),
            ),
            PatroniSource::Distro => pick(
                &names.patroni,
                s(&["patroni", "python3-etcd", "python3-psycopg2"]),
                s(&["patroni", "patroni-etcd"]),
            ),
        });
    }
    if roles.etcd {
        out.extend(pick(
            &names.etcd,
            s(&["etcd-server", "etcd-client"]),
            s(&["etcd"]),
        ));
    }
    if roles.haproxy {
        out.extend(pick(&names.haproxy, s(&["haproxy"]), s(&["haproxy"])));
    }
    // pgBackRest: the same package name in Debian and PGDG.
    let restores = roles.postgres && crate::render::backup::recovery(spec).is_some();
    if (spec.backup.is_some() && (roles.postgres || roles.backup)) || restores {
        out.push("pgbackrest".into());
    }
    // Exporters: Debian's packages (their units and settings files are what pgmetal knows).
    if spec.monitoring.enabled && os == OsFamily::Debian {
        out.push("prometheus-node-exporter".into());
        if roles.postgres {
            out.push("prometheus-postgres-exporter".into());
        }
    }
    out.dedup();
    out
}

/// The repository file for `spec.packages.repository`, if one is configured for this OS family.
pub fn repository_file(spec: &PostgresClusterSpec, os: OsFamily) -> Option<DesiredFile> {
    let repo = spec.packages.repository.as_ref()?;
    let (path, content) = match os {
        OsFamily::Debian => (
            "/etc/apt/sources.list.d/pgmetal.list",
            format!("{}\n", one_line(repo.apt.as_deref()?)),
        ),
        OsFamily::RedHat => {
            let ini = [
                "[pgmetal]".to_string(),
                "name=pgmetal packages".into(),
                format!("baseurl={}", one_line(repo.yum_base_url.as_deref()?)),
                "enabled=1".into(),
                format!("gpgcheck={}", u8::from(repo.yum_gpg_check)),
            ];
            ("/etc/yum.repos.d/pgmetal.repo", ini.join("\n") + "\n")
        }
    };
    Some(DesiredFile {
        path: path.into(),
        content: content.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}

/// The CRD forbids line breaks here; cut at one anyway so a file can never gain a second line.
fn one_line(s: &str) -> &str {
    s.split(['\n', '\r']).next().unwrap_or_default()
}

/// Refresh package indexes (after the repository file changed).
pub fn refresh(os: OsFamily) -> Cmd {
    match os {
        OsFamily::Debian => Cmd::new("apt-get")
            .args(["-q", "update"])
            .timeout(INSTALL_TIMEOUT)
            .max_output(16 << 20),
        OsFamily::RedHat => Cmd::new("dnf")
            .args(["-q", "makecache"])
            .timeout(INSTALL_TIMEOUT)
            .max_output(16 << 20),
    }
}

/// Install `packages`. On Debian a policy-rc.d marked as pgmetal's keeps the packages from
/// starting their default services (removed again afterwards, and by [`takeover`] if a run died).
pub fn install(os: OsFamily, packages: &[String]) -> Cmd {
    match os {
        OsFamily::Debian => Cmd::script(
            r#"set -e
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\n# pgmetal: no service starts during install\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi
trap 'grep -q "^# pgmetal" /usr/sbin/policy-rc.d 2>/dev/null && rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confold --no-install-recommends install -- "$@""#,
        )
        .args(packages.iter().cloned())
        .timeout(INSTALL_TIMEOUT)
            .max_output(16 << 20),
        // dnf: `dnf -y install` starts nothing; yum-only hosts (EL7) have the same syntax.
        OsFamily::RedHat => Cmd::script(r#"if command -v dnf >/dev/null; then exec dnf -q -y install -- "$@"; else exec yum -q -y install -- "$@"; fi"#)
            .args(packages.iter().cloned())
            .timeout(INSTALL_TIMEOUT)
            .max_output(16 << 20),
    }
}

/// Installs Patroni `version` (with its etcd3 extra) from the configured index into
/// `venv`, a virtualenv that sees the distro's psycopg2. One virtualenv per release, marked
/// complete only after `patroni --version` runs, so an interrupted install is redone and an
/// upgrade never touches the release a running Patroni uses. Prints what it did.
/// The file whose presence says that the virtualenv `venv` holds its Patroni release.
pub fn installed_marker(venv: &str) -> String {
    format!("{venv}/.pgmetal-installed")
}

pub fn install_patroni(p: &PatroniPackage, venv: &str) -> Cmd {
    Cmd::script(
        r#"set -e
venv="$1"; version="$2"; index="$3"; marker="$4"
[ -f "$marker" ] && exit 0
mkdir -p "$(dirname "$venv")"
python3 -m venv --clear --system-site-packages "$venv"
set -- --disable-pip-version-check --no-input install -q --timeout 30 --retries 2
if [ -n "$index" ]; then
  set -- "$@" --index-url "$index"
  # A plain-http mirror named in the spec is trusted as given (pip ignores it otherwise).
  case "$index" in http://*) host=${index#http://}; set -- "$@" --trusted-host "${host%%/*}";; esac
fi
"$venv/bin/pip" "$@" -- "patroni[etcd3]==$version"
"$venv/bin/patroni" --version
touch "$marker""#,
    )
    .arg(venv.to_string())
    .arg(p.version.clone())
    .arg(p.index_url.clone().unwrap_or_default())
    .arg(installed_marker(venv))
    .timeout(INSTALL_TIMEOUT)
    .max_output(16 << 20)
}

/// Take over what the packages set up on their own, safely and idempotently; prints what it did.
///
/// - PostgreSQL: Debian's `<version>/main` cluster is dropped only when it is provably the
///   pristine cluster the package created (`DROP_PRISTINE_MAIN`), or, when the cluster adopted
///   its data (`pgmetal.io/adopt`), stopped with its configuration moved aside; the `postgresql` units
///   are disabled so that Patroni alone starts PostgreSQL. Anything else is refused with what
///   to do.
/// - etcd: a running package-default single-node etcd is stopped and its data directory moved
///   aside (not deleted), unless it is the configured data directory.
///
/// Arguments: `$1` PostgreSQL major version, `$2` spec dataDir (never the default cluster's),
/// `$3` etcd data directory, `$4` "pg" / "etcd" roles.
pub fn takeover(os: OsFamily, spec: &PostgresClusterSpec, roles: Roles) -> Option<Cmd> {
    if os != OsFamily::Debian || !(roles.postgres || roles.etcd) {
        return None; // RHEL packages start nothing and create no cluster.
    }
    Some(
        Cmd::script(&TAKEOVER)
            .arg(spec.postgres.version.to_string())
            .arg(spec.postgres.data_dir.clone())
            .arg(spec.etcd.data_dir.clone())
            .arg(match (roles.postgres, roles.etcd) {
                (true, true) => "pg,etcd",
                (true, false) => "pg",
                _ => "etcd",
            }),
    )
}

/// What the packages leave that [`takeover`] acts on, as the facts probe can see it: files,
/// directories and units whose presence (or enablement) means the script has work to do. On a
/// host with none of them the takeover step is skipped.
pub fn takeover_signs(spec: &PostgresClusterSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let v = spec.postgres.version;
    let files = vec![
        "/usr/sbin/policy-rc.d".to_string(),
        format!("/etc/postgresql/{v}/main/postgresql.conf"),
    ];
    let dirs = vec!["/var/lib/etcd/default".to_string()];
    let units = vec![
        "postgresql.service".to_string(),
        format!("postgresql@{v}-main.service"),
    ];
    (files, dirs, units)
}

/// The script of [`takeover`].
static TAKEOVER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r#"set -e
v="$1"; pgdata="$2"; etcddata="$3"; roles="$4"
grep -qs '^# pgmetal' /usr/sbin/policy-rc.d && rm -f /usr/sbin/policy-rc.d
case "$roles" in *pg*)
  main="/var/lib/postgresql/$v/main"
  if [ -f "/etc/postgresql/$v/main/postgresql.conf" ] && [ "$main" = "$pgdata" ] && [ -s {adopted} ]; then
    port=$(pg_conftool -s "$v" main show port 2>/dev/null || echo 5432)
    pg_ctlcluster "$v" main status >/dev/null 2>&1 || pg_ctlcluster "$v" main start
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres >/dev/null
    pg_ctlcluster "$v" main stop
    # Debian keeps postgresql.conf in /etc; Patroni keeps the one in the data directory as its
    # base: an empty one, so that the adopted cluster runs with the spec's settings alone.
    [ -e "$pgdata/postgresql.conf" ] || install -o postgres -g postgres -m 600 /dev/null "$pgdata/postgresql.conf"
    mv "/etc/postgresql/$v/main" "/etc/postgresql/$v/main.adopted-by-pgmetal"
    echo "readied $v/main's roles for Patroni and stopped it: this cluster adopts its data; its Debian configuration is kept in /etc/postgresql/$v/main.adopted-by-pgmetal"
  elif [ -f "/etc/postgresql/$v/main/postgresql.conf" ]; then
{drop}
  fi
  for u in postgresql.service "postgresql@$v-main.service"; do
    if systemctl is-enabled --quiet "$u" 2>/dev/null; then systemctl disable --now "$u" >/dev/null 2>&1 && echo "disabled $u"; fi
  done;;
esac
case "$roles" in *etcd*)
  if [ -d /var/lib/etcd/default ] && [ "/var/lib/etcd/default" != "$etcddata" ] && ! grep -qs '^# Managed by pgmetal' /etc/default/etcd; then
    systemctl stop etcd 2>/dev/null || true
    mv /var/lib/etcd/default "/var/lib/etcd/default.replaced-by-pgmetal.$(date +%s)" && echo "stopped package-default etcd and moved its data aside"
  fi;;
esac"#,
        drop = *DROP_PRISTINE_MAIN,
        adopted = super::first_contact::ADOPTED_PATH,
    )
});

/// Drops Debian's `$v/main` only when it is the pristine cluster the package created (see
/// [`first_contact::PRISTINE_MAIN_FN`](super::first_contact::PRISTINE_MAIN_FN)), whatever
/// `dataDir` is: pgmetal has never run PostgreSQL there (no `$pgdata/PG_VERSION` when that is
/// another directory), and it holds nothing of anyone's. Refuses otherwise (exit 3) and says
/// what to do.
static DROP_PRISTINE_MAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r#"    refuse() {{ echo "the package-default cluster $v/main (/var/lib/postgresql/$v/main) $1: pgmetal drops only the untouched cluster the package created. Move its data elsewhere or drop it yourself (pg_dropcluster --stop $v main), then converge again" >&2; exit 3; }}
    [ "/var/lib/postgresql/$v/main" = "$pgdata" ] || [ ! -e "$pgdata/PG_VERSION" ] || refuse "appeared after pgmetal set up PostgreSQL on this host"
{}
    why=$(pristine_main) || refuse "$why"
    pg_dropcluster --stop "$v" main && echo "dropped the pristine package-default cluster $v/main""#,
        super::first_contact::PRISTINE_MAIN_FN
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PostgresClusterSpec {
        serde_saphyr::from_str(
            "ssh: {privateKeySecret: {name: k, key: k}}\npostgres: {primary: a, replicas: [b]}\netcd: {hosts: [a]}\nhaproxy: {hosts: [c]}\n",
        )
        .unwrap()
    }

    #[test]
    fn packages_per_role_and_family() {
        let all = Roles {
            postgres: true,
            etcd: true,
            haproxy: true,
            backup: false,
        };
        assert_eq!(
            wanted(&spec(), OsFamily::Debian, all),
            [
                "postgresql-15",
                "python3-venv",
                "python3-psycopg2",
                "etcd-server",
                "etcd-client",
                "haproxy",
                "prometheus-node-exporter",
                "prometheus-postgres-exporter"
            ]
        );
        let lb = Roles {
            haproxy: true,
            ..Default::default()
        };
        assert_eq!(
            wanted(&spec(), OsFamily::Debian, lb),
            ["haproxy", "prometheus-node-exporter"],
            "no PostgreSQL exporter without PostgreSQL"
        );
        let mut distro = spec();
        distro.packages.patroni.source = PatroniSource::Distro;
        distro.monitoring.enabled = false;
        assert_eq!(
            wanted(&distro, OsFamily::Debian, all),
            [
                "postgresql-15",
                "patroni",
                "python3-etcd",
                "python3-psycopg2",
                "etcd-server",
                "etcd-client",
                "haproxy"
            ]
        );
        assert_eq!(wanted(&spec(), OsFamily::RedHat, lb), ["haproxy"]);
        let pg = Roles {
            postgres: true,
            ..Default::default()
        };
        assert_eq!(
            wanted(&distro, OsFamily::RedHat, pg),
            [
                "postgresql15-server",
                "postgresql15-contrib",
                "patroni",
                "patroni-etcd"
            ]
        );
        assert_eq!(
            wanted(&spec(), OsFamily::RedHat, pg),
            [
                "postgresql15-server",
                "postgresql15-contrib",
                "python3",
                "python3-psycopg2"
            ]
        );
        let mut s = spec();
        s.packages.names.etcd = vec!["etcd-custom".into()];
        s.monitoring.enabled = false;
        assert_eq!(
            wanted(
                &s,
                OsFamily::Debian,
                Roles {
                    etcd: true,
                    ..Default::default()
                }
            ),
            ["etcd-custom"]
        );
    }

    #[test]
    fn repository_files_for_both_families() {
        let mut s = spec();
        assert!(repository_file(&s, OsFamily::Debian).is_none());
        s.packages.repository = Some(crate::api::RepositorySpec {
            apt: Some("deb [trusted=yes] http://10.0.0.1:8089 ./\nevil".into()),
            yum_base_url: Some("http://mirror/el9/".into()),
            yum_gpg_check: true,
        });
        let apt = repository_file(&s, OsFamily::Debian).unwrap();
        assert_eq!(
            String::from_utf8(apt.content).unwrap(),
            "deb [trusted=yes] http://10.0.0.1:8089 ./\n"
        );
        let yum =
            String::from_utf8(repository_file(&s, OsFamily::RedHat).unwrap().content).unwrap();
        assert!(yum.contains("baseurl=http://mirror/el9/\n") && yum.contains("gpgcheck=1"));
    }

    #[test]
    fn the_takeover_script_is_valid_sh() {
        crate::exec::fake::assert_valid_sh(&TAKEOVER);
        assert!(TAKEOVER.contains("pg_dropcluster --stop \"$v\" main"));
    }

    #[test]
    fn install_and_takeover_quote_their_arguments() {
        let cmd = install(
            OsFamily::Debian,
            &["postgresql-15".into(), "x;touch /tmp/p".into()],
        )
        .to_shell(false);
        assert!(cmd.ends_with("postgresql-15 'x;touch /tmp/p'"), "{cmd}");
        assert!(cmd.contains("policy-rc.d"));
        assert!(
            install(OsFamily::RedHat, &["haproxy".into()])
                .to_shell(true)
                .starts_with("sudo -n -- sh -c")
        );
        let all = Roles {
            postgres: true,
            etcd: true,
            haproxy: false,
            backup: false,
        };
        let t = takeover(OsFamily::Debian, &spec(), all).unwrap();
        assert_eq!(
            t.arguments(),
            [
                "15",
                "/data/pg_data",
                "/var/lib/etcd/default.etcd",
                "pg,etcd"
            ]
        );
        assert!(takeover(OsFamily::RedHat, &spec(), all).is_none());
        let mut p = spec().packages.patroni;
        p.index_url = Some("http://10.0.0.1/pypi/simple/".into());
        let pip = install_patroni(&p, "/opt/pgmetal/patroni-4.1.5");
        assert_eq!(
            pip.arguments(),
            [
                "/opt/pgmetal/patroni-4.1.5",
                "4.1.5",
                "http://10.0.0.1/pypi/simple/",
                "/opt/pgmetal/patroni-4.1.5/.pgmetal-installed"
            ]
        );
        assert!(
            pip.to_shell(false)
                .contains(r#""$venv/bin/pip" "$@" -- "patroni[etcd3]==$version""#)
        );
    }
}
