// Query API, small hand-computed cases (docs/QUERIES.md is the contract).
// Every expected answer below was worked out by hand from the events listed
// next to it; none is computed by code.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';

const LA = { name: 'la', id: 2, token: 'la-token', api_secret: 'la-secret', timezone: 'America/Los_Angeles' };
const FUN = { name: 'fun', id: 3, token: 'fun-token', api_secret: 'fun-secret', timezone: 'UTC' };
const RET = { name: 'ret', id: 4, token: 'ret-token', api_secret: 'ret-secret', timezone: 'UTC' };
const REC = { name: 'recent', id: 5, token: 'rec-token', api_secret: 'rec-secret', timezone: 'UTC' };

// One /import event at an ISO time (ms precision).
const E = (name, user, iso, props = {}, id = undefined) => ({
  event: name,
  properties: { time: Date.parse(iso), distinct_id: user, $insert_id: id ?? `h${++E.n}`, ...props },
});
E.n = 0;

// Assert a 200 JSON answer equal to WANT (numbers within 1e-9 relative).
async function expectOk(resP, want, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 500)}`);
  assert.ok(res.json !== undefined, `${what} not JSON: ${res.text.slice(0, 500)}`);
  const d = firstDiff(res.json, want);
  assert.ok(!d, `${what} ${fmtDiff(d || {})}\n  got:  ${res.text.slice(0, 3000)}\n  want: ${JSON.stringify(want)}`);
  return res.json;
}
// Assert an error answer: status, JSON {error, request}.
async function expectErr(resP, status, what = '', { msg = null } = {}) {
  const res = await resP;
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 500)}`);
  if (status === 404 && res.json === undefined) return res; // unknown path: any body
  assert.ok(res.json && typeof res.json.error === 'string' && res.json.error.length > 0, `${what}: no "error" string: ${res.text.slice(0, 500)}`);
  if (status !== 405 && !(status === 404 && !('request' in res.json)))
    assert.equal(typeof res.json.request, 'string', `${what}: no "request": ${res.text}`);
  if (msg) assert.match(res.json.error, msg, `${what}: message`);
  return res;
}

// ---- data --------------------------------------------------------------------

// demo (UTC): segmentation, sum/average, events, export.
const DEMO_EVENTS = [
  E('Signup', 'u1', '2024-05-05T23:59:59.999Z', { plan: 'free', amount: 5 }, 's1'),
  E('Signup', 'u1', '2024-05-06T00:00:00.000Z', { plan: 'pro', amount: 10 }, 's2'),
  E('Signup', 'u2', '2024-05-06T08:30:00.000Z', { plan: 'free', amount: 2.5, tags: ['a', 'b', 'a'] }, 's3'),
  E('Signup', 'u1', '2024-05-06T23:59:59.999Z', { plan: 'pro', amount: '7' }, 's4'),
  E('Signup', 'u3', '2024-05-07T00:00:00.000Z', { plan: 'team', amount: 20, tags: ['b'] }, 's5'),
  E('Signup', '', '2024-05-07T12:00:00.000Z', { plan: 'free', amount: 1 }, 's6'),
  E('Signup', 'u2', '2024-05-07T13:00:00.000Z', { plan: 'free', mobile: true }, 's7'),
  E('Signup', 'u2', '2024-05-07T13:00:00.000Z', { plan: 'free', mobile: true }, 's7'), // duplicate of s7
  E('Signup', 'u4', '2024-05-08T23:59:59.999Z', { plan: 'pro', amount: 4 }, 's9'),
  E('Signup', 'u4', '2024-05-09T00:00:00.000Z', { plan: 'pro', amount: 100 }, 's10'),
  E('Purchase', 'u1', '2024-05-06T10:00:00.000Z', { price: 3 }, 'p1'),
  E('Purchase', 'u2', '2024-05-07T10:00:00.000Z', { price: 4.5 }, 'p2'),
  E('Purchase', 'u2', '2024-05-07T11:00:00.000Z', { price: 2 }, 'p3'),
  E('Dup', 'u1', '2024-05-06T05:00:00.000Z', {}, 'dup-1'),
  E('Dup', 'u1', '2024-05-06T05:00:00.000Z', {}, 'dup-2'), // same key but another $insert_id: counts
];
const DEMO_AGAIN = [E('Dup', 'u1', '2024-05-06T05:00:00.000Z', {}, 'dup-1')]; // sent again later

// la (America/Los_Angeles): bucket edges around the DST changes.
const LA_EVENTS = [
  E('Tick', 'u1', '2024-03-10T07:59:59.999Z'), // 03-09 23:59:59.999 PST
  E('Tick', 'u1', '2024-03-10T08:00:00.000Z'), // 03-10 00:00 PST
  E('Tick', 'u2', '2024-03-10T09:59:59.999Z'), // 03-10 01:59:59.999 PST
  E('Tick', 'u2', '2024-03-10T10:00:00.000Z'), // 03-10 03:00 PDT
  E('Tick', 'u3', '2024-03-11T06:59:59.999Z'), // 03-10 23:59:59.999 PDT
  E('Tick', 'u3', '2024-03-11T07:00:00.000Z'), // 03-11 00:00 PDT
  E('Tick', 'u5', '2024-11-01T06:59:59.999Z'), // 10-31 23:59:59.999 PDT
  E('Tick', 'u5', '2024-11-01T07:00:00.000Z'), // 11-01 00:00 PDT
  E('Tick', 'u1', '2024-11-03T06:59:59.999Z'), // 11-02 23:59:59.999 PDT
  E('Tick', 'u1', '2024-11-03T07:00:00.000Z'), // 11-03 00:00 PDT
  E('Tick', 'u2', '2024-11-03T08:30:00.000Z'), // 11-03 01:30 PDT
  E('Tick', 'u3', '2024-11-03T09:30:00.000Z'), // 11-03 01:30 PST
  E('Tick', 'u2', '2024-11-03T10:00:00.000Z'), // 11-03 02:00 PST
  E('Tick', 'u4', '2024-11-04T07:59:59.999Z'), // 11-03 23:59:59.999 PST
  E('Tick', 'u4', '2024-11-04T08:00:00.000Z'), // 11-04 00:00 PST
];

