//! The remembered pair (PROTOCOL.md §6.1): PAIR_BOND, the pair secret agreed from the two
//! halves, the record a device keeps so it finds its partner again after a cut or a restart, and
//! the door a redial passes (the member rejoin of PROTOCOL.md §9 with the pair secret).

use super::{Solo, SoloConfig, SoloState};
use crate::protocol::{check_id, Layout, Message, PageState, PairBond, Stamp};
use crate::session::{
    DoorAuth, DoorQuery, DoorReply, DoorSecret, Event, JoinCredentials, Origin, Output, Record,
};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;

/// Domain separation of the pair secret's hash (PROTOCOL.md §6.1).
const PAIR_SECRET_LABEL: &[u8] = b"lansync pair secret\0";

/// How often a remembered dialing side with a live-looking link dials again when told the
/// network changed: each such dial costs the partner a peer connection.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The pair secret from the two halves (32 hex digits each, either case): the first 16 bytes of
/// `SHA-256("lansync pair secret\0" ‖ offerer_half ‖ answerer_half)` over the halves' raw
/// bytes, as 32 lower-case hex digits. `None` if a half is not 16 bytes of hex.
pub(crate) fn pair_secret(offerer_half: &str, answerer_half: &str) -> Option<String> {
    let raw = |h: &str| {
        let b = hex::decode(h).ok()?;
        (b.len() == 16).then_some(b)
    };
    let (o, a) = (raw(offerer_half)?, raw(answerer_half)?);
    let mut h = Sha256::new();
    h.update(PAIR_SECRET_LABEL);
    h.update(&o);
    h.update(&a);
    Some(hex::encode(&h.finalize()[..16]))
}

/// What a remembered pair keeps across restarts (PROTOCOL.md §6.1): written by the machine
/// (`Output::Persist`) when the pair secret is agreed and on every change worth resuming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoloRecord {
    /// The pair id (the envelopes' `session_id`).
    pub pair_id: String,
    /// The partner's device id.
    pub partner_id: String,
    /// The partner's name, as its HELLO said.
    #[serde(default)]
    pub partner_name: String,
    /// The pair secret (32 hex digits): what a redial proves (the member secret of PROTOCOL.md
    /// §9.2, with the dialing device's id).
    pub pair_secret: String,
    /// Whether this device dials (the side that offered the first code).
    pub initiator: bool,
    /// The partner's DTLS fingerprint (`sha-256 AB:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_fingerprint: Option<String>,
    /// The partner's redial endpoint as it last told it (empty for the waiting side).
    #[serde(default)]
    pub partner_endpoints: Vec<SocketAddr>,
    /// What was shown, with its stamp (so the pair converges by last write wins after a restart).
    pub page: PageState,
    /// The stamp of `page`.
    pub page_stamp: Stamp,
    /// The layout, with its stamp.
    pub layout: Layout,
    /// The stamp of `layout`.
    pub layout_stamp: Stamp,
}

impl Solo {
    /// A device of a remembered pair, after a restart: it shows what the record kept and
    /// reconnects without a code — the dialing side dials at once (PROTOCOL.md §6.1).
    pub fn restore(mut cfg: SoloConfig, record: SoloRecord, now: Time, seed: u64) -> Solo {
        cfg.pair_id = record.pair_id.clone();
        cfg.initiator = record.initiator;
        cfg.bond_half = None;
        if cfg.partner_fingerprint.is_none() {
            cfg.partner_fingerprint = record.partner_fingerprint.clone();
        }
        let mut solo = Solo::new(cfg, seed);
        solo.page = record.page.clone();
        solo.page_stamp = record.page_stamp.clone();
        solo.layout = record.layout.clone();
        solo.layout_stamp = record.layout_stamp.clone();
        solo.partner = Some(record.partner_id.clone());
        solo.partner_name = record.partner_name.clone();
        solo.persisted = Some(record.clone());
        solo.remembered = Some(record);
        solo.enter(
            SoloState::PairedReconnecting,
            "resuming the remembered pair",
        );
        solo.out.event(Event::page(&solo.page, Origin::Local));
        // Both count attempts from now, so they give up together; the dialing side dials at once.
        solo.retry_at = Some(now);
        solo
    }

    /// The network changed, or the partner's advert appeared (PROTOCOL.md §6.1): retry now. A
    /// remembered dialing side dials whatever its state (after a give-up or a goodbye too).
    ///
    /// With a link that still looks alive, a remembered dialing side dials too (at most once per
    /// [`PROBE_INTERVAL`]): the partner may have restarted — its advert came back — while this
    /// link went silent, and the heartbeat would take its whole dead-after to notice. The new
    /// link replaces this one when it opens; a failed dial leaves this one as it was.
    pub(super) fn on_network_changed(&mut self, now: Time) {
        let revive = self.remembered.is_some() && self.cfg.initiator && !self.left;
        if self.link.is_open() {
            let due = self
                .probed_at
                .is_none_or(|t| now.since(t) >= PROBE_INTERVAL);
            if revive && due {
                self.probed_at = Some(now);
                self.out.push(Output::Dial(self.dial_credentials()));
            }
            return;
        }
        if revive {
            self.backoff.reset();
            self.enter(SoloState::PairedReconnecting, "partner may be back");
            self.retry_at = Some(now);
        } else if self.state == SoloState::PairedReconnecting {
            self.retry_at = Some(now);
        }
    }

