// One test per pitfall of spec §2 (shared/spec/mixpanel-http-api.md) that
// concerns ingestion and the query API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import {
  send, form, gzip, b64json, FORM, JSONCT, postForm, postJSON, expectedStored, comparableProps,
  exportAll, sanitizerClean, truncUtf8,
  assertStored as assertStoredIn,
} from './lib/wire.mjs';

const VERBOSE_OK = '{"status":1,"error":null}';
const AUTH = ['Authorization', 'Basic ' + Buffer.from(DEMO.api_secret + ':').toString('base64')];

let srv;
// A second project with Original ID merge: the sent distinct_id is kept there.
const ORIG = { name: 'orig', id: 2, token: 'orig-token', api_secret: 'orig-secret', timezone: 'UTC', identity: 'original' };

before(async () => { srv = await startServer({ projects: [DEMO, ORIG] }); });
after(async () => {
  assert.equal(await srv.stop(), 0, 'server exit code');
  assert.ok(sanitizerClean(srv.log()), srv.log());
});

function ev(name, iid, extra = {}) {
  const props = { token: DEMO.token, distinct_id: 'pf-user', time: 1717200000, ...extra };
  if (iid) props.$insert_id = iid;
  return { event: name, properties: props };
}

const stored = (names, opts = {}) => exportAll(srv, DEMO.api_secret, { events: names, timeInMs: true, ...opts });

const assertStored = (sent, opts) => assertStoredIn(srv, DEMO.api_secret, sent, opts);

const NOTE = 'Zürich ~~~~~~ ??? >>> ü';   // its base64 holds '+' and '/'

test('pitfall 1: `data` in all five encodings (and a raw JSON body) decodes to the same events', async () => {
  const mk = (i) => ev('p1 encodings', `p1-${i}`, { note: NOTE, q: 'a&b=c+d%20e' });
  const sent = [];
  const check = async (label, res, want = '1') => {
    assert.equal(res.status, 200, `${label}: ${res.text}`);
    assert.equal(res.text, want, label);
  };
  // (a) base64, URL-encoded, in a form body (JS, Android)
  let e = mk('a'); sent.push(e);
  assert.match(b64json(e), /\+/);
  assert.match(b64json(e), /\//);
  await check('(a)', await send(srv, { method: 'POST', path: '/track/', headers: [FORM], body: 'data=' + encodeURIComponent(b64json(e)) }));
  // (b) base64 NOT URL-encoded: '+' arrives raw (Node POST batches)
  e = mk('b'); sent.push(e);
  await check('(b)', await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: 'data=' + b64json([e]) }));
  // (c) URL-encoded plain JSON (Python, JS json mode)
  e = mk('c'); sent.push(e);
  await check('(c)', await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: form({ data: JSON.stringify(e), verbose: '1', ip: '0' }) }), VERBOSE_OK);
  // (d) raw unencoded JSON after data= in a form body (iOS), JSON holding & + %
  e = mk('d'); sent.push(e);
  await check('(d)', await send(srv, { method: 'POST', path: '/track/', headers: [FORM], body: 'ip=1&data=' + JSON.stringify([e]) }));
  // (e) base64 in the query string of a GET (Node single calls)
  e = mk('e'); sent.push(e);
  await check('(e)', await send(srv, { method: 'GET', path: '/track?ip=0&verbose=0&data=' + encodeURIComponent(b64json(e)) }));
  // raw JSON body, no data= (Swift)
  e = mk('f'); sent.push(e);
  await check('(raw JSON)', await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [JSONCT], body: JSON.stringify([e]) }));
  // base64 with the URL-safe alphabet and without '=' padding (§3.4 step 6)
  e = mk('g'); sent.push(e);
  const urlsafe = b64json(e).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  await check('(url-safe base64)', await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: 'data=' + urlsafe }));
  await assertStored(sent);
});

test('pitfall 2: `data` may be one object or an array on /track, /engage, /groups, /import', async () => {
  const one = ev('p2 shapes', 'p2-1');
  const arr = [ev('p2 shapes', 'p2-2'), ev('p2 shapes', 'p2-3')];
  assert.equal((await postForm(srv, '/track', one)).text, '1');
  assert.equal((await postForm(srv, '/track', arr)).text, '1');
  const up = { $token: DEMO.token, $distinct_id: 'p2-user', $set: { plan: 'pro' } };
  assert.equal((await postForm(srv, '/engage', up)).text, '1');
  assert.equal((await postForm(srv, '/engage', [up, { ...up, $set: { seats: 3 } }])).text, '1');
  const gu = { $token: DEMO.token, $group_key: 'company', $group_id: 'p2-co', $set: { name: 'Acme' } };
  assert.equal((await postForm(srv, '/groups', gu)).text, '1');
  assert.equal((await postForm(srv, '/groups', [gu, gu])).text, '1');
  const imp1 = ev('p2 shapes', 'p2-4');
  const imp2 = [ev('p2 shapes', 'p2-5'), ev('p2 shapes', 'p2-6')];
  assert.equal((await postForm(srv, '/import', imp1, { headers: [AUTH] })).text, '1');
  assert.equal((await postJSON(srv, '/import', imp2, { headers: [AUTH] })).text, '{"code":200,"num_records_imported":2,"status":"OK"}');
  const evs = await stored(['p2 shapes']);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['p2-1', 'p2-2', 'p2-3', 'p2-4', 'p2-5', 'p2-6']);
});

