// The follower page's driver (PROTOCOL.md §9.7). Every protocol rule runs in lansync's own core,
// compiled to WebAssembly (lansync_web.js): the follower machine, the join keys and MACs, the
// link parser, the file receiver. This script only moves bytes between that core and the
// browser — RTCPeerConnection with the two negotiated channels of §1, fetch for the two round
// trips of §9, timers, localStorage — and draws the screen. No framework, no build step.
import init, { Core, parse_fragment } from './lansync_web.js';

const READY = '{"lansync":"ready"}';
const CONTROL_LIMIT = 65536; // §1: larger control messages are refused and the link closed
const BINARY_LIMIT = 16384;
const GATHER_MS = 2000; // §1: non-trickle, gathering capped at 2 s
const OPEN_MS = 10000; // the link must open this long after the answer
const FETCH_MS = 20000;
const MAX_EVENTS = 2000;
const KEY_DEVICE = 'lansync.device_id';
const KEY_RECORD = 'lansync.record';

const now = () => performance.timeOrigin + performance.now();
const $ = (id) => document.getElementById(id);

const page = {
  core: null,
  phase: 'loading',
  error: null,
  joinedMs: null,
  shownMs: null,
  joinedOnce: false,
  ended: false,
  refused: false,
  status: {},
  link: null, // {peer, pc, control, binary, heard, up, down}
  peers: 0,
  timer: null,
  blobs: new Map(), // sha256 → blob URL of a verified file
  shownScore: '',
};

// Test and debugging hooks (stable names, see the project's notes on the page).
const events = [];
window.lansync = {
  events,
  status() {
    const s = page.status;
    return {
      phase: page.phase,
      role_state: s.role_state ?? null,
      song_id: s.song_id ?? null,
      page: s.page ?? 0,
      follow: s.follow ?? true,
      leader: s.leader ?? '',
      presence: s.presence ?? null,
      files: (s.files || []).map((f) => ({
        name: f.name, size: f.size, verified: f.verified, kind: f.kind, mime: f.mime,
      })),
      device_id: s.device_id ?? storage.get(KEY_DEVICE),
      error: page.error,
      joined_ms: page.joinedMs,
      shown_ms: page.shownMs,
    };
  },
  command(obj) { command(obj); },
  cut() {
    const l = page.link;
    if (l) {
      teardown(l);
      linkGone(l);
      drain();
    }
  },
};

// localStorage may be missing or refuse (private mode): the page still works, without rejoin.
const storage = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* not kept */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* nothing kept */ } },
};

function random(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b); // available in insecure contexts too
  return b;
}

function deviceId() {
  let id = storage.get(KEY_DEVICE);
  if (!id || !/^[A-Za-z0-9_.:-]{1,64}$/.test(id)) {
    id = 'web-' + Array.from(random(6), (x) => x.toString(16).padStart(2, '0')).join('');
    storage.set(KEY_DEVICE, id);
  }
  return id;
}

function fail(sentence) {
  page.phase = 'failed';
  page.error = sentence;
  render();
}

