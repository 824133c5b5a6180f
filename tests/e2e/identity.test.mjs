// Identity resolution (Mixpanel ID merge), small hand-computed cases.
//
// The contract: spec §9 (shared/spec/mixpanel-http-api.md) as pinned down for
// mixpaneld: `identity = simplified | original` per [project.NAME] (default
// simplified); resolution happens at query time over all stored events, so it
// is retroactive and independent of arrival order; every unique count,
// funnel and retention counts resolved clusters; GET /api/2.0/identity/graph
// shows a cluster and the links that built (or were refused for) it.
//
// Every expected answer below was worked out by hand from the events listed
// next to it (the only exception: the out-of-order test also compares the
// reports of two arrival orders with each other).  A note "raw:" gives what a
// server without identity resolution would answer, to show that each case
// really depends on the merge.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startServer, b64 } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { request } from './lib/load.mjs';

const require = createRequire(import.meta.url);
const Mixpanel = require('mixpanel');
const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

// ---- projects ------------------------------------------------------------------

let nextId = 100;
const P = (name, identity) => ({
  name, id: ++nextId, token: `${name}-token`, api_secret: `${name}-secret`, timezone: 'UTC', identity,
});
const S_ANON = P('sanon', undefined); // no identity key: the default is simplified
const S_SHARED = P('sshared', 'simplified');
const S_FUN = P('sfun', 'simplified');
const S_RET = P('sret', 'simplified');
const S_OOO_A = P('soooa', 'simplified');
const S_OOO_B = P('sooob', 'simplified');
const O_OOO_A = P('oooa', 'original');
const O_OOO_B = P('ooob', 'original');
const O_CHAIN = P('ochain', 'original');
const O_ALIAS = P('oalias', 'original');
const O_MERGE = P('omerge', 'original');
const O_LIMIT = P('olimit', 'original');
const SDK_S = P('sdks', 'simplified');
const SDK_O = P('sdko', 'original');
const ALL = [S_ANON, S_SHARED, S_FUN, S_RET, S_OOO_A, S_OOO_B, O_OOO_A, O_OOO_B, O_CHAIN, O_ALIAS, O_MERGE, O_LIMIT, SDK_S, SDK_O];

// ---- event builders (ISO times, ms precision) -------------------------------------

let serial = 0;
const iid = () => `idh${(++serial).toString(36)}`;
const T = (iso) => Date.parse(iso);
// an event with exactly these properties (plus time and $insert_id)
const E = (name, iso, props = {}) => ({ event: name, properties: { time: T(iso), $insert_id: iid(), ...props } });
// anonymous browser event on device D: distinct_id "$device:D"
const dev = (name, D, iso, props = {}) => E(name, iso, { distinct_id: `$device:${D}`, $device_id: D, ...props });
// identified browser event: $device_id D and $user_id U
const both = (name, U, D, iso, props = {}) => E(name, iso, { distinct_id: U, $device_id: D, $user_id: U, ...props });
// event with $user_id only (distinct_id U)
const usr = (name, U, iso, props = {}) => E(name, iso, { distinct_id: U, $user_id: U, ...props });
// server-side event: distinct_id only
const raw = (name, id, iso, props = {}) => E(name, iso, { distinct_id: id, ...props });

// ---- assertions -------------------------------------------------------------------

