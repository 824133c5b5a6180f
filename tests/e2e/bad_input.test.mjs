// Bad input of every kind: exact statuses and bodies, nothing half-stored,
// and the server still healthy (and sanitizer-clean) afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import {
  send, sendHeadersFirst, sendChunked, form, gzip, b64json, FORM, JSONCT, postForm, postJSON,
  exportAll, sanitizerClean, expectedStored, comparableProps, sleep,
} from './lib/wire.mjs';

const AUTH = ['Authorization', 'Basic ' + Buffer.from(DEMO.api_secret + ':').toString('base64')];
const SMALL = 65536;
const TOO_BIG = `{"code":413,"error":"request exceeds max limit of ${SMALL} bytes","status":"Request Entity Too Large"}`;
const UNAUTHORIZED = '{"code":401,"error":"Invalid credentials","status":"Unauthorized"}';
const NO_DATA = '{"status":0,"error":"data, missing or empty"}';

let srv;     // default limits
let small;   // max_body_bytes = 65536
before(async () => {
  srv = await startServer();
  small = await startServer({ server: { max_body_bytes: SMALL } });
});
after(async () => {
  // stop both before asserting, so a failed check never leaves a server running
  const codes = [];
  for (const s of [srv, small]) if (s) codes.push(await s.stop());
  for (const [i, s] of [srv, small].entries()) {
    assert.equal(codes[i], 0, 'server exit code; stderr:\n' + s.log());
    assert.ok(sanitizerClean(s.log()), 'sanitizer report:\n' + s.log());
  }
});

function ev(name, iid, extra = {}) {
  const props = { token: DEMO.token, distinct_id: 'bad-user', time: 1717300000, ...extra };
  if (iid) props.$insert_id = iid;
  return { event: name, properties: props };
}
const stored = (names, s = srv) => exportAll(s, DEMO.api_secret, { events: names, timeInMs: true });

// POST a form to /track, plain and verbose; assert 200 + "0" and verbose status 0 with an error matching RE.
async function rejectedOnTrack(body, re, { headers = [FORM], s = srv, path = '/track' } = {}) {
  let r = await send(s, { method: 'POST', path, headers, body });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '0');
  assert.match(r.headers['content-type'], /^text\/plain/);
  r = await send(s, { method: 'POST', path: path + '?verbose=1', headers, body });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /^application\/json/);
  const j = r.json();
  assert.deepStrictEqual(Object.keys(j), ['status', 'error']);
  assert.equal(j.status, 0);
  assert.match(j.error, re);
  return j;
}

// ---- undecodable payloads ---------------------------------------------------

// A whole request refused in the strict /import shape: 400, nothing imported.
function assertStrictRejected(r, errorPattern) {
  const j = r.json();
  assert.deepStrictEqual(Object.keys(j), ['code', 'error', 'num_records_imported', 'status']);
  assert.equal(j.code, 400);
  assert.equal(j.num_records_imported, 0);
  assert.equal(j.status, 'Bad Request');
  assert.match(j.error, errorPattern);
}

test('malformed JSON: /track 200 "0"; /import JSON body 400 strict shape', async () => {
  await rejectedOnTrack('data=' + encodeURIComponent('[{"event":"x","properties":{'), /JSON/);
  await rejectedOnTrack('[{"event":', /JSON/, { headers: [JSONCT] });
  const r = await send(srv, { method: 'POST', path: '/import', headers: [JSONCT, AUTH], body: '[{"event": "x", "properties": {"time": 1,}}]' });
  assert.equal(r.status, 400, r.text);
  assertStrictRejected(r, /JSON/);
});

test('invalid base64 in data: 200 "0"', async () => {
  await rejectedOnTrack('data=' + encodeURIComponent('eyJldmVudCI6!!!not*base64@@'), /base64/);
  await rejectedOnTrack('data=' + encodeURIComponent(Buffer.from('not json at all').toString('base64')), /JSON/);
});

