//! The facts probe's snapshot saves round trips only while nothing has changed on a host.

use super::*;

/// A file pgmetal keeps, and the facts probe's answer showing it in place.
fn in_place() -> (DesiredFile, String) {
    let f = DesiredFile {
        path: "/etc/pgmetal/x.conf".into(),
        content: b"x".to_vec(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    };
    let probe = format!(
        "{DEBIAN}@@postgres-cert\n@@files\n{} 644 root root {}\n@@units\npatroni\n@@dirs\n/data/pg\n",
        f.sha256(),
        f.path
    );
    (f, probe)
}

#[tokio::test]
async fn what_is_in_place_is_not_asked_again_until_something_changes_on_the_host() {
    let spec = spec();
    let (file, probe) = in_place();
    let host = FakeExecutor::new("a");
    host.on_contains("/etc/os-release", 0, &probe);
    let hosts = BTreeMap::from([("a".to_string(), host.clone())]);
    let (api, etcd) = (patroni(&spec, "a", &[]), FakeEtcd::new(true));
    let secrets = secrets();
    let e = engine(&spec, &secrets, connected(&hosts), (&api, &etcd));
    let targets = snapshot::Targets::default();
    let (_, seen) = facts::gather_with(&host, &targets).await.unwrap();
    e.keep_snapshot("a", seen);
    let asked = || host.commands().len();
    let before = asked();
    e.write("a", &host, std::slice::from_ref(&file))
        .await
        .unwrap();
    units::ensure(
        &e,
        "a",
        &host,
        "patroni",
        false,
        units::OnChange::Reload,
        false,
    )
    .await
    .unwrap();
    assert!(
        e.ensure_dir("a", &host, "/data/pg", "postgres")
            .await
            .is_ok()
    );
    assert_eq!(asked(), before, "nothing asked: all in place");
    units::ensure(
        &e,
        "a",
        &host,
        "patroni",
        true,
        units::OnChange::Reload,
        false,
    )
    .await
    .unwrap();
    assert_eq!(asked(), before + 1, "a changed input reloads the unit");
    // A step that changes the host drops the snapshot: the next ones ask the host.
    e.step("a", "something", async { Ok(((), true, vec![])) })
        .await
        .unwrap();
    e.write("a", &host, std::slice::from_ref(&file))
        .await
        .unwrap();
    assert!(
        host.commands()[before + 1..]
            .iter()
            .any(|c| c.contains("sha256sum")),
        "hashed on the host: {:?}",
        host.commands()
    );
}

#[tokio::test]
async fn the_takeover_runs_while_the_packages_left_anything_it_acts_on() {
    let spec = spec();
    let host = FakeExecutor::new("a");
    let hosts = BTreeMap::from([("a".to_string(), host.clone())]);
    let (api, etcd) = (patroni(&spec, "a", &[]), FakeEtcd::new(true));
    let secrets = secrets();
    let e = engine(&spec, &secrets, connected(&hosts), (&api, &etcd));
    let clean = format!("{DEBIAN}@@postgres-cert\n@@files\n@@units\n@@dirs\n@@enabled\n");
    e.keep_snapshot(
        "a",
        snapshot::Snapshot::parse(&clean[clean.find("@@files").unwrap()..]),
    );
    assert!(e.nothing_to_take_over("a"));
    let conf = format!(
        "@@files\nabc 644 postgres postgres /etc/postgresql/{}/main/postgresql.conf\n@@units\n@@dirs\n@@enabled\n",
        spec.postgres.version
    );
    e.keep_snapshot("a", snapshot::Snapshot::parse(&conf));
    assert!(!e.nothing_to_take_over("a"), "the package's main cluster");
    let enabled = "@@files\n@@units\n@@dirs\n@@enabled\npostgresql.service\n";
    e.keep_snapshot("a", snapshot::Snapshot::parse(enabled));
    assert!(
        !e.nothing_to_take_over("a"),
        "the package's unit still enabled"
    );
    e.drop_snapshot("a");
    assert!(!e.nothing_to_take_over("a"), "no snapshot: ask the host");
}

#[tokio::test]
async fn a_configuration_written_but_never_loaded_is_loaded_by_the_next_converge() {
    let spec = spec();
    let (file, probe) = in_place();
    let marker = units::pending_marker("patroni");
    let probe = probe.replace("@@units", &format!("abc 644 root root {marker}\n@@units"));
    let host = FakeExecutor::new("a");
    host.on_contains("/etc/os-release", 0, &probe);
    let hosts = BTreeMap::from([("a".to_string(), host.clone())]);
    let (api, etcd) = (patroni(&spec, "a", &[]), FakeEtcd::new(true));
    let secrets = secrets();
    let e = engine(&spec, &secrets, connected(&hosts), (&api, &etcd));
    let targets = snapshot::targets(&spec, &secrets, "a");
    let (facts, seen) = facts::gather_with(&host, &targets).await.unwrap();
    assert_eq!(facts.pending, ["patroni".to_string()].into());
    e.facts.lock().unwrap().insert("a".into(), facts);
    e.keep_snapshot("a", seen);
    let before = host.commands().len();
    e.write_for("a", &host, std::slice::from_ref(&file), Some("patroni"))
        .await
        .unwrap();
    assert_eq!(host.commands().len(), before, "the files are in place");
    units::ensure(
        &e,
        "a",
        &host,
        "patroni",
        false,
        units::OnChange::Reload,
        false,
    )
    .await
    .unwrap();
    let ran = host.commands()[before..].join("\n");
    assert!(
        ran.contains("reload --quiet /var/lib/pgmetal/pending patroni yes"),
        "the unit is reloaded all the same, and its marker removed: {ran}"
    );
}

#[tokio::test]
async fn the_marker_is_written_before_a_unit_configuration_changes() {
    let (file, _) = in_place();
    let host = FakeExecutor::new("a");
    let marker = units::pending_marker("haproxy");
    files::sync_for(&host, std::slice::from_ref(&file), Some(&marker))
        .await
        .unwrap();
    let cmds = host.commands();
    let marked = cmds.iter().position(|c| c.contains(&marker));
    assert!(marked.is_some(), "{cmds:?}");
    let uploaded = host.uploads();
    assert_eq!(uploaded.len(), 1);
    // Nothing to change: no marker.
    let same = FakeExecutor::new("a");
    let line = format!("{} 644 root root {}\n", file.sha256(), file.path);
    same.on_contains("sha256sum", 0, &line);
    files::sync_for(&same, std::slice::from_ref(&file), Some(&marker))
        .await
        .unwrap();
    assert!(!same.commands().iter().any(|c| c.contains(&marker)));
}
