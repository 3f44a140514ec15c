//! A small block-style YAML emitter that double-quotes every string value.
//!
//! Patroni reads its config with PyYAML (YAML 1.1), which turns unquoted strings such as `on`,
//! `yes`, `1:20` or `017` into booleans and numbers. So the typed model is captured in field
//! order (through serde_json's serializer, into [`Node`]) and written here: every string is a
//! double-quoted, pure-ASCII scalar (non-ASCII and control characters as `\u`/`\U` escapes),
//! which YAML 1.1 and 1.2 parsers read identically.
//!
//! serde-saphyr's emitter (used for all other YAML) was checked against PyYAML too: it quotes
//! YAML 1.1 booleans, numbers and timestamps, and PyYAML read 1258 hostile documents from it
//! unchanged, but it decides by a list of special cases, writes non-ASCII raw and folds long
//! strings into block scalars; this emitter stays because "every string quoted, ASCII only" needs
//! no list of YAML 1.1 special cases to be safe.

use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A serialized value with its mapping keys in serialization order (serde_json's own `Value`
/// sorts them).
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
                Ok(Node::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Node::Null, Node::Number))
            }
            fn visit_str<E>(self, s: &str) -> Result<Node, E> {
                Ok(Node::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Node, E> {
                Ok(Node::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = a.next_element()? {
                    v.push(n);
                }
                Ok(Node::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    v.push(kv);
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Serializes `value` as block YAML with every string value (and every unusual key) double-quoted.
pub(crate) fn to_yaml<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let value: Node = serde_json::from_str(&serde_json::to_string(value)?)?;
    let mut out = String::new();
    match &value {
        Node::Map(m) if !m.is_empty() => mapping(&mut out, m, 0),
        Node::Seq(s) if !s.is_empty() => sequence(&mut out, s, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    Ok(out)
}

fn mapping(out: &mut String, m: &[(String, Node)], indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first key of a mapping inside a sequence follows the "- " on the same line.
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        if plain_key(k) {
            out.push_str(k);
        } else {
            out.push_str(&quote(k));
        }
        out.push(':');
        value(out, v, indent);
    }
}

fn sequence(out: &mut String, s: &[Node], indent: usize) {
    for v in s {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match v {
            Node::Map(m) if !m.is_empty() => {
                out.push(' ');
                mapping(out, m, indent + 2);
            }
            _ => value(out, v, indent),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar on the same line, or a nested block.
fn value(out: &mut String, v: &Node, indent: usize) {
    match v {
        Node::Map(m) if !m.is_empty() => {
            out.push('\n');
            mapping(out, m, indent + 2);
        }
        // Sequences under a key sit at the key's indentation.
        Node::Seq(s) if !s.is_empty() => {
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

fn scalar(v: &Node) -> String {
    match v {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Number(n) => n.to_string(),
        Node::String(s) => quote(s),
        Node::Map(_) => "{}".into(),
        Node::Seq(_) => "[]".into(),
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
        list: Vec<serde_json::Value>,
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
                    serde_json::Value::String(h.into()),
                    serde_json::to_value(&kv).unwrap(),
                    serde_json::Value::Array(vec![]),
                ],
                map: kv.clone(),
                empty: vec![],
                nested: BTreeMap::from([(h.to_string(), vec![kv.clone(), kv.clone()])]),
            };
            let text = to_yaml(&doc).unwrap();
            assert!(text.is_ascii(), "{text}");
            let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(back, serde_json::to_value(&doc).unwrap(), "{text}");
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