// fun (UTC): funnels.
const FUN_EVENTS = [
  // A, B, A within 1 hour on 2024-06-03
  E('A', 'f1', '2024-06-03T10:00:00.000Z'), E('B', 'f1', '2024-06-03T10:05:00.000Z'), E('A', 'f1', '2024-06-03T10:10:00.000Z'),
  E('A', 'f2', '2024-06-03T10:00:00.000Z'), E('A', 'f2', '2024-06-03T10:01:00.000Z'), E('B', 'f2', '2024-06-03T10:02:00.000Z'),
  E('A', 'f3', '2024-06-03T10:00:00.000Z'), E('B', 'f3', '2024-06-03T10:30:00.000Z'), E('A', 'f3', '2024-06-03T11:00:00.000Z'),
  E('B', 'f4', '2024-06-03T09:59:58.000Z'), E('A', 'f4', '2024-06-03T10:00:00.000Z'), E('A', 'f4', '2024-06-03T10:00:01.000Z'),
  E('B', 'f5', '2024-06-03T09:59:57.999Z'), E('A', 'f5', '2024-06-03T10:00:00.000Z'),
  E('B', 'f6', '2024-06-03T10:00:00.000Z'),
  // Open -> Pay around 2024-06-10
  E('Open', 'g1', '2024-06-10T23:00:00.000Z', { src: 'ad', plat: 'ios' }), E('Pay', 'g1', '2024-06-12T23:00:00.000Z', { amount: 20 }),
  E('Open', 'g2', '2024-06-10T01:00:00.000Z', { src: 'ad', plat: 'web' }), E('Pay', 'g2', '2024-07-11T00:00:00.000Z', { amount: 50 }),
  E('Open', 'g3', '2024-06-09T23:59:59.999Z', { src: 'ad' }), E('Open', 'g3', '2024-06-10T00:00:00.000Z', { src: 'seo', plat: 'web' }),
  E('Pay', 'g3', '2024-06-10T00:00:05.000Z', { amount: 5 }),
  E('Pay', 'g4', '2024-06-10T05:00:00.000Z', { amount: 99 }), E('Open', 'g4', '2024-06-10T06:00:00.000Z', { src: 'ad', plat: 'ios' }),
];

// ret (UTC): retention and addiction.
const RET_EVENTS = [
  E('Signup', 'r1', '2024-07-01T10:00:00.000Z'),
  E('Use', 'r1', '2024-07-01T12:00:00.000Z'), E('Use', 'r1', '2024-07-02T09:00:00.000Z'),
  E('Use', 'r1', '2024-07-02T10:00:00.000Z'), E('Use', 'r1', '2024-07-04T10:00:00.000Z'),
  E('Signup', 'r2', '2024-07-01T23:00:00.000Z', { plan: 'pro' }), E('Use', 'r2', '2024-07-03T23:00:00.000Z'),
  E('Signup', 'r3', '2024-06-30T10:00:00.000Z'), E('Signup', 'r3', '2024-07-02T10:00:00.000Z'), E('Use', 'r3', '2024-07-02T11:00:00.000Z'),
  E('Signup', 'r4', '2024-07-02T08:00:00.000Z', { plan: 'pro' }),
  E('Use', 'r4', '2024-07-02T08:00:00.000Z'), E('Use', 'r4', '2024-07-03T07:59:59.999Z'),
  E('Signup', 'r5', '2024-07-02T09:00:00.000Z', { plan: 'free' }), E('Signup', 'r5', '2024-07-03T09:00:00.000Z', { plan: 'free' }),
  // segmentation/numeric (August, away from the July cohorts)
  E('Pay', 'p1', '2024-08-01T10:00:00.000Z', { amount: 2000 }), E('Pay', 'p1', '2024-08-01T11:00:00.000Z', { amount: 2005 }),
  E('Pay', 'p2', '2024-08-01T12:00:00.000Z', { amount: 2050 }), E('Pay', 'p1', '2024-08-02T10:00:00.000Z', { amount: 2150 }),
  E('Pay', 'p3', '2024-08-02T11:00:00.000Z', { amount: 'x' }), E('Pay', 'p3', '2024-08-02T12:00:00.000Z'),
];

// recent (UTC): events/names and events/properties/values look at the last 31 days.
const now = Date.now();
const ago = (ms) => new Date(now - ms).toISOString();
const H = 3600e3, D = 86400e3;
const REC_EVENTS = [
  E('View', 'v1', ago(1 * H), { color: 'red', size: 3, tags: ['x', 'y'] }),
  E('View', 'v2', ago(2 * D), { color: 'red', size: 3 }),
  E('View', 'v3', ago(3 * D), { color: 'blue', size: 10.5 }),
  E('Click', 'v1', ago(1 * H), { color: 'blue' }),
  E('Click', 'v2', ago(5 * D), { color: 'blue', tags: ['y'] }),
  E('Buy', 'v1', ago(2 * H), { amount: 5 }),
  E('Buy', 'v3', ago(10 * D), { amount: 7 }),
  ...[1, 2, 3, 4, 5].map((i) => E('Old', `o${i}`, ago(40 * D + i * H), { color: 'green' })),
];

