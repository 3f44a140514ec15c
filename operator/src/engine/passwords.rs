//! Password rotation: a password changed in its Secret is set on the role through the leader
//! (`ALTER ROLE`) before Patroni's configuration carries it, so that replication, pg_rewind and
//! Patroni's own connections keep authenticating. Interrupted anywhere, it is redone: the
//! leader's `patroni.yml` keeps the old passwords until the new ones are in effect.

use serde::Deserialize;

use super::Engine;
use super::error::HostError;
use crate::api::PostgresClusterSpec;
use crate::exec::Cmd;
use crate::model::ClusterSecrets;
use crate::render::{self, Layout};

/// One role's login in `patroni.yml` (`postgresql.authentication.<kind>`).
#[derive(Deserialize, Clone, PartialEq, Eq, Debug)]
struct Login {
    username: String,
    password: String,
}

/// The parts of a live `patroni.yml` that rotation reads; anything else is ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LiveConfig {
    postgresql: LivePostgres,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LivePostgres {
    authentication: LiveAuthentication,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LiveAuthentication {
    superuser: Option<Login>,
    replication: Option<Login>,
    rewind: Option<Login>,
}

/// What rotation must do on the leader.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rotation {
    /// The superuser login in effect now (from the leader's file; empty when unreadable).
    current_superuser: String,
    /// Roles whose password changes: `(role, new password)`.
    changes: Vec<(String, String)>,
}

/// Compares the spec's logins with those of the leader's live `patroni.yml`; `None` when every
/// password is already the one in effect.
pub(super) fn plan(
    live: &str,
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
) -> Option<Rotation> {
    let live: LiveAuthentication = serde_saphyr::from_str::<LiveConfig>(live)
        .map(|c| c.postgresql.authentication)
        .unwrap_or_default();
    let pg = &spec.postgres;
    let wanted = [
        (&live.superuser, &pg.superuser.name, &secrets.superuser),
        (
            &live.replication,
            &pg.replication.name,
            &secrets.replication,
        ),
        (&live.rewind, &pg.rewind.name, &secrets.rewind),
    ];
    let mut changes: Vec<(String, String)> = Vec::new();
    for (now, name, password) in wanted {
        let want = Login {
            username: name.clone(),
            password: password.clone(),
        };
        let pair = (want.username, want.password);
        if now.as_ref().map(|l| (&l.username, &l.password)) != Some((&pair.0, &pair.1))
            && !changes.contains(&pair)
        {
            changes.push(pair);
        }
    }
    let current_superuser = live.superuser.map(|l| l.password).unwrap_or_default();
    (!changes.is_empty()).then_some(Rotation {
        current_superuser,
        changes,
    })
}

/// PostgreSQL's SCRAM-SHA-256 verifier of `password` with `salt` (RFC 5802/7677, 4096
/// iterations, as PostgreSQL stores it): `ALTER ROLE … PASSWORD` with it carries no clear text
/// to the server. None for a password outside ASCII, which PostgreSQL normalizes with SASLprep
/// first (set in clear text then, as before).
pub fn scram_verifier(password: &str, salt: &[u8; 16]) -> Option<String> {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    if !password.is_ascii() {
        return None;
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, 4096, &mut salted);
    let mac = |msg: &[u8]| {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&salted).ok()?;
        m.update(msg);
        Some(m.finalize().into_bytes())
    };
    let (client, server) = (mac(b"Client Key")?, mac(b"Server Key")?);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let stored = Sha256::digest(client);
    Some(format!(
        "SCRAM-SHA-256$4096:{}${}:{}",
        b64(salt),
        b64(&stored),
        b64(&server)
    ))
}