async function main() {
  const fragment = location.hash.replace(/^#/, '');
  if (!fragment) {
    fail('This page needs the link from the master\'s QR code: scan it again with the camera.');
    return;
  }
  // The endpoint's rate limit covers the page's files too (§9.3): a reload storm may be told
  // to wait, so the core is fetched again a few times, a second apart.
  for (let attempt = 1; ; attempt++) {
    try {
      await init();
      break;
    } catch (e) {
      if (attempt >= 5) {
        fail('This browser cannot run the page (' + e.message + '): reload it, or open it in an up-to-date browser.');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  try {
    parse_fragment(fragment);
  } catch (e) {
    fail('This link is damaged (' + e.message + '): scan the master\'s QR code again.');
    return;
  }
  const id = deviceId();
  const name = 'Phone ' + id.slice(-4);
  page.phase = 'connecting';
  page.core = new Core(fragment, id, name, storage.get(KEY_RECORD) || '', random(8), now());
  page.name = name;
  window.addEventListener('online', () => { page.core.network_changed(now()); drain(); });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { page.core.timeout(now()); drain(); }
  });
  bindControls();
  drain();
}

// ---- the run loop: drain outputs, then sleep until the core's next deadline -----------------

function drain() {
  const core = page.core;
  if (!core) return;
  let text;
  while ((text = core.poll()) !== undefined) {
    let op;
    try { op = JSON.parse(text); } catch { continue; }
    switch (op.op) {
      case 'send': send(op.peer, op.text); break;
      case 'close': close(op.peer); break;
      case 'dial': dial(op.creds); break;
      case 'persist':
        if (op.record) storage.set(KEY_RECORD, JSON.stringify(op.record));
        else storage.del(KEY_RECORD);
        break;
      case 'event': onEvent(op.event); break;
      case 'files': onFiles(op.note); break;
    }
  }
  page.status = JSON.parse(core.status());
  render();
  schedule();
}

function schedule() {
  clearTimeout(page.timer);
  const at = page.core.next_timeout();
  if (at === undefined) return;
  const delay = Math.min(Math.max(0, at - now()), 0x7fffffff);
  page.timer = setTimeout(() => { page.core.timeout(now()); drain(); }, delay);
}

function record(event) {
  events.push({ t: performance.now(), event });
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
}

const REFUSALS = {
  invalid_token: 'This link is no longer valid: scan the master\'s current QR code.',
  invalid_password: 'The master did not accept this device: scan the master\'s QR code again.',
  session_ended: 'The session has ended.',
  session_full: 'The session is full: ask the master to make room, then reload.',
  session_not_found: 'The master has no such session any more: scan its current QR code.',
  device_id_taken: 'Another device already uses this page\'s name: reload the page to join anew.',
  version_mismatch: 'The master runs another version of lansync: update it, then reload.',
};

function onEvent(e) {
  record(e);
  switch (e.event) {
    case 'joined':
      page.joinedOnce = true;
      page.error = null;
      if (page.joinedMs === null) page.joinedMs = performance.now();
      break;
    case 'session_ended':
      page.ended = true;
      break;
    case 'rejected':
      page.refused = true;
      page.error = REFUSALS[e.reason] || 'The master did not let this device in: scan its QR code again.';
      if (e.reason === 'device_id_taken') storage.del(KEY_DEVICE);
      break;
    case 'gave_up':
      page.error = 'Cannot reach the master: check you are on its Wi-Fi, then tap Try again.';
      break;
    case 'error':
      if (e.code !== 'command-not-allowed') page.error = e.message;
      break;
  }
}

function onFiles(note) {
  record(note);
  if (note.event !== 'file_received' || page.blobs.has(note.sha256)) return;
  const bytes = page.core.take_file(note.sha256);
  if (!bytes) return;
  const f = (page.core && JSON.parse(page.core.status()).files || []).find((x) => x.sha256 === note.sha256);
  const blob = new Blob([bytes], { type: f ? f.mime : 'application/octet-stream' });
  page.blobs.set(note.sha256, URL.createObjectURL(blob));
}

function command(obj) {
  if (!page.core) return;
  try { page.core.command(now(), JSON.stringify(obj)); } catch (e) { page.error = e.message; }
  drain();
}

// ---- the link: one RTCPeerConnection, channels `control` (id 0) and `binary` (id 1) ----------

function send(peer, text) {
  const l = page.link;
  if (l && l.peer === peer && l.up && l.control.readyState === 'open') {
    try { l.control.send(text); } catch { /* the close event follows */ }
  }
}

function close(peer) {
  const l = page.link;
  if (l && l.peer === peer) {
    teardown(l);
    linkGone(l);
  }
}

function teardown(l) {
  for (const ch of [l.control, l.binary]) {
    if (ch) ch.onopen = ch.onclose = ch.onerror = ch.onmessage = null;
  }
  if (l.pc) {
    l.pc.onconnectionstatechange = l.pc.onicegatheringstatechange = null;
    try { l.pc.close(); } catch { /* already closed */ }
  }
}

// The link is gone: tell the core once (only a link that came up is the core's).
function linkGone(l) {
  if (l.down) return;
  l.down = true;
  if (page.link === l) page.link = null;
  if (l.up) page.core.link_down(now(), l.peer);
  if (l.wake) l.wake();
}

function sizeOf(text) {
  return text.length * 3 <= CONTROL_LIMIT ? text.length : new TextEncoder().encode(text).length;
}

function openLink(peer) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const l = { peer, pc, heard: false, up: false, down: false, wake: null };
  l.control = pc.createDataChannel('control', { negotiated: true, id: 0, ordered: true });
  l.binary = pc.createDataChannel('binary', { negotiated: true, id: 1, ordered: true });
  l.binary.binaryType = 'arraybuffer';
  const gone = () => { if (page.link === l || !l.up) { teardown(l); linkGone(l); drain(); } };
  for (const ch of [l.control, l.binary]) {
    ch.onopen = () => l.wake && l.wake();
    ch.onclose = gone;
    ch.onerror = gone;
  }
  pc.onicegatheringstatechange = () => l.wake && l.wake();
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') gone();
  };
  l.control.onmessage = (e) => {
    if (typeof e.data !== 'string' || sizeOf(e.data) > CONTROL_LIMIT) { gone(); return; }
    if (e.data === READY) { // consumed by the transport; later copies are ignored (§1)
      if (!l.heard) { l.heard = true; if (l.wake) l.wake(); }
      return;
    }
    if (!l.up) return;
    page.core.received(now(), l.peer, e.data);
    drain();
  };
  l.binary.onmessage = (e) => {
    if (!(e.data instanceof ArrayBuffer) || e.data.byteLength > BINARY_LIMIT) { gone(); return; }
    if (!l.up) return;
    page.core.binary(now(), l.peer, new Uint8Array(e.data));
    drain();
  };
  return l;
}

