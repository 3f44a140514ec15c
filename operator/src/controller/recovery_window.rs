//! Before a new cluster restores another's backup to a time: where the source is a
//! PostgresCluster of the same namespace whose status knows its recovery window, a target
//! outside that window is refused before anything runs, with the window named. (Elsewhere,
//! the CLI or a bucket no resource describes, the restore's own failure says so afterwards.)

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{PostgresCluster, RecoverySpec, RecoveryWindow};

/// The source cluster of `recovery` among `clusters`: the one whose repository (host, or
/// bucket and path) and stanza it names.
pub fn source<'c>(
    recovery: &RecoverySpec,
    clusters: &'c [PostgresCluster],
) -> Option<&'c PostgresCluster> {
    clusters.iter().find(|c| {
        let Some(b) = c.spec.backup.as_ref() else {
            return false;
        };
        let same_repo = match (&recovery.host, &recovery.s3, &b.repository.s3) {
            (Some(h), _, _) => b.repository.host.as_deref() == Some(h.as_str()),
            (None, Some(theirs), Some(ours)) => {
                theirs.endpoint == ours.endpoint
                    && theirs.bucket == ours.bucket
                    && recovery.path == b.repository.path
            }
            _ => false,
        };
        same_repo && crate::render::backup::stanza(&c.spec) == recovery.stanza
    })
}

/// Whether `target` (PostgreSQL's `recovery_target_time` as the spec gives it) lies inside
/// `window`; if not, why, naming the window and `source`. A time or window that does not parse
/// is left to the restore to judge.
pub fn judge(target: &str, window: &RecoveryWindow, source: &str) -> Result<(), String> {
    let parsed = (
        parse_target(target),
        OffsetDateTime::parse(&window.earliest, &Rfc3339).ok(),
        OffsetDateTime::parse(&window.latest, &Rfc3339).ok(),
    );
    let (Some(t), Some(earliest), Some(latest)) = parsed else {
        return Ok(());
    };
    let (w0, w1) = (&window.earliest, &window.latest);
    if t < earliest {
        return Err(format!(
            "bootstrap.recovery.targetTime {target} is before the recovery window of {source} ({w0} to {w1}): no backup ends before it; choose a time inside the window"
        ));
    }
    if t > latest {
        return Err(format!(
            "bootstrap.recovery.targetTime {target} is after the recovery window of {source} ({w0} to {w1}): its WAL is not archived yet; the restore starts once it is (or choose a time inside the window)"
        ));
    }
    Ok(())
}

/// `2026-11-30 15:04:19+00`, `2026-11-30T15:04:19.5Z`, `2026-11-30 15:04 UTC`: the forms the
/// CRD admits, as a time.
pub fn parse_target(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let (date, rest) = s.split_at_checked(10)?;
    let rest = rest.strip_prefix([' ', 'T'])?;
    let zone_at = rest.find(['+', '-', 'Z', 'U', ' '])?;
    let (clock, zone) = rest.split_at(zone_at);
    let zone = match zone.trim() {
        "Z" | "UTC" => "+00:00".to_string(),
        z if z.len() == 3 => format!("{z}:00"),
        z if z.len() == 5 => format!("{}:{}", &z[..3], &z[3..]),
        z => z.to_string(),
    };
    let clock = match clock.len() {
        5 => format!("{clock}:00"),
        _ => clock.to_string(),
    };
    OffsetDateTime::parse(&format!("{date}T{clock}{zone}"), &Rfc3339).ok()
}

/// The check for `pgc`, reading the namespace's clusters: only for a cluster that has not
/// bootstrapped yet (its status has no system identifier) and restores to a time.
pub async fn check(client: &kube::Client, pgc: &PostgresCluster) -> Result<(), String> {
    let bootstrapped = pgc
        .status
        .as_ref()
        .is_some_and(|s| s.system_identifier.is_some());
    let recovery = pgc
        .spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.recovery.as_ref());
    let (Some(recovery), false) = (recovery, bootstrapped) else {
        return Ok(());
    };
    let Some(target) = recovery.target_time.as_deref() else {
        return Ok(());
    };
    let ns = kube::ResourceExt::namespace(pgc).unwrap_or_default();
    let api: kube::Api<PostgresCluster> = kube::Api::namespaced(client.clone(), &ns);
    let Ok(list) = api.list(&Default::default()).await else {
        return Ok(());
    };
    let Some(src) = source(recovery, &list.items) else {
        return Ok(());
    };
    let window = src
        .status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.recovery_window.as_ref());
    match window {
        Some(w) => judge(target, w, &kube::ResourceExt::name_any(src)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> RecoveryWindow {
        RecoveryWindow {
            earliest: "2026-12-07T10:00:00Z".into(),
            latest: "2026-12-07T12:00:00Z".into(),
        }
    }

    #[test]
    fn target_times_in_every_admitted_form_parse() {
        let want = OffsetDateTime::parse("2026-11-30T15:04:00Z", &Rfc3339).unwrap();
        for s in [
            "2026-11-30 15:04:00+00",
            "2026-11-30T15:04:00Z",
            "2026-11-30 15:04 UTC",
            "2026-11-30 16:04:00+01:00",
            "2026-11-30 16:04:00+0100",
            "2026-11-30 10:04:00-05",
        ] {
            assert_eq!(parse_target(s), Some(want), "{s}");
        }
        let frac = parse_target("2026-11-30 15:04:00.123456+00").unwrap();
        assert_eq!(frac.microsecond(), 123_456);
        assert_eq!(parse_target("yesterday"), None);
    }

    #[test]
    fn a_target_outside_the_window_is_refused_naming_it() {
        assert!(judge("2026-12-07 11:00:00+00", &window(), "db/src").is_ok());
        assert!(judge("2026-12-07 12:00:00+00", &window(), "db/src").is_ok());
        let e = judge("2026-12-07 09:59:59+00", &window(), "src").unwrap_err();
        assert!(e.contains("before the recovery window of src"), "{e}");
        assert!(
            e.contains("2026-12-07T10:00:00Z to 2026-12-07T12:00:00Z"),
            "{e}"
        );
        assert!(
            judge("2026-12-07 13:00:00+01", &window(), "src").is_ok(),
            "12:00 UTC"
        );
        let e = judge("2026-12-07 12:00:01+00", &window(), "src").unwrap_err();
        assert!(e.contains("after the recovery window"), "{e}");
        assert!(judge("not a time", &window(), "src").is_ok());
    }

    #[test]
    fn the_source_is_the_cluster_whose_repository_and_stanza_are_named() {
        let cluster = |name: &str, repo: &str| -> PostgresCluster {
            let yaml = format!(
                "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: {name}, namespace: db}}\nspec:\n  ssh: {{privateKeySecret: {{name: k, key: k}}}}\n  postgres: {{primary: a}}\n  etcd: {{hosts: [a]}}\n  patroni: {{scope: {name}}}\n  backup: {{repository: {{host: {repo}}}}}\n"
            );
            serde_saphyr::from_str(&yaml).unwrap()
        };
        let clusters = [cluster("one", "r1"), cluster("two", "r2")];
        let recovery: RecoverySpec =
            serde_saphyr::from_str("{host: r2, stanza: two, targetTime: '2026-12-07 11:00+00'}")
                .unwrap();
        let found = source(&recovery, &clusters).expect("found");
        assert_eq!(kube::ResourceExt::name_any(found), "two");
        let other_stanza: RecoverySpec = serde_saphyr::from_str("{host: r2, stanza: one}").unwrap();
        assert!(source(&other_stanza, &clusters).is_none());
    }
}