test('bad gzip body: /track 200 "0"; /import JSON 400', async () => {
  await rejectedOnTrack('data=' + encodeURIComponent(b64json(ev('bad gzip', 'bg-1'))), /gzip/, { headers: [FORM, ['Content-Encoding', 'gzip']] });
  const truncated = gzip(JSON.stringify([ev('bad gzip', 'bg-2')])).subarray(0, 20);
  await rejectedOnTrack(truncated, /gzip/, { headers: [JSONCT, ['Content-Encoding', 'gzip']] });
  const r = await send(srv, { method: 'POST', path: '/import', headers: [JSONCT, ['Content-Encoding', 'gzip'], AUTH], body: truncated });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json().code, 400);
  assert.equal(r.json().num_records_imported, 0);
  assert.match(r.json().error, /gzip/);
  assert.equal((await stored(['bad gzip'])).length, 0);
});

test('empty body: 200 "0", verbose {"status":0,"error":"data, missing or empty"}', async () => {
  let r = await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: '' });
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  r = await send(srv, { method: 'POST', path: '/track?verbose=1', headers: [FORM], body: '' });
  assert.equal(r.status, 200);
  assert.equal(r.text, NO_DATA);
  r = await send(srv, { method: 'GET', path: '/track?verbose=1' });
  assert.equal(r.status, 200);
  assert.equal(r.text, NO_DATA);
  r = await send(srv, { method: 'POST', path: '/engage?verbose=1', headers: [FORM], body: '' });
  assert.equal(r.text, NO_DATA);
});

test('missing data (other fields only): 200 "0", verbose "data, missing or empty"', async () => {
  let r = await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: 'ip=1&verbose=0' });
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  r = await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: 'ip=1&verbose=1' });
  assert.equal(r.text, NO_DATA);
  r = await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: 'verbose=1&data=' });
  assert.equal(r.text, NO_DATA);
});

// ---- invalid records ------------------------------------------------------------

test('missing token: 200 "0", nothing stored', async () => {
  const e = ev('bad no token', 'bnt-1');
  delete e.properties.token;
  await rejectedOnTrack(form({ data: b64json(e) }), /token/);
  assert.equal((await stored(['bad no token'])).length, 0);
});

test('unknown token: 200 "0", nothing stored', async () => {
  const e = ev('bad unknown token', 'but-1', { token: 'who-knows' });
  await rejectedOnTrack(form({ data: b64json(e) }), /token/);
  assert.equal((await stored(['bad unknown token'])).length, 0);
});

test('missing or empty event name: 200 "0"', async () => {
  await rejectedOnTrack(form({ data: b64json({ properties: ev('x', 'bmn-1').properties }) }), /event/);
  await rejectedOnTrack(form({ data: b64json({ event: '', properties: ev('x', 'bmn-2').properties }) }), /event/);
  const evs = await exportAll(srv, DEMO.api_secret);
  assert.equal(evs.filter((e) => /^bmn-/.test(e.properties.$insert_id)).length, 0);
});

test('wrong types: event 5, properties "x", time "abc", distinct_id true: each 200 "0"; strict import names each field', async () => {
  const cases = [
    [{ event: 5, properties: ev('bad types', 'bty-1').properties }, /event/, 'event'],
    [{ event: 'bad types', properties: 'x' }, /properties/, 'properties'],
    [ev('bad types', 'bty-3', { time: 'abc' }), /time/, 'properties.time'],
    [ev('bad types', 'bty-4', { distinct_id: true }), /distinct_id/, 'properties.distinct_id'],
  ];
  for (const [payload, re] of cases) await rejectedOnTrack(form({ data: b64json(payload) }), re);
  assert.equal((await stored(['bad types'])).length, 0);
  const r = await postJSON(srv, '/import', cases.map((c) => c[0]), { query: 'strict=1', headers: [AUTH] });
  assert.equal(r.status, 400, r.text);
  const j = r.json();
  assert.equal(j.num_records_imported, 0);
  assert.deepStrictEqual(j.failed_records.map((f) => [f.index, f.field]), cases.map((c, i) => [i, c[2]]));
  assert.equal((await stored(['bad types'])).length, 0);
});

