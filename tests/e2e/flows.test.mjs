// flows (our extension): hand-computed cases, then a randomized differential
// test against an independent implementation in JavaScript (docs/QUERIES.md
// "flows" is the contract).
//
//   FLOWS_DIFF_SEED=1234 node --test flows.test.mjs     replay a seed
//   FLOWS_DIFF_ROUNDS=3 (default)                       generated data sets
//
// Every expected answer in the hand cases was worked out by hand from the
// events listed next to it; none is computed by code.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { mulberry32 } from './lib/rng.mjs';

const P1 = { name: 'fl1', id: 11, token: 'fl1-token', api_secret: 'fl1-secret', timezone: 'UTC' };
const P2 = { name: 'fl2', id: 12, token: 'fl2-token', api_secret: 'fl2-secret', timezone: 'UTC' };
const P3 = { name: 'fl3', id: 13, token: 'fl3-token', api_secret: 'fl3-secret', timezone: 'UTC' };
const P4 = { name: 'fl4', id: 14, token: 'fl4-token', api_secret: 'fl4-secret', timezone: 'UTC' };

const SEED = process.env.FLOWS_DIFF_SEED ? Number(process.env.FLOWS_DIFF_SEED) : (Date.now() % 1e9);
const ROUNDS = Number(process.env.FLOWS_DIFF_ROUNDS || 3);
console.log(`# flows diff seed ${SEED} (FLOWS_DIFF_SEED=${SEED} to replay)`);

// One /import event at an ISO time.
const E = (name, user, iso, props = {}) => ({
  event: name,
  properties: { time: Date.parse(iso), distinct_id: user, $insert_id: `f${++E.n}`, ...props },
});
E.n = 0;
const T = (hm, day = '2024-06-01') => `${day}T${hm}:00.000Z`;

const DAY = { from_date: '2024-06-01', to_date: '2024-06-01' };

// Node and link builders for the expected answers.
const N = (step, event, count, drop, users) => ({ id: `${step}:${event}`, step, event, count, drop_off: drop, conversion: count / users });
const L = (s, sEv, t, tEv, value) => ({ source: `${s}:${sEv}`, target: `${t}:${tEv}`, value });

