//! The gateway's own listener over TLS (`server.tls_cert` / `server.tls_key`), with a
//! self-signed test certificate for `localhost` and 127.0.0.1 (tests/data/, valid until 2126).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_config(mock: std::net::SocketAddr) -> String {
    base_config(mock, "").replace(
        "max_body_bytes = 1048576",
        &format!(
            "max_body_bytes = 1048576\ntls_cert = {:?}\ntls_key = {:?}",
            data("test-tls.crt"),
            data("test-tls.key")
        ),
    )
}

fn connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(data("test-tls.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn requests_over_tls_reach_the_upstream_and_plain_http_does_not() {
    let mock = Mock::start().await;
    let gw = start_gateway(&tls_config(mock.addr)).await;
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    for alpn in [&[][..], &[&b"http/1.1"[..]][..]] {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut tls = connector(alpn)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("handshake with the test certificate");
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nuser-agent: claude-cli/2.1.332 (external, cli)\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
            .await
            .unwrap()
            .ok();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(mock.seen.lock().unwrap().len(), 2);
    // HTTP/2 is offered by ALPN.
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = connector(&[b"h2", b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let status = tokio::time::timeout(Duration::from_secs(10), plain_status(gw.addr, body))
        .await
        .unwrap();
    assert_eq!(status, None);
    assert_eq!(mock.seen.lock().unwrap().len(), 2);
}

/// Sends a plain-HTTP POST /v1/messages; the status, `None` when no HTTP response came back.
async fn plain_status(addr: std::net::SocketAddr, body: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    out.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
}

#[test]
fn bad_tls_settings_are_refused_naming_the_key() {
    let mock: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let only_cert = base_config(mock, "").replace(
        "max_body_bytes = 1048576",
        &format!(
            "max_body_bytes = 1048576\ntls_cert = {:?}",
            data("test-tls.crt")
        ),
    );
    let e = start_error(&only_cert).to_string();
    assert!(e.contains("server.tls_key"), "{e}");
    let missing = tls_config(mock).replace("test-tls.crt", "no-such.crt");
    let e = start_error(&missing).to_string();
    assert!(
        e.contains("server.tls_cert") && e.contains("no-such.crt"),
        "{e}"
    );
    // A key that is not a key: the certificate file given as the key.
    let swapped = tls_config(mock).replace("test-tls.key", "test-tls.crt");
    let e = start_error(&swapped).to_string();
    assert!(e.contains("server.tls_key"), "{e}");
}
