//! Unit tests for `known_hosts` parsing and matching.

use super::*;

const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAINoWbwysPakwNWmU1dVfi3z20GJQ9aCqngBASPdrtG8c";
const K1_FP: &str = "SHA256:f7RiKdzv9DsFFYv57Z69x6qziEE/1EEyl673HKshhcc";
const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIIvNnUPmT+t3uCIxvs98VKKyPPgfYx/yY/p8BX0ImALq";
const K2_FP: &str = "SHA256:a3jxvEaaOufW5+MfqHOmJK40BtJe0WqkBH8jw8TqvfQ";

fn key(b64: &str) -> PublicKey {
    russh::keys::parse_public_key_base64(b64).unwrap()
}

#[test]
fn fingerprint_matches_ssh_keygen() {
    assert_eq!(fingerprint(&key(K1)), K1_FP);
    assert_eq!(fingerprint(&key(K2)), K2_FP);
}

#[test]
fn plain_entries_ports_comments_and_garbage() {
    let text = format!(
        "# comment\n\n  \ndb1.example,10.0.0.5 ssh-ed25519 {K1} some comment\n\
         [db2.example]:2222 ssh-ed25519 {K2}\n\
         broken-line-without-key\n\
         bad ssh-ed25519 not-base64!!\n\
         @cert-authority *.example ssh-ed25519 {K2}\n"
    );
    let kh = KnownHosts::parse(&text);
    let KnownHosts::File(f) = &kh else { panic!() };
    assert_eq!(f.len(), 2);
    assert_eq!(f.skipped(), 3);

    assert_eq!(kh.check("db1.example", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(kh.check("10.0.0.5", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(kh.check("DB1.EXAMPLE", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(
        kh.check("db1.example", 22, &key(K2)),
        Verdict::Mismatch {
            expected: vec![K1_FP.to_string()]
        }
    );
    // Port 2222 entries only match `[host]:2222`.
    assert_eq!(kh.check("db2.example", 2222, &key(K2)), Verdict::Trusted);
    assert_eq!(kh.check("db2.example", 22, &key(K2)), Verdict::Unknown);
    assert_eq!(kh.check("db1.example", 2222, &key(K1)), Verdict::Unknown);
    assert_eq!(kh.check("other", 22, &key(K1)), Verdict::Unknown);
    assert_eq!(
        kh.algorithms_for("db1.example", 22),
        vec![Algorithm::Ed25519]
    );
}

#[test]
fn hashed_entries_from_ssh_keygen_h() {
    // `ssh-keygen -H` of the two plain lines above.
    let text = format!(
        "|1|yGjBpZ93xy8r2sj19qoI2cEVHqc=|zany/szOrFwRPI1XO/7dZW4RU80= ssh-ed25519 {K1}\n\
         |1|vOKBDQuWyF7WUR6YY4E4tlrYOss=|PDcHvkmowdpZxCpZwOSA8eFkMBQ= ssh-ed25519 {K1}\n\
         |1|R07vaQChsEhOYf3Z50t3latcyzQ=|Ei5hOcLJLxF0Js7rUt4OyafsPt0= ssh-ed25519 {K2}\n\
         |1|garbage ssh-ed25519 {K2}\n"
    );
    let kh = KnownHosts::parse(&text);
    assert_eq!(kh.check("db1.example", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(kh.check("10.0.0.5", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(kh.check("db2.example", 2222, &key(K2)), Verdict::Trusted);
    assert_eq!(kh.check("db3.example", 22, &key(K1)), Verdict::Unknown);
    assert!(matches!(
        kh.check("db1.example", 22, &key(K2)),
        Verdict::Mismatch { .. }
    ));
}

#[test]
fn wildcards_negation_and_revoked() {
    let text = format!(
        "*.db.example,!bad.db.example ssh-ed25519 {K1}\n\
         10.0.0.? ssh-ed25519 {K2}\n\
         @revoked * ssh-ed25519 {K2}\n"
    );
    let kh = KnownHosts::parse(&text);
    assert_eq!(kh.check("a.db.example", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(kh.check("bad.db.example", 22, &key(K1)), Verdict::Unknown);
    // K2 matches the `10.0.0.?` line but is revoked everywhere.
    assert_eq!(
        kh.check("10.0.0.7", 22, &key(K2)),
        Verdict::Mismatch { expected: vec![] }
    );
    assert_eq!(kh.check("10.0.0.17", 22, &key(K1)), Verdict::Unknown);
}

#[test]
fn several_keys_for_one_host_any_matches() {
    let text = format!("h ssh-ed25519 {K1}\nh ssh-ed25519 {K2}\n");
    let kh = KnownHosts::parse(&text);
    assert_eq!(kh.check("h", 22, &key(K2)), Verdict::Trusted);
}

#[test]
fn pinned_and_tofu() {
    let pinned = KnownHosts::Pinned(K1_FP.to_string());
    assert_eq!(pinned.check("x", 22, &key(K1)), Verdict::Trusted);
    assert_eq!(
        pinned.check("x", 22, &key(K2)),
        Verdict::Mismatch {
            expected: vec![K1_FP.to_string()]
        }
    );
    assert_eq!(
        KnownHosts::TrustFirstUse.check("x", 22, &key(K2)),
        Verdict::Trusted
    );
}

#[test]
fn glob_edge_cases() {
    assert!(glob("*", "anything"));
    assert!(glob("a*c", "abbbc"));
    assert!(!glob("a*c", "abbbd"));
    assert!(glob("??", "ab"));
    assert!(!glob("??", "abc"));
    assert!(glob("", ""));
    assert!(!glob("", "a"));
}
