//! Patroni's REST API under `spec.tls` as a client sees it: HTTPS with the cluster's chain on
//! every member, plain HTTP unanswered, an unsafe request (a switchover) refused without a
//! client certificate, accepted (a reload) with one the cluster's CA signed, and refused with one another
//! CA signed.

use std::path::Path;
use std::process::Command;

use super::Lab;
use super::common::writer::{Target, Writer, lost_by_server};
use super::etcd_tls;

/// `curl` with `args`: the HTTP status (`000` when no HTTP answer came) and the body.
pub(super) fn curl(args: &[&str]) -> (String, String) {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().to_string(), body.to_string())
}

/// A client key and certificate in `dir` named `name`, signed by `ca`/`ca_key`, or
/// self-signed when `ca` is `None`.
pub(super) fn client_cert(dir: &Path, name: &str, ca: Option<(&Path, &Path)>) -> (String, String) {
    let (key, crt) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    let sign = match ca {
        Some((crt, key)) => format!("-CA {} -CAkey {}", crt.display(), key.display()),
        None => format!("-signkey {}", key.display()),
    };
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    let script = format!(
        "set -e; openssl ecparam -name prime256v1 -genkey -noout -out {k}; \
         openssl req -new -key {k} -subj /CN={name} \
         | openssl x509 -req -days 1 {sign} -extfile {e} -out {c}",
        k = key.display(),
        c = crt.display(),
        e = ext.display(),
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (crt.display().to_string(), key.display().to_string())
}

/// The checks, against the converged cluster whose CLI files are in `dir`.
pub fn check(lab: &Lab, dir: &Path, restapi_password: &str) {
    let ca = dir.join("secrets.ca.crt");
    let ca_key = dir.join("secrets.ca.key");
    let ca_arg = ca.display().to_string();
    for h in &lab.hosts[..3] {
        let script = format!(
            "openssl s_client -connect {h}:8008 -CAfile {ca_arg} -verify_return_error </dev/null 2>&1"
        );
        let o = Command::new("sh").args(["-c", &script]).output().unwrap();
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(
            shown.contains("Verify return code: 0 (ok)") && shown.contains("pgmetal CA"),
            "{h}:8008 does not present the cluster's chain: {shown}"
        );
    }
    let h = &lab.hosts[0];
    let url = |path: &str| format!("https://{h}:8008{path}");
    let (code, body) = curl(&["--cacert", &ca_arg, &url("/patroni")]);
    assert!(
        code == "200" && body.contains("\"role\""),
        "GET over HTTPS: {code} {body}"
    );
    let (code, _) = curl(&[&format!("http://{h}:8008/patroni")]);
    assert_eq!(code, "000", "plain HTTP gets no answer");

    let auth = format!("patroni:{restapi_password}");
    let switchover = r#"{"leader": "nobody", "candidate": "nobody-else"}"#;
    let unsafe_call = |method: &str, path: &str, body: &str, cert: Option<&(String, String)>| {
        let mut args = vec!["--cacert", &ca_arg, "-u", &auth, "-X", method, "-d", body];
        if let Some((crt, key)) = cert {
            args.extend(["--cert", crt.as_str(), "--key", key.as_str()]);
        }
        let u = url(path);
        args.push(&u);
        curl(&args)
    };
    let (code, body) = unsafe_call("POST", "/switchover", switchover, None);
    assert!(
        code == "403" && body.contains("client certificate required"),
        "a switchover without a client certificate: {code} {body}"
    );
    let ours = client_cert(dir, "client", Some((&ca, &ca_key)));
    let (code, body) = unsafe_call("POST", "/reload", "", Some(&ours));
    assert_eq!(
        code, "202",
        "an unsafe call with the cluster's client certificate: {body}"
    );
    let theirs = client_cert(dir, "stranger", None);
    let (code, body) = unsafe_call("POST", "/switchover", switchover, Some(&theirs));
    assert_eq!(
        code, "000",
        "a client certificate from another CA fails the handshake: {body}"
    );
}

/// Turns TLS off and on again (`base` has it on): each way, HAProxy checks the members in both
/// schemes while they move, then the REST API and new connections through HAProxy are in the
/// new mode. Leaves the cluster on `base`.
pub fn off_and_on(lab: &Lab, base: &str, password: &str, apply: impl Fn(&str) -> super::Run) {
    let (lb, m) = (&lab.hosts[3], &lab.hosts[0]);
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let off = format!("{base}  tls:\n    mode: Disabled\n");
    for (i, (what, manifest, scheme, encrypted)) in [
        ("off", off.as_str(), "http", "f"),
        ("on", base, "https", "t"),
    ]
    .into_iter()
    .enumerate()
    {
        // A client writing through HAProxy while etcd and Patroni's etcd client move.
        let target = Target {
            host: lb.clone(),
            port: 5000,
            password: password.to_string(),
        };
        let writer = Writer::start(target.clone(), 1_000_000 * (i as u64 + 1));
        let run = apply(manifest);
        let failed = writer.failures();
        let acks = writer.stop();
        assert_eq!(run.status, 0, "TLS {what}: {:#}", run.report);
        let stored = target.stored_ids().expect("read the writer's ids back");
        let lost = lost_by_server(&acks, &stored);
        assert!(
            lost.is_empty(),
            "TLS {what}: acknowledged writes lost: {lost:?}"
        );
        let gap = acks
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64())
            .fold(0.0, f64::max);
        assert_eq!(
            etcd_tls::answers_plain_text(m),
            what == "off",
            "TLS {what}: etcd's client port in plain text"
        );
        eprintln!(
            "TIMING TLS turned {what} (etcd, its clients, REST API, PostgreSQL): apply {:.1}s; \
             writer through HAProxy: {} acknowledged, {failed} failed, 0 lost, longest gap {gap:.1}s",
            run.secs,
            acks.len()
        );
        let phases = run.report["phases"].as_array().unwrap();
        assert!(
            phases
                .iter()
                .any(|p| p["phase"] == "haproxy (REST checks in both schemes)"),
            "TLS {what}: {phases:?}"
        );
        let (code, _) = curl(&["-k", &format!("{scheme}://{m}:8008/patroni")]);
        assert_eq!(code, "200", "TLS {what}: the REST API serves {scheme}");
        let through = super::psql(lb, 5000, password, ssl);
        assert_eq!(
            through.as_deref(),
            Ok(encrypted),
            "TLS {what}: a new connection"
        );
    }
}

