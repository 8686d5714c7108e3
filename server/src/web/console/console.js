// The relay's web console: the streams and their shards (polled from the JSON endpoints)
// and a live tail of one stream (the Server-Sent Events endpoint). Plain browser APIs only:
// the relay serves this file itself, and many deployments have no internet for a CDN.
//
// The tail is read in a worker (tail-worker.js), with fetch() rather than EventSource,
// which cannot send an Authorization header; it keeps the last event id, so Pause and a
// dropped connection resume exactly after the last record received (Last-Event-ID).
'use strict';

const $ = (id) => document.getElementById(id);

/** Rows kept in the tail: older ones are removed as new ones come. */
const MAX_ROWS = 500;
/** Rows added per drawing; above that the tail shows a sample, and says so. */
const ROWS_PER_FRAME = 25;
/** Draw at most this often: 250 rows a second are as many as anyone reads, and drawing
 * more kept the page from answering at thousands of records a second. */
const DRAW_EVERY_MS = 100;
/** How often the streams and the selected stream are read again. */
const REFRESH_MS = 2000;

const state = {
  token: sessionStorage.getItem('kinesis-relay-token') || '',
  streams: [],
  stream: null,
  tail: null, // { url, lastId }: the tail being read, and where it would resume
  worker: null, // reads and parses the event stream (tail-worker.js)
  paused: false,
  pending: [], // to draw: record JSON text, or { event, payload }
  received: 0, // records received since the last tick, for the rate
  skipped: 0, // records not drawn since the last tick (sampling)
};

function headers(extra) {
  const h = Object.assign({}, extra);
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

function notice(text) {
  $('notice').textContent = text || '';
}

/** An error body of the HTTP endpoints: { code, message, cursor? }. */
function describeError(status, body) {
  if (body && body.code) return `${body.code} (HTTP ${status}): ${body.message}`;
  return `HTTP ${status}`;
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers(), cache: 'no-store' });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(describeError(response.status, body));
  return body;
}

// --- streams and shards -------------------------------------------------------------

function shortStatus(status) {
  return String(status || '').replace(/^(STREAM_STATUS_|SHARD_STATE_)/, '');
}

function renderStreams() {
  const list = $('streams');
  list.replaceChildren(
    ...state.streams.map((s) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.stream = s.name;
      b.setAttribute('aria-current', String(s.name === state.stream));
      const name = document.createElement('span');
      name.textContent = `${s.name} (${s.shardCount} shards)`;
      const status = document.createElement('span');
      status.className = 'status ' + shortStatus(s.status);
      status.textContent = shortStatus(s.status);
      b.append(name, status);
      b.addEventListener('click', () => selectStream(s.name));
      li.append(b);
      return li;
    }),
  );
}

function fact(dl, term, value) {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value;
  dl.append(dt, dd);
}

