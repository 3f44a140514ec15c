//! Integration tests of `pgmetal::exec` against the real lab hosts (see `e2e/lab-README.md`).
//! Ignored by a plain `cargo test`; need `PGMETAL_LAB=1` and `/run/pgmetal-lab/lab.env` (after
//! `e2e/lab up`); e2e/test runs them with `--include-ignored`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmetal::exec::{Cmd, ExecError, Executor, KnownHosts, SshConfig, SshExecutor, upload_cmd};

const ENV_FILE: &str = "/run/pgmetal-lab/lab.env";
/// Not a lab host key: `ssh-keygen -t ed25519` made for this test.
const WRONG_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINoWbwysPakwNWmU1dVfi3z20GJQ9aCqngBASPdrtG8c";
const WRONG_FP: &str = "SHA256:f7RiKdzv9DsFFYv57Z69x6qziEE/1EEyl673HKshhcc";

struct Lab {
    hosts: Vec<String>,
    key: String,
    known_hosts: String,
}

/// The lab, for tests that are `#[ignore]`d unless the lab is up: panics with the reason when
/// `PGMETAL_LAB=1` is unset or the lab is not up.
fn lab() -> Lab {
    if std::env::var("PGMETAL_LAB").as_deref() != Ok("1") {
        panic!(
            "this test needs the lab: run it through e2e/test, or set PGMETAL_LAB=1 after `e2e/lab up`"
        );
    }
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
        panic!("PGMETAL_LAB=1 but {ENV_FILE} cannot be read ({e}): run e2e/lab up")
    });
    let env: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
        .collect();
    let hosts = env.get("LAB_HOSTS").unwrap_or_else(|| {
        panic!(
            "PGMETAL_LAB=1 but {ENV_FILE} has no LAB_HOSTS (lab hosts are not up): run e2e/lab up"
        )
    });
    let hosts: Vec<String> = hosts.split_whitespace().map(str::to_string).collect();
    for h in &hosts {
        assert!(
            h.starts_with("10.213.0.") || h.starts_with("127."),
            "refusing non-lab host {h}"
        );
    }
    Lab {
        hosts,
        key: std::fs::read_to_string(env["LAB_SSH_KEY"]).expect("lab key"),
        known_hosts: std::fs::read_to_string(env["LAB_KNOWN_HOSTS"]).expect("lab known_hosts"),
    }
}

impl Lab {
    fn config(&self, user: &str, sudo: bool) -> SshConfig {
        let mut cfg =
            SshConfig::new(user, &self.key, KnownHosts::parse(&self.known_hosts)).unwrap();
        cfg.sudo = sudo;
        cfg.connect_timeout = Duration::from_secs(10);
        cfg
    }

    async fn root(&self, i: usize) -> SshExecutor {
        SshExecutor::connect(&self.hosts[i], &self.config("root", false))
            .await
            .unwrap()
    }

    /// The host's real ed25519 fingerprint, from the lab's known_hosts.
    fn ed25519_fp(&self, host: &str) -> String {
        let line = self
            .known_hosts
            .lines()
            .find(|l| l.starts_with(&format!("{host} ssh-ed25519 ")))
            .unwrap();
        let key = russh::keys::parse_public_key_base64(line.split(' ').nth(2).unwrap()).unwrap();
        pgmetal::exec::fingerprint(&key)
    }
}

