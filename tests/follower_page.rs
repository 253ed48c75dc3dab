//! The follower page served by the join endpoint (PROTOCOL.md §9.7), over real HTTP on
//! 127.0.0.1: the embedded files with their types and security headers, 404 for the rest, the
//! CORS answers of the join routes, and the rate limit applied to GETs too.
#![cfg(feature = "native")]

use std::net::SocketAddr;
use std::sync::Arc;

use lansync::invite::JoinLink;
use lansync::session::{DoorAuth, DoorReply, DoorSecret};
use lansync::signaling::{serve, Door, JoinServer, OfferIn, CONTENT_SECURITY_POLICY};

const TOKEN: &str = "00112233445566778899aabbccddeeff";

/// A door for a token session that admits everyone.
fn door() -> Door {
    Arc::new(move |q: lansync::session::DoorQuery| {
        let secret = match q.auth {
            DoorAuth::Token => Some(DoorSecret::Token(TOKEN.into())),
            _ => None,
        };
        let reply = DoorReply {
            secret,
            verdict: Ok(()),
        };
        Box::pin(async move { reply })
    })
}

async fn server() -> JoinServer {
    serve("127.0.0.1:0".parse().unwrap(), door(), |_: OfferIn| async {
        Ok("v=0\r\n".to_string())
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_and_its_core_are_served_with_their_types_and_policy() {
    let s = server().await;
    let c = client();
    let cases = [
        ("/", "text/html; charset=utf-8"),
        ("/lansync.js", "text/javascript; charset=utf-8"),
        ("/lansync.css", "text/css; charset=utf-8"),
        ("/lansync_web.js", "text/javascript; charset=utf-8"),
        ("/lansync_web_bg.wasm", "application/wasm"),
    ];
    for (path, content_type) in cases {
        let r = c.get(url(s.local_addr(), path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), content_type, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        let csp = header(&r, "content-security-policy");
        assert_eq!(csp, CONTENT_SECURITY_POLICY, "{path}");
        let body = r.bytes().await.unwrap();
        match path {
            "/" => {
                let html = std::str::from_utf8(&body).unwrap();
                assert!(html.contains(r#"src="/lansync.js""#), "{html}");
                // Nothing inline: the policy forbids it, so the page must not need it.
                assert!(
                    !html.contains("<script>") && !html.contains("style="),
                    "{html}"
                );
            }
            "/lansync.js" => {
                assert!(std::str::from_utf8(&body)
                    .unwrap()
                    .contains("from './lansync_web.js'"))
            }
            "/lansync_web.js" => assert!(std::str::from_utf8(&body)
                .unwrap()
                .contains("lansync_web_bg.wasm")),
            "/lansync_web_bg.wasm" => assert_eq!(&body[..4], b"\0asm"),
            _ => assert!(!body.is_empty()),
        }
    }
    // Scripts and WebAssembly from the page's own origin only; no inline script.
    let csp = CONTENT_SECURITY_POLICY;
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let s = server().await;
    let c = client();
    for path in [
        "/index.html",
        "/favicon.ico",
        "/../Cargo.toml",
        "/v1",
        "/lansync.js/x",
    ] {
        let r = c.get(url(s.local_addr(), path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // The join routes take only POST (and the preflight).
    let r = c.get(url(s.local_addr(), "/v1/join")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // The page is read-only.
    let r = c.post(url(s.local_addr(), "/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    s.shutdown().await;
}

#[tokio::test]
async fn a_preflight_is_answered_204_with_the_cors_policy() {
    let s = server().await;
    let c = client();
    for path in ["/v1/join/start", "/v1/join"] {
        let r = c
            .request(reqwest::Method::OPTIONS, url(s.local_addr(), path))
            .header("origin", "http://192.168.1.9:8000")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(header(&r, "access-control-allow-origin"), "*", "{path}");
        assert_eq!(header(&r, "access-control-allow-methods"), "POST", "{path}");
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            "content-type",
            "{path}"
        );
        assert_eq!(header(&r, "access-control-max-age"), "600", "{path}");
        // No credentials are ever used: a wildcard origin never comes with them.
        assert_eq!(header(&r, "access-control-allow-credentials"), "", "{path}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn join_answers_and_refusals_carry_allow_origin() {
    let s = server().await;
    let c = client();
    let post = |path: &str, body: String| {
        c.post(url(s.local_addr(), path))
            .header("origin", "http://192.168.1.9:8000")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let start = r#"{"v":2,"auth":"token","device_id":"web-1"}"#.to_string();
    let r = post("/v1/join/start", start).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    let refusals = [
        ("/v1/join/start", "not json".to_string(), 400),
        ("/v1/join/start", r#"{"v":1}"#.to_string(), 400),
        (
            "/v1/join",
            format!(
                r#"{{"v":2,"nonce":"{}","device_id":"web-1","offer":"v=0","proof":"{}"}}"#,
                "0".repeat(64),
                "0".repeat(64)
            ),
            403,
        ),
    ];
    for (path, body, status) in refusals {
        let r = post(path, body).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(header(&r, "access-control-allow-origin"), "*", "{path}");
    }
    // The page's own files are same-origin only: no CORS header there.
    let r = c.get(url(s.local_addr(), "/")).send().await.unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    s.shutdown().await;
}

#[tokio::test]
async fn page_requests_have_their_own_rate_limit_and_leave_the_joins_alone() {
    let s = server().await;
    let c = client();
    // The page's bucket holds 40 and refills 20 per second: 150 requests on loopback (well under
    // a second) must meet it, whatever the machine's speed within reason — and not before two
    // loads with a reload each (5 files a load).
    let mut limited = None;
    for i in 0..150 {
        let r = c.get(url(s.local_addr(), "/")).send().await.unwrap();
        if r.status() == 429 {
            assert_eq!(header(&r, "retry-after"), "1");
            limited = Some(i);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let limited = limited.expect("150 GETs in a row were never rate limited");
    assert!(limited >= 20, "limited after only {limited} requests");
    // The join's own budget is untouched: a start right after is answered, not 429.
    let start = c
        .post(url(s.local_addr(), "/v1/join/start"))
        .json(&serde_json::json!({"v":2,"auth":"token","device_id":"phone-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    s.shutdown().await;
}

#[tokio::test]
async fn a_browser_taking_gzip_gets_the_files_gzipped_under_their_own_tag() {
    use std::io::Read;
    let s = server().await;
    let c = client();
    let get = |enc: Option<&'static str>| {
        let mut r = c.get(url(s.local_addr(), "/lansync_web_bg.wasm"));
        if let Some(enc) = enc {
            r = r.header("accept-encoding", enc);
        }
        r.send()
    };
    let plain = get(None).await.unwrap();
    let plain_tag = header(&plain, "etag");
    assert_eq!(header(&plain, "content-encoding"), "");
    let plain = plain.bytes().await.unwrap();
    let gz = get(Some("gzip, deflate, br")).await.unwrap();
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    assert_eq!(header(&gz, "vary"), "accept-encoding");
    let gz_tag = header(&gz, "etag");
    assert_ne!(gz_tag, plain_tag);
    let body = gz.bytes().await.unwrap();
    assert!(
        body.len() * 2 < plain.len(),
        "{} vs {}",
        body.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    // Refused with q=0: the file as it is.
    let refused = get(Some("gzip;q=0, br")).await.unwrap();
    assert_eq!(header(&refused, "content-encoding"), "");
    let again = c
        .get(url(s.local_addr(), "/lansync_web_bg.wasm"))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    s.shutdown().await;
}

#[tokio::test]
async fn a_revalidated_file_is_answered_304_without_a_body() {
    let s = server().await;
    let c = client();
    let first = c
        .get(url(s.local_addr(), "/lansync_web_bg.wasm"))
        .send()
        .await
        .unwrap();
    let tag = header(&first, "etag");
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
    let again = c
        .get(url(s.local_addr(), "/lansync_web_bg.wasm"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), tag);
    assert!(again.bytes().await.unwrap().is_empty());
    // Another file's tag, or a stale one, gets the file.
    let other = c
        .get(url(s.local_addr(), "/"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_ne!(header(&other, "etag"), tag);
    s.shutdown().await;
}

#[test]
fn the_phones_url_opens_the_page_at_the_join_endpoint() {
    let link = JoinLink::parse(&format!(
        "lansync://join?h=192.168.1.5:47321&c=ABCD-EFGH&t={TOKEN}&f={}",
        "ab".repeat(32)
    ))
    .unwrap();
    let page = link.to_page_url();
    assert!(page.starts_with("http://192.168.1.5:47321/#h=192.168.1.5:47321&c=ABCD-EFGH&t="));
    let (_, fragment) = page.split_once('#').unwrap();
    assert_eq!(JoinLink::parse_fragment(fragment).unwrap(), link);
}
