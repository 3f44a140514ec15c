//! Shared helpers of the render integration tests: the reference spec, hostile strings,
//! a PyYAML cross-check, and a systemd EnvironmentFile parser (`envfile`).
#![allow(dead_code)] // each test crate uses a different subset

use std::path::Path;
use std::process::Command;

use pgmetal::api::{PostgresCluster, PostgresClusterSpec};
use pgmetal::model::ClusterSecrets;
use serde_json::Value;

pub const HOST: &str = "192.168.10.85";

pub fn spec() -> PostgresClusterSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reference-spec.yaml");
    serde_saphyr::from_str::<PostgresCluster>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .spec
}

pub fn secrets(s: &str) -> ClusterSecrets {
    ClusterSecrets {
        superuser: s.into(),
        replication: s.into(),
        rewind: s.into(),
        restapi: s.into(),
        haproxy_stats: "stats".into(),
        s3: Default::default(),
    }
}

/// Strings that break naive YAML, shell or env-file generation (no control characters).
pub fn hostile(marker_dir: &Path) -> Vec<String> {
    let m = marker_dir.display();
    let mut v: Vec<String> = [
        "'\"",
        "\"",
        "'",
        "${HOME}",
        "$HOME",
        "\\",
        "\\\"",
        "\\$",
        "# not a comment",
        "a #b",
        "key: value",
        ": ",
        "- item",
        "-",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "null",
        "~",
        "true",
        "False",
        "0o17",
        "017",
        "1e3",
        "0x1F",
        "1:20",
        "1_000",
        "2001-12-14",
        ".inf",
        ".nan",
        "*alias",
        "&anchor",
        "!tag",
        "!!str",
        "{a: 1}",
        "[1, 2]",
        "%YAML",
        "@at",
        "|",
        ">",
        " leading",
        "trailing ",
        "",
        "---",
        "...",
        "<<",
        "=",
        "a=b",
        "é ü",
        "😀",
        "\u{2028}",
        ";semi",
        "x\"y'z`w",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("$(touch {m}/pwned)"));
    v.push(format!("`touch {m}/pwned`"));
    v.push(format!("\"; touch {m}/pwned; \""));
    v
}

pub fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    })
}

/// Parses `text` with PyYAML (what Patroni uses) into JSON. Panics when python3 or PyYAML is
/// missing (`e2e/setup` installs python3-yaml) or when PyYAML cannot read the document.
pub fn pyyaml(text: &str) -> serde_json::Value {
    const MISSING: &str = "the PyYAML cross-check needs python3 with PyYAML: \
                           `apt-get install python3-yaml` (e2e/setup installs it)";
    let script = "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {MISSING}"));
    std::io::Write::write_all(child.stdin.as_mut().expect("piped stdin"), text.as_bytes())
        .expect("writing to python3");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("waiting for python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        panic!("{MISSING}");
    }
    assert!(
        out.status.success(),
        "PyYAML cannot read the document:\n{stderr}\n{text}"
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

pub mod envfile;
