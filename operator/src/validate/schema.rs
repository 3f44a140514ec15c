//! The CRD's OpenAPI schema checked locally: patterns, ranges, lengths, enums and required
//! fields, so that `pgmetal apply` refuses exactly what the API server refuses. One exception:
//! `spec.ssh.privateKeySecret` is not required here (the CLI's `--ssh-key` replaces it; the
//! operator reads the Secret and says when it is missing).

use std::sync::LazyLock;

use kube::CustomResourceExt;
use serde_json::Value;

use super::Violation;
use crate::api::PostgresCluster;

/// The CRD schema as JSON Schema, compiled once.
static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let crd = PostgresCluster::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    let mut schema = serde_json::to_value(schema).expect("the schema serializes");
    as_json_schema(&mut schema);
    if let Some(ssh) = schema
        .pointer_mut("/properties/spec/properties/ssh")
        .and_then(Value::as_object_mut)
    {
        if let Some(r) = ssh.get_mut("required").and_then(Value::as_array_mut) {
            r.retain(|f| f != "privateKeySecret");
        }
        // Draft 4: `required` lists at least one field.
        if ssh
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            ssh.remove("required");
        }
    }
    jsonschema::draft4::new(&schema).expect("the CRD schema compiles")
});

/// Every place where `obj` breaks the CRD's schema.
pub fn violations(obj: &PostgresCluster) -> Vec<Violation> {
    let Ok(value) = serde_json::to_value(obj) else {
        return vec![];
    };
    VALIDATOR
        .iter_errors(&value)
        .map(|e| Violation {
            field: field(e.instance_path().as_str()),
            message: e.to_string(),
        })
        .collect()
}

/// `/spec/packages/names/postgres/0` → `spec.packages.names.postgres[0]`.
fn field(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

/// OpenAPI's `nullable: true` is JSON Schema's `type: [T, "null"]`.
fn as_json_schema(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), serde_json::json!([t, "null"]));
            }
            map.values_mut().for_each(as_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(as_json_schema),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(
            super::field("/spec/packages/names/postgres/0"),
            "spec.packages.names.postgres[0]"
        );
        assert_eq!(super::field(""), "");
    }
}
