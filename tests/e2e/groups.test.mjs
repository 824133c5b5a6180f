// Group analytics (data_group_id) and the user[] / group[] scopes of report
// expressions, small hand-computed cases.  Contract: src/q_scopes.c and
// src/query.c q_group_view (the group view: include/colstore.h),
// docs/QUERIES.md for the report semantics.  Every expected answer below was
// worked out by hand from the events listed next to it.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { request } from './lib/load.mjs';

const P = { ...DEMO, group_keys: 'company, team' };

// One /import event at an ISO time; props may set distinct_id, $device_id, $user_id.
let n = 0;
const E = (name, user, iso, props = {}) => ({
  event: name,
  properties: { time: Date.parse(iso), ...(user === undefined ? {} : { distinct_id: user }), $insert_id: `g${++n}`, ...props },
});

async function expectOk(resP, want, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 500)}`);
  assert.ok(res.json !== undefined, `${what} not JSON: ${res.text.slice(0, 500)}`);
  const d = firstDiff(res.json, want);
  assert.ok(!d, `${what} ${fmtDiff(d || {})}\n  got:  ${res.text.slice(0, 3000)}\n  want: ${JSON.stringify(want)}`);
  return res.json;
}

let srv;

// POST data=<JSON> to /engage or /groups; asserts every update was accepted.
async function ingest(path, updates) {
  const res = await request(`${srv.url}${path}?verbose=1`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'data=' + encodeURIComponent(JSON.stringify(updates)),
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text).status, 1, `${path}: ${res.text}`);
}
const up = (id, set) => ({ $token: DEMO.token, $distinct_id: id, $ignore_time: true, $set: set });
const gup = (key, id, set) => ({ $token: DEMO.token, $group_key: key, $group_id: id, $ignore_time: true, $set: set });

// ---- data ----------------------------------------------------------------------

// Visit (2024-03-04/05): group ids of every shape.
const VISITS = [
  E('Visit', 'u1', '2024-03-04T10:00:00Z', { company: 'acme', team: 'red' }),        // v1
  E('Visit', 'u2', '2024-03-04T11:00:00Z', { company: 'acme', team: 'blue' }),       // v2
  E('Visit', 'u3', '2024-03-04T12:00:00Z', { company: 7 }),                          // v3 number 7
  E('Visit', 'u4', '2024-03-04T13:00:00Z', { company: '7' }),                        // v4 string "7": the same group
  E('Visit', 'u5', '2024-03-04T14:00:00Z', { company: ['beta', 'gamma'], team: 'red' }), // v5 both beta and gamma
  E('Visit', 'u6', '2024-03-04T15:00:00Z', { team: 'green' }),                       // v6 no company
  E('Visit', 'u1', '2024-03-04T16:00:00Z', { company: 'beta' }),                     // v7
  E('Visit', 'u2', '2024-03-05T10:00:00Z', { company: 'acme' }),                     // v8
  E('Visit', 'u7', '2024-03-05T11:00:00Z', { company: ['delta', 'delta'] }),         // v9 delta once
];
// Funnel Start -> Finish (2024-03-10): acme converts across two users, beta/gamma do not.
const FUNNEL = [
  E('Start', 'f1', '2024-03-10T10:00:00Z', { company: 'acme' }),
  E('Finish', 'f2', '2024-03-10T11:00:00Z', { company: 'acme' }),
  E('Start', 'f3', '2024-03-10T10:00:00Z', { company: 'beta' }),
  E('Finish', 'f4', '2024-03-10T10:30:00Z', { company: 'gamma' }),
  E('Start', 'f5', '2024-03-10T12:00:00Z'),
  E('Finish', 'f5', '2024-03-10T12:10:00Z'),
];
// Retention Join -> Use (2024-03-20/21): acme is born by r1 and returns by r2.
const RETENTION = [
  E('Join', 'r1', '2024-03-20T10:00:00Z', { company: 'acme' }),
  E('Use', 'r2', '2024-03-21T09:00:00Z', { company: 'acme' }),
  E('Join', 'r3', '2024-03-20T12:00:00Z', { company: 'beta' }),
  E('Use', 'r4', '2024-03-21T09:00:00Z', { company: 'gamma' }),
];
// user[] (2024-03-12, simplified identity): D1's anonymous Buy is alice's once
// the event carrying both $device_id D1 and $user_id alice links them.
const USERS = [
  E('Buy', '$device:D1', '2024-03-12T09:00:00Z', { $device_id: 'D1' }),                     // b1 anonymous
  E('Buy', 'alice', '2024-03-12T10:00:00Z', { $device_id: 'D1', $user_id: 'alice' }),       // b2 links D1 -> alice
  E('Buy', 'bob', '2024-03-12T11:00:00Z'),                                                  // b3
  E('Buy', 'carol', '2024-03-12T12:00:00Z'),                                                // b4 no profile
  E('Buy', '$device:D2', '2024-03-12T13:00:00Z', { $device_id: 'D2' }),                     // b5 anonymous, never linked
  E('Ship', 'alice', '2024-03-12T14:00:00Z'),
  E('Ship', 'bob', '2024-03-12T14:00:00Z'),
  E('Ship', 'carol', '2024-03-12T14:00:00Z'),
];
// user[] fallback (2024-03-13): when the cluster's canonical id (dave, erin) has
// no profile, an event reads the profile of its own distinct_id ($device:D3,
// $device:D4 have one), whether the anonymous event is before or after the
// identified one.
const FALLBACK = [
  E('Peek', '$device:D3', '2024-03-13T09:00:00Z', { $device_id: 'D3' }),
  E('Peek', 'dave', '2024-03-13T10:00:00Z', { $device_id: 'D3', $user_id: 'dave' }),
  E('Peek', 'erin', '2024-03-13T10:00:00Z', { $device_id: 'D4', $user_id: 'erin' }),
  E('Peek', '$device:D4', '2024-03-13T11:00:00Z', { $device_id: 'D4' }),
];

before(async () => {
  srv = await startServer({ projects: [P] });
  await importEvents(srv, [...VISITS, ...FUNNEL, ...RETENTION, ...USERS, ...FALLBACK]);
  await ingest('/engage', [up('alice', { plan: 'pro' }), up('bob', { plan: 'free' }),
    up('$device:D3', { plan: 'trial' }), up('$device:D4', { plan: 'trial' })]);
  await ingest('/groups', [
    gup('company', 'acme', { industry: 'tech' }),
    gup('company', 'beta', { industry: 'retail' }),
    gup('team', 'red', { industry: 'sports' }),
  ]);
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

const V2 = { event: 'Visit', from_date: '2024-03-04', to_date: '2024-03-05' };
const S2 = ['2024-03-04', '2024-03-05'];
const seg = (key, a, b) => ({ [key]: { '2024-03-04': a, '2024-03-05': b } });
const segWant = (values) => ({ data: { series: S2, values }, legend_size: Object.keys(values).length });

// ---- data_group_id ---------------------------------------------------------------

describe('data_group_id', () => {
  test('segmentation unique counts distinct group ids; 7 and "7" are one; a list counts for each; no key: left out', async () => {
    // 03-04 company: acme (v1 v2), 7 (v3 v4), beta (v5 v7), gamma (v5) -> 4; 03-05: acme, delta -> 2
    for (const g of ['1', 'company']) {
      await expectOk(q(srv, 'segmentation', { ...V2, type: 'unique', data_group_id: g }), segWant(seg('Visit', 4, 2)), `unique by ${g}`);
    }
    // team: 03-04 red (v1 v5), blue (v2), green (v6) -> 3; 03-05 none
    for (const g of ['2', 'team']) {
      await expectOk(q(srv, 'segmentation', { ...V2, type: 'unique', data_group_id: g }), segWant(seg('Visit', 3, 0)), `team by ${g}`);
    }
    // users for contrast: 03-04 u1..u6 -> 6; 03-05 u2, u7 -> 2
    await expectOk(q(srv, 'segmentation', { ...V2, type: 'unique' }), segWant(seg('Visit', 6, 2)), 'users');
  });

  test('segmentation general on the group view: an event once per group, events without the key left out', async () => {
    // 03-04: v1 v2 v3 v4 v5(beta) v5(gamma) v7 -> 7 (v6 has no company); 03-05: v8, v9 (delta once) -> 2
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 1 }), segWant(seg('Visit', 7, 2)), 'general company');
    // unique groups per company segment: on the event's own company property
    await expectOk(q(srv, 'segmentation', { ...V2, type: 'unique', data_group_id: 'team', on: 'properties["company"]' }), segWant({
      // team red: v1 (acme), v5 (beta, gamma); blue: v2 (acme)
      ...seg('acme', 2, 0), ...seg('beta', 1, 0), ...seg('gamma', 1, 0),
    }), 'team view, on company');
  });

  test('data_group_id 0, 3, -1 (no such position) -> 400 with a message', async () => {
    for (const g of ['0', '3', '-1']) {
      const r = await q(srv, 'segmentation', { ...V2, data_group_id: g });
      assert.equal(r.status, 400, `data_group_id=${g}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.error, 'string', r.text);
      assert.match(r.json.error, /data_group_id/, r.text);
      assert.ok(r.json.error.includes(g), `the message names ${g}: ${r.text}`);
    }
    const r = await q(srv, 'funnels', { events: [{ event: 'Start' }], from_date: '2024-03-10', to_date: '2024-03-10', data_group_id: 3 });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json?.error ?? '', /data_group_id/);
    const rr = await q(srv, 'retention', { born_event: 'Join', from_date: '2024-03-20', to_date: '2024-03-20', data_group_id: 0 });
    assert.equal(rr.status, 400, rr.text);
  });

  const st = (count, avg, fromStart, scr, ocr, name) =>
    ({ count, avg_time: avg, avg_time_from_start: fromStart, step_conv_ratio: scr, overall_conv_ratio: ocr, goal: name, event: name });
  const F = { events: [{ event: 'Start' }, { event: 'Finish' }], from_date: '2024-03-10', to_date: '2024-03-10' };

  test('funnels: steps by different users of one company convert for the company', async () => {
    // acme: f1 Start 10:00, f2 Finish 11:00 -> converts (3600 s); beta: Start only; gamma: Finish only
    await expectOk(q(srv, 'funnels', { ...F, data_group_id: 'company' }), {
      meta: { dates: ['2024-03-10'] },
      data: { '2024-03-10': { steps: [st(2, null, null, 1, 1, 'Start'), st(1, 3600, 3600, 0.5, 0.5, 'Finish')],
        analysis: { completion: 1, starting_amount: 2, steps: 2, worst: 1 } } },
    }, 'company funnel');
    // users: f1, f3, f5 enter; only f5 converts (600 s)
    await expectOk(q(srv, 'funnels', F), {
      meta: { dates: ['2024-03-10'] },
      data: { '2024-03-10': { steps: [st(3, null, null, 1, 1, 'Start'), st(1, 600, 600, 1 / 3, 1 / 3, 'Finish')],
        analysis: { completion: 1, starting_amount: 3, steps: 2, worst: 1 } } },
    }, 'user funnel');
  });

  test('retention: a company born by one user and returning by another is retained', async () => {
    const R = { born_event: 'Join', event: 'Use', from_date: '2024-03-20', to_date: '2024-03-21', unit: 'day', interval_count: 1 };
    // acme born 03-20 10:00 (r1), Use 03-21 09:00 (r2): 23 h later -> bucket 0; beta never returns
    await expectOk(q(srv, 'retention', { ...R, data_group_id: 1 }), {
      '2024-03-20': { counts: [1, 0], first: 2 }, '2024-03-21': { counts: [0, 0], first: 0 },
    }, 'company retention');
    // users: r1, r3 born; neither returns
    await expectOk(q(srv, 'retention', R), {
      '2024-03-20': { counts: [0, 0], first: 2 }, '2024-03-21': { counts: [0, 0], first: 0 },
    }, 'user retention');
  });

  test('engage with data_group_id lists the group profiles (key name or position)', async () => {
    for (const g of ['company', '1']) {
      const r = await q(srv, 'engage', { data_group_id: g });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.total, 2, r.text);
      assert.deepEqual(r.json.results, [
        { $distinct_id: 'acme', $group_key: 'company', $group_id: 'acme', $properties: { industry: 'tech' } },
        { $distinct_id: 'beta', $group_key: 'company', $group_id: 'beta', $properties: { industry: 'retail' } },
      ], `data_group_id=${g}`);
    }
    const r = await q(srv, 'engage', { data_group_id: 3 });
    assert.equal(r.status, 400, r.text);
  });
});