// ---- size limits ------------------------------------------------------------------

test('body over max_body_bytes with Content-Length: 413 JSON, answered before the body is sent', async () => {
  for (const p of ['/track', '/import?strict=1']) {
    const r = await sendHeadersFirst(small, { method: 'POST', path: p, headers: [FORM, AUTH], bodyLength: 200 * 1024 });
    assert.equal(r.status, 413, `${p}: ${r.text}`);
    assert.equal(r.text, TOO_BIG, p);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.early, true, `${p}: the server waited for the body before answering`);
    assert.equal(r.headers.connection, 'close', `${p}: the unread body must not be taken for a next request`);
  }
});

test('max_body_bytes boundary: 65536 bytes accepted, 65537 refused (Content-Length, chunked and inflated gzip alike)', async () => {
  const mk = (n, iid) => {
    const base = JSON.stringify([ev('bad boundary', iid)]);
    return base + ' '.repeat(n - Buffer.byteLength(base));
  };
  let r = await send(small, { method: 'POST', path: '/track', headers: [JSONCT], body: mk(SMALL, 'bbd-1') });
  assert.equal(r.text, '1');
  r = await sendChunked(small, { method: 'POST', path: '/track', headers: [JSONCT], chunks: [mk(SMALL, 'bbd-2')] });
  assert.equal(r.text, '1');
  r = await send(small, { method: 'POST', path: '/track', headers: [JSONCT, ['Content-Encoding', 'gzip']], body: gzip(mk(SMALL, 'bbd-3')) });
  assert.equal(r.text, '1');
  r = await send(small, { method: 'POST', path: '/track', headers: [JSONCT], body: mk(SMALL + 1, 'bbd-4') });
  assert.equal(r.status, 413);
  assert.equal(r.text, TOO_BIG);
  r = await sendChunked(small, { method: 'POST', path: '/track', headers: [JSONCT], chunks: [mk(SMALL + 1, 'bbd-5')] });
  assert.equal(r.status, 413);
  r = await send(small, { method: 'POST', path: '/track', headers: [JSONCT, ['Content-Encoding', 'gzip']], body: gzip(mk(SMALL + 1, 'bbd-6')) });
  assert.equal(r.status, 413);
  assert.deepEqual((await stored(['bad boundary'], small)).map((e) => e.properties.$insert_id).sort(), ['bbd-1', 'bbd-2', 'bbd-3']);
});

test('body over max_body_bytes with chunked transfer encoding (no Content-Length): 413 JSON', async () => {
  const e = ev('bad chunked', 'bch-1', { pad: 'x' });
  const json = JSON.stringify([e]);
  const chunks = ['[', json.slice(1, -1)];
  for (let n = 0; n < 200; n++) chunks.push(',' + json.slice(1, -1).replace('bch-1', `bch-${n + 2}`) + ' '.repeat(900));
  chunks.push(']');
  const r = await sendChunked(small, { method: 'POST', path: '/track', headers: [JSONCT], chunks });
  assert.equal(r.status, 413, r.text);
  assert.equal(r.text, TOO_BIG);
  assert.equal((await stored(['bad chunked'], small)).length, 0);
  // a chunked body under the limit works
  const ok = await sendChunked(small, { method: 'POST', path: '/track', headers: [JSONCT], chunks: ['[', json.slice(1, -1), ']'] });
  assert.equal(ok.status, 200);
  assert.equal(ok.text, '1');
});

test('gzip body that inflates beyond max_body_bytes: 413', async () => {
  const big = JSON.stringify([ev('bad bomb', 'bb-1', { pad: ' '.repeat(300 * 1024) })]);
  const z = gzip(big);
  assert.ok(z.length < SMALL);
  const r = await send(small, { method: 'POST', path: '/track', headers: [JSONCT, ['Content-Encoding', 'gzip']], body: z });
  assert.equal(r.status, 413, r.text);
  assert.equal(r.json().code, 413);
  assert.equal(r.json().status, 'Request Entity Too Large');
  assert.equal((await stored(['bad bomb'], small)).length, 0);
});