// The JS SDK's own UTF-8 encoder writes astral characters as CESU-8.
function cesu8Json(obj) {
  const text = JSON.stringify(obj);
  const parts = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    if (cp > 0xffff) {
      const hi = 0xd800 + ((cp - 0x10000) >> 10), lo = 0xdc00 + ((cp - 0x10000) & 0x3ff);
      for (const u of [hi, lo]) parts.push(Buffer.from([0xe0 | (u >> 12), 0x80 | ((u >> 6) & 0x3f), 0x80 | (u & 0x3f)]));
    } else parts.push(Buffer.from(ch, 'utf8'));
  }
  return Buffer.concat(parts);
}

test('pitfall 3: the JS SDK base64 payload for a self-hosted api_host (verbose=1, ip=1, _, CESU-8 emoji)', async () => {
  const e = ev('p3 js base64', 'p3abcdef01234567', { note: 'Zürich 🚀 a+b=c & d', time: 1717200000.123, mp_lib: 'web' });
  const b64 = cesu8Json([e]).toString('base64');
  const res = await send(srv, { method: 'POST', path: '/track/?verbose=1&ip=1&_=1717200000500',
    headers: [FORM, ['Origin', 'https://app.example.com']], body: 'data=' + encodeURIComponent(b64) });
  assert.equal(res.status, 200);
  assert.equal(res.text, VERBOSE_OK);
  const [got] = await assertStored([e]);
  assert.equal(got.properties.note, 'Zürich 🚀 a+b=c & d');
});

test('pitfall 4: time as float seconds, int seconds, milliseconds, numeric string', async () => {
  const sent = [
    ev('p4 time', 'p4-float', { time: 1717200000.123 }),
    ev('p4 time', 'p4-int', { time: 1717200001 }),
    ev('p4 time', 'p4-ms', { time: 1717200002456 }),
    ev('p4 time', 'p4-str', { time: '1717200003.5' }),
    ev('p4 time', 'p4-strms', { time: '1717200004789' }),
  ];
  assert.equal((await postForm(srv, '/track', sent)).text, '1');
  const ms = await stored(['p4 time']);
  const byId = (l, id) => l.find((e) => e.properties.$insert_id === id).properties.time;
  assert.equal(byId(ms, 'p4-float'), 1717200000123);
  assert.equal(byId(ms, 'p4-int'), 1717200001000);
  assert.equal(byId(ms, 'p4-ms'), 1717200002456);
  assert.equal(byId(ms, 'p4-str'), 1717200003500);
  assert.equal(byId(ms, 'p4-strms'), 1717200004789);
  const s = await stored(['p4 time'], { timeInMs: false });
  assert.equal(byId(s, 'p4-float'), 1717200000);
  assert.equal(byId(s, 'p4-int'), 1717200001);
  assert.equal(byId(s, 'p4-ms'), 1717200002);
  assert.equal(byId(s, 'p4-str'), 1717200003);
  // /track: a time in the future is replaced by the receive time
  const before = Date.now();
  assert.equal((await postForm(srv, '/track', ev('p4 future', 'p4-future', { time: Date.now() / 1000 + 86400 }))).text, '1');
  const afterMs = Date.now();
  const [fut] = await stored(['p4 future']);
  assert.ok(fut.properties.time >= before - 1000 && fut.properties.time <= afterMs + 1000, `clamped to now: ${fut.properties.time}`);
});

