//! Invite codes against real `webrtc` 0.21.1 peers on loopback: the offer and the answer travel
//! only as compact codes (SDP rebuilt from the essentials), the connection comes up, and a message
//! crosses a data channel each way. The lz form is checked against webrtc the same way.
//! Needs the `native` feature (webrtc, tokio).
#![cfg(feature = "native")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lansync::invite::{self, CodeKind};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription, SettingEngineBuilder,
};

/// Reports gathering completion and the data channels the remote side opens.
///
/// The trait is declared with `#[async_trait]`; its methods are implemented here in the form
/// that macro expands to, so the test needs no extra dev-dependency.
struct Events {
    gathered: mpsc::UnboundedSender<()>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

impl PeerConnectionEventHandler for Events {
    fn on_ice_gathering_state_change<'a, 'b>(
        &'a self,
        state: RTCIceGatheringState,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if state == RTCIceGatheringState::Complete {
                let _ = self.gathered.send(());
            }
        })
    }

    fn on_data_channel<'a, 'b>(
        &'a self,
        dc: Arc<dyn DataChannel>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let _ = self.channels.send(dc);
        })
    }
}

struct Peer {
    pc: Box<dyn PeerConnection>,
    gathered: mpsc::UnboundedReceiver<()>,
    channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

/// A peer on loopback with the ICE credentials the transport can choose (shortest legal: 4-char
/// ufrag, 22-char pwd) and mDNS off, so its one candidate is a plain IP address.
async fn peer(ufrag: &str, pwd: &str) -> Peer {
    let (gathered_tx, gathered) = mpsc::unbounded_channel();
    let (channels_tx, channels) = mpsc::unbounded_channel();
    let settings = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.to_string(), pwd.to_string())
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(settings)
        .with_handler(Arc::new(Events {
            gathered: gathered_tx,
            channels: channels_tx,
        }))
        .with_runtime(webrtc::runtime::default_runtime().expect("tokio runtime feature"))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .expect("peer connection");
    Peer {
        pc: Box::new(pc),
        gathered,
        channels,
    }
}

/// Non-trickle: wait for gathering, then read the local description with all candidates.
async fn local_sdp(p: &mut Peer) -> String {
    tokio::time::timeout(Duration::from_secs(5), p.gathered.recv())
        .await
        .expect("ICE gathering completes");
    p.pc.local_description()
        .await
        .expect("local description")
        .sdp
}

/// Waits for `OnOpen` on a channel we created.
async fn opened(dc: &Arc<dyn DataChannel>) {
    loop {
        match dc.poll().await {
            Some(DataChannelEvent::OnOpen) => return,
            Some(DataChannelEvent::OnClose) | None => panic!("channel closed before opening"),
            _ => {}
        }
    }
}

/// The next text message on a channel.
async fn message(dc: &Arc<dyn DataChannel>) -> String {
    loop {
        match dc.poll().await {
            Some(DataChannelEvent::OnMessage(m)) => {
                return String::from_utf8(m.data.to_vec()).expect("utf-8");
            }
            Some(DataChannelEvent::OnClose) | None => panic!("channel closed before a message"),
            _ => {}
        }
    }
}

