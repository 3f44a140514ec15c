//! PostgreSQL's server certificate on each member (Patroni's REST API serves it too): issued
//! from the cluster's CA when missing, signed by another CA, due for renewal or naming other
//! hosts; otherwise left as it is (a converge with nothing to renew writes nothing and reloads
//! nothing). Also the CA file HAProxy checks with, and the move of the REST API's scheme.

use time::OffsetDateTime;

use super::error::{Failure, HostErrorKind};
use super::{Engine, HostError};
use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Executor};
use crate::model::{DesiredFile, OsFamily};
use crate::render::{self, Layout};
use crate::tls::{self, CertKey, Request, Usage};

/// Asks the running PostgreSQL to re-read its configuration and certificate files.
const RELOAD: &str = r#"runuser -u postgres -- "$1/psql" -X -At -h "$2" -p "$3" -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
echo "PostgreSQL reloaded its certificate""#;

/// What the certificate step puts on a member.
#[derive(Debug)]
pub(super) struct PostgresTls {
    /// The CA certificate always, and a new certificate with its key when one is issued.
    pub files: Vec<DesiredFile>,
    /// Why a new certificate was issued, if one was.
    pub why: Option<String>,
    /// When the certificate in place after the step expires.
    pub not_after: OffsetDateTime,
}

/// The PostgreSQL certificate files `host` needs, given the certificate in place (`seen`, PEM):
/// it is kept unless it must be replaced (see [`tls::renewal_due`]).
pub(super) fn postgres_tls_files(
    spec: &PostgresClusterSpec,
    ca: &CertKey,
    host: &str,
    seen: Option<&str>,
    (now, user): (OffsetDateTime, &str),
) -> Result<PostgresTls, Failure> {
    let names = render::postgres_names(spec, host);
    let mut files = vec![render::ca_file(&ca.cert)];
    let due = certificate_due(spec, ca, (host, names), seen, now)?;
    files.extend(due.issued.map(|c| render::postgres_file(&c, user)));
    Ok(PostgresTls {
        files,
        why: due.why,
        not_after: due.not_after,
    })
}

/// A certificate kept or issued again: see [`certificate_due`].
pub(super) struct Due {
    /// The new certificate, when one was issued.
    pub issued: Option<CertKey>,
    /// Why it was.
    pub why: Option<String>,
    /// When the certificate in place after the step expires.
    pub not_after: OffsetDateTime,
}

/// The certificate in place (`seen`, PEM) kept, or a new one for `host` with `names` issued
/// from `ca` when there is none, or it is due (see [`tls::renewal_due`]).
pub(super) fn certificate_due(
    spec: &PostgresClusterSpec,
    ca: &CertKey,
    (host, names): (&str, Vec<String>),
    seen: Option<&str>,
    now: OffsetDateTime,
) -> Result<Due, Failure> {
    let (lifetime, renew_before) = durations(spec)?;
    let seen = seen.map(|pem| tls::inspect(pem, &ca.cert));
    let why = match &seen {
        None => Some("there is none".to_string()),
        Some(Ok(seen)) => tls::renewal_due(seen, &names, now, renew_before),
        Some(Err(e)) => Some(e.to_string()),
    };
    if let (None, Some(Ok(seen))) = (&why, seen) {
        return Ok(Due {
            issued: None,
            why,
            not_after: seen.not_after,
        });
    }
    let req = Request {
        common_name: host.to_string(),
        names,
        usage: Usage::Peer,
    };
    Ok(Due {
        issued: Some(tls::issue(ca, &req, now, lifetime)?),
        why,
        not_after: now + lifetime,
    })
}

/// The node exporter's textfile for the certificates of a member: its server certificate
/// (expiring at `not_after`) and the CA.
fn expiry_metrics(
    spec: &PostgresClusterSpec,
    ca: &CertKey,
    not_after: OffsetDateTime,
) -> Result<DesiredFile, Failure> {
    let ca_until = tls::inspect(&ca.cert, &ca.cert)?.not_after;
    let (_, renew_before) = durations(spec)?;
    let certificates = [
        ("postgres", render::POSTGRES_PEM, not_after.unix_timestamp()),
        ("ca", render::CA_CERT, ca_until.unix_timestamp()),
    ];
    Ok(render::expiry_metrics(
        &certificates,
        renew_before.as_secs(),
    ))
}

/// `spec.tls`'s certificate lifetime and renew-before margin; a bad one fails the host's TLS
/// step naming the field.
pub(super) fn durations(
    spec: &PostgresClusterSpec,
) -> Result<(std::time::Duration, std::time::Duration), Failure> {
    spec.tls
        .durations()
        .map_err(|(field, why)| Failure::new(HostErrorKind::Tls, format!("{field}: {why}")))
}

/// Why a step that needs the cluster's CA cannot run.
fn no_ca() -> Failure {
    let why = "spec.tls is Managed but no CA was given to the converge";
    Failure::new(HostErrorKind::Tls, why)
}