let srv;
before(async () => {
  srv = await startServer({ projects: [DEMO, LA, FUN, RET, REC] });
  await importEvents(srv, DEMO_EVENTS);
  await importEvents(srv, DEMO_AGAIN);
  await importEvents(srv, LA_EVENTS, { secret: LA.api_secret });
  await importEvents(srv, FUN_EVENTS, { secret: FUN.api_secret });
  await importEvents(srv, RET_EVENTS, { secret: RET.api_secret });
  await importEvents(srv, REC_EVENTS, { secret: REC.api_secret });
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

const R3 = { from_date: '2024-05-06', to_date: '2024-05-08' };
const S3 = ['2024-05-06', '2024-05-07', '2024-05-08'];

// ---- segmentation -------------------------------------------------------------

describe('segmentation', () => {
  test('general / unique / average, day buckets, 23:59:59.999 vs 00:00:00.000 (UTC)', async () => {
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3 }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 3, '2024-05-07': 3, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'general');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, type: 'unique' }, { prefix: '/api/query' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 2, '2024-05-07': 2, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'unique');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, type: 'average' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 1.5, '2024-05-07': 1.5, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'average');
    // limit without `on` is ignored; trailing slash accepted
    await expectOk(q(srv, '', { event: 'Signup', ...R3, limit: 1 }, { path: '/api/2.0/segmentation/' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 3, '2024-05-07': 3, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'trailing slash');
    // an event nobody did: zero-filled
    await expectOk(q(srv, 'segmentation', { event: 'Nobody', from_date: '2024-05-06', to_date: '2024-05-07' }), {
      data: { series: ['2024-05-06', '2024-05-07'], values: { Nobody: { '2024-05-06': 0, '2024-05-07': 0 } } }, legend_size: 1,
    }, 'nobody');
  });

  test('on: string, list, number, boolean and computed segments; unique and average', async () => {
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]' }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 },
        free: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 3,
    }, 'on plan');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]', type: 'unique' }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 1 },
        free: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 3,
    }, 'on plan unique');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]', type: 'average' }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 },
        free: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 3,
    }, 'on plan average');
    // a list counts once under each distinct element
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["tags"]' }), {
      data: { series: S3, values: {
        a: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 0 },
        b: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 2,
    }, 'on tags');
    // numbers as JSON numbers; the string "7" stays "7"; events without amount are left out
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["amount"]' }), {
      data: { series: S3, values: {
        10: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 0 },
        2.5: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 0 },
        7: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 0 },
        20: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 },
        1: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 },
        4: { '2024-05-06': 0, '2024-05-07': 0, '2024-05-08': 1 } } }, legend_size: 6,
    }, 'on amount');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["mobile"]' }), {
      data: { series: S3, values: { true: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'on boolean');
    // "7" >= 5 is undefined (string vs number): left out
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["amount"] >= 5' }), {
      data: { series: S3, values: {
        true: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 },
        false: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 1 } } }, legend_size: 2,
    }, 'on computed');
  });

  test('limit: top segments by total, ties by key', async () => {
    // totals: free 3, pro 3, team 1
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]', limit: 2 }), {
      data: { series: S3, values: {
        free: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
        pro: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 } } }, legend_size: 2,
    }, 'limit 2');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]', limit: 1 }), {
      data: { series: S3, values: { free: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'limit 1');
    // unique totals: free 2, pro 2, team 1
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, on: 'properties["plan"]', type: 'unique', limit: 1 }), {
      data: { series: S3, values: { free: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'unique limit 1');
  });

  test('where, alone and with on', async () => {
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, where: 'properties["plan"] == "pro"' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'where plan');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, where: 'properties["amount"] >= 5' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'where amount');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, where: '"b" in properties["tags"]', type: 'unique' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'where in list');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, where: 'defined(properties["amount"])', on: 'properties["plan"]' }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 },
        free: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 3,
    }, 'where defined + on');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, where: 'not defined(properties["amount"]) or properties["plan"] == "team"', type: 'average' }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 1,
    }, 'where or, average');
  });

  test('POST form parameters; the body wins over the query string', async () => {
    await expectOk(q(srv, 'segmentation', { event: 'Signup', ...R3, type: 'unique' },
      { method: 'POST', query: { event: 'Purchase', type: 'general' } }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 2, '2024-05-07': 2, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'POST');
  });

  test('duplicate $insert_id counted once (same batch and a later request)', async () => {
    await expectOk(q(srv, 'segmentation', { event: 'Dup', from_date: '2024-05-06', to_date: '2024-05-06' }), {
      data: { series: ['2024-05-06'], values: { Dup: { '2024-05-06': 2 } } }, legend_size: 1,
    }, 'Dup');
  });

  test('unit hour, minute, week (Monday keys), month, interval', async () => {
    const hours = {};
    for (let h = 0; h < 24; h++) hours[`2024-05-06 ${String(h).padStart(2, '0')}:00:00`] = 0;
    hours['2024-05-06 00:00:00'] = 1; hours['2024-05-06 08:00:00'] = 1; hours['2024-05-06 23:00:00'] = 1;
    await expectOk(q(srv, 'segmentation', { event: 'Signup', from_date: '2024-05-06', to_date: '2024-05-06', unit: 'hour' }), {
      data: { series: Object.keys(hours), values: { Signup: hours } }, legend_size: 1,
    }, 'hour');
    const m = await q(srv, 'segmentation', { event: 'Signup', from_date: '2024-05-06', to_date: '2024-05-06', unit: 'minute' });
    assert.equal(m.status, 200, m.text.slice(0, 300));
    const mv = m.json.data.values.Signup;
    assert.equal(m.json.data.series.length, 1440);
    assert.equal(m.json.data.series[0], '2024-05-06 00:00:00');
    assert.equal(m.json.data.series[1439], '2024-05-06 23:59:00');
    assert.deepEqual([mv['2024-05-06 00:00:00'], mv['2024-05-06 08:30:00'], mv['2024-05-06 23:59:00'], mv['2024-05-06 08:29:00']], [1, 1, 1, 0]);
    assert.equal(Object.values(mv).reduce((a, b) => a + b, 0), 3);
    // 2024-05-01 is a Wednesday: the first week is Monday 2024-04-29 (s1 is on Sunday 05-05)
    await expectOk(q(srv, 'segmentation', { event: 'Signup', from_date: '2024-05-01', to_date: '2024-05-12', unit: 'week' }), {
      data: { series: ['2024-04-29', '2024-05-06'], values: { Signup: { '2024-04-29': 1, '2024-05-06': 8 } } }, legend_size: 1,
    }, 'week');
    await expectOk(q(srv, 'segmentation', { event: 'Signup', from_date: '2024-04-15', to_date: '2024-05-31', unit: 'month' }), {
      data: { series: ['2024-04-01', '2024-05-01'], values: { Signup: { '2024-04-01': 0, '2024-05-01': 9 } } }, legend_size: 1,
    }, 'month');
  });

  test('interval=2: 2-day buckets from from_date, the last one partial', async () => {
    // interval=2: buckets 05-05..06, 05-07..08, 05-09
    await expectOk(q(srv, 'segmentation', { event: 'Signup', from_date: '2024-05-05', to_date: '2024-05-09', interval: 2, type: 'unique' }), {
      data: { series: ['2024-05-05', '2024-05-07', '2024-05-09'], values: { Signup: { '2024-05-05': 2, '2024-05-07': 3, '2024-05-09': 1 } } }, legend_size: 1,
    }, 'interval 2');
  });

  test('America/Los_Angeles: day edges and 2024-03-10 (23 hours, no 02:00)', async () => {
    const la = { auth: LA.api_secret };
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-03-09', to_date: '2024-03-11' }, la), {
      data: { series: ['2024-03-09', '2024-03-10', '2024-03-11'], values: { Tick: { '2024-03-09': 1, '2024-03-10': 4, '2024-03-11': 1 } } }, legend_size: 1,
    }, 'LA spring day');
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-03-10', to_date: '2024-03-10', type: 'unique' }, la), {
      data: { series: ['2024-03-10'], values: { Tick: { '2024-03-10': 3 } } }, legend_size: 1,
    }, 'LA spring day unique');
    // 2024-03-10 has no 02:00 local hour: 23 buckets
    const spring = ['00', '01', '03', '04', '05', '06', '07', '08', '09', '10', '11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21', '22', '23'];
    const sv = {};
    for (const h of spring) sv[`2024-03-10 ${h}:00:00`] = 0;
    sv['2024-03-10 00:00:00'] = 1; sv['2024-03-10 01:00:00'] = 1; sv['2024-03-10 03:00:00'] = 1; sv['2024-03-10 23:00:00'] = 1;
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-03-10', to_date: '2024-03-10', unit: 'hour' }, la), {
      data: { series: Object.keys(sv), values: { Tick: sv } }, legend_size: 1,
    }, 'LA spring hour');
  });

  test('America/Los_Angeles: 2024-11-03 (25 hours; 01:00 twice), week, month', async () => {
    const la = { auth: LA.api_secret };
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-11-02', to_date: '2024-11-04' }, la), {
      data: { series: ['2024-11-02', '2024-11-03', '2024-11-04'], values: { Tick: { '2024-11-02': 1, '2024-11-03': 5, '2024-11-04': 1 } } }, legend_size: 1,
    }, 'LA fall day');
    // 2024-11-03: the local hour 01:00 happens twice and is one bucket
    const fv = {};
    for (let h = 0; h < 24; h++) fv[`2024-11-03 ${String(h).padStart(2, '0')}:00:00`] = 0;
    fv['2024-11-03 00:00:00'] = 1; fv['2024-11-03 01:00:00'] = 2; fv['2024-11-03 02:00:00'] = 1; fv['2024-11-03 23:00:00'] = 1;
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-11-03', to_date: '2024-11-03', unit: 'hour' }, la), {
      data: { series: Object.keys(fv), values: { Tick: fv } }, legend_size: 1,
    }, 'LA fall hour');
    const fu = { ...fv, '2024-11-03 01:00:00': 2 };
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-11-03', to_date: '2024-11-03', unit: 'hour', type: 'unique' }, la), {
      data: { series: Object.keys(fu), values: { Tick: fu } }, legend_size: 1,
    }, 'LA fall hour unique');
  });

  test('America/Los_Angeles: week and month keys', async () => {
    const la = { auth: LA.api_secret };
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-03-06', to_date: '2024-03-12', unit: 'week' }, la), {
      data: { series: ['2024-03-04', '2024-03-11'], values: { Tick: { '2024-03-04': 5, '2024-03-11': 1 } } }, legend_size: 1,
    }, 'LA week');
    await expectOk(q(srv, 'segmentation', { event: 'Tick', from_date: '2024-10-15', to_date: '2024-11-30', unit: 'month' }, la), {
      data: { series: ['2024-10-01', '2024-11-01'], values: { Tick: { '2024-10-01': 1, '2024-11-01': 8 } } }, legend_size: 1,
    }, 'LA month');
  });
});