/// `password` as `ALTER ROLE … PASSWORD` takes it: its SCRAM verifier with a fresh salt, quoted.
pub fn password_literal(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let text = scram_verifier(password, &salt).unwrap_or_else(|| password.to_string());
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL of a rotation. Nothing of it reaches the server log: the statements are not logged,
/// and an error does not echo the statement; the passwords go as SCRAM verifiers.
fn sql(changes: &[(String, String)]) -> String {
    let mut out = String::from(
        "SET log_statement = 'none';\nSET log_min_duration_statement = -1;\n\
         SET log_min_error_statement = 'panic';\n",
    );
    for (role, password) in changes {
        out.push_str(&format!(
            "ALTER ROLE \"{}\" PASSWORD {};\n",
            role.replace('"', "\"\""),
            password_literal(password)
        ));
    }
    out
}

/// Runs the SQL on stdin (after two lines: the superuser's password in effect, then its new
/// one) as the superuser over 127.0.0.1, trying the password in effect first: a rotation
/// interrupted after `ALTER ROLE` already changed it. Passwords never appear on a command line.
const ROTATE: &str = r#"IFS= read -r old; IFS= read -r new; sql=$(cat)
for pw in "$old" "$new"; do
  err=$(printf '%s\n' "$sql" | PGPASSWORD="$pw" PGCONNECT_TIMEOUT=10 "$1/psql" -X -q -w \
    -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$2" -U "$3" -d postgres 2>&1 >/dev/null) && exit 0
  echo "$err" >&2
done
exit 1"#;

impl Engine<'_> {
    /// Sets on the leader every role password that differs from the leader's `patroni.yml`.
    pub(super) async fn rotate_passwords(&self, leader: &str) -> Result<(), HostError> {
        let ex = self.exec(leader)?;
        let os = self.host_facts(leader)?.os;
        let layout = Layout::new(self.spec, os);
        // Only passwords the members' configuration can carry are set (the same checks).
        let config = render::patroni_config(self.spec, self.secrets, leader, os)
            .map_err(|e| HostError::new(leader, Some("rotate passwords"), e))?;
        // The leader's file as rendered now carries the passwords in effect: nothing to rotate.
        let in_place = self.files_in_place(leader, std::slice::from_ref(&config));
        self.step(leader, "rotate passwords", async {
            if in_place {
                return Ok(((), false, vec![]));
            }
            let read =
                Cmd::script(r#"cat -- "$1" 2>/dev/null || true"#).arg(&layout.patroni_config);
            let live = ex.run_ok(&read, "read patroni.yml").await?;
            let Some(rotation) = plan(live.stdout_str().as_ref(), self.spec, self.secrets) else {
                return Ok(((), false, vec![]));
            };
            let roles: Vec<String> = rotation.changes.iter().map(|(r, _)| r.clone()).collect();
            let stdin = format!(
                "{}\n{}\n{}",
                rotation.current_superuser,
                self.secrets.superuser,
                sql(&rotation.changes)
            );
            let pg = &self.spec.postgres;
            let cmd = Cmd::script(ROTATE)
                .args([&layout.bin_dir, &pg.port.to_string(), &pg.superuser.name])
                .stdin(stdin);
            ex.run_ok(&cmd, "ALTER ROLE").await?;
            Ok((
                (),
                true,
                vec![format!("new password for {}", roles.join(", "))],
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> ClusterSecrets {
        ClusterSecrets {
            superuser: "su-new".into(),
            replication: "repl".into(),
            rewind: "rw".into(),
            restapi: "api".into(),
            haproxy_stats: "stats".into(),
            s3: Default::default(),
        }
    }

    /// The `patroni.yml` pgmetal rendered with superuser password `su`, as the leader has it.
    fn live(su: &str) -> String {
        let old = ClusterSecrets {
            superuser: su.into(),
            ..secrets()
        };
        let spec = crate::render::tests::spec();
        let host = spec.postgres.primary.clone();
        let file =
            crate::render::patroni_config(&spec, &old, &host, crate::model::OsFamily::Debian);
        String::from_utf8(file.unwrap().content).unwrap()
    }

    #[test]
    fn only_changed_passwords_are_set_and_nothing_when_none_changed() {
        let spec = crate::render::tests::spec();
        assert_eq!(plan(&live("su-new"), &spec, &secrets()), None);
        let r = plan(&live("su-old"), &spec, &secrets()).unwrap();
        assert_eq!(r.current_superuser, "su-old");
        assert_eq!(r.changes, vec![("postgres".into(), "su-new".into())]);
    }

    #[test]
    fn an_unreadable_file_sets_every_password() {
        let spec = crate::render::tests::spec();
        let r = plan("", &spec, &secrets()).unwrap();
        assert_eq!(r.current_superuser, "");
        let roles: Vec<&str> = r.changes.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["postgres", "replicator", "rewind_user"]);
    }

    #[test]
    fn quotes_are_doubled_and_statements_are_not_logged() {
        let s = sql(&[("we\"ird".into(), "it's".into())]);
        assert!(s.starts_with("SET log_statement = 'none';"), "{s}");
        assert!(s.contains("SET log_min_error_statement = 'panic';"), "{s}");
        assert!(
            s.contains("ALTER ROLE \"we\"\"ird\" PASSWORD 'SCRAM-SHA-256$4096:"),
            "{s}"
        );
        assert!(!s.contains("it''s"), "no clear text: {s}");
        let s = sql(&[("r".into(), "pässword's".into())]);
        assert!(
            s.ends_with("PASSWORD 'pässword''s';\n"),
            "outside ASCII (SASLprep) in clear text, quoted: {s}"
        );
    }

    #[test]
    fn the_scram_verifier_is_postgres_own() {
        // Computed independently with Python's hashlib, hmac and base64 (RFC 5802 / 7677).
        let salt: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            scram_verifier("it's", &salt).unwrap(),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$CQpWA/reHzyo3JS1oKAFvIftKOf+A+ReLhMxG1DruSc=:DXJAsNd9/1JUoF5/GJavuf6RgEXyT6+1ZSo0azAxwoA="
        );
    }

    #[test]
    fn the_rotate_script_is_valid_sh() {
        crate::exec::fake::assert_valid_sh(ROTATE);
    }
}