test('pitfall 5: plain vs verbose answers, byte-exact, with their Content-Type', async () => {
  const good = ev('p5 answers', 'p5-1');
  const bad = { event: 'p5 answers', properties: { distinct_id: 'x' } }; // no token
  let r = await postForm(srv, '/track', good);
  assert.equal(r.text, '1');
  assert.equal(r.body.length, 1, 'no newline');
  assert.match(r.headers['content-type'], /^text\/plain/);
  r = await postForm(srv, '/track', good, { query: 'verbose=0' });
  assert.equal(r.text, '1');
  r = await postForm(srv, '/track', bad);
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  assert.match(r.headers['content-type'], /^text\/plain/);
  r = await postForm(srv, '/track', good, { query: 'verbose=1' });
  assert.equal(r.text, VERBOSE_OK);
  assert.match(r.headers['content-type'], /^application\/json/);
  r = await postForm(srv, '/track', bad, { query: 'verbose=1' });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.match(r.text, /^\{"status":0,"error":"[^"]+"\}$/);
  const j = r.json();
  assert.equal(j.status, 0);
  assert.equal(typeof j.error, 'string');
  // /engage and /groups answer the same way
  r = await postForm(srv, '/engage', { $token: DEMO.token, $distinct_id: 'p5', $set: { a: 1 } }, { query: 'verbose=1' });
  assert.equal(r.text, VERBOSE_OK);
  // /import: legacy form -> 1 / verbose; strict=1 or JSON body -> strict JSON
  r = await postForm(srv, '/import', ev('p5 answers', 'p5-2'), { headers: [AUTH] });
  assert.equal(r.text, '1');
  assert.match(r.headers['content-type'], /^text\/plain/);
  r = await postForm(srv, '/import', ev('p5 answers', 'p5-3'), { query: 'verbose=1', headers: [AUTH] });
  assert.equal(r.text, VERBOSE_OK);
  r = await postForm(srv, '/import', ev('p5 answers', 'p5-4'), { query: 'strict=1', headers: [AUTH] });
  assert.equal(r.text, '{"code":200,"num_records_imported":1,"status":"OK"}');
  assert.match(r.headers['content-type'], /^application\/json/);
  // JSONP and pixel forms (spec §4.3, §4.4)
  r = await postForm(srv, '/track', ev('p5 answers', 'p5-5'), { query: 'callback=mp_cb' });
  assert.equal(r.text, 'mp_cb(1)');
  assert.match(r.headers['content-type'], /^text\/javascript/);
  r = await postForm(srv, '/track', ev('p5 answers', 'p5-6'), { query: 'callback=mp_cb&verbose=1' });
  assert.equal(r.text, 'mp_cb({"status":1,"error":null})');
  r = await send(srv, { path: '/track?img=1&data=' + encodeURIComponent(b64json(ev('p5 answers', 'p5-7'))) });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^image\/gif/);
  assert.equal(r.body.subarray(0, 6).toString('latin1'), 'GIF89a');
  assert.equal((await stored(['p5 answers'])).length, 7);
});

test('pitfall 6: ip and verbose from the query string or the form body, the body winning', async () => {
  let r = await send(srv, { method: 'POST', path: '/track?verbose=0', headers: [FORM], body: form({ data: b64json(ev('p6 params', 'p6-1')), verbose: '1' }) });
  assert.equal(r.text, VERBOSE_OK, 'body verbose=1 beats query verbose=0');
  r = await send(srv, { method: 'POST', path: '/track?verbose=1', headers: [FORM], body: form({ data: b64json(ev('p6 params', 'p6-2')), verbose: '0' }) });
  assert.equal(r.text, '1', 'body verbose=0 beats query verbose=1');
  r = await send(srv, { method: 'POST', path: '/track', headers: [FORM], body: form({ data: JSON.stringify(ev('p6 params', 'p6-3')), verbose: '1', ip: '0' }) });
  assert.equal(r.text, VERBOSE_OK, 'verbose in the body only (Python)');
  // ip decides whether an event without any id gets one from the client IP
  const anon = (iid) => ({ event: 'p6 ip', properties: { token: DEMO.token, time: 1717200000, $insert_id: iid } });
  r = await send(srv, { method: 'POST', path: '/track?ip=0', headers: [FORM], body: form({ data: b64json(anon('p6-ip-body1')), ip: '1' }) });
  assert.equal(r.text, '1');
  r = await send(srv, { method: 'POST', path: '/track?ip=1', headers: [FORM], body: form({ data: b64json(anon('p6-ip-body0')), ip: '0' }) });
  assert.equal(r.text, '1');
  r = await send(srv, { method: 'POST', path: '/track/', headers: [FORM], body: 'ip=1&data=' + JSON.stringify([anon('p6-ip-ios')]) });
  assert.equal(r.text, '1');
  const evs = await stored(['p6 ip']);
  const did = (id) => evs.find((e) => e.properties.$insert_id === id).properties.distinct_id;
  assert.match(did('p6-ip-body1'), /^.+$/, 'ip=1 in the body: distinct_id from the client IP');
  assert.equal(did('p6-ip-body0'), '', 'ip=0 in the body: no distinct_id');
  assert.equal(did('p6-ip-ios'), did('p6-ip-body1'), 'iOS ip=1 before the raw JSON data');
});