function manyEvents(name, n, prefix) {
  return Array.from({ length: n }, (_, i) => ev(name, `${prefix}-${i}`));
}

test('2001 events on /track: 200 "0" (verbose: status 0), none stored; 2000 accepted', async () => {
  const body = JSON.stringify(manyEvents('bad too many', 2001, 'btm'));
  let r = await send(srv, { method: 'POST', path: '/track', headers: [JSONCT], body });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '0');
  r = await send(srv, { method: 'POST', path: '/track?verbose=1', headers: [JSONCT], body });
  assert.equal(r.status, 200);
  assert.equal(r.json().status, 0);
  assert.match(r.json().error, /2000/);
  assert.equal((await stored(['bad too many'])).length, 0);
  r = await postJSON(srv, '/track', manyEvents('bad just enough', 2000, 'bje'));
  assert.equal(r.text, '1');
  assert.equal((await stored(['bad just enough'])).length, 2000);
});

test('2001 events on /import (JSON body): 400, none stored', async () => {
  const r = await postJSON(srv, '/import', manyEvents('bad too many import', 2001, 'btmi'), { headers: [AUTH] });
  assert.equal(r.status, 400, r.text);
  assertStrictRejected(r, /2000/);
  assert.equal((await stored(['bad too many import'])).length, 0);
});

// ---- /import authentication -----------------------------------------------------------

test('/import without Authorization: 401 Invalid credentials', async () => {
  const r = await postJSON(srv, '/import', [ev('bad auth', 'ba-1')]);
  assert.equal(r.status, 401);
  assert.equal(r.text, UNAUTHORIZED);
  assert.match(r.headers['content-type'], /^application\/json/);
  const g = await send(srv, { path: '/import?data=' + encodeURIComponent(b64json(ev('bad auth', 'ba-1b'))) });
  assert.equal(g.status, 401);
  assert.equal(g.text, UNAUTHORIZED);
});

test('/import with a wrong secret (or a malformed header): 401', async () => {
  for (const h of ['Basic ' + Buffer.from('wrong-secret:').toString('base64'), 'Basic !!!not-base64!!!', 'Basic ' + Buffer.from(DEMO.api_secret).toString('base64'),
    `Bearer ${DEMO.api_secret}`, 'Basic ', `Basic ${DEMO.api_secret}x:`]) {
    const r = await postJSON(srv, '/import', [ev('bad auth', 'ba-2')], { headers: [['Authorization', h]] });
    assert.equal(r.status, 401, h);
    assert.equal(r.text, UNAUTHORIZED, h);
  }
  assert.equal((await stored(['bad auth'])).length, 0);
});

