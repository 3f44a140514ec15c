//! The API: the committed CRD is current, every example parses and validates, and every CEL rule
//! rejects what it should with its message (evaluated locally, exactly as written in the CRD).

use pgmetal::api::PostgresCluster;
use pgmetal::validate::validate;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn committed_crd_is_current() {
    let committed = std::fs::read_to_string(repo("crds/postgrescluster.yaml"))
        .expect("crds/postgrescluster.yaml");
    assert!(
        committed == pgmetal::crd_yaml(),
        "crds/postgrescluster.yaml is stale: run `cargo run -q -- crd > crds/postgrescluster.yaml`"
    );
}

#[test]
fn every_example_parses_and_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let pgc: PostgresCluster =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        validate(&pgc, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 2, "expected the examples, found {seen}");
}

/// The CLI takes the key from `--ssh-key`: a manifest without `spec.ssh.privateKeySecret` loads
/// and validates, while the CRD schema keeps it required (and not nullable) for the API server.
#[test]
fn private_key_secret_is_required_by_the_crd_only() {
    let yaml = "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {name: cli}\n\
                spec:\n  ssh: {}\n  postgres: {primary: a, replicas: [b]}\n  etcd: {hosts: [a]}\n";
    let pgc: PostgresCluster = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(pgc.spec.ssh.private_key_secret, None);
    validate(&pgc, None).unwrap();

    let crd: serde_json::Value = serde_saphyr::from_str(&pgmetal::crd_yaml()).unwrap();
    let ssh = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["ssh"];
    assert_eq!(ssh["required"], serde_json::json!(["privateKeySecret"]));
    assert_eq!(ssh["properties"]["privateKeySecret"].get("nullable"), None);
}

#[test]
fn reference_example_keeps_reference_values() {
    let pgc: PostgresCluster =
        serde_saphyr::from_str(&std::fs::read_to_string(repo("examples/cluster.yaml")).unwrap())
            .unwrap();
    let s = &pgc.spec;
    assert_eq!(s.postgres.data_dir, "/data/pg_data");
    assert_eq!(s.patroni.namespace, "/db/");
    assert_eq!(s.etcd.cluster_token, "etcd_cluster");
    assert_eq!(s.etcd.hosts.len(), 3);
    assert_eq!(s.haproxy.primary_port, 5000);
}

fn base() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "pgmetal.io/v1alpha1", "kind": "PostgresCluster",
        "metadata": {"name": "t"},
        "spec": {
            "ssh": {"privateKeySecret": {"name": "k", "key": "id"}},
            "postgres": {"primary": "10.0.0.1", "replicas": ["10.0.0.2", "10.0.0.3"]},
            "etcd": {"hosts": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]},
            "haproxy": {"hosts": ["10.0.0.4"]}
        }
    })
}

fn with(mut v: serde_json::Value, pointer: &str, value: serde_json::Value) -> PostgresCluster {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    serde_json::from_value(v).expect("typed")
}

fn set(pointer: &str, value: serde_json::Value) -> PostgresCluster {
    let mut v = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.into(), value);
    serde_json::from_value(v).expect("typed")
}

