//! A test-only parser of systemd EnvironmentFile= syntax (after systemd's `env-file.c`):
//! `#`/`;` comment lines, `KEY=value`, double quotes with `\"` `\\` `\$` `` \` `` escapes and
//! backslash-newline continuation, single quotes taken literally, backslash escapes outside
//! quotes, and unquoted trailing whitespace trimmed.

use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
}

/// Parses `text` into variables; later assignments win.
pub fn parse_systemd(text: &str) -> BTreeMap<String, String> {
    use State::*;
    let mut vars = BTreeMap::new();
    let (mut state, mut key, mut value) = (PreKey, String::new(), String::new());
    // Length of `value` up to the last quoted or escaped character (never trimmed).
    let mut keep = 0;
    let mut finish = |key: &mut String, value: &mut String, keep: usize| {
        let trimmed_len = value.trim_end().len().max(keep);
        value.truncate(trimmed_len);
        if !key.trim().is_empty() {
            vars.insert(key.trim().to_string(), std::mem::take(value));
        }
        key.clear();
        value.clear();
    };
    for c in text.chars().chain(std::iter::once('\n')) {
        state = match (state, c) {
            (PreKey, '#' | ';') => Comment,
            (PreKey, c) if c.is_whitespace() => PreKey,
            (PreKey | Key, '=') => PreValue,
            (PreKey | Key, '\n') => {
                key.clear();
                PreKey
            }
            (PreKey | Key, c) => {
                key.push(c);
                Key
            }
            (PreValue, ' ' | '\t') => PreValue,
            (PreValue | Value, '\n') => {
                finish(&mut key, &mut value, keep);
                keep = 0;
                PreKey
            }
            (PreValue | Value, '\'') => Single,
            (PreValue | Value, '"') => Double,
            (PreValue | Value, '\\') => ValueEscape,
            (PreValue | Value, c) => {
                value.push(c);
                Value
            }
            (ValueEscape, '\n') => Value,
            (ValueEscape, c) => {
                value.push(c);
                keep = value.len();
                Value
            }
            (Single, '\'') => {
                keep = value.len();
                Value
            }
            (Double, '"') => {
                keep = value.len();
                Value
            }
            (Double, '\\') => DoubleEscape,
            (Single | Double, c) => {
                value.push(c);
                state
            }
            (DoubleEscape, c) => {
                match c {
                    '"' | '\\' | '`' | '$' => value.push(c),
                    '\n' => {}
                    c => {
                        value.push('\\');
                        value.push(c);
                    }
                }
                Double
            }
            (Comment, '\n') => PreKey,
            (Comment, _) => Comment,
        };
    }
    vars
}
