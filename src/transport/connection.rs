//! One link, sans-IO: ICE and DTLS ([`IceDtls`]) under our SCTP association
//! ([`crate::sctp::Association`]), and the two negotiated data channels of PROTOCOL.md §1 on
//! top. Datagrams, timer expiries and sends go in with the current time; datagrams to send and
//! [`LinkEvent`]s come out. No sockets, no clock, no tasks: the driver does those.
//!
//! The channels are negotiated out of band (`control` = stream 0, `binary` = stream 1), so
//! they are bound from the start: whatever DTLS role this side ends up in, a message arriving
//! on them is delivered, never taken for an in-band open. Both ends start the association once
//! DTLS is up (the association resolves crossing INITs). DCEP messages (PPID 50) are ignored.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::sctp::association::SendError;
use crate::sctp::{Association, Config as SctpConfig, Event as SctpEvent};

use super::ice_dtls::{IceDtls, IceDtlsConfig, IceDtlsEvent, Transmit};
use super::{
    LinkEvent, TransportError, BINARY_STREAM_ID, CONTROL_STREAM_ID, MAX_BINARY_MESSAGE,
    MAX_CONTROL_MESSAGE,
};

/// The control message the answering side sends once its channels are open (PROTOCOL.md §1);
/// the offering side reports the link open only after it arrives. Never passed to the app.
pub(crate) const READY_MARKER: &str = "{\"lansync\":\"ready\"}";

/// Payload protocol identifiers of WebRTC data channels (RFC 8831 §8).
mod ppid {
    /// DCEP (channel open / ack).
    pub(super) const DCEP: u32 = 50;
    /// A UTF-8 string.
    pub(super) const STRING: u32 = 51;
    /// Binary data.
    pub(super) const BINARY: u32 = 53;
    /// An empty string (sent as one zero byte).
    pub(super) const STRING_EMPTY: u32 = 56;
    /// Empty binary data (sent as one zero byte).
    pub(super) const BINARY_EMPTY: u32 = 57;
}

/// Which side of the offer/answer exchange this link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Made the offer: ICE controlling, waits for the ready marker.
    Offerer,
    /// Answered: ICE controlled, sends the ready marker.
    Answerer,
}

/// Everything a connection needs.
pub(crate) struct ConnectionConfig {
    /// ICE and DTLS settings from both descriptions.
    pub(crate) ice: IceDtlsConfig,
    /// Offerer or answerer.
    pub(crate) side: Side,
    /// Association settings.
    pub(crate) sctp: SctpConfig,
    /// Seed of the association (verification tag, initial TSN), from a CSPRNG.
    pub(crate) seed: [u8; 16],
    /// Largest message the peer accepts (its `a=max-message-size`).
    pub(crate) remote_max_message_size: usize,
}

/// One link's protocol stack.
pub(crate) struct Connection {
    ice: IceDtls,
    assoc: Association,
    side: Side,
    remote_max_message_size: usize,
    /// Both channels usable (the offerer also heard the ready marker).
    open: bool,
    /// ICE reported a loss of connectivity after the link opened.
    down: bool,
    closed: bool,
    events: VecDeque<LinkEvent>,
}

impl Connection {
    /// Starts ICE at once; DTLS and SCTP follow on their own.
    pub(crate) fn new(cfg: ConnectionConfig, now: Instant) -> Result<Self, TransportError> {
        let ice = IceDtls::new(cfg.ice, now)?;
        let assoc = Association::new(cfg.sctp, cfg.seed, now);
        let mut me = Self {
            ice,
            assoc,
            side: cfg.side,
            remote_max_message_size: cfg.remote_max_message_size,
            open: false,
            down: false,
            closed: false,
            events: VecDeque::new(),
        };
        me.pump(now);
        Ok(me)
    }

