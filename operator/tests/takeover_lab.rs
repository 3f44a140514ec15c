//! Debian's package-default PostgreSQL cluster (`15/main`) on a real lab host: pgmetal drops it
//! only when it is the pristine cluster the package created. With a table of someone's in it,
//! `pgmetal apply` refuses, says what to do, and the cluster and its table stay; once it is
//! pristine again, the same apply drops it and converges.
//! Ignored by a plain `cargo test`: e2e/test runs it with PGMETAL_LAB=1 and `--include-ignored`.

mod common;

use common::Lab;
use serde_json::Value;

/// The fifth lab host: used by no other test of the first lab boot.
const HOST: usize = 4;

fn manifest(lab: &Lab, h: &str) -> String {
    manifest_named(lab, h, "takeover", "")
}

/// A one-host cluster `name` (with metadata after it) on `h`; `postgres_extra` is added to
/// `spec.postgres`.
fn manifest_named(lab: &Lab, h: &str, name: &str, postgres_extra: &str) -> String {
    format!(
        "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: {name}}}\nspec:\n  ssh: {{}}\n  packages:\n    repository: {{apt: \"{apt}\"}}\n    patroni: {{indexUrl: \"{pip}\"}}\n  postgres: {{primary: {h}{postgres_extra}}}\n  patroni: {{ttl: 20, loopWait: 5, retryTimeout: 5}}\n  etcd: {{hosts: [{h}]}}\n",
        apt = lab.var("LAB_APT_REPO"),
        pip = lab.var("LAB_PIP_INDEX"),
    )
}

fn apply(lab: &Lab, dir: &std::path::Path, yaml: &str) -> (i32, Value, String) {
    std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
    lab.pgmetal("apply", dir, &lab.var("LAB_KNOWN_HOSTS"))
}

/// Someone's standalone PostgreSQL on `h` (Debian's 15/main with a table) is refused at first
/// contact, whichever dataDir the cluster names: nothing is written, and it keeps running.
fn mistaken_host_is_refused(lab: &Lab, h: &str, psql: &dyn Fn(&str) -> String) {
    let main = "/var/lib/postgresql/15/main";
    let sysid = lab.ssh_ok(h, &format!("/usr/lib/postgresql/15/bin/pg_controldata -D {main} | sed -n 's/^Database system identifier: *//p'"));
    for data_dir in ["", &format!(", dataDir: {main}")] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = manifest_named(lab, h, "mistaken", data_dir);
        let (status, report, stderr) = apply(lab, dir.path(), &yaml);
        assert_ne!(status, 0, "{report}\n{stderr}");
        let err = report["hosts"][h]["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("claim host")
                && err.contains(&format!("{h} is not free"))
                && err.contains(
                    "the Debian cluster 15/main, which holds 0 databases, 1 relations and 0 roles"
                )
                && err.contains(&format!("system identifier {sysid}"))
                && err.contains(&format!("pgmetal.io/adopt={h}={sysid}")),
            "dataDir {data_dir:?}: {err}\n{report}"
        );
        let left = lab.ssh_ok(
            h,
            "ls /var/lib/pgmetal/claim /etc/patroni /etc/pgmetal 2>/dev/null; systemctl is-active postgresql@15-main",
        );
        assert_eq!(
            left, "active",
            "dataDir {data_dir:?}: nothing written, PostgreSQL runs"
        );
        assert_eq!(psql("SELECT x FROM someones_data"), "42", "the data stays");
    }
}

/// With `pgmetal.io/adopt` naming the host and its system identifier, the same cluster adopts
/// the data: Patroni runs it, the table is still there, and the host records what it adopted.
fn adopted_data_runs_under_patroni(lab: &Lab, h: &str, psql: &dyn Fn(&str) -> String) {
    let main = "/var/lib/postgresql/15/main";
    let sysid = lab.ssh_ok(
        h,
        &format!("od -An -t u8 -N8 {main}/global/pg_control | tr -d ' '"),
    );
    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_named(lab, h, "mistaken", &format!(", dataDir: {main}")).replace(
        "metadata: {name: mistaken}",
        &format!(
            "metadata: {{name: mistaken, annotations: {{pgmetal.io/adopt: \"{h}={sysid}\"}}}}"
        ),
    );
    let t = std::time::Instant::now();
    let (status, report, stderr) = apply(lab, dir.path(), &yaml);
    println!("TIMING adoption: apply {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(status, 0, "{report}\n{stderr}");
    let steps = report["hosts"][h]["steps"].to_string();
    assert!(
        steps.contains(&format!(
            "adopted PostgreSQL data with system identifier {sysid}"
        )),
        "{steps}"
    );
    assert_eq!(
        report["status"]["systemIdentifier"],
        sysid.as_str(),
        "{report}"
    );
    assert_eq!(
        psql("SELECT x FROM someones_data"),
        "42",
        "the adopted data"
    );
    assert_eq!(lab.ssh_ok(h, "cat /var/lib/pgmetal/adopted"), sysid);
    assert_eq!(
        lab.ssh_ok(
            h,
            "systemctl is-enabled postgresql@15-main 2>/dev/null || true"
        ),
        "disabled",
        "Patroni alone starts it"
    );
}

#[test]
#[ignore = "needs the lab (5 hosts); e2e/test runs it"]
fn the_package_default_cluster_is_dropped_only_when_pristine() {
    let lab = Lab::require(HOST + 1);
    let h = lab.hosts[HOST].clone();
    let dir = tempfile::tempdir().unwrap();
    // The package as a person would install it: Debian creates and starts 15/main.
    lab.ssh_ok(
        &h,
        &format!(
            "echo '{}' > /etc/apt/sources.list.d/lab.list && apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -qy install postgresql-15 >/dev/null",
            lab.var("LAB_APT_REPO")
        ),
    );
    let psql = |sql: &str| {
        lab.ssh_ok(
            &h,
            &format!("runuser -u postgres -- psql -X -At -c \"{sql}\""),
        )
    };
    psql("CREATE TABLE someones_data(x int); INSERT INTO someones_data VALUES (42)");
    mistaken_host_is_refused(&lab, &h, &psql);
    adopted_data_runs_under_patroni(&lab, &h, &psql);

    // The adopting cluster taken off by hand, and a pristine 15/main as the package makes it:
    // the same apply drops it and converges.
    lab.ssh_ok(
        &h,
        "systemctl disable --now patroni etcd >/dev/null 2>&1; rm -rf /var/lib/pgmetal /etc/patroni /etc/pgmetal /var/lib/etcd/default.etcd /var/lib/postgresql/15/main /etc/postgresql/15/main.adopted-by-pgmetal && pg_createcluster 15 main --start >/dev/null",
    );
    let (status, report, stderr) = apply(&lab, dir.path(), &manifest(&lab, &h));
    assert_eq!(status, 0, "{report}\n{stderr}");
    let steps = report["hosts"][&h]["steps"].to_string();
    assert!(
        steps.contains("dropped the pristine package-default cluster 15/main"),
        "{steps}"
    );
    assert_eq!(
        lab.ssh_ok(
            &h,
            "test -e /etc/postgresql/15/main && echo present || echo absent"
        ),
        "absent"
    );
}
