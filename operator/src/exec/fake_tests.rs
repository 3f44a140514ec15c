//! Unit tests for `FakeExecutor`.

use std::sync::Arc;

use super::*;

#[tokio::test]
async fn records_commands_and_defaults_to_success() {
    let fake = FakeExecutor::new("h1");
    let exec: Arc<dyn Executor> = Arc::new(fake.clone());
    let out = exec
        .run(&Cmd::new("systemctl").arg("restart").arg("patroni"))
        .await
        .unwrap();
    assert!(out.ok());
    assert!(out.stdout.is_empty());
    assert_eq!(out.host, "h1");
    exec.run(&Cmd::new("cat").arg("it's").stdin("secret"))
        .await
        .unwrap();
    assert_eq!(
        fake.commands(),
        vec!["systemctl restart patroni", r"cat 'it'\''s'"]
    );
    assert_eq!(fake.runs()[1].stdin.as_deref(), Some(&b"secret"[..]));
    assert_eq!(exec.host(), "h1");
}

#[tokio::test]
async fn scripted_replies_by_prefix_and_substring_newest_first() {
    let fake = FakeExecutor::new("h1");
    fake.on_prefix("systemctl is-active", 3, "inactive\n")
        .on_contains("patroni", 0, "active\n");
    let a = fake
        .run(&Cmd::new("systemctl").args(["is-active", "patroni"]))
        .await
        .unwrap();
    assert_eq!((a.status, a.stdout_str().as_ref()), (0, "active\n"));
    let b = fake
        .run(&Cmd::new("systemctl").args(["is-active", "etcd"]))
        .await
        .unwrap();
    assert_eq!((b.status, b.stdout_str().as_ref()), (3, "inactive\n"));
    let err = fake
        .run_ok(
            &Cmd::new("systemctl").args(["is-active", "etcd"]),
            "check etcd",
        )
        .await
        .unwrap_err();
    match err {
        ExecError::Failed {
            host,
            step,
            cmd_display,
            status,
            stderr_tail,
        } => {
            assert_eq!(host, "h1");
            assert_eq!(step, "check etcd");
            assert_eq!(cmd_display, "systemctl is-active etcd");
            assert_eq!(status, 3);
            assert_eq!(stderr_tail, "inactive"); // stdout when stderr is empty
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn limited_rules_expire_and_errors_are_returned() {
    let fake = FakeExecutor::new("h2");
    fake.on_prefix_times("apt-get", Reply::Error("connection lost".into()), 1);
    let cmd = Cmd::new("apt-get").arg("update");
    let e = fake.run(&cmd).await.unwrap_err();
    assert!(
        matches!(&e, ExecError::Io { host, .. } if host == "h2"),
        "{e}"
    );
    assert!(fake.run(&cmd).await.unwrap().ok());
    assert_eq!(fake.commands().len(), 2);
}

#[tokio::test]
async fn uploads_are_recorded_with_digest_and_can_fail() {
    let fake = FakeExecutor::new("h3");
    fake.upload(
        "/etc/patroni/patroni.yml",
        b"password: s3cret\n",
        0o600,
        "postgres",
        "postgres",
    )
    .await
    .unwrap();
    let u = &fake.uploads()[0];
    assert_eq!(u.path, "/etc/patroni/patroni.yml");
    assert_eq!(
        (u.mode, u.owner.as_str(), u.group.as_str()),
        (0o600, "postgres", "postgres")
    );
    assert_eq!(u.sha256, hex::encode(Sha256::digest(b"password: s3cret\n")));
    assert_eq!(u.content, b"password: s3cret\n");
    assert!(fake.commands().is_empty(), "uploads are not commands");

    fake.on_prefix("upload /etc/haproxy", 1, "");
    let e = fake
        .upload("/etc/haproxy/haproxy.cfg", b"x", 0o644, "root", "root")
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::Failed { status: 1, .. }));
    assert_eq!(fake.events().len(), 2);
    fake.clear();
    assert!(fake.events().is_empty());
}
