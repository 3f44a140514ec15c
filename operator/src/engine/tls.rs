//! PostgreSQL's server certificate on each member: issued from the cluster's CA when missing,
//! signed by another CA, due for renewal or naming other hosts; otherwise left as it is (a
//! converge with nothing to renew writes nothing and reloads nothing).

use time::OffsetDateTime;

use super::error::{Failure, HostErrorKind};
use super::{Engine, HostError};
use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Executor};
use crate::model::DesiredFile;
use crate::render::{self, Layout};
use crate::tls::{self, CertKey, Request, Usage};

/// Asks the running PostgreSQL to re-read its configuration and certificate files.
const RELOAD: &str = r#"runuser -u postgres -- "$1/psql" -X -At -h "$2" -p "$3" -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
echo "PostgreSQL reloaded its certificate""#;

/// The PostgreSQL certificate files `host` needs: the CA certificate always, and a new server
/// certificate and key when the one in place (`seen`, PEM) must be replaced; with the reason.
pub(super) fn postgres_tls_files(
    spec: &PostgresClusterSpec,
    ca: &CertKey,
    host: &str,
    seen: Option<&str>,
    (now, user): (OffsetDateTime, &str),
) -> Result<(Vec<DesiredFile>, Option<String>), Failure> {
    let (lifetime, renew_before) = spec
        .tls
        .durations()
        .map_err(|(field, why)| Failure::new(HostErrorKind::Tls, format!("{field}: {why}")))?;
    let names = render::postgres_names(spec, host);
    let mut files = vec![render::ca_file(&ca.cert)];
    let why = match seen {
        None => Some("there is none".to_string()),
        Some(pem) => match tls::inspect(pem, &ca.cert) {
            Ok(seen) => tls::renewal_due(&seen, &names, now, renew_before),
            Err(e) => Some(e.to_string()),
        },
    };
    if why.is_some() {
        let req = Request {
            common_name: host.to_string(),
            names,
            usage: Usage::Server,
        };
        let issued = tls::issue(ca, &req, now, lifetime)?;
        files.push(render::postgres_file(&issued, user));
    }
    Ok((files, why))
}

impl Engine<'_> {
    /// The certificate files of PostgreSQL member `host` (nothing when `spec.tls` is off).
    /// Reissuing is reported as a change of the step `postgres certificate`.
    pub(super) async fn postgres_tls(
        &self,
        host: &str,
        layout: &Layout,
    ) -> Result<Vec<DesiredFile>, HostError> {
        if !self.spec.tls.enabled() {
            return Ok(Vec::new());
        }
        let seen = self.host_facts(host)?.postgres_cert;
        self.step(host, "postgres certificate", async {
            let ca = self.ca.as_ref().ok_or_else(|| {
                Failure::new(
                    HostErrorKind::Tls,
                    "spec.tls is Managed but no CA was given to the converge",
                )
            })?;
            let now = (OffsetDateTime::now_utc(), layout.postgres_user.as_str());
            let (files, why) = postgres_tls_files(self.spec, ca, host, seen.as_deref(), now)?;
            let said = why.map(|w| format!("issued a new certificate: {w}"));
            Ok((files, said.is_some(), said.into_iter().collect()))
        })
        .await
    }

    /// After a certificate was written to a running member: PostgreSQL re-reads it.
    pub(super) async fn reload_postgres(
        &self,
        host: &str,
        ex: &dyn Executor,
        layout: &Layout,
    ) -> Result<(), HostError> {
        let port = self.spec.postgres.port.to_string();
        let cmd =
            Cmd::script(RELOAD).args([layout.bin_dir.as_str(), &layout.unix_socket_dir, &port]);
        self.script_step(host, ex, "reload postgres", &cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> PostgresClusterSpec {
        crate::render::tests::spec()
    }

    #[test]
    fn issued_once_then_kept_until_due_or_renamed() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = tls::new_ca("c", now, tls::CA_LIFETIME).unwrap();
        let s = spec();
        let host = s.postgres.primary.clone();
        let (files, why) = postgres_tls_files(&s, &ca, &host, None, (now, "postgres")).unwrap();
        assert_eq!(why.as_deref(), Some("there is none"));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [render::CA_CERT, render::POSTGRES_PEM]);
        assert_eq!(
            (files[1].mode, files[1].owner.as_str()),
            (0o600, "postgres")
        );
        let pem = String::from_utf8(files[1].content.clone()).unwrap();
        assert!(
            pem.contains("PRIVATE KEY"),
            "the key travels with its certificate"
        );
        let cert = pem[..pem.find("-----BEGIN PRIVATE").unwrap()].to_string();
        let seen = tls::inspect(&cert, &ca.cert).unwrap();
        assert!(seen.names.contains(&host) && seen.names.contains(&s.haproxy.hosts[0]));
        let again = postgres_tls_files(&s, &ca, &host, Some(&cert), (now, "postgres")).unwrap();
        assert_eq!(
            (again.0.len(), again.1),
            (1, None),
            "kept: only the CA file"
        );
        let late = now + Duration::from_secs(2100 * 3600);
        let due = postgres_tls_files(&s, &ca, &host, Some(&cert), (late, "postgres")).unwrap();
        assert!(due.1.unwrap().contains("expires"));
        let mut named = s.clone();
        named.tls.service_names = vec!["db.example.com".into()];
        let renamed = postgres_tls_files(&named, &ca, &host, Some(&cert), (now, "postgres"));
        assert!(renamed.unwrap().1.unwrap().contains("names"));
        let other = tls::new_ca("other", now, tls::CA_LIFETIME).unwrap();
        let foreign = postgres_tls_files(&s, &other, &host, Some(&cert), (now, "postgres"));
        assert!(foreign.unwrap().1.unwrap().contains("CA"));
    }
}