async function expectOk(resP, want, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 500)}`);
  assert.ok(res.json !== undefined, `${what} not JSON: ${res.text.slice(0, 500)}`);
  const d = firstDiff(res.json, want);
  assert.ok(!d, `${what}: ${fmtDiff(d || {})}\n  got:  ${res.text.slice(0, 3000)}\n  want: ${JSON.stringify(want)}`);
  return res.json;
}

// segmentation answer with one key
const seg = (key, byDate) => ({ data: { series: Object.keys(byDate), values: { [key]: byDate } }, legend_size: 1 });
// funnel step
const st = (count, avg, avgStart, stepConv, overallConv, name) => ({
  count, avg_time: avg, avg_time_from_start: avgStart, step_conv_ratio: stepConv, overall_conv_ratio: overallConv, goal: name, event: name,
});
const analysis = (steps) => {
  let worst = 1, drop = 0;
  for (let i = 1; i < steps.length; i++) if (steps[i - 1].count - steps[i].count > drop) { drop = steps[i - 1].count - steps[i].count; worst = i; }
  return { completion: steps[steps.length - 1].count, starting_amount: steps[0].count, steps: steps.length, worst };
};
const fday = (steps) => ({ steps, analysis: analysis(steps) });

// GET /api/2.0/identity/graph
async function graph(proj, id) {
  const res = await q(srv, 'identity/graph', { distinct_id: id }, { auth: proj.api_secret });
  assert.equal(res.status, 200, `identity/graph ${proj.name} ${JSON.stringify(id)}: status ${res.status}: ${res.text.slice(0, 500)}`);
  assert.ok(res.json && typeof res.json === 'object', `identity/graph: not a JSON object: ${res.text.slice(0, 500)}`);
  return res.json;
}
const show = (g) => JSON.stringify(g).slice(0, 4000);

// The cluster of ID: canonical first, then exactly the ids IDS (any order).
async function expectCluster(proj, id, { canonical, ids, identity = proj.identity || 'simplified' }) {
  const g = await graph(proj, id);
  assert.equal(g.status, 'ok', `graph(${id}).status: ${show(g)}`);
  assert.equal(g.distinct_id, id, `graph(${id}).distinct_id: ${show(g)}`);
  assert.equal(g.identity, identity, `graph(${id}).identity: ${show(g)}`);
  assert.equal(g.canonical_id, canonical, `graph(${id}).canonical_id: ${show(g)}`);
  assert.ok(Array.isArray(g.distinct_ids), `graph(${id}).distinct_ids is not a list: ${show(g)}`);
  assert.equal(g.distinct_ids[0], canonical, `graph(${id}).distinct_ids[0] must be the canonical id: ${show(g)}`);
  assert.deepEqual([...g.distinct_ids].sort(), [...ids].sort(), `graph(${id}).distinct_ids: ${show(g)}`);
  assert.ok(Array.isArray(g.links), `graph(${id}).links is not a list: ${show(g)}`);
  return g;
}

// A link in LINKS matching WANT: type, the pair {from, to} (either direction),
// status, and reason / time when given.
function findLink(links, want) {
  return (links || []).find((l) => l.type === want.type &&
    ((l.from === want.from && l.to === want.to) || (l.from === want.to && l.to === want.from)) &&
    l.status === want.status &&
    (want.reason === undefined || l.reason === want.reason) &&
    (want.time === undefined || l.time === want.time));
}
// WANT must be among the links of the graphs of IDS (a refused link may be listed with either side).
async function expectLink(proj, ids, want) {
  const gs = [];
  for (const id of ids) gs.push(await graph(proj, id));
  const hit = gs.some((g) => findLink(g.links, want));
  assert.ok(hit, `no link ${JSON.stringify(want)} in the graphs of ${ids.join(', ')}:\n` + gs.map(show).join('\n'));
}

async function trackRaw(events, { base64 = false } = {}) {
  const data = base64 ? b64(events) : JSON.stringify(events);
  const r = await request(`${srv.url}/track?verbose=1`, {
    method: 'POST', body: 'data=' + encodeURIComponent(data), headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  assert.ok(!r.error, `/track: ${r.error}`);
  assert.equal(r.status, 200, `/track: ${r.status} ${r.text}`);
  assert.equal(JSON.parse(r.text).status, 1, `/track verbose answer: ${r.text}`);
}

let srv;
before(async () => { srv = await startServer({ projects: ALL }); });
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

// =================================================================================
// Simplified ID merge
// =================================================================================

describe('simplified', () => {
  // alice browses anonymously on dev-a (Mon 03-04, Tue 03-05) and dev-c (03-05),
  // then logs in on both on Wed 03-06.  dev-b never logs in.
  const phase1 = [
    dev('View', 'dev-a', '2024-03-04T10:00:00.000Z', { page: 'home' }),
    dev('View', 'dev-a', '2024-03-04T11:00:00.000Z', { page: 'pricing' }),
    dev('View', 'dev-a', '2024-03-05T09:00:00.000Z', { page: 'home' }),
    dev('View', 'dev-b', '2024-03-04T12:00:00.000Z', { page: 'home' }),
    dev('View', 'dev-c', '2024-03-05T15:00:00.000Z', { page: 'docs' }),
  ];
  const phase2 = [
    both('Login', 'alice', 'dev-a', '2024-03-06T10:00:00.000Z'),
    usr('View', 'alice', '2024-03-06T10:05:00.000Z', { page: 'home' }),
    both('Login', 'alice', 'dev-c', '2024-03-06T18:00:00.000Z'),
    both('View', 'alice', 'dev-c', '2024-03-06T18:01:00.000Z', { page: 'docs' }),
  ];
  const R = { from_date: '2024-03-04', to_date: '2024-03-06' };
  const W = { ...R, unit: 'week' }; // 2024-03-04 is a Monday: one bucket

  test('anonymous events, then identify: unique counts before and after the merge (default = simplified)', async () => {
    await importEvents(srv, phase1, { secret: S_ANON.api_secret });
    // before any login: three devices
    await expectOk(q(srv, 'segmentation', { event: 'View', ...R, type: 'unique' }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 2, '2024-03-05': 2, '2024-03-06': 0 }), 'before: View unique by day');
    await expectOk(q(srv, 'segmentation', { event: 'View', ...W, type: 'unique' }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 3 }), 'before: View unique, week');
    await expectCluster(S_ANON, '$device:dev-a', { canonical: '$device:dev-a', ids: ['$device:dev-a'] });

    await importEvents(srv, phase2, { secret: S_ANON.api_secret });
    // after: dev-a and dev-c are alice (retroactively); dev-b is still alone.
    // 03-04: alice(dev-a), dev-b = 2; 03-05: alice(dev-a, dev-c) = 1 (raw 2); 03-06: alice = 1
    await expectOk(q(srv, 'segmentation', { event: 'View', ...R, type: 'unique' }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 2, '2024-03-05': 1, '2024-03-06': 1 }), 'after: View unique by day');
    // the week: alice, dev-b = 2 (raw: dev-a, dev-b, dev-c, alice = 4)
    await expectOk(q(srv, 'segmentation', { event: 'View', ...W, type: 'unique' }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 2 }), 'after: View unique, week');
    // totals do not change
    await expectOk(q(srv, 'segmentation', { event: 'View', ...R }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 3, '2024-03-05': 2, '2024-03-06': 2 }), 'after: View general');
    // average = general / unique per bucket
    await expectOk(q(srv, 'segmentation', { event: 'View', ...W, type: 'average' }, { auth: S_ANON.api_secret }),
      seg('View', { '2024-03-04': 3.5 }), 'after: View average, week');
    // on page: home = alice (a1, a3, v1) + dev-b = 2; pricing = alice; docs = alice (dev-c and alice)
    await expectOk(q(srv, 'segmentation', { event: 'View', ...W, type: 'unique', on: 'properties["page"]' }, { auth: S_ANON.api_secret }), {
      data: { series: ['2024-03-04'], values: { home: { '2024-03-04': 2 }, pricing: { '2024-03-04': 1 }, docs: { '2024-03-04': 1 } } }, legend_size: 3,
    }, 'after: View unique on page');
    // events endpoint, unique
    await expectOk(q(srv, 'events', { event: ['View', 'Login'], type: 'unique', unit: 'day', ...R }, { auth: S_ANON.api_secret }), {
      data: { series: ['2024-03-04', '2024-03-05', '2024-03-06'], values: {
        View: { '2024-03-04': 2, '2024-03-05': 1, '2024-03-06': 1 },
        Login: { '2024-03-04': 0, '2024-03-05': 0, '2024-03-06': 1 } } }, legend_size: 2,
    }, 'after: events unique');
  });

  test('identity graph of a simplified cluster (and of ids without links)', async () => {
    const g = await expectCluster(S_ANON, '$device:dev-a', { canonical: 'alice', ids: ['alice', '$device:dev-a', '$device:dev-c'], identity: 'simplified' });
    assert.ok(findLink(g.links, { type: 'device', from: '$device:dev-a', to: 'alice', status: 'merged', time: T('2024-03-06T10:00:00.000Z') }),
      `device link dev-a -> alice at 10:00: ${show(g)}`);
    // dev-c -> alice is proposed at 18:00 and again at 18:01: the link's time is the earliest
    assert.ok(findLink(g.links, { type: 'device', from: '$device:dev-c', to: 'alice', status: 'merged', time: T('2024-03-06T18:00:00.000Z') }),
      `device link dev-c -> alice at 18:00: ${show(g)}`);
    await expectCluster(S_ANON, 'alice', { canonical: 'alice', ids: ['alice', '$device:dev-a', '$device:dev-c'] });
    await expectCluster(S_ANON, '$device:dev-b', { canonical: '$device:dev-b', ids: ['$device:dev-b'] });
    await expectCluster(S_ANON, 'nobody-at-all', { canonical: 'nobody-at-all', ids: ['nobody-at-all'] });
  });

  test('identity graph: auth and parameters', async () => {
    const none = await q(srv, 'identity/graph', { distinct_id: 'alice' }, { auth: null });
    assert.equal(none.status, 401, `no credentials: ${none.status} ${none.text}`);
    const wrong = await q(srv, 'identity/graph', { distinct_id: 'alice' }, { auth: 'not-a-secret' });
    assert.equal(wrong.status, 401, `wrong secret: ${wrong.status} ${wrong.text}`);
    const missing = await q(srv, 'identity/graph', {}, { auth: S_ANON.api_secret });
    assert.equal(missing.status, 400, `no distinct_id: ${missing.status} ${missing.text}`);
    assert.equal(typeof missing.json?.error, 'string', `error body: ${missing.text}`);
    // the /api/query prefix answers too
    const alt = await q(srv, 'identity/graph', { distinct_id: '$device:dev-c' }, { auth: S_ANON.api_secret, prefix: '/api/query' });
    assert.equal(alt.status, 200, `/api/query/identity/graph: ${alt.status} ${alt.text}`);
    assert.equal(alt.json.canonical_id, 'alice');
  });

  test('a device shared by two users: the earliest link by event time wins (sent out of order); ties by smallest user id', async () => {
    // dev-s: bob links at 12:00 (sent first), carol at 11:00 (sent second) -> carol
    // dev-t: dave and dan link at the same ms -> dan (byte order)
    // dev-u: amy links at 10:00 (sent first), zed at 09:00 -> zed (time beats name)
    const evs = [
      dev('View', 'dev-s', '2024-03-04T10:00:00.000Z'),
      both('Login', 'bob', 'dev-s', '2024-03-04T12:00:00.000Z'),
      both('Login', 'carol', 'dev-s', '2024-03-04T11:00:00.000Z'),
      usr('Buy', 'bob', '2024-03-04T13:00:00.000Z'),
      usr('Buy', 'carol', '2024-03-04T14:00:00.000Z'),

      dev('View', 'dev-t', '2024-03-04T09:00:00.000Z'),
      both('Login', 'dave', 'dev-t', '2024-03-04T10:00:00.000Z'),
      both('Login', 'dan', 'dev-t', '2024-03-04T10:00:00.000Z'),
      usr('Buy', 'dave', '2024-03-04T15:00:00.000Z'),
      usr('Buy', 'dan', '2024-03-04T16:00:00.000Z'),

      dev('View', 'dev-u', '2024-03-04T08:00:00.000Z'),
      both('Login', 'amy', 'dev-u', '2024-03-04T10:00:00.000Z'),
      both('Login', 'zed', 'dev-u', '2024-03-04T09:00:00.000Z'),
      usr('Buy', 'amy', '2024-03-04T11:00:00.000Z'),
      usr('Buy', 'zed', '2024-03-04T12:00:00.000Z'),
    ];
    for (const e of evs) await importEvents(srv, [e], { secret: S_SHARED.api_secret }); // one by one, in this order

    // View -> Buy: carol 10:00 -> 14:00 (4 h), dan 09:00 -> 16:00 (7 h), zed 08:00 -> 12:00 (4 h).
    // Had the later/larger ids won: 3 h, 6 h, 3 h.  raw: three devices, nobody converts.
    await expectOk(q(srv, 'funnels', { events: [{ event: 'View' }, { event: 'Buy' }], from_date: '2024-03-04', to_date: '2024-03-04' }, { auth: S_SHARED.api_secret }), {
      meta: { dates: ['2024-03-04'] },
      data: { '2024-03-04': fday([st(3, null, null, 1, 1, 'View'), st(3, 18000, 18000, 1, 1, 'Buy')]) },
    }, 'View -> Buy');
    // Buy users stay six: two user ids never merge
    await expectOk(q(srv, 'segmentation', { event: 'Buy', from_date: '2024-03-04', to_date: '2024-03-04', type: 'unique' }, { auth: S_SHARED.api_secret }),
      seg('Buy', { '2024-03-04': 6 }), 'Buy unique');

    await expectCluster(S_SHARED, '$device:dev-s', { canonical: 'carol', ids: ['carol', '$device:dev-s'] });
    await expectCluster(S_SHARED, 'bob', { canonical: 'bob', ids: ['bob'] });
    await expectLink(S_SHARED, ['$device:dev-s', 'bob'],
      { type: 'device', from: '$device:dev-s', to: 'bob', status: 'refused', reason: 'errDeviceAlreadyMapped', time: T('2024-03-04T12:00:00.000Z') });
    const gs = await graph(S_SHARED, '$device:dev-s');
    assert.ok(findLink(gs.links, { type: 'device', from: '$device:dev-s', to: 'carol', status: 'merged', time: T('2024-03-04T11:00:00.000Z') }), show(gs));
    await expectCluster(S_SHARED, '$device:dev-t', { canonical: 'dan', ids: ['dan', '$device:dev-t'] });
    await expectCluster(S_SHARED, 'dave', { canonical: 'dave', ids: ['dave'] });
    await expectCluster(S_SHARED, '$device:dev-u', { canonical: 'zed', ids: ['zed', '$device:dev-u'] });
    await expectCluster(S_SHARED, 'amy', { canonical: 'amy', ids: ['amy'] });
  });

  test('$identify, $create_alias and $merge have no effect in simplified', async () => {
    // x-anon / x-user are not device ids; none of these events carries both $device_id and $user_id
    await importEvents(srv, [
      raw('Visit', 'x-anon', '2024-03-11T09:00:00.000Z'),
      raw('$identify', 'x-user', '2024-03-11T10:00:00.000Z', { $identified_id: 'x-user', $anon_id: 'f0e1d2c3-b4a5-4968-8776-655443322110' }),
      raw('Visit', '$device:f0e1d2c3-b4a5-4968-8776-655443322110', '2024-03-11T09:30:00.000Z'),
      raw('$create_alias', 'x-user', '2024-03-11T10:01:00.000Z', { alias: 'x-anon' }),
      E('$merge', '2024-03-11T10:02:00.000Z', { $distinct_ids: ['x-user', 'x-other'] }),
      raw('Visit', 'x-user', '2024-03-11T11:00:00.000Z'),
      raw('Visit', 'x-other', '2024-03-11T11:00:00.000Z'),
    ], { secret: S_SHARED.api_secret });
    // raw = resolved: 4 users
    await expectOk(q(srv, 'segmentation', { event: 'Visit', from_date: '2024-03-11', to_date: '2024-03-11', type: 'unique' }, { auth: S_SHARED.api_secret }),
      seg('Visit', { '2024-03-11': 4 }), 'Visit unique');
    await expectCluster(S_SHARED, 'x-user', { canonical: 'x-user', ids: ['x-user'] });
    await expectCluster(S_SHARED, 'x-anon', { canonical: 'x-anon', ids: ['x-anon'] });
    // the special events are stored as ordinary events
    await expectOk(q(srv, 'events', { event: ['$identify', '$create_alias', '$merge'], type: 'general', unit: 'day', from_date: '2024-03-11', to_date: '2024-03-11' }, { auth: S_SHARED.api_secret }), {
      data: { series: ['2024-03-11'], values: { $identify: { '2024-03-11': 1 }, $create_alias: { '2024-03-11': 1 }, $merge: { '2024-03-11': 1 } } }, legend_size: 3,
    }, 'special events stored');
  });

  test('funnel: step 1 anonymous, step 2 identified (and across two devices of one user)', async () => {
    await importEvents(srv, [
      dev('Open', 'dev-f1', '2024-03-04T10:00:00.000Z'),
      both('Signup', 'fay', 'dev-f1', '2024-03-04T10:10:00.000Z'),
      usr('Pay', 'fay', '2024-03-04T10:30:00.000Z'),
      dev('Open', 'dev-f2', '2024-03-04T11:00:00.000Z'),
      usr('Pay', 'gus', '2024-03-04T11:30:00.000Z'), // gus never links dev-f2
      dev('Open', 'dev-f3', '2024-03-04T12:00:00.000Z'),
      dev('Pay', 'dev-f4', '2024-03-04T12:20:00.000Z'),
      both('Login', 'hal', 'dev-f3', '2024-03-04T13:00:00.000Z'), // links arrive after both steps
      both('Login', 'hal', 'dev-f4', '2024-03-04T13:05:00.000Z'),
    ], { secret: S_FUN.api_secret });
    const D = { from_date: '2024-03-04', to_date: '2024-03-04' };
    // Open -> Pay: fay 1800 s, hal (dev-f3 -> dev-f4) 1200 s, dev-f2 drops.  raw: 3 entrants, 0 convert.
    await expectOk(q(srv, 'funnels', { events: [{ event: 'Open' }, { event: 'Pay' }], ...D }, { auth: S_FUN.api_secret }), {
      meta: { dates: ['2024-03-04'] },
      data: { '2024-03-04': fday([st(3, null, null, 1, 1, 'Open'), st(2, 1500, 1500, 2 / 3, 2 / 3, 'Pay')]) },
    }, 'Open -> Pay');
    // Open -> Signup -> Pay: only fay signs up (600 s), then pays 1200 s later (1800 s from start)
    await expectOk(q(srv, 'funnels', { events: [{ event: 'Open' }, { event: 'Signup' }, { event: 'Pay' }], ...D, length: 1, length_unit: 'hour' }, { auth: S_FUN.api_secret }), {
      meta: { dates: ['2024-03-04'] },
      data: { '2024-03-04': fday([st(3, null, null, 1, 1, 'Open'), st(1, 600, 600, 1 / 3, 1 / 3, 'Signup'), st(1, 1200, 1800, 1, 1 / 3, 'Pay')]) },
    }, 'Open -> Signup -> Pay');
    // Pay users: fay, gus, hal (dev-f4) = 3
    await expectOk(q(srv, 'segmentation', { event: 'Pay', ...D, type: 'unique' }, { auth: S_FUN.api_secret }),
      seg('Pay', { '2024-03-04': 3 }), 'Pay unique');
  });

  test('retention: birth anonymous, return identified', async () => {
    await importEvents(srv, [
      dev('Open', 'dev-r1', '2024-03-04T10:00:00.000Z'),    // rita is born here (anonymous)
      both('Login', 'rita', 'dev-r1', '2024-03-05T09:00:00.000Z'),
      usr('Use', 'rita', '2024-03-05T12:00:00.000Z'),        // +26 h: bucket 1
      usr('Open', 'rita', '2024-03-05T13:00:00.000Z'),       // a later Open: not her birth
      usr('Use', 'rita', '2024-03-07T11:00:00.000Z'),        // +73 h: bucket 3
      dev('Open', 'dev-r2', '2024-03-04T11:00:00.000Z'),    // never linked
      usr('Use', 'sam', '2024-03-05T12:00:00.000Z'),
      usr('Open', 'tom', '2024-03-05T08:00:00.000Z'),        // tom is born identified
      dev('Use', 'dev-r3', '2024-03-05T20:00:00.000Z'),     // +12 h on a device linked later: bucket 0
      both('Login', 'tom', 'dev-r3', '2024-03-06T08:00:00.000Z'),
    ], { secret: S_RET.api_secret });
    // raw: 03-04 {dev-r1, dev-r2} counts [0,0,0,0]; 03-05 {rita, tom} first 2
    await expectOk(q(srv, 'retention', { born_event: 'Open', event: 'Use', from_date: '2024-03-04', to_date: '2024-03-05', interval_count: 3 }, { auth: S_RET.api_secret }), {
      '2024-03-04': { counts: [0, 1, 0, 1], first: 2 },
      '2024-03-05': { counts: [1, 0, 0, 0], first: 1 },
    }, 'retention Open -> Use');
  });
});

// =================================================================================
// Arrival order does not matter (both modes)
// =================================================================================

describe('out-of-order arrival', () => {
  const DA = 'aaaaaaaa-0000-4000-8000-00000000000a';
  const DB = 'bbbbbbbb-0000-4000-8000-00000000000b';
  const DC = 'cccccccc-0000-4000-8000-00000000000c';
  // $identify as mixpanel-browser sends it: both simplified (it carries $device_id and
  // $user_id) and original ($anon_distinct_id is a "$device:" + UUID) merge on it.
  const ident = (U, D, iso) => E('$identify', iso, { distinct_id: U, $anon_distinct_id: `$device:${D}`, $device_id: D, $user_id: U });
  const n = {
    1: dev('View', DA, '2024-03-04T09:00:00.000Z'),
    2: dev('View', DB, '2024-03-04T09:30:00.000Z'),
    3: dev('Open', DA, '2024-03-04T10:00:00.000Z'),
    4: ident('uma', DA, '2024-03-05T10:00:00.000Z'),
    5: both('View', 'uma', DA, '2024-03-05T10:01:00.000Z'),
    6: both('Buy', 'uma', DA, '2024-03-05T11:00:00.000Z'),
    7: dev('View', DC, '2024-03-05T12:00:00.000Z'),
    8: ident('vic', DC, '2024-03-06T09:00:00.000Z'),
    9: both('Buy', 'vic', DC, '2024-03-06T09:05:00.000Z'),
    10: dev('View', DB, '2024-03-06T10:00:00.000Z'),
    11: both('Open', 'uma', DA, '2024-03-06T11:00:00.000Z'),
    12: raw('View', 'uma', '2024-03-07T08:00:00.000Z'),
    13: dev('View', DB, '2024-03-07T09:00:00.000Z'),
  };
  const pick = (...ks) => ks.map((k) => n[k]);
  const R = { from_date: '2024-03-04', to_date: '2024-03-07' };
  const REPORTS = [
    ['segmentation', { event: 'View', ...R, type: 'unique' }],
    ['segmentation', { event: 'View', ...R, type: 'unique', unit: 'week' }],
    ['segmentation', { event: 'Buy', ...R, type: 'unique', unit: 'week' }],
    ['segmentation', { event: 'View', ...R, type: 'average', unit: 'week' }],
    ['events', { event: ['View', 'Open', 'Buy', '$identify'], type: 'unique', unit: 'day', ...R }],
    ['events', { event: ['View', 'Open', 'Buy'], type: 'unique', unit: 'week', ...R }],
    ['funnels', { events: [{ event: 'View' }, { event: 'Buy' }], ...R }],
    ['funnels', { events: [{ event: 'Open' }, { event: 'Buy' }], ...R, unit: 'week' }],
    ['funnels', { events: [{ event: 'View' }, { event: 'Open' }, { event: 'Buy' }], ...R, length: 2, length_unit: 'day' }],
    ['retention', { born_event: 'View', event: 'Buy', ...R, interval_count: 2 }],
    ['retention', { born_event: 'Open', ...R, interval_count: 3 }],
    ['retention', { born_event: 'View', event: 'View', ...R, interval_count: 3, unbounded_retention: 'true' }],
    ['retention', { retention_type: 'compounded', event: 'View', ...R, interval_count: 2 }],
  ];
  async function reports(proj) {
    const out = [];
    for (const [name, params] of REPORTS) {
      const r = await q(srv, name, params, { auth: proj.api_secret });
      assert.equal(r.status, 200, `${proj.name} ${name} ${JSON.stringify(params)}: ${r.status} ${r.text.slice(0, 300)}`);
      const j = r.json;
      if (j && typeof j === 'object') delete j.computed_at;
      out.push({ name, params, json: j });
    }
    return out;
  }
  const week = (v) => seg('View', { '2024-03-04': v });
  const W = { event: 'View', ...R, type: 'unique', unit: 'week' };
  const RET = { born_event: 'View', event: 'Buy', ...R, interval_count: 2 };

  for (const [mode, A, B] of [['simplified', S_OOO_A, S_OOO_B], ['original', O_OOO_A, O_OOO_B]]) {
    test(`${mode}: identify arriving after later events, old data imported last = in-order import`, async () => {
      // A: in time order
      await importEvents(srv, pick(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13), { secret: A.api_secret });
      // B: the recent events first, then the identify events, then the old anonymous data
      await importEvents(srv, pick(11, 12, 13, 9, 10, 5, 6), { secret: B.api_secret });
      // View users: uma (5, 12), $device:DB (10, 13)
      await expectOk(q(srv, 'segmentation', W, { auth: B.api_secret }), week(2), 'B after batch 1: View unique week');
      // births: uma 03-05 10:01 (Buy +59 min: bucket 0), DB 03-06
      await expectOk(q(srv, 'retention', RET, { auth: B.api_secret }), {
        '2024-03-04': { counts: [0, 0, 0], first: 0 }, '2024-03-05': { counts: [1, 0, 0], first: 1 },
        '2024-03-06': { counts: [0, 0, 0], first: 1 }, '2024-03-07': { counts: [0, 0, 0], first: 0 },
      }, 'B after batch 1: retention');
      await importEvents(srv, pick(8, 4), { secret: B.api_secret });
      await expectOk(q(srv, 'segmentation', W, { auth: B.api_secret }), week(2), 'B after batch 2: View unique week');
      await importEvents(srv, pick(1, 2, 3, 7), { secret: B.api_secret });
      // View users: uma ($device:DA), $device:DB, vic ($device:DC) = 3 (raw 4)
      await expectOk(q(srv, 'segmentation', W, { auth: B.api_secret }), week(3), 'B final: View unique week');
      await expectOk(q(srv, 'segmentation', W, { auth: A.api_secret }), week(3), 'A: View unique week');
      // View -> Buy: 03-04 uma (09:00 -> 03-05 11:00 = 93600 s), DB drops; 03-05 uma (10:01 -> 11:00 = 3540 s),
      // vic (12:00 -> 03-06 09:05 = 75900 s); 03-06 DB; 03-07 uma, DB
      await expectOk(q(srv, 'funnels', { events: [{ event: 'View' }, { event: 'Buy' }], ...R }, { auth: B.api_secret }), {
        meta: { dates: ['2024-03-04', '2024-03-05', '2024-03-06', '2024-03-07'] },
        data: {
          '2024-03-04': fday([st(2, null, null, 1, 1, 'View'), st(1, 93600, 93600, 0.5, 0.5, 'Buy')]),
          '2024-03-05': fday([st(2, null, null, 1, 1, 'View'), st(2, 39720, 39720, 1, 1, 'Buy')]),
          '2024-03-06': fday([st(1, null, null, 1, 1, 'View'), st(0, null, null, 0, 0, 'Buy')]),
          '2024-03-07': fday([st(2, null, null, 1, 1, 'View'), st(0, null, null, 0, 0, 'Buy')]),
        },
      }, 'B final: View -> Buy');
      // births: uma 03-04 09:00 (Buy +26 h), DB 03-04 09:30, vic 03-05 12:00 (Buy +21 h 05)
      await expectOk(q(srv, 'retention', RET, { auth: B.api_secret }), {
        '2024-03-04': { counts: [0, 1, 0], first: 2 }, '2024-03-05': { counts: [1, 0, 0], first: 1 },
        '2024-03-06': { counts: [0, 0, 0], first: 0 }, '2024-03-07': { counts: [0, 0, 0], first: 0 },
      }, 'B final: retention');
      // every report: A == B
      const ra = await reports(A), rb = await reports(B);
      for (let i = 0; i < ra.length; i++) {
        const d = firstDiff(rb[i].json, ra[i].json);
        assert.ok(!d, `${ra[i].name} ${JSON.stringify(ra[i].params)}: order B differs from order A: ${fmtDiff(d || {})}\n` +
          `  A: ${JSON.stringify(ra[i].json).slice(0, 2000)}\n  B: ${JSON.stringify(rb[i].json).slice(0, 2000)}`);
      }
      // and the graphs
      for (const id of [`$device:${DA}`, `$device:${DC}`, `$device:${DB}`]) {
        const ga = await graph(A, id), gb = await graph(B, id);
        assert.equal(gb.canonical_id, ga.canonical_id, `graph(${id}) canonical: A ${show(ga)}\nB ${show(gb)}`);
        assert.deepEqual([...gb.distinct_ids].sort(), [...ga.distinct_ids].sort(), `graph(${id}) ids`);
      }
      await expectCluster(B, `$device:${DA}`, { canonical: 'uma', ids: ['uma', `$device:${DA}`] });
      await expectCluster(B, `$device:${DC}`, { canonical: 'vic', ids: ['vic', `$device:${DC}`] });
    });
  }
});

// =================================================================================
// Original ID merge
// =================================================================================

describe('original', () => {
  const G1 = 'f0e1d2c3-b4a5-4968-8776-655443322110';
  const G2 = '0123456789abcdef0123'; // 20 hex digits, no dashes
  const G3 = '33333333-3333-4333-8333-333333333333';
  const G4 = '44444444-4444-4444-8444-444444444444';
  const G5 = '55555555-5555-4555-8555-555555555555';
  const HEX15 = 'abcdef012345678';
  const HEX16 = 'abcdef0123456789';
  const D = { from_date: '2024-03-04', to_date: '2024-03-04' };
  const at = (hm) => `2024-03-04T${hm}:00.000Z`;

  test('$identify chain, alias after identify, refusals (assigned already, non-GUID, same ids, $failure_reason)', async () => {
    const evs = [
      // ann: two devices identified, an email alias, and a device identified under the alias
      raw('View', `$device:${G1}`, at('09:00')),
      raw('View', G2, at('09:30')),
      raw('View', `$device:${G3}`, at('08:00')),
      E('$identify', at('10:00'), { distinct_id: 'ann', $anon_distinct_id: `$device:${G1}`, $device_id: G1, $user_id: 'ann' }), // JS SDK style
      E('$identify', at('11:00'), { distinct_id: 'ann', $identified_id: 'ann', $anon_id: G2 }), // HTTP style
      raw('View', 'ann', at('12:00')),
      raw('$create_alias', 'ann', at('13:00'), { alias: 'ann@example.com' }),
      raw('View', 'ann@example.com', at('14:00')),
      E('$identify', at('15:00'), { distinct_id: 'ann@example.com', $anon_id: `$device:${G3}` }),
      raw('Buy', 'ann@example.com', at('16:00')),
      // ben takes G4; bill's later $identify of G4 (sent first) is refused
      E('$identify', at('11:00'), { distinct_id: 'bill', $anon_distinct_id: `$device:${G4}` }),
      raw('View', `$device:${G4}`, at('09:00')),
      E('$identify', at('10:00'), { distinct_id: 'ben', $anon_distinct_id: `$device:${G4}` }),
      raw('View', 'bill', at('12:00')),
      // non-GUID anonymous ids are refused; 16 hex digits are enough
      raw('View', 'anon-legacy-1', at('09:00')),
      E('$identify', at('10:00'), { distinct_id: 'cal', $anon_id: 'anon-legacy-1' }),
      raw('View', 'cal', at('11:00')),
      raw('View', HEX15, at('09:00')),
      E('$identify', at('10:00'), { distinct_id: 'cat', $anon_id: HEX15 }),
      raw('View', 'cat', at('11:00')),
      raw('View', HEX16, at('09:00')),
      E('$identify', at('10:00'), { distinct_id: 'cid', $anon_id: HEX16 }),
      raw('View', 'cid', at('11:00')),
      // same ids
      E('$identify', at('10:00'), { distinct_id: 'dee', $anon_id: 'dee' }),
      // an event that already failed in Mixpanel (re-imported from an export) is ignored
      raw('View', `$device:${G5}`, at('09:00')),
      E('$identify', at('10:00'), { distinct_id: 'eve', $anon_distinct_id: `$device:${G5}`, $failure_reason: 'errAnonDistinctIdAssignedAlready' }),
      raw('View', 'eve', at('11:00')),
    ];
    await importEvents(srv, evs, { secret: O_CHAIN.api_secret });
    const a = O_CHAIN;

    // View users: ann (G1, G2, G3, ann, email), ben (G4), bill, anon-legacy-1, cal, HEX15, cat, cid (HEX16, cid), G5, eve = 10 (raw 15)
    await expectOk(q(srv, 'segmentation', { event: 'View', ...D, type: 'unique' }, { auth: a.api_secret }),
      seg('View', { '2024-03-04': 10 }), 'View unique');
    // View -> Buy: ann enters at 08:00 ($device:G3), buys at 16:00 as ann@example.com = 28800 s
    await expectOk(q(srv, 'funnels', { events: [{ event: 'View' }, { event: 'Buy' }], ...D }, { auth: a.api_secret }), {
      meta: { dates: ['2024-03-04'] },
      data: { '2024-03-04': fday([st(10, null, null, 1, 1, 'View'), st(1, 28800, 28800, 0.1, 0.1, 'Buy')]) },
    }, 'View -> Buy');

    const ANN = ['ann', `$device:${G1}`, G2, 'ann@example.com', `$device:${G3}`];
    const g = await expectCluster(a, 'ann@example.com', { canonical: 'ann', ids: ANN, identity: 'original' });
    for (const [type, from, to, hm] of [['$identify', `$device:${G1}`, 'ann', '10:00'], ['$identify', G2, 'ann', '11:00'],
      ['$create_alias', 'ann@example.com', 'ann', '13:00'], ['$identify', `$device:${G3}`, 'ann@example.com', '15:00']]) {
      assert.ok(findLink(g.links, { type, from, to, status: 'merged', time: T(at(hm)) }), `merged ${type} ${from} -> ${to}: ${show(g)}`);
    }
    await expectCluster(a, G2, { canonical: 'ann', ids: ANN, identity: 'original' });

    await expectCluster(a, 'ben', { canonical: 'ben', ids: ['ben', `$device:${G4}`], identity: 'original' });
    await expectCluster(a, 'bill', { canonical: 'bill', ids: ['bill'], identity: 'original' });
    await expectLink(a, ['bill', `$device:${G4}`], { type: '$identify', from: `$device:${G4}`, to: 'bill', status: 'refused', reason: 'errAnonDistinctIdAssignedAlready', time: T(at('11:00')) });

    await expectCluster(a, 'cal', { canonical: 'cal', ids: ['cal'], identity: 'original' });
    await expectLink(a, ['cal', 'anon-legacy-1'], { type: '$identify', from: 'anon-legacy-1', to: 'cal', status: 'refused', reason: 'errAnonDistinctIdNonGUIDForm' });
    await expectCluster(a, 'cat', { canonical: 'cat', ids: ['cat'], identity: 'original' });
    await expectLink(a, ['cat', HEX15], { type: '$identify', from: HEX15, to: 'cat', status: 'refused', reason: 'errAnonDistinctIdNonGUIDForm' });
    await expectCluster(a, HEX16, { canonical: 'cid', ids: ['cid', HEX16], identity: 'original' });

    await expectCluster(a, 'dee', { canonical: 'dee', ids: ['dee'], identity: 'original' });
    await expectLink(a, ['dee'], { type: '$identify', from: 'dee', to: 'dee', status: 'refused', reason: 'errSameIDs' });

    const ge = await expectCluster(a, 'eve', { canonical: 'eve', ids: ['eve'], identity: 'original' });
    assert.ok(!ge.links.some((l) => l.status === 'merged'), `the $failure_reason event must have no effect: ${show(ge)}`);
    await expectCluster(a, `$device:${G5}`, { canonical: `$device:${G5}`, ids: [`$device:${G5}`], identity: 'original' });
  });

  test('an anon id that was itself identified cannot be identified again (chain through an identified id)', async () => {
    // $identify(identified = G-x, anon = G-w) makes G-x an identified id; identifying G-x as a user later is refused.
    const GW = 'abababab-0000-4000-8000-000000000001', GX = 'abababab-0000-4000-8000-000000000002';
    await importEvents(srv, [
      raw('Look', GW, '2024-03-12T09:00:00.000Z'),
      raw('Look', GX, '2024-03-12T09:10:00.000Z'),
      E('$identify', '2024-03-12T10:00:00.000Z', { distinct_id: GX, $anon_id: GW }),
      E('$identify', '2024-03-12T11:00:00.000Z', { distinct_id: 'gil', $anon_id: GX }),
      raw('Look', 'gil', '2024-03-12T12:00:00.000Z'),
    ], { secret: O_CHAIN.api_secret });
    // {GX, GW} and gil: 2 (raw 3)
    await expectOk(q(srv, 'segmentation', { event: 'Look', from_date: '2024-03-12', to_date: '2024-03-12', type: 'unique' }, { auth: O_CHAIN.api_secret }),
      seg('Look', { '2024-03-12': 2 }), 'Look unique');
    await expectCluster(O_CHAIN, GW, { canonical: GX, ids: [GX, GW], identity: 'original' });
    await expectCluster(O_CHAIN, 'gil', { canonical: 'gil', ids: ['gil'], identity: 'original' });
    await expectLink(O_CHAIN, ['gil', GX], { type: '$identify', from: GX, to: 'gil', status: 'refused', reason: 'errAnonDistinctIdAssignedAlready' });
  });

  test('identity events at the same ms are replayed by event name ($create_alias before $identify), not by arrival', async () => {
    // both at 10:00:00.000, the $identify sent first.
    // $create_alias first: {q-u2, G} (canonical q-u2), then $identify merges it into q-u1's cluster: canonical q-u1.
    // (Had $identify gone first: {q-u1, G}, then the alias joins q-u2's cluster: canonical q-u2.)
    const G = '22222222-0000-4000-8000-000000000002';
    await importEvents(srv, [
      E('$identify', '2024-03-13T10:00:00.000Z', { distinct_id: 'q-u1', $anon_id: G }),
      raw('$create_alias', 'q-u2', '2024-03-13T10:00:00.000Z', { alias: G }),
    ], { secret: O_CHAIN.api_secret });
    await expectCluster(O_CHAIN, G, { canonical: 'q-u1', ids: ['q-u1', 'q-u2', G], identity: 'original' });
  });

  test('$create_alias twice with the same alias: the second (by time, though sent first) is refused; alias chains', async () => {
    const a = O_ALIAS;
    await importEvents(srv, [
      raw('View', 'shared-alias', at('08:00')),
      raw('$create_alias', 'p2', at('10:00'), { alias: 'shared-alias' }), // sent first, later in time: refused
      raw('$create_alias', 'p1', at('09:00'), { alias: 'shared-alias' }),
      raw('View', 'p1', at('11:00')),
      raw('View', 'p2', at('12:00')),
      raw('Pay', 'p1', at('13:00')),
      raw('$create_alias', 'shared-alias', at('14:00'), { alias: 'alias-2' }), // chain: alias of an alias
      raw('View', 'alias-2', at('15:00')),
      raw('$create_alias', 'p3', at('16:00'), { alias: 'p3' }), // same ids
    ], { secret: a.api_secret });
    // View users: p1 (shared-alias, p1, alias-2), p2 = 2 (raw 4)
    await expectOk(q(srv, 'segmentation', { event: 'View', ...D, type: 'unique' }, { auth: a.api_secret }),
      seg('View', { '2024-03-04': 2 }), 'View unique');
    // View -> Pay: p1 enters at 08:00 (shared-alias), pays 13:00 = 18000 s.  Had p2 won: p1 11:00 -> 13:00.
    await expectOk(q(srv, 'funnels', { events: [{ event: 'View' }, { event: 'Pay' }], ...D }, { auth: a.api_secret }), {
      meta: { dates: ['2024-03-04'] },
      data: { '2024-03-04': fday([st(2, null, null, 1, 1, 'View'), st(1, 18000, 18000, 0.5, 0.5, 'Pay')]) },
    }, 'View -> Pay');
    await expectCluster(a, 'alias-2', { canonical: 'p1', ids: ['p1', 'shared-alias', 'alias-2'], identity: 'original' });
    await expectCluster(a, 'p2', { canonical: 'p2', ids: ['p2'], identity: 'original' });
    await expectLink(a, ['p2', 'shared-alias'], { type: '$create_alias', from: 'shared-alias', to: 'p2', status: 'refused', reason: 'errAliasAlreadyExists', time: T(at('10:00')) });
    await expectLink(a, ['p3'], { type: '$create_alias', from: 'p3', to: 'p3', status: 'refused', reason: 'errSameIDs' });
  });

  test('$merge: effective through /import, stored but ignored through /track; canonical of the larger cluster', async () => {
    const a = O_MERGE;
    await importEvents(srv, [
      raw('View', 'm1', at('08:00')), raw('View', 'm2', at('09:00')),
      E('$merge', at('10:00'), { $distinct_ids: ['m1', 'm2'] }),                   // as the Python SDK sends it (no distinct_id)
      raw('View', 'k1', at('08:00')), raw('View', 'k2', at('08:10')), raw('View', 'k3', at('08:20')),
      raw('$merge', 'k1', at('10:00'), { $distinct_ids: ['k1', 'k2'] }),
      E('$merge', at('11:00'), { $distinct_ids: ['k3', 'k2'] }),                   // k3 (1 id) into {k1, k2}: canonical k1
      raw('View', 'n1', at('08:00')), raw('View', 'n2', at('08:10')),
      E('$merge', at('10:00'), { $distinct_ids: ['n2', 'n1'] }),                   // a tie: the first id's canonical (n2)
      raw('View', 't1', at('08:00')), raw('View', 't2', at('09:00')),
    ], { secret: a.api_secret });
    await trackRaw([{ event: '$merge', properties: { token: a.token, time: T(at('10:00')), $insert_id: iid(), $distinct_ids: ['t1', 't2'] } }]);

    // View users: {m1, m2}, {k1, k2, k3}, {n1, n2}, t1, t2 = 5 (raw 9)
    await expectOk(q(srv, 'segmentation', { event: 'View', ...D, type: 'unique' }, { auth: a.api_secret }),
      seg('View', { '2024-03-04': 5 }), 'View unique');
    // all five $merge events are stored
    await expectOk(q(srv, 'segmentation', { event: '$merge', ...D }, { auth: a.api_secret }), seg('$merge', { '2024-03-04': 5 }), '$merge stored');
    // four of them have distinct_id "" (left out of user counts); one is k1's
    await expectOk(q(srv, 'segmentation', { event: '$merge', ...D, type: 'unique' }, { auth: a.api_secret }), seg('$merge', { '2024-03-04': 1 }), '$merge unique');
    await expectCluster(a, 'm2', { canonical: 'm1', ids: ['m1', 'm2'], identity: 'original' });
    await expectCluster(a, 'k3', { canonical: 'k1', ids: ['k1', 'k2', 'k3'], identity: 'original' });
    await expectCluster(a, 'n1', { canonical: 'n2', ids: ['n2', 'n1'], identity: 'original' });
    const gt = await expectCluster(a, 't2', { canonical: 't2', ids: ['t2'], identity: 'original' });
    assert.ok(!gt.links.some((l) => l.status === 'merged'), `a $merge from /track must not merge: ${show(gt)}`);
    const gm = await graph(a, 'm1');
    assert.ok(findLink(gm.links, { type: '$merge', from: 'm1', to: 'm2', status: 'merged', time: T(at('10:00')) }), show(gm));
  });

  test('the 500-id cluster limit: the 501st id is refused with errManyIDs', async () => {
    const a = O_LIMIT;
    const t0 = T('2024-03-04T00:00:00.000Z');
    const at2 = (s) => new Date(t0 + s * 1000).toISOString();
    const evs = [];
    // big-0 .. big-499 through $merge: 500 ids, canonical big-0
    for (let i = 1; i < 500; i++) evs.push(E('$merge', at2(i), { $distinct_ids: ['big-0', `big-${i}`] }));
    evs.push(E('$merge', at2(600), { $distinct_ids: ['big-0', 'big-500'] }));                       // 501: refused
    evs.push(raw('$create_alias', 'big-7', at2(601), { alias: 'big-501' }));                         // 501: refused
    evs.push(E('$identify', at2(602), { distinct_id: 'big-3', $anon_id: 'eeeeeeee-0000-4000-8000-000000000501' })); // 501: refused
    // l-0 .. l-249 through an alias chain (250 ids), r-0 .. r-250 through $merge (251 ids): together 501, refused
    for (let i = 1; i < 250; i++) evs.push(raw('$create_alias', `l-${i - 1}`, at2(1000 + i), { alias: `l-${i}` }));
    for (let i = 1; i <= 250; i++) evs.push(E('$merge', at2(2000 + i), { $distinct_ids: ['r-0', `r-${i}`] }));
    evs.push(E('$merge', at2(3000), { $distinct_ids: ['l-0', 'r-0'] }));
    // s-0 .. s-249 and w-0 .. w-249 (250 each): together exactly 500, merged
    for (let i = 1; i < 250; i++) evs.push(E('$merge', at2(4000 + i), { $distinct_ids: ['s-0', `s-${i}`] }));
    for (let i = 1; i < 250; i++) evs.push(E('$merge', at2(5000 + i), { $distinct_ids: ['w-0', `w-${i}`] }));
    evs.push(E('$merge', at2(6000), { $distinct_ids: ['w-0', 's-0'] }));
    for (const id of ['big-0', 'big-250', 'big-499', 'big-500', 'big-501', 'eeeeeeee-0000-4000-8000-000000000501'])
      evs.push(raw('View', id, '2024-03-05T10:00:00.000Z'));
    await importEvents(srv, evs, { secret: a.api_secret });

    const big = Array.from({ length: 500 }, (_, i) => `big-${i}`);
    const g = await expectCluster(a, 'big-0', { canonical: 'big-0', ids: big, identity: 'original' });
    assert.equal(g.distinct_ids.length, 500);
    await expectCluster(a, 'big-500', { canonical: 'big-500', ids: ['big-500'], identity: 'original' });
    await expectCluster(a, 'big-501', { canonical: 'big-501', ids: ['big-501'], identity: 'original' });
    await expectLink(a, ['big-500', 'big-0'], { type: '$merge', from: 'big-0', to: 'big-500', status: 'refused', reason: 'errManyIDs', time: T(at2(600)) });
    await expectLink(a, ['big-501', 'big-7'], { type: '$create_alias', from: 'big-501', to: 'big-7', status: 'refused', reason: 'errManyIDs' });
    await expectLink(a, ['eeeeeeee-0000-4000-8000-000000000501', 'big-3'],
      { type: '$identify', from: 'eeeeeeee-0000-4000-8000-000000000501', to: 'big-3', status: 'refused', reason: 'errManyIDs' });
    // View users: the big cluster, big-500, big-501, the GUID = 4 (raw 6)
    await expectOk(q(srv, 'segmentation', { event: 'View', from_date: '2024-03-05', to_date: '2024-03-05', type: 'unique' }, { auth: a.api_secret }),
      seg('View', { '2024-03-05': 4 }), 'View unique');

    const gl = await graph(a, 'l-249');
    assert.equal(gl.canonical_id, 'l-0', show(gl));
    assert.equal(gl.distinct_ids.length, 250, `l cluster: ${gl.distinct_ids.length} ids`);
    const gr = await graph(a, 'r-250');
    assert.equal(gr.canonical_id, 'r-0', show(gr));
    assert.equal(gr.distinct_ids.length, 251, `r cluster: ${gr.distinct_ids.length} ids`);
    await expectLink(a, ['l-0', 'r-0'], { type: '$merge', from: 'l-0', to: 'r-0', status: 'refused', reason: 'errManyIDs' });
    const gs = await graph(a, 's-1');
    assert.equal(gs.distinct_ids.length, 500, `250 + 250 = 500 is allowed: ${gs.distinct_ids.length} ids`);
    assert.equal(gs.canonical_id, 'w-0', 'tie: the first id\'s canonical');
  });
});

// =================================================================================
// SDKs: the official Node SDK and mixpanel-browser's payloads
// =================================================================================

describe('SDK payloads', () => {
  const call = (fn, ...args) => new Promise((resolve, reject) => {
    try { fn(...args, (err) => resolve(err)); } catch (e) { reject(e); }
  });
  const ok = (err, what) => {
    if (err) assert.fail(`${what}: the SDK reported: ${(Array.isArray(err) ? err : [err]).map((e) => e && e.message).join(' | ')}`);
  };
  // one bucket covering yesterday and today (UTC): robust around midnight
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86400e3).toISOString().slice(0, 10);
  const RECENT = { from_date: yesterday, to_date: today, interval: 2, type: 'unique' };

  test('Node SDK alias() ($create_alias on /track): merges under original, nothing under simplified', async () => {
    for (const [proj, merged] of [[SDK_O, true], [SDK_S, false]]) {
      const mp = Mixpanel.init(proj.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', logger: quiet });
      const now = Date.now();
      ok(await call(mp.track, 'sdk visit', { distinct_id: 'n-anon-1', time: new Date(now - 120e3) }), 'track anon');
      ok(await call(mp.track, 'sdk visit', { distinct_id: 'n-user-1', time: new Date(now - 60e3) }), 'track user');
      await expectOk(q(srv, 'segmentation', { event: 'sdk visit', ...RECENT }, { auth: proj.api_secret }),
        seg('sdk visit', { [yesterday]: 2 }), `${proj.name}: before alias`);
      ok(await call(mp.alias, 'n-user-1', 'n-anon-1'), 'alias');
      await expectOk(q(srv, 'segmentation', { event: 'sdk visit', ...RECENT }, { auth: proj.api_secret }),
        seg('sdk visit', { [yesterday]: merged ? 1 : 2 }), `${proj.name}: after alias`);
      if (merged) {
        const g = await expectCluster(proj, 'n-anon-1', { canonical: 'n-user-1', ids: ['n-user-1', 'n-anon-1'], identity: 'original' });
        assert.ok(findLink(g.links, { type: '$create_alias', from: 'n-anon-1', to: 'n-user-1', status: 'merged' }), show(g));
      } else {
        await expectCluster(proj, 'n-anon-1', { canonical: 'n-anon-1', ids: ['n-anon-1'], identity: 'simplified' });
      }
    }
  });

  test('Node SDK track with $device_id / $user_id (simplified)', async () => {
    const mp = Mixpanel.init(SDK_S.token, { host: '127.0.0.1', port: srv.port, protocol: 'http', logger: quiet });
    const now = Date.now();
    ok(await call(mp.track, 'sdk ids', { $device_id: 'nd-1', time: new Date(now - 180e3) }), 'track device');
    ok(await call(mp.track, 'sdk ids', { $device_id: 'nd-2', time: new Date(now - 170e3) }), 'track other device');
    ok(await call(mp.track, 'sdk ids', { $device_id: 'nd-1', $user_id: 'nu-1', time: new Date(now - 60e3) }), 'track identified');
    // nu-1 ($device:nd-1, nu-1) and $device:nd-2 = 2 (raw 3)
    await expectOk(q(srv, 'segmentation', { event: 'sdk ids', ...RECENT }, { auth: SDK_S.api_secret }),
      seg('sdk ids', { [yesterday]: 2 }), 'sdk ids unique');
    await expectCluster(SDK_S, '$device:nd-1', { canonical: 'nu-1', ids: ['nu-1', '$device:nd-1'] });
  });

  test('mixpanel-browser style /track payloads (base64 form): anonymous, $identify, identified', async () => {
    const UUID = 'd3adb33f-1234-4abc-8def-0123456789ab';
    const common = { mp_lib: 'web', $lib_version: '2.83.0', $browser: 'Chrome', $os: 'Linux', $current_url: 'https://example.com/' };
    for (const proj of [SDK_S, SDK_O]) {
      const s = (iso) => T(iso) / 1000; // seconds with milliseconds, as the browser SDK sends them
      const p = (iso, extra) => ({ token: proj.token, time: s(iso), $insert_id: iid(), ...common, ...extra });
      await trackRaw([
        { event: 'Page View', properties: p('2024-03-04T10:00:00.123Z', { distinct_id: `$device:${UUID}`, $device_id: UUID }) },
        { event: 'Page View', properties: p('2024-03-04T10:01:00.456Z', { distinct_id: `$device:${UUID}`, $device_id: UUID }) },
      ], { base64: true });
      await expectOk(q(srv, 'segmentation', { event: 'Page View', from_date: '2024-03-04', to_date: '2024-03-05', unit: 'week', type: 'unique' }, { auth: proj.api_secret }),
        seg('Page View', { '2024-03-04': 1 }), `${proj.name}: anonymous only`);
      await trackRaw([
        { event: '$identify', properties: p('2024-03-05T09:00:00.000Z', { distinct_id: 'web-user', $anon_distinct_id: `$device:${UUID}`, $device_id: UUID, $user_id: 'web-user' }) },
        { event: 'Page View', properties: p('2024-03-05T09:00:01.000Z', { distinct_id: 'web-user', $device_id: UUID, $user_id: 'web-user' }) },
      ], { base64: true });
      // one person across both days (raw 2)
      await expectOk(q(srv, 'segmentation', { event: 'Page View', from_date: '2024-03-04', to_date: '2024-03-05', unit: 'week', type: 'unique' }, { auth: proj.api_secret }),
        seg('Page View', { '2024-03-04': 1 }), `${proj.name}: after identify`);
      await expectOk(q(srv, 'segmentation', { event: 'Page View', from_date: '2024-03-04', to_date: '2024-03-05', type: 'unique' }, { auth: proj.api_secret }),
        seg('Page View', { '2024-03-04': 1, '2024-03-05': 1 }), `${proj.name}: by day`);
      const g = await expectCluster(proj, `$device:${UUID}`, { canonical: 'web-user', ids: ['web-user', `$device:${UUID}`], identity: proj.identity });
      const type = proj.identity === 'simplified' ? 'device' : '$identify';
      assert.ok(findLink(g.links, { type, from: `$device:${UUID}`, to: 'web-user', status: 'merged', time: T('2024-03-05T09:00:00.000Z') }), show(g));
    }
  });
});

// =================================================================================
// Resolution is derived from the stored events: the same after a restart
// =================================================================================

test('after a restart: the same clusters and counts', async () => {
  assert.equal(await srv.stop(), 0);
  await srv.restart();
  await expectCluster(S_ANON, '$device:dev-c', { canonical: 'alice', ids: ['alice', '$device:dev-a', '$device:dev-c'] });
  await expectCluster(S_SHARED, '$device:dev-s', { canonical: 'carol', ids: ['carol', '$device:dev-s'] });
  await expectCluster(O_CHAIN, 'ann@example.com', { canonical: 'ann', ids: ['ann', '$device:f0e1d2c3-b4a5-4968-8776-655443322110', '0123456789abcdef0123', 'ann@example.com', '$device:33333333-3333-4333-8333-333333333333'], identity: 'original' });
  await expectCluster(O_ALIAS, 'alias-2', { canonical: 'p1', ids: ['p1', 'shared-alias', 'alias-2'], identity: 'original' });
  const g = await graph(O_LIMIT, 'big-499');
  assert.equal(g.distinct_ids.length, 500);
  await expectOk(q(srv, 'segmentation', { event: 'View', from_date: '2024-03-04', to_date: '2024-03-06', unit: 'week', type: 'unique' }, { auth: S_ANON.api_secret }),
    seg('View', { '2024-03-04': 2 }), 'S_ANON View unique, week');
  await expectOk(q(srv, 'segmentation', { event: 'View', from_date: '2024-03-04', to_date: '2024-03-04', type: 'unique' }, { auth: O_CHAIN.api_secret }),
    seg('View', { '2024-03-04': 10 }), 'O_CHAIN View unique');
});