    /// A datagram that arrived on our socket `local` from `remote`.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        data: &[u8],
    ) {
        if self.closed {
            return;
        }
        self.ice.handle_datagram(now, local, remote, data);
        self.pump(now);
    }

    /// Runs the timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.ice.handle_timeout(now);
        if self.assoc.poll_timeout().is_some_and(|t| t <= now) {
            self.assoc.handle_timeout(now);
        }
        self.pump(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [self.ice.poll_timeout(), self.assoc.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send: ICE's and DTLS's own first, then the association's packets,
    /// each sealed in one DTLS record.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        loop {
            if let Some(t) = self.ice.poll_transmit() {
                return Some(t);
            }
            if self.closed || !self.ice.is_secured() {
                return None;
            }
            let packet = self.assoc.poll_transmit(now)?;
            self.ice.send_record(now, &packet);
        }
    }

    /// The next event for the link's owner. Messages are taken out of the association only
    /// here, so an owner that stops polling leaves them there, under its receive window.
    pub(crate) fn poll_event(&mut self, now: Instant) -> Option<LinkEvent> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if self.closed {
                return None;
            }
            let ev = self.assoc.poll_event()?;
            self.on_sctp(now, ev);
        }
    }

    /// Queues a text message on `control`.
    pub(crate) fn send_control(&mut self, now: Instant, text: &str) -> Result<(), TransportError> {
        self.check_open()?;
        self.check_size(text.len(), MAX_CONTROL_MESSAGE)?;
        let sent = self.send_raw(CONTROL_STREAM_ID, text.as_bytes(), ppid::STRING);
        self.pump(now);
        sent
    }

    /// Queues a binary message on `binary`.
    pub(crate) fn send_binary(&mut self, now: Instant, data: &[u8]) -> Result<(), TransportError> {
        self.check_open()?;
        self.check_size(data.len(), MAX_BINARY_MESSAGE)?;
        let sent = self.send_raw(BINARY_STREAM_ID, data, ppid::BINARY);
        self.pump(now);
        sent
    }

    /// Bytes queued on `binary` and not yet acknowledged.
    pub(crate) fn buffered_binary(&self) -> usize {
        self.assoc.buffered(BINARY_STREAM_ID)
    }

    /// Bytes queued on either channel and not yet acknowledged.
    pub(crate) fn outstanding(&self) -> usize {
        self.assoc.buffered(CONTROL_STREAM_ID) + self.assoc.buffered(BINARY_STREAM_ID)
    }

    /// Both channels usable and not closed.
    pub(crate) fn is_open(&self) -> bool {
        self.open && !self.closed
    }

    /// Over (closed here, by the peer, or failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// ICE lost connectivity and has not found it again.
    pub(crate) fn is_down(&self) -> bool {
        self.down
    }

    /// Closes from our side: SCTP ABORT and DTLS close_notify go out (drain
    /// [`poll_transmit`](Self::poll_transmit)), so the peer learns at once. No event.
    pub(crate) fn close(&mut self, now: Instant) {
        self.shut(now);
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed {
            Err(TransportError::Closed)
        } else if !self.open {
            Err(TransportError::NotOpen)
        } else {
            Ok(())
        }
    }

    fn check_size(&self, len: usize, ours: usize) -> Result<(), TransportError> {
        let limit = ours.min(self.remote_max_message_size);
        if len > limit {
            Err(TransportError::TooLarge { limit, len })
        } else {
            Ok(())
        }
    }

    /// Queues a message; an empty one goes as one zero byte with the "empty" PPID (RFC 8831
    /// §6.6).
    fn send_raw(&mut self, stream: u16, data: &[u8], ppid: u32) -> Result<(), TransportError> {
        let (payload, ppid) = if data.is_empty() {
            let empty = if ppid == ppid::STRING {
                ppid::STRING_EMPTY
            } else {
                ppid::BINARY_EMPTY
            };
            (Bytes::from_static(&[0]), empty)
        } else {
            (Bytes::copy_from_slice(data), ppid)
        };
        self.assoc
            .send(stream, ppid, payload, false)
            .map_err(|e| match e {
                SendError::NotEstablished if self.closed => TransportError::Closed,
                SendError::NotEstablished => TransportError::NotOpen,
                SendError::Empty => TransportError::Webrtc(e.to_string()),
            })
    }

    /// Hands what ICE/DTLS produced to the association (its events wait for
    /// [`poll_event`](Self::poll_event)).
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.ice.poll_event() {
            self.on_ice(now, ev);
        }
    }

    fn on_ice(&mut self, now: Instant, ev: IceDtlsEvent) {
        if self.closed {
            return;
        }
        match ev {
            IceDtlsEvent::Secured => self.assoc.connect(now),
            IceDtlsEvent::Record(packet) => self.assoc.handle_packet(now, &packet),
            IceDtlsEvent::Disconnected => {
                if self.open && !self.down {
                    self.down = true;
                    self.events.push_back(LinkEvent::Down);
                }
            }
            IceDtlsEvent::Connected => {
                if self.down {
                    self.down = false;
                    self.events.push_back(LinkEvent::Up);
                }
            }
            IceDtlsEvent::Failed(why) => self.end(now, &why),
        }
    }

    fn on_sctp(&mut self, now: Instant, ev: SctpEvent) {
        if self.closed {
            return;
        }
        match ev {
            SctpEvent::Connected => {
                debug!(side = ?self.side, "association up");
                if self.side == Side::Answerer {
                    // Tell the offerer we can hear it now.
                    if let Err(e) =
                        self.send_raw(CONTROL_STREAM_ID, READY_MARKER.as_bytes(), ppid::STRING)
                    {
                        debug!("cannot send the ready marker: {e}");
                    }
                    self.set_open();
                }
            }
            SctpEvent::Message {
                stream,
                ppid,
                payload,
            } => self.on_message(now, stream, ppid, payload),
            SctpEvent::StreamsReset(streams) => {
                if streams.contains(&CONTROL_STREAM_ID) || streams.contains(&BINARY_STREAM_ID) {
                    self.end(now, "the peer closed a channel");
                }
            }
            SctpEvent::Acked => {}
            SctpEvent::Closed { reason } => self.end(now, &reason),
        }
    }

    fn set_open(&mut self) {
        if !self.open {
            self.open = true;
            self.events.push_back(LinkEvent::Open);
        }
    }

    fn on_message(&mut self, now: Instant, stream: u16, ppid: u32, payload: Bytes) {
        if ppid == ppid::DCEP {
            debug!(stream, "DCEP message ignored (channels are negotiated)");
            return;
        }
        let empty = ppid == ppid::STRING_EMPTY || ppid == ppid::BINARY_EMPTY;
        let payload = if empty { Bytes::new() } else { payload };
        // The limits of PROTOCOL.md §1: a peer that breaks them is not one to keep talking to.
        let limit = match stream {
            CONTROL_STREAM_ID => MAX_CONTROL_MESSAGE,
            BINARY_STREAM_ID => MAX_BINARY_MESSAGE,
            _ => {
                debug!(stream, "message on a stream that is not ours: dropped");
                return;
            }
        };
        if payload.len() > limit {
            warn!(
                len = payload.len(),
                limit, "closing the link: the peer sent a message over the limit"
            );
            self.end(now, "a message over the size limit");
            return;
        }
        if stream == BINARY_STREAM_ID {
            self.events.push_back(LinkEvent::Binary(payload));
            return;
        }
        match String::from_utf8(payload.to_vec()) {
            Ok(text) if text == READY_MARKER => {
                if self.side == Side::Offerer {
                    self.set_open();
                } // later copies, or one sent to the answerer, are ignored
            }
            Ok(text) => self.events.push_back(LinkEvent::Control(text)),
            Err(_) => warn!("dropping control message that is not UTF-8"),
        }
    }

    /// The link ended from the other side or the network: tell the owner, tear down.
    fn end(&mut self, now: Instant, why: &str) {
        if self.closed {
            return;
        }
        debug!("link closed: {why}");
        self.shut(now);
        self.events.push_back(LinkEvent::Closed);
    }

    fn shut(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.ice.is_secured() {
            self.assoc.close(now);
            while let Some(packet) = self.assoc.poll_transmit(now) {
                self.ice.send_record(now, &packet);
            }
        }
        self.ice.close(now);
        while self.assoc.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests;
