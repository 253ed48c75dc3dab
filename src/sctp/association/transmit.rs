//! Building packets: INIT and INIT ACK alone under their own tag, the path MTU probe alone,
//! otherwise a COOKIE ACK first if one is owed, then a SACK, other control chunks, and DATA
//! until the packet is full.

use std::time::Instant;

use bytes::Bytes;

use super::{handshake, Association, State, COMMON_HEADER_LEN};
use crate::sctp::chunk::Chunk;
use crate::sctp::packet;

impl Association {
    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some((tag, chunk)) = self.solo.pop_front() {
            return Some(self.single(tag, &chunk));
        }
        let peer_tag = self.peer?.tag;
        if self.state == State::Established {
            if let Some(p) = self.probe_packet(now, peer_tag) {
                return Some(p);
            }
        }
        let mtu = self.mtu;
        let mut out = Vec::with_capacity(mtu);
        packet::start(&mut out, self.cfg.port, self.cfg.port, peer_tag);
        let established = self.state == State::Established;
        // RFC 9260 §5.1 D: a COOKIE ACK is the first chunk of its packet.
        if self.control.front() == Some(&Chunk::CookieAck) {
            Chunk::CookieAck.encode(&mut out);
            self.control.pop_front();
        }
        let cookie_ack = out.len() > COMMON_HEADER_LEN;
        let mut acked = false;
        let mut ack_due = false;
        if let Some(r) = self.receiver.as_ref().filter(|_| established) {
            if r.ack_pending() {
                Chunk::Sack(r.sack()).encode(&mut out);
                acked = true;
                ack_due = r.ack_due(now);
            }
        }
        let with_sack = out.len();
        while let Some(c) = self.control.front() {
            // A chunk larger than the room goes alone (a HEARTBEAT ACK echoing a probe).
            if out.len() + c.encoded_len() > mtu && out.len() > COMMON_HEADER_LEN {
                break;
            }
            c.encode(&mut out);
            self.control.pop_front();
        }
        if established {
            self.fill_data(now, &mut out);
        }
        if out.len() == with_sack && !ack_due && !cookie_ack {
            // Only a SACK that is not due yet: keep it for later (or for a piggyback). Data
            // that did not fit behind it (a SACK with gap blocks leaves less room than a full
            // fragment) goes now, without it.
            out.truncate(COMMON_HEADER_LEN);
            if established {
                self.fill_data(now, &mut out);
            }
            if out.len() == COMMON_HEADER_LEN {
                return None;
            }
            acked = false;
        }
        if acked {
            if let Some(r) = self.receiver.as_mut() {
                r.on_sack_sent();
            }
        }
        packet::finish(&mut out);
        Some(out)
    }

    /// Appends DATA chunks while the sender has some that may go and fit.
    fn fill_data(&mut self, now: Instant, out: &mut Vec<u8>) {
        let mtu = self.mtu;
        if let Some(s) = self.sender.as_mut() {
            while out.len() < mtu {
                let Some(d) = s.poll_data(now, mtu - out.len()) else {
                    break;
                };
                Chunk::Data(d).encode(out);
            }
        }
    }

    fn single(&self, tag: u32, chunk: &Chunk) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMMON_HEADER_LEN + chunk.encoded_len());
        packet::start(&mut out, self.cfg.port, self.cfg.port, tag);
        chunk.encode(&mut out);
        packet::finish(&mut out);
        out
    }

    /// A HEARTBEAT padded so the packet is exactly the probed size (RFC 8899 §4.1), when an
    /// attempt is due.
    fn probe_packet(&mut self, now: Instant, peer_tag: u32) -> Option<Vec<u8>> {
        let probe = self.probe.as_mut().filter(|p| p.due)?;
        probe.due = false;
        probe.sent += 1;
        probe.expires = Some(now + self.cfg.rto_initial);
        let room = probe
            .size
            .saturating_sub(COMMON_HEADER_LEN + handshake::heartbeat_overhead());
        let mut info = vec![0u8; room & !3];
        let n = self.probe_nonce.len().min(info.len());
        info[..n].copy_from_slice(&self.probe_nonce[..n]);
        Some(self.single(peer_tag, &Chunk::Heartbeat(Bytes::from(info))))
    }
}
