// The console's live tail, off the page's main thread: reads the Server-Sent Events stream
// with fetch() (EventSource cannot send an Authorization header), parses it, counts the
// records and, ten times a second, hands the page only the newest few to draw. At thousands
// of records a second the page then stays as responsive as when the stream is idle.
//
// Messages in:  { cmd: 'start', url, headers, lastId } | { cmd: 'stop' }
// Messages out: { kind: 'batch', records: [json text], received, skipped, lastId }
//               { kind: 'event', type, payload } (shard, gap: drawn in place)
//               { kind: 'state', text } | { kind: 'notice', text } | { kind: 'ended' }
'use strict';

/** Records handed to the page per post; the rest are counted as not drawn. */
const KEEP = 25;
const POST_EVERY_MS = 100;

let tail = null; // { controller, url, headers, lastId, reconnects }
let newest = [];
let received = 0;
let skipped = 0;
let changed = false;

function describeError(status, body) {
  if (body && body.code) return `${body.code} (HTTP ${status}): ${body.message}`;
  return `HTTP ${status}`;
}

async function read(t) {
  const headers = Object.assign({ Accept: 'text/event-stream' }, t.headers);
  if (t.lastId) headers['Last-Event-ID'] = t.lastId;
  let response;
  try {
    response = await fetch(t.url, { headers, signal: t.controller.signal, cache: 'no-store' });
  } catch (err) {
    return retry(t, err);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    postMessage({ kind: 'notice', text: describeError(response.status, body) });
    return end(t);
  }
  t.reconnects = 0;
  postMessage({ kind: 'state', text: 'streaming' });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // One pass over this chunk's events and one slice at the end: slicing after every
      // event is quadratic in a chunk of thousands of them.
      let start = 0;
      let stop;
      while ((stop = buffer.indexOf('\n\n', start)) >= 0) {
        if (onEvent(t, buffer.slice(start, stop)) === 'end') return end(t);
        start = stop + 2;
      }
      buffer = buffer.slice(start);
    }
  } catch (err) {
    if (!t.controller.signal.aborted) retry(t, err);
    return;
  }
  if (!t.controller.signal.aborted) retry(t, new Error('the stream ended'));
}

/** One event: `id:`, `event:`, `data:` lines; comment lines (heartbeats) are skipped. */
function onEvent(t, block) {
  let id = null;
  let type = 'message';
  let data = null;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') type = value;
    else if (field === 'data') data = data === null ? value : data + '\n' + value;
  }
  if (id) t.lastId = id;
  if (data === null) return;
  changed = true;
  if (type === 'message') {
    received += 1;
    newest.push(data);
    if (newest.length > 2 * KEEP) {
      skipped += newest.length - KEEP;
      newest = newest.slice(newest.length - KEEP);
    }
    return;
  }
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    return;
  }
  if (type === 'error') {
    postMessage({ kind: 'notice', text: describeError('-', payload) });
    if (payload.cursor) t.lastId = payload.cursor;
    // UNAVAILABLE (a relay shutting down, catch-up busy) is worth another try.
    if (payload.code !== 'UNAVAILABLE') return 'end';
    return;
  }
  postMessage({ kind: 'event', type, payload });
}

function retry(t, err) {
  if (t !== tail || t.controller.signal.aborted) return;
  t.reconnects += 1;
  const delay = Math.min(30000, 500 * 2 ** Math.min(t.reconnects, 6));
  postMessage({ kind: 'state', text: `reconnecting in ${Math.round(delay / 1000)} s (${err.message || err})` });
  setTimeout(() => {
    if (t === tail && !t.controller.signal.aborted) read(t);
  }, delay);
}

function end(t) {
  if (t !== tail) return;
  flush();
  tail = null;
  postMessage({ kind: 'ended' });
}

function flush() {
  if (!changed && !received) return;
  postMessage({ kind: 'batch', records: newest, received, skipped, lastId: tail ? tail.lastId : null });
  newest = [];
  received = 0;
  skipped = 0;
  changed = false;
}

setInterval(() => {
  if (tail) flush();
}, POST_EVERY_MS);

onmessage = (message) => {
  const { cmd, url, headers, lastId } = message.data;
  if (tail) {
    // What was read so far goes to the page first, with the last event id to resume from.
    flush();
    tail.controller.abort();
  }
  tail = null;
  newest = [];
  if (cmd === 'start') {
    tail = { controller: new AbortController(), url, headers, lastId, reconnects: 0 };
    postMessage({ kind: 'state', text: 'connecting' });
    read(tail);
  }
};