// ---- user[] ------------------------------------------------------------------------

const B1 = { event: 'Buy', from_date: '2024-03-12', to_date: '2024-03-12' };
const one = (key, v) => ({ data: { series: ['2024-03-12'], values: { [key]: { '2024-03-12': v } } }, legend_size: 1 });

describe('user["x"]', () => {
  test('segmentation where: the anonymous event merged into alice reads her profile', async () => {
    // pro: b1 (D1 -> alice) and b2 -> 2 events, 1 user
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "pro"' }), one('Buy', 2), 'where pro');
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "pro"', type: 'unique' }), one('Buy', 1), 'where pro unique');
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "free"' }), one('Buy', 1), 'where free');
    // carol (no profile) and D2 (no profile, not linked): undefined
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'not defined(user["plan"])' }), one('Buy', 2), 'where undefined');
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "team"' }), one('Buy', 0), 'where no match');
  });

  test('no profile at the canonical id: the event\'s own distinct_id\'s profile, in either time order', async () => {
    const P13 = { event: 'Peek', from_date: '2024-03-13', to_date: '2024-03-13' };
    const one13 = (key, v) => ({ data: { series: ['2024-03-13'], values: { [key]: { '2024-03-13': v } } }, legend_size: 1 });
    // $device:D3 (09:00, before dave's event) and $device:D4 (11:00, after erin's)
    await expectOk(q(srv, 'segmentation', { ...P13, where: 'user["plan"] == "trial"' }), one13('Peek', 2), 'where trial');
    await expectOk(q(srv, 'segmentation', { ...P13, on: 'user["plan"]' }), one13('trial', 2), 'on plan');
    // dave's and erin's own events: no profile anywhere
    await expectOk(q(srv, 'segmentation', { ...P13, where: 'not defined(user["plan"])' }), one13('Peek', 2), 'undefined');
  });

  test('segmentation on: users without a profile are left out', async () => {
    await expectOk(q(srv, 'segmentation', { ...B1, on: 'user["plan"]' }), {
      data: { series: ['2024-03-12'], values: { pro: { '2024-03-12': 2 }, free: { '2024-03-12': 1 } } }, legend_size: 2,
    }, 'on plan');
    await expectOk(q(srv, 'segmentation', { ...B1, on: 'user["plan"]', type: 'unique' }), {
      data: { series: ['2024-03-12'], values: { pro: { '2024-03-12': 1 }, free: { '2024-03-12': 1 } } }, legend_size: 2,
    }, 'on plan unique');
  });

  const st = (count, avg, fromStart, scr, ocr, name) =>
    ({ count, avg_time: avg, avg_time_from_start: fromStart, step_conv_ratio: scr, overall_conv_ratio: ocr, goal: name, event: name });
  const BS = { from_date: '2024-03-12', to_date: '2024-03-12' };

  test('funnels: a step where and on', async () => {
    // alice's cluster enters at b1 (09:00, D1) and ships at 14:00: 18000 s
    await expectOk(q(srv, 'funnels', { ...BS, events: [{ event: 'Buy', where: 'user["plan"] == "pro"' }, { event: 'Ship' }] }), {
      meta: { dates: ['2024-03-12'] },
      data: { '2024-03-12': { steps: [st(1, null, null, 1, 1, 'Buy'), st(1, 18000, 18000, 1, 1, 'Ship')],
        analysis: { completion: 1, starting_amount: 1, steps: 2, worst: 1 } } },
    }, 'step where');
    // on: alice (pro) 18000 s, bob (free) 10800 s; carol (7200 s) and D2 (no Ship) only in $overall
    await expectOk(q(srv, 'funnels', { ...BS, events: [{ event: 'Buy' }, { event: 'Ship' }], on: 'user["plan"]' }), {
      meta: { dates: ['2024-03-12'] },
      data: { '2024-03-12': {
        $overall: [st(4, null, null, 1, 1, 'Buy'), st(3, 12000, 12000, 0.75, 0.75, 'Ship')],
        pro: [st(1, null, null, 1, 1, 'Buy'), st(1, 18000, 18000, 1, 1, 'Ship')],
        free: [st(1, null, null, 1, 1, 'Buy'), st(1, 10800, 10800, 1, 1, 'Ship')],
      } },
    }, 'on plan');
  });

  test('retention: where, born_where and on', async () => {
    const R = { born_event: 'Buy', event: 'Ship', from_date: '2024-03-12', to_date: '2024-03-12', interval_count: 1 };
    // born: alice's cluster (b1), bob, carol, D2; Ship 14:00 by alice, bob, carol
    await expectOk(q(srv, 'retention', R), { '2024-03-12': { counts: [3, 0], first: 4 } }, 'plain');
    await expectOk(q(srv, 'retention', { ...R, where: 'user["plan"] == "pro"' }), { '2024-03-12': { counts: [1, 0], first: 4 } }, 'where');
    await expectOk(q(srv, 'retention', { ...R, born_where: 'user["plan"] == "pro"' }), { '2024-03-12': { counts: [1, 0], first: 1 } }, 'born_where');
    await expectOk(q(srv, 'retention', { ...R, on: 'user["plan"]' }), {
      $overall: { '2024-03-12': { counts: [3, 0], first: 4 } },
      pro: { '2024-03-12': { counts: [1, 0], first: 1 } },
      free: { '2024-03-12': { counts: [1, 0], first: 1 } },
    }, 'on');
  });
});