/// Pairs two real peers through codes made by `encode`; returns the offer code's length.
async fn pair_through(encode: fn(CodeKind, &str) -> String) -> usize {
    let mut a = peer("abcd", "0123456789abcdefghijkl").await;
    let mut b = peer("wxyz", "ABCDEFGHIJKLMNOPQRSTUV").await;

    // A: two channels, as the product uses (control + binary), then the offer.
    let control = a.pc.create_data_channel("control", None).await.unwrap();
    let _binary = a.pc.create_data_channel("binary", None).await.unwrap();
    let offer = a.pc.create_offer(None).await.unwrap();
    a.pc.set_local_description(offer).await.unwrap();
    let offer_sdp = local_sdp(&mut a).await;
    let offer_code = encode(CodeKind::Offer, &offer_sdp);
    println!("offer SDP from webrtc 0.21.1:\n{offer_sdp}");
    println!("offer code ({} chars): {offer_code}", offer_code.len());

    // B: only the code crosses over.
    let invite = invite::decode(&offer_code).expect("offer code decodes");
    invite::expect_kind(&invite, CodeKind::Offer).unwrap();
    b.pc.set_remote_description(RTCSessionDescription::offer(invite.sdp).unwrap())
        .await
        .expect("webrtc accepts the rebuilt offer");
    let answer = b.pc.create_answer(None).await.unwrap();
    b.pc.set_local_description(answer).await.unwrap();
    let answer_sdp = local_sdp(&mut b).await;
    let answer_code = encode(CodeKind::Answer, &answer_sdp);
    println!("answer SDP from webrtc 0.21.1:\n{answer_sdp}");
    println!("answer code ({} chars): {answer_code}", answer_code.len());

    // A: the answer code back.
    let reply = invite::decode(&answer_code).expect("answer code decodes");
    invite::expect_kind(&reply, CodeKind::Answer).unwrap();
    assert_eq!(
        invite::expect_kind(&reply, CodeKind::Offer),
        Err(invite::InviteError::NotAnOffer)
    );
    a.pc.set_remote_description(RTCSessionDescription::answer(reply.sdp).unwrap())
        .await
        .expect("webrtc accepts the rebuilt answer");

    tokio::time::timeout(Duration::from_secs(10), async {
        opened(&control).await;
        // B sees both channels; find "control".
        let mut remote_control = None;
        while remote_control.is_none() {
            let dc = b.channels.recv().await.expect("remote channel");
            if dc.label().await.unwrap() == "control" {
                remote_control = Some(dc);
            }
        }
        let remote_control = remote_control.unwrap();
        control.send_text("hello from A").await.unwrap();
        assert_eq!(message(&remote_control).await, "hello from A");
        remote_control.send_text("hello from B").await.unwrap();
        assert_eq!(message(&control).await, "hello from B");
    })
    .await
    .expect("connected and exchanged messages within 10 s");

    a.pc.close().await.unwrap();
    b.pc.close().await.unwrap();
    offer_code.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_codes_pair_real_webrtc_peers() {
    let len = pair_through(|kind, sdp| invite::encode_compact(kind, sdp).expect("compact")).await;
    // One loopback candidate, 4/22-char credentials.
    assert!(len <= 100, "offer code is {len} characters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_form_codes_pair_real_webrtc_peers() {
    pair_through(|kind, sdp| {
        invite::pair_url(&invite::encode_compact_url(kind, sdp).expect("compact url"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz_codes_pair_real_webrtc_peers() {
    pair_through(invite::encode_lz).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_webrtc_offer_code_and_qr() {
    // webrtc's own random credentials (16/32 characters): longer, still one QR code.
    let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
    let (channels_tx, _channels) = mpsc::unbounded_channel();
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(settings)
        .with_handler(Arc::new(Events {
            gathered: gathered_tx,
            channels: channels_tx,
        }))
        .with_runtime(webrtc::runtime::default_runtime().unwrap())
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .unwrap();
    let _dc = pc.create_data_channel("control", None).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), gathered.recv())
        .await
        .unwrap();
    let sdp = pc.local_description().await.unwrap().sdp;
    let code = invite::encode_compact(CodeKind::Offer, &sdp).unwrap();
    assert_eq!(code.len(), 3 + 120, "{code}");
    let png = std::env::temp_dir().join("lansync-invite-offer.png");
    invite::qr::write_qr_png(&code, &png).unwrap();
    println!("{}", invite::qr::qr_terminal(&code));
    println!("QR written to {}", png.display());
    pc.close().await.unwrap();
}

/// An invite made by a browser app: Chromium's own SDP offer, lz-compressed by the JavaScript
/// `lz-string` package exactly as the seed-004 apps do. lansync must read it, be able to shrink
/// it to a compact code, and answer it with its own transport.
#[tokio::test]
async fn an_lz_code_made_by_a_browser_app_is_accepted_and_answered() {
    let vector: serde_json::Value =
        serde_json::from_str(include_str!("../src/invite/testdata/chromium_offer.json")).unwrap();
    let code = vector["code"].as_str().unwrap();
    let sdp = vector["sdp"].as_str().unwrap();

    let invite = lansync::invite::decode(code).expect("the browser's code decodes");
    assert_eq!(invite.kind, lansync::invite::CodeKind::Offer);
    assert_eq!(invite.sdp, sdp, "the SDP comes out byte for byte");

    let compact = lansync::invite::encode_compact(invite.kind, &invite.sdp).unwrap();
    assert!(
        compact.len() < code.len() / 4,
        "compact {} vs lz {}",
        compact.len(),
        code.len()
    );
    let again = lansync::invite::decode(&compact).unwrap();
    assert!(again.sdp.contains("a=ice-ufrag:"));

    let cfg = lansync::transport::TransportConfig {
        loopback_only: true,
        ..Default::default()
    };
    let (answer, _link) = lansync::transport::accept_offer(&cfg, &invite.sdp)
        .await
        .expect("our transport answers a browser's offer");
    assert!(answer.contains("a=setup:active"), "{answer}");
    let code = lansync::invite::encode_lz(lansync::invite::CodeKind::Answer, &answer);
    assert_eq!(
        lansync::invite::decode(&code).unwrap().kind,
        lansync::invite::CodeKind::Answer
    );
}
