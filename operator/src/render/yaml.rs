//! A small block-style YAML emitter that double-quotes every string value.
//!
//! serde_yaml emits YAML 1.2 and leaves strings such as `on`, `yes`, `1:20` or `017` unquoted,
//! but Patroni reads its config with PyYAML (YAML 1.1), which turns those into booleans and
//! numbers. So the typed model is converted with `serde_yaml::to_value` (keeping field order)
//! and written here: every string is a double-quoted, pure-ASCII scalar (non-ASCII and control
//! characters as `\u`/`\U` escapes), which YAML 1.1 and 1.2 parsers read identically.

use serde::Serialize;
use serde_yaml::Value;

/// Serializes `value` as block YAML with every string value (and every unusual key) double-quoted.
pub(crate) fn to_yaml<T: Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    let value = serde_yaml::to_value(value)?;
    let mut out = String::new();
    match &value {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut out, m, 0),
        Value::Sequence(s) if !s.is_empty() => sequence(&mut out, s, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    Ok(out)
}

fn mapping(out: &mut String, m: &serde_yaml::Mapping, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first key of a mapping inside a sequence follows the "- " on the same line.
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        match k {
            Value::String(k) if plain_key(k) => out.push_str(k),
            other => out.push_str(&scalar(other)),
        }
        out.push(':');
        value(out, v, indent);
    }
}

fn sequence(out: &mut String, s: &[Value], indent: usize) {
    for v in s {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match v {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                mapping(out, m, indent + 2);
            }
            _ => value(out, v, indent),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar on the same line, or a nested block.
fn value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            mapping(out, m, indent + 2);
        }
        // Sequences under a key sit at the key's indentation, as serde_yaml writes them.
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            sequence(out, s, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Mapping(_) => "{}".into(),
        Value::Sequence(_) => "[]".into(),
        Value::Tagged(t) => scalar(&t.value),
    }
}

/// Keys such as `use_pg_rewind` or `auth-host` stay plain: a lower-case letter, then lower-case
/// letters, digits, `_` or `-`, and not a word YAML 1.1 reads as a boolean or null.
fn plain_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !matches!(
            k,
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        )
}

/// A double-quoted YAML scalar of printable ASCII only.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            ' '..='~' => q.push(c),
            c if (c as u32) <= 0xFFFF => q.push_str(&format!("\\u{:04X}", c as u32)),
            c => q.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Serialize)]
    struct Doc {
        s: String,
        n: u32,
        b: bool,
        list: Vec<Value>,
        map: BTreeMap<String, String>,
        empty: Vec<String>,
        nested: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    }

    #[test]
    fn round_trips_and_quotes_everything() {
        let hostile = [
            "on",
            "yes",
            "1:20",
            "017",
            "é😀",
            "a\"b\\c",
            "x\ny\t\u{2028}",
            "- a: b #c",
            "",
        ];
        for h in hostile {
            let kv = BTreeMap::from([(h.to_string(), h.to_string())]);
            let doc = Doc {
                s: h.into(),
                n: 7,
                b: true,
                list: vec![
                    Value::String(h.into()),
                    serde_yaml::to_value(&kv).unwrap(),
                    Value::Sequence(vec![]),
                ],
                map: kv.clone(),
                empty: vec![],
                nested: BTreeMap::from([(h.to_string(), vec![kv.clone(), kv.clone()])]),
            };
            let text = to_yaml(&doc).unwrap();
            assert!(text.is_ascii(), "{text}");
            let back: Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back, serde_yaml::to_value(&doc).unwrap(), "{text}");
        }
    }

    #[test]
    fn layout_is_block_style() {
        let doc = BTreeMap::from([("k", vec![BTreeMap::from([("a", 1), ("b", 2)])])]);
        assert_eq!(to_yaml(&doc).unwrap(), "k:\n- a: 1\n  b: 2\n");
        let doc = BTreeMap::from([("on", "x"), ("max_wal_senders", "10"), ("1e3", "y")]);
        assert_eq!(
            to_yaml(&doc).unwrap(),
            "\"1e3\": \"y\"\nmax_wal_senders: \"10\"\n\"on\": \"x\"\n"
        );
    }
}
