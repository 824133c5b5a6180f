// Every wire encoding of an ingestion payload (spec §2 pitfalls 1, 2, 8, 11; §3.4)
// decodes to the same stored events; example payloads and strict /import shapes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, DEMO } from './lib/server.mjs';
import {
  EXAMPLES, send, form, gzip, b64json, FORM, JSONCT, postForm, postJSON, expectedStored, comparableProps,
  exportAll, readJSON, trackBodyVariants, sanitizerClean, sleep,
  assertStored as assertStoredIn,
} from './lib/wire.mjs';

const EX = { name: 'examples', id: 3, token: 'PROJECT_TOKEN', api_secret: 'examples-secret', timezone: 'UTC' };
const basicOf = (s) => ['Authorization', 'Basic ' + Buffer.from(s + ':').toString('base64')];
const trackBatch = readJSON(path.join(EXAMPLES, 'track-batch.json'));
const VERBOSE_OK = '{"status":1,"error":null}';

let srv;
before(async () => { srv = await startServer({ projects: [EX, DEMO] }); });
after(async () => {
  assert.equal(await srv.stop(), 0, 'server exit code');
  assert.ok(sanitizerClean(srv.log()), srv.log());
});

// ---- the five encodings of track-batch.json --------------------------------

function parseVariant(v) {
  const m = v.label.match(/POST (\/[^\s,]*)/);
  assert.ok(m, 'label names a path: ' + v.label);
  const target = m[1];
  const ct = (v.label.match(/Content-Type: ([^\s,]+)/) || [])[1] || 'application/x-www-form-urlencoded';
  const q = new URLSearchParams(target.includes('?') ? target.slice(target.indexOf('?') + 1) : '');
  let verbose = q.get('verbose');
  if (!/json/.test(ct) && /(^|&)verbose=/.test(v.body)) verbose = v.body.match(/(?:^|&)verbose=([^&]*)/)[1];
  return { target, ct, verbose: verbose === '1' };
}

async function checkTrackBatchStored(since, what) {
  const evs = await exportAll(srv, EX.api_secret, { events: ['Signed up', '$identify'], timeInMs: true });
  assert.equal(evs.length, 2, `${what}: ${JSON.stringify(evs)}`);
  for (const sent of trackBatch) {
    const exp = expectedStored(sent);
    const got = evs.find((e) => e.event === exp.event);
    assert.ok(got, `${what}: ${exp.event} exported`);
    assert.equal(got.properties.time, exp.time_ms, `${what}: time`);
    assert.deepStrictEqual(comparableProps(got, { generatedInsertId: false }), exp.props, `${what}: properties`);
    // a re-sent duplicate replaces the stored copy: its processing time is this request's
    assert.ok(got.properties.mp_processing_time_ms >= since,
      `${what}: stored by this request (mp_processing_time_ms ${got.properties.mp_processing_time_ms} < ${since})`);
  }
}

const variants = trackBodyVariants();

test('track-body-variants.txt has the 5 SDK encodings', () => {
  assert.equal(variants.length, 5, variants.map((v) => v.label).join('\n'));
});

for (const v of variants) {
  test(`track-body variant: ${v.label}`, async () => {
    const { target, ct, verbose } = parseVariant(v);
    await sleep(5);
    const since = Date.now();
    const res = await send(srv, { method: 'POST', path: target, headers: [['Content-Type', ct]], body: v.body });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, verbose ? VERBOSE_OK : '1');
    await checkTrackBatchStored(since, v.label);
  });
}

test('track-body variant: Swift raw JSON array, gzip-compressed', async () => {
  const swift = variants.find((v) => /Swift/.test(v.label));
  await sleep(5);
  const since = Date.now();
  const res = await send(srv, { method: 'POST', path: '/track/?ip=1',
    headers: [JSONCT, ['Content-Encoding', 'gzip']], body: gzip(swift.body) });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await checkTrackBatchStored(since, 'swift gzip');
});

test('track-body variant: the JS base64 value sent by GET in the query string', async () => {
  const js = variants.find((v) => /JS SDK/.test(v.label));
  const dataParam = js.body.slice('data='.length); // already percent-encoded
  await sleep(5);
  const since = Date.now();
  const res = await send(srv, { method: 'GET', path: `/track?ip=0&verbose=0&data=${dataParam}` });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await checkTrackBatchStored(since, 'GET query');
});

// ---- other transports (each test uses its own event names) -------------------

function ev(name, iid, extra = {}) {
  return { event: name, properties: { token: DEMO.token, distinct_id: 'enc-user', time: 1717100000, $insert_id: iid, ...extra } };
}