function renderStream(d) {
  $('stream-title').textContent = `Stream ${d.stream}`;
  const dl = $('stream-facts');
  dl.replaceChildren();
  fact(dl, 'health', shortStatus(d.status));
  fact(dl, 'subscribers', String(d.subscriberCount));
  fact(dl, 'consumer', d.consumer ? `${d.consumer.name} (${d.consumer.status})` : '-');
  fact(dl, 'oldest held', d.oldestTimestamp || '-');
  fact(
    dl,
    'Kinesis keeps',
    d.upstreamRetentionHours ? `${d.upstreamRetentionHours} h, from ${d.upstreamOldestTimestamp || '?'}` : '-',
  );
  const rows = (d.shards || []).map((s) => {
    const tr = document.createElement('tr');
    const cells = [
      [s.shardId, ''],
      [shortStatus(s.state), ''],
      [`${s.millisBehindLatest} ms`, 'num'],
      [String(s.recordsHeld), 'num'],
      [formatBytes(s.bytesHeld), 'num'],
      [[s.parentShardId, s.adjacentParentShardId].filter(Boolean).join(', ') || '-', ''],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  $('shards').tBodies[0].replaceChildren(...rows);
}

function formatBytes(n) {
  const v = Number(n) || 0;
  if (v < 1024) return `${v} B`;
  if (v < 1 << 20) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / (1 << 20)).toFixed(1)} MiB`;
}

async function refresh() {
  try {
    const list = await getJson('/v1/streams');
    state.streams = list.streams || [];
    if (!state.stream && state.streams.length) {
      state.stream = decodeURIComponent(location.hash.slice(1)) || state.streams[0].name;
    }
    renderStreams();
    if (state.stream) renderStream(await getJson('/v1/streams/' + encodeURIComponent(state.stream)));
    if (!state.tail) notice('');
  } catch (err) {
    notice(String(err.message || err));
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

function selectStream(name) {
  if (name === state.stream) return;
  stopTail();
  state.stream = name;
  location.hash = encodeURIComponent(name);
  $('records').replaceChildren();
  renderStreams();
  getJson('/v1/streams/' + encodeURIComponent(name)).then(renderStream, (err) => notice(err.message));
}

// --- the live tail ------------------------------------------------------------------

function tailUrl() {
  const params = new URLSearchParams();
  const start = $('start').value;
  if (start === 'cursor') {
    params.set('cursor', $('cursor').value.trim());
  } else if (start === 'time') {
    const at = $('time').value;
    if (at) params.set('at_timestamp', new Date(at).toISOString());
  } else {
    params.set('start', start);
  }
  for (const key of $('keys').value.split(',')) {
    if (key.trim()) params.append('partition_key', key.trim());
  }
  return `/v1/streams/${encodeURIComponent(state.stream)}/records?${params}`;
}

/** What the worker (`tail-worker.js`) reports. */
function onWorker(message) {
  const m = message.data;
  if (m.kind === 'batch') {
    if (state.tail && m.lastId) state.tail.lastId = m.lastId;
    state.received += m.received;
    state.skipped += m.skipped;
    state.pending.push(...m.records);
    if (state.pending.length > ROWS_PER_FRAME) {
      state.skipped += state.pending.length - ROWS_PER_FRAME;
      state.pending.splice(0, state.pending.length - ROWS_PER_FRAME);
    }
  } else if (m.kind === 'event') {
    state.pending.push({ event: m.type, payload: m.payload });
  } else if (m.kind === 'state') {
    if (!state.paused) setTailState(m.text);
  } else if (m.kind === 'notice') {
    notice(m.text);
  } else if (m.kind === 'ended') {
    stopTail();
  }
}

function send(lastId) {
  state.worker.postMessage({ cmd: 'start', url: state.tail.url, headers: headers(), lastId });
}

function startTail() {
  state.tail = { url: tailUrl(), lastId: null };
  state.paused = false;
  $('tail-pause').disabled = false;
  $('tail-stop').disabled = false;
  setPauseButton(false);
  send(null);
}

function stopTail() {
  state.worker.postMessage({ cmd: 'stop' });
  state.tail = null;
  state.paused = false;
  $('tail-pause').disabled = true;
  $('tail-stop').disabled = true;
  setPauseButton(false);
  setTailState('stopped');
}

/** Pause closes the stream and keeps the last event id; Resume continues right after it. */
function togglePause() {
  if (!state.tail) return;
  state.paused = !state.paused;
  setPauseButton(state.paused);
  if (state.paused) {
    state.worker.postMessage({ cmd: 'stop' });
    setTailState('paused');
  } else {
    send(state.tail.lastId);
  }
}

function setPauseButton(paused) {
  $('tail-pause').textContent = paused ? 'Resume' : 'Pause';
  $('tail-pause').setAttribute('aria-pressed', String(paused));
}

function setTailState(text) {
  $('tail-state').textContent = text;
}

// --- rendering ----------------------------------------------------------------------

function recordRow(item) {
  let r = item;
  if (typeof item === 'string') {
    try {
      r = JSON.parse(item);
    } catch {
      r = { event: 'unreadable record', payload: item };
    }
  }
  const li = document.createElement('li');
  const meta = document.createElement('div');
  meta.className = 'meta';
  if (r.event) {
    li.className = 'event';
    meta.textContent = `${r.event}: ${JSON.stringify(r.payload)}`;
    li.append(meta);
    return li;
  }
  const key = document.createElement('span');
  key.className = 'key';
  key.textContent = r.partitionKey;
  const where = document.createElement('span');
  where.textContent = `${r.shardId} · …${String(r.sequenceNumber).slice(-8)}`;
  const when = document.createElement('span');
  when.textContent = r.approximateArrivalTimestamp;
  meta.append(key, where, when);
  const pre = document.createElement('pre');
  pre.textContent = r.dataEncoding === 'utf8' ? pretty(r.data) : `base64: ${r.data}`;
  li.append(meta, pre);
  return li;
}

/** JSON data pretty-printed; any other text as it is. */
function pretty(text) {
  const t = String(text);
  if (!/^\s*[[{]/.test(t)) return t;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return t;
  }
}

let lastDraw = 0;

function frame(now) {
  if (now - lastDraw < DRAW_EVERY_MS) {
    requestAnimationFrame(frame);
    return;
  }
  lastDraw = now;
  const list = $('records');
  const shown = state.pending.splice(0, state.pending.length);
  if (shown.length) {
    // Follow the newest records only while the reader is at the bottom.
    const follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(...shown.map(recordRow));
    while (list.childElementCount > MAX_ROWS) list.firstElementChild.remove();
    if (follow) list.scrollTop = list.scrollHeight;
  }
  requestAnimationFrame(frame);
}

function tick() {
  $('rate').textContent = `${state.received} records/s`;
  state.received = 0;
  $('shown').textContent = `${$('records').childElementCount} shown`;
  $('sampling').textContent = state.skipped
    ? `showing a sample: ${state.skipped} records/s not drawn ·`
    : '';
  state.skipped = 0;
}

// --- wiring -------------------------------------------------------------------------

function init() {
  state.worker = new Worker('tail-worker.js');
  state.worker.onmessage = onWorker;
  $('token').value = state.token;
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token').value.trim();
    // Kept for this tab only.
    sessionStorage.setItem('kinesis-relay-token', state.token);
    notice(state.token ? 'token set for this tab' : '');
  });
  $('token-clear').addEventListener('click', () => {
    state.token = '';
    $('token').value = '';
    sessionStorage.removeItem('kinesis-relay-token');
  });
  $('start').addEventListener('change', () => {
    $('cursor-field').hidden = $('start').value !== 'cursor';
    $('time-field').hidden = $('start').value !== 'time';
  });
  $('tail-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!state.stream) return notice('no stream selected');
    notice('');
    $('records').replaceChildren();
    startTail();
  });
  $('tail-pause').addEventListener('click', togglePause);
  $('tail-stop').addEventListener('click', stopTail);
  requestAnimationFrame(frame);
  setInterval(tick, 1000);
  refresh();
}

init();
