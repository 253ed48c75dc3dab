//! Reading a join request's body under its limits (PROTOCOL.md §9.3, check 2): at most
//! [`MAX_BODY`] bytes, within a time limit; a refused body is drained so the refusal arrives.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderMap};

use super::checks::Refusal;
use crate::signaling::wire::MAX_BODY;

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// After refusing an oversized body, how much of it (and for how long) is read and thrown away
/// so the connection closes cleanly: closing a socket with unread data makes the kernel send a
/// reset, which can destroy our `too_large` answer before the client reads it.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the body, refusing anything over [`MAX_BODY`] as soon as that is known: from
/// `Content-Length` before reading anything, else once the bytes read exceed it.
pub(super) async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        drain_in_background(body);
        return Err(Refusal::TooLarge);
    }
    let read = async {
        let mut buf = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| Refusal::BadRequest(format!("body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_BODY {
                    return Ok(None);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Some(buf))
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(Refusal::BadRequest("body took too long to arrive".into())),
        Ok(Err(refusal)) => Err(refusal),
        Ok(Ok(Some(buf))) => Ok(Bytes::from(buf)),
        Ok(Ok(None)) => {
            drain_in_background(body);
            Err(Refusal::TooLarge)
        }
    }
}

/// Reads and discards (a bounded amount of) a refused body while the answer goes out.
fn drain_in_background(mut body: Body) {
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while seen < DRAIN_LIMIT {
                match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    Some(Ok(frame)) => {
                        seen += frame.data_ref().map_or(0, |d| d.len());
                    }
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    });
}
