//! Hostile strings in every spec field and secret that reaches Patroni's config: they come back
//! byte for byte from the rendered YAML (as serde-saphyr and as PyYAML, Patroni's parser, read
//! it), or are rejected with an error naming the field.

use std::collections::BTreeMap;

use pgmetal::api::PostgresClusterSpec;
use pgmetal::model::{ClusterSecrets, OsFamily};
use pgmetal::render::{self, RenderError};
use pretty_assertions::assert_eq;
use serde_json::Value;

mod render_support;
use render_support::*;

#[test]
fn patroni_yaml_round_trips_hostile_strings() {
    let dir = tempfile::tempdir().unwrap();
    let mut pyyaml_checked = 0;
    for s in hostile(dir.path()) {
        let mut sp = spec();
        sp.patroni.scope = s.clone();
        sp.patroni.namespace = s.clone();
        sp.postgres.data_dir = s.clone();
        sp.postgres.bin_dir = Some(s.clone());
        sp.postgres.encoding = s.clone();
        sp.postgres.locale = s.clone();
        let name = if s.contains('"') || s.is_empty() {
            "plain".to_string()
        } else {
            s.clone()
        };
        sp.postgres.superuser.name = name.clone();
        sp.postgres.replication.name = name.clone();
        sp.postgres.rewind.name = name.clone();
        sp.postgres.parameters = BTreeMap::from([
            ("work_mem".into(), s.clone()),
            ("on".into(), s.clone()),
            ("null".into(), s.clone()),
            ("1e3".into(), s.clone()),
        ]);
        sp.postgres.pg_hba = vec![s.clone(), format!("host all all 10.0.0.0/8 {s}")];
        let file = render::patroni_config(&sp, &secrets(&s), HOST, OsFamily::Debian).unwrap();
        let text = String::from_utf8(file.content).unwrap();
        let y: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
        for path in [
            &["scope"][..],
            &["namespace"],
            &["restapi", "authentication", "password"],
            &["postgresql", "data_dir"],
            &["postgresql", "bin_dir"],
            &["postgresql", "authentication", "superuser", "password"],
            &["postgresql", "authentication", "replication", "password"],
            &["postgresql", "authentication", "rewind", "password"],
            &["bootstrap", "dcs", "postgresql", "parameters", "work_mem"],
            &["bootstrap", "dcs", "postgresql", "parameters", "on"],
            &["bootstrap", "dcs", "postgresql", "parameters", "null"],
            &["bootstrap", "dcs", "postgresql", "parameters", "1e3"],
            &["bootstrap", "initdb", "0", "encoding"],
            &["bootstrap", "initdb", "1", "locale"],
        ] {
            assert_eq!(
                get(&y, path),
                &Value::String(s.clone()),
                "{path:?} for {s:?}\n{text}"
            );
        }
        for who in ["superuser", "replication", "rewind"] {
            assert_eq!(
                get(&y, &["postgresql", "authentication", who, "username"]),
                &Value::String(name.clone())
            );
        }
        let hba = y["postgresql"]["pg_hba"].as_array().unwrap();
        let n = hba.len();
        assert_eq!(
            hba[n - 2..],
            [
                Value::String(s.clone()),
                Value::String(format!("host all all 10.0.0.0/8 {s}"))
            ]
        );
        // The replication line quotes a role name pg_hba would misread.
        let plain = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let quoted = if plain {
            name.clone()
        } else {
            format!("\"{name}\"")
        };
        let want = Value::String(format!(
            "hostssl replication {quoted} 192.168.10.64/32 scram-sha-256"
        ));
        assert!(hba.contains(&want), "{want:?} missing for {s:?}");

        // Patroni parses with PyYAML (YAML 1.1): it must see exactly the same document.
        assert_eq!(
            pyyaml(&text),
            serde_json::to_value(&y).unwrap(),
            "PyYAML reads {s:?} differently:\n{text}"
        );
        pyyaml_checked += 1;
    }
    assert!(!dir.path().join("pwned").exists());
    assert!(
        pyyaml_checked > 0,
        "no document was cross-checked with PyYAML"
    );
    eprintln!("PyYAML cross-checked {pyyaml_checked} documents");
}