test('/import with the secret not base64-encoded (`Basic secret:`): accepted', async () => {
  const e = ev('bad auth plain', 'bap-1');
  const r = await postJSON(srv, '/import', [e], { headers: [['Authorization', `Basic ${DEMO.api_secret}:`]] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '{"code":200,"num_records_imported":1,"status":"OK"}');
  assert.equal((await stored(['bad auth plain'])).length, 1);
});

test('strict import with invalid records: 400 naming each bad index; the valid records are stored', async () => {
  const iid37 = 'a'.repeat(37);
  const batch = [
    ev('bad strict', 'bs-0'),
    ev('bad strict', 'bs-1', { time: 'not-a-time' }),
    ev('bad strict', null),
    ev('bad strict', 'bs-3', { distinct_id: 'anonymous' }),
    ev('bad strict', iid37),
    ev('bad strict', 'bs-5', { plan: 'pro' }),
  ];
  const r = await postJSON(srv, '/import', batch, { query: 'strict=1', headers: [AUTH] });
  assert.equal(r.status, 400, r.text);
  const j = r.json();
  assert.deepStrictEqual(Object.keys(j), ['code', 'error', 'num_records_imported', 'status', 'failed_records']);
  assert.equal(j.code, 400);
  assert.equal(j.error, 'some data points in the request failed validation');
  assert.equal(j.num_records_imported, 2);
  assert.equal(j.status, 'Bad Request');
  assert.deepStrictEqual(j.failed_records.map((f) => f.index), [1, 2, 3, 4]);
  const [f1, f2, f3, f4] = j.failed_records;
  assert.deepStrictEqual([f1.field, f1.$insert_id, f1.insert_id], ['properties.time', 'bs-1', 'bs-1']);
  assert.equal(f1.message, "'properties.time' is invalid: must be specified as seconds since epoch");
  assert.equal(f2.field, 'properties.$insert_id');
  assert.equal(f2.$insert_id, undefined);
  assert.deepStrictEqual([f3.field, f3.$insert_id], ['properties.distinct_id', 'bs-3']);
  assert.deepStrictEqual([f4.field, f4.$insert_id, f4.insert_id], ['properties.$insert_id', iid37, iid37]);
  for (const f of j.failed_records) assert.equal(typeof f.message, 'string');
  const evs = await stored(['bad strict']);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['bs-0', 'bs-5']);
  for (const e of evs) {
    const exp = expectedStored(batch.find((b) => b.properties.$insert_id === e.properties.$insert_id), { import: true });
    assert.deepStrictEqual(comparableProps(e, { generatedInsertId: false }), exp.props);
  }
});

test('legacy form-encoded /import (data=<raw base64>, Basic auth, no strict): exactly "1"', async () => {
  const batch = [ev('bad legacy import', 'bli-1', { note: 'Zürich ~~~~~~ ??? >>> ü' }), ev('bad legacy import', null, { time: 1717300001 })];
  const raw = b64json(batch);
  assert.match(raw, /\+/);
  const r = await send(srv, { method: 'POST', path: '/import?ip=0&verbose=0', headers: [FORM, AUTH], body: 'data=' + raw });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '1');
  assert.match(r.headers['content-type'], /^text\/plain/);
  const evs = await stored(['bad legacy import']);
  assert.equal(evs.length, 2);
  for (const e of evs) assert.equal(e.properties.$import, true);
  assert.equal(evs.find((e) => e.properties.$insert_id === 'bli-1').properties.note, 'Zürich ~~~~~~ ??? >>> ü');
});

// ---- routing ----------------------------------------------------------------------------

test('unknown path: 404 JSON error', async () => {
  for (const p of ['/nope?x=1', '/trackx', '/api/2.0/nothing', '/']) {
    const r = await send(srv, { method: 'GET', path: p });
    assert.equal(r.status, 404, p);
    assert.match(r.headers['content-type'], /^application\/json/);
    const j = r.json();
    assert.equal(j.status, 'error', p);
    assert.equal(typeof j.error, 'string', p);
    assert.equal(j.request, p, p);
  }
  const r = await postForm(srv, '/nope', ev('bad 404', 'b404-1'));
  assert.equal(r.status, 404);
});

test('wrong method: PUT /track, DELETE /import, POST /healthz, POST export: 405 with Allow', async () => {
  for (const [m, p, allowPost] of [['PUT', '/track', true], ['DELETE', '/import', true], ['PATCH', '/engage/', true],
    ['POST', '/healthz', false], ['POST', '/api/2.0/export?from_date=2024-01-01&to_date=2024-01-02', false]]) {
    const r = await send(srv, { method: m, path: p, headers: [FORM, AUTH], body: form({ data: b64json(ev('bad 405', 'b405')) }) });
    assert.equal(r.status, 405, `${m} ${p}: ${r.status} ${r.text}`);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.json().status, 'error');
    assert.match(r.headers.allow || '', allowPost ? /\bPOST\b/ : /\bGET\b/, `${m} ${p}: Allow`);
    if (!allowPost) assert.doesNotMatch(r.headers.allow || '', /\bPOST\b/);
  }
  assert.equal((await stored(['bad 405'])).length, 0);
});