// Resolves once check() holds; rejects after ms or when the link died.
function until(l, what, ms, check) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { l.wake = null; reject(new Error('timed out waiting for ' + what)); }, ms);
    l.wake = () => {
      if (check()) { clearTimeout(timer); l.wake = null; resolve(); }
      else if (l.down) { clearTimeout(timer); l.wake = null; reject(new Error('the connection closed')); }
    };
    l.wake();
  });
}

async function post(path, body) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_MS);
  try {
    const r = await fetch(path, {
      method: 'POST', body, cache: 'no-store', signal: ctl.signal,
      headers: { 'content-type': 'application/json' },
    });
    // At most 64 KiB of answer (§9.4): read in pieces and stop past that.
    const reader = r.body.getReader();
    const parts = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > CONTROL_LIMIT) { ctl.abort(); throw new Error('the master\'s reply is too large'); }
      parts.push(value);
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const p of parts) { all.set(p, at); at += p.length; }
    return { status: r.status, text: new TextDecoder().decode(all) };
  } finally {
    clearTimeout(timer);
  }
}

const OFFLINE = 'This browser says it is offline and will not connect: turn Wi-Fi on (in Firefox, ' +
  'untick File › Work Offline), then reload this page.';

// A `Dial` of the core: offer, the two round trips, the answer, the channels, the ready marker.
// Always answered with link_up, dial_refused or dial_failed.
async function dial(creds) {
  const peer = ++page.peers;
  if (page.link) { teardown(page.link); linkGone(page.link); }
  let hs = null;
  let l = null;
  try {
    try {
      l = openLink(peer);
      page.link = l;
      await l.pc.setLocalDescription(await l.pc.createOffer());
      await until(l, 'ICE gathering', GATHER_MS, () => l.pc.iceGatheringState === 'complete')
        .catch(() => { /* non-trickle with what was gathered so far */ });
    } catch (e) {
      // Firefox refuses WebRTC while it believes it is offline.
      throw new Error(navigator.onLine === false ? OFFLINE : 'WebRTC failed here: ' + e.message);
    }
    const offer = l.pc.localDescription.sdp;
    if (navigator.onLine === false && !/a=candidate:/.test(offer)) throw new Error(OFFLINE);
    hs = page.core.handshake(JSON.stringify(creds), random(32));
    let r = await post('/v1/join/start', hs.start_body());
    hs.read_start(r.status, r.text);
    r = await post('/v1/join', hs.join_body(page.name, offer));
    const answer = hs.read_answer(r.status, r.text);
    await l.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await until(l, 'the link to open', OPEN_MS, () =>
      l.heard && l.control.readyState === 'open' && l.binary.readyState === 'open');
    l.up = true;
    page.core.link_up(now(), peer);
  } catch (e) {
    const refused = hs && hs.refused();
    if (l) { teardown(l); linkGone(l); }
    if (refused) {
      page.core.dial_refused(now(), refused);
    } else {
      page.error = 'Cannot reach the master yet (' + (e && e.message) + '); trying again.';
      if (e && e.message === OFFLINE) page.error = OFFLINE;
      page.core.dial_failed(now());
    }
  } finally {
    if (hs) hs.free();
  }
  drain();
}