async function expectOk(resP, want, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 500)}`);
  const d = firstDiff(res.json, want, { rel: 0 });
  assert.ok(!d, `${what} ${fmtDiff(d || {})}\n  got:  ${res.text.slice(0, 3000)}\n  want: ${JSON.stringify(want)}`);
  assert.deepStrictEqual(res.json, want, `${what}: not exactly equal`);
  return res.json;
}
async function expectErr(resP, msg, what = '') {
  const res = await resP;
  assert.equal(res.status, 400, `${what}: expected 400, got ${res.status}: ${res.text.slice(0, 500)}`);
  assert.equal(typeof res.json?.error, 'string', `${what}: ${res.text}`);
  assert.equal(typeof res.json.request, 'string', `${what}: ${res.text}`);
  assert.match(res.json.error, msg, `${what}: message`);
}

// ---- hand data ------------------------------------------------------------------

// fl1: forward, backward, collapse, window, hidden, $other (all on 2024-06-01).
const D1 = [
  E('Open', 'a', T('10:00')), E('View', 'a', T('10:01')), E('Cart', 'a', T('10:02')), E('Buy', 'a', T('10:03')), E('View', 'a', T('10:04')),
  E('Open', 'b', T('11:00')), E('View', 'b', T('11:05')), E('Exit', 'b', T('11:06')),
  E('Open', 'c', T('12:00')),
  E('View', 'd', T('09:00')),
  E('Open', 'e', T('10:00', '2024-05-31')), E('View', 'e', T('10:01', '2024-05-31')), // before the range
  E('Open', 'e', T('13:00')), E('Cart', 'e', T('13:01')),
  E('View', 'f', T('08:00')), E('View', 'f', T('08:01')), E('Buy', 'f', T('08:02')),
];
// fl2: where and on on the anchor; groups (company).
const acme = { company: 'acme' }, zeta = { company: 'zeta' };
const D2 = [
  E('Open', 'a', T('10:00'), { src: 'ad', ...acme }), E('View', 'a', T('10:01'), acme),
  E('Open', 'b', T('11:00'), { src: 'seo', ...acme }), E('Buy', 'b', T('11:01'), acme), E('Open', 'b', T('11:30'), { src: 'ad', ...acme }), E('Cart', 'b', T('11:31'), acme),
  E('Open', 'c', T('12:00'), zeta), E('View', 'c', T('12:05'), zeta),
  E('Open', 'd', T('13:00'), { src: 'ad' }), E('Buy', 'd', T('13:10')),
];
// fl3: paths from Signup to Buy.
const D3 = [
  E('Signup', 'a', T('10:00')), E('View', 'a', T('10:01')), E('Buy', 'a', T('10:02')),
  E('Signup', 'b', T('11:00')), E('View', 'b', T('11:01')), E('View', 'b', T('11:02')), E('Buy', 'b', T('11:03')),
  E('Signup', 'c', T('12:00')), E('Buy', 'c', T('12:01')),
  E('Signup', 'd', T('13:00')), E('View', 'd', T('13:01')),
  E('Signup', 'e', T('14:00')), E('View', 'e', T('14:01')), E('Buy', 'e', T('14:02')),
  E('Signup', 'f', T('15:00')), E('Cart', 'f', T('15:01')), E('View', 'f', T('15:02')), E('Cart', 'f', T('15:03')), E('Buy', 'f', T('15:04')),
];
// fl4 (simplified identity): an anonymous device's events join the user it
// identified as; z has two events in one millisecond.
const dev = (name, hm, props) => ({ event: name, properties: { time: Date.parse(T(hm)), distinct_id: 'ignored', $insert_id: `g${++E.n}`, ...props } });
const D4 = [
  dev('Open', '10:00', { $device_id: 'dev1' }),
  dev('View', '10:01', { $device_id: 'dev1' }),
  dev('Login', '10:02', { $device_id: 'dev1', $user_id: 'u1' }),
  dev('Buy', '10:03', { $user_id: 'u1' }),
  E('Open', 'z', '2024-06-01T12:00:00.500Z'), E('View', 'z', '2024-06-01T12:00:00.500Z'), E('Cart', 'z', '2024-06-01T12:00:00.501Z'),
];

let srv;
before(async () => {
  srv = await startServer({ projects: [P1, P2, P3, P4] });
  await importEvents(srv, D1, { secret: P1.api_secret });
  await importEvents(srv, D2, { secret: P2.api_secret });
  await importEvents(srv, D3, { secret: P3.api_secret });
  await importEvents(srv, D4, { secret: P4.api_secret });
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

const fq = (p, params, opts = {}) => q(srv, 'flows', { ...DAY, ...params }, { auth: p.api_secret, ...opts });

describe('flows: forward and backward', () => {
  test('forward, 3 steps, with drop-offs; the first anchor inside the range', async () => {
    // a: Open View Cart Buy | b: Open View Exit | c: Open | e: Open Cart (its 05-31 Open is outside)
    const u = 4;
    const want = {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 4,
      nodes: [
        N(0, 'Open', 4, 1, u),
        N(1, 'View', 2, 0, u), N(1, 'Cart', 1, 1, u),
        N(2, 'Cart', 1, 0, u), N(2, 'Exit', 1, 1, u),
        N(3, 'Buy', 1, 1, u),
      ],
      links: [
        L(0, 'Open', 1, 'View', 2), L(0, 'Open', 1, 'Cart', 1),
        L(1, 'View', 2, 'Cart', 1), L(1, 'View', 2, 'Exit', 1),
        L(2, 'Cart', 3, 'Buy', 1),
      ],
    };
    await expectOk(fq(P1, { event: 'Open', steps: 3 }), want, 'forward');
    await expectOk(fq(P1, { event: 'Open', steps: 3, mode: 'forward' }, { method: 'POST', prefix: '/api/query' }), want, 'POST');
  });

  test('backward, 2 steps', async () => {
    // a: Buy <- Cart <- View | f: Buy <- View <- View
    await expectOk(fq(P1, { event: 'Buy', steps: 2, mode: 'backward' }), {
      mode: 'backward', from_date: '2024-06-01', to_date: '2024-06-01', users: 2,
      nodes: [N(0, 'Buy', 2, 0, 2), N(1, 'Cart', 1, 0, 2), N(1, 'View', 1, 0, 2), N(2, 'View', 2, 2, 2)],
      links: [L(0, 'Buy', 1, 'Cart', 1), L(0, 'Buy', 1, 'View', 1), L(1, 'Cart', 2, 'View', 1), L(1, 'View', 2, 'View', 1)],
    });
  });

  test('collapse_repeated', async () => {
    // f: Buy <- View (the two Views are one step)
    await expectOk(fq(P1, { event: 'Buy', steps: 2, mode: 'backward', collapse_repeated: 'true' }), {
      mode: 'backward', from_date: '2024-06-01', to_date: '2024-06-01', users: 2,
      nodes: [N(0, 'Buy', 2, 0, 2), N(1, 'Cart', 1, 0, 2), N(1, 'View', 1, 1, 2), N(2, 'View', 1, 1, 2)],
      links: [L(0, 'Buy', 1, 'Cart', 1), L(0, 'Buy', 1, 'View', 1), L(1, 'Cart', 2, 'View', 1)],
    });
    // a repeat of the anchor right after it merges into the anchor (fl3 b: Signup View View Buy)
    await expectOk(fq(P3, { event: 'View', steps: 1, collapse_repeated: 1, where: 'properties["distinct_id"] == "b"' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 1,
      nodes: [N(0, 'View', 1, 0, 1), N(1, 'Buy', 1, 1, 1)],
      links: [L(0, 'View', 1, 'Buy', 1)],
    });
  });

  test('hidden_events are skipped as if absent', async () => {
    // a: Open Cart Buy | b: Open Exit | c: Open | e: Open Cart
    await expectOk(fq(P1, { event: 'Open', steps: 2, hidden_events: ['View', 'NoSuchEvent'] }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 4,
      nodes: [N(0, 'Open', 4, 1, 4), N(1, 'Cart', 2, 1, 4), N(1, 'Exit', 1, 1, 4), N(2, 'Buy', 1, 1, 4)],
      links: [L(0, 'Open', 1, 'Cart', 2), L(0, 'Open', 1, 'Exit', 1), L(1, 'Cart', 2, 'Buy', 1)],
    });
  });

  test('the conversion window cuts a step (t < anchor + window)', async () => {
    // 3 minutes: a: Open View Cart (Buy at exactly +3 min is out) | b: Open | c: Open | e: Open Cart
    await expectOk(fq(P1, { event: 'Open', steps: 3, length: 3, length_unit: 'minute' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 4,
      nodes: [N(0, 'Open', 4, 2, 4), N(1, 'Cart', 1, 1, 4), N(1, 'View', 1, 0, 4), N(2, 'Cart', 1, 1, 4)],
      links: [L(0, 'Open', 1, 'Cart', 1), L(0, 'Open', 1, 'View', 1), L(1, 'View', 2, 'Cart', 1)],
    });
  });

  test('$other with limit=1', async () => {
    // step 1: View 2 kept, Cart -> $other; step 2: Cart/Exit tie, Cart kept, Exit -> $other
    await expectOk(fq(P1, { event: 'Open', steps: 3, limit: 1 }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 4,
      nodes: [
        N(0, 'Open', 4, 1, 4),
        N(1, 'View', 2, 0, 4), N(1, '$other', 1, 1, 4),
        N(2, '$other', 1, 1, 4), N(2, 'Cart', 1, 0, 4),
        N(3, 'Buy', 1, 1, 4),
      ],
      links: [
        L(0, 'Open', 1, 'View', 2), L(0, 'Open', 1, '$other', 1),
        L(1, 'View', 2, '$other', 1), L(1, 'View', 2, 'Cart', 1),
        L(2, 'Cart', 3, 'Buy', 1),
      ],
    });
  });

  test('where on the anchor: the first anchor that passes it', async () => {
    // a: Open View | b: its 11:30 Open, then Cart | d: Open Buy
    await expectOk(fq(P2, { event: 'Open', steps: 1, where: 'properties["src"] == "ad"' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 3,
      nodes: [N(0, 'Open', 3, 0, 3), N(1, 'Buy', 1, 1, 3), N(1, 'Cart', 1, 1, 3), N(1, 'View', 1, 1, 3)],
      links: [L(0, 'Open', 1, 'Buy', 1), L(0, 'Open', 1, 'Cart', 1), L(0, 'Open', 1, 'View', 1)],
    });
  });

  test('on: per-segment flows of the anchor\'s value, top on_limit by users', async () => {
    const overall = {
      users: 4,
      nodes: [N(0, 'Open', 4, 0, 4), N(1, 'Buy', 2, 2, 4), N(1, 'View', 2, 2, 4)],
      links: [L(0, 'Open', 1, 'Buy', 2), L(0, 'Open', 1, 'View', 2)],
    };
    const ad = { // a, d
      users: 2,
      nodes: [N(0, 'Open', 2, 0, 2), N(1, 'Buy', 1, 1, 2), N(1, 'View', 1, 1, 2)],
      links: [L(0, 'Open', 1, 'Buy', 1), L(0, 'Open', 1, 'View', 1)],
    };
    const seo = { users: 1, nodes: [N(0, 'Open', 1, 0, 1), N(1, 'Buy', 1, 1, 1)], links: [L(0, 'Open', 1, 'Buy', 1)] };
    const head = { mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01' };
    const got = await expectOk(fq(P2, { event: 'Open', steps: 1, on: 'properties["src"]' }),
      { ...head, ...overall, breakdown: { ad, seo } });
    assert.deepEqual(Object.keys(got.breakdown), ['ad', 'seo']);
    await expectOk(fq(P2, { event: 'Open', steps: 1, on: 'properties["src"]', on_limit: 1 }),
      { ...head, ...overall, breakdown: { ad } });
  });

  test('data_group_id: flows of groups (a and b are acme, c is zeta, d has no company)', async () => {
    // acme: Open(a 10:00) View | zeta: Open View
    await expectOk(fq(P2, { event: 'Open', steps: 1, data_group_id: 'company' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 2,
      nodes: [N(0, 'Open', 2, 0, 2), N(1, 'View', 2, 2, 2)],
      links: [L(0, 'Open', 1, 'View', 2)],
    });
  });

  test('an anchor event nobody did: no users', async () => {
    await expectOk(fq(P1, { event: 'Nope' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 0, nodes: [], links: [],
    });
  });
});

describe('flows: paths', () => {
  test('top paths, conversion, Sankey of the top paths', async () => {
    // a, e: S V B | b: S V V B | c: S B | d: no Buy | f: S C V C B
    const u = 6;
    await expectOk(fq(P3, { mode: 'paths', start_event: 'Signup', end_event: 'Buy', limit: 3 }), {
      mode: 'paths', from_date: '2024-06-01', to_date: '2024-06-01', users: 6, converted: 5, conversion: 5 / 6,
      paths: [
        { path: ['Signup', 'View', 'Buy'], count: 2 },
        { path: ['Signup', 'Buy'], count: 1 },
        { path: ['Signup', 'Cart', 'View', 'Cart', 'Buy'], count: 1 },
      ],
      nodes: [
        N(0, 'Signup', 4, 0, u),
        N(1, 'View', 2, 0, u), N(1, 'Buy', 1, 1, u), N(1, 'Cart', 1, 0, u),
        N(2, 'Buy', 2, 2, u), N(2, 'View', 1, 0, u),
        N(3, 'Cart', 1, 0, u),
        N(4, 'Buy', 1, 1, u),
      ],
      links: [
        L(0, 'Signup', 1, 'View', 2), L(0, 'Signup', 1, 'Buy', 1), L(0, 'Signup', 1, 'Cart', 1),
        L(1, 'View', 2, 'Buy', 2), L(1, 'Cart', 2, 'View', 1), L(2, 'View', 3, 'Cart', 1), L(3, 'Cart', 4, 'Buy', 1),
      ],
    });
  });

  test('steps bounds the intermediate events; collapse_repeated', async () => {
    // steps=1: f (2 intermediate events) does not convert; b's View View is one step
    await expectOk(fq(P3, { mode: 'paths', start_event: 'Signup', end_event: 'Buy', steps: 1, collapse_repeated: true }), {
      mode: 'paths', from_date: '2024-06-01', to_date: '2024-06-01', users: 6, converted: 4, conversion: 4 / 6,
      paths: [{ path: ['Signup', 'View', 'Buy'], count: 3 }, { path: ['Signup', 'Buy'], count: 1 }],
      nodes: [N(0, 'Signup', 4, 0, 6), N(1, 'View', 3, 0, 6), N(1, 'Buy', 1, 1, 6), N(2, 'Buy', 3, 3, 6)],
      links: [L(0, 'Signup', 1, 'View', 3), L(0, 'Signup', 1, 'Buy', 1), L(1, 'View', 2, 'Buy', 3)],
    });
  });
});

describe('flows: identity', () => {
  test('an anonymous device merged into its user is one flow; same-millisecond events in storage order', async () => {
    await expectOk(fq(P4, { event: 'Open', steps: 5, where: 'properties["distinct_id"] != "z"' }), {
      mode: 'forward', from_date: '2024-06-01', to_date: '2024-06-01', users: 1,
      nodes: [N(0, 'Open', 1, 0, 1), N(1, 'View', 1, 0, 1), N(2, 'Login', 1, 0, 1), N(3, 'Buy', 1, 1, 1)],
      links: [L(0, 'Open', 1, 'View', 1), L(1, 'View', 2, 'Login', 1), L(2, 'Login', 3, 'Buy', 1)],
    });
    // Open and View of z share a millisecond: their order is the projection's
    // storage order within that millisecond (stable, but not arrival order),
    // so View is a step after Open in exactly one of the two directions.
    const z = { event: 'Open', steps: 5, where: 'properties["distinct_id"] == "z"' };
    const fw = (await fq(P4, z)).json, bw = (await fq(P4, { ...z, mode: 'backward' })).json;
    const has = (j, id) => j.nodes.some((n) => n.id === id);
    assert.equal(fw.users, 1);
    assert.equal(bw.users, 1);
    assert.ok(has(fw, '1:View') !== has(bw, '1:View'), `forward ${JSON.stringify(fw.nodes)} backward ${JSON.stringify(bw.nodes)}`);
    assert.ok(has(fw, has(fw, '1:View') ? '2:Cart' : '1:Cart'), JSON.stringify(fw.nodes));
  });
});

describe('flows: errors', () => {
  test('missing and invalid parameters answer 400', async () => {
    await expectErr(fq(P1, { event: 'Open', mode: 'sideways' }), /'mode' must be one of: forward, backward, paths/, 'mode');
    await expectErr(fq(P1, {}), /'event' is a required parameter/, 'no event');
    await expectErr(q(srv, 'flows', { event: 'Open', to_date: '2024-06-01' }, { auth: P1.api_secret }), /'from_date' is a required parameter/, 'no from_date');
    await expectErr(fq(P1, { mode: 'paths', start_event: 'Signup' }), /'end_event' is a required parameter/, 'no end_event');
    await expectErr(fq(P1, { mode: 'paths', end_event: 'Buy' }), /'start_event' is a required parameter/, 'no start_event');
    await expectErr(fq(P1, { event: 'Open', steps: 0 }), /'steps' must be an integer from 1 to 10/, 'steps 0');
    await expectErr(fq(P1, { event: 'Open', steps: 11 }), /'steps' must be an integer from 1 to 10/, 'steps 11');
    await expectErr(fq(P1, { event: 'Open', limit: 0 }), /'limit' must be an integer/, 'limit 0');
    await expectErr(fq(P1, { event: 'Open', hidden_events: '["View"' }), /'hidden_events' is not valid JSON/, 'hidden bad JSON');
    await expectErr(fq(P1, { event: 'Open', hidden_events: '"View"' }), /'hidden_events' must be a JSON array/, 'hidden not array');
    await expectErr(fq(P1, { event: 'Open', hidden_events: '[1]' }), /'hidden_events' must be a JSON array/, 'hidden not strings');
    await expectErr(fq(P1, { event: 'Open', where: 'properties["x" ==' }), /invalid expression in 'where'/, 'where');
    await expectErr(fq(P1, { event: 'Open', on: 'properties[' }), /invalid expression in 'on'/, 'on');
    await expectErr(fq(P1, { event: 'Open', length_unit: 'year' }), /'length_unit' must be one of/, 'unit');
    await expectErr(fq(P1, { event: 'Open', length: 367 }), /may not exceed 366 days/, 'window');
    await expectErr(fq(P1, { event: 'Open', collapse_repeated: 'maybe' }), /'collapse_repeated' must be true or false/, 'collapse');
    await expectErr(fq(P1, { event: 'Open', where: '"x" and true' }), /cannot evaluate expression/, 'where type error');
  });
});

// ---- differential test --------------------------------------------------------


const NAMES = ['Open', 'View', 'Cart', 'Buy', 'Search', 'Share', 'Exit', 'Login', 'Rate', 'Help'];
const WEIGHTS = [8, 10, 5, 3, 6, 2, 4, 3, 1, 1];
const D0 = Date.UTC(2024, 2, 1); // 2024-03-01

function generate(seed) {
  const r = mulberry32(seed);
  const int = (lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
  const pickName = () => {
    let t = r() * WEIGHTS.reduce((a, b) => a + b, 0);
    for (let i = 0; i < NAMES.length; i++) if ((t -= WEIGHTS[i]) < 0) return NAMES[i];
    return NAMES[NAMES.length - 1];
  };
  const events = [];
  for (let u = 0; u < 100; u++) {
    const user = `u${u}`;
    const seen = new Set();
    const sessions = int(1, 5);
    for (let s = 0; s < sessions; s++) {
      let t = D0 + int(0, 19) * 86400e3 + int(0, 86399) * 1000;
      const n = int(1, 10);
      for (let k = 0; k < n; k++) {
        t += r() < 0.2 ? int(0, 3) * 1000 : int(1, 40) * 60e3; // some same-second bursts
        while (seen.has(t)) t += 1; // one event per millisecond per user: a clear order
        seen.add(t);
        const props = {};
        const plan = r();
        if (plan < 0.3) props.plan = 'free'; else if (plan < 0.5) props.plan = 'pro'; else if (plan < 0.6) props.plan = 'team';
        if (r() < 0.7) props.n = int(1, 3);
        events.push({ name: pickName(), user, t, props });
      }
    }
  }
  return events;
}

const cmpStr = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// The reference: a direct reading of docs/QUERIES.md "flows".
function reference(events, p) {
  const mode = p.mode || 'forward';
  const from = Date.parse(p.from_date + 'T00:00:00Z'), to = Date.parse(p.to_date + 'T00:00:00Z') + 86400e3;
  const unitMs = { second: 1e3, minute: 60e3, hour: 3600e3, day: 86400e3, week: 7 * 86400e3, month: 30 * 86400e3 };
  const window = (p.length ?? 7) * unitMs[p.length_unit || 'day'];
  const steps = p.steps ?? (mode === 'paths' ? 10 : 5);
  const limit = p.limit ?? 10, onLimit = p.on_limit ?? 10;
  const hidden = new Set(p.hidden_events || []);
  const collapse = !!p.collapse_repeated;
  const anchor = mode === 'paths' ? p.start_event : p.event;
  const where = p.whereFn || (() => true);

  const byUser = new Map();
  for (const e of events) {
    if (!byUser.has(e.user)) byUser.set(e.user, []);
    byUser.get(e.user).push(e);
  }
  const groups = new Map([['', { users: 0, converted: 0, paths: [] }]]);
  const segOrder = [];
  for (const list of byUser.values()) {
    list.sort((a, b) => a.t - b.t);
    const j = list.findIndex((e) => e.name === anchor && e.t >= from && e.t < to && where(e));
    if (j < 0) continue;
    const t0 = list[j].t;
    const path = [anchor];
    let converted = false;
    const take = (name) => {
      if (hidden.has(name)) return false;
      if (collapse && path[path.length - 1] === name) return false;
      path.push(name);
      return true;
    };
    if (mode === 'forward') {
      for (let i = j + 1; i < list.length && path.length <= steps && list[i].t < t0 + window; i++) take(list[i].name);
    } else if (mode === 'backward') {
      for (let i = j - 1; i >= 0 && path.length <= steps && list[i].t > t0 - window; i--) take(list[i].name);
    } else {
      for (let i = j + 1; i < list.length && list[i].t < t0 + window; i++) {
        const name = list[i].name;
        if (name === p.end_event) { path.push(name); converted = true; break; }
        if (hidden.has(name) || (collapse && path[path.length - 1] === name)) continue;
        if (path.length - 1 === steps) break;
        path.push(name);
      }
    }
    const segs = p.onFn ? p.onFn(list[j]) : [];
    for (const g of ['', ...segs.map((s) => '=' + s)]) {
      if (!groups.has(g)) { groups.set(g, { users: 0, converted: 0, paths: [] }); segOrder.push(g); }
      const G = groups.get(g);
      G.users++;
      if (mode !== 'paths' || converted) { G.converted++; G.paths.push(path); }
    }
  }

  const pathCmp = (a, b) => {
    for (let k = 0; k < Math.min(a.length, b.length); k++) { const c = cmpStr(a[k], b[k]); if (c) return c; }
    return a.length - b.length;
  };
  function graph(paths, users, mapName) {
    const nodes = new Map(), links = new Map();
    for (const { path, count } of paths) {
      let prev = null;
      path.forEach((name0, k) => {
        const name = mapName(k, name0);
        const id = `${k}:${name}`;
        if (!nodes.has(id)) nodes.set(id, { id, step: k, event: name, count: 0, drop_off: 0 });
        const nd = nodes.get(id);
        nd.count += count;
        if (k === path.length - 1) nd.drop_off += count;
        if (prev) {
          const key = prev + '\u0000' + id;
          if (!links.has(key)) links.set(key, { source: prev, target: id, value: 0 });
          links.get(key).value += count;
        }
        prev = id;
      });
    }
    const ns = [...nodes.values()].sort((a, b) => a.step - b.step || b.count - a.count || cmpStr(a.event, b.event));
    const pos = new Map(ns.map((n, i) => [n.id, i]));
    const ls = [...links.values()].sort((a, b) => pos.get(a.source) - pos.get(b.source) || b.value - a.value || pos.get(a.target) - pos.get(b.target));
    return {
      nodes: ns.map((n) => ({ id: n.id, step: n.step, event: n.event, count: n.count, drop_off: n.drop_off, conversion: n.count / users })),
      links: ls,
    };
  }
  function flow(G) {
    const out = { users: G.users };
    if (mode === 'paths') {
      const counts = new Map();
      for (const path of G.paths) {
        const k = JSON.stringify(path);
        counts.set(k, (counts.get(k) || 0) + 1);
      }
      const top = [...counts].map(([k, count]) => ({ path: JSON.parse(k), count }))
        .sort((a, b) => b.count - a.count || pathCmp(a.path, b.path)).slice(0, limit);
      out.converted = G.converted;
      out.conversion = G.users ? G.converted / G.users : 0;
      out.paths = top;
      Object.assign(out, graph(top, G.users, (k, n) => n));
    } else {
      const perStep = []; // step -> Map(name -> users)
      for (const path of G.paths) path.forEach((n, k) => {
        perStep[k] = perStep[k] || new Map();
        perStep[k].set(n, (perStep[k].get(n) || 0) + 1);
      });
      const kept = perStep.map((m) => new Set([...m].filter(([n]) => n !== '$other')
        .sort((a, b) => b[1] - a[1] || cmpStr(a[0], b[0])).slice(0, limit).map(([n]) => n)));
      Object.assign(out, graph(G.paths.map((path) => ({ path, count: 1 })), G.users,
        (k, n) => (kept[k].has(n) ? n : '$other')));
    }
    return out;
  }
  const ans = { mode, from_date: p.from_date, to_date: p.to_date, ...flow(groups.get('')) };
  if (p.onFn) {
    const top = segOrder.map((g) => [g.slice(1), groups.get(g)])
      .sort((a, b) => b[1].users - a[1].users || cmpStr(a[0], b[0])).slice(0, onLimit);
    ans.breakdown = {};
    for (const [s, G] of top) ans.breakdown[s] = flow(G);
  }
  return ans;
}

const CASES = [
  { p: { event: 'Open' } },
  { p: { event: 'View', steps: 3, limit: 2, collapse_repeated: true, hidden_events: ['Cart'] } },
  { p: { event: 'Buy', mode: 'backward', steps: 4, length: 12, length_unit: 'hour', limit: 3 } },
  { p: { event: 'Open', steps: 10, length: 30, length_unit: 'minute', limit: 1 } },
  { p: { event: 'Search', mode: 'backward', collapse_repeated: true, hidden_events: ['View', 'Exit'], length: 2, length_unit: 'day' } },
  { p: { event: 'View', steps: 2, where: 'properties["plan"] == "pro"', on: 'properties["n"]', limit: 3, on_limit: 2 },
    whereFn: (e) => e.props.plan === 'pro', onFn: (e) => (e.props.n === undefined ? [] : [String(e.props.n)]) },
  { p: { event: 'Cart', mode: 'backward', steps: 3, on: 'properties["plan"]' },
    onFn: (e) => (e.props.plan === undefined ? [] : [e.props.plan]) },
  { p: { mode: 'paths', start_event: 'Open', end_event: 'Buy' } },
  { p: { mode: 'paths', start_event: 'View', end_event: 'Cart', steps: 3, collapse_repeated: true, hidden_events: ['Search', 'Share'], length: 1, length_unit: 'day', limit: 5, on: 'properties["plan"]' },
    onFn: (e) => (e.props.plan === undefined ? [] : [e.props.plan]) },
  { p: { mode: 'paths', start_event: 'View', end_event: 'View', steps: 2, limit: 20, length: 1, length_unit: 'week' } },
  { p: { mode: 'paths', start_event: 'Login', end_event: 'Exit', where: 'properties["n"] >= 2', limit: 4 }, whereFn: (e) => typeof e.props.n === 'number' && e.props.n >= 2 },
];

describe('flows: differential against the JavaScript reference', () => {
  for (let round = 0; round < ROUNDS; round++) {
    test(`round ${round} (seed ${SEED + round})`, async () => {
      const events = generate(SEED + round);
      const proj = { name: `diff${round}`, id: 100 + round, token: `diff${round}-token`, api_secret: `diff${round}-secret`, timezone: 'UTC' };
      const s = await startServer({ projects: [proj] });
      let code;
      try {
        await importEvents(s, events.map((e, i) => ({
          event: e.name,
          properties: { time: e.t, distinct_id: e.user, $insert_id: `d${round}-${i}`, ...e.props },
        })), { secret: proj.api_secret });
        const saw = { other: false, converted: false, segments: false, depth: 0 };
        const ranges = [{ from_date: '2024-03-05', to_date: '2024-03-12' }, { from_date: '2024-03-01', to_date: '2024-03-31' }];
        for (const range of ranges) {
          for (const c of CASES) {
            const params = { ...range, ...c.p };
            const res = await q(s, 'flows', params, { auth: proj.api_secret });
            assert.equal(res.status, 200, `${JSON.stringify(params)}: ${res.text.slice(0, 500)}`);
            const want = reference(events, { ...params, whereFn: c.whereFn, onFn: c.onFn });
            const d = firstDiff(res.json, want, { rel: 0 });
            assert.ok(!d, `seed ${SEED + round} ${JSON.stringify(params)}: ${fmtDiff(d || {})}`);
            assert.deepStrictEqual(res.json, want, `seed ${SEED + round} ${JSON.stringify(params)}: not exactly equal`);
            if (want.breakdown) assert.deepEqual(Object.keys(res.json.breakdown), Object.keys(want.breakdown), 'breakdown order');
            assert.ok(want.users > 0, `degenerate case ${JSON.stringify(params)}`);
            saw.other ||= want.nodes.some((n) => n.event === '$other');
            saw.converted ||= want.converted > 0;
            saw.segments ||= Object.keys(want.breakdown || {}).length >= 2;
            saw.depth = Math.max(saw.depth, ...want.nodes.map((n) => n.step));
          }
        }
        // the generated data reaches every feature compared above
        assert.deepEqual({ ...saw, depth: saw.depth >= 5 }, { other: true, converted: true, segments: true, depth: true });
      } finally {
        code = await s.stop();
      }
      assert.equal(code, 0, 'server exit code (sanitizer reports make it nonzero)');
    });
  }
});
