//! TLS on the PostgreSQL channel as a client sees it: `verify-full` through HAProxy with the CA
//! the CLI wrote, plain text refused, the cluster's chain on every port, certificates that
//! renew (a name added, a short lifetime running out) by a reload, never a restart, under a
//! writer that loses no acknowledged write, and a renewal written but not loaded that the next
//! converge loads.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::common::writer::{Target, Writer, lost_by_server};
use super::{Lab, Run};

/// psql with a full connection string as the superuser; trimmed stdout, or stderr on failure.
fn psql_conninfo(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let o = Command::new("timeout")
        .args([
            "-s", "KILL", "30", "psql", "-X", "-qAt", "-c", sql, conninfo,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| e.to_string())?;
    match o.status.success() {
        true => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
    }
}

/// The serial of the certificate served on `addr:port`, verified against `ca` (panics when the
/// chain does not verify).
pub(super) fn served_serial(addr: &str, port: u16, ca: &Path) -> String {
    try_served_serial(addr, port, ca).unwrap_or_else(|e| panic!("{e}"))
}

/// [`served_serial`], or why not.
fn try_served_serial(addr: &str, port: u16, ca: &Path) -> Result<String, String> {
    // PostgreSQL starts TLS inside its protocol; Patroni's REST API and etcd are plain TLS.
    let starttls = if matches!(port, 5432 | 5000) {
        "-starttls postgres"
    } else {
        ""
    };
    let script = format!(
        "openssl s_client {starttls} -connect {addr}:{port} -CAfile {} -verify_return_error </dev/null 2>/dev/null \
         | tee /dev/stderr | openssl x509 -noout -serial",
        ca.display()
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    let shown = String::from_utf8_lossy(&o.stderr);
    if !(shown.contains("Verify return code: 0 (ok)") && shown.contains("pgmetal CA")) {
        return Err(format!(
            "{addr}:{port} does not present the cluster's chain: {shown}"
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The `postgres certificate` step's detail on each host that reissued, from an apply report.
fn reissued(run: &Run) -> Vec<String> {
    let hosts = run.report["hosts"].as_object().unwrap();
    hosts
        .iter()
        .flat_map(|(h, r)| r["steps"].as_array().unwrap().iter().map(move |s| (h, s)))
        .filter(|(_, s)| s["step"] == "postgres certificate" && s["changed"] == true)
        .map(|(h, s)| format!("{h}: {}", s["detail"]))
        .collect()
}

/// Runs the checks against the converged cluster in `dir` (manifest `base`); `apply` converges
/// a manifest. Leaves the cluster on `base` again.
pub fn check(lab: &Lab, dir: &Path, base: &str, password: &str, apply: impl Fn(&str) -> Run) {
    let ca = dir.join("secrets.ca.crt");
    assert!(ca.exists(), "the CLI writes the CA beside its secrets file");
    let lb = &lab.hosts[3];
    let verified = |host: &str| {
        format!(
            "hostaddr={lb} host={host} port=5000 user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            ca.display()
        )
    };
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql_conninfo(&verified(lb), password, ssl), Ok("t".into()));
    let plain = format!("host={lb} port=5000 user=postgres dbname=postgres sslmode=disable");
    let refused = psql_conninfo(&plain, password, "SELECT 1").unwrap_err();
    assert!(refused.contains("no encryption"), "{refused}");
    for h in &lab.hosts[..3] {
        served_serial(h, 5432, &ca);
    }
    let pg_start = |h: &str| {
        lab.ssh_ok(
            h,
            "cd / && runuser -u postgres -- psql -Atc 'select pg_postmaster_start_time()'",
        )
    };
    let started: Vec<String> = lab.hosts[..3].iter().map(|h| pg_start(h)).collect();
    let mut serial = served_serial(lb, 5000, &ca);
    // A client writing through HAProxy the whole time: no renewal may lose an acknowledged write.
    let target = Target {
        host: lb.clone(),
        port: 5000,
        password: password.to_string(),
    };
    Writer::create_table(&target);
    let writer = Writer::start(target.clone(), 1);

    // A service name and a one-minute lifetime: reissued for the name, then for the expiry.
    let short = format!(
        "{base}  tls:\n    serviceNames: [db.lab.example]\n    certificateLifetime: 60s\n    renewBefore: 50s\n"
    );
    let mut rounds = vec![("a service name", short.clone(), "names")];
    rounds.push(("the lifetime running out", short, "expires"));
    rounds.push(("the default lifetime", base.to_string(), "expires"));
    for (i, (what, manifest, why)) in rounds.into_iter().enumerate() {
        if i == 1 {
            std::thread::sleep(Duration::from_secs(11)); // inside renewBefore now
        }
        let t = Instant::now();
        let run = apply(&manifest);
        assert_eq!(run.status, 0, "{what}: {:#}", run.report);
        let issued = reissued(&run);
        assert!(
            issued.len() == 3 && issued.iter().all(|d| d.contains(why)),
            "{what}: reissued {issued:?}"
        );
        let now = served_serial(lb, 5000, &ca);
        assert_ne!(
            now, serial,
            "{what}: the primary serves the new certificate"
        );
        serial = now;
        if i == 0 {
            let named = psql_conninfo(&verified("db.lab.example"), password, ssl);
            assert_eq!(named, Ok("t".into()), "verify-full by the service name");
        }
        eprintln!(
            "TLS renewal for {what}: apply {:.1}s, {issued:?}",
            t.elapsed().as_secs_f64()
        );
    }
    // Patroni's REST API serves the renewed certificate too (Patroni reloads it at its next
    // loop after the converge's reload).
    let a = &lab.hosts[0];
    let t = Instant::now();
    let postgres = served_serial(a, 5432, &ca);
    // (While Patroni replaces its REST server, a connection may find no certificate.)
    while try_served_serial(a, 8008, &ca).as_ref() != Ok(&postgres) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the REST API on {a} still serves the old certificate: {:?}",
            try_served_serial(a, 8008, &ca)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "TLS renewal: the REST API served the new certificate {:.1}s after the apply",
        t.elapsed().as_secs_f64()
    );
    let failed = writer.failures();
    let acks = writer.stop();
    let stored = target.stored_ids().expect("read the writer's ids back");
    let lost = lost_by_server(&acks, &stored);
    assert!(
        lost.is_empty(),
        "acknowledged writes lost during the renewals: {lost:?}"
    );
    assert!(
        acks.len() >= 50,
        "the writer kept writing through the renewals: {} acknowledged, {failed} failed",
        acks.len()
    );
    eprintln!(
        "TIMING three TLS renewals under a writer: {} writes acknowledged, {failed} failed, 0 lost",
        acks.len()
    );
    let gone = psql_conninfo(&verified("db.lab.example"), password, ssl).unwrap_err();
    assert!(
        gone.contains("does not match"),
        "the service name left with the spec: {gone}"
    );
    // A renewal written but never loaded (a converge killed between the two) is loaded by the
    // next converge, on that host only, and only once.
    lab.ssh_ok(
        a,
        &format!("sleep 1; touch {}", "/etc/pgmetal/tls/postgres.pem"),
    );
    let reloads = |run: &Run| -> Vec<String> {
        let hosts = run.report["hosts"].as_object().unwrap();
        hosts
            .iter()
            .filter(|(_, r)| {
                r["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["step"] == "reload postgres" && s["changed"] == true)
            })
            .map(|(h, _)| h.clone())
            .collect()
    };
    let run = apply(base);
    assert_eq!(
        reloads(&run),
        std::slice::from_ref(a),
        "{:#}",
        run.report["hosts"]
    );
    assert!(reloads(&apply(base)).is_empty(), "loaded once");

    // The same for a unit: HAProxy's pending marker (left by a converge killed between writing
    // its configuration and reloading it) makes the next converge reload it, once.
    lab.ssh_ok(
        lb,
        "mkdir -p /var/lib/pgmetal/pending && : > /var/lib/pgmetal/pending/haproxy",
    );
    let reloaded = |run: &Run| -> bool {
        run.report["hosts"][lb.as_str()]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "unit haproxy" && s["changed"] == true)
    };
    let run = apply(base);
    assert!(reloaded(&run), "{:#}", run.report["hosts"][lb.as_str()]);
    assert!(
        lab.ssh(lb, "test ! -e /var/lib/pgmetal/pending/haproxy")
            .status
            .success(),
        "the marker is gone once HAProxy reloaded"
    );
    assert!(!reloaded(&apply(base)), "reloaded once");

    // The node exporter serves the expiry of the certificate in place (for the expiry alert).
    let metrics = lab.ssh_ok(
        &lab.hosts[0],
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode())\" | grep '^pgmetal_certificate'",
    );
    assert!(
        metrics.contains(r#"pgmetal_certificate_expiry_timestamp_seconds{certificate="postgres""#)
            && metrics.contains("pgmetal_certificate_renew_before_seconds 604800"),
        "{metrics}"
    );
    let now: Vec<String> = lab.hosts[..3].iter().map(|h| pg_start(h)).collect();
    assert_eq!(
        now, started,
        "a renewal reloads PostgreSQL, never restarts it"
    );
}
