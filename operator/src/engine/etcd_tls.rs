//! etcd's TLS on a running cluster: each member's certificate, the transport it speaks in this
//! pass, the scheme of its peer URL, and the restarts (under pause) that move Patroni's etcd
//! client, which Patroni reads only when it starts.
//!
//! A cluster moves between plain text and TLS in one converge. First every member's peers go
//! plain text, each member able to dial a TLS peer, while its client port keeps the scheme
//! Patroni speaks ([`Transport::Opening`]). Then, with the cluster paused, the first etcd
//! member moves to the spec's transport, Patroni restarts member by member into it (the
//! restarted ones reach etcd through that member, the others through the rest), and the other
//! etcd members follow. An interrupted move resumes where it stopped: the transport follows
//! from what the hosts say, and a Patroni restart owed leaves its marker (see
//! [`super::units::restart_marker`]), which a fresh start of Patroni also settles.

use std::future::Future;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::error::{Failure, HostErrorKind};
use super::units::restart_marker;
use super::{Engine, HostError};
use crate::exec::Cmd;
use crate::model::DesiredFile;
use crate::render::{self, Layout, Transport};
use crate::tls::Scheme;

/// What Patroni on a member speaks to etcd with: `http`, `https`, `pending` (a restart is
/// owed) or `none` (it never ran). `$1` [`render::PATRONI_ETCD`], `$2` Patroni's configuration
/// (which a member configured before that file existed has: plain text), `$3` the marker.
const PATRONI_SCHEME: &str = r#"s=$(cut -d' ' -f1 "$1" 2>/dev/null) || { [ -e "$2" ] && s=http; }
[ -e "$3" ] && s=pending
echo "${s:-none}""#;

/// Restarts Patroni (`$1`) and removes the marker `$2` once it runs again.
const RESTART: &str =
    r#"systemctl restart "$1" && rm -f "$2" && echo "$1 restarted for its etcd client""#;

/// The certificate in place in `$1`, without its key.
const SEEN: &str =
    r#"sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' -- "$1" 2>/dev/null || true"#;

/// What Patroni on a member speaks to etcd with, as [`PATRONI_SCHEME`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatroniEtcd {
    /// Its running process speaks this scheme.
    Speaks(Scheme),
    /// Its etcd section changed and a restart is owed.
    RestartOwed,
    /// It never ran on the host.
    NeverRan,
}

impl PatroniEtcd {
    fn parse(said: &str) -> Option<Self> {
        match said.trim() {
            "http" => Some(PatroniEtcd::Speaks(Scheme::Http)),
            "https" => Some(PatroniEtcd::Speaks(Scheme::Https)),
            "pending" => Some(PatroniEtcd::RestartOwed),
            "none" => Some(PatroniEtcd::NeverRan),
            _ => None,
        }
    }
}