// ---- segmentation/sum, segmentation/average -------------------------------------

async function expectResults(resP, want, what) {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 500)}`);
  assert.equal(res.json?.status, 'ok', `${what}: ${res.text.slice(0, 500)}`);
  assert.equal(typeof res.json.computed_at, 'string', `${what}: computed_at`);
  const d = firstDiff(res.json.results, want);
  assert.ok(!d, `${what} results ${fmtDiff(d || {})}\n  got:  ${res.text.slice(0, 2000)}`);
}

describe('segmentation/sum and segmentation/average', () => {
  test('non-numeric ("7") and missing values count as 0; empty buckets are 0', async () => {
    await expectResults(q(srv, 'segmentation/sum', { event: 'Signup', ...R3, on: 'properties["amount"]' }),
      { '2024-05-06': 12.5, '2024-05-07': 21, '2024-05-08': 4 }, 'sum');
    await expectResults(q(srv, 'segmentation/average', { event: 'Signup', ...R3, on: 'properties["amount"]' }, { prefix: '/api/query' }),
      { '2024-05-06': 4.166666666666667, '2024-05-07': 7, '2024-05-08': 4 }, 'average');
    await expectResults(q(srv, 'segmentation/sum', { event: 'Signup', ...R3, on: 'properties["amount"]', where: 'properties["plan"] == "free"' }),
      { '2024-05-06': 2.5, '2024-05-07': 1, '2024-05-08': 0 }, 'sum where');
    await expectResults(q(srv, 'segmentation/average', { event: 'Signup', ...R3, on: 'properties["amount"]', where: 'properties["plan"] == "free"' }),
      { '2024-05-06': 2.5, '2024-05-07': 0.5, '2024-05-08': 0 }, 'average where');
    await expectResults(q(srv, 'segmentation/sum', { event: 'Purchase', from_date: '2024-05-06', to_date: '2024-05-07', on: 'properties["price"] * 2' }),
      { '2024-05-06': 6, '2024-05-07': 13 }, 'sum expression');
    const hours = {};
    for (let h = 0; h < 24; h++) hours[`2024-05-07 ${String(h).padStart(2, '0')}:00:00`] = 0;
    hours['2024-05-07 10:00:00'] = 4.5; hours['2024-05-07 11:00:00'] = 2;
    await expectResults(q(srv, 'segmentation/sum', { event: 'Purchase', from_date: '2024-05-07', to_date: '2024-05-07', on: 'properties["price"]', unit: 'hour' }),
      hours, 'sum hour');
  });
});

// ---- segmentation/numeric ------------------------------------------------------------

describe('segmentation/numeric', () => {
  // amounts 2000..2150: the smallest of 1, 2, 5 x 10^k giving at most 10 ranges is 20
  // (8 ranges from 2,000); non-numbers and missing values are left out
  test('ranges of a nice width, labelled with thousands separators; general and unique', async () => {
    const p = { event: 'Pay', from_date: '2024-08-01', to_date: '2024-08-02', on: 'properties["amount"]' };
    await expectOk(q(srv, 'segmentation/numeric', p, { auth: RET.api_secret }), { data: { series: ['2024-08-01', '2024-08-02'], values: {
      '2,000 - 2,020': { '2024-08-01': 2, '2024-08-02': 0 },
      '2,040 - 2,060': { '2024-08-01': 1, '2024-08-02': 0 },
      '2,140 - 2,160': { '2024-08-01': 0, '2024-08-02': 1 } } }, legend_size: 3 }, 'numeric general');
    await expectOk(q(srv, 'segmentation/numeric', { ...p, type: 'unique' }, { auth: RET.api_secret }), { data: { series: ['2024-08-01', '2024-08-02'], values: {
      '2,000 - 2,020': { '2024-08-01': 1, '2024-08-02': 0 },
      '2,040 - 2,060': { '2024-08-01': 1, '2024-08-02': 0 },
      '2,140 - 2,160': { '2024-08-01': 0, '2024-08-02': 1 } } }, legend_size: 3 }, 'numeric unique');
    await expectOk(q(srv, 'segmentation/numeric', { ...p, where: 'properties["amount"] < 2100' }, { auth: RET.api_secret }), { data: { series: ['2024-08-01', '2024-08-02'], values: {
      // min 2000, max 2050: width 10 gives 6 ranges
      '2,000 - 2,010': { '2024-08-01': 2, '2024-08-02': 0 },
      '2,050 - 2,060': { '2024-08-01': 1, '2024-08-02': 0 } } }, legend_size: 2 }, 'numeric where');
  });
});

// ---- events ------------------------------------------------------------------------

describe('events, events/names, events/properties, events/properties/values', () => {
  test('events: general / unique / average, one key per event', async () => {
    const evq = (type) => q(srv, 'events', { event: ['Signup', 'Purchase', 'Nope'], type, unit: 'day', ...R3 });
    await expectOk(evq('general'), { data: { series: S3, values: {
      Signup: { '2024-05-06': 3, '2024-05-07': 3, '2024-05-08': 1 },
      Purchase: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
      Nope: { '2024-05-06': 0, '2024-05-07': 0, '2024-05-08': 0 } } }, legend_size: 3 }, 'general');
    await expectOk(evq('unique'), { data: { series: S3, values: {
      Signup: { '2024-05-06': 2, '2024-05-07': 2, '2024-05-08': 1 },
      Purchase: { '2024-05-06': 1, '2024-05-07': 1, '2024-05-08': 0 },
      Nope: { '2024-05-06': 0, '2024-05-07': 0, '2024-05-08': 0 } } }, legend_size: 3 }, 'unique');
    await expectOk(evq('average'), { data: { series: S3, values: {
      Signup: { '2024-05-06': 1.5, '2024-05-07': 1.5, '2024-05-08': 1 },
      Purchase: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
      Nope: { '2024-05-06': 0, '2024-05-07': 0, '2024-05-08': 0 } } }, legend_size: 3 }, 'average');
  });

  test('events/properties = segmentation on the property; `values` keeps only those', async () => {
    await expectOk(q(srv, 'events/properties', { event: 'Signup', name: 'plan', type: 'general', unit: 'day', ...R3 }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 2, '2024-05-07': 0, '2024-05-08': 1 },
        free: { '2024-05-06': 1, '2024-05-07': 2, '2024-05-08': 0 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 3,
    }, 'properties');
    await expectOk(q(srv, 'events/properties', { event: 'Signup', name: 'plan', values: ['pro', 'team'], type: 'unique', unit: 'day', ...R3 }), {
      data: { series: S3, values: {
        pro: { '2024-05-06': 1, '2024-05-07': 0, '2024-05-08': 1 },
        team: { '2024-05-06': 0, '2024-05-07': 1, '2024-05-08': 0 } } }, legend_size: 2,
    }, 'properties values');
  });

  test('events/names: last 31 days, by count then name', async () => {
    const rec = { auth: REC.api_secret };
    await expectOk(q(srv, 'events/names', { type: 'general' }, rec), ['View', 'Buy', 'Click'], 'names');
    await expectOk(q(srv, 'events/names', { type: 'general', limit: 2 }, { ...rec, prefix: '/api/query' }), ['View', 'Buy'], 'names limit');
  });

  test('events/properties/values: most frequent first, lists give each element', async () => {
    const rec = { auth: REC.api_secret };
    await expectOk(q(srv, 'events/properties/values', { event: 'View', name: 'color' }, rec), ['red', 'blue'], 'View color');
    await expectOk(q(srv, 'events/properties/values', { name: 'color' }, rec), ['blue', 'red'], 'all color');
    await expectOk(q(srv, 'events/properties/values', { name: 'color', limit: 1 }, rec), ['blue'], 'color limit');
    await expectOk(q(srv, 'events/properties/values', { event: 'View', name: 'size' }, rec), ['3', '10.5'], 'size');
    await expectOk(q(srv, 'events/properties/values', { name: 'tags' }, rec), ['y', 'x'], 'tags');
  });

  test('events/properties/top: counts of events having each property', async () => {
    const res = await q(srv, 'events/properties/top', { event: 'View' }, { auth: REC.api_secret });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.color, { count: 3 });
    assert.deepEqual(res.json.size, { count: 3 });
    assert.deepEqual(res.json.tags, { count: 1 });
    assert.ok(!('$insert_id' in res.json) && !('mp_processing_time_ms' in res.json), res.text);
  });
});

// ---- funnels --------------------------------------------------------------------

const st = (count, avg, fromStart, scr, ocr, name) =>
  ({ count, avg_time: avg, avg_time_from_start: fromStart, step_conv_ratio: scr, overall_conv_ratio: ocr, goal: name, event: name });
const fun = { auth: FUN.api_secret };
const OPEN_PAY = [{ event: 'Open' }, { event: 'Pay' }];
const D10 = { from_date: '2024-06-10', to_date: '2024-06-10' };
const OP_DEFAULT = {
  steps: [st(4, null, null, 1, 1, 'Open'), st(2, 86402.5, 86402.5, 0.5, 0.5, 'Pay')],
  analysis: { completion: 2, starting_amount: 4, steps: 2, worst: 1 },
};

describe('funnels', () => {
  test('repeated steps A,B,A; 1-hour window; the 2-second rule', async () => {
    // f1 A B A (300 s, 300 s); f2 A A B: the second A is before B; f3: the last A at exactly T1+1h is out;
    // f4: B 2.000 s before A counts (-2 s), then A 3 s later; f5: B 2.001 s before A does not count.
    await expectOk(q(srv, 'funnels', { events: [{ event: 'A' }, { event: 'B' }, { event: 'A' }], from_date: '2024-06-03', to_date: '2024-06-03', length: 1, length_unit: 'hour' }, fun), {
      meta: { dates: ['2024-06-03'] },
      data: { '2024-06-03': {
        steps: [st(5, null, null, 1, 1, 'A'), st(4, 554.5, 554.5, 0.8, 0.8, 'B'), st(2, 151.5, 300.5, 0.5, 0.4, 'A')],
        analysis: { completion: 2, starting_amount: 5, steps: 3, worst: 2 } } },
    }, 'A,B,A');
  });

  test('default 30-day window, conversions after to_date, out-of-window conversions', async () => {
    // g1 converts 2 days later (after to_date); g2's Pay is 30 days 23 h later (out); g3 enters at 06-10 00:00 and
    // converts 5 s later; g4's Pay precedes its Open.
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, ...D10 }, fun),
      { meta: { dates: ['2024-06-10'] }, data: { '2024-06-10': OP_DEFAULT } }, 'default window');
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, ...D10, length: 1, length_unit: 'day' }, { ...fun, prefix: '/api/query' }), {
      meta: { dates: ['2024-06-10'] },
      data: { '2024-06-10': { steps: [st(4, null, null, 1, 1, 'Open'), st(1, 5, 5, 0.25, 0.25, 'Pay')],
        analysis: { completion: 1, starting_amount: 4, steps: 2, worst: 1 } } },
    }, '1 day');
  });

  test('per-step where and funnel-wide where', async () => {
    await expectOk(q(srv, 'funnels', { events: [{ event: 'Open', where: 'properties["src"] == "ad"' }, { event: 'Pay', where: 'properties["amount"] > 10' }], ...D10 }, fun), {
      meta: { dates: ['2024-06-10'] },
      data: { '2024-06-10': { steps: [st(3, null, null, 1, 1, 'Open'), st(1, 172800, 172800, 1 / 3, 1 / 3, 'Pay')],
        analysis: { completion: 1, starting_amount: 3, steps: 2, worst: 1 } } },
    }, 'step where');
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, ...D10, where: 'properties["plat"] != "web"' }, fun), {
      meta: { dates: ['2024-06-10'] },
      data: { '2024-06-10': { steps: [st(2, null, null, 1, 1, 'Open'), st(1, 172800, 172800, 0.5, 0.5, 'Pay')],
        analysis: { completion: 1, starting_amount: 2, steps: 2, worst: 1 } } },
    }, 'global where');
  });

  test('on: segments by the step-1 event; limit', async () => {
    const overall = [st(4, null, null, 1, 1, 'Open'), st(2, 86402.5, 86402.5, 0.5, 0.5, 'Pay')];
    const ios = [st(2, null, null, 1, 1, 'Open'), st(1, 172800, 172800, 0.5, 0.5, 'Pay')];
    const web = [st(2, null, null, 1, 1, 'Open'), st(1, 5, 5, 0.5, 0.5, 'Pay')];
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, ...D10, on: 'properties["plat"]' }, fun),
      { meta: { dates: ['2024-06-10'] }, data: { '2024-06-10': { $overall: overall, ios, web } } }, 'on');
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, ...D10, on: 'properties["plat"]', limit: 1 }, fun),
      { meta: { dates: ['2024-06-10'] }, data: { '2024-06-10': { $overall: overall, ios } } }, 'on limit 1');
  });

  const early = { steps: [st(1, null, null, 1, 1, 'Open'), st(1, 5.001, 5.001, 1, 1, 'Pay')],
    analysis: { completion: 1, starting_amount: 1, steps: 2, worst: 1 } };
  test('date buckets: interval=2', async () => {
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, from_date: '2024-06-08', to_date: '2024-06-11', interval: 2 }, fun),
      { meta: { dates: ['2024-06-08', '2024-06-10'] }, data: { '2024-06-08': early, '2024-06-10': OP_DEFAULT } }, 'interval 2');
  });

  test('date buckets: unit=week', async () => {
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, from_date: '2024-06-05', to_date: '2024-06-12', unit: 'week' }, fun),
      { meta: { dates: ['2024-06-03', '2024-06-10'] }, data: { '2024-06-03': early, '2024-06-10': OP_DEFAULT } }, 'week');
  });

  test('date buckets: days (default), a day nobody entered', async () => {
    const none = { steps: [st(0, null, null, 0, 0, 'Open'), st(0, null, null, 0, 0, 'Pay')],
      analysis: { completion: 0, starting_amount: 0, steps: 2, worst: 1 } };
    await expectOk(q(srv, 'funnels', { events: OPEN_PAY, from_date: '2024-06-09', to_date: '2024-06-11' }, fun),
      { meta: { dates: ['2024-06-09', '2024-06-10', '2024-06-11'] }, data: { '2024-06-09': early, '2024-06-10': OP_DEFAULT, '2024-06-11': none } }, 'days');
  });

  test('saved funnels: create (JSON and form), list, query by funnel_id, 404', async () => {
    const c1 = await q(srv, 'funnels/create', {}, { ...fun, method: 'POST', json: { name: 'Checkout', steps: OPEN_PAY, length: 1, length_unit: 'day' } });
    assert.equal(c1.status, 200, c1.text);
    assert.equal(c1.json.name, 'Checkout');
    assert.ok(Number.isInteger(c1.json.funnel_id), c1.text);
    const c2 = await q(srv, 'funnels/create', { name: 'Form funnel', steps: [{ event: 'A' }, { event: 'B' }], length: 1, length_unit: 'hour' }, { ...fun, method: 'POST', prefix: '/api/query' });
    assert.equal(c2.status, 200, c2.text);
    assert.equal(c2.json.name, 'Form funnel');
    assert.notEqual(c2.json.funnel_id, c1.json.funnel_id);
    const list = await q(srv, 'funnels/list', {}, fun);
    assert.equal(list.status, 200, list.text);
    assert.deepEqual([...list.json].sort((a, b) => a.funnel_id - b.funnel_id),
      [{ funnel_id: c1.json.funnel_id, name: 'Checkout' }, { funnel_id: c2.json.funnel_id, name: 'Form funnel' }].sort((a, b) => a.funnel_id - b.funnel_id));
    await expectOk(q(srv, 'funnels', { funnel_id: c1.json.funnel_id, ...D10 }, fun), {
      meta: { dates: ['2024-06-10'] },
      data: { '2024-06-10': { steps: [st(4, null, null, 1, 1, 'Open'), st(1, 5, 5, 0.25, 0.25, 'Pay')],
        analysis: { completion: 1, starting_amount: 4, steps: 2, worst: 1 } } },
    }, 'saved');
    await expectOk(q(srv, 'funnels', { funnel_id: c1.json.funnel_id, ...D10, length: 30, length_unit: 'day' }, fun),
      { meta: { dates: ['2024-06-10'] }, data: { '2024-06-10': OP_DEFAULT } }, 'saved, window overridden');
    await expectOk(q(srv, 'funnels', { funnel_id: c2.json.funnel_id, from_date: '2024-06-03', to_date: '2024-06-03' }, fun), {
      meta: { dates: ['2024-06-03'] },
      data: { '2024-06-03': { steps: [st(5, null, null, 1, 1, 'A'), st(4, 554.5, 554.5, 0.8, 0.8, 'B')],
        analysis: { completion: 4, starting_amount: 5, steps: 2, worst: 1 } } },
    }, 'saved (form)');
    // the demo project does not see the fun project's funnels
    await expectErr(q(srv, 'funnels', { funnel_id: c1.json.funnel_id, ...D10 }), 404, 'other project funnel');
    await expectErr(q(srv, 'funnels', { funnel_id: 987654, ...D10 }, fun), 404, 'unknown funnel');
  });
});

// ---- retention --------------------------------------------------------------------

const ret = { auth: RET.api_secret };
const RA = { retention_type: 'birth', born_event: 'Signup', event: 'Use', from_date: '2024-07-01', to_date: '2024-07-02', interval_count: 3 };
const RA_WANT = { '2024-07-01': { counts: [1, 1, 1, 1], first: 2 }, '2024-07-02': { counts: [1, 0, 0, 0], first: 2 } };

describe('retention', () => {
  test('birth: first-ever born event, rolling 24 h buckets, strictly after birth', async () => {
    await expectOk(q(srv, 'retention', RA, ret), RA_WANT, 'birth');
    const { retention_type, ...noType } = RA; void retention_type; // birth is the default
    await expectOk(q(srv, 'retention', noType, { ...ret, prefix: '/api/query' }), RA_WANT, 'birth by default');
  });

  test('birth: unbounded_retention, born_where, any returning event', async () => {
    await expectOk(q(srv, 'retention', { ...RA, unbounded_retention: 'true' }, ret),
      { '2024-07-01': { counts: [2, 2, 2, 1], first: 2 }, '2024-07-02': { counts: [1, 0, 0, 0], first: 2 } }, 'unbounded');
    await expectOk(q(srv, 'retention', { ...RA, born_where: 'properties["plan"] == "pro"' }, ret),
      { '2024-07-01': { counts: [0, 0, 1, 0], first: 1 }, '2024-07-02': { counts: [1, 0, 0, 0], first: 1 } }, 'born_where');
    const { event, ...anyEvent } = RA; void event;
    await expectOk(q(srv, 'retention', anyEvent, ret),
      { '2024-07-01': { counts: [1, 1, 1, 1], first: 2 }, '2024-07-02': { counts: [1, 1, 0, 0], first: 2 } }, 'any event');
  });

  test('birth: unit week (7-day intervals), empty cohorts listed', async () => {
    await expectOk(q(srv, 'retention', { ...RA, from_date: '2024-07-01', to_date: '2024-07-14', unit: 'week', interval_count: 1 }, ret),
      { '2024-07-01': { counts: [3, 0], first: 4 }, '2024-07-08': { counts: [0, 0], first: 0 } }, 'week');
  });

  test('compounded: a cohort per day of activity', async () => {
    await expectOk(q(srv, 'retention', { retention_type: 'compounded', event: 'Use', from_date: '2024-07-01', to_date: '2024-07-03', interval_count: 2 }, ret), {
      '2024-07-01': { counts: [1, 0, 1], first: 1 },
      '2024-07-02': { counts: [2, 0, 1], first: 3 },
      '2024-07-03': { counts: [0, 0, 0], first: 2 },
    }, 'compounded');
  });

  test('on: segments by the birth event', async () => {
    await expectOk(q(srv, 'retention', { ...RA, on: 'properties["plan"]' }, ret), {
      $overall: RA_WANT,
      pro: { '2024-07-01': { counts: [0, 0, 1, 0], first: 1 }, '2024-07-02': { counts: [1, 0, 0, 0], first: 1 } },
      free: { '2024-07-01': { counts: [0, 0, 0, 0], first: 0 }, '2024-07-02': { counts: [0, 0, 0, 0], first: 1 } },
    }, 'on');
  });

  test('addiction: distinct hours per day, days per week, days per month', async () => {
    const z = (n) => new Array(n).fill(0);
    await expectOk(q(srv, 'retention/addiction', { event: 'Use', from_date: '2024-07-02', to_date: '2024-07-02', unit: 'day', addiction_unit: 'hour' }, ret),
      { data: { '2024-07-02': [3, 1, ...z(22)] } }, 'day/hour');
    await expectOk(q(srv, 'retention/addiction', { event: 'Use', from_date: '2024-07-01', to_date: '2024-07-07', unit: 'week', addiction_unit: 'day' }, ret),
      { data: { '2024-07-01': [4, 2, 1, 0, 0, 0, 0] } }, 'week/day');
    await expectOk(q(srv, 'retention/addiction', { event: 'Use', from_date: '2024-07-01', to_date: '2024-07-31', unit: 'month', addiction_unit: 'day' }, { ...ret, prefix: '/api/query' }),
      { data: { '2024-07-01': [4, 2, 1, ...z(28)] } }, 'month/day');
  });

  test('addiction: a period only partly inside the range counts only the days inside it', async () => {
    // 2024-07-02 (Tue) .. 07-07: the week of Monday 07-01, without 07-01: r1 {02, 04}, r2 {03}, r3 {02}, r4 {02, 03}
    await expectOk(q(srv, 'retention/addiction', { event: 'Use', from_date: '2024-07-02', to_date: '2024-07-07', unit: 'week', addiction_unit: 'day' }, ret),
      { data: { '2024-07-01': [4, 2, 0, 0, 0, 0, 0] } }, 'partial week/day');
  });
});

// ---- export ----------------------------------------------------------------------

async function exportIds(params, opts = {}) {
  const res = await q(srv, 'export', params, opts);
  assert.equal(res.status, 200, res.text.slice(0, 500));
  return res.text.split('\n').filter(Boolean).map((l) => JSON.parse(l).properties.$insert_id);
}

describe('export', () => {
  test('where and limit', async () => {
    assert.deepEqual(await exportIds({ ...R3, event: ['Signup'], where: 'properties["plan"] == "pro"' }), ['s2', 's4', 's9']);
    assert.deepEqual(await exportIds({ ...R3, event: ['Signup'], where: 'properties["plan"] == "pro"', limit: 2 }), ['s2', 's4']);
    assert.deepEqual(await exportIds({ ...R3, event: ['Signup'], where: 'event["$time"] >= datetime("2024-05-07T00:00:00")' }), ['s5', 's6', 's7', 's9']);
    assert.deepEqual(await exportIds({ ...R3, where: 'event["name"] == "Purchase"' }, { prefix: '/api/query' }), ['p1', 'p2', 'p3']);
  });
});

// ---- errors ----------------------------------------------------------------------

describe('errors', () => {
  const SEG = { event: 'Signup', ...R3 };
  test('dates: missing, malformed, impossible, to_date < from_date -> 400', async () => {
    await expectErr(q(srv, 'segmentation', { event: 'Signup', to_date: '2024-05-08' }), 400, 'no from_date');
    await expectErr(q(srv, 'segmentation', { event: 'Signup', from_date: '2024-05-06' }), 400, 'no to_date');
    await expectErr(q(srv, 'segmentation', { ...SEG, from_date: '2024-5-6' }), 400, 'malformed');
    await expectErr(q(srv, 'segmentation', { ...SEG, from_date: '2024-02-30' }), 400, 'impossible date');
    await expectErr(q(srv, 'segmentation', { ...SEG, from_date: 'yesterday' }), 400, 'word');
    await expectErr(q(srv, 'segmentation', { ...SEG, from_date: '2024-05-08', to_date: '2024-05-06' }), 400, 'to < from');
    await expectErr(q(srv, 'funnels', { events: OPEN_PAY, from_date: '2024-06-10' }, fun), 400, 'funnel no to_date');
    await expectErr(q(srv, 'retention', { ...RA, from_date: '2024-07-03' }, ret), 400, 'retention to < from');
    await expectErr(q(srv, 'export', { from_date: '2024-05-06', to_date: '2024-13-01' }), 400, 'export bad month');
  });

  test('unknown unit / type -> 400', async () => {
    await expectErr(q(srv, 'segmentation', { ...SEG, unit: 'fortnight' }), 400, 'segmentation unit');
    await expectErr(q(srv, 'segmentation', { ...SEG, type: 'bogus' }), 400, 'segmentation type');
    await expectErr(q(srv, 'events', { event: ['Signup'], type: 'general', unit: 'year', ...R3 }), 400, 'events unit');
    await expectErr(q(srv, 'funnels', { events: OPEN_PAY, ...D10, length_unit: 'fortnight' }, fun), 400, 'funnel length_unit');
    await expectErr(q(srv, 'funnels', { events: OPEN_PAY, ...D10, unit: 'hour' }, fun), 400, 'funnel unit');
    await expectErr(q(srv, 'retention', { ...RA, unit: 'hour' }, ret), 400, 'retention unit');
    await expectErr(q(srv, 'retention', { ...RA, retention_type: 'bogus' }, ret), 400, 'retention type');
    await expectErr(q(srv, 'retention/addiction', { event: 'Use', from_date: '2024-07-01', to_date: '2024-07-07', unit: 'week', addiction_unit: 'week' }, ret), 400, 'addiction_unit');
  });

  test('missing required parameters -> 400', async () => {
    await expectErr(q(srv, 'segmentation', R3), 400, 'segmentation no event');
    await expectErr(q(srv, 'segmentation/sum', SEG), 400, 'sum no on');
    await expectErr(q(srv, 'segmentation/average', SEG), 400, 'average no on');
    await expectErr(q(srv, 'segmentation/numeric', SEG), 400, 'numeric no on');
    await expectErr(q(srv, 'events', { type: 'general', unit: 'day', ...R3 }), 400, 'events no event');
    await expectErr(q(srv, 'events', { event: ['Signup'], unit: 'day', ...R3 }), 400, 'events no type');
    await expectErr(q(srv, 'events', { event: ['Signup'], type: 'general', ...R3 }), 400, 'events no unit');
    await expectErr(q(srv, 'events/properties/values', {}), 400, 'values no name');
    await expectErr(q(srv, 'funnels', D10, fun), 400, 'funnels no funnel_id/events');
    await expectErr(q(srv, 'retention', { event: 'Use', from_date: '2024-07-01', to_date: '2024-07-02' }, ret), 400, 'birth no born_event');
  });

  test('bad JSON in event / events / steps / values -> 400', async () => {
    await expectErr(q(srv, 'events', { event: '["Signup"', type: 'general', unit: 'day', ...R3 }), 400, 'events event');
    await expectErr(q(srv, 'events', { event: '"Signup"', type: 'general', unit: 'day', ...R3 }), 400, 'events event not array');
    await expectErr(q(srv, 'export', { ...R3, event: '["Signup"' }), 400, 'export event');
    await expectErr(q(srv, 'funnels', { events: '[{"event":"Open"}', ...D10 }, fun), 400, 'funnels events');
    await expectErr(q(srv, 'funnels/create', { name: 'bad', steps: '[{"event":' }, { ...fun, method: 'POST' }), 400, 'create steps');
    await expectErr(q(srv, 'funnels/create', {}, { ...fun, method: 'POST', json: '{"name":"x","steps":[' }), 400, 'create JSON body');
    await expectErr(q(srv, 'events/properties', { event: 'Signup', name: 'plan', values: '["pro"', type: 'general', unit: 'day', ...R3 }), 400, 'values');
  });

  test('bad expressions -> 400 with the byte offset', async () => {
    // ')' is at byte 28 of: properties["plan"] == "pro" )
    await expectErr(q(srv, 'segmentation', { ...SEG, where: 'properties["plan"] == "pro" )' }), 400, 'where syntax', { msg: /\b28\b/ });
    await expectErr(q(srv, 'segmentation', { ...SEG, on: 'properties["plan"' }), 400, 'on syntax', { msg: /\b\d+\b/ });
    await expectErr(q(srv, 'funnels', { events: [{ event: 'Open', where: 'properties["src"] = "ad"' }], ...D10 }, fun), 400, 'step where', { msg: /\b\d+\b/ });
    await expectErr(q(srv, 'retention', { ...RA, born_where: '(' }, ret), 400, 'born_where', { msg: /\b\d+\b/ });
    await expectErr(q(srv, 'export', { ...R3, where: 'properties["plan"] ==' }), 400, 'export where', { msg: /\b\d+\b/ });
    // a type error during evaluation (a string operand of `and`)
    await expectErr(q(srv, 'segmentation', { ...SEG, where: 'properties["plan"] and true' }), 400, 'where type error');
  });

  test('auth: missing or wrong credentials 401, another project 403', async () => {
    await expectErr(q(srv, 'segmentation', SEG, { auth: null }), 401, 'no auth');
    await expectErr(q(srv, 'segmentation', SEG, { auth: 'wrong-secret' }), 401, 'wrong secret');
    await expectErr(q(srv, 'segmentation', SEG, { auth: { user: 'demo-token', pass: '' } }), 401, 'token is not a secret');
    await expectErr(q(srv, 'export', R3, { auth: null }), 401, 'export no auth');
    await expectErr(q(srv, 'segmentation', { ...SEG, project_id: 2 }), 403, 'project_id of another project');
    await expectErr(q(srv, 'segmentation', { ...SEG, project_id: 99 }), 403, 'unknown project_id');
    await expectOk(q(srv, 'segmentation', { ...SEG, project_id: 1 }), {
      data: { series: S3, values: { Signup: { '2024-05-06': 3, '2024-05-07': 3, '2024-05-08': 1 } } }, legend_size: 1,
    }, 'own project_id');
  });

  test('unknown path 404, wrong method 405', async () => {
    let r = await q(srv, 'segmentationx', SEG);
    assert.equal(r.status, 404, r.text);
    r = await q(srv, 'nosuch/report', SEG, { prefix: '/api/query' });
    assert.equal(r.status, 404, r.text);
    r = await q(srv, 'segmentation', SEG, { method: 'DELETE' });
    assert.equal(r.status, 405, r.text);
    r = await q(srv, 'funnels', SEG, { method: 'PUT', prefix: '/api/query' });
    assert.equal(r.status, 405, r.text);
  });
});

// ---- service accounts (own server: its config has [service_account.*] sections) ----

describe('service accounts', () => {
  const OTHER = { name: 'other', id: 2, token: 'other-token', api_secret: 'other-secret', timezone: 'UTC' };
  let sa;
  before(async () => {
    sa = await startServer({
      projects: [DEMO, OTHER],
      extra: {
        'service_account.ci': { username: 'ci', secret: 's3cret', projects: 'demo' },
        'service_account.both': { username: 'both', secret: 'b0th', projects: 'demo,other' },
      },
    });
    await importEvents(sa, [E('Hit', 'x1', '2024-05-06T12:00:00.000Z'), E('Hit', 'x2', '2024-05-06T13:00:00.000Z')]);
    await importEvents(sa, [E('Hit', 'y1', '2024-05-06T12:00:00.000Z')], { secret: OTHER.api_secret });
  });
  after(async () => { if (sa) assert.equal(await sa.stop(), 0); });
  const P = { event: 'Hit', from_date: '2024-05-06', to_date: '2024-05-06' };
  const want = (n) => ({ data: { series: ['2024-05-06'], values: { Hit: { '2024-05-06': n } } }, legend_size: 1 });

  test('granted project: with or without project_id (one grant)', async () => {
    await expectOk(q(sa, 'segmentation', { ...P, project_id: 1 }, { auth: { user: 'ci', pass: 's3cret' } }), want(2), 'ci 1');
    await expectOk(q(sa, 'segmentation', P, { auth: { user: 'ci', pass: 's3cret' }, prefix: '/api/query' }), want(2), 'ci implicit');
    await expectOk(q(sa, 'segmentation', { ...P, project_id: 2 }, { auth: { user: 'both', pass: 'b0th' } }), want(1), 'both 2');
    const ex = await q(sa, 'export', { from_date: '2024-05-06', to_date: '2024-05-06', project_id: 1 }, { auth: { user: 'ci', pass: 's3cret' } });
    assert.equal(ex.status, 200, ex.text);
    assert.equal(ex.text.split('\n').filter(Boolean).length, 2);
  });

  test('not granted 403; wrong secret or unknown user 401', async () => {
    await expectErr(q(sa, 'segmentation', { ...P, project_id: 2 }, { auth: { user: 'ci', pass: 's3cret' } }), 403, 'ci other');
    await expectErr(q(sa, 'segmentation', { ...P, project_id: 3 }, { auth: { user: 'both', pass: 'b0th' } }), 403, 'unknown project');
    await expectErr(q(sa, 'segmentation', { ...P, project_id: 1 }, { auth: { user: 'ci', pass: 'nope' } }), 401, 'bad secret');
    await expectErr(q(sa, 'segmentation', { ...P, project_id: 1 }, { auth: { user: 'nobody', pass: 's3cret' } }), 401, 'unknown user');
    await expectErr(q(sa, 'export', { from_date: '2024-05-06', to_date: '2024-05-06', project_id: 2 }, { auth: { user: 'ci', pass: 's3cret' } }), 403, 'export not granted');
  });
});
