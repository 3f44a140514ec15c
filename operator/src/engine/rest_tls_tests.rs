//! Unit tests of pgmetal's HTTPS client for Patroni against real TLS and plain servers on
//! loopback: the cluster's CA is the only root, the client certificate is presented, and only
//! a member that does not speak the scheme asked for lets a read fall back.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::tls::{CA_LIFETIME, new_ca};

fn ca(name: &str) -> CertKey {
    new_ca(name, OffsetDateTime::now_utc(), CA_LIFETIME).unwrap()
}

fn server_cert(ca: &CertKey) -> CertKey {
    let req = Request {
        common_name: "127.0.0.1".into(),
        names: vec!["127.0.0.1".into()],
        usage: Usage::Server,
    };
    tls::issue(ca, &req, OffsetDateTime::now_utc(), CLIENT_LIFETIME).unwrap()
}

/// A one-connection HTTPS server on loopback with `cert`, requiring a client certificate
/// signed by `client_ca`. Returns its port and, once done, the client's common names seen.
fn https_server(cert: &CertKey, client_ca: &CertKey) -> (u16, std::thread::JoinHandle<bool>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client_ca.cert.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key.0.as_bytes()).unwrap(),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4096];
        if tls.read(&mut buf).is_err() {
            return false;
        }
        let presented = tls.conn.peer_certificates().is_some_and(|c| !c.is_empty());
        let body = r#"{"role":"primary"}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.write_all(reply.as_bytes());
        let _ = tls.flush();
        presented
    });
    (port, done)
}

/// A one-connection plain HTTP server answering like Python's HTTP server does to a ClientHello.
fn plain_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        let _ = tcp.write_all(b"HTTP/1.0 400 Bad request version\r\n\r\n");
    });
    port
}

#[tokio::test]
async fn the_client_trusts_only_the_clusters_ca_and_presents_its_certificate() {
    let cluster = ca("c");
    let tls = ClientTls::issue(&cluster, OffsetDateTime::now_utc()).unwrap();
    let (port, seen) = https_server(&server_cert(&cluster), &cluster);
    let got = client(Some(&tls), &[])
        .get(format!("https://127.0.0.1:{port}/patroni"))
        .send()
        .await
        .expect("the cluster's own server is trusted");
    assert_eq!(got.status(), 200);
    assert!(seen.join().unwrap(), "the client certificate was presented");

    // A server whose certificate another CA signed is refused, and no fallback is offered.
    let other = ca("other");
    let (port, _) = https_server(&server_cert(&other), &cluster);
    let e = client(Some(&tls), &[])
        .get(format!("https://127.0.0.1:{port}/patroni"))
        .send()
        .await
        .unwrap_err();
    assert!(!speaks_other_scheme(&e, Scheme::Https), "{e:?}");
}

#[tokio::test]
async fn a_plain_member_is_told_apart_from_a_refused_connection() {
    let cluster = ca("c");
    let tls = ClientTls::issue(&cluster, OffsetDateTime::now_utc()).unwrap();
    let port = plain_server();
    let e = client(Some(&tls), &[])
        .get(format!("https://127.0.0.1:{port}/patroni"))
        .send()
        .await
        .unwrap_err();
    assert!(speaks_other_scheme(&e, Scheme::Https), "{e:?}");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for scheme in [Scheme::Https, Scheme::Http] {
        let e = client(Some(&tls), &[])
            .get(format!("{}://127.0.0.1:{port}/patroni", scheme.as_str()))
            .send()
            .await
            .unwrap_err();
        assert!(!speaks_other_scheme(&e, scheme), "{scheme:?}: {e:?}");
    }
}

#[test]
fn the_client_identity_never_shows_its_key() {
    let tls = ClientTls::issue(&ca("c"), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(format!("{tls:?}"), "ClientTls(<CA and client identity>)");
}

#[tokio::test]
async fn a_ca_the_hosts_still_serve_from_is_trusted_when_given() {
    let (cluster, former) = (ca("new"), ca("former"));
    let tls = ClientTls::issue(&cluster, OffsetDateTime::now_utc()).unwrap();
    // A member still serving its certificate from the former CA (and verifying clients with it
    // too would refuse ours, so this server asks for the new one).
    let (port, _) = https_server(&server_cert(&former), &cluster);
    let url = format!("https://127.0.0.1:{port}/patroni");
    let e = client(Some(&tls), &[]).get(&url).send().await.unwrap_err();
    assert!(!speaks_other_scheme(&e, Scheme::Https));
    let (port, _) = https_server(&server_cert(&former), &cluster);
    let url = format!("https://127.0.0.1:{port}/patroni");
    let got = client(Some(&tls), std::slice::from_ref(&former.cert))
        .get(&url)
        .send()
        .await
        .expect("the former CA is trusted while it is replaced");
    assert_eq!(got.status(), 200);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    // Whoever answers in a member's place redirects to another listener: the client stops at
    // the redirect, so neither the request nor its password reaches that listener.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = elsewhere.local_addr().unwrap().port();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf);
        let moved = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target}/cluster\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = tcp.write_all(moved.as_bytes());
    });
    let r = client(None, &[])
        .get(format!("http://127.0.0.1:{port}/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FOUND);
    elsewhere.set_nonblocking(true).unwrap();
    assert!(elsewhere.accept().is_err(), "the redirect was followed");
}
