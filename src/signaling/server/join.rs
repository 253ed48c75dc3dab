//! The join routes (PROTOCOL.md §9.1, §9.3): from a start request to its nonce (and SPAKE2
//! message), and from a join request to the answer signed under the join key.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::body::read_body;
use super::checks::{parse_join, parse_start, Refusal};
use super::limiter::bucket_check;
use super::nonces::{Nonce, Pending, NONCE_TTL};
use super::{OfferIn, PendingAnswer, PendingHold, Shared, PENDING_WAIT};
use crate::auth::{self, hex, unhex, Key};
use crate::protocol::RejectReason;
use crate::session::{DoorQuery, DoorSecret};
use crate::signaling::wire::{JoinAnswer, JoinAuth, JoinRequest, StartReply};

/// What each join route reads: the endpoint's state, the source address, the head and the body.
type JoinCall = (State<Arc<Shared>>, ConnectInfo<SocketAddr>, HeaderMap, Body);

/// `POST /v1/join/start`.
pub(super) async fn start_handler(
    (State(shared), ConnectInfo(peer), headers, body): JoinCall,
) -> Response {
    respond(
        peer,
        "join start",
        handle_start(&shared, peer, &headers, body).await,
    )
}

/// `POST /v1/join`.
pub(super) async fn join_handler(
    (State(shared), ConnectInfo(peer), headers, body): JoinCall,
) -> Response {
    respond(
        peer,
        "join",
        handle_join(&shared, peer, &headers, body).await,
    )
}

/// The JSON body of a route's success, or its refusal (logged: `what` names the route).
fn respond(peer: SocketAddr, what: &str, result: Result<impl Serialize, Refusal>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => {
            tracing::debug!(%peer, ?refusal, "{what} refused");
            refusal.into_response()
        }
    }
}

/// Cheapest check first: a flood costs one map lookup per request.
fn rate_check(shared: &Shared, peer: SocketAddr) -> Result<(), Refusal> {
    bucket_check(&shared.limiter, peer)
}

fn random32() -> Result<[u8; 32], Refusal> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(%e, "no random source");
        Refusal::Reject(RejectReason::Unknown)
    })?;
    Ok(bytes)
}

async fn handle_start(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<StartReply, Refusal> {
    rate_check(shared, peer)?;
    let bytes = read_body(headers, body).await?;
    let req = parse_start(&bytes)?;
    let query = DoorQuery {
        auth: req.auth.door(),
        session_code: req.session_code.clone(),
        device_id: req.device_id.clone(),
    };
    let door = (shared.door)(query).await;
    let (key, pake) = match (req.auth, &door.secret) {
        (JoinAuth::Code, Some(DoorSecret::Code { code, password })) => {
            let msg = req.pake.as_deref().and_then(unhex).unwrap_or_default();
            let (key, reply) = auth::pake_master(code, password, &msg, random32()?)
                .ok_or_else(|| Refusal::BadRequest("pake is not a SPAKE2 message".into()))?;
            (Some(key), Some(hex(&reply)))
        }
        // A code that is not this session's: nothing to run the PAKE with (PROTOCOL.md §9.3).
        (JoinAuth::Code, _) => return Err(Refusal::Reject(RejectReason::SessionNotFound)),
        (JoinAuth::Token, Some(DoorSecret::Token(token))) if !token.is_empty() => {
            (Some(auth::token_key(token)), None)
        }
        (JoinAuth::Member, Some(DoorSecret::Member(secret))) if !secret.is_empty() => {
            (Some(auth::member_key(&req.device_id, secret)), None)
        }
        // Nothing provable: the join request will be refused as a wrong proof, so that an
        // unknown device id looks like a wrong secret.
        _ => (None, None),
    };
    let nonce = random32()?;
    let now = Instant::now();
    let pending = Pending {
        auth: req.auth,
        device_id: req.device_id,
        secret: door.secret,
        key,
        source: peer.ip(),
        expires: now + NONCE_TTL,
    };
    let kept = shared
        .nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(nonce, pending, now);
    if !kept {
        return Err(Refusal::Busy);
    }
    Ok(StartReply {
        nonce: hex(&nonce),
        pake,
    })
}

async fn handle_join(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<JoinAnswer, Refusal> {
    rate_check(shared, peer)?;
    let bytes = read_body(headers, body).await?;
    let req = parse_join(&bytes)?;
    let nonce: Nonce = unhex(&req.nonce)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| Refusal::BadRequest("nonce must be 64 hex digits".into()))?;
    let pending = shared
        .nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&nonce, Instant::now())
        .ok_or(Refusal::StaleNonce)?;
    let key = check_proof(&pending, &nonce, &req)?;

    // The proof held: ask again, now, whether this device is admitted (PROTOCOL.md §9.3's order).
    let query = DoorQuery {
        auth: pending.auth.door(),
        session_code: None,
        device_id: pending.device_id.clone(),
    };
    let query = match &pending.secret {
        Some(DoorSecret::Code { code, .. }) => DoorQuery {
            session_code: Some(code.clone()),
            ..query
        },
        _ => query,
    };
    let door = (shared.door)(query).await;
    if door.secret != pending.secret {
        // The secret changed since the start (a member left, the session restarted).
        return Err(Refusal::Reject(wrong_proof(&pending)));
    }
    door.verdict.map_err(Refusal::Reject)?;

    let held = take_pending(shared, peer).await?;
    let offer = OfferIn {
        device_id: pending.device_id,
        device_name: req.device_name,
        offer_sdp: req.offer,
        auth: pending.auth,
        pending: PendingAnswer(held.0.as_ref().map_or_else(Weak::new, Arc::downgrade)),
    };
    let device_id = offer.device_id.clone();
    let answer = held
        .run((shared.on_offer)(offer))
        .await
        .ok_or(Refusal::Busy)?
        .map_err(|r| {
            tracing::info!(%peer, device_id = %device_id, reason = r.code(), "join rejected by the application");
            Refusal::Reject(r)
        })?;
    let mac = hex(&auth::answer_mac(&key, &nonce, &answer));
    tracing::info!(%peer, device_id = %device_id, "join answered");
    Ok(JoinAnswer { answer, mac })
}

/// A slot among the answers pending their link, or `busy` (PROTOCOL.md §9.3).
async fn take_pending(shared: &Shared, peer: SocketAddr) -> Result<PendingHold, Refusal> {
    match shared.pending.take_within(peer.ip(), PENDING_WAIT).await {
        Some(slot) => Ok(PendingHold(Some(Arc::new(slot)))),
        None => {
            tracing::info!(%peer, "join refused: too many answers pending their link");
            Err(Refusal::Busy)
        }
    }
}

/// The refusal for a proof that does not hold: `invalid_password` when the session has a
/// password and the join is by code, else `invalid_token`.
fn wrong_proof(pending: &Pending) -> RejectReason {
    match &pending.secret {
        Some(DoorSecret::Code { password, .. }) if !password.is_empty() => {
            RejectReason::InvalidPassword
        }
        _ => RejectReason::InvalidToken,
    }
}

/// The proof must be for the device id the start named, under the key the start set up.
fn check_proof(pending: &Pending, nonce: &Nonce, req: &JoinRequest) -> Result<Key, Refusal> {
    let proof = unhex(&req.proof).unwrap_or_default();
    match pending.key {
        Some(key)
            if req.device_id == pending.device_id
                && auth::verify_proof(&key, nonce, &req.device_id, &req.offer, &proof) =>
        {
            Ok(key)
        }
        _ => Err(Refusal::Reject(wrong_proof(pending))),
    }
}
