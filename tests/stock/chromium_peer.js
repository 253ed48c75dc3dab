// A lansync peer written from PROTOCOL.md §1 alone, as a web page would: one RTCPeerConnection,
// the two negotiated channels, the ready marker. tests/stock_chromium.rs evaluates this file in a
// blank page of a headless Chromium and drives `window.peer` over the DevTools protocol.
// Every wait has its own deadline, so no call from the test can hang.
(() => {
  const READY = '{"lansync":"ready"}';
  const CONTROL_LIMIT = 65536;

  const fresh = () => ({
    pc: null,
    control: null,
    binary: null,
    answerer: false,
    // Offerer: the answerer's marker arrived (we may send). Answerer: always true once open.
    heard: false,
    markerSent: false,
    // Answerer: control messages to send right behind the marker, in the same turn.
    early: [],
    // Every control message, in arrival order: {t: ms since page start, text}.
    inbox: [],
    // Binary stream check: message i must carry i in its first 4 bytes (little endian), then
    // bytes (i * 31 + j) & 0xff for j >= 4.
    bin: { count: 0, bytes: 0, bad: 0, firstBad: null, times: [] },
    errors: [],
    waiters: [],
  });
  let state = fresh();

  function wake() {
    const still = [];
    for (const w of state.waiters) {
      if (!w.check()) still.push(w);
    }
    state.waiters = still;
  }

  // Resolves with check()'s truthy value, or rejects after `ms`.
  function waitFor(what, ms, check) {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        if (!done) {
          done = true;
          reject(new Error(`timed out after ${ms} ms waiting for ${what}; ${describe()}`));
        }
      }, ms);
      const w = {
        check: () => {
          if (done) return true;
          const v = check();
          if (!v && dead()) {
            done = true;
            clearTimeout(timer);
            reject(new Error(`connection lost while waiting for ${what}; ${describe()}`));
            return true;
          }
          if (!v) return false;
          done = true;
          clearTimeout(timer);
          resolve(v);
          return true;
        },
      };
      if (!w.check()) state.waiters.push(w);
    });
  }

  // Nothing more can arrive: the connection failed or a channel closed.
  function dead() {
    const pc = state.pc;
    if (!pc) return false;
    const gone = (ch) => ch && (ch.readyState === 'closing' || ch.readyState === 'closed');
    return pc.connectionState === 'failed' || pc.connectionState === 'closed' ||
      gone(state.control) || gone(state.binary);
  }

  function describe() {
    const pc = state.pc;
    if (!pc) return 'no peer connection';
    return JSON.stringify({
      connection: pc.connectionState,
      ice: pc.iceConnectionState,
      sctp: pc.sctp ? pc.sctp.state : null,
      control: state.control ? state.control.readyState : null,
      binary: state.binary ? state.binary.readyState : null,
      heard: state.heard,
      inbox: state.inbox.length,
      binary_count: state.bin.count,
      errors: state.errors,
    });
  }

  function bothOpen() {
    return (
      state.control && state.binary &&
      state.control.readyState === 'open' && state.binary.readyState === 'open'
    );
  }

  function onOpen() {
    // PROTOCOL.md §1: the answering side sends the marker as soon as both channels are open.
    if (bothOpen() && state.answerer && !state.markerSent) {
      state.markerSent = true;
      state.control.send(READY);
      for (const text of state.early) state.control.send(text);
      state.heard = true;
    }
    wake();
  }

  function checkBinary(buf) {
    const b = new Uint8Array(buf);
    const i = state.bin.count;
    let ok = b.length >= 4 && new DataView(buf).getUint32(0, true) === i;
    for (let j = 4; ok && j < b.length; j++) {
      if (b[j] !== ((i * 31 + j) & 0xff)) ok = false;
    }
    if (!ok) {
      state.bin.bad++;
      if (state.bin.firstBad === null) state.bin.firstBad = i;
    }
    state.bin.count++;
    state.bin.bytes += b.length;
    state.bin.times.push(performance.now());
  }

  // A new connection each time (the test reuses one page for several tries).
  function setup(answerer) {
    if (state.pc) {
      for (const ch of [state.control, state.binary]) {
        ch.onopen = ch.onclose = ch.onerror = ch.onmessage = null;
      }
      state.pc.onconnectionstatechange = state.pc.onicegatheringstatechange = null;
      state.pc.close();
    }
    state = fresh();
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    state.answerer = answerer;
    state.control = pc.createDataChannel('control', { negotiated: true, id: 0, ordered: true });
    state.binary = pc.createDataChannel('binary', { negotiated: true, id: 1, ordered: true });
    state.binary.binaryType = 'arraybuffer';
    for (const ch of [state.control, state.binary]) {
      ch.onopen = onOpen;
      ch.onclose = () => { state.errors.push(`${ch.label} closed`); wake(); };
      ch.onerror = (e) => { state.errors.push(`${ch.label} error: ${e.error && e.error.message}`); wake(); };
    }
    state.control.onmessage = (e) => {
      const text = typeof e.data === 'string' ? e.data : '<binary on control>';
      if (!state.answerer && !state.heard && text === READY) {
        state.heard = true; // consumed, like lansync does; it still counts in the inbox
      }
      state.inbox.push({ t: performance.now(), text });
      wake();
    };
    state.binary.onmessage = (e) => {
      checkBinary(e.data);
      wake();
    };
    pc.onconnectionstatechange = wake;
  }

  function gathered(pc, ms) {
    return waitFor('ICE gathering', ms, () => pc.iceGatheringState === 'complete');
  }

  async function complete(pc) {
    // Non-trickle (PROTOCOL.md §1): the description carries every candidate.
    const done = gathered(pc, 10000);
    pc.onicegatheringstatechange = wake;
    await done;
    return pc.localDescription.sdp;
  }

  window.peer = {
    // lansync offered: answer it. `passive` munges our answer to a=setup:passive (allowed by
    // PROTOCOL.md §7.1.3), which makes us the DTLS server and the offerer the DTLS client.
    // `early`: control messages sent right behind the ready marker, the moment both channels open.
    async answer(offer, passive, early) {
      setup(true);
      state.early = early || [];
      await state.pc.setRemoteDescription({ type: 'offer', sdp: offer });
      const answer = await state.pc.createAnswer();
      let sdp = answer.sdp;
      if (passive) sdp = sdp.replace(/a=setup:active/g, 'a=setup:passive');
      await state.pc.setLocalDescription({ type: 'answer', sdp });
      return complete(state.pc);
    },

    // We offer; lansync will answer.
    async offer() {
      setup(false);
      await state.pc.setLocalDescription(await state.pc.createOffer());
      return complete(state.pc);
    },

    async acceptAnswer(sdp) {
      await state.pc.setRemoteDescription({ type: 'answer', sdp });
      return true;
    },

    // Both channels open and, as the offerer, the marker heard (PROTOCOL.md §1).
    async open(ms) {
      await waitFor('open channels and the ready marker', ms, () => bothOpen() && state.heard);
      return true;
    },

    send(text) {
      if (!bothOpen()) throw new Error(`send before open: ${describe()}`);
      if (!state.answerer && !state.heard) throw new Error('offerer sending before the marker');
      state.control.send(text);
      return true;
    },

    // A control message of `len` bytes: `tag` then 'x' padding (ASCII, so bytes = characters).
    sendBig(tag, len) {
      return window.peer.send(tag + 'x'.repeat(Math.max(0, len - tag.length)));
    },

    // The first n control messages (texts of more than 80 characters are summarised).
    async inbox(n, ms) {
      await waitFor(`${n} control messages`, ms, () => state.inbox.length >= n);
      return state.inbox.slice(0, n).map((m) =>
        m.text.length > 80 ? `${m.text.slice(0, 16)}…(${m.text.length} bytes)` : m.text);
    },

    // Waits for `count` binary messages; then reports the stream's figures.
    async binary(count, ms) {
      try {
        await waitFor(`${count} binary messages`, ms, () => state.bin.count >= count);
      } catch (e) {
        return Object.assign(window.peer.binaryStats(), { error: String(e) });
      }
      return window.peer.binaryStats();
    },

    binaryStats() {
      const t = state.bin.times;
      let maxGap = 0;
      let maxGapAt = 0;
      for (let k = 1; k < t.length; k++) {
        if (t[k] - t[k - 1] > maxGap) { maxGap = t[k] - t[k - 1]; maxGapAt = k; }
      }
      return {
        count: state.bin.count,
        bytes: state.bin.bytes,
        bad: state.bin.bad,
        first_bad: state.bin.firstBad,
        span_ms: t.length > 1 ? t[t.length - 1] - t[0] : 0,
        max_gap_ms: maxGap,
        max_gap_at: maxGapAt,
        gaps_over_200ms: t.slice(1).filter((x, k) => x - t[k] > 200).length,
        first_at: t.length ? t[0] : null,
      };
    },

    // Sends the stream the other way: `count` binary messages of `size` bytes, in the pattern
    // checkBinary expects, keeping at most 1 MiB buffered. Resolves once all are handed over.
    async sendStream(count, size, ms) {
      const ch = state.binary;
      const until = performance.now() + ms;
      ch.bufferedAmountLowThreshold = 256 * 1024;
      for (let i = 0; i < count; i++) {
        while (ch.bufferedAmount > 1024 * 1024) {
          if (dead()) throw new Error(`connection lost after ${i} messages; ${describe()}`);
          if (performance.now() > until) throw new Error(`sending stalled at ${i}; ${describe()}`);
          // The event is the wake-up; the timer only bounds a missed one.
          await new Promise((r) => { ch.onbufferedamountlow = r; setTimeout(r, 50); });
        }
        const buf = new ArrayBuffer(size);
        const b = new Uint8Array(buf);
        for (let j = 4; j < size; j++) b[j] = (i * 31 + j) & 0xff;
        new DataView(buf).setUint32(0, i, true);
        ch.send(buf);
      }
      return true;
    },

    // Milliseconds on the page's clock (to relate the test's start to first_at).
    now() { return performance.now(); },

    describe,
    CONTROL_LIMIT,
  };
})();
