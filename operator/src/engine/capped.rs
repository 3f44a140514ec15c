//! HTTP response bodies read up to a limit: a misbehaving or hostile endpoint (a Patroni REST
//! API, HAProxy's statistics) cannot grow the operator's memory past its pod limit.

/// The most any REST or statistics body may hold (Patroni's `/cluster` of a large cluster is a
/// few KiB).
pub const MAX_BODY: usize = 1 << 20;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The transfer failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The body is longer than allowed.
    #[error("response body exceeds {} KiB", .0 >> 10)]
    TooLarge(usize),
}

/// The body of `r`, at most `limit` bytes.
pub async fn body(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `body`, without a Content-Length when
    /// `chunked` (so that only reading can tell the size).
    async fn serve(body: Vec<u8>, chunked: bool) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let head = match chunked {
                true => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
                false => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
            };
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_announced_or_not() {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for chunked in [false, true] {
            let url = serve(vec![b'x'; 5000], chunked).await;
            let r = client.get(url).send().await.unwrap();
            let e = body(r, 4096).await.unwrap_err();
            assert!(matches!(e, BodyError::TooLarge(4096)), "{e}");
            let url = serve(b"{\"ok\":1}".to_vec(), chunked).await;
            let r = client.get(url).send().await.unwrap();
            assert_eq!(body(r, 4096).await.unwrap(), b"{\"ok\":1}");
        }
    }
}