test('pitfall 7: paths with and without a trailing slash', async () => {
  for (const p of ['/track', '/track/']) {
    const r = await postForm(srv, p, ev('p7 slash', `p7${p.replace(/\//g, '-')}`));
    assert.equal(r.status, 200, p);
    assert.equal(r.text, '1', p);
  }
  for (const p of ['/engage', '/engage/']) assert.equal((await postForm(srv, p, { $token: DEMO.token, $distinct_id: 'p7', $set: { a: 1 } })).text, '1', p);
  for (const p of ['/groups', '/groups/']) assert.equal((await postForm(srv, p, { $token: DEMO.token, $group_key: 'k', $group_id: 'p7', $set: { a: 1 } })).text, '1', p);
  for (const p of ['/import', '/import/']) {
    const r = await postForm(srv, p, ev('p7 slash', `p7i${p.replace(/\//g, '-')}`), { headers: [AUTH] });
    assert.equal(r.text, '1', p);
  }
  for (const p of ['/decide', '/decide/']) assert.equal((await send(srv, { path: `${p}?verbose=1&version=3&lib=web&token=${DEMO.token}` })).status, 200, p);
  const q = 'from_date=2024-01-01&to_date=2024-12-31&event=' + encodeURIComponent('["p7 slash"]');
  for (const p of ['/api/2.0/export', '/api/2.0/export/']) {
    const r = await send(srv, { path: `${p}?${q}`, headers: [AUTH] });
    assert.equal(r.status, 200, p);
    assert.equal(r.text.trim().split('\n').length, 4, p);
  }
});

test('pitfall 8: gzip request bodies (/import JSON, Swift raw JSON, Android whole form)', async () => {
  const a = [ev('p8 gzip', 'p8-import-1'), ev('p8 gzip', 'p8-import-2')];
  let r = await send(srv, { method: 'POST', path: '/import?strict=1', headers: [JSONCT, ['Content-Encoding', 'gzip'], AUTH], body: gzip(JSON.stringify(a)) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '{"code":200,"num_records_imported":2,"status":"OK"}');
  const b = [ev('p8 gzip', 'p8-swift')];
  r = await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [JSONCT, ['Content-Encoding', 'gzip']], body: gzip(JSON.stringify(b)) });
  assert.equal(r.text, '1');
  const c = [ev('p8 gzip', 'p8-android')];
  r = await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [FORM, ['Content-Encoding', 'gzip']], body: gzip('data=' + encodeURIComponent(b64json(c))) });
  assert.equal(r.text, '1');
  const evs = await stored(['p8 gzip']);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['p8-android', 'p8-import-1', 'p8-import-2', 'p8-swift']);
});

test('pitfall 9: bad data on /track, /engage, /groups is answered 200 (0), never 4xx', async () => {
  const bodies = [
    ['malformed JSON', [FORM], 'data=' + encodeURIComponent('[{"event":')],
    ['invalid base64', [FORM], 'data=%%%not*base64!!!'],
    ['bad gzip', [FORM, ['Content-Encoding', 'gzip']], 'data=not-gzip'],
    ['no data', [FORM], 'ip=1'],
    ['JSON scalar', [JSONCT], '42'],
    ['invalid record', [JSONCT], '[{"nothing":"useful"}]'],
  ];
  for (const ep of ['/track', '/engage', '/groups']) {
    for (const [label, headers, body] of bodies) {
      let r = await send(srv, { method: 'POST', path: ep, headers, body });
      assert.equal(r.status, 200, `${ep} ${label}: ${r.status} ${r.text}`);
      assert.equal(r.text, '0', `${ep} ${label}`);
      r = await send(srv, { method: 'POST', path: ep + '?verbose=1', headers, body });
      assert.equal(r.status, 200, `${ep} ${label} verbose`);
      assert.equal(r.json().status, 0, `${ep} ${label} verbose`);
      assert.equal(typeof r.json().error, 'string');
    }
  }
});

test('pitfall 10: CORS with credentials on answers, and OPTIONS preflight', async () => {
  const origin = 'https://shop.example.com';
  let r = await postForm(srv, '/track/', ev('p10 cors', 'p10-1'), { query: 'verbose=1&ip=1', headers: [['Origin', origin]] });
  assert.equal(r.text, VERBOSE_OK);
  assert.equal(r.headers['access-control-allow-origin'], origin);
  assert.equal(r.headers['access-control-allow-credentials'], 'true');
  // also on a rejected payload
  r = await send(srv, { method: 'POST', path: '/track/', headers: [FORM, ['Origin', origin]], body: 'data=@@@' });
  assert.equal(r.text, '0');
  assert.equal(r.headers['access-control-allow-origin'], origin);
  assert.equal(r.headers['access-control-allow-credentials'], 'true');
  for (const p of ['/track/', '/engage/', '/import', '/record/?format=gzip']) {
    r = await send(srv, { method: 'OPTIONS', path: p, headers: [['Origin', origin],
      ['Access-Control-Request-Method', 'POST'], ['Access-Control-Request-Headers', 'authorization,content-type']] });
    assert.ok(r.status >= 200 && r.status < 300, `OPTIONS ${p}: ${r.status}`);
    assert.match(r.headers['access-control-allow-methods'] || '', /\bPOST\b/, `OPTIONS ${p}`);
    assert.match(r.headers['access-control-allow-headers'] || '', /authorization/i, `OPTIONS ${p}`);
    assert.equal(r.headers['access-control-allow-origin'], origin, `OPTIONS ${p}`);
    assert.equal(r.headers['access-control-allow-credentials'], 'true', `OPTIONS ${p}`);
  }
  // no Origin, no CORS headers needed; but never a wildcard with credentials
  r = await postForm(srv, '/track', ev('p10 cors', 'p10-2'));
  assert.notEqual(r.headers['access-control-allow-origin'], '*');
});

