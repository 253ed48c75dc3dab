//! The follower page the join endpoint serves (PROTOCOL.md §9.7): a phone that opens the phones'
//! URL gets `index.html`, its script and style, and lansync's pure core compiled to WebAssembly
//! (built by `web/build.sh` into `web/dist/`, embedded here). Also the CORS answers that let a
//! page of another origin post the join requests: every request proves its secret by HMAC
//! (PROTOCOL.md §9.2) and no cookie or credential is ever used, so a wildcard origin grants
//! nothing.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use std::net::SocketAddr;

use super::limiter::{bucket_check, RateLimit};
use super::Shared;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// What the page may do: its own scripts and the core's WebAssembly, requests to its own origin
/// (the join endpoint), and pictures and documents only from the verified files it holds (blob
/// URLs). Nothing inline, nothing from elsewhere, never framed.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     connect-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src blob:; \
     frame-src blob:; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page's own rate limit per source address: a load is five files, a reload five more, and
/// a revalidation answered `304` costs no body — so a person reloading never meets it, while a
/// flood still does. Never below the join's own limit (a loopback host lifts both).
pub fn page_rate(join: RateLimit) -> RateLimit {
    RateLimit {
        per_sec: join.per_sec.max(20.0),
        burst: join.burst.max(40.0),
    }
}

/// How long a browser may reuse a CORS preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// One embedded file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the page is made of, at the paths `index.html` and the scripts name.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../web/static/index.html"),
    },
    Asset {
        path: "/lansync.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/static/lansync.js"),
    },
    Asset {
        path: "/lansync.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/static/lansync.css"),
    },
    Asset {
        path: "/lansync_web.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/lansync_web.js"),
    },
    Asset {
        path: "/lansync_web_bg.wasm",
        content_type: "application/wasm",
        bytes: include_bytes!("../../../web/dist/lansync_web_bg.wasm"),
    },
];

/// The page's GET routes, CORS on the join routes (`post` of each path), and a 404 for the
/// rest; GETs under the page's own rate limit ([`page_rate`]), the joins under theirs
/// (PROTOCOL.md §9.3).
pub(super) fn routes(
    router: Router<Arc<Shared>>,
    join_routes: [(&'static str, MethodRouter<Arc<Shared>>); 2],
) -> Router<Arc<Shared>> {
    let mut router = router;
    for (path, post) in join_routes {
        router = router.route(
            path,
            post.options(preflight)
                .layer(axum::middleware::map_response(allow_any_origin)),
        );
    }
    for (i, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |state, peer, headers| serve_asset(state, peer, headers, i)),
        );
    }
    router.fallback(not_found)
}

/// Each asset's entity tags, plain and gzipped (another representation, another tag): its
/// SHA-256, so a phone revalidating (`no-cache`) gets `304` and no body — the WebAssembly is
/// most of a megabyte. Made once.
fn etag(index: usize, gzip: bool) -> &'static str {
    static TAGS: OnceLock<Vec<[String; 2]>> = OnceLock::new();
    let tags = &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = hex::encode(&Sha256::digest(a.bytes)[..16]);
                [format!("\"{hash}\""), format!("\"{hash}-gz\"")]
            })
            .collect()
    })[index];
    &tags[usize::from(gzip)]
}

/// Each asset gzipped, made once when the endpoint first serves the page (the WebAssembly
/// shrinks to about a third: 0.3 MB instead of 0.9 MB for each phone on the rehearsal's Wi-Fi).
fn gzipped(index: usize) -> &'static [u8] {
    static GZIPPED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &GZIPPED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut gz = GzEncoder::new(Vec::new(), Compression::best());
                // Writing to a Vec cannot fail; an empty result would only be larger, not wrong.
                let _ = gz.write_all(a.bytes);
                gz.finish().unwrap_or_default()
            })
            .collect()
    })[index]
}

/// Makes the gzipped files ahead of the first phone (run on a blocking thread when the
/// endpoint starts).
pub(super) fn prepare() {
    for i in 0..ASSETS.len() {
        let _ = gzipped(i);
    }
}

/// The comma-separated items of every `name` header of a request.
fn header_items(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether the request takes gzip (`Accept-Encoding`, a `q=0` refusing it).
fn takes_gzip(headers: &HeaderMap) -> bool {
    header_items(headers, header::ACCEPT_ENCODING).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|p| p.replace(' ', "") == "q=0");
        name.eq_ignore_ascii_case("gzip") && !refused
    })
}

async fn serve_asset(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    index: usize,
) -> Response {
    if let Err(refusal) = bucket_check(&shared.page_limiter, peer) {
        return refusal.into_response();
    }
    let asset = &ASSETS[index];
    let gzip = takes_gzip(&headers);
    let tag = etag(index, gzip);
    let known = header_items(&headers, header::IF_NONE_MATCH).any(|t| t == tag || t == "*");
    let etag = HeaderValue::from_static(tag);
    if known {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::VARY, "accept-encoding"),
        ],
        if gzip { gzipped(index) } else { asset.bytes },
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

async fn not_found(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Err(refusal) = bucket_check(&shared.page_limiter, peer) {
        return refusal.into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// The answer to a CORS preflight of a join request: POST with a JSON body, from any origin.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "POST"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    )
        .into_response()
}

/// Every answer of the join routes, refusals included, may be read by a page of any origin.
async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