impl Engine<'_> {
    /// Whether etcd stays between plain text and TLS in this pass: it runs, and some Patroni
    /// does not speak the spec's scheme yet.
    fn etcd_between(&self) -> bool {
        let moved = self
            .clients_moved
            .lock()
            .map_or(true, |m| m.unwrap_or(true));
        self.live_etcd().is_some() && !moved
    }

    /// The transport etcd member `host` speaks in this pass: what the spec asks for when
    /// bootstrapping, once every Patroni speaks its scheme, or when `host` leads the move (see
    /// [`Self::move_etcd_clients`]); else [`Transport::Opening`] in the scheme Patroni speaks.
    pub(super) fn etcd_transport(&self, host: &str) -> Transport {
        let leads = self
            .vanguard
            .lock()
            .is_ok_and(|v| v.as_deref() == Some(host));
        let wanted = Transport::wanted(self.spec);
        match self.etcd_between() && !leads {
            true => Transport::Opening(wanted.client_scheme().other()),
            false => wanted,
        }
    }

    /// What Patroni on each member speaks to etcd with, read now (None: the member did not
    /// answer).
    async fn patroni_schemes(&self) -> Vec<(String, Option<PatroniEtcd>)> {
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let each = members.into_iter().map(|h| async move {
            let said = async {
                let layout = Layout::new(self.spec, self.host_facts(&h).ok()?.os);
                let ex = self.exec(&h).ok()?;
                let marker = restart_marker(&layout.patroni_unit);
                let args = [render::PATRONI_ETCD, &layout.patroni_config, &marker];
                let cmd = Cmd::script(PATRONI_SCHEME).args(args);
                let out = ex.run_ok(&cmd, "patroni's etcd scheme").await.ok()?;
                PatroniEtcd::parse(&out.stdout_str())
            };
            let said = said.await;
            (h, said)
        });
        futures::future::join_all(each).await
    }

    /// Reads whether every Patroni member that answers speaks the spec's scheme to etcd (or
    /// never ran). A member that does not answer says nothing either way: a power-cut host must
    /// not start a move of a cluster that has moved, and the others tell whether one is under
    /// way.
    pub(super) async fn read_clients_moved(&self) -> bool {
        let wanted = PatroniEtcd::Speaks(Scheme::when(self.spec.tls.enabled()));
        let schemes = self.patroni_schemes().await;
        let moved = schemes
            .iter()
            .filter_map(|(_, s)| *s)
            .all(|s| s == PatroniEtcd::NeverRan || s == wanted);
        if schemes
            .iter()
            .any(|(_, s)| *s == Some(PatroniEtcd::RestartOwed))
        {
            let changed = &self.etcd_section_changed;
            changed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut m) = self.clients_moved.lock() {
            *m = Some(moved);
        }
        moved
    }

    /// When etcd's first pass left it between plain text and TLS (a cluster moving either
    /// way), or Patroni's etcd section changed: Patroni restarts where it owes one, then every
    /// etcd member speaks only the spec's scheme.
    pub(super) async fn etcd_second_pass(&self) -> Result<(), Failure> {
        let opening = self.etcd_between();
        let changed = self
            .etcd_section_changed
            .load(std::sync::atomic::Ordering::Relaxed);
        if !opening && !changed {
            return Ok(());
        }
        let etcd_pass = || async {
            self.etcd_members().await;
            self.timed("wait for etcd quorum", self.wait_etcd()).await
        };
        let moving = self.move_etcd_clients(opening, etcd_pass);
        self.timed("patroni's etcd client", moving).await
    }

    /// The second pass of a move between plain text and TLS, with the cluster paused (so that
    /// PostgreSQL keeps running and no member demotes or fails over while etcd members restart
    /// and Patroni's clients find them again): Patroni restarts where its etcd client must
    /// move, one member at a time, the leader last; then, once every member speaks the spec's
    /// scheme, `etcd_pass` restarts the etcd members speaking only that scheme.
    pub(super) async fn move_etcd_clients<F: Future<Output = Result<(), Failure>>>(
        &self,
        opening: bool,
        etcd_pass: impl FnOnce() -> F,
    ) -> Result<(), Failure> {
        let owed: Vec<String> = self
            .patroni_schemes()
            .await
            .into_iter()
            .filter(|(_, s)| *s == Some(PatroniEtcd::RestartOwed))
            .map(|(h, _)| h)
            .collect();
        if owed.is_empty() && !opening {
            return Ok(());
        }
        let members: Vec<String> = self.spec.postgres.hosts().cloned().collect();
        let view = self.api.cluster_any(&members).await?;
        let leader = view.leader_host(&members);
        let paused_here = !self.spec.paused && !view.pause;
        if paused_here {
            self.set_pause(leader.as_deref(), &members, true).await?;
        }
        let moved = async {
            if opening {
                // One etcd member speaks the spec's scheme first, for the Patroni members that
                // restart into it; the others keep the old one for those still waiting.
                let first = self.spec.etcd.hosts[0].clone();
                if let Ok(mut v) = self.vanguard.lock() {
                    *v = Some(first.clone());
                }
                self.etcd(&first, true).await.map_err(|e| e.failure())?;
            }
            let mut order = owed;
            order.sort_by_key(|h| Some(h) == leader.as_ref());
            for host in &order {
                self.restart_for_etcd(host).await.map_err(|e| e.failure())?;
            }
            if opening && self.read_clients_moved().await {
                etcd_pass().await?;
            }
            Ok(())
        }
        .await;
        if paused_here {
            self.set_pause(leader.as_deref(), &members, false).await?;
        }
        moved
    }

    /// Sets `pause` through the leader (any member without one) and, when pausing, waits one
    /// loop so that every member knows before it is restarted.
    async fn set_pause(
        &self,
        leader: Option<&str>,
        members: &[String],
        pause: bool,
    ) -> Result<(), Failure> {
        let to = leader.unwrap_or(&members[0]);
        let t = Instant::now();
        let name = if pause {
            "pause for patroni's etcd client"
        } else {
            "resume"
        };
        self.progress.step(to, name);
        let patch = serde_json::json!({ "pause": pause });
        self.patch_dcs(to, &patch).await?;
        self.rec.step(to, name, true, t, vec![patch.to_string()]);
        if pause {
            let a_loop = Duration::from_secs(u64::from(self.spec.patroni.loop_wait) + 3);
            tokio::time::sleep(a_loop.min(self.waits.patroni)).await;
        }
        Ok(())
    }

    /// Restarts Patroni on `host` and waits until its member runs again.
    async fn restart_for_etcd(&self, host: &str) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let layout = Layout::new(self.spec, self.host_facts(host)?.os);
        let marker = restart_marker(&layout.patroni_unit);
        let cmd = Cmd::script(RESTART).args([layout.patroni_unit.as_str(), &marker]);
        self.script_step(host, &*ex, "restart patroni for its etcd client", &cmd)
            .await?;
        self.step(host, "wait for the member", async {
            let (limit, every) = (self.waits.patroni, self.waits.every);
            let name = render::member_name(host);
            super::poll(limit, every, || async {
                let view = self.api.cluster(host).await.map_err(|_| ())?;
                let running = view
                    .members
                    .iter()
                    .any(|m| m.name == name && matches!(m.state.as_str(), "running" | "streaming"));
                if running {
                    Ok(((), false, vec![]))
                } else {
                    Err(())
                }
            })
            .await
            .map_err(|()| {
                let why = format!(
                    "Patroni on {host} did not run again within {} s after its restart: \
                     check `journalctl -u patroni` on {host}",
                    limit.as_secs()
                );
                Failure::new(HostErrorKind::Patroni, why)
            })
        })
        .await
    }

    /// Before etcd member `host` restarts speaking `transport`: its peer URL gets the scheme
    /// it will listen with (the other members dial it there).
    pub(super) async fn move_peer_url(
        &self,
        host: &str,
        transport: Transport,
    ) -> Result<(), HostError> {
        let scheme = transport.peer_scheme();
        let Some(member) = self
            .live_etcd()
            .into_iter()
            .flatten()
            .find(|m| m.host() == host)
        else {
            return Ok(());
        };
        if member.peer_urls.iter().all(|u| Scheme::of_url(u) == scheme) {
            return Ok(());
        }
        let url = render::etcd_url(scheme, host, self.spec.etcd.peer_port);
        let endpoints = self.etcd_endpoints();
        self.step(host, "etcd peer URL", async {
            self.etcd
                .update_peer(self.spec, &endpoints, member.id, url.clone())
                .await?;
            Ok(((), true, vec![format!("peer URL now {url}")]))
        })
        .await?;
        self.refresh_etcd().await;
        Ok(())
    }

    /// etcd's certificate on member `host` when it speaks TLS: issued like PostgreSQL's (see
    /// [`super::tls::certificate_due`]), owned by the etcd user. Without a CA (TLS turned off)
    /// the one in place stays until etcd no longer reads it.
    pub(super) async fn etcd_certificate(
        &self,
        host: &str,
        layout: &Layout,
    ) -> Result<Vec<DesiredFile>, HostError> {
        let Some(ca) = self.ca.as_ref() else {
            return Ok(Vec::new());
        };
        let ex = self.exec(host)?;
        let seen = ex
            .run_ok(&Cmd::script(SEEN).arg(render::ETCD_PEM), "etcd certificate")
            .await
            .map_err(|e| HostError::new(host, Some("etcd certificate"), e))?;
        let seen = seen.stdout_str();
        let seen = seen.contains("BEGIN CERTIFICATE").then_some(seen.as_ref());
        let held = self.held_cas();
        let mut trust: Vec<&str> = vec![ca.cert.as_str()];
        trust.extend(held.iter().map(String::as_str));
        let trust = render::etcd_trust_file(&trust);
        self.step(host, "etcd certificate", async {
            let names = (host, render::etcd_names(host));
            let due =
                super::tls::certificate_due(self.spec, ca, names, seen, OffsetDateTime::now_utc())?;
            let mut files = vec![render::ca_file(&ca.cert), trust];
            files.extend(due.issued.map(|c| render::etcd_file(&c, &layout.etcd_user)));
            let said = due.why.map(|w| format!("issued a new certificate: {w}"));
            Ok((files, said.is_some(), said.into_iter().collect()))
        })
        .await
    }
}
