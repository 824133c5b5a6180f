// Byte-exact HTTP helpers for the e2e tests, plus the expectations shared by
// the replay / encodings / pitfalls / bad_input tests (what the server should
// store for a given sent event).
//
//   await send(srv, { method, path, headers, body, agent })   one request, raw bytes
//     headers: [[name, value], ...] sent in that order and case; Host and
//     Content-Length are added unless given (contentLength: false = none);
//     agent: false (default: a new connection, closed after) or an http.Agent.
//     Resolves { status, headers (lower-case names), rawHeaders, body (Buffer), text, json() }.
//   await sendHeadersFirst(srv, {...})   send the head, wait for an early answer
//   await sendChunked(srv, {...})        Transfer-Encoding: chunked body
//   form({a: 1, data: ...})              application/x-www-form-urlencoded
//   expectedStored(ev, ctx)              what export should show for a sent event
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import assert from 'node:assert/strict';

const here = path.dirname(new URL(import.meta.url).pathname);

// The shared spec / fixtures folder (sibling of the repository).
export const SHARED = (() => {
  const cands = [process.env.MIXPANELD_SHARED, path.resolve(here, '../../../../shared')];
  for (const c of cands) if (c && fs.existsSync(path.join(c, 'spec'))) return c;
  throw new Error(`shared/ (spec and SDK fixtures) not found beside the repository: tried ${cands.filter(Boolean).join(', ')}`);
})();
export const EXAMPLES = path.join(SHARED, 'spec', 'examples');
export const FIXTURES = path.join(SHARED, 'fixtures', 'sdk-capture');

function urlParts(srv) {
  const u = new URL(srv.url);
  return { host: u.hostname, port: Number(u.port) };
}

function finish(res, chunks) {
  const body = Buffer.concat(chunks);
  const headers = {};
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const k = res.rawHeaders[i].toLowerCase();
    headers[k] = headers[k] === undefined ? res.rawHeaders[i + 1] : headers[k] + ', ' + res.rawHeaders[i + 1];
  }
  const text = body.toString('utf8');
  return {
    status: res.statusCode, headers, rawHeaders: res.rawHeaders, body, text,
    json() { return JSON.parse(text); },
  };
}

function headerArray(srv, headers, { hostHeader = true, length = null } = {}) {
  const flat = [];
  const names = new Set();
  for (const [k, v] of headers || []) {
    flat.push(k, String(v));
    names.add(k.toLowerCase());
  }
  const { host, port } = urlParts(srv);
  if (hostHeader && !names.has('host')) flat.push('Host', `${host}:${port}`);
  if (length !== null && !names.has('content-length') && !names.has('transfer-encoding'))
    flat.push('Content-Length', String(length));
  return flat;
}

function toBuf(body) {
  if (body === null || body === undefined) return null;
  return Buffer.isBuffer(body) ? body : Buffer.from(String(body), 'utf8');
}

// One request with exactly the given method, target, headers and body.
export function send(srv, { method = 'GET', path: target = '/', headers = [], body = null, contentLength = true, timeout = 15000, agent = false } = {}) {
  const buf = toBuf(body);
  const len = contentLength === false ? null
    : typeof contentLength === 'number' ? contentLength
      : buf ? buf.length : (method === 'POST' || method === 'PUT' ? 0 : null);
  const { host, port } = urlParts(srv);
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: target, agent, setHost: false,
      headers: headerArray(srv, headers, { length: len }) }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ ...finish(res, chunks), reusedSocket: req.reusedSocket }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`timeout: ${method} ${target}`)));
    req.on('error', reject);
    if (buf && buf.length) req.write(buf);
    req.end();
  });
}