// ---- property limits ---------------------------------------------------------------------

test('a 100 KB string property is stored cut to 255 bytes', async () => {
  const e = ev('bad huge value', 'bhv-1', { big: 'ü'.repeat(50 * 1024), ok: 'small' });
  const r = await postJSON(srv, '/track', [e]);
  assert.equal(r.text, '1');
  const [got] = await stored(['bad huge value']);
  assert.equal(got.properties.big, 'ü'.repeat(127));
  assert.equal(Buffer.byteLength(got.properties.big), 254);
  assert.equal(got.properties.ok, 'small');
});

test('an event with 300 properties is rejected (0); strict import names it', async () => {
  const extra = {};
  for (let i = 0; i < 300; i++) extra[`p${i}`] = i;
  const e = ev('bad many props', 'bmp-1', extra);
  await rejectedOnTrack(form({ data: b64json(e) }), /propert/);
  const r = await postJSON(srv, '/import', [e], { query: 'strict=1', headers: [AUTH] });
  assert.equal(r.status, 400);
  assert.deepStrictEqual(r.json().failed_records.map((f) => [f.index, f.field]), [[0, 'properties']]);
  assert.equal((await stored(['bad many props'])).length, 0);
});

test('nesting depth 5 is rejected (0); depth 3 is accepted', async () => {
  const deep = ev('bad deep', 'bd-5', { o: { a: { b: { c: { d: { e: 1 } } } } } });
  await rejectedOnTrack(form({ data: b64json(deep) }), /nest|deep/);
  const deepList = ev('bad deep', 'bd-5l', { l: [[[[[1]]]]] });
  await rejectedOnTrack(form({ data: b64json(deepList) }), /nest|deep/);
  const ok = ev('bad deep', 'bd-3', { o: { a: { b: 'x' } }, l: [[['y']]] });
  assert.equal((await postForm(srv, '/track', ok)).text, '1');
  const evs = await stored(['bad deep']);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id), ['bd-3']);
  assert.deepStrictEqual(evs[0].properties.o, { a: { b: 'x' } });
});

// ---- UTF-8 ---------------------------------------------------------------------------------

const isUtf8 = (buf) => { try { new TextDecoder('utf-8', { fatal: true }).decode(buf); return true; } catch { return false; } };
// A JSON body holding raw bytes: parts are strings (UTF-8) or byte arrays.
const rawJson = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const exportRaw = async (names) => send(srv, { path: '/api/2.0/export?from_date=1971-01-01&to_date=2100-12-31&event=' + encodeURIComponent(JSON.stringify(names)), headers: [AUTH] });

test('invalid UTF-8 in a string value: /track repairs it (U+FFFD), strict /import rejects it', async () => {
  const body = (iid) => rawJson(`[{"event":"bad utf8 value","properties":{"token":"${DEMO.token}","distinct_id":"u","time":1717300000,"$insert_id":"${iid}","v":"a`, [0xff], 'b","o":{"w":"c', [0xc3], '"}}}]');
  let r = await send(srv, { method: 'POST', path: '/track', headers: [JSONCT], body: body('buv-1') });
  assert.equal(r.text, '1');
  const [got] = await stored(['bad utf8 value']);
  assert.equal(got.properties.v, 'a\uFFFDb');
  assert.deepStrictEqual(got.properties.o, { w: 'c\uFFFD' });
  r = await send(srv, { method: 'POST', path: '/import?strict=1', headers: [JSONCT, AUTH], body: body('buv-2') });
  assert.equal(r.status, 400, r.text);
  assert.ok(isUtf8(r.body), 'answer is valid UTF-8');
  assert.deepStrictEqual(r.json().failed_records.map((f) => f.index), [0]);
  assert.equal((await stored(['bad utf8 value'])).length, 1);
});