// ---- group[] -----------------------------------------------------------------------

describe('group["x"]', () => {
  test('a user report reads the profile of the event\'s first company', async () => {
    // tech: v1 v2 (acme) | v8; retail: v5 (first of [beta, gamma]) v7 | -; v3 v4 (7), v6 (no company), v9 (delta): none
    await expectOk(q(srv, 'segmentation', { ...V2, on: 'group["industry"]' }),
      segWant({ ...seg('tech', 2, 1), ...seg('retail', 2, 0) }), 'on industry');
    // the team key is never read without data_group_id: red's "sports" does not appear
    await expectOk(q(srv, 'segmentation', { ...V2, where: 'group["industry"] == "sports"' }), segWant(seg('Visit', 0, 0)), 'no team');
  });

  test('with data_group_id the counted group\'s profile', async () => {
    // team view: red (v1, v5) -> sports; blue, green: no profile
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 'team', on: 'group["industry"]' }),
      segWant(seg('sports', 2, 0)), 'team general');
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 2, on: 'group["industry"]', type: 'unique' }),
      segWant(seg('sports', 1, 0)), 'team unique');
    // company view: acme -> tech, beta -> retail (v5 counts for beta here, and gamma has no profile)
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 'company', on: 'group["industry"]', type: 'unique' }),
      segWant({ ...seg('tech', 1, 1), ...seg('retail', 1, 0) }), 'company unique');
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 'company', where: 'group["industry"] == "retail"' }),
      segWant(seg('Visit', 2, 0)), 'company where');
  });
});