test('pitfall 11: sendBeacon POST with Content-Type text/plain;charset=UTF-8 and a form body', async () => {
  const a = ev('p11 beacon', 'p11-1');
  const b = ev('p11 beacon', 'p11-2');
  let r = await send(srv, { method: 'POST', path: '/track/?ip=1&_=1717200000000', headers: [['Content-Type', 'text/plain;charset=UTF-8']], body: form({ data: b64json(a) }) });
  assert.equal(r.status, 200);
  assert.equal(r.text, '1');
  r = await send(srv, { method: 'POST', path: '/track/?ip=1', headers: [['Content-Type', 'text/plain;charset=UTF-8']], body: form({ data: JSON.stringify(b) }) });
  assert.equal(r.text, '1');
  await assertStored([a, b]);
});

test('pitfall 12: distinct-id and token field names differ: properties.distinct_id/token, $distinct_id/$token, $group_key/$group_id', async () => {
  const e = ev('p12 fields', 'p12-1', { distinct_id: 'p12-user' });
  assert.equal((await postForm(srv, '/track', e)).text, '1');
  const [got] = await assertStored([e]);
  assert.equal(got.properties.distinct_id, 'p12-user');
  // an event carrying $token instead of token has no token
  assert.equal((await postForm(srv, '/track', { event: 'p12 fields', properties: { $token: DEMO.token, distinct_id: 'x', $insert_id: 'p12-2' } })).text, '0');
  assert.equal((await postForm(srv, '/engage', { $token: DEMO.token, $distinct_id: 'p12-user', $set: { a: 1 } })).text, '1');
  assert.equal((await postForm(srv, '/engage', { token: DEMO.token, $distinct_id: 'p12-user', $set: { a: 1 } })).text, '0', 'engage with token instead of $token');
  assert.equal((await postForm(srv, '/engage', { $token: DEMO.token, distinct_id: 'p12-user', $set: { a: 1 } })).text, '0', 'engage with distinct_id instead of $distinct_id');
  assert.equal((await postForm(srv, '/groups', { $token: DEMO.token, $group_key: 'company', $group_id: 'p12-co', $set: { a: 1 } })).text, '1');
  assert.equal((await postForm(srv, '/groups', { $token: DEMO.token, $group_key: 'company', $set: { a: 1 } })).text, '0', 'groups without $group_id');
  assert.equal((await postForm(srv, '/groups', { $token: DEMO.token, $distinct_id: 'p12-co', $set: { a: 1 } })).text, '0', 'groups keyed like a user');
  assert.equal((await stored(['p12 fields'])).length, 1);
});

test('pitfall 13: unknown top-level keys such as $mp_metadata are ignored, not rejected', async () => {
  const e = { ...ev('p13 metadata', 'p13-1'), $mp_metadata: { $mp_event_id: 'abc', $mp_session_id: 's1', $mp_session_seq_id: 3 }, extra_top: 1 };
  let r = await postJSON(srv, '/track/?ip=1', [e]);
  assert.equal(r.text, '1');
  const [got] = await assertStored([ev('p13 metadata', 'p13-1')]);
  assert.equal(got.properties.$mp_metadata, undefined);
  r = await postJSON(srv, '/engage/?ip=1', [{ $token: DEMO.token, $distinct_id: 'p13', $set: { a: 1 }, $mp_metadata: { $mp_event_id: 'x' } }]);
  assert.equal(r.text, '1');
  r = await postJSON(srv, '/groups/?ip=1', [{ $token: DEMO.token, $group_key: 'k', $group_id: 'p13', $set: { a: 1 }, $mp_metadata: {} }]);
  assert.equal(r.text, '1');
});

