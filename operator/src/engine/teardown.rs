//! Taking a cluster off its hosts (on deletion): stop its services, with `deletionPolicy: Wipe`
//! delete data directories proven to be this cluster's, and release the hosts' claims. A host
//! this cluster does not claim is left alone.

use super::first_contact::ADOPTED_PATH;
use super::{Failure, HostError, claim, facts};
use crate::api::PostgresClusterSpec;
use crate::exec::{Cmd, Executor};
use crate::render::{Layout, roles};

const STOP: &str =
    r#"for u in "$@"; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done"#;

/// The cluster ID (hex, as status records it) in `etcdctl endpoint status -w json` output.
fn etcd_cluster_id(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let id = v
        .get(0)?
        .get("Status")?
        .get("header")?
        .get("cluster_id")?
        .as_u64()?;
    Some(format!("{id:x}"))
}

/// etcd's status through `etcdctl` on its host (`$1` = `host:port`): with the member's own
/// certificate (`$3`, the CA `$2`) over TLS when it has one, else in plain text.
const ETCD_STATUS: &str = r#"if [ -f "$3" ] && ETCDCTL_API=3 etcdctl --endpoints="https://$1" --cacert="$2" --cert="$3" --key="$3" --command-timeout=5s endpoint status -w json 2>/dev/null; then exit 0; fi
ETCDCTL_API=3 etcdctl --endpoints="http://$1" --command-timeout=5s endpoint status -w json"#;

/// Names the host and step of a failure.
fn at<'h, E: Into<Failure>>(host: &'h str, step: &'static str) -> impl Fn(E) -> HostError + 'h {
    move |e| HostError::new(host, Some(step), e)
}

/// What to take off the hosts, and what proves a data directory is this cluster's.
pub struct Teardown<'a> {
    /// The cluster's spec (roles, units, data directories).
    pub spec: &'a PostgresClusterSpec,
    /// The cluster: only hosts it claims are touched.
    pub owner: &'a claim::Owner,
    /// `status.systemIdentifier`: a PostgreSQL data directory is wiped only when its
    /// `pg_controldata` says this.
    pub system_identifier: Option<&'a str>,
    /// `status.etcdClusterId`: an etcd data directory is wiped only when the member running on
    /// it reports this cluster ID.
    pub etcd_cluster_id: Option<&'a str>,
    /// Delete data (`deletionPolicy: Wipe`, and the data directories passed validation).
    pub wipe: bool,
}

/// What happened on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Not this cluster's host: nothing ran but reading its claim.
    LeftAlone(String),
    /// Services stopped and the claim released; with Wipe, what was deleted and what was kept
    /// (with why).
    Stopped {
        /// Data directories deleted.
        wiped: Vec<String>,
        /// Data directories kept although Wipe asked, each with why.
        kept: Vec<String>,
    },
}