// Send the request head (with a Content-Length of BODYLENGTH) and wait up to
// WAITMS for an answer before sending any body byte.  Resolves
// { ...response, early: true } when the server answered before the body was
// sent; otherwise sends the body and resolves { ...response, early: false }.
export function sendHeadersFirst(srv, { method = 'POST', path: target = '/', headers = [], bodyLength, fill = 'a', waitMs = 3000 } = {}) {
  const { host, port } = urlParts(srv);
  return new Promise((resolve, reject) => {
    let answered = false, bodySent = false;
    const req = http.request({ host, port, method, path: target, agent: false, setHost: false,
      headers: headerArray(srv, headers, { length: bodyLength }) }, (res) => {
      answered = true;
      const early = !bodySent;
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => { resolve({ ...finish(res, chunks), early }); req.destroy(); });
      res.on('error', (e) => reject(e));
    });
    req.on('error', (e) => { if (!answered) reject(e); });
    req.flushHeaders();
    setTimeout(() => {
      if (answered) return;
      bodySent = true;
      const chunk = Buffer.alloc(16384, fill);
      let left = bodyLength;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!req.write(chunk.subarray(0, n))) return req.once('drain', pump);
        }
        req.end();
      };
      pump();
    }, waitMs);
  });
}

// Chunked upload without Content-Length.
export function sendChunked(srv, { method = 'POST', path: target = '/', headers = [], chunks = [] } = {}) {
  const { host, port } = urlParts(srv);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ host, port, method, path: target, agent: false, setHost: false,
      headers: headerArray(srv, [...headers, ['Transfer-Encoding', 'chunked']]) }, (res) => {
      answered = true;
      const out = [];
      res.on('data', (d) => out.push(d));
      res.on('end', () => { resolve(finish(res, out)); req.destroy(); });
      res.on('error', reject);
    });
    req.on('error', (e) => { if (!answered) reject(e); });
    let i = 0;
    const pump = () => {
      while (i < chunks.length) {
        if (answered) return;
        if (!req.write(toBuf(chunks[i++]))) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

export function form(fields) {
  return Object.entries(fields).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(typeof v === 'string' ? v : JSON.stringify(v))}`).join('&');
}

export const FORM = ['Content-Type', 'application/x-www-form-urlencoded'];
export const JSONCT = ['Content-Type', 'application/json'];

export function gzip(x) { return zlib.gzipSync(toBuf(x)); }
export function b64json(obj) { return Buffer.from(JSON.stringify(obj), 'utf8').toString('base64'); }

// POST a form body data=<url-encoded base64 of PAYLOAD> (what the JS SDK sends to a non-mixpanel host).
export function postForm(srv, p, payload, { query = '', extra = {}, headers = [] } = {}) {
  const body = form({ data: b64json(payload), ...extra });
  return send(srv, { method: 'POST', path: p + (query ? '?' + query : ''), headers: [FORM, ...headers], body });
}

export function postJSON(srv, p, payload, { query = '', headers = [] } = {}) {
  return send(srv, { method: 'POST', path: p + (query ? '?' + query : ''), headers: [JSONCT, ...headers],
    body: typeof payload === 'string' ? payload : JSON.stringify(payload) });
}

// ---- what the server should store ---------------------------------------

// Cut S to at most N UTF-8 bytes without splitting a character.
export function truncUtf8(s, n = 255) {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= n) return s;
  let end = n;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString('utf8');
}

export function truncDeep(v) {
  if (typeof v === 'string') return truncUtf8(v);
  if (Array.isArray(v)) return v.map(truncDeep);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = truncDeep(x);
    return o;
  }
  return v;
}

// Mixpanel time (s or ms, number or numeric string) -> ms, or null.
export function timeMs(t) {
  if (t === undefined || t === null) return null;
  const d = typeof t === 'string' ? Number(t) : t;
  if (typeof d !== 'number' || !Number.isFinite(d)) return null;
  return d >= 1e11 ? Math.round(d) : Math.round(d * 1000);
}

// distinct_id the server stores (ingest.h; spec §9.1): with identity = simplified
// (the default) $user_id, else "$device:"+$device_id, win over the sent value;
// with identity = original they only fill a missing one.  (ip=1 hashing is not modelled.)
export function derivedDistinctId(p, identity = 'simplified') {
  const id = (v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null);
  const sent = p.distinct_id !== undefined && p.distinct_id !== null ? id(p.distinct_id) : null;
  if (sent !== null && identity !== 'simplified') return sent;
  if (id(p.$user_id)) return id(p.$user_id);
  if (id(p.$device_id)) return '$device:' + id(p.$device_id);
  return sent !== null ? sent : '';
}

// What export should show for a sent event EV (on /track or, import: true, on /import).
// Returns { event, distinct_id, time_ms (null = receive time), insert_id (null = generated), props }
// where props is the exported `properties` minus time, mp_processing_time_ms and a generated $insert_id.
export function expectedStored(ev, { import: imp = false, identity = 'simplified' } = {}) {
  const p = ev.properties || {};
  const props = {};
  for (const [k, v] of Object.entries(p)) {
    if (k === 'token' || k === 'time' || k === 'ip' || k === 'mp_processing_time_ms' || k === 'distinct_id') continue;
    if (k === '$insert_id') continue;
    if (imp && k === '$import') continue;
    props[k] = truncDeep(v);
  }
  const did = derivedDistinctId(p, identity);
  props.distinct_id = did;
  const sent = typeof p.distinct_id === 'string' ? p.distinct_id : typeof p.distinct_id === 'number' ? String(p.distinct_id) : '';
  if (sent && sent !== did && !('$distinct_id_before_identity' in props)) props.$distinct_id_before_identity = sent;
  const iid = typeof p.$insert_id === 'string' && p.$insert_id !== '' && Buffer.byteLength(p.$insert_id) <= 255 ? p.$insert_id : null;
  if (iid) props.$insert_id = iid;
  if (imp) props.$import = true;
  return { event: truncUtf8(ev.event), distinct_id: did, time_ms: timeMs(p.time), insert_id: iid, props };
}

// The exported properties without the server's time-dependent additions.
export function comparableProps(exported, { generatedInsertId }) {
  const o = { ...exported.properties };
  delete o.time;
  assertNumber(o.mp_processing_time_ms, 'mp_processing_time_ms');
  delete o.mp_processing_time_ms;
  if (generatedInsertId) {
    if (typeof o.$insert_id !== 'string' || !o.$insert_id) throw new Error('export lacks a generated $insert_id: ' + JSON.stringify(exported));
    delete o.$insert_id;
  }
  return o;
}

function assertNumber(v, what) {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${what} is not a number: ${JSON.stringify(v)}`);
}