test('pitfall 14: $identify (with $anon_distinct_id) and $create_alias are stored as ordinary events', async () => {
  const identify = { event: '$identify', properties: { token: DEMO.token, distinct_id: 'p14-user', $anon_distinct_id: '$device:p14-dev',
    $device_id: 'p14-dev', $user_id: 'p14-user', time: 1717200005.456, $insert_id: 'p14-identify', mp_lib: 'web' } };
  const alias = { event: '$create_alias', properties: { token: DEMO.token, distinct_id: 'p14-user', alias: 'p14-alias', time: 1717200006, $insert_id: 'p14-alias' } };
  assert.equal((await postForm(srv, '/track/', [identify, alias], { query: 'verbose=1&ip=1' })).text, VERBOSE_OK);
  const evs = await stored(['$identify', '$create_alias']);
  const mine = evs.filter((e) => /^p14-/.test(e.properties.$insert_id));
  assert.equal(mine.length, 2);
  for (const s of [identify, alias]) {
    const exp = expectedStored(s);
    const got = mine.find((e) => e.event === s.event);
    assert.deepStrictEqual(comparableProps(got, { generatedInsertId: false }), exp.props);
  }
});

test('pitfall 15: simplified ID merge: distinct_id from $user_id (even over a sent distinct_id), else "$device:"+$device_id', async () => {
  const mk = (iid, props) => ({ event: 'p15 identity', properties: { token: DEMO.token, time: 1717200000, $insert_id: iid, ...props } });
  const sent = [
    mk('p15-a', { $user_id: 'p15-u1', $device_id: 'p15-d1' }),
    mk('p15-b', { $device_id: 'p15-d2' }),
    mk('p15-c', { distinct_id: 'p15-sent', $user_id: 'p15-u3', $device_id: 'p15-d3' }),
    mk('p15-d', { distinct_id: 'p15-sent4', $device_id: 'p15-d4' }),
    mk('p15-e', { distinct_id: '$device:p15-d5', $device_id: 'p15-d5' }),
    mk('p15-f', { distinct_id: 'p15-only' }),
  ];
  assert.equal((await postForm(srv, '/track', sent)).text, '1');
  const evs = await stored(['p15 identity']);
  const props = (id) => evs.find((e) => e.properties.$insert_id === id).properties;
  assert.equal(props('p15-a').distinct_id, 'p15-u1', 'no distinct_id: $user_id');
  assert.equal(props('p15-b').distinct_id, '$device:p15-d2', 'no distinct_id, no $user_id: "$device:"+$device_id');
  assert.equal(props('p15-e').distinct_id, '$device:p15-d5');
  assert.equal(props('p15-e').$distinct_id_before_identity, undefined, 'unchanged id: no bookkeeping');
  assert.equal(props('p15-f').distinct_id, 'p15-only', 'only distinct_id: kept');
  assert.equal(props('p15-c').distinct_id, 'p15-u3', '$user_id overrides the distinct_id the client sent (spec §2.15, §9.1 rule 1)');
  assert.equal(props('p15-c').$distinct_id_before_identity, 'p15-sent', 'the sent id is kept (spec §9.5)');
  assert.equal(props('p15-d').distinct_id, '$device:p15-d4', '$device_id overrides the sent distinct_id (spec §9.1 rule 2)');
  for (const s of sent) {
    const e = evs.find((x) => x.properties.$insert_id === s.properties.$insert_id);
    assert.deepStrictEqual(comparableProps(e, { generatedInsertId: false }), expectedStored(s).props);
  }
  // a project with identity = original keeps what was sent, and only fills a missing distinct_id
  const orig = sent.map((e) => ({ ...e, event: 'p15 original', properties: { ...e.properties, token: ORIG.token } }));
  assert.equal((await postForm(srv, '/track', orig)).text, '1');
  const oevs = await exportAll(srv, ORIG.api_secret, { events: ['p15 original'] });
  const od = (id) => oevs.find((e) => e.properties.$insert_id === id).properties;
  assert.equal(od('p15-a').distinct_id, 'p15-u1');
  assert.equal(od('p15-b').distinct_id, '$device:p15-d2');
  assert.equal(od('p15-c').distinct_id, 'p15-sent');
  assert.equal(od('p15-c').$distinct_id_before_identity, undefined);
  assert.equal(od('p15-d').distinct_id, 'p15-sent4');
});

async function query(name, params) {
  const res = await fetch(`${srv.url}/api/2.0/${name}?${new URLSearchParams(params)}`, { headers: { Authorization: AUTH[1] } });
  return { status: res.status, json: await res.json() };
}

