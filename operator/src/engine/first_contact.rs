//! First contact: before pgmetal claims a host, it proves the host is free. A PostgreSQL data
//! directory, a running PostgreSQL, an etcd or an HAProxy configuration that pgmetal did not
//! make is refused, whatever the paths, unless the resource adopts that data explicitly
//! (`pgmetal.io/adopt: HOST=SYSTEM_IDENTIFIER`). Nothing is written on a refused host.

use std::collections::BTreeMap;

use crate::api::PostgresClusterSpec;
use crate::exec::Cmd;
use crate::render::Roles;

/// Annotation adopting existing PostgreSQL data: `HOST=SYSTEM_IDENTIFIER[,HOST=...]`.
pub const ADOPT: &str = "pgmetal.io/adopt";

/// Where an adopted host records the system identifier it brought: a Wipe never deletes data
/// whose identifier is this one, since pgmetal did not create it.
pub const ADOPTED_PATH: &str = "/var/lib/pgmetal/adopted";

/// The hosts whose existing data the resource adopts, with the system identifier of each.
pub fn adoptions(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let value = annotations.and_then(|a| a.get(ADOPT));
    let pairs = value.map(|v| v.split(',')).into_iter().flatten();
    pairs
        .filter_map(|p| p.split_once('='))
        .map(|(h, id)| (h.trim().to_string(), id.trim().to_string()))
        .filter(|(h, id)| !h.is_empty() && !id.is_empty())
        .collect()
}

/// Something on the host that pgmetal did not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// PostgreSQL data (and its system identifier, when it could be read).
    Postgres {
        /// The data directory.
        dir: String,
        /// `pg_control`'s system identifier.
        system_identifier: Option<String>,
        /// What it is, for people.
        what: String,
    },
    /// An etcd member or its data.
    Etcd(String),
    /// An HAProxy configuration.
    Haproxy(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Postgres {
                dir,
                system_identifier,
                what,
            } => {
                let id = system_identifier.as_deref().unwrap_or("unknown");
                write!(f, "{what} in {dir} (system identifier {id})")
            }
            Finding::Etcd(what) | Finding::Haproxy(what) => f.write_str(what),
        }
    }
}

/// The probe for `host`'s roles: one round trip, read-only except that a stopped Debian
/// `<version>/main` cluster is started to be asked whether it is pristine (and stopped again).
pub fn probe(spec: &PostgresClusterSpec, roles: Roles) -> Cmd {
    let role = |on: bool, name: &'static str| if on { name } else { "" };
    let roles = [
        role(roles.postgres, "pg"),
        role(roles.etcd, "etcd"),
        role(roles.haproxy, "haproxy"),
    ]
    .join(",");
    Cmd::script(&PROBE).args([
        spec.postgres.version.to_string(),
        spec.postgres.data_dir.clone(),
        spec.etcd.data_dir.clone(),
        roles,
    ])
}

/// Parses the probe's lines: `pg DIR SYSID WHAT...`, `etcd WHAT...`, `haproxy WHAT...`.
pub fn parse(text: &str) -> Vec<Finding> {
    let lines = text.lines().filter_map(|l| l.split_once(' '));
    let finding = |(kind, rest): (&str, &str)| match kind {
        "pg" => {
            let mut w = rest.splitn(3, ' ');
            let (dir, id, what) = (w.next()?, w.next()?, w.next()?);
            Some(Finding::Postgres {
                dir: dir.to_string(),
                system_identifier: (id != "-").then(|| id.to_string()),
                what: what.to_string(),
            })
        }
        "etcd" => Some(Finding::Etcd(rest.to_string())),
        "haproxy" => Some(Finding::Haproxy(rest.to_string())),
        _ => None,
    };
    lines.filter_map(finding).collect()
}

/// What first contact decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing of anyone else's: claim the host.
    Free,
    /// Only the spec's data directory, with the system identifier the resource adopts.
    Adopt(String),
    /// Refused: what was found, for the message.
    Refuse(Vec<Finding>),
}

/// Judges the findings on a host, given the spec's data directory and the system identifier
/// the resource adopts on this host (if any).
pub fn decide(findings: Vec<Finding>, data_dir: &str, adopt: Option<&str>) -> Decision {
    let adopted = |f: &Finding| match f {
        Finding::Postgres {
            dir,
            system_identifier: Some(id),
            ..
        } => dir == data_dir && Some(id.as_str()) == adopt,
        _ => false,
    };
    let (ok, refused): (Vec<_>, Vec<_>) = findings.into_iter().partition(adopted);
    match (ok.is_empty(), refused.is_empty()) {
        (_, false) => Decision::Refuse(refused),
        (true, true) => Decision::Free,
        (false, true) => Decision::Adopt(adopt.unwrap_or_default().to_string()),
    }
}