async function exportNamed(names) {
  return exportAll(srv, DEMO.api_secret, { events: names, timeInMs: true });
}

const assertStored = (sent, opts) => assertStoredIn(srv, DEMO.api_secret, sent, opts);

test('GET /track with base64 data in the query string (Node single call)', async () => {
  const e = ev('enc get b64', 'enc-get-1', { note: 'a+b/c=d ü' });
  const res = await send(srv, { method: 'GET', path: `/track?ip=0&verbose=0&data=${encodeURIComponent(b64json(e))}` });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await assertStored([e]);
});

test('GET /track with URL-encoded JSON data in the query string', async () => {
  const e = ev('enc get json', 'enc-get-2', { q: '&=?#%' });
  const res = await send(srv, { method: 'GET', path: `/track/?verbose=1&data=${encodeURIComponent(JSON.stringify([e]))}` });
  assert.equal(res.status, 200);
  assert.equal(res.text, VERBOSE_OK);
  await assertStored([e]);
});

test('gzip body: raw JSON array (Swift) on /track', async () => {
  const sent = [ev('enc gzip json', 'enc-gz-1'), ev('enc gzip json', 'enc-gz-2', { n: 2 })];
  const res = await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [JSONCT, ['Content-Encoding', 'gzip']], body: gzip(JSON.stringify(sent)) });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await assertStored(sent);
});

test('gzip body: whole form body data=<base64> gzipped (Android)', async () => {
  const sent = [ev('enc gzip form', 'enc-gzf-1', { note: 'x+y ü' }), ev('enc gzip form', 'enc-gzf-2')];
  const body = gzip(form({ data: b64json(sent) }));
  const res = await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [FORM, ['Content-Encoding', 'gzip']], body });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await assertStored(sent);
});

test('gzip body: JSON array on /import', async () => {
  const sent = [ev('enc gzip import', 'enc-gzi-1'), ev('enc gzip import', 'enc-gzi-2')];
  const res = await send(srv, { method: 'POST', path: '/import?strict=1', headers: [JSONCT, ['Content-Encoding', 'gzip'], basicOf(DEMO.api_secret)], body: gzip(JSON.stringify(sent)) });
  assert.equal(res.status, 200, res.text);
  assert.deepStrictEqual(res.json(), { code: 200, num_records_imported: 2, status: 'OK' });
  await assertStored(sent, { imp: true });
});

test('NDJSON body on /import (Content-Type: application/x-ndjson)', async () => {
  const sent = [ev('enc ndjson', 'enc-nd-1'), ev('enc ndjson', 'enc-nd-2', { x: [1, 2] }), ev('enc ndjson', 'enc-nd-3', { y: { z: 'ü' } })];
  const body = sent.map((e) => JSON.stringify(e)).join('\n') + '\n';
  const res = await send(srv, { method: 'POST', path: '/import', headers: [['Content-Type', 'application/x-ndjson'], basicOf(DEMO.api_secret)], body });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, '{"code":200,"num_records_imported":3,"status":"OK"}');
  assert.match(res.headers['content-type'], /^application\/json/);
  await assertStored(sent, { imp: true });
});

test('NDJSON body on /import sent as application/json (whole-body parse fails, every line parses)', async () => {
  const sent = [ev('enc ndjson ct', 'enc-ndj-1'), ev('enc ndjson ct', 'enc-ndj-2')];
  const body = sent.map((e) => JSON.stringify(e)).join('\r\n');
  const res = await send(srv, { method: 'POST', path: '/import', headers: [JSONCT, basicOf(DEMO.api_secret)], body });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, '{"code":200,"num_records_imported":2,"status":"OK"}');
  await assertStored(sent, { imp: true });
});

test('POST with an empty body and `data` in the query string (§3.4 step 5)', async () => {
  const e = ev('enc post query', 'enc-pq-1');
  const res = await send(srv, { method: 'POST', path: `/track/?verbose=1&data=${encodeURIComponent(b64json(e))}`, headers: [FORM], body: '' });
  assert.equal(res.status, 200);
  assert.equal(res.text, VERBOSE_OK);
  await assertStored([e]);
});

test('sendBeacon: POST with Content-Type text/plain;charset=UTF-8 and a form body', async () => {
  const e = ev('enc beacon', 'enc-beacon-1', { $current_url: 'https://example.com/?a=1&b=2' });
  const res = await send(srv, { method: 'POST', path: '/track/?ip=1&_=1717100000000',
    headers: [['Content-Type', 'text/plain;charset=UTF-8']], body: form({ data: b64json(e) }) });
  assert.equal(res.status, 200);
  assert.equal(res.text, '1');
  await assertStored([e]);
});