test('invalid UTF-8 in a nested object key never reaches the export', async () => {
  // a top-level key like "\xff\xfe" is rejected; a nested one must be repaired or rejected too
  const r = await send(srv, { method: 'POST', path: '/track', headers: [JSONCT],
    body: rawJson(`[{"event":"bad utf8 key","properties":{"token":"${DEMO.token}","distinct_id":"u","time":1717300000,"$insert_id":"buk-1","o":{"`, [0xff, 0xfe], '":1}}}]') });
  assert.equal(r.status, 200);
  const ex = await exportRaw(['bad utf8 key']);
  assert.equal(ex.status, 200);
  assert.ok(isUtf8(ex.body), 'export is not valid UTF-8 JSON: ' + JSON.stringify(ex.body.toString('latin1')));
});

test('invalid UTF-8 in $insert_id (/track, not strict) never reaches the export', async () => {
  const r = await send(srv, { method: 'POST', path: '/track', headers: [JSONCT],
    body: rawJson(`[{"event":"bad utf8 iid","properties":{"token":"${DEMO.token}","distinct_id":"u","time":1717300001,"$insert_id":"ab`, [0xff], 'cd"}}]') });
  assert.equal(r.status, 200);
  const ex = await exportRaw(['bad utf8 iid']);
  assert.equal(ex.status, 200);
  assert.ok(isUtf8(ex.body), 'export is not valid UTF-8 JSON: ' + JSON.stringify(ex.body.toString('latin1')));
});

const nested4 = { a: { b: { c: { d: 1 } } } };

test('strict 400: failed_records[].field does not cut a UTF-8 character (key of 39 x "k" + "é")', async () => {
  const e = ev('bad utf8 error', 'bue-1', { ['k'.repeat(39) + 'é']: nested4 });
  const r = await postJSON(srv, '/import', [e], { query: 'strict=1', headers: [AUTH] });
  assert.equal(r.status, 400);
  assert.equal(r.json().failed_records[0].index, 0);
  assert.ok(isUtf8(r.body), 'strict 400 (field): ' + JSON.stringify(r.body.toString('latin1')));
});

test('verbose /track error does not cut a UTF-8 character (key of 99 x "k" + "é")', async () => {
  const e = ev('bad utf8 error', 'bue-2', { ['k'.repeat(99) + 'é']: nested4 });
  const r = await postJSON(srv, '/track', [e], { query: 'verbose=1' });
  assert.equal(r.status, 200);
  assert.equal(r.json().status, 0);
  assert.ok(isUtf8(r.body), 'verbose error: ' + JSON.stringify(r.body.toString('latin1')));
});

test('strict 400: an invalid-UTF-8 $insert_id is not echoed raw in failed_records', async () => {
  const r = await send(srv, { method: 'POST', path: '/import?strict=1', headers: [JSONCT, AUTH],
    body: rawJson(`[{"event":"bad utf8 error","properties":{"token":"${DEMO.token}","distinct_id":"u","time":1717300000,"$insert_id":"ab`, [0xff], 'cd"}}]') });
  assert.equal(r.status, 400);
  assert.ok(isUtf8(r.body), 'strict 400 ($insert_id): ' + JSON.stringify(r.body.toString('latin1')));
  assert.equal(r.json().failed_records[0].field, 'properties.$insert_id');
});