/// The message of a refusal on `host`.
pub fn refusal(host: &str, findings: &[Finding]) -> String {
    let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let pg = findings.iter().find_map(|f| match f {
        Finding::Postgres {
            system_identifier: Some(id),
            ..
        } => Some(id.as_str()),
        _ => None,
    });
    let adopt = match pg {
        Some(id) => format!(
            "; to run this cluster on that PostgreSQL data in spec.postgres.dataDir, annotate the resource {ADOPT}={host}={id}"
        ),
        None => String::new(),
    };
    format!(
        "{host} is not free: it holds {} that pgmetal did not make, and nothing on it was changed. Check that spec names the right host; move that data or service away yourself{adopt}",
        list.join("; ")
    )
}

/// The SQL that readies adopted data for Patroni, run on it (as `postgres`, on its socket)
/// before Patroni first starts it: the superuser, replication and rewind roles with their
/// passwords, and the rewind role's grants (what Patroni's bootstrap would have made).
/// Nothing of it reaches the server log.
pub fn adopt_sql(spec: &PostgresClusterSpec, secrets: &crate::model::ClusterSecrets) -> String {
    let pg = &spec.postgres;
    let ident = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let lit = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let verifier = super::passwords::password_literal;
    let mut out = String::from(
        "SET log_statement = 'none';\nSET log_min_duration_statement = -1;\n\
         SET log_min_error_statement = 'panic';\n",
    );
    let roles = [
        (&pg.superuser.name, "SUPERUSER LOGIN", &secrets.superuser),
        (
            &pg.replication.name,
            "REPLICATION LOGIN",
            &secrets.replication,
        ),
        (&pg.rewind.name, "LOGIN", &secrets.rewind),
    ];
    for (name, attrs, password) in roles {
        out.push_str(&format!(
            "SELECT format('CREATE ROLE %I', {l}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {l}) \\gexec\n\
             ALTER ROLE {i} {attrs} PASSWORD {p};\n",
            l = lit(name),
            i = ident(name),
            p = verifier(password),
        ));
    }
    let rewind = ident(&pg.rewind.name);
    for f in [
        "pg_ls_dir(text, boolean, boolean)",
        "pg_stat_file(text, boolean)",
        "pg_read_binary_file(text)",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
    ] {
        out.push_str(&format!(
            "GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {rewind};\n"
        ));
    }
    out
}

/// Decides whether Debian's `$v/main` is the pristine cluster its package created; prints why
/// not and returns 1 otherwise. Started for the question if it was down, stopped again after.
pub const PRISTINE_MAIN_FN: &str = r#"pristine_main() {
  port=$(pg_conftool -s "$v" main show port 2>/dev/null || echo 5432)
  started=""
  if ! pg_ctlcluster "$v" main status >/dev/null 2>&1; then
    pg_ctlcluster "$v" main start >/dev/null 2>&1 || { echo "does not start"; return 1; }
    started=1
  fi
  q() { runuser -u postgres -- psql -X -At -p "$port" -d "$1" -c "$2"; }
  dbs=$(q postgres "SELECT count(*) FROM pg_database WHERE datname NOT IN ('postgres','template0','template1')")
  rel=0
  for db in postgres template1; do
    n=$(q "$db" "SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname NOT IN ('pg_catalog','information_schema') AND s.nspname !~ '^pg_(toast|temp)'")
    rel=$((rel + n))
  done
  roles=$(q postgres "SELECT count(*) FROM pg_roles WHERE rolname <> 'postgres' AND rolname !~ '^pg_'")
  [ -z "$started" ] || pg_ctlcluster "$v" main stop >/dev/null 2>&1
  [ "$dbs$rel$roles" = "000" ] && return 0
  echo "holds $dbs databases, $rel relations and $roles roles of its own"
  return 1
}"#;