async fn sh(e: &dyn Executor, script: &'static str) -> String {
    e.run_ok(&Cmd::script(script), script)
        .await
        .unwrap()
        .stdout_str()
        .into_owned()
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn run_returns_stdout_stderr_and_exit_codes() {
    let lab = lab();
    let e = lab.root(0).await;
    let out = e.run(&Cmd::new("echo").arg("hello world")).await.unwrap();
    assert_eq!(
        (out.status, out.stdout_str().as_ref()),
        (0, "hello world\n")
    );
    let out = e
        .run(&Cmd::script("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(
        (out.stdout_str().as_ref(), out.stderr_str().as_ref()),
        ("out\n", "err\n")
    );
    let err = e.run_ok(&Cmd::new("false"), "run false").await.unwrap_err();
    assert!(
        matches!(&err, ExecError::Failed { status: 1, host, .. } if host == &lab.hosts[0]),
        "{err}"
    );
    let out = e.run(&Cmd::new("cat").stdin("from stdin")).await.unwrap();
    assert_eq!(out.stdout_str(), "from stdin");
    let out = e.run(&Cmd::script("kill -KILL $$")).await.unwrap();
    assert_eq!(
        (out.status, out.signal.as_deref(), out.ok()),
        (-1, Some("KILL"), false)
    );
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn output_beyond_the_cap_is_an_error_and_the_connection_stays_usable() {
    let lab = lab();
    let e = lab.root(1).await;
    // The default cap (1 MiB), and a cap a step raised (16 MiB, as package installs do).
    let flood =
        |bytes: usize| Cmd::script("yes 0123456789abcde | head -c \"$1\"").arg(bytes.to_string());
    let err = e.run_ok(&flood(2 << 20), "flood").await.unwrap_err();
    assert!(err.to_string().contains("output exceeds 1024 KiB"), "{err}");
    let err = e
        .run_ok(&flood(20 << 20).max_output(16 << 20), "flood")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("output exceeds 16384 KiB"),
        "{err}"
    );
    let out = e
        .run_ok(&Cmd::new("echo").arg("still here"), "echo")
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "still here");
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn large_stdout_and_stdin_are_transferred_fully() {
    let lab = lab();
    let e = lab.root(1).await;
    let t = Instant::now();
    let out = e
        .run_ok(
            &Cmd::script("yes 0123456789abcde | head -c 5242880").max_output(8 << 20),
            "big",
        )
        .await
        .unwrap();
    println!("5 MiB stdout in {:?}", t.elapsed());
    assert_eq!(out.stdout.len(), 5 << 20);
    assert!(
        out.stdout
            .chunks(16)
            .all(|c| c == &b"0123456789abcde\n"[..c.len()])
    );
    let big: Vec<u8> = (0..(8 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let t = Instant::now();
    let out = e
        .run_ok(&Cmd::new("wc").arg("-c").stdin(big.clone()), "wc")
        .await
        .unwrap();
    println!("8 MiB stdin in {:?}", t.elapsed());
    assert_eq!(out.stdout_str().trim(), (8 << 20).to_string());
    // Stdin and stdout both large at once must not deadlock.
    let out = e
        .run_ok(
            &Cmd::new("cat").stdin(big.clone()).max_output(16 << 20),
            "cat",
        )
        .await
        .unwrap();
    assert!(out.stdout == big);
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn upload_is_atomic_with_mode_owner_and_content_via_stdin() {
    let lab = lab();
    let e = lab.root(0).await;
    let dir = "/tmp/pgmetal-exec-upload";
    e.run_ok(&Cmd::new("rm").args(["-rf", dir]), "clean")
        .await
        .unwrap();
    e.run_ok(&Cmd::new("mkdir").arg(dir), "mkdir")
        .await
        .unwrap();
    let path = format!("{dir}/secret conf's.yml");
    let content = b"password: hunter2-$(id)-'quoted'\n";
    let line = upload_cmd(&path, content, 0o640, "pgadmin", "root").to_shell(false);
    assert!(
        !line.contains("hunter2"),
        "content on the command line: {line}"
    );
    e.upload(&path, b"old\n", 0o600, "root", "root")
        .await
        .unwrap();
    let inode1 = e
        .run_ok(&Cmd::new("stat").args(["-c", "%i", &path]), "stat")
        .await
        .unwrap();
    e.upload(&path, content, 0o640, "pgadmin", "root")
        .await
        .unwrap();
    let st = e
        .run_ok(&Cmd::new("stat").args(["-c", "%a %U %G %i", &path]), "stat")
        .await
        .unwrap();
    let st = st.stdout_str();
    assert!(st.starts_with("640 pgadmin root "), "{st}");
    assert_ne!(
        st.split(' ').nth(3),
        Some(inode1.stdout_str().trim()),
        "replaced by rename"
    );
    let cat = e.run_ok(&Cmd::new("cat").arg(&path), "cat").await.unwrap();
    assert_eq!(cat.stdout, content);
    let ls = e
        .run_ok(&Cmd::new("ls").args(["-A", dir]), "ls")
        .await
        .unwrap();
    assert_eq!(ls.stdout_str(), "secret conf's.yml\n", "no temp file left");
    // While a big upload streams, `ps` on the host never shows the secret.
    let mut big = b"password: hunter2-psmarker\n".to_vec();
    big.resize(8 << 20, b'#');
    let watcher = lab.root(0).await;
    let ps = Cmd::script(
        r#"n=0; s=0; while [ $n -lt 100 ]; do ps -eww -o args >/tmp/pgmetal-ps.$$
           grep -qF "$1$2" /tmp/pgmetal-ps.$$ && echo LEAK; grep -q pgmetal-tmp /tmp/pgmetal-ps.$$ && s=$((s+1))
           n=$((n+1)); sleep 0.01; done; rm -f /tmp/pgmetal-ps.$$; echo "seen=$s""#,
    )
    .args(["hunter2", "-psmarker"]);
    let (up, seen) = tokio::join!(
        e.upload(&path, &big, 0o600, "root", "root"),
        watcher.run_ok(&ps, "ps")
    );
    up.unwrap();
    let seen = seen.unwrap().stdout_str().into_owned();
    println!("ps samples showing the running upload: {}", seen.trim());
    assert!(!seen.contains("LEAK"), "secret visible in ps");
    // A failing upload (missing directory) names the host and leaves nothing behind.
    let err = e
        .upload("/nonexistent-dir/x", b"x", 0o644, "root", "root")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Failed { host, .. } if host == &lab.hosts[0]),
        "{err}"
    );
    e.run_ok(&Cmd::new("rm").args(["-rf", dir]), "clean")
        .await
        .unwrap();
}

const HOSTILE: &[&str] = &[
    "'; touch /tmp/pgmetal-pwned #",
    "$(touch /tmp/pgmetal-pwned)",
    "`touch /tmp/pgmetal-pwned`",
    "x\ntouch /tmp/pgmetal-pwned",
    "\"; touch /tmp/pgmetal-pwned; \"",
    "&& touch /tmp/pgmetal-pwned",
    "",
    "*",
];

async fn hostile_args_on(e: &SshExecutor) {
    let cmd = Cmd::new("printf")
        .arg("%s\\0")
        .args(HOSTILE.iter().copied());
    let out = e.run_ok(&cmd, "printf").await.unwrap();
    let text = out.stdout_str();
    let got: Vec<&str> = text.split('\0').collect();
    assert_eq!(&got[..got.len() - 1], HOSTILE);
    let script =
        Cmd::script(r#"for a in "$@"; do printf '%s\0' "$a"; done"#).args(HOSTILE.iter().copied());
    assert_eq!(
        e.run_ok(&script, "script").await.unwrap().stdout,
        out.stdout
    );
    let marker = e
        .run(&Cmd::new("test").args(["-e", "/tmp/pgmetal-pwned"]))
        .await
        .unwrap();
    assert_eq!(marker.status, 1, "marker file exists on {}", e.host());
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn hostile_args_create_no_marker_file() {
    let lab = lab();
    hostile_args_on(&lab.root(0).await).await;
    let e = SshExecutor::connect(&lab.hosts[0], &lab.config("pgadmin", true))
        .await
        .unwrap();
    hostile_args_on(&e).await;
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn sudo_as_pgadmin_works() {
    let lab = lab();
    let plain = SshExecutor::connect(&lab.hosts[1], &lab.config("pgadmin", false))
        .await
        .unwrap();
    assert_eq!(sh(&plain, "id -un").await, "pgadmin\n");
    let e = SshExecutor::connect(&lab.hosts[1], &lab.config("pgadmin", true))
        .await
        .unwrap();
    assert_eq!(sh(&e, "id -un").await, "root\n");
    let path = "/etc/pgmetal-exec-sudo-test.conf";
    e.upload(path, b"secret=1\n", 0o600, "root", "root")
        .await
        .unwrap();
    let st = e
        .run_ok(&Cmd::new("stat").args(["-c", "%a %U %G", path]), "stat")
        .await
        .unwrap();
    assert_eq!(st.stdout_str(), "600 root root\n");
    let denied = plain.run(&Cmd::new("cat").arg(path)).await.unwrap();
    assert_ne!(denied.status, 0, "pgadmin without sudo cannot read it");
    e.run_ok(&Cmd::new("rm").arg(path), "rm").await.unwrap();
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn wrong_or_unknown_host_key_is_refused_and_nothing_runs() {
    let lab = lab();
    let host = &lab.hosts[0];
    let real = lab.ed25519_fp(host);
    let root = lab.root(0).await;
    assert_eq!(root.host_key_fingerprint(), real);
    root.run_ok(&Cmd::new("rm").args(["-f", "/tmp/pgmetal-keytest"]), "rm")
        .await
        .unwrap();

    let mut cfg = lab.config("root", false);
    cfg.known_hosts = KnownHosts::parse(&format!("{host} {WRONG_KEY}\n"));
    let err = SshExecutor::connect(host, &cfg).await.unwrap_err();
    println!("mismatch error: {err}");
    match &err {
        ExecError::HostKeyMismatch {
            host: h,
            expected,
            got,
        } => {
            assert_eq!(
                (h, expected.as_slice(), got),
                (host, &[WRONG_FP.to_string()][..], &real)
            );
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(WRONG_FP) && msg.contains(&real) && msg.contains(host.as_str()),
        "{msg}"
    );

    cfg.known_hosts = KnownHosts::parse(&format!("10.213.0.250 {WRONG_KEY}\n"));
    let err = SshExecutor::connect(host, &cfg).await.unwrap_err();
    assert!(
        matches!(&err, ExecError::UnknownHostKey { got, .. } if *got == real),
        "{err}"
    );

    cfg.known_hosts = KnownHosts::Pinned(WRONG_FP.into());
    assert!(matches!(
        SshExecutor::connect(host, &cfg).await,
        Err(ExecError::HostKeyMismatch { .. })
    ));
    // Nothing ran: the marker command could never be sent; the file does not exist.
    let marker = root
        .run(&Cmd::new("test").args(["-e", "/tmp/pgmetal-keytest"]))
        .await
        .unwrap();
    assert_eq!(marker.status, 1);

    // Trust on first use reports the real key; a pinned real key works.
    cfg.known_hosts = KnownHosts::TrustFirstUse;
    let tofu = SshExecutor::connect(host, &cfg).await.unwrap();
    assert_eq!(tofu.host_key_fingerprint(), real);
    cfg.known_hosts = KnownHosts::Pinned(real.clone());
    let pinned = SshExecutor::connect(host, &cfg).await.unwrap();
    assert_eq!(sh(&pinned, "echo ok").await, "ok\n");

    // Only the RSA key known: we must ask for an RSA host key, and accept it.
    let rsa = lab
        .known_hosts
        .lines()
        .find(|l| l.starts_with(&format!("{host} ssh-rsa ")))
        .unwrap();
    cfg.known_hosts = KnownHosts::parse(rsa);
    let e = SshExecutor::connect(host, &cfg).await.unwrap();
    assert!(e.host_key_fingerprint() != real && e.host_key_fingerprint().starts_with("SHA256:"));
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn timeouts_fire_and_the_connection_survives() {
    let lab = lab();
    let e = lab.root(1).await;
    let t = Instant::now();
    let err = e
        .run(&Cmd::new("sleep").arg("30").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    let took = t.elapsed();
    println!("timeout fired after {took:?}: {err}");
    assert!(matches!(&err, ExecError::Timeout { secs: 1, .. }), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(sh(&e, "echo still here").await, "still here\n");
    // Our timeout is 1 s; the host's `timeout` wrapper TERMs the command at 2 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let left = e
        .run(&Cmd::new("pgrep").args(["-x", "-f", "sleep 30"]))
        .await
        .unwrap();
    println!(
        "remote `sleep 30` still running after the timeout: {}",
        left.ok()
    );
    assert!(!left.ok(), "the timed-out command was not stopped");
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn one_connection_is_reused_for_many_commands() {
    let lab = lab();
    let t = Instant::now();
    let e = Arc::new(lab.root(0).await);
    println!("connect + auth: {:?}", t.elapsed());
    let conn = sh(&*e, "echo $SSH_CONNECTION").await;
    let t = Instant::now();
    for i in 0..50 {
        let out = e
            .run_ok(&Cmd::new("echo").arg(i.to_string()), "echo")
            .await
            .unwrap();
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
    let per = t.elapsed() / 50;
    println!(
        "50 sequential commands on one connection: {:?} total, {per:?} per command",
        t.elapsed()
    );
    assert_eq!(
        sh(&*e, "echo $SSH_CONNECTION").await,
        conn,
        "same TCP connection (client port)"
    );
    let t = Instant::now();
    let dyn_e: Arc<dyn Executor> = e.clone();
    let runs = (0..20).map(|i| {
        let e = dyn_e.clone();
        tokio::spawn(async move { e.run_ok(&Cmd::new("echo").arg(i.to_string()), "echo").await })
    });
    for (i, r) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap().unwrap().stdout_str().trim(), i.to_string());
    }
    println!("20 concurrent commands: {:?}", t.elapsed());
}

#[tokio::test]
#[ignore = "needs the lab; e2e/test runs it"]
async fn reconnects_once_after_the_connection_drops() {
    let lab = lab();
    let e = lab.root(1).await;
    let killer = lab.root(1).await;
    let conn = sh(&e, "echo $SSH_CONNECTION").await;
    let client_port = conn.split_whitespace().nth(1).unwrap().to_string();
    // Kill the sshd processes serving `e`'s connection (found by its client port).
    let kill = Cmd::script(
        r#"pids=$(ss -Htnp state established "( dport = :$1 )" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
           [ -n "$pids" ] && kill $pids"#,
    )
    .arg(client_port);
    killer.run_ok(&kill, "kill sshd session").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = sh(&e, "echo $SSH_CONNECTION").await;
    assert_ne!(again, conn, "a new connection was made");
    assert_eq!(e.host_key_fingerprint(), lab.ed25519_fp(&lab.hosts[1]));
}