test('strict import time and id rules: 30 min ahead clamped, 2 h ahead / before 1971 rejected, blocked ids case-insensitive', async () => {
  const now = Date.now() / 1000;
  const batch = [
    ev('bad strict rules', 'bsr-0', { time: now + 1800 }),
    ev('bad strict rules', 'bsr-1', { time: now + 7200 }),
    ev('bad strict rules', 'bsr-2', { time: 31535999 }),
    ev('bad strict rules', 'bsr-3', { distinct_id: 'Anonymous' }),
    ev('bad strict rules', 'NULL'),
    ev('bad strict rules', 'a_b'),
    ev('bad strict rules', 'bsr-6', { distinct_id: '' }),
    ev('bad strict rules', 'a'.repeat(36)),
  ];
  const before = Date.now();
  const r = await postJSON(srv, '/import', batch, { query: 'strict=1', headers: [AUTH] });
  const afterMs = Date.now();
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json().num_records_imported, 3);
  assert.deepStrictEqual(r.json().failed_records.map((f) => [f.index, f.field]), [
    [1, 'properties.time'], [2, 'properties.time'], [3, 'properties.distinct_id'], [4, 'properties.$insert_id'], [5, 'properties.$insert_id']]);
  const evs = await stored(['bad strict rules']);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['a'.repeat(36), 'bsr-0', 'bsr-6']);
  const t = evs.find((e) => e.properties.$insert_id === 'bsr-0').properties.time;
  assert.ok(t >= before - 1000 && t <= afterMs + 1000, `clamped to now: ${t}`);
  assert.equal(evs.find((e) => e.properties.$insert_id === 'bsr-6').properties.distinct_id, '');
});

test('JSONP: a callback that is not a JavaScript identifier is not reflected into text/javascript', async () => {
  let r = await postForm(srv, '/track', ev('bad jsonp', 'bj-1'), { query: 'callback=mp_cb_1' });
  assert.equal(r.status, 200);
  assert.equal(r.text, 'mp_cb_1(1)');
  assert.match(r.headers['content-type'], /^text\/javascript/);
  const evil = 'alert(document.cookie)//';
  r = await postForm(srv, '/track', ev('bad jsonp', 'bj-2'), { query: 'callback=' + encodeURIComponent(evil) });
  assert.equal(r.status, 200);
  assert.ok(!r.text.includes('document.cookie'), `callback reflected verbatim: ${r.headers['content-type']} ${r.text}`);
});

test('GET requests without a body and export of a project with no events are handled cleanly (sanitizer builds)', async () => {
  const fresh = await startServer();
  const sendOrLog = async (opts) => {
    try { return await send(fresh, opts); } catch (err) {
      await sleep(300);
      throw new Error(`${opts.path}: ${err.message}; server stderr:\n${fresh.log()}`);
    }
  };
  try {
    let r = await sendOrLog({ path: '/api/2.0/export?from_date=2024-01-01&to_date=2024-12-31', headers: [AUTH] });
    assert.equal(r.status, 200, 'export of an empty project\n' + fresh.log());
    assert.equal(r.text, '');
    r = await sendOrLog({ path: '/track?ip=0&verbose=0&data=' + encodeURIComponent(b64json(ev('bad get', 'bg-1'))) });
    assert.equal(r.text, '1', 'GET /track\n' + fresh.log());
    r = await sendOrLog({ path: '/import?verbose=1&data=' + encodeURIComponent(b64json(ev('bad get', 'bg-2'))), headers: [AUTH] });
    assert.equal(r.text, '{"status":1,"error":null}', 'GET /import\n' + fresh.log());
    r = await sendOrLog({ path: '/engage?data=' + encodeURIComponent(b64json({ $token: DEMO.token, $distinct_id: 'x', $set: { a: 1 } })) });
    assert.equal(r.text, '1', 'GET /engage\n' + fresh.log());
    r = await sendOrLog({ path: '/api/2.0/export?from_date=2024-01-01&to_date=2024-12-31', headers: [AUTH] });
    assert.equal(r.text.trim().split('\n').length, 2);
    assert.ok(sanitizerClean(fresh.log()), fresh.log());
  } finally {
    const code = await fresh.stop();
    assert.equal(code, 0, 'exit code; stderr:\n' + fresh.log());
    assert.ok(sanitizerClean(fresh.log()), fresh.log());
  }
});

// ---- still alive -------------------------------------------------------------------------------

test('after all of that the servers are up, answer /healthz, and stderr has no sanitizer report', async () => {
  for (const s of [srv, small]) {
    const r = await send(s, { path: '/healthz' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().status, 'ok');
    assert.ok(sanitizerClean(s.log()), s.log());
    const t = await postForm(s, '/track', ev('bad still alive', null));
    assert.equal(t.text, '1');
  }
});