// ---- profile updates ----------------------------------------------------------------

describe('profile updates', () => {
  test('the next report sees them', async () => {
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "pro"', type: 'unique' }), one('Buy', 1), 'before');
    await ingest('/engage', [up('carol', { plan: 'pro' })]);
    // alice's cluster and carol
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "pro"', type: 'unique' }), one('Buy', 2), 'user after');
    await expectOk(q(srv, 'segmentation', { ...B1, where: 'user["plan"] == "pro"' }), one('Buy', 3), 'user after, general');
    // company "7" gets a profile: v3 (the number 7) and v4 ("7") now read it
    await ingest('/groups', [gup('company', '7', { industry: 'tech' })]);
    await expectOk(q(srv, 'segmentation', { ...V2, on: 'group["industry"]' }),
      segWant({ ...seg('tech', 4, 1), ...seg('retail', 2, 0) }), 'group after');
    await expectOk(q(srv, 'segmentation', { ...V2, data_group_id: 1, on: 'group["industry"]', type: 'unique' }),
      segWant({ ...seg('tech', 2, 1), ...seg('retail', 1, 0) }), 'group view after');
    // and a change of an existing property
    await ingest('/engage', [up('alice', { plan: 'free' })]);
    await expectOk(q(srv, 'segmentation', { ...B1, on: 'user["plan"]' }), {
      data: { series: ['2024-03-12'], values: { free: { '2024-03-12': 3 }, pro: { '2024-03-12': 1 } } }, legend_size: 2,
    }, 'alice now free');
  });
});