impl Engine<'_> {
    /// The cluster's CA certificate on `host` (HAProxy verifies the members' REST API with
    /// it). True when it was written: `unit` (HAProxy) reads it only when it (re)loads.
    pub(super) async fn ca_file(
        &self,
        host: &str,
        ex: &dyn Executor,
        unit: &str,
    ) -> Result<bool, HostError> {
        let ca = self
            .ca
            .as_ref()
            .ok_or_else(|| HostError::new(host, Some("ca certificate"), no_ca()))?;
        let file = render::ca_file(&ca.cert);
        let written = self.write_for(host, ex, &[file], Some(unit)).await?;
        Ok(!written.is_empty())
    }

    /// While the cluster's CA is being replaced (a `Provided` CA rotated, or moved to or from
    /// one), or TLS is turned off without a CA of pgmetal's: the CA certificates the hosts
    /// still hold (the facts probe read them) are trusted too for this converge, so that the
    /// members' REST APIs stay readable until each serves its new certificate or plain HTTP.
    pub(super) fn trust_the_hosts_cas(&self) {
        let held = self.held_cas();
        if !held.is_empty() {
            self.api.trust_also(&held);
        }
    }

    /// The CA certificates the hosts held when the converge began, other than the cluster's,
    /// that pgmetal pinned as this cluster's former CAs. A host's file is data, never a trust
    /// anchor: a CA planted there (by root on the least trusted box) is not pinned, so neither
    /// etcd nor pgmetal ever trusts it.
    pub(super) fn held_cas(&self) -> Vec<String> {
        let ours = self.ca.as_ref().map(|ca| ca.cert.trim());
        let pinned =
            |c: &String| crate::tls::fingerprint(c).is_some_and(|f| self.pins.contains(&f));
        let held: std::collections::BTreeSet<String> = self
            .facts
            .lock()
            .map(|f| {
                f.values()
                    .filter_map(|h| h.ca_cert.clone())
                    .filter(|c| Some(c.trim()) != ours)
                    .filter(pinned)
                    .collect()
            })
            .unwrap_or_default();
        held.into_iter().collect()
    }

    /// Whether any member's REST API answers in the scheme the spec does not ask for: the
    /// cluster moves between plain text and TLS.
    pub(super) async fn rest_scheme_moves(&self, members: &[String]) -> bool {
        let looks = members.iter().map(|h| self.api.serves_wanted_scheme(h));
        let seen = futures::future::join_all(looks).await;
        seen.into_iter().any(|r| matches!(r, Ok(false)))
    }

    /// After Patroni's configuration changed: waits until its REST API serves the scheme the
    /// spec asks for (Patroni applies a changed `restapi` section at its next loop, up to
    /// `loopWait` later), so that HAProxy's checks can follow it.
    pub(super) async fn wait_rest_scheme(&self, host: &str) -> Result<(), HostError> {
        self.step(host, "wait for the REST API's scheme", async {
            let (limit, every) = (self.waits.patroni, self.waits.every);
            super::poll(limit, every, || async move {
                match self.api.serves_wanted_scheme(host).await {
                    Ok(true) => Ok(((), false, vec![])),
                    _ => Err(()),
                }
            })
            .await
            .map_err(|()| {
                let why = format!(
                    "Patroni's REST API on {host} did not move to the scheme spec.tls asks for \
                     within {} s: check `journalctl -u patroni` on {host}",
                    limit.as_secs()
                );
                Failure::new(HostErrorKind::Patroni, why)
            })
        })
        .await
    }

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
        let facts = self.host_facts(host)?;
        let (seen, os) = (facts.postgres_cert, facts.os);
        self.step(host, "postgres certificate", async {
            let ca = self.ca.as_ref().ok_or_else(no_ca)?;
            let now = (OffsetDateTime::now_utc(), layout.postgres_user.as_str());
            let mut t = postgres_tls_files(self.spec, ca, host, seen.as_deref(), now)?;
            if self.spec.monitoring.enabled && os == OsFamily::Debian {
                t.files.push(expiry_metrics(self.spec, ca, t.not_after)?);
            }
            if t.why.is_some()
                && let Ok(mut r) = self.reissued.lock()
            {
                r.insert(host.to_string());
            }
            let said = t.why.map(|w| format!("issued a new certificate: {w}"));
            Ok((t.files, said.is_some(), said.into_iter().collect()))
        })
        .await
    }

    /// Whether this converge issued `host` a new certificate.
    pub(super) fn reissued(&self, host: &str) -> bool {
        self.reissued.lock().is_ok_and(|r| r.contains(host))
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
        let first = postgres_tls_files(&s, &ca, &host, None, (now, "postgres")).unwrap();
        assert_eq!(first.why.as_deref(), Some("there is none"));
        assert_eq!(first.not_after, now + Duration::from_secs(2160 * 3600));
        let files = first.files;
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
        let later = now + Duration::from_secs(3600);
        let again = postgres_tls_files(&s, &ca, &host, Some(&cert), (later, "postgres")).unwrap();
        assert_eq!(
            (again.files.len(), again.why),
            (1, None),
            "kept: only the CA"
        );
        assert_eq!(again.not_after, first.not_after, "the one in place");
        let late = now + Duration::from_secs(2100 * 3600);
        let due = postgres_tls_files(&s, &ca, &host, Some(&cert), (late, "postgres")).unwrap();
        assert!(due.why.unwrap().contains("expires"));
        let mut named = s.clone();
        named.tls.service_names = vec!["db.example.com".into()];
        let renamed = postgres_tls_files(&named, &ca, &host, Some(&cert), (now, "postgres"));
        assert!(renamed.unwrap().why.unwrap().contains("names"));
        let other = tls::new_ca("other", now, tls::CA_LIFETIME).unwrap();
        let foreign = postgres_tls_files(&s, &other, &host, Some(&cert), (now, "postgres"));
        assert!(foreign.unwrap().why.unwrap().contains("CA"));
        let m = expiry_metrics(&s, &ca, first.not_after).unwrap();
        let text = String::from_utf8(m.content).unwrap();
        let line = format!(
            "pgmetal_certificate_expiry_timestamp_seconds{{certificate=\"postgres\",path=\"{}\"}} {}",
            render::POSTGRES_PEM,
            first.not_after.unix_timestamp()
        );
        assert!(text.contains(&line), "{text}");
        assert!(
            text.contains("pgmetal_certificate_renew_before_seconds 604800"),
            "{text}"
        );
    }
}
