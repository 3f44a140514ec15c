//! Which hosts pgmetal may speak plain text to while the spec asks for TLS: those whose
//! Patroni REST API or etcd client port pgmetal configured for plain text (a cluster moving to
//! TLS), as their configuration files say, read over SSH before any request goes to them.
//! What answers on the network never decides the scheme.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::exec::Cmd;
use crate::model::OsFamily;
use crate::render::{self, Layout};
use crate::tls::Scheme;

use super::Engine;

/// The hosts a client may speak plain text to (see [`Engine::read_schemes`]); shared by the
/// clones of a client.
#[derive(Debug, Clone, Default)]
pub struct PlainHosts(Arc<RwLock<BTreeSet<String>>>);

impl PlainHosts {
    /// Allows plain text to `host`.
    pub fn allow(&self, host: &str) {
        if let Ok(mut p) = self.0.write() {
            p.insert(host.to_string());
        }
    }

    /// Whether `host` may be reached in `scheme`: TLS always (verified against the cluster's
    /// CA), plain text only where allowed.
    pub fn allows(&self, scheme: Scheme, host: &str) -> bool {
        scheme == Scheme::Https || self.0.read().is_ok_and(|p| p.contains(host))
    }
}

/// Prints the kind (`rest`, `etcd`) of each `KIND|FILE|PREFIX|MARKER` argument whose FILE
/// exists and has no line starting with PREFIX (configured for plain text), or whose MARKER
/// exists (a change written, not loaded yet: the running service may still serve plain text).
const READ: &str = r#"for a in "$@"; do
  kind=${a%%|*}; r=${a#*|}; file=${r%%|*}; r=${r#*|}; prefix=${r%%|*}; marker=${r#*|}
  [ -f "$file" ] || continue
  if [ -e "$marker" ] || ! awk -v p="$prefix" 'index($0, p) == 1 {f = 1} END {exit !f}' "$file"
  then echo "$kind"; fi
done
true"#;

/// A service whose scheme [`READ`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// Patroni's REST API.
    Rest,
    /// etcd's client port.
    Etcd,
}

impl Service {
    fn word(self) -> &'static str {
        match self {
            Service::Rest => "rest",
            Service::Etcd => "etcd",
        }
    }

    /// The service [`READ`] names `word`.
    fn parse(word: &str) -> Option<Self> {
        [Service::Rest, Service::Etcd]
            .into_iter()
            .find(|s| s.word() == word)
    }
}

/// [`READ`]'s arguments for `spec`'s services, for both OS families (the host's is not known
/// before the facts probe).
fn read_args(spec: &crate::api::PostgresClusterSpec) -> Vec<String> {
    let mut args = Vec::new();
    for os in [OsFamily::Debian, OsFamily::RedHat] {
        let l = Layout::new(spec, os);
        let entry = |s: Service, file: &str, prefix: &str, unit: &str| {
            let marker = super::units::pending_marker(unit);
            format!("{}|{file}|{prefix}|{marker}", s.word())
        };
        let rest = entry(
            Service::Rest,
            &l.patroni_config,
            render::REST_TLS_LINE,
            &l.patroni_unit,
        );
        let etcd = entry(
            Service::Etcd,
            &l.etcd_env_file,
            render::ETCD_CLIENT_TLS_LINE,
            &l.etcd_unit,
        );
        for a in [rest, etcd] {
            if !args.contains(&a) {
                args.push(a);
            }
        }
    }
    args
}

impl Engine<'_> {
    /// With `spec.tls` on: lets the clients speak plain text to the Patroni REST API and etcd of
    /// each PostgreSQL and etcd host of the spec only where their configuration says they may
    /// serve it (a former host is asked in TLS only). With TLS off
    /// nothing is read: plain text is what the spec asks for, and TLS is always verified.
    pub(super) async fn read_schemes(&self) {
        if !self.spec.tls.enabled() {
            return;
        }
        let cmd = Cmd::script(READ).args(read_args(self.spec));
        let serving = |h: &&String| {
            let r = render::roles(self.spec, h);
            r.postgres || r.etcd
        };
        let each = self.conns.keys().filter(serving).map(|host| {
            let cmd = cmd.clone();
            async move {
                let ex = self.exec(host).ok()?;
                let out = ex.run_ok(&cmd, "read the configured schemes").await.ok()?;
                Some((host, out.stdout_str().into_owned()))
            }
        });
        for (host, said) in futures::future::join_all(each).await.into_iter().flatten() {
            for service in said.split_whitespace().filter_map(Service::parse) {
                match service {
                    Service::Rest => self.api.allow_plain(host),
                    Service::Etcd => self.etcd.allow_plain(host),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_the_services_configured_for_plain_text_or_not_loaded_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).display().to_string();
        std::fs::write(
            path("patroni.yml"),
            "restapi:\n  verify_client: \"optional\"\n",
        )
        .unwrap();
        std::fs::write(
            path("etcd"),
            "ETCD_LISTEN_CLIENT_URLS=\"http://10.0.0.1:2379\"\n",
        )
        .unwrap();
        let arg = |kind: &str, file: &str, prefix: &str, marker: &str| {
            format!("{kind}|{}|{prefix}|{}", path(file), path(marker))
        };
        let run = |args: &[String]| {
            let out = std::process::Command::new("sh")
                .args(["-c", READ, "sh"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let args = [
            arg("rest", "patroni.yml", render::REST_TLS_LINE, "rest.pending"),
            arg("etcd", "etcd", render::ETCD_CLIENT_TLS_LINE, "etcd.pending"),
            arg("gone", "gone", "x", "gone.pending"),
        ];
        assert_eq!(
            run(&args),
            "etcd\n",
            "TLS REST API, plain etcd, no third file"
        );
        std::fs::write(path("rest.pending"), "").unwrap();
        assert_eq!(run(&args), "rest\netcd\n", "a change not loaded yet");
    }

    #[test]
    fn both_families_files_are_read() {
        let spec: crate::api::PostgresClusterSpec = serde_saphyr::from_str(
            "ssh: {privateKeySecret: {name: k, key: k}}\npostgres: {primary: a}\netcd: {hosts: [a]}\n",
        )
        .unwrap();
        let args = read_args(&spec);
        for os in [OsFamily::Debian, OsFamily::RedHat] {
            let l = Layout::new(&spec, os);
            assert!(
                args.iter()
                    .any(|a| a.contains(&format!("|{}|", l.patroni_config)))
            );
            assert!(
                args.iter()
                    .any(|a| a.contains(&format!("|{}|", l.etcd_env_file)))
            );
        }
    }
}
