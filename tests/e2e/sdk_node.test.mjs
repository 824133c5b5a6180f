// The official Node SDK (npm `mixpanel` 0.24.0), used as a new user would,
// against build/mixpaneld: plain HTTP for track/people/groups, HTTPS with a
// throwaway self-signed certificate for import/import_batch (the SDK refuses
// to send the API secret over HTTP).  Events are verified through export;
// profiles have no read API yet, so profile and group calls are judged by
// the SDK's own callbacks (it calls anything but "1" an error).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startServer, exportEvents, DEMO } from './lib/server.mjs';
import { exportAll, makeCert, request } from './lib/load.mjs';

const require = createRequire(import.meta.url);
const Mixpanel = require('mixpanel');

const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

// Promisified SDK call: resolves with the callback's first argument.
function call(fn, ...args) {
  return new Promise((resolve, reject) => {
    try {
      fn(...args, (err) => resolve(err));
    } catch (e) {
      reject(e);
    }
  });
}

// The server logs a request when it completes, which can be a moment after
// the client has its answer: wait (up to 3 s) for N log lines matching RE
// after offset FROM.
async function logLines(srv, re, n, from = 0) {
  let lines = [];
  for (let i = 0; i < 60; i++) {
    lines = srv.log().slice(from).split('\n').filter((l) => re.test(l));
    if (lines.length >= n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return lines;
}

function noError(err, what) {
  if (err) {
    const list = Array.isArray(err) ? err : [err];
    assert.fail(`${what}: the SDK reported ${list.length} error(s): ${list.map((e) => e && e.message).join(' | ')}`);
  }
}

let srv;
before(async () => { srv = await startServer(); });
after(async () => { if (srv) assert.equal(await srv.stop(), 0, 'server must exit 0 on SIGTERM'); });

test('track: time variants, $insert_id, non-ASCII and nested properties, verbose client', async () => {
  const mp = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', logger: quiet });
  const nowS = Math.floor(Date.now() / 1000);
  const tSec = nowS - 3600;                       // integer seconds
  const tDate = new Date((nowS - 7200) * 1000 + 123); // Date -> sent as ms
  const tMs = (nowS - 1800) * 1000 + 456;          // ms number
  const nested = { plan: { name: 'pro', seats: 5, flags: [true, false, null] }, list: [1, 'two', { three: 3 }], f: 1.5, nil: null };
  const text = 'Zürich 🚀 a+b=c & d — 日本語';

  const before0 = Date.now();
  noError(await call(mp.track, 'sdk no time', { distinct_id: 'sdk-u1' }), 'track without time');
  const after0 = Date.now();
  noError(await call(mp.track, 'sdk seconds', { distinct_id: 'sdk-u1', time: tSec }), 'track with seconds');
  noError(await call(mp.track, 'sdk date', { distinct_id: 'sdk-u1', time: tDate }), 'track with Date');
  noError(await call(mp.track, 'sdk ms', { distinct_id: 'sdk-u1', time: tMs }), 'track with ms');
  noError(await call(mp.track, 'sdk insert id', { distinct_id: 'sdk-u2', time: tSec, $insert_id: 'sdk-ins-1' }), 'track with $insert_id');
  noError(await call(mp.track, 'sdk insert id', { distinct_id: 'sdk-u2', time: tSec, $insert_id: 'sdk-ins-1', again: true }), 'track same $insert_id again');
  noError(await call(mp.track, 'Ünïcödé 🚀 event', { distinct_id: 'sdk-ü-3', time: tSec, text, ...nested }), 'track non-ASCII/nested');
  noError(await call(mp.track, 'sdk ids', { $device_id: 'dev-42', $user_id: 'sdk-user-42', time: tSec }), 'track with $device_id/$user_id');
  noError(await call(mp.track, 'sdk no props'), 'track without properties');
  const mpv = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', verbose: true, logger: quiet });
  noError(await call(mpv.track, 'sdk verbose', { distinct_id: 'sdk-u1', time: tSec }), 'verbose track');

  const evs = await exportEvents(srv, { params: { event: JSON.stringify(['sdk no time', 'sdk seconds', 'sdk date', 'sdk ms', 'sdk insert id', 'Ünïcödé 🚀 event', 'sdk ids', 'sdk no props', 'sdk verbose']) } });
  const by = (name) => evs.filter((e) => e.event === name);
  assert.equal(evs.length, 9, `9 distinct events expected (the $insert_id repeat is deduplicated), got ${evs.map((e) => e.event)}`);

  const e0 = by('sdk no time')[0];
  assert.ok(e0, 'event without time stored');
  assert.ok(e0.properties.time >= Math.floor(before0 / 1000) - 1 && e0.properties.time <= Math.ceil(after0 / 1000) + 1,
    `server stamps missing time with now: ${e0.properties.time} vs ${before0 / 1000}`);
  assert.equal(e0.properties.distinct_id, 'sdk-u1');
  assert.equal(e0.properties.mp_lib, 'node');
  assert.equal(e0.properties.$lib_version, '0.24.0');
  assert.equal(e0.properties.token, undefined, 'token is not stored as a property');

  assert.equal(by('sdk seconds')[0].properties.time, tSec);
  assert.equal(by('sdk date')[0].properties.time, Math.floor(tDate.getTime() / 1000), 'Date (ms) normalised to seconds');
  assert.equal(by('sdk ms')[0].properties.time, Math.floor(tMs / 1000), 'ms normalised to seconds');

  const ins = by('sdk insert id');
  assert.equal(ins.length, 1, 'same $insert_id/event/distinct_id/time stored once');
  assert.equal(ins[0].properties.$insert_id, 'sdk-ins-1');
  assert.equal(ins[0].properties.again, true, 'the last copy wins');

  const u = by('Ünïcödé 🚀 event')[0];
  assert.ok(u, 'non-ASCII event name round-trips');
  assert.equal(u.properties.distinct_id, 'sdk-ü-3');
  assert.equal(u.properties.text, text);
  assert.deepEqual(u.properties.plan, nested.plan);
  assert.deepEqual(u.properties.list, nested.list);
  assert.equal(u.properties.f, 1.5);
  assert.equal(u.properties.nil, null);

  const ids = by('sdk ids')[0];
  assert.equal(ids.properties.distinct_id, 'sdk-user-42', 'no distinct_id: $user_id becomes distinct_id');
  assert.equal(ids.properties.$device_id, 'dev-42');

  const np = by('sdk no props')[0];
  assert.equal(np.properties.distinct_id, '', 'no distinct_id at all -> empty string');

  // time_in_ms keeps the milliseconds the SDK sent
  const ms = await exportEvents(srv, { params: { time_in_ms: 'true', event: JSON.stringify(['sdk date', 'sdk ms']) } });
  assert.equal(ms.find((e) => e.event === 'sdk date').properties.time, tDate.getTime());
  assert.equal(ms.find((e) => e.event === 'sdk ms').properties.time, tMs);
});

test('track_batch of 120 events (3 requests) and alias', async () => {
  const mp = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', logger: quiet });
  const t0 = Math.floor(Date.now() / 1000) - 600;
  const list = [];
  for (let i = 0; i < 120; i++) {
    list.push({ event: `batch ${i % 4}`, properties: { distinct_id: `batch-u${i % 7}`, time: t0 + i, n: i, $insert_id: `tb-${i}` } });
  }
  // count the requests the SDK makes: watch the server log
  const logBefore = srv.log();
  noError(await call(mp.track_batch, list), 'track_batch');
  const posts = await logLines(srv, /POST \/track 200/, 3, logBefore.length);
  assert.equal(posts.length, 3, `track_batch of 120 = 3 POSTs (50+50+20); log:\n${posts.join('\n')}`);
  assert.deepEqual(posts.map((l) => Number(l.match(/events=(\d+)/)[1])).sort((a, b) => a - b), [20, 50, 50]);

  noError(await call(mp.alias, 'batch-u1', 'batch-alias-1'), 'alias');

  const evs = await exportEvents(srv, { params: { event: JSON.stringify(['batch 0', 'batch 1', 'batch 2', 'batch 3']) } });
  assert.equal(evs.length, 120);
  const seen = new Set();
  for (const e of evs) {
    const n = e.properties.n;
    assert.ok(Number.isInteger(n) && n >= 0 && n < 120, `unexpected event ${JSON.stringify(e)}`);
    assert.ok(!seen.has(n), `event ${n} exported twice`);
    seen.add(n);
    assert.equal(e.event, `batch ${n % 4}`);
    assert.equal(e.properties.distinct_id, `batch-u${n % 7}`);
    assert.equal(e.properties.time, t0 + n);
    assert.equal(e.properties.$insert_id, `tb-${n}`);
  }
  // export is ascending by time
  for (let i = 1; i < evs.length; i++) assert.ok(evs[i - 1].properties.time <= evs[i].properties.time, 'export sorted by time');

  const al = await exportEvents(srv, { params: { event: JSON.stringify(['$create_alias']) } });
  assert.equal(al.length, 1);
  assert.equal(al[0].properties.distinct_id, 'batch-u1');
  assert.equal(al[0].properties.alias, 'batch-alias-1');
});

test('people.* and groups.* calls are all accepted', async () => {
  const mp = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', logger: quiet });
  const p = mp.people;
  const g = mp.groups;
  const id = 'sdk-person-1';
  const calls = [
    ['people.set one', () => call(p.set.bind(p), id, 'plan', 'pro')],
    ['people.set object', () => call(p.set.bind(p), id, { $name: 'Ada Lövelace', $email: 'ada@example.com', seats: 5, beta: true })],
    ['people.set modifiers', () => call(p.set.bind(p), id, { plan: 'team' }, { $ip: '203.0.113.9', $ignore_time: true })],
    ['people.set_once', () => call(p.set_once.bind(p), id, 'first_seen', '2024-03-01')],
    ['people.increment', () => call(p.increment.bind(p), id, 'logins')],
    ['people.increment -5', () => call(p.increment.bind(p), id, 'credits', -5)],
    ['people.increment object', () => call(p.increment.bind(p), id, { logins: 2, points: 10 })],
    ['people.append', () => call(p.append.bind(p), id, 'tags', 'early-adopter')],
    ['people.append object', () => call(p.append.bind(p), id, { tags: 'vip', pages: 'pricing' })],
    ['people.union', () => call(p.union.bind(p), id, { features: ['alerts', 'export'], teams: 'core' })],
    ['people.remove', () => call(p.remove.bind(p), id, { tags: 'vip' })],
    ['people.unset', () => call(p.unset.bind(p), id, 'beta')],
    ['people.unset list', () => call(p.unset.bind(p), id, ['seats', 'first_seen'])],
    ['people.track_charge', () => call(p.track_charge.bind(p), id, 19.99, { $time: new Date('2024-03-02T10:00:00Z'), sku: 'A-1' })],
    ['people.track_charge plain', () => call(p.track_charge.bind(p), id, 5)],
    ['people.clear_charges', () => call(p.clear_charges.bind(p), id)],
    ['people.set ignore_alias', () => call(p.set.bind(p), 'sdk-person-2', { a: 1 }, { $ignore_alias: true })],
    ['people.delete_user', () => call(p.delete_user.bind(p), 'sdk-person-2')],
    ['groups.set', () => call(g.set.bind(g), 'company', 'acme', { $name: 'Acme Inc', plan: 'Enterprise' })],
    ['groups.set one', () => call(g.set.bind(g), 'company', 'acme', 'size', 250)],
    ['groups.set_once', () => call(g.set_once.bind(g), 'company', 'acme', 'founded', 1999)],
    ['groups.union', () => call(g.union.bind(g), 'company', 'acme', { regions: ['eu', 'us'] })],
    ['groups.remove', () => call(g.remove.bind(g), 'company', 'acme', { regions: 'us' })],
    ['groups.unset', () => call(g.unset.bind(g), 'company', 'acme', 'size')],
    ['groups.set other', () => call(g.set.bind(g), 'company', 'globex', { plan: 'free' })],
    ['groups.delete_group', () => call(g.delete_group.bind(g), 'company', 'globex')],
  ];
  for (const [what, fn] of calls) noError(await fn(), what);
  // every one of them reached the server and was answered 200
  assert.equal((await logLines(srv, /GET \/engage 200/, 18)).length, 18);
  assert.equal((await logLines(srv, /GET \/groups 200/, 8)).length, 8);
});

test('import and import_batch over HTTPS with the API secret; a repeated import_batch is deduplicated', async (t) => {
  const cert = makeCert();
  const tls = await startServer({ server: { tls_cert: cert.cert, tls_key: cert.key } });
  // the SDK has no option for a custom CA: accept the self-signed certificate
  // for this process's TLS client connections
  const prevTls = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  try {
    assert.match(tls.url, /^https:/, 'server must listen on https with tls_cert/tls_key');
    // the SDK refuses the secret over plain HTTP
    const plain = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', secret: DEMO.api_secret, logger: quiet });
    assert.throws(() => plain.import('x', new Date(), { distinct_id: 'a' }, () => {}), /Must use HTTPS/);

    const mp = Mixpanel.init(DEMO.token, { host: '127.0.0.1', port: tls.port, protocol: 'https', secret: DEMO.api_secret, logger: quiet });
    const old = new Date('2024-01-15T12:34:56.789Z');
    noError(await call(mp.import, 'imported single', old, { distinct_id: 'imp-u1', $insert_id: 'imp-single-1', ref: 'Zürich' }), 'import (Date)');
    noError(await call(mp.import, 'imported single', 1705000000, { distinct_id: 'imp-u1', n: 2 }), 'import (seconds)');

    const base = Date.parse('2024-02-01T00:00:00Z');
    const mk = () => {
      const list = [];
      for (let i = 0; i < 500; i++) {
        const props = { distinct_id: `imp-u${i % 13}`, time: new Date(base + i * 61000), i };
        if (i % 2 === 0) props.$insert_id = `ib-${i}`;
        list.push({ event: `import batch ${i % 5}`, properties: props });
      }
      return list;
    };
    const logBefore = tls.log();
    noError(await call(mp.import_batch, mk()), 'import_batch #1');
    const posts = await logLines(tls, /POST \/import 200 events=50 /, 10, logBefore.length);
    assert.equal(posts.length, 10, 'import_batch of 500 = 10 POSTs of 50');

    const names = JSON.stringify(['import batch 0', 'import batch 1', 'import batch 2', 'import batch 3', 'import batch 4']);
    let evs = await exportAll(tls, { params: { event: names } });
    assert.equal(evs.length, 500);
    for (const e of evs) {
      const i = e.properties.i;
      assert.equal(e.event, `import batch ${i % 5}`);
      assert.equal(e.properties.distinct_id, `imp-u${i % 13}`);
      assert.equal(e.properties.time, Math.floor((base + i * 61000) / 1000));
      assert.equal(e.properties.$import, true, '/import adds $import: true');
      if (i % 2 === 0) assert.equal(e.properties.$insert_id, `ib-${i}`);
    }

    // the same batch again: the 250 events with $insert_id are duplicates,
    // the 250 without one are new (Mixpanel never deduplicates those)
    noError(await call(mp.import_batch, mk()), 'import_batch #2');
    evs = await exportAll(tls, { params: { event: names } });
    const count = new Map();
    for (const e of evs) count.set(e.properties.i, (count.get(e.properties.i) || 0) + 1);
    for (let i = 0; i < 500; i++) {
      assert.equal(count.get(i), i % 2 === 0 ? 1 : 2, `event ${i} (${i % 2 === 0 ? 'with' : 'without'} $insert_id)`);
    }
    assert.equal(evs.length, 750);

    const singles = await exportAll(tls, { params: { event: JSON.stringify(['imported single']) } });
    assert.equal(singles.length, 2);
    assert.equal(singles[0].properties.time, 1705000000);
    assert.equal(singles[1].properties.time, Math.floor(old.getTime() / 1000));
    assert.equal(singles[1].properties.ref, 'Zürich');
    assert.equal(singles[1].properties.mp_lib, 'node');

    const h = await request(`${tls.url}/healthz`);
    assert.equal(JSON.parse(h.text).projects.demo.events, 752);
  } finally {
    if (prevTls === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = prevTls;
    assert.equal(await tls.stop(), 0, 'TLS server must exit 0 on SIGTERM');
  }
});
