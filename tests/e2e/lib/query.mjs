// Helpers for the query API tests (query_hand, query_diff).
//
//   await q(srv, 'segmentation', {event: 'A', from_date, to_date, ...}, {auth, prefix, method})
//     -> { status, json (undefined when the body is not JSON), text, headers }
//     params: objects and arrays are sent as JSON text; undefined/null are left out.
//     auth: a project secret (string, sent as Basic "SECRET:"), {user, pass},
//           a full header value starting with "Basic " / "Bearer ", or null (none).
//           Default: the demo project's API secret.
//     prefix: '/api/2.0' (default) or '/api/query'.
//     method: 'GET' (default: parameters in the query string) or 'POST'
//           (parameters as a form body; `query` adds query-string parameters;
//           `json`: send this JSON body instead, params in the query string).
//   await importEvents(srv, events, {secret})   POST /import?strict=1 in chunks of 2000
//   ev(name, distinctId, timeMs, props, insertId)   one /import event
//   firstDiff(got, want, {rel})   the first differing key path, or null
import assert from 'node:assert/strict';
import { DEMO } from './server.mjs';

export function authHeader(auth) {
  if (auth === null || auth === false) return null;
  if (auth === undefined) auth = DEMO.api_secret;
  if (typeof auth === 'string') {
    if (/^(Basic|Bearer) /.test(auth)) return auth;
    return 'Basic ' + Buffer.from(auth + ':').toString('base64');
  }
  return 'Basic ' + Buffer.from(`${auth.user}:${auth.pass ?? ''}`).toString('base64');
}

export function encodeParams(params = {}) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    u.set(k, typeof v === 'string' ? v : (typeof v === 'object' ? JSON.stringify(v) : String(v)));
  }
  return u.toString();
}

export async function q(srv, name, params = {}, { auth, prefix = '/api/2.0', method = 'GET', query = null, path = null, headers = {}, json = undefined } = {}) {
  const h = { ...headers };
  const a = authHeader(auth);
  if (a) h.Authorization = a;
  let url = `${srv.url}${path ?? `${prefix}/${name}`}`;
  let body;
  const qs = encodeParams(params);
  if (method === 'GET' || method === 'HEAD' || method === 'DELETE') {
    if (qs) url += '?' + qs;
  } else if (json !== undefined) { // JSON body; params go to the query string
    if (qs) url += '?' + qs;
    h['Content-Type'] = 'application/json';
    body = typeof json === 'string' ? json : JSON.stringify(json);
  } else {
    if (query) url += '?' + encodeParams(query);
    if (!('Content-Type' in h)) h['Content-Type'] = 'application/x-www-form-urlencoded';
    body = qs;
  }
  const res = await fetch(url, { method, headers: h, body });
  const text = await res.text();
  let parsed;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  return { status: res.status, json: parsed, text, headers: res.headers };
}

// One /import event.  timeMs: milliseconds (sent as is); props: extra properties.
let autoId = 0;
export function ev(name, distinctId, timeMs, props = {}, insertId = null) {
  return {
    event: name,
    properties: { time: timeMs, distinct_id: distinctId, $insert_id: insertId ?? `e${(++autoId).toString(36)}-${process.pid}`, ...props },
  };
}

// POST /import?strict=1 in chunks of 2000; asserts each chunk was accepted in full.
export async function importEvents(srv, events, { secret = DEMO.api_secret } = {}) {
  let n = 0;
  for (let i = 0; i < events.length; i += 2000) {
    const chunk = events.slice(i, i + 2000);
    const res = await fetch(`${srv.url}/import?strict=1`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: authHeader(secret) },
      body: JSON.stringify(chunk),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `/import answered ${res.status}: ${text.slice(0, 2000)}`);
    const j = JSON.parse(text);
    assert.equal(j.num_records_imported, chunk.length, `/import: ${text.slice(0, 2000)}`);
    n += j.num_records_imported;
  }
  return n;
}

// The first path where GOT and WANT differ (numbers within REL relative
// tolerance; object key sets must be equal), as { path, got, want }, or null.
export function firstDiff(got, want, { rel = 1e-9, path = '$' } = {}) {
  if (typeof want === 'number' && typeof got === 'number') {
    if (got === want) return null;
    const d = Math.abs(got - want), m = Math.max(Math.abs(got), Math.abs(want));
    return d <= rel * m || d < 1e-12 ? null : { path, got, want };
  }
  if (want === null || got === null || typeof want !== 'object' || typeof got !== 'object') {
    return Object.is(got, want) ? null : { path, got, want };
  }
  if (Array.isArray(want) !== Array.isArray(got)) return { path, got, want };
  if (Array.isArray(want)) {
    for (let i = 0; i < Math.max(want.length, got.length); i++) {
      if (i >= got.length) return { path: `${path}[${i}]`, got: '(missing)', want: want[i] };
      if (i >= want.length) return { path: `${path}[${i}]`, got: got[i], want: '(absent)' };
      const d = firstDiff(got[i], want[i], { rel, path: `${path}[${i}]` });
      if (d) return d;
    }
    return null;
  }
  const keys = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
  for (const k of keys) {
    const p = `${path}[${JSON.stringify(k)}]`;
    if (!(k in got)) return { path: p, got: '(missing)', want: want[k] };
    if (!(k in want)) return { path: p, got: got[k], want: '(absent)' };
    const d = firstDiff(got[k], want[k], { rel, path: p });
    if (d) return d;
  }
  return null;
}

export function fmtDiff(d) {
  const s = (v) => { const t = JSON.stringify(v); return t && t.length > 300 ? t.slice(0, 300) + '...' : t; };
  return `at ${d.path}: got ${s(d.got)}, want ${s(d.want)}`;
}