    /// PAIR_BOND right after HELLO: this process's half while it holds one (a partner that
    /// already remembers the pair ignores it), and where this device's redial endpoint listens.
    pub(super) fn send_bond(&mut self, now: Time) {
        let bond = PairBond {
            half: self.cfg.bond_half.clone(),
            endpoints: self
                .cfg
                .own_endpoints
                .iter()
                .map(|a| a.to_string())
                .collect(),
        };
        if bond.half.is_none() && bond.endpoints.is_empty() && self.remembered.is_none() {
            return; // nothing to remember, nothing to update: stay quiet as earlier releases did
        }
        self.send(now, now.as_millis(), Message::PairBond(bond));
    }

    /// A fresh PAIR_BOND from the current link (already validated as the wire demands).
    pub(super) fn on_bond(&mut self, sender: &str, session_id: &str, bond: PairBond) {
        if let Some(rec) = self.remembered.as_mut() {
            // A half on a remembered pair is ignored: the secret never changes on a link.
            if sender == rec.partner_id && !bond.endpoints.is_empty() {
                rec_endpoints(rec, &bond.endpoints);
            }
            return;
        }
        let (Some(mine), Some(theirs)) = (self.cfg.bond_half.as_deref(), bond.half.as_deref())
        else {
            return; // one side has no state directory: the pair is not remembered
        };
        let (offerer, answerer) = if self.cfg.initiator {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let Some(secret) = pair_secret(offerer, answerer) else {
            return;
        };
        let pair_id = if self.cfg.pair_id.is_empty() {
            session_id
        } else {
            self.cfg.pair_id.as_str()
        };
        if check_id("pair_id", pair_id, false).is_err() || check_id("id", sender, false).is_err() {
            return;
        }
        let mut rec = SoloRecord {
            pair_id: pair_id.to_string(),
            partner_id: sender.to_string(),
            partner_name: self.partner_name.clone(),
            pair_secret: secret,
            initiator: self.cfg.initiator,
            partner_fingerprint: self.cfg.partner_fingerprint.clone(),
            partner_endpoints: Vec::new(),
            page: self.page.clone(),
            page_stamp: self.page_stamp.clone(),
            layout: self.layout.clone(),
            layout_stamp: self.layout_stamp.clone(),
        };
        rec_endpoints(&mut rec, &bond.endpoints);
        self.out.event(Event::PairRemembered {
            pair_id: rec.pair_id.clone(),
            partner_id: rec.partner_id.clone(),
        });
        self.out.push(Output::Persist(Record::Solo(rec.clone())));
        self.persisted = Some(rec.clone());
        self.remembered = Some(rec);
    }

    /// Brings the record up to date with what a restart should resume (page, layout, the
    /// partner's name) and persists it when anything changed since the last write.
    pub(super) fn sync_record(&mut self) {
        let Some(rec) = self.remembered.as_mut() else {
            return;
        };
        if rec.page_stamp != self.page_stamp {
            rec.page = self.page.clone();
            rec.page_stamp = self.page_stamp.clone();
        }
        if rec.layout_stamp != self.layout_stamp {
            rec.layout = self.layout.clone();
            rec.layout_stamp = self.layout_stamp.clone();
        }
        if !self.partner_name.is_empty() && rec.partner_name != self.partner_name {
            rec.partner_name = self.partner_name.clone();
        }
        if self.persisted.as_ref() != Some(rec) {
            self.persisted = Some(rec.clone());
            self.out.push(Output::Persist(Record::Solo(rec.clone())));
        }
    }

    /// What a dial presents: the pair secret as the member secret of this device's id once the
    /// pair is remembered (PROTOCOL.md §6.1, §9.2); nothing for a pair made from codes only.
    pub(super) fn dial_credentials(&self) -> JoinCredentials {
        JoinCredentials {
            member_secret: self.remembered.as_ref().map(|r| r.pair_secret.clone()),
            ..JoinCredentials::default()
        }
    }

    /// The redial door: only the partner's id, proving the pair secret, gets in; a device that
    /// left by the user admits nobody until it retries.
    pub(super) fn bond_door(&self, query: &DoorQuery) -> DoorReply {
        match &self.remembered {
            Some(rec)
                if !self.left
                    && query.auth == DoorAuth::Member
                    && query.device_id == rec.partner_id =>
            {
                DoorReply {
                    secret: Some(DoorSecret::Member(rec.pair_secret.clone())),
                    verdict: Ok(()),
                }
            }
            _ => DoorReply::closed(),
        }
    }
}

/// Replaces the partner's endpoints with the ones it listed (already validated as `ip:port`).
fn rec_endpoints(rec: &mut SoloRecord, endpoints: &[String]) {
    let parsed: Vec<_> = endpoints.iter().filter_map(|e| e.parse().ok()).collect();
    if !parsed.is_empty() {
        rec.partner_endpoints = parsed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_secret_matches_the_protocol_test_vector() {
        let offerer = "000102030405060708090a0b0c0d0e0f";
        let answerer = "101112131415161718191a1b1c1d1e1f";
        let secret = pair_secret(offerer, answerer).unwrap();
        assert_eq!(secret, "465aaed32c065e4e8a21a7adbe9d3cb4");
        assert_eq!(pair_secret(&offerer.to_uppercase(), answerer), Some(secret));
        assert_ne!(
            pair_secret(answerer, offerer),
            pair_secret(offerer, answerer)
        );
        assert_eq!(pair_secret("00", answerer), None);
        assert_eq!(pair_secret(&"zz".repeat(16), answerer), None);
        // the redial's join key (PROTOCOL.md §6.1, §9.2) for the dialing device `tab-a`
        let k = crate::auth::member_key("tab-a", "465aaed32c065e4e8a21a7adbe9d3cb4");
        assert_eq!(
            hex::encode(k),
            "43e069ef315113634ea8cf2b45322c3300e8847a85355a659b631d1f710095e3"
        );
    }
}