test('pitfall 16: /engage query `total` is the overall match count, and pages fetched in parallel add up', async () => {
  const ups = [];
  for (let i = 0; i < 7; i++)
    ups.push({ $token: DEMO.token, $distinct_id: `p16-${i}`, $set: { p16: true, n: i } });
  assert.equal((await postForm(srv, '/engage', ups)).text, '1');
  const where = 'properties["p16"] == true';
  const first = await query('engage', { where, page_size: '3' });
  assert.equal(first.status, 200, JSON.stringify(first.json));
  assert.equal(first.json.total, 7, 'total counts every match, not the page');
  assert.equal(first.json.results.length, 3);
  // mixpanel-utils: ceil(total / page_size) pages, fetched concurrently with one session_id
  const pages = await Promise.all([1, 2].map((page) =>
    query('engage', { where, page_size: '3', page: String(page), session_id: first.json.session_id })));
  const ids = [first, ...pages].flatMap((r) => r.json.results.map((x) => x.$distinct_id));
  assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6].map((i) => `p16-${i}`));
});

test('pitfall 17: retention_type is birth or compounded (compounding accepted), anything else is 400', async () => {
  const day = 86400;
  const base = Math.floor(Date.UTC(2024, 5, 3) / 1000);
  const evs = [
    ev('p17 open', 'p17-1', { distinct_id: 'p17-a', time: base + 100 }),
    ev('p17 open', 'p17-2', { distinct_id: 'p17-a', time: base + day + 100 }),
    ev('p17 open', 'p17-3', { distinct_id: 'p17-b', time: base + day + 200 }),
  ].map((e) => { delete e.properties.token; return e; });
  const res = await fetch(`${srv.url}/import?strict=1`, { method: 'POST', headers: { Authorization: AUTH[1], ...JSONCT }, body: JSON.stringify(evs) });
  assert.equal(res.status, 200);
  const p = { from_date: '2024-06-03', to_date: '2024-06-04', born_event: 'p17 open', event: 'p17 open' };
  const birth = await query('retention', { ...p, retention_type: 'birth' });
  assert.deepStrictEqual(birth.json, {
    '2024-06-03': { counts: [0, 1], first: 1 },   // p17-a born day 0, back 24h later
    '2024-06-04': { counts: [0, 0], first: 1 },   // p17-b born day 1
  });
  const comp = await query('retention', { ...p, retention_type: 'compounded' });
  assert.deepStrictEqual(comp.json, {
    '2024-06-03': { counts: [0, 1], first: 1 },
    '2024-06-04': { counts: [0, 0], first: 2 },   // p17-a did it again on day 1
  });
  assert.deepStrictEqual((await query('retention', { ...p, retention_type: 'compounding' })).json, comp.json);
  const bad = await query('retention', { ...p, retention_type: 'recurring' });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /retention_type/);
});

test('pitfall 18: expression `in` is a substring test for strings and membership for lists', async () => {
  const base = Math.floor(Date.UTC(2024, 5, 10) / 1000);
  const evs = [
    { event: 'p18', properties: { distinct_id: 'p18-a', time: base + 1, $insert_id: 'p18-1', title: 'Mixpanel rocks', tags: ['x', 'y'], n: 2 } },
    { event: 'p18', properties: { distinct_id: 'p18-b', time: base + 2, $insert_id: 'p18-2', title: 'nothing here', tags: ['z'], n: 5 } },
  ];
  const res = await fetch(`${srv.url}/import?strict=1`, { method: 'POST', headers: { Authorization: AUTH[1], ...JSONCT }, body: JSON.stringify(evs) });
  assert.equal(res.status, 200);
  const count = async (where) => {
    const r = await query('segmentation', { event: 'p18', from_date: '2024-06-10', to_date: '2024-06-10', where });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json.data.values.p18['2024-06-10'];
  };
  assert.equal(await count('"panel" in properties["title"]'), 1, 'substring');
  assert.equal(await count('not "panel" in properties["title"]'), 1, 'does not contain');
  assert.equal(await count('"y" in properties["tags"]'), 1, 'list property membership');
  assert.equal(await count('properties["n"] in [1, 2, 3]'), 1, 'list literal membership');
  assert.equal(await count('properties["title"] in ["nothing here", "other"]'), 1);
});