/// Puts a bad value into one field of the spec or the secrets.
type Setter = Box<dyn Fn(&mut PostgresClusterSpec, &mut ClusterSecrets)>;

#[test]
fn patroni_rejects_control_characters_naming_the_field() {
    for bad in ["a\nb", "a\rb", "a\0b", "trailing\n", "a\u{85}b"] {
        let cases: Vec<(&str, Setter)> = vec![
            (
                "patroni.scope",
                Box::new(|s, _| s.patroni.scope = bad.into()),
            ),
            (
                "patroni.namespace",
                Box::new(|s, _| s.patroni.namespace = bad.into()),
            ),
            (
                "postgres.dataDir",
                Box::new(|s, _| s.postgres.data_dir = bad.into()),
            ),
            (
                "postgres.binDir",
                Box::new(|s, _| s.postgres.bin_dir = Some(bad.into())),
            ),
            (
                "postgres.locale",
                Box::new(|s, _| s.postgres.locale = bad.into()),
            ),
            (
                "postgres.replication.name",
                Box::new(|s, _| s.postgres.replication.name = bad.into()),
            ),
            (
                "postgres.parameters.work_mem",
                Box::new(|s, _| _ = s.postgres.parameters.insert("work_mem".into(), bad.into())),
            ),
            (
                "postgres.pgHba[1]",
                Box::new(|s, _| {
                    s.postgres.pg_hba = vec!["host all all 10.0.0.0/8 md5".into(), bad.into()]
                }),
            ),
            (
                "secret: superuser password",
                Box::new(|_, k| k.superuser = bad.into()),
            ),
            (
                "secret: replication password",
                Box::new(|_, k| k.replication = bad.into()),
            ),
            (
                "secret: rewind password",
                Box::new(|_, k| k.rewind = bad.into()),
            ),
            (
                "secret: Patroni REST API password",
                Box::new(|_, k| k.restapi = bad.into()),
            ),
        ];
        for (field, set) in cases {
            let (mut sp, mut sec) = (spec(), secrets("ok"));
            set(&mut sp, &mut sec);
            match render::patroni_config(&sp, &sec, HOST, OsFamily::Debian) {
                Err(RenderError::InvalidValue {
                    field: f,
                    host,
                    reason,
                }) => {
                    assert_eq!((f.as_str(), host.as_str()), (field, HOST));
                    assert!(
                        !reason.contains(bad),
                        "the error must not echo the value: {reason}"
                    );
                }
                other => panic!("{field} = {bad:?}: expected InvalidValue, got {other:?}"),
            }
        }
    }
    // Tabs separate pg_hba fields: allowed there, nowhere else.
    let mut sp = spec();
    sp.postgres.pg_hba = vec!["host\tall\tall\t10.0.0.0/8\tscram-sha-256".into()];
    assert!(render::patroni_config(&sp, &secrets("ok"), HOST, OsFamily::Debian).is_ok());
    assert!(render::patroni_config(&sp, &secrets("a\tb"), HOST, OsFamily::Debian).is_err());
    // Keys that are not setting names, and role names pg_hba cannot quote.
    for key in ["work mem", "a=b", "x'", ""] {
        let mut sp = spec();
        sp.postgres.parameters.insert(key.into(), "1".into());
        let err = render::patroni_config(&sp, &secrets("ok"), HOST, OsFamily::Debian).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("postgres.parameters (for host 192.168.10.85)"),
            "{err}"
        );
    }
    let mut sp = spec();
    sp.postgres.rewind.name = "a\"b".into();
    let err = render::patroni_config(&sp, &secrets("ok"), HOST, OsFamily::Debian).unwrap_err();
    assert!(
        err.to_string().starts_with("postgres.rewind.name "),
        "{err}"
    );
}
