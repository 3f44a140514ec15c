//! The per-host steps of each phase: prepare (facts, package source, install, take over package
//! defaults), etcd, Patroni members and HAProxy.

use std::time::Duration;

use super::error::Failure;
use super::{
    Engine, HostError, HostErrorKind, claim, facts, files, first_contact, packages, patroni_api,
    units,
};
use crate::engine::patroni_api::Member as _;
use crate::exec::Cmd;
use crate::model::DesiredFile;
use crate::render::{self, Layout, member_name, roles};

impl Engine<'_> {
    pub(super) async fn prepare(&self, host: &str) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        // The facts probe only reads: the claim is still judged before anything is written.
        let targets = super::snapshot::targets(self.spec, self.secrets, host);
        let (facts, seen) = self
            .step(host, "facts", async {
                Ok((facts::gather_with(&*ex, &targets).await?, false, vec![]))
            })
            .await?;
        self.keep_snapshot(host, seen);
        let adopting = self.claim(host, &*ex).await?.is_some()
            || self.file_present(host, first_contact::ADOPTED_PATH);
        let os = facts.os;
        let r = roles(self.spec, host);
        let repo: Vec<DesiredFile> = packages::repository_file(self.spec, os)
            .into_iter()
            .collect();
        let repo_in_place = self.files_in_place(host, &repo);
        let repo_changed = self
            .step(host, "package source", async {
                if repo_in_place {
                    return Ok((false, false, vec![]));
                }
                let w = files::sync(&*ex, &repo).await?;
                Ok((!w.is_empty(), !w.is_empty(), w))
            })
            .await?;
        let missing: Vec<String> = packages::wanted(self.spec, os, r)
            .into_iter()
            .filter(|p| !facts.installed.contains(p))
            .collect();
        self.step(host, "install packages", async {
            if missing.is_empty() {
                return Ok(((), false, vec![]));
            }
            if repo_changed || os == crate::model::OsFamily::Debian {
                ex.run_ok(&packages::refresh(os), "refresh package index")
                    .await?;
            }
            ex.run_ok(&packages::install(os, &missing), "install packages")
                .await?;
            Ok(((), true, missing.clone()))
        })
        .await?;
        let venv = Layout::new(self.spec, os).patroni_venv;
        let venv = venv.filter(|v| !self.file_present(host, &packages::installed_marker(v)));
        if let (true, Some(venv)) = (r.postgres, venv) {
            let cmd = packages::install_patroni(&self.spec.packages.patroni, &venv);
            self.script_step(host, &*ex, "install patroni", &cmd)
                .await?;
        }
        let takeover = packages::takeover(os, self.spec, r).map(|cmd| match adopting {
            true => cmd.stdin(first_contact::adopt_sql(self.spec, self.secrets)),
            false => cmd,
        });
        if let Some(cmd) = takeover.filter(|_| !self.nothing_to_take_over(host)) {
            self.script_step(host, &*ex, "take over package defaults", &cmd)
                .await?;
        }
        if let Ok(mut f) = self.facts.lock() {
            f.insert(host.to_string(), facts);
        }
        Ok(())
    }

    /// Claims `host` for this cluster on first contact, once the host has proven free (see
    /// [`first_contact`]); refuses a host another cluster claims, before anything is installed
    /// or written on it.
    /// Returns the system identifier adopted now, if any.
    async fn claim(
        &self,
        host: &str,
        ex: &dyn crate::exec::Executor,
    ) -> Result<Option<String>, HostError> {
        let file = DesiredFile {
            path: claim::PATH.into(),
            content: self.owner.render().into_bytes(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        };
        let ours = self.files_in_place(host, std::slice::from_ref(&file));
        self.step(host, "claim host", async {
            if ours {
                return Ok((None, false, vec![]));
            }
            let claimed = claim::read(ex).await?;
            let first = claimed.is_none();
            let take_over = self.asked.take_over.as_deref();
            match claim::judge(&self.owner, claimed.clone(), take_over) {
                claim::Verdict::Ours => Ok((None, false, vec![])),
                claim::Verdict::Write => {
                    let mut did = Vec::new();
                    let adopted = match first {
                        true => self.first_contact(host, ex).await?,
                        false => None,
                    };
                    if let Some(id) = &adopted {
                        did.push(format!("adopted PostgreSQL data with system identifier {id}"));
                    }
                    claim::write(ex, &self.owner, claimed.as_ref()).await?;
                    did.push(claim::PATH.into());
                    Ok((adopted, true, did))
                }
                claim::Verdict::Foreign(other) => {
                    let cli = other.uid.is_none() && self.owner.uid.is_some();
                    let take = match cli {
                        true => format!(
                            "; to run that `pgmetal apply` cluster with this resource instead, annotate it {}={}",
                            claim::TAKE_OVER,
                            other.name
                        ),
                        false => String::new(),
                    };
                    Err(Failure::new(
                        HostErrorKind::Claimed,
                        format!(
                            "{host} belongs to cluster {other} ({}): remove it from that cluster's spec, or delete {} on {host} if that cluster no longer exists{take}",
                            claim::PATH, claim::PATH
                        ),
                    ))
                }
            }
        })
        .await
    }

    /// Proves an unclaimed `host` free before it is claimed: refuses what pgmetal did not make,
    /// unless the resource adopts the PostgreSQL data in `dataDir` by its system identifier
    /// (then recorded on the host, and returned).
    async fn first_contact(
        &self,
        host: &str,
        ex: &dyn crate::exec::Executor,
    ) -> Result<Option<String>, Failure> {
        let probe = first_contact::probe(self.spec, roles(self.spec, host));
        let out = ex.run_ok(&probe, "prove the host free").await?;
        let found = first_contact::parse(&out.stdout_str());
        let adopt = self.asked.adopt.get(host).map(String::as_str);
        match first_contact::decide(found, &self.spec.postgres.data_dir, adopt) {
            first_contact::Decision::Free => Ok(None),
            first_contact::Decision::Adopt(id) => {
                let f = DesiredFile {
                    path: first_contact::ADOPTED_PATH.into(),
                    content: format!("{id}\n").into_bytes(),
                    mode: 0o644,
                    owner: "root".into(),
                    group: "root".into(),
                };
                files::sync(ex, std::slice::from_ref(&f)).await?;
                Ok(Some(id))
            }
            first_contact::Decision::Refuse(found) => Err(Failure::new(
                HostErrorKind::NotFree,
                first_contact::refusal(host, &found),
            )),
        }
    }

    /// Runs a script that prints one line per thing it changed (nothing when all was in place),
    /// as the step `name`: changed when it printed anything.
    pub(super) async fn script_step(
        &self,
        host: &str,
        ex: &dyn crate::exec::Executor,
        name: &str,
        cmd: &Cmd,
    ) -> Result<(), HostError> {
        self.step(host, name, async {
            let out = ex.run_ok(cmd, name).await?;
            let did: Vec<String> = out.stdout_str().lines().map(String::from).collect();
            Ok(((), !did.is_empty(), did))
        })
        .await
    }

    /// A service on `host`: its data directory, its files, its unit enabled and running
    /// (restarted or reloaded when a file changed). True when a file changed.
    async fn deploy(
        &self,
        host: &str,
        ex: &dyn crate::exec::Executor,
        files: &[crate::model::DesiredFile],
        service: Service<'_>,
    ) -> Result<bool, HostError> {
        self.ensure_dir(host, ex, service.data_dir, service.owner)
            .await?;
        let written = self.write_for(host, ex, files, Some(service.unit)).await?;
        // A configuration an interrupted converge wrote but never loaded counts as changed.
        let pending = self
            .host_facts(host)
            .is_ok_and(|f| f.pending.contains(service.unit));
        let changed = pending
            || written
                .iter()
                .any(|p| Some(p.as_str()) != service.read_at_first_start);
        units::ensure(
            self,
            host,
            ex,
            service.unit,
            changed,
            service.on_change,
            service.no_block,
        )
        .await?;
        Ok(changed)
    }

    /// etcd on `host`. `rolling`: the cluster is running, so a changed member restarts and
    /// waits until every member is healthy again (the caller runs one member at a time). Its
    /// first start's file never restarts it (etcd reads it only while its data directory is
    /// empty).
    pub(super) async fn etcd(&self, host: &str, rolling: bool) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let rendered = |e| HostError::new(host, None, e);
        let initial = render::etcd_initial_config(self.spec, host, os, &self.initial_cluster())
            .map_err(rendered)?;
        self.write(host, &*ex, std::slice::from_ref(&initial))
            .await?;
        let transport = self.etcd_transport(host);
        let mut trust = Vec::new();
        if transport.uses_tls() {
            // etcd reads its certificate at every handshake (a renewal needs no restart), the
            // CAs it trusts only when it starts.
            let files = self.etcd_certificate(host, &layout).await?;
            let (t, certificate): (Vec<_>, Vec<_>) = files
                .into_iter()
                .partition(|f| f.path == render::ETCD_TRUST);
            self.write(host, &*ex, &certificate).await?;
            trust = t;
        }
        if rolling {
            self.move_peer_url(host, transport).await?;
        }
        let config = render::etcd_config(self.spec, host, os, transport);
        let mut want = vec![config.map_err(rendered)?];
        want.extend(trust);
        want.extend(render::systemd_units(
            self.spec,
            os,
            render::Roles {
                etcd: true,
                ..Default::default()
            },
        ));
        // Bootstrapping, all members must start together (each waits for quorum): never block
        // on the start. Rolling, the restart returns once the member has rejoined.
        let service = Service {
            data_dir: &self.spec.etcd.data_dir,
            owner: &layout.etcd_user,
            unit: &layout.etcd_unit,
            on_change: units::OnChange::Restart,
            no_block: !rolling,
            read_at_first_start: Some(&layout.etcd_initial_file),
        };
        let changed = self.deploy(host, &*ex, &want, service).await?;
        if rolling && changed {
            self.step(host, "wait for etcd quorum", async {
                self.wait_etcd().await.map(|()| ((), false, vec![]))
            })
            .await?;
        }
        Ok(())
    }

    /// After a bootstrap: every member's first-start file names the running members with
    /// state `existing`, so that a member whose data is lost later joins, never bootstraps.
    pub(super) async fn seal_etcd(&self, host: &str) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let initial = render::etcd_initial_config(self.spec, host, os, &self.initial_cluster())
            .map_err(|e| HostError::new(host, None, e))?;
        self.write(host, &*ex, std::slice::from_ref(&initial))
            .await?;
        Ok(())
    }

    pub(super) async fn wait_etcd(&self) -> Result<(), Failure> {
        let limit = self.waits.etcd;
        super::poll(limit, self.waits.every, || async move {
            let st = self.etcd.status(self.spec).await;
            if st.healthy == st.desired {
                Ok(())
            } else {
                Err(st)
            }
        })
        .await
        .map_err(|st| {
            let msg = format!(
                "etcd has no healthy quorum after {} s ({}/{} healthy): \
                 check `journalctl -u etcd` on the etcd hosts",
                limit.as_secs(),
                st.healthy,
                st.desired
            );
            Failure::new(HostErrorKind::Etcd, msg)
        })
    }

    pub(super) async fn patroni(&self, host: &str, bootstrap: bool) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let r = roles(self.spec, host);
        let mut want = vec![
            render::patroni_config(self.spec, self.secrets, host, os)
                .map_err(|e| HostError::new(host, None, e))?,
        ];
        want.extend(render::systemd_units(
            self.spec,
            os,
            render::Roles { etcd: false, ..r },
        ));
        want.extend(self.restore_files(host, &layout).await?);
        let certificate = self.postgres_tls(host, &layout).await?;
        // A renewal an interrupted converge wrote but never loaded is loaded now.
        let reissued = certificate.iter().any(|f| f.path == render::POSTGRES_PEM)
            || self.host_facts(host)?.postgres_cert_unloaded;
        want.extend(certificate);
        // Patroni reads its etcd section only when it starts: a changed scheme leaves a marker
        // until the restart that moves it (see `etcd_tls`).
        let scheme = render::patroni_etcd(self.spec);
        let owed = units::restart_owed(&layout.patroni_unit);
        let written = self
            .write_for(host, &*ex, std::slice::from_ref(&scheme), Some(&owed))
            .await?;
        if !written.is_empty() {
            let changed = &self.etcd_section_changed;
            changed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let service = Service {
            data_dir: &layout.data_dir,
            owner: &layout.postgres_user,
            unit: &layout.patroni_unit,
            on_change: units::OnChange::Reload,
            no_block: false,
            read_at_first_start: None,
        };
        let changed = self.deploy(host, &*ex, &want, service).await?;
        let name = &member_name(host);
        let what = if bootstrap { "leader" } else { "streaming" };
        let done = |m: &patroni_api::ClusterMember| match bootstrap {
            true => m.is_running_leader(),
            false => m.is_leader() || m.is_healthy_replica(),
        };
        let unit = layout.patroni_unit.as_str();
        self.step(host, &format!("wait for patroni {what}"), async {
            let (limit, every) = (self.waits.patroni, self.waits.every);
            let ex = &*ex;
            let outcome = super::poll(limit, every, || async move {
                let view = self.api.cluster(host).await;
                match view
                    .ok()
                    .and_then(|v| v.members.into_iter().find(|m| m.name == *name))
                {
                    Some(m) if done(&m) => Ok(None),
                    Some(_) => Err(()),
                    // Patroni does not answer: a bootstrap it gave up (a failed restore, a
                    // failed initdb) ends the wait at once, with the reason.
                    None if bootstrap => gave_up(ex, unit).await.map(Some).ok_or(()),
                    None => Err(()),
                }
            })
            .await;
            match outcome {
                Ok(None) => Ok(((), false, vec![])),
                Ok(Some(why)) => {
                    let mut why =
                        format!("Patroni on {host} gave up bootstrapping member {name}: {why}");
                    if render::backup::recovery(self.spec).is_some() {
                        let kept = self.keep_failed_restore(host).await;
                        why = format!("{why}; {kept}");
                    }
                    Err(Failure::new(HostErrorKind::Patroni, why))
                }
                Err(()) => Err(Failure::new(
                    HostErrorKind::Patroni,
                    format!(
                        "member {name} did not become {what} within {} s: \
                         check `journalctl -u patroni` on {host}",
                        limit.as_secs()
                    ),
                )),
            }
        })
        .await?;
        if changed {
            self.wait_rest_scheme(host).await?;
        }
        if reissued {
            self.reload_postgres(host, &*ex, &layout).await?;
        }
        self.clear_restore_settings(host, bootstrap).await?;
        if changed {
            self.wait_pg_hba(host, &*ex, &layout).await?;
        }
        Ok(())
    }

    /// After Patroni's configuration changed: waits until Patroni has written the rendered
    /// pg_hba lines into PostgreSQL's `pg_hba.conf` (it re-reads its file at its next loop, up
    /// to `loopWait` later), so that the access rules are in effect when the converge returns.
    async fn wait_pg_hba(
        &self,
        host: &str,
        ex: &dyn crate::exec::Executor,
        layout: &Layout,
    ) -> Result<(), HostError> {
        const ALL_THERE: &str = r#"f="$1"; shift
for l in "$@"; do grep -qxF -- "$l" "$f" 2>/dev/null || { echo missing; exit 0; }; done"#;
        let mut args = vec![format!("{}/pg_hba.conf", layout.data_dir)];
        args.extend(render::pg_hba_lines(self.spec));
        let cmd = Cmd::script(ALL_THERE).args(args);
        let limit = Duration::from_secs(u64::from(self.spec.patroni.loop_wait) * 2 + 10);
        self.step(host, "wait for pg_hba", async {
            let cmd = &cmd;
            let every = self.waits.every;
            super::poll(limit, every, || async move {
                let out = ex
                    .run_ok(cmd, "read pg_hba.conf")
                    .await
                    .map_err(Failure::from)?;
                match out.stdout_str().contains("missing") {
                    true => Err(Failure::new(
                        HostErrorKind::Patroni,
                        format!(
                            "Patroni did not write the new pg_hba.conf within {} s",
                            limit.as_secs()
                        ),
                    )),
                    false => Ok(((), false, vec![])),
                }
            })
            .await
        })
        .await
    }

    /// haproxy.cfg on `host`, checking the members' REST API as `checks` says (and the CA
    /// file HTTPS checks verify against), reloaded when it changed.
    pub(super) async fn haproxy(
        &self,
        host: &str,
        checks: render::RestChecks,
    ) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let layout = Layout::new(self.spec, os);
        let new_ca = match self.spec.tls.enabled() || checks == render::RestChecks::Both {
            true => self.ca_file(host, &*ex, &layout.haproxy_unit).await?,
            false => false,
        };
        let cfg = render::haproxy_config_with(self.spec, self.secrets, checks)
            .map_err(|e| HostError::new(host, None, e))?;
        self.rec.files(host, std::slice::from_ref(&cfg));
        // `haproxy -c` judges the new file before it replaces the live one.
        let check = |path: &str| Cmd::new("haproxy").args(["-c", "-q", "-f", path]);
        let in_place = self.files_in_place(host, std::slice::from_ref(&cfg));
        let changed = self
            .step(host, "write haproxy.cfg (checked)", async {
                if in_place {
                    return Ok((false, false, vec![]));
                }
                let marker = units::pending_marker(&layout.haproxy_unit);
                let written = files::sync_checked(&*ex, (&cfg, Some(&marker)), check).await?;
                Ok((written, written, vec![]))
            })
            .await?
            || new_ca;
        units::ensure(
            self,
            host,
            &*ex,
            &layout.haproxy_unit,
            changed,
            units::OnChange::Reload,
            false,
        )
        .await
    }
}