// Canonical JSON with sorted keys (for multiset comparisons).
export function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  return JSON.stringify(v);
}

// The five wire encodings of track-batch.json (spec/examples/track-body-variants.txt).
export function trackBodyVariants() {
  const text = fs.readFileSync(path.join(EXAMPLES, 'track-body-variants.txt'), 'utf8');
  const out = [];
  let label = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) { label.push(line.slice(1).trim()); continue; }
    if (!line.trim()) continue;
    out.push({ label: label[label.length - 1], body: line });
    label = [];
  }
  return out;
}

export function readJSON(file) { return JSON.parse(fs.readFileSync(file, 'utf8')); }

// Export with a given secret, optionally only some event names.
export async function exportAll(srv, secret, { events = null, timeInMs = false } = {}) {
  // resolve_ids=false: the distinct_ids as stored (what these ingestion tests check),
  // not the canonical ids of merged users (docs/IDENTITY.md)
  const q = new URLSearchParams({ from_date: '1971-01-01', to_date: '2100-12-31', resolve_ids: 'false' });
  if (events) q.set('event', JSON.stringify(events));
  if (timeInMs) q.set('time_in_ms', 'true');
  const res = await fetch(`${srv.url}/api/2.0/export?${q}`, { headers: { Authorization: 'Basic ' + Buffer.from(secret + ':').toString('base64') } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`export ${res.status}: ${text}`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Assert the server's stderr shows no sanitizer report.
export function sanitizerClean(log) {
  return !/AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/.test(log);
}

// Every event of SENT is exported (from the project whose API secret is
// SECRET) exactly once, with the properties the server should have kept.
export async function assertStored(srv, secret, sent, { imp = false } = {}) {
  const names = [...new Set(sent.map((e) => truncUtf8(e.event)))];
  const evs = await exportAll(srv, secret, { events: names, timeInMs: true });
  assert.equal(evs.length, sent.length, `exported: ${JSON.stringify(evs)}`);
  for (const s of sent) {
    const exp = expectedStored(s, { import: imp });
    const got = evs.find((e) => e.properties.$insert_id === exp.insert_id);
    assert.ok(got, `${exp.event} ${exp.insert_id} exported`);
    assert.equal(got.event, exp.event);
    assert.equal(got.properties.time, exp.time_ms);
    assert.deepStrictEqual(comparableProps(got, { generatedInsertId: false }), exp.props);
  }
  return evs;
}
