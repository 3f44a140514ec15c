//! Host key policy: a parsed OpenSSH `known_hosts` file, a pinned fingerprint, or trust on first use.

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// The SHA256 fingerprint of a key, as OpenSSH prints it (`SHA256:base64`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// One usable `known_hosts` line.
#[derive(Clone, Debug)]
struct Entry {
    /// Comma-separated patterns: plain, `[host]:port`, wildcards, `!negated`, or `|1|salt|hash`.
    patterns: Vec<String>,
    revoked: bool,
    key: PublicKey,
}

/// How an SSH server's identity is verified.
#[derive(Clone, Debug)]
pub enum KnownHosts {
    /// Keys from a `known_hosts` file (see [`KnownHosts::parse`]).
    File(KnownHostsFile),
    /// Accept only a key with exactly this SHA256 fingerprint (`SHA256:...`).
    Pinned(String),
    /// Accept whatever key the host presents on the first connection and pin it for the
    /// life of the executor; read it back with `SshExecutor::host_key_fingerprint`.
    TrustFirstUse,
}

/// The usable entries of a `known_hosts` file.
#[derive(Clone, Debug, Default)]
pub struct KnownHostsFile {
    entries: Vec<Entry>,
    skipped: usize,
}

/// The outcome of checking a presented key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key is trusted.
    Trusted,
    /// Keys are known for the host, none matches (or the key is revoked).
    Mismatch {
        /// Fingerprints of the known keys.
        expected: Vec<String>,
    },
    /// Nothing is known about the host.
    Unknown,
}

impl KnownHosts {
    /// Parse `known_hosts` text: `host[,host2] keytype base64 [comment]` lines, hosts as
    /// names, addresses, `[host]:port`, wildcards (`*`, `?`), negations (`!pat`) or hashed
    /// `|1|salt|hash` entries (HMAC-SHA1, as `HashKnownHosts yes` writes them). `@revoked`
    /// lines reject their key. Comments, blank lines, `@cert-authority` lines and lines
    /// that do not parse are skipped (counted in [`KnownHostsFile::skipped`]).
    pub fn parse(text: &str) -> KnownHosts {
        KnownHosts::File(KnownHostsFile::parse(text))
    }

    /// Check `key` presented by `host:port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        match self {
            KnownHosts::TrustFirstUse => Verdict::Trusted,
            KnownHosts::Pinned(fp) if *fp == fingerprint(key) => Verdict::Trusted,
            KnownHosts::Pinned(fp) => Verdict::Mismatch {
                expected: vec![fp.clone()],
            },
            KnownHosts::File(f) => f.check(host, port, key),
        }
    }

    /// Key algorithms known for `host:port`, to ask the server for one of those first.
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        match self {
            KnownHosts::File(f) => f
                .matching(host, port)
                .filter(|e| !e.revoked)
                .map(|e| e.key.algorithm())
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl KnownHostsFile {
    /// Parse `known_hosts` text; see [`KnownHosts::parse`] for the accepted syntax.
    pub fn parse(text: &str) -> KnownHostsFile {
        let mut file = KnownHostsFile::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some(e) => file.entries.push(e),
                None => file.skipped += 1,
            }
        }
        file
    }

    /// Number of usable entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no line was usable.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of non-comment lines that were skipped (unparseable, `@cert-authority`).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    fn matching<'a>(&'a self, host: &'a str, port: u16) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        self.entries
            .iter()
            .filter(move |e| host_matches(&name, &e.patterns))
    }

    fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let mut expected = Vec::new();
        let mut trusted = false;
        for e in self.matching(host, port) {
            let same = e.key.key_data() == key.key_data();
            if e.revoked {
                if same {
                    return Verdict::Mismatch {
                        expected: Vec::new(),
                    };
                }
                continue;
            }
            trusted |= same;
            expected.push(fingerprint(&e.key));
        }
        match (trusted, expected.is_empty()) {
            (true, _) => Verdict::Trusted,
            (false, true) => Verdict::Unknown,
            (false, false) => Verdict::Mismatch { expected },
        }
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if first.starts_with('@') {
        match first {
            "@revoked" => revoked = true,
            _ => return None, // @cert-authority: we do not trust host certificates
        }
        first = fields.next()?;
    }
    let _keytype = fields.next()?;
    let key = russh::keys::parse_public_key_base64(fields.next()?).ok()?;
    let patterns = first.split(',').map(str::to_string).collect();
    Some(Entry {
        patterns,
        revoked,
        key,
    })
}

/// OpenSSH semantics: a negated pattern that matches wins (no match); otherwise any
/// positive match.
fn host_matches(name: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if let Some(hashed) = p.strip_prefix("|1|") {
            matched |= hashed_matches(hashed, name);
        } else {
            matched |= glob(p, name);
        }
    }
    matched
}

fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (Base64::decode_vec(salt), Base64::decode_vec(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Case-insensitive glob with `*` and `?`.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
#[path = "known_hosts_tests.rs"]
mod tests;
