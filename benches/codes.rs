//! Invite code figures: code lengths for 1, 2 and 4 LAN candidates (compact vs lz-string vs the
//! raw SDP), and encode/decode time medians. One JSON object per line on stdout.
//!
//! Run: `cargo bench --bench codes`.

use std::hint::black_box;
use std::time::Instant;

use lansync::invite::{self, CodeKind};

/// The session part of an offer as `webrtc` 0.21.1 writes it for a data-channel-only connection
/// (captured from a real peer; candidates are appended below, one line per ICE component, as
/// webrtc writes them).
const WEBRTC_OFFER_HEAD: &str = "v=0\r\n\
o=- 4124386912552921655 572330704 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=fingerprint:sha-256 B3:B9:A1:C5:C7:CA:F8:68:BF:FA:74:0D:EE:5E:91:A0:DD:0D:2F:84:F1:29:01:D6:48:D5:DF:83:B0:01:66:AF\r\n\
a=extmap-allow-mixed\r\n\
a=group:BUNDLE 0\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=sctp-port:5000\r\n\
a=max-message-size:65536\r\n";

/// webrtc's default random ICE credentials (16 and 32 characters).
const DEFAULT_CREDS: (&str, &str) = ("IDRwORXnAoIcgCJO", "ldZOpbMkSCzVLLUxjsGbBSJeMjsphCZN");
/// The shortest legal credentials, which the transport can set (4 and 22 characters).
const SHORT_CREDS: (&str, &str) = ("abcd", "0123456789abcdefghijkl");

fn offer(candidates: usize, (ufrag, pwd): (&str, &str)) -> String {
    let mut sdp = String::from(WEBRTC_OFFER_HEAD);
    sdp.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    for i in 0..candidates {
        for component in 1..=2 {
            sdp.push_str(&format!(
                "a=candidate:{} {component} udp 2130706431 192.168.1.{} {} typ host\r\n",
                607854466 + i,
                20 + i,
                55944 + i
            ));
        }
    }
    sdp.push_str("a=end-of-candidates\r\n");
    sdp
}

/// Median time of one call, in nanoseconds: 51 batches, each long enough to time reliably.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut per_batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        if t.elapsed().as_micros() >= 2000 || per_batch >= 1 << 20 {
            break;
        }
        per_batch *= 2;
    }
    let mut samples: Vec<f64> = (0..51)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    for n in [1usize, 2, 4] {
        let default_sdp = offer(n, DEFAULT_CREDS);
        let short_sdp = offer(n, SHORT_CREDS);
        let compact_default = invite::encode_compact(CodeKind::Offer, &default_sdp).unwrap();
        let compact_short = invite::encode_compact(CodeKind::Offer, &short_sdp).unwrap();
        let compact_url_short = invite::encode_compact_url(CodeKind::Offer, &short_sdp).unwrap();
        let lz_json = invite::encode_lz(CodeKind::Offer, &default_sdp);
        let lz_raw = invite::lz::compress_to_encoded_uri_component(&default_sdp);
        println!(
            "{{\"bench\":\"invite_code_length\",\"candidates\":{n},\
             \"raw_sdp\":{},\"lz_json\":{},\"lz_raw_sdp\":{},\
             \"compact_default_creds\":{},\"compact_short_creds\":{},\
             \"compact_url_short_creds\":{}}}",
            default_sdp.len(),
            lz_json.len(),
            lz_raw.len(),
            compact_default.len(),
            compact_short.len(),
            compact_url_short.len(),
        );
    }

    let sdp = offer(2, DEFAULT_CREDS);
    let compact = invite::encode_compact(CodeKind::Offer, &sdp).unwrap();
    let lz = invite::encode_lz(CodeKind::Offer, &sdp);
    let timings = [
        (
            "encode_compact",
            median_ns(|| {
                black_box(invite::encode_compact(CodeKind::Offer, black_box(&sdp)).unwrap());
            }),
        ),
        (
            "decode_compact",
            median_ns(|| {
                black_box(invite::decode(black_box(&compact)).unwrap());
            }),
        ),
        (
            "encode_lz",
            median_ns(|| {
                black_box(invite::encode_lz(CodeKind::Offer, black_box(&sdp)));
            }),
        ),
        (
            "decode_lz",
            median_ns(|| {
                black_box(invite::decode(black_box(&lz)).unwrap());
            }),
        ),
    ];
    for (op, ns) in timings {
        println!(
            "{{\"bench\":\"invite_code_time\",\"op\":\"{op}\",\"candidates\":2,\"median_us\":{:.2}}}",
            ns / 1000.0
        );
    }
}