// ---- the screen --------------------------------------------------------------------------------

function phaseOf(s) {
  if (page.ended) return 'ended';
  if (page.refused) return 'failed';
  switch (s.role_state) {
    case 'FOLLOWER_CONNECTED_FOLLOW': return 'following';
    case 'FOLLOWER_CONNECTED_FREE': return 'free';
    case 'FOLLOWER_DISCONNECTED_LOCAL':
    case 'FOLLOWER_REJOINING': return page.joinedOnce ? 'reconnecting' : 'connecting';
    default: return page.phase === 'failed' ? 'failed' : 'connecting';
  }
}

const LINES = {
  loading: 'Loading…',
  connecting: 'Connecting to the master…',
  following: 'Following the master',
  free: 'Browsing freely — tap Follow to go back to the master\'s page',
  reconnecting: 'Connection lost — reconnecting… (your page stays)',
  ended: 'The session has ended. You can close this page.',
  failed: 'Not connected',
};

function render() {
  const s = page.status;
  if (page.core) page.phase = phaseOf(s);
  const connected = page.phase === 'following' || page.phase === 'free';
  if (connected) page.error = null;
  document.body.dataset.phase = page.phase;
  $('state').textContent = LINES[page.phase] || page.phase;
  $('song').textContent = s.song_id || (connected ? 'No song yet' : '');
  $('page').textContent = s.song_id || connected ? 'Page ' + ((s.page ?? 0) + 1) : '';
  $('mode').textContent = s.follow === false ? 'Follow the master' : 'Browse freely';
  $('mode').disabled = !page.core || page.phase === 'ended';
  $('leader').textContent = s.leader || '—';
  $('presence').textContent = s.presence == null ? '' : '· ' + s.presence + ' here';
  const err = $('error');
  err.hidden = !page.error;
  err.textContent = page.error || '';
  $('retry').hidden = !(page.error && page.phase === 'reconnecting');
  renderScore(s.score);
  renderFiles(s.files || []);
  if (connected && page.shownMs === null) page.shownMs = performance.now();
}

function renderScore(score) {
  const img = $('score-img');
  const doc = $('score-doc');
  const url = score && page.blobs.get(score.sha256);
  const key = url ? url + '#page=' + score.page : '';
  if (key === page.shownScore) return;
  page.shownScore = key;
  img.hidden = doc.hidden = true;
  if (!url) { img.removeAttribute('src'); doc.removeAttribute('src'); return; }
  if (score.mime.startsWith('image/')) {
    img.src = url;
    img.alt = score.name;
    img.hidden = false;
  } else {
    // The browser's own PDF viewer. A new frame for each page: a viewer already open ignores a
    // change of the URL's #page alone.
    const fresh = doc.cloneNode(false);
    fresh.src = key;
    fresh.title = score.name;
    fresh.hidden = false;
    doc.replaceWith(fresh);
  }
}

function renderFiles(files) {
  const list = $('files');
  const text = files.map((f) => f.name + (f.verified ? '' : ' …')).join('\n');
  if (list.dataset.text === text) return;
  list.dataset.text = text;
  list.replaceChildren(...files.map((f) => {
    const li = document.createElement('li');
    const url = f.verified && page.blobs.get(f.sha256);
    const label = f.name + ' (' + Math.max(1, Math.round(f.size / 1024)) + ' KiB)';
    if (url) {
      const a = document.createElement('a');
      a.href = url;
      a.download = f.name;
      a.textContent = label;
      li.append(a);
    } else {
      li.textContent = label + ' — receiving…';
    }
    return li;
  }));
  $('files-box').hidden = files.length === 0;
}

function bindControls() {
  $('mode').onclick = () => command({ cmd: page.status.follow === false ? 'follow' : 'free' });
  // Turning a page by hand leaves the master's pages: browse freely first.
  const turn = (by) => {
    const to = Math.max(0, (page.status.page ?? 0) + by);
    if (page.status.follow !== false) command({ cmd: 'free' });
    command({ cmd: 'set_page', page: to });
  };
  $('prev').onclick = () => turn(-1);
  $('next').onclick = () => turn(1);
  $('retry').onclick = () => command({ cmd: 'retry' });
}

render();
main().catch((e) => fail('The page stopped (' + e.message + '): reload it.'));