fn rejects(obj: PostgresCluster, needle: &str) {
    let err = validate(&obj, None).expect_err(needle).to_string();
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn base_is_valid() {
    validate(&serde_json::from_value(base()).unwrap(), None).unwrap();
}

#[test]
fn tls_durations_and_service_names_are_checked_naming_the_field() {
    use serde_json::json;
    let tls = |v: serde_json::Value| set("/spec/tls", v);
    validate(
        &tls(json!({"certificateLifetime": "90m", "renewBefore": "30m"})),
        None,
    )
    .unwrap();
    rejects(
        tls(json!({"certificateLifetime": "1h", "renewBefore": "2h"})),
        "tls.renewBefore must be shorter than tls.certificateLifetime",
    );
    rejects(
        tls(json!({"certificateLifetime": "90d"})),
        "spec.tls.certificateLifetime",
    );
    rejects(
        tls(json!({"serviceNames": ["db example"]})),
        "spec.tls.serviceNames",
    );
    validate(
        &tls(json!({"serviceNames": ["db.example.com", "10.0.0.9", "fd00::9"]})),
        None,
    )
    .unwrap();
}

#[test]
fn cel_rules_reject_bad_input_with_their_messages() {
    use serde_json::json;
    rejects(
        set("/spec/postgres/replicas", json!(["10.0.0.2", "10.0.0.2"])),
        "must not list a host twice",
    );
    rejects(
        set("/spec/etcd/hosts", json!(["10.0.0.1", "10.0.0.2"])),
        "1, 3, 5 or 7 members",
    );
    rejects(
        set("/spec/postgres/replicas", json!(["10.0.0.1"])),
        "must not also be listed in postgres.replicas",
    );
    rejects(
        set("/spec/postgres/primary", json!("bad host!")),
        "postgres.primary must be a DNS name",
    );
    rejects(
        set("/spec/postgres/primary", json!("300.1.1.1")),
        "postgres.primary must be a DNS name",
    );
    rejects(
        set("/spec/etcd/hosts", json!(["a b", "x", "y"])),
        "etcd.hosts: every host",
    );
    rejects(
        set("/spec/postgres/dataDir", json!("relative/path")),
        "postgres.dataDir must be an absolute path",
    );
    rejects(
        set("/spec/postgres/dataDir", json!("/data/$(reboot)")),
        "postgres.dataDir must be an absolute path",
    );
    rejects(
        set("/spec/postgres/dataDir", json!("/data/pg data")),
        "postgres.dataDir must be an absolute path",
    );
    rejects(
        set("/spec/etcd/dataDir", json!("/var/lib/etcd;rm")),
        "etcd.dataDir must be an absolute path",
    );
    rejects(
        set("/spec/postgres/version", json!(9)),
        "postgres.version must be one of",
    );
    rejects(
        set("/spec/patroni", json!({"scope": "pg ha"})),
        "patroni.scope must be",
    );
    rejects(
        set("/spec/patroni", json!({"namespace": "db"})),
        "patroni.namespace must look like /name/",
    );
    rejects(
        set("/spec/etcd/clusterToken", json!("tok'en")),
        "etcd.clusterToken must be",
    );
    rejects(
        set("/spec/etcd/peerPort", json!(2379)),
        "etcd.clientPort and etcd.peerPort must differ",
    );
    rejects(
        set("/spec/etcd/clientPort", json!(5432)),
        "etcd shares hosts with PostgreSQL",
    );
    rejects(
        set("/spec/patroni", json!({"restApiPort": 5432})),
        "postgres.port and patroni.restApiPort",
    );
    rejects(
        set("/spec/haproxy/replicaPort", json!(5000)),
        "must all differ",
    );
    rejects(
        set(
            "/spec/haproxy",
            json!({"hosts": ["10.0.0.1"], "primaryPort": 5432}),
        ),
        "HAProxy shares hosts with PostgreSQL",
    );
    rejects(
        set(
            "/spec/haproxy",
            json!({"hosts": ["10.0.0.1"], "statsPort": 2379}),
        ),
        "HAProxy shares hosts with etcd",
    );
    rejects(
        set("/spec/patroni", json!({"ttl": 20, "loopWait": 10})),
        "loopWait + 2 * retryTimeout must not exceed ttl",
    );
    rejects(
        set("/spec/postgres/parameters", json!({"Bad Key": "1"})),
        "postgres.parameters keys",
    );
    rejects(
        set(
            "/spec/postgres/pgHba",
            json!(["hots all all 0.0.0.0/0 trust"]),
        ),
        "postgres.pgHba entries",
    );
    rejects(
        set(
            "/spec/postgres/pgHba",
            json!(["host all all 0.0.0.0/0 md5\nlocal all all trust"]),
        ),
        "postgres.pgHba entries",
    );
    rejects(set("/spec/ssh/user", json!("Root;id")), "ssh.user must be");
    rejects(
        set("/spec/packages", json!({"repository": {"apt": "rm -rf /"}})),
        "packages.repository.apt",
    );
    rejects(
        set("/spec/packages", json!({"repository": {}})),
        "packages.repository needs apt or yumBaseUrl",
    );
}

#[test]
fn a_dedicated_haproxy_host_may_reuse_postgres_ports() {
    let ok = set("/spec/haproxy/primaryPort", serde_json::json!(5432));
    validate(&ok, None).unwrap();
}

#[test]
fn immutable_fields_cannot_change() {
    use serde_json::json;
    let old: PostgresCluster = serde_json::from_value(base()).unwrap();
    for (pointer, value, needle) in [
        (
            "/spec/postgres/dataDir",
            json!("/srv/pg"),
            "postgres.dataDir is immutable",
        ),
        (
            "/spec/etcd/clusterToken",
            json!("other"),
            "etcd.clusterToken is immutable",
        ),
        (
            "/spec/etcd/dataDir",
            json!("/srv/etcd"),
            "etcd.dataDir is immutable",
        ),
        (
            "/spec/patroni",
            json!({"scope": "other"}),
            "patroni.scope is immutable",
        ),
        (
            "/spec/patroni",
            json!({"namespace": "/other/"}),
            "patroni.namespace is immutable",
        ),
        (
            "/spec/postgres/version",
            json!(16),
            "postgres.version is immutable",
        ),
    ] {
        let new = set(pointer, value);
        let err = validate(&new, Some(&old)).expect_err(needle).to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
    // A change to a mutable field is fine.
    let new = with(base(), "/spec/postgres/replicas", json!(["10.0.0.2"]));
    validate(&new, Some(&old)).unwrap();
}

#[test]
fn dot_segments_bare_colons_and_control_characters_are_refused() {
    use serde_json::json;
    rejects(
        set("/spec/postgres/dataDir", json!("/data/..")),
        "no . or .. segments",
    );
    rejects(
        set("/spec/etcd/dataDir", json!("/var/lib/etcd/../../..")),
        "no . or .. segments",
    );
    rejects(
        set("/spec/patroni", json!({"namespace": "/../"})),
        "patroni.namespace must look like /name/",
    );
    rejects(
        set("/spec/patroni", json!({"namespace": "/"})),
        "patroni.namespace must look like /name/",
    );
    rejects(
        set("/spec/postgres/primary", json!("::")),
        "postgres.primary must be a DNS name",
    );
    rejects(
        set(
            "/spec/postgres/parameters",
            json!({"work_mem": "4MB\nfsync = off"}),
        ),
        "spec.postgres.parameters.work_mem",
    );
    validate(&set("/spec/postgres/primary", json!("::1")), None).unwrap();
    validate(
        &set("/spec/postgres/dataDir", json!("/srv/pg-15.data")),
        None,
    )
    .unwrap();
}

#[test]
fn data_directories_are_their_own_and_never_system_or_shallow_paths() {
    use serde_json::json;
    let msg = "must be a directory of its own at least two levels deep";
    for bad in [
        "/",
        "/data",
        "/data/",
        "/srv",
        "/etc/postgresql",
        "/usr/local/pgsql",
        "/var/lib",
        "/var/lib/",
        "/var/lib/postgresql",
        "/home/postgres",
        "/root/pg",
        "/tmp/pg",
        "/boot/x",
    ] {
        rejects(
            set("/spec/postgres/dataDir", json!(bad)),
            &format!("postgres.dataDir {msg}"),
        );
        rejects(
            set("/spec/etcd/dataDir", json!(bad)),
            &format!("etcd.dataDir {msg}"),
        );
    }
    for ok in [
        "/data/pg_data",
        "/srv/pg-15.data",
        "/var/lib/etcd",
        "/var/lib/etcd/default.etcd",
        "/var/lib/postgresql/15/pgmetal",
        "/home/postgres/data",
        "/pg/data",
    ] {
        let mut v = base();
        v["spec"]["postgres"]["dataDir"] = json!(ok);
        v["spec"]["etcd"]["dataDir"] = json!(ok);
        validate(&serde_json::from_value(v).unwrap(), None).expect(ok);
    }
}

#[test]
fn the_crd_schema_is_enforced_locally_naming_the_field() {
    use serde_json::json;
    rejects(
        set(
            "/spec/packages",
            json!({"names": {"postgres": ["postgresql-15", "-oDpkg::Pre-Invoke::=touch /tmp/pwned"]}}),
        ),
        "spec.packages.names.postgres[1]: \"-oDpkg::Pre-Invoke::=touch /tmp/pwned\" does not match",
    );
    rejects(
        set("/spec/postgres/port", json!(0)),
        "spec.postgres.port: 0 is less than the minimum of 1",
    );
    rejects(
        set("/spec/patroni", json!({"ttl": 5})),
        "spec.patroni.ttl: 5 is less than the minimum of 20",
    );
    rejects(
        set(
            "/spec/patroni",
            json!({"namespace": format!("/{}/", "a".repeat(140))}),
        ),
        "spec.patroni.namespace",
    );
    rejects(
        set(
            "/spec/postgres/replicas",
            json!((2..20).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>()),
        ),
        "spec.postgres.replicas",
    );
    // The CLI needs no Kubernetes Secret for its SSH key.
    let mut v = base();
    v["spec"]["ssh"]
        .as_object_mut()
        .unwrap()
        .remove("privateKeySecret");
    validate(&serde_json::from_value(v).unwrap(), None).unwrap();
}
