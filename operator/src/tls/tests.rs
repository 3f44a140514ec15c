use std::time::Duration;

use time::OffsetDateTime;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn server(host: &str) -> Request {
    Request {
        common_name: host.into(),
        names: vec![host.into(), "db.example.com".into()],
        usage: Usage::Peer,
    }
}

#[test]
fn a_host_certificate_is_signed_by_the_cluster_ca_with_its_names() {
    let ca = new_ca("ns/pg-ha", now(), 3650 * DAY).unwrap();
    let leaf = issue(&ca, &server("10.0.0.11"), now(), 90 * DAY).unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert.as_bytes()).unwrap();
    let ca_x509 = ca_pem.parse_x509().unwrap();
    let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(leaf.cert.as_bytes()).unwrap();
    let leaf_x509 = leaf_pem.parse_x509().unwrap();
    leaf_x509
        .verify_signature(Some(ca_x509.public_key()))
        .expect("signed by the CA");
    assert!(ca_x509.is_ca());
    assert_eq!(leaf_x509.issuer(), ca_x509.subject());
    let seen = inspect(&leaf.cert, &ca.cert).unwrap();
    assert_eq!(seen.names, ["10.0.0.11", "db.example.com"]);
    assert!(seen.by_ca);
    assert_eq!(seen.not_after, now() + 90 * DAY);
    let other = new_ca("ns/other", now(), 3650 * DAY).unwrap();
    let (_, other_pem) = x509_parser::pem::parse_x509_pem(other.cert.as_bytes()).unwrap();
    assert!(
        leaf_x509
            .verify_signature(Some(other_pem.parse_x509().unwrap().public_key()))
            .is_err(),
        "another cluster's CA does not vouch for it"
    );
    let seen = inspect(&leaf.cert, &other.cert).unwrap();
    assert!(!seen.by_ca);
    assert!(renewal_due(&seen, &seen.names.clone(), now(), DAY).is_some());
}

#[test]
fn renewal_is_due_inside_the_margin_or_when_names_change() {
    let ca = new_ca("c", now(), 3650 * DAY).unwrap();
    let leaf = issue(&ca, &server("h1"), now(), 90 * DAY).unwrap();
    let seen = inspect(&leaf.cert, &ca.cert).unwrap();
    let names = vec!["h1".to_string(), "db.example.com".to_string()];
    assert_eq!(renewal_due(&seen, &names, now(), 7 * DAY), None);
    assert_eq!(
        renewal_due(&seen, &names, now() + 82 * DAY, 7 * DAY),
        None,
        "8 days left"
    );
    assert!(renewal_due(&seen, &names, now() + 83 * DAY, 7 * DAY).is_some());
    let server_only = Request {
        usage: Usage::Server,
        ..server("h1")
    };
    let old = inspect(
        &issue(&ca, &server_only, now(), 90 * DAY).unwrap().cert,
        &ca.cert,
    )
    .unwrap();
    assert!(!old.client_auth && seen.client_auth);
    let why = renewal_due(&old, &names, now(), 7 * DAY).unwrap();
    assert!(why.contains("client"), "{why}");
    let moved = vec!["h1".to_string(), "db2.example.com".to_string()];
    assert!(
        renewal_due(&seen, &moved, now(), 7 * DAY)
            .unwrap()
            .contains("names")
    );
}

#[test]
fn usages_and_secrets() {
    let ca = new_ca("c", now(), 3650 * DAY).unwrap();
    let client = Request {
        common_name: "pgmetal".into(),
        names: vec![],
        usage: Usage::Client,
    };
    let c = issue(&ca, &client, now(), 90 * DAY).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(c.cert.as_bytes()).unwrap();
    let x = pem.parse_x509().unwrap();
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(
        !format!("{c:?}").contains("PRIVATE KEY"),
        "keys never in Debug"
    );
    assert!(c.key.0.contains("PRIVATE KEY"));
}

#[test]
fn a_provided_ca_must_be_a_self_signed_ca_with_its_own_key() {
    let ca = new_ca("given", now(), 3650 * DAY).unwrap();
    check_ca(&ca).expect("a CA pgmetal made passes");
    let other = new_ca("other", now(), 3650 * DAY).unwrap();
    let wrong_key = CertKey {
        cert: ca.cert.clone(),
        key: other.key.clone(),
    };
    let e = check_ca(&wrong_key).unwrap_err().to_string();
    assert!(e.contains("not the key of tls.crt"), "{e}");
    let leaf = issue(&ca, &server("10.0.0.11"), now(), 90 * DAY).unwrap();
    let e = check_ca(&leaf).unwrap_err().to_string();
    assert!(e.contains("not a CA certificate"), "{e}");
    let e = check_ca(&CertKey {
        cert: "junk".into(),
        key: ca.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e, TlsError::Parse(_)), "{e}");
}