test('pitfall 19: export: time in seconds unless time_in_ms=true; only equal dedup keys collapse', async () => {
  const same = ev('p19 export', null, { time: 1717200000.999, n: 1 });
  const sent = [
    same, { ...same, properties: { ...same.properties } },                              // no $insert_id: never deduplicated
    ev('p19 export', 'p19-x', { time: 1717200001.000 }), ev('p19 export', 'p19-x', { time: 1717200001.001 }), // time differs by 1 ms
    ev('p19 export', 'p19-y', { distinct_id: 'a' }), ev('p19 export', 'p19-y', { distinct_id: 'b' }),       // distinct_id differs
    ev('p19 export', 'p19-z'), ev('p19 export', 'p19-z', { n: 2 }),                                     // same key: one copy, the latest
  ];
  assert.equal((await postForm(srv, '/track', sent)).text, '1');
  const s = await stored(['p19 export'], { timeInMs: false });
  assert.equal(s.length, 7, JSON.stringify(s));
  const noIid = s.filter((e) => e.properties.n === 1);
  assert.equal(noIid.length, 2);
  for (const e of noIid) assert.equal(e.properties.time, 1717200000, 'seconds, truncated');
  assert.notEqual(noIid[0].properties.$insert_id, noIid[1].properties.$insert_id, 'generated $insert_ids differ');
  for (const e of s) assert.ok(Number.isInteger(e.properties.time));
  const z = s.filter((e) => e.properties.$insert_id === 'p19-z');
  assert.equal(z.length, 1);
  assert.equal(z[0].properties.n, 2, 'the most recent copy is kept');
  const ms = await stored(['p19 export']);
  assert.deepEqual(ms.filter((e) => e.properties.$insert_id === 'p19-x').map((e) => e.properties.time).sort(), [1717200001000, 1717200001001]);
  assert.equal(ms.find((e) => e.properties.n === 1).properties.time, 1717200000999);
  // export lines: JSONL, text/plain, ascending time
  const r = await send(srv, { path: '/api/2.0/export?from_date=2024-05-01&to_date=2024-06-30&event=' + encodeURIComponent('["p19 export"]'), headers: [AUTH] });
  assert.match(r.headers['content-type'], /^text\/plain/);
  assert.ok(r.text.endsWith('\n'));
  const times = r.text.trim().split('\n').map((l) => JSON.parse(l).properties.time);
  assert.deepEqual(times, [...times].sort((x, y) => x - y));
});

test('pitfall 20: Basic auth with the credentials not base64-encoded (`Basic secret:`) is accepted', async () => {
  const e = ev('p20 auth', 'p20-1');
  let r = await postJSON(srv, '/import', [e], { headers: [['Authorization', `Basic ${DEMO.api_secret}:`]] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, '{"code":200,"num_records_imported":1,"status":"OK"}');
  r = await send(srv, { path: '/api/2.0/export?from_date=2024-01-01&to_date=2024-12-31&event=' + encodeURIComponent('["p20 auth"]'),
    headers: [['Authorization', `Basic ${DEMO.api_secret}:`]] });
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text.trim()).properties.$insert_id, 'p20-1');
  r = await postJSON(srv, '/import', [ev('p20 auth', 'p20-2')], { headers: [['Authorization', 'Basic wrong-secret:']] });
  assert.equal(r.status, 401);
});

test('pitfall 21: strings are cut to 255 UTF-8 bytes on a character boundary', async () => {
  const s254e = 'a'.repeat(254) + 'é';           // 256 bytes -> 254
  const euro = '€'.repeat(100);                   // 300 bytes -> 85 x 3 = 255
  const emoji = 'b'.repeat(253) + '🚀';           // 257 bytes -> 253
  const exact = 'c'.repeat(253) + 'é';            // 255 bytes, kept
  const long = 'd'.repeat(1000);
  const e = ev('p21 ' + 'n'.repeat(300), 'p21-1', { s254e, euro, emoji, exact, long, nested: { inner: long, list: [long, 'ok'] }, list: [euro] });
  assert.equal((await postForm(srv, '/track', e)).text, '1');
  const evs = await stored(['p21 ' + 'n'.repeat(251)]);
  assert.equal(evs.length, 1, 'event name cut to 255 bytes');
  const p = evs[0].properties;
  assert.equal(p.s254e, 'a'.repeat(254));
  assert.equal(p.euro, '€'.repeat(85));
  assert.equal(p.emoji, 'b'.repeat(253));
  assert.equal(p.exact, exact);
  assert.equal(p.long, 'd'.repeat(255));
  assert.deepStrictEqual(p.nested, { inner: 'd'.repeat(255), list: ['d'.repeat(255), 'ok'] });
  assert.deepStrictEqual(p.list, ['€'.repeat(85)]);
});

test('pitfall 22: an unknown token is answered 200 with 0 (verbose: status 0), and nothing is stored', async () => {
  const e = { event: 'p22 token', properties: { token: 'no-such-token', distinct_id: 'x', time: 1717200000, $insert_id: 'p22-1' } };
  let r = await postForm(srv, '/track', e);
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  r = await postForm(srv, '/track', e, { query: 'verbose=1' });
  assert.equal(r.status, 200);
  assert.equal(r.json().status, 0);
  assert.match(r.json().error, /token/);
  r = await postForm(srv, '/engage', { $token: 'no-such-token', $distinct_id: 'x', $set: { a: 1 } });
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  r = await postForm(srv, '/groups', { $token: 'no-such-token', $group_key: 'k', $group_id: 'g', $set: { a: 1 } });
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  assert.equal((await stored(['p22 token'])).length, 0);
});