impl Teardown<'_> {
    /// Takes the cluster off `host`.
    pub async fn host(&self, host: &str, ex: &dyn Executor) -> Result<Done, HostError> {
        let fail = |step: &'static str| at(host, step);
        let claimed = claim::read(ex)
            .await
            .map_err(fail("read the host's claim"))?;
        match claimed {
            Some(c) if self.owner.owns(&c) => {}
            Some(c) => return Ok(Done::LeftAlone(format!("{host} belongs to {c}"))),
            None => {
                let why = format!("{host} is not claimed by this cluster (never converged)");
                return Ok(Done::LeftAlone(why));
            }
        }
        let os = facts::gather(ex).await.map_err(at(host, "facts"))?.os;
        let layout = Layout::new(self.spec, os);
        let role = roles(self.spec, host);
        let [node_exporter, postgres_exporter] = crate::render::EXPORTER_UNITS;
        let units = [
            (role.haproxy, layout.haproxy_unit.as_str()),
            (role.postgres, &layout.patroni_unit),
            (role.etcd, &layout.etcd_unit),
            (role.postgres, postgres_exporter),
            (true, node_exporter),
        ];
        // Asked before the services stop: only a running member can say which cluster it is in.
        let etcd_ours = match self.wipe && role.etcd {
            true => Some(self.etcd_is_ours(host, ex).await),
            false => None,
        };
        // pgBackRest's server and the backup timers stop too; the repository is kept, even
        // with Wipe: backups outlive the cluster they protect.
        let backup = self.spec.backup.as_ref().map(|b| {
            let timers = crate::render::backup::schedules(b).unwrap_or_default();
            let timers = timers
                .into_iter()
                .map(|(t, _)| crate::render::backup::timer_name(t));
            let server = format!("{}.service", crate::render::backup::SERVER_UNIT);
            std::iter::once(server).chain(timers).collect::<Vec<_>>()
        });
        let units = units
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, u)| u.to_string())
            .chain(backup.into_iter().flatten());
        ex.run_ok(&Cmd::script(STOP).args(units), "stop services")
            .await
            .map_err(fail("stop services"))?;
        let (mut wiped, mut kept) = (Vec::new(), Vec::new());
        if self.wipe {
            let mut dirs = Vec::new();
            match etcd_ours {
                Some(Ok(())) => dirs.push(self.spec.etcd.data_dir.clone()),
                Some(Err(why)) => kept.push(format!("{}: {why}", self.spec.etcd.data_dir)),
                None => {}
            }
            if role.postgres {
                match self.postgres_is_ours(&layout, ex).await {
                    Ok(()) => dirs.push(layout.data_dir.clone()),
                    Err(why) => kept.push(format!("{}: {why}", layout.data_dir)),
                }
            }
            if !dirs.is_empty() {
                let rm = Cmd::new("rm").args(["-rf", "--"]).args(dirs.clone());
                ex.run_ok(&rm, "wipe data directories")
                    .await
                    .map_err(fail("wipe data directories"))?;
                wiped = dirs;
            }
        }
        claim::release(ex)
            .await
            .map_err(fail("release the claim"))?;
        Ok(Done::Stopped { wiped, kept })
    }

    /// Whether the etcd member on `host` is in this cluster's etcd: the cluster ID it reports
    /// is the one recorded in status. Otherwise why not.
    async fn etcd_is_ours(&self, host: &str, ex: &dyn Executor) -> Result<(), String> {
        let Some(want) = self.etcd_cluster_id else {
            return Err("no etcd cluster ID was recorded for this cluster, so nothing proves the data is its own".into());
        };
        let url = crate::render::host_port(host, self.spec.etcd.client_port);
        let (ca, pem) = (crate::render::CA_CERT, crate::render::ETCD_PEM);
        let out = ex
            .run_ok(
                &Cmd::script(ETCD_STATUS).args([url.as_str(), ca, pem]),
                "read the etcd cluster ID",
            )
            .await
            .map_err(|e| format!("its etcd member did not say which cluster it is in ({e})"))?;
        let got =
            etcd_cluster_id(out.stdout_str().as_ref()).ok_or("etcdctl reported no cluster ID")?;
        match got == want {
            true => Ok(()),
            false => Err(format!(
                "its etcd member is in cluster {got}, not this cluster's {want}"
            )),
        }
    }

    /// Whether the PostgreSQL data directory holds this cluster's data: its `pg_controldata`
    /// system identifier is the one recorded in status. Otherwise why not.
    async fn postgres_is_ours(&self, layout: &Layout, ex: &dyn Executor) -> Result<(), String> {
        let Some(want) = self.system_identifier else {
            return Err("no system identifier was recorded for this cluster, so nothing proves the data is its own".into());
        };
        let got = super::identity::system_identifier(ex, layout)
            .await
            .map_err(|e| format!("pg_controldata failed ({e})"))?;
        let adopted = Cmd::script(r#"cat -- "$1" 2>/dev/null; exit 0"#).arg(ADOPTED_PATH);
        let adopted = ex
            .run_ok(&adopted, "read what the host adopted")
            .await
            .map_err(|e| format!("could not read {ADOPTED_PATH} ({e})"))?;
        let adopted = adopted.stdout_str().trim().to_string();
        match got {
            None => Err("it holds no PostgreSQL cluster (no global/pg_control)".into()),
            Some(got) if got == adopted => Err(format!(
                "its system identifier {got} is the one this cluster adopted ({ADOPTED_PATH}): pgmetal did not create that data"
            )),
            Some(got) if got == want => Ok(()),
            Some(got) => Err(format!(
                "its system identifier is {got}, not this cluster's {want}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::FakeExecutor;

    const DEBIAN: &str = "ID=debian\nVERSION_ID=12\n@@systemd\nyes\n@@packages\n";
    const SYSID: &str = "7301234567890123456";
    const ETCD_ID: &str = "cdf818194e3a8c32";

    fn owner(uid: &str) -> claim::Owner {
        claim::Owner {
            name: "db/pg".into(),
            uid: Some(uid.into()),
        }
    }

    /// A PostgreSQL + etcd host claimed by `claimed`, whose pg_controldata reports `sysid`.
    fn host(claimed: &claim::Owner, sysid: &str) -> FakeExecutor {
        let f = FakeExecutor::new("a");
        f.on_contains(claim::PATH, 0, &claimed.render());
        f.on_contains("/etc/os-release", 0, DEBIAN);
        let control = format!(
            "pg_control version number:            1300\nDatabase system identifier:           {sysid}\n"
        );
        f.on_contains("pg_controldata", 0, &control);
        f.on_contains("endpoint status", 0, &etcd_status(ETCD_ID));
        f
    }

    /// What `etcdctl endpoint status -w json` prints for a member of cluster `hex`.
    fn etcd_status(hex: &str) -> String {
        let id = u64::from_str_radix(hex, 16).unwrap();
        format!(
            r#"[{{"Endpoint":"http://a:2379","Status":{{"header":{{"cluster_id":{id},"member_id":1,"revision":9,"raft_term":2}},"version":"3.4.23"}}}}]"#
        )
    }

    fn spec() -> PostgresClusterSpec {
        serde_saphyr::from_str(
            "ssh: {privateKeySecret: {name: k, key: k}}\npostgres: {primary: a, replicas: [b, c]}\netcd: {hosts: [a, b, c]}\ndeletionPolicy: Wipe\n",
        )
        .unwrap()
    }

    /// Pulls `me`'s cluster off its hosts, its data recorded with [`SYSID`].
    fn teardown<'a>(
        spec: &'a PostgresClusterSpec,
        me: &'a claim::Owner,
        wipe: bool,
    ) -> Teardown<'a> {
        Teardown {
            spec,
            owner: me,
            system_identifier: Some(SYSID),
            etcd_cluster_id: Some(ETCD_ID),
            wipe,
        }
    }

    fn wiped(f: &FakeExecutor) -> Vec<String> {
        f.commands()
            .into_iter()
            .filter(|c| c.starts_with("rm -rf"))
            .collect()
    }

    #[tokio::test]
    async fn wipe_deletes_only_data_proven_to_be_this_clusters() {
        let (spec, me) = (spec(), owner("u-1"));
        let t = teardown(&spec, &me, true);

        let ours = host(&me, SYSID);
        let done = t.host("a", &ours).await.unwrap();
        let pg = spec.postgres.data_dir.clone();
        let etcd = spec.etcd.data_dir.clone();
        assert_eq!(
            done,
            Done::Stopped {
                wiped: vec![etcd.clone(), pg.clone()],
                kept: vec![]
            }
        );
        assert_eq!(wiped(&ours), [format!("rm -rf -- {etcd} {pg}")]);
        assert!(
            ours.commands()
                .iter()
                .any(|c| c.contains("systemctl disable --now"))
        );
        assert!(
            ours.commands()
                .last()
                .unwrap()
                .contains(&format!("rm -f -- {}", claim::PATH))
        );
        let cmds = ours.commands();
        let keys = &cmds[cmds.len() - 2];
        assert!(
            keys.starts_with("rm -f -- ") && keys.contains(crate::render::POSTGRES_PEM),
            "the server key goes before the claim: {keys}"
        );

        // Another PostgreSQL's data in the directory: kept, and said why.
        let foreign_data = host(&me, "9999");
        let Done::Stopped { wiped: w, kept } = t.host("a", &foreign_data).await.unwrap() else {
            panic!("stopped");
        };
        assert_eq!(w, std::slice::from_ref(&etcd));
        assert!(
            kept[0].contains("9999") && kept[0].contains(SYSID),
            "{kept:?}"
        );

        // A member of another etcd cluster (or none running): its data stays.
        let foreign_etcd = host(&me, SYSID);
        foreign_etcd.on_contains("endpoint status", 0, &etcd_status("abc123"));
        let Done::Stopped { wiped: w, kept } = t.host("a", &foreign_etcd).await.unwrap() else {
            panic!("stopped");
        };
        assert_eq!(w, std::slice::from_ref(&pg));
        assert!(
            kept[0].contains("abc123") && kept[0].contains(ETCD_ID),
            "{kept:?}"
        );
        let stopped = host(&me, SYSID);
        stopped.on_contains("endpoint status", 1, "");
        let Done::Stopped { kept, .. } = t.host("a", &stopped).await.unwrap() else {
            panic!("stopped");
        };
        assert!(kept[0].contains("did not say which cluster"), "{kept:?}");

        // Nothing recorded: nothing proves it, so it stays.
        let unknown = Teardown {
            system_identifier: None,
            ..t
        };
        let Done::Stopped { kept, .. } = unknown.host("a", &host(&me, SYSID)).await.unwrap() else {
            panic!("stopped");
        };
        assert!(
            kept[0].contains("no system identifier was recorded"),
            "{kept:?}"
        );
    }

    #[tokio::test]
    async fn a_host_this_cluster_does_not_claim_is_left_alone() {
        let (spec, me) = (spec(), owner("u-1"));
        let t = teardown(&spec, &me, true);
        let theirs = host(&owner("u-2"), SYSID);
        let done = t.host("a", &theirs).await.unwrap();
        assert!(
            matches!(&done, Done::LeftAlone(why) if why.contains("u-2")),
            "{done:?}"
        );
        assert_eq!(
            theirs.commands().len(),
            1,
            "only the claim was read: {:?}",
            theirs.commands()
        );

        let unclaimed = FakeExecutor::new("a");
        let done = t.host("a", &unclaimed).await.unwrap();
        assert!(matches!(done, Done::LeftAlone(_)));
        assert_eq!(unclaimed.commands().len(), 1);
    }

    #[tokio::test]
    async fn retain_stops_and_releases_but_deletes_nothing() {
        let (spec, me) = (spec(), owner("u-1"));
        let t = teardown(&spec, &me, false);
        let f = host(&me, SYSID);
        assert_eq!(
            t.host("a", &f).await.unwrap(),
            Done::Stopped {
                wiped: vec![],
                kept: vec![]
            }
        );
        assert!(wiped(&f).is_empty());
        assert!(!f.commands().iter().any(|c| c.contains("pg_controldata")));
        assert!(
            f.commands()
                .iter()
                .any(|c| c.contains(&format!("rm -f -- {}", claim::PATH)))
        );
    }

    #[tokio::test]
    async fn wipe_keeps_data_the_cluster_adopted() {
        let (spec, me) = (spec(), owner("u-1"));
        let t = teardown(&spec, &me, true);
        // Status recorded the adopted system's identifier, as Patroni reports it.
        let adopted = host(&me, SYSID);
        adopted.on_contains(ADOPTED_PATH, 0, &format!("{SYSID}\n"));
        let Done::Stopped { wiped, kept } = t.host("a", &adopted).await.unwrap() else {
            panic!("stopped")
        };
        assert_eq!(
            wiped,
            std::slice::from_ref(&spec.etcd.data_dir),
            "only etcd's data"
        );
        assert!(
            kept[0].contains("adopted") && kept[0].contains(SYSID),
            "{kept:?}"
        );
    }
}