/// The script of [`probe`]. `$1` PostgreSQL major version, `$2` dataDir, `$3` etcd's data
/// directory, `$4` the roles (`pg`, `etcd`, `haproxy`, comma-separated).
static PROBE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r#"v="$1"; pgdata="$2"; etcddata="$3"; roles="$4"
{PRISTINE_MAIN_FN}
# pg_control's first field is the system identifier, in every version.
sysid() {{ od -An -t u8 -N8 -- "$1/global/pg_control" 2>/dev/null | tr -d ' ' | grep . || echo -; }}
seen=" "
# the processes named $1 whose parent is not one of them (a postmaster, not its backends)
running() {{ for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = "$1" ] || continue
  [ "$(cat "/proc/$(cut -d' ' -f4 "$p/stat" 2>/dev/null)/comm" 2>/dev/null)" = "$1" ] || echo "${{p#/proc/}}"
done; }}
report() {{ case "$seen" in *" $1 "*) return;; esac; seen="$seen$1 "; echo "pg $1 $(sysid "$1") $2"; }}
# conffiles Debian installed unchanged (dpkg knows their checksums)
pristine_conf() {{ [ -f "$2" ] || return 1; want=$(dpkg-query -W -f='${{Conffiles}}' "$1" 2>/dev/null | awk -v f="$2" '$1 == f {{print $2}}'); [ -n "$want" ] && [ "$(md5sum < "$2" | cut -d' ' -f1)" = "$want" ]; }}
case "$roles" in *pg*)
  for conf in /etc/postgresql/*/*/postgresql.conf; do
    [ -f "$conf" ] || continue
    why=""
    c=${{conf#/etc/postgresql/}}; cv=${{c%%/*}}; c=${{c#*/}}; name=${{c%%/*}}
    dir=$(pg_conftool -s "$cv" "$name" show data_directory 2>/dev/null || echo "/var/lib/postgresql/$cv/$name")
    if [ "$cv/$name" = "$v/main" ] && why=$(pristine_main); then seen="$seen$dir "; continue; fi
    report "$dir" "the Debian cluster $cv/$name${{why:+, which $why}}"
  done
  [ -e "$pgdata/PG_VERSION" ] && report "$pgdata" "PostgreSQL data"
  for pid in $(running postgres; running postmaster); do
    dir=$(readlink "/proc/$pid/cwd") || continue
    report "$dir" "a running PostgreSQL (pid $pid)"
  done;;
esac
case "$roles" in *etcd*)
  [ -d "$etcddata/member" ] && echo "etcd etcd data in spec.etcd.dataDir ($etcddata/member)"
  if [ -n "$(running etcd)" ] && ! pristine_conf etcd-server /etc/default/etcd; then
    echo "etcd a running etcd whose /etc/default/etcd is not the package's"
  fi;;
esac
case "$roles" in *haproxy*)
  cfg=/etc/haproxy/haproxy.cfg
  if [ -f "$cfg" ] && ! head -n1 "$cfg" | grep -q '^# Managed by pgmetal' && ! pristine_conf haproxy "$cfg"; then
    echo "haproxy an HAProxy configuration ($cfg) that is not the package's"
  fi;;
esac
true"#
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_parse_and_decide() {
        let text = "pg /var/lib/postgresql/15/main 7312345678901234567 the Debian cluster 15/main, which holds 0 databases, 1 relations and 0 roles of its own\n\
                    etcd etcd data in spec.etcd.dataDir (/var/lib/etcd/x/member)\nnoise\n";
        let f = parse(text);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            f[0],
            Finding::Postgres {
                dir: "/var/lib/postgresql/15/main".into(),
                system_identifier: Some("7312345678901234567".into()),
                what: "the Debian cluster 15/main, which holds 0 databases, 1 relations and 0 roles of its own".into(),
            }
        );
        let dir = "/var/lib/postgresql/15/main";
        assert_eq!(decide(vec![], dir, None), Decision::Free);
        let pg = vec![f[0].clone()];
        assert_eq!(
            decide(pg.clone(), dir, Some("7312345678901234567")),
            Decision::Adopt("7312345678901234567".into())
        );
        assert!(
            matches!(decide(pg.clone(), dir, Some("1")), Decision::Refuse(_)),
            "another identifier is not adopted"
        );
        assert!(
            matches!(
                decide(pg.clone(), "/data/pg_data", Some("7312345678901234567")),
                Decision::Refuse(_)
            ),
            "only data in the spec's directory is adopted"
        );
        assert!(
            matches!(
                decide(f.clone(), dir, Some("7312345678901234567")),
                Decision::Refuse(r) if r.len() == 1
            ),
            "adoption covers PostgreSQL data only"
        );
        let msg = refusal("10.0.0.5", &pg);
        assert!(
            msg.contains("10.0.0.5 is not free")
                && msg.contains("pgmetal.io/adopt=10.0.0.5=7312345678901234567"),
            "{msg}"
        );
    }

    #[test]
    fn adoptions_come_from_one_annotation() {
        let a = BTreeMap::from([(ADOPT.to_string(), " a=1, b = 2,bad,=3".to_string())]);
        let got = adoptions(Some(&a));
        assert_eq!(
            got,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert!(adoptions(None).is_empty());
    }

    #[test]
    fn the_probe_is_valid_sh() {
        crate::exec::fake::assert_valid_sh(&PROBE);
    }
}