/// HAProxy's statistics page asks for the `haproxyStats` password the CLI added to the
/// secrets file in `dir` (written without one); `/metrics` stays open like the other exporters.
pub fn stats_page(lab: &Lab, dir: &Path) {
    let text = std::fs::read_to_string(dir.join("secrets.yaml")).unwrap();
    let secrets: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let password = secrets["haproxyStats"]
        .as_str()
        .expect("haproxyStats added");
    assert_eq!(password.len(), 32);
    let lb = &lab.hosts[3];
    let page = format!("http://{lb}:7000/stats;csv");
    let (code, _) = curl(&[&page]);
    assert_eq!(code, "401", "the statistics page without a password");
    let (code, _) = curl(&["-u", "pgmetal:wrong", &page]);
    assert_eq!(code, "401", "the statistics page with a wrong password");
    let (code, body) = curl(&["-u", &format!("pgmetal:{password}"), &page]);
    assert!(
        code == "200" && body.contains("primary,"),
        "the statistics page with the password: {code} {body}"
    );
    let (code, body) = curl(&[&format!("http://{lb}:7000/metrics")]);
    assert!(
        code == "200" && body.contains("haproxy_"),
        "/metrics: {code}"
    );
    let cfg = lab.ssh_ok(lb, "cat /etc/haproxy/haproxy.cfg");
    assert!(
        !cfg.contains(password) && cfg.contains("password $6$"),
        "haproxy.cfg holds a hash, not the password"
    );
}
