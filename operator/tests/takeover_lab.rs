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
    format!(
        "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: takeover}}\nspec:\n  ssh: {{}}\n  packages:\n    repository: {{apt: \"{apt}\"}}\n    patroni: {{indexUrl: \"{pip}\"}}\n  postgres: {{primary: {h}}}\n  patroni: {{ttl: 20, loopWait: 5, retryTimeout: 5}}\n  etcd: {{hosts: [{h}]}}\n",
        apt = lab.var("LAB_APT_REPO"),
        pip = lab.var("LAB_PIP_INDEX"),
    )
}

fn apply(lab: &Lab, dir: &std::path::Path, yaml: &str) -> (i32, Value, String) {
    std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
    lab.pgmetal("apply", dir, &lab.var("LAB_KNOWN_HOSTS"))
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

    let (status, report, stderr) = apply(&lab, dir.path(), &manifest(&lab, &h));
    assert_ne!(status, 0, "{report}\n{stderr}");
    let err = report["hosts"][&h]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("take over package defaults")
            && err.contains("holds 0 databases, 1 relations and 0 roles")
            && err.contains("pg_dropcluster --stop 15 main"),
        "{err}\n{report}"
    );
    assert_eq!(
        psql("SELECT x FROM someones_data"),
        "42",
        "the cluster and its data stay"
    );

    // Pristine again (the person dropped their table): the same apply takes it over.
    psql("DROP TABLE someones_data");
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