/// What [`Engine::deploy`] needs to know of a service besides its files.
struct Service<'s> {
    /// Its data directory, created 0700 if missing (never emptied).
    data_dir: &'s str,
    /// The user owning the data directory.
    owner: &'s str,
    /// Its systemd unit.
    unit: &'s str,
    /// What a changed file means for the running unit.
    on_change: units::OnChange,
    /// Start without waiting for the unit to be up.
    no_block: bool,
    /// A file the service reads only at its first start: writing it changes nothing running.
    read_at_first_start: Option<&'s str>,
}

/// Whether Patroni's unit failed (Patroni exits when a bootstrap fails), with the errors it
/// and a restore logged; prints nothing while it runs.
const GAVE_UP: &str = r#"systemctl is-failed --quiet "$1" || exit 0
journalctl -u "$1" -n 300 --no-pager -o cat | grep -E 'ERROR|FATAL|CRITICAL' | tail -n 2
grep -h ERROR /var/log/pgbackrest/*-restore.log 2>/dev/null | tail -n 1
echo "the unit $1 failed""#;

/// The reason Patroni's `unit` on `ex` gave up, if it did.
async fn gave_up(ex: &dyn crate::exec::Executor, unit: &str) -> Option<String> {
    let cmd = Cmd::script(GAVE_UP).args([unit]);
    let out = ex.run_ok(&cmd, "patroni unit").await.ok()?;
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}