test('a single object and a one-element array are both accepted (/track form, /track JSON, /import)', async () => {
  const a = ev('enc single', 'enc-single-1');
  const b = ev('enc single', 'enc-single-2');
  const c = ev('enc single', 'enc-single-3');
  const d = ev('enc single', 'enc-single-4');
  const e = ev('enc single', 'enc-single-5');
  const f = ev('enc single', 'enc-single-6');
  let res = await postForm(srv, '/track', a);
  assert.equal(res.text, '1');
  res = await postForm(srv, '/track', [b]);
  assert.equal(res.text, '1');
  res = await postJSON(srv, '/track', c);
  assert.equal(res.text, '1');
  res = await postJSON(srv, '/track', [d]);
  assert.equal(res.text, '1');
  res = await postJSON(srv, '/import', e, { headers: [basicOf(DEMO.api_secret)] });
  assert.equal(res.text, '{"code":200,"num_records_imported":1,"status":"OK"}');
  res = await postForm(srv, '/import', f, { headers: [basicOf(DEMO.api_secret)] });
  assert.equal(res.text, '1');
  const evs = await exportNamed(['enc single']);
  assert.deepEqual(evs.map((x) => x.properties.$insert_id).sort(), ['enc-single-1', 'enc-single-2', 'enc-single-3', 'enc-single-4', 'enc-single-5', 'enc-single-6']);
});

// ---- example profile payloads ---------------------------------------------

const engageBatch = readJSON(path.join(EXAMPLES, 'engage-batch.json'));
const groupsBatch = readJSON(path.join(EXAMPLES, 'groups-batch.json'));

for (const [name, ep, batch] of [['engage-batch.json', '/engage', engageBatch], ['groups-batch.json', '/groups', groupsBatch]]) {
  test(`${name} accepted on ${ep}: raw JSON, base64 form (verbose), GET query, one object`, async () => {
    let res = await postJSON(srv, ep + '/', batch, { query: 'ip=1' });
    assert.equal(res.status, 200);
    assert.equal(res.text, '1');
    res = await postForm(srv, ep + '/', batch, { query: 'verbose=1&ip=1&_=1717000000000' });
    assert.equal(res.status, 200);
    assert.equal(res.text, VERBOSE_OK);
    assert.match(res.headers['content-type'], /^application\/json/);
    res = await send(srv, { method: 'GET', path: `${ep}?ip=0&verbose=0&data=${encodeURIComponent(b64json(batch[0]))}` });
    assert.equal(res.status, 200);
    assert.equal(res.text, '1');
    res = await send(srv, { method: 'POST', path: ep, headers: [FORM], body: form({ data: JSON.stringify(batch[0]), verbose: '1', ip: '0' }) });
    assert.equal(res.status, 200);
    assert.equal(res.text, VERBOSE_OK);
  });
}

// ---- strict /import shapes --------------------------------------------------

test('import-strict-200.json reproduced by POST /import?strict=1', async () => {
  const want = readJSON(path.join(EXAMPLES, 'import-strict-200.json'));
  const sent = [ev('strict ok', 'strict-ok-0001'), ev('strict ok', 'strict-ok-0002', { plan: 'pro' })];
  const res = await postJSON(srv, '/import', sent, { query: 'strict=1&project_id=1', headers: [basicOf(DEMO.api_secret)] });
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers['content-type'], /^application\/json/);
  const got = res.json();
  assert.deepStrictEqual(got, want);
  assert.deepStrictEqual(Object.keys(got), Object.keys(want));
  await assertStored(sent, { imp: true });
});

test('import-strict-400.json reproduced by POST /import?strict=1 (valid record still stored)', async () => {
  const want = readJSON(path.join(EXAMPLES, 'import-strict-400.json'));
  const good = ev('strict mixed', 'good-event-0001');
  const bad = ev('strict mixed', 'bad-event-0002', { time: 'last tuesday' });
  const res = await postJSON(srv, '/import', [good, bad], { query: 'strict=1', headers: [basicOf(DEMO.api_secret)] });
  assert.equal(res.status, 400, res.text);
  assert.match(res.headers['content-type'], /^application\/json/);
  const got = res.json();
  assert.deepStrictEqual(got, want);
  assert.deepStrictEqual(Object.keys(got), Object.keys(want));
  assert.deepStrictEqual(Object.keys(got.failed_records[0]), Object.keys(want.failed_records[0]));
  await assertStored([good], { imp: true });
});
