// The formulas report (ours; docs/QUERIES.md#formulas): lettered metrics,
// each counted as segmentation counts it, combined per bucket (and per `on`
// segment) by an expression.
//
// 1. Hand-computed cases over a small data set (listed next to DATA).
// 2. A randomized differential test against an independent JS computation
//    over the generated events (several formulas, units day and week, with
//    and without `on`); exact equality (floats within 1e-9 relative).
//      FORMULAS_DIFF_SEED=1234 node --test formulas.test.mjs   replay a seed
//      FORMULAS_DIFF_ROUNDS=3 (default)                        rounds (projects)
// 3. A saved formula bookmark answers what a direct call answers.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, ev, firstDiff, fmtDiff } from './lib/query.mjs';
import { rng } from './lib/rng.mjs';

const SEED = process.env.FORMULAS_DIFF_SEED ? Number(process.env.FORMULAS_DIFF_SEED) : (Date.now() % 1e9);
const ROUNDS = Number(process.env.FORMULAS_DIFF_ROUNDS || 3);
console.log(`# formulas seed ${SEED} (FORMULAS_DIFF_SEED=${SEED} to replay)`);

const T = (iso) => Date.parse(iso);

// ---- the hand-computed data set (demo project, UTC) ------------------------------------
//
// 2024-06-03 (Mon)  Visit u1 pro, u1 pro, u2 free, u3 free   Signup u1, u2
//                   Buy u1 10, u2 2.5, u3 "7" (a string: no number), u3 (no amount), '' 1
// 2024-06-04        Visit u1 pro, u4 pro                     Signup u4      Buy u4 4
// 2024-06-05        (no Visit, no Buy)                       Signup u5 team
// 2024-06-10 (Mon)  Visit u1 pro
const DATA = [
  ev('Visit', 'u1', T('2024-06-03T08:00:00Z'), { plan: 'pro' }),
  ev('Visit', 'u1', T('2024-06-03T09:00:00Z'), { plan: 'pro' }),
  ev('Visit', 'u2', T('2024-06-03T10:00:00Z'), { plan: 'free' }),
  ev('Visit', 'u3', T('2024-06-03T23:59:59.999Z'), { plan: 'free' }),
  ev('Signup', 'u1', T('2024-06-03T07:00:00Z')),
  ev('Signup', 'u2', T('2024-06-03T10:30:00Z')),
  ev('Buy', 'u1', T('2024-06-03T11:00:00Z'), { amount: 10 }),
  ev('Buy', 'u2', T('2024-06-03T12:00:00Z'), { amount: 2.5 }),
  ev('Buy', 'u3', T('2024-06-03T13:00:00Z'), { amount: '7' }),
  ev('Buy', 'u3', T('2024-06-03T14:00:00Z')),
  ev('Buy', '', T('2024-06-03T15:00:00Z'), { amount: 1 }),
  ev('Visit', 'u1', T('2024-06-04T00:00:00Z'), { plan: 'pro' }),
  ev('Visit', 'u4', T('2024-06-04T12:00:00Z'), { plan: 'pro' }),
  ev('Signup', 'u4', T('2024-06-04T12:30:00Z')),
  ev('Buy', 'u4', T('2024-06-04T13:00:00Z'), { amount: 4 }),
  ev('Signup', 'u5', T('2024-06-05T09:00:00Z'), { plan: 'team' }),
  ev('Visit', 'u1', T('2024-06-10T09:00:00Z'), { plan: 'pro' }),
];
const R3 = { from_date: '2024-06-03', to_date: '2024-06-05' };
const DAYS3 = ['2024-06-03', '2024-06-04', '2024-06-05'];
const series = (keys, vals) => Object.fromEntries(keys.map((k, i) => [k, vals[i]]));

let srv;
const DIFF_PROJECTS = Array.from({ length: ROUNDS }, (_, i) => ({
  name: `fdiff${i}`, id: 20 + i, token: `fdiff${i}-token`, api_secret: `fdiff${i}-secret`,
  timezone: ['UTC', 'Etc/GMT+5', 'Asia/Kolkata'][i % 3],
}));
before(async () => {
  srv = await startServer({ projects: [DEMO, ...DIFF_PROJECTS] });
  await importEvents(srv, DATA);
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

async function ok(params, opts) {
  const res = await q(srv, 'formulas', params, opts);
  assert.equal(res.status, 200, `${JSON.stringify(params)}: ${res.status} ${res.text.slice(0, 800)}`);
  return res.json;
}
async function bad(params, re, what = '') {
  const res = await q(srv, 'formulas', params);
  assert.equal(res.status, 400, `${what}: expected 400, got ${res.status}: ${res.text.slice(0, 600)}`);
  assert.match(res.json.error, re, what);
  return res.json.error;
}
const strip = (j) => { const { computed_at: at, ...rest } = j; assert.match(at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/); return rest; };

const UNIQ = (event, extra = {}) => ({ event, type: 'unique', ...extra });

describe('hand-computed', () => {
  test('A / B * 100 per day: activation rate, with totals over the range and the metrics', async () => {
    const r = await ok({ ...R3, formula: 'A / B * 100', metrics: { A: UNIQ('Signup'), B: UNIQ('Visit') } });
    // A: 2, 1, 1 signups (4 users over the range); B: 3, 2, 0 visitors (u1..u4: 4 over the range)
    assert.deepEqual(strip(r), {
      formula: 'A / B * 100',
      series: DAYS3,
      values: { 'A / B * 100': series(DAYS3, [2 / 3 * 100, 1 / 2 * 100, null]) },
      totals: { 'A / B * 100': 100 },
      metrics: { A: series(DAYS3, [2, 1, 1]), B: series(DAYS3, [3, 2, 0]) },
    });
    // unit defaults to day; POST with a form body answers the same
    const p = await ok({ ...R3, formula: 'A / B * 100', metrics: { A: UNIQ('Signup'), B: UNIQ('Visit') }, unit: 'day' }, { method: 'POST' });
    assert.deepEqual(strip(p), strip(r));
  });

  test('(A - B) / A, division by zero is null, an unused metric is reported', async () => {
    const r = await ok({ ...R3, formula: '(A - B) / A', metrics: { A: UNIQ('Signup'), B: UNIQ('Visit'), Z: { event: 'Buy' } } });
    assert.deepEqual(r.values, { '(A - B) / A': series(DAYS3, [-0.5, -1, 1]) });
    assert.deepEqual(r.totals, { '(A - B) / A': 0 });
    assert.deepEqual(r.metrics.Z, series(DAYS3, [5, 1, 0]));   // total: every Buy, also without amount
    const z = await ok({ ...R3, formula: 'B / (A - A) + 1', metrics: { A: UNIQ('Signup'), B: UNIQ('Visit') } });
    assert.deepEqual(z.values, { 'B / (A - A) + 1': series(DAYS3, [null, null, null]) });
    assert.deepEqual(z.totals, { 'B / (A - A) + 1': null });
    // a formula that is not a number (a comparison) is null too
    const c = await ok({ ...R3, formula: 'A > B', metrics: { A: UNIQ('Signup'), B: UNIQ('Visit') } });
    assert.deepEqual(c.values, { 'A > B': series(DAYS3, [null, null, null]) });
  });

  test('sum, average, min, max of a numeric property; non-numbers skipped', async () => {
    const metrics = {
      S: { event: 'Buy', type: 'sum', property: 'amount' }, V: { event: 'Buy', type: 'average', property: 'amount' },
      N: { event: 'Buy', type: 'min', property: 'amount' }, X: { event: 'Buy', type: 'max', property: 'amount' },
      U: UNIQ('Buy'),
    };
    // 06-03: 10, 2.5 and 1 (the '' event: a number, no user); "7" and a missing amount skipped
    const r = await ok({ ...R3, formula: 'X - N', metrics });
    assert.deepEqual(r.metrics, {
      N: series(DAYS3, [1, 4, null]), S: series(DAYS3, [13.5, 4, 0]), U: series(DAYS3, [3, 1, 0]),
      V: series(DAYS3, [4.5, 4, null]), X: series(DAYS3, [10, 4, null]),
    });
    assert.deepEqual(Object.keys(r.metrics), ['N', 'S', 'U', 'V', 'X']);
    assert.deepEqual(r.values, { 'X - N': series(DAYS3, [9, 0, null]) });
    assert.deepEqual(r.totals, { 'X - N': 9 });
    // ARPU: sum of amount over unique buyers; the range: 17.5 / 4 (u1 u2 u3 u4)
    const arpu = await ok({ ...R3, formula: 'S / U', metrics });
    assert.deepEqual(arpu.values, { 'S / U': series(DAYS3, [13.5 / 3, 4, null]) });
    assert.deepEqual(arpu.totals, { 'S / U': 17.5 / 4 });
    // average over the range is sum / count of its numbers (17.5 / 4), not a mean of daily means
    const avg = await ok({ ...R3, formula: 'V', metrics });
    assert.deepEqual(avg.totals, { V: 17.5 / 4 });
    // a property no event has: sum 0, min undefined
    const none = await ok({ ...R3, formula: 'A + 1', metrics: { A: { event: 'Buy', type: 'sum', property: 'nope' }, B: { event: 'Buy', type: 'min', property: 'nope' } } });
    assert.deepEqual(none.values, { 'A + 1': series(DAYS3, [1, 1, 1]) });
    assert.deepEqual(none.metrics.B, series(DAYS3, [null, null, null]));
    // the built-in properties["time"] (seconds) is a number too
    const t = await ok({ from_date: '2024-06-05', to_date: '2024-06-05', formula: 'A', metrics: { A: { event: 'Signup', type: 'max', property: 'time' } } });
    assert.deepEqual(t.totals, { A: T('2024-06-05T09:00:00Z') / 1000 });
  });

  test('unique over a week counts each user once; totals over the range too', async () => {
    const r = await ok({ from_date: '2024-06-03', to_date: '2024-06-10', unit: 'week', formula: 'B / A',
      metrics: { A: UNIQ('Visit'), B: { event: 'Visit', type: 'total' } } });
    // week of 06-03: u1 (3 visits on 2 days) u2 u3 u4 = 4 users, 6 visits; week of 06-10: u1, 1 visit
    assert.deepEqual(r.series, ['2024-06-03', '2024-06-10']);
    assert.deepEqual(r.metrics, { A: { '2024-06-03': 4, '2024-06-10': 1 }, B: { '2024-06-03': 6, '2024-06-10': 1 } });
    assert.deepEqual(r.values, { 'B / A': { '2024-06-03': 1.5, '2024-06-10': 1 } });
    assert.deepEqual(r.totals, { 'B / A': 7 / 4 });
    // 'general' is another name of total
    const g = await ok({ from_date: '2024-06-03', to_date: '2024-06-10', unit: 'week', formula: 'B / A',
      metrics: { A: UNIQ('Visit'), B: { event: 'Visit', type: 'general' } } });
    assert.deepEqual(strip(g), strip(r));
  });

  test('on: the formula per segment, ranked by its total, null totals last, limit', async () => {
    const metrics = { A: { event: 'Visit' }, B: UNIQ('Visit'), C: UNIQ('Signup') };
    const r = await ok({ ...R3, formula: 'A / B', on: 'properties["plan"]', metrics });
    // pro: visits 2, 2, 0 by users 1, 2, 0 (u1, u4 over the range: 4 / 2); free: 2 by 2 on 06-03;
    // team: only C (u5's Signup) has it, so A / B is 0 / 0 there
    assert.deepEqual(r.values, {
      pro: series(DAYS3, [2, 1, null]), free: series(DAYS3, [1, null, null]), team: series(DAYS3, [null, null, null]),
    });
    assert.deepEqual(Object.keys(r.values), ['pro', 'free', 'team']);
    assert.deepEqual(r.totals, { pro: 2, free: 1, team: null });
    assert.deepEqual(Object.keys(r.totals), ['pro', 'free', 'team']);
    // the metrics are not segmented: every event, with or without a plan
    assert.deepEqual(r.metrics, { A: series(DAYS3, [4, 2, 0]), B: series(DAYS3, [3, 2, 0]), C: series(DAYS3, [2, 1, 1]) });
    const one = await ok({ ...R3, formula: 'A / B', on: 'properties["plan"]', metrics, limit: 1 });
    assert.deepEqual(one.values, { pro: r.values.pro });
    assert.deepEqual(one.totals, { pro: 2 });
    // ties by key ascending
    const ties = await ok({ ...R3, formula: 'B - B', on: 'properties["plan"]', metrics });
    assert.deepEqual(Object.keys(ties.values), ['free', 'pro', 'team']);
  });

  test('where per metric', async () => {
    const r = await ok({ ...R3, formula: 'A / B * 100',
      metrics: { A: UNIQ('Visit', { where: 'properties["plan"] == "pro"' }), B: UNIQ('Visit') } });
    assert.deepEqual(r.values, { 'A / B * 100': series(DAYS3, [1 / 3 * 100, 100, null]) });
    assert.deepEqual(r.totals, { 'A / B * 100': 50 });
    assert.deepEqual(r.metrics.A, series(DAYS3, [1, 2, 0]));
    const s = await ok({ ...R3, formula: 'A', metrics: { A: { event: 'Buy', type: 'sum', property: 'amount', where: 'properties["amount"] < 5' } } });
    assert.deepEqual(s.values, { A: series(DAYS3, [3.5, 4, 0]) });
  });

  test('errors: 400 with what is wrong', async () => {
    const M = { A: UNIQ('Signup'), B: UNIQ('Visit') };
    await bad({ ...R3, formula: 'A + C', metrics: M }, /'formula' uses metric C, which 'metrics' does not define/, 'unknown letter');
    const e = await bad({ ...R3, formula: 'A * * B', metrics: M }, /invalid expression in 'formula' at position 4/, 'syntax');
    assert.match(e, /expected expression/);
    await bad({ ...R3, formula: 'A / (B', metrics: M }, /invalid expression in 'formula' at position 6/, 'unclosed');
    await bad({ ...R3, formula: 'a / B', metrics: M }, /invalid expression in 'formula' at position 0: unknown identifier 'a'/, 'lower case');
    await bad({ ...R3, formula: 'A + properties["x"]', metrics: M }, /may read only the metrics A\.\.Z, not properties\["x"\]/, 'property in formula');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 'Visit', type: 'median' } } }, /metrics\.A: 'type' must be one of: total, unique, sum, average, min, max \(got 'median'\)/, 'bad type');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 'Buy', type: 'sum' } } }, /metrics\.A: type sum needs 'property'/, 'sum without property');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 'Buy', type: 'average' } } }, /type average needs 'property'/, 'average without property');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 'Buy', type: 'unique', property: 'amount' } } }, /'property' applies only to/, 'property on unique');
    await bad({ ...R3, formula: 'A', metrics: '{"A":{"event":' }, /'metrics' must be a JSON object/, 'bad JSON');
    await bad({ ...R3, formula: 'A', metrics: '[1]' }, /'metrics' must be a JSON object/, 'array');
    await bad({ ...R3, formula: 'A', metrics: { a: UNIQ('Visit') } }, /keys must be single capital letters A\.\.Z \(got 'a'\)/, 'lower-case key');
    await bad({ ...R3, formula: 'A', metrics: { AB: UNIQ('Visit') } }, /single capital letters/, 'two-letter key');
    await bad({ ...R3, formula: 'A', metrics: '{"A":{"event":"x"},"A":{"event":"y"}}' }, /metric A is defined twice/, 'twice');
    const many = Object.fromEntries([...'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'AA'].map((k) => [k, { event: 'Visit' }]));
    await bad({ ...R3, formula: 'A', metrics: many }, /too many metrics: at most 26/, 'too many');
    await bad({ ...R3, formula: 'A', metrics: {} }, /defines no metric/, 'none');
    await bad({ ...R3, formula: 'A', metrics: { A: 'Visit' } }, /metrics\.A must be an object/, 'not an object');
    await bad({ ...R3, formula: 'A', metrics: { A: { type: 'unique' } } }, /metrics\.A: 'event' is required/, 'no event');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 'Visit', typ: 'unique' } } }, /metrics\.A: unknown field 'typ'/, 'typo');
    await bad({ ...R3, formula: 'A', metrics: { A: { event: 7 } } }, /metrics\.A: 'event' must be a string/, 'event number');
    await bad({ ...R3, formula: 'A', metrics: { A: UNIQ('Visit', { where: 'properties["x"] ==' }) } }, /invalid expression in 'metrics\.A\.where' at position/, 'bad where');
    await bad({ ...R3, formula: 'A', metrics: M, on: 'properties[' }, /invalid expression in 'on'/, 'bad on');
    await bad({ ...R3, metrics: M }, /'formula' is a required parameter/, 'no formula');
    await bad({ ...R3, formula: 'A' }, /'metrics' is a required parameter/, 'no metrics');
    await bad({ formula: 'A', metrics: M }, /'from_date' is a required parameter/, 'no dates');
    await bad({ ...R3, formula: 'A', metrics: M, unit: 'year' }, /'unit' must be one of: minute, hour, day, week, month/, 'unit');
    await bad({ ...R3, formula: 'A', metrics: M, limit: 0 }, /'limit' must be an integer/, 'limit');
    await bad({ ...R3, formula: 'A and B', metrics: M }, /cannot evaluate 'formula'/, 'type error');
  });
});

// ---- randomized differential test ---------------------------------------------------------


const DAY = 86400e3;
const OFFSET = { UTC: 0, 'Etc/GMT+5': -300, 'Asia/Kolkata': 330 };
const dayKey = (d) => new Date(d * DAY).toISOString().slice(0, 10);
const dayNum = (s) => Date.parse(s + 'T00:00:00Z') / DAY;
const weekStart = (d) => d - (((d + 3) % 7) + 7) % 7; // 1970-01-05 (day 4) was a Monday

// The expression language's arithmetic: undefined in, undefined out; x / 0 undefined.
const U = undefined;
const num = (f) => (...a) => (a.some((x) => x === U) ? U : f(...a));
const add = num((a, b) => a + b), sub = num((a, b) => a - b), mul = num((a, b) => a * b), neg = num((a) => -a);
const div = (a, b) => (a === U || b === U || b === 0 ? U : a / b);
// [text with x, y, z for letters, the same in JS]
const FORMULAS = [
  ['x / y * 100', (x, y) => mul(div(x, y), 100)],
  ['(x - y) / x', (x, y) => div(sub(x, y), x)],
  ['x + y * 2 - z', (x, y, z) => sub(add(x, mul(y, 2)), z)],
  ['x * y / (z + 1)', (x, y, z) => div(mul(x, y), add(z, 1))],
  ['-x + 3 / y', (x, y) => add(neg(x), div(3, y))],
  ['x', (x) => x],
  ['x / (y - y)', (x, y) => div(x, sub(y, y))],
  ['(x + y + z) / 3', (x, y, z) => div(add(add(x, y), z), 3)],
];
const WHERES = [
  ['properties["plan"] == "pro"', (p) => p.plan === 'pro'],
  ['properties["amount"] > 50', (p) => typeof p.amount === 'number' && p.amount > 50],
  ['defined(properties["coupon"])', (p) => p.coupon !== undefined],
  ['properties["mobile"] == true', (p) => p.mobile === true],
  ['not properties["plan"] == "free"', (p) => p.plan !== 'free'],
];
// `on` values as segment keys: strings as they are, numbers as JSON, booleans, null; a list: each distinct element
const key1 = (v) => (v === null ? 'null' : typeof v === 'string' ? v : typeof v === 'boolean' ? String(v) : typeof v === 'number' ? JSON.stringify(v) : U);
const ONS = [
  ['properties["plan"]', (p) => p.plan],
  ['properties["n"]', (p) => p.n],
  ['properties["mobile"]', (p) => p.mobile],
  ['properties["tags"]', (p) => p.tags],
];
const segKeys = (v) => {
  if (v === U) return [];
  if (Array.isArray(v)) return [...new Set(v.map(key1).filter((k) => k !== U))];
  const k = key1(v);
  return k === U ? [] : [k];
};
const TYPES = ['total', 'unique', 'sum', 'average', 'min', 'max'];
const NAMES = ['Visit', 'Signup', 'Buy', 'Share', 'Gone']; // Gone: never stored

function genEvents(R, round, fromDay, toDay, offMin) {
  const users = Array.from({ length: 30 }, (_, i) => `u${i}`);
  const out = [];
  let serial = 0;
  const start = (fromDay - 3) * DAY - offMin * 60000, span = (toDay - fromDay + 7) * DAY;
  const n = R.int(300, 900);
  for (let i = 0; i < n; i++) {
    const p = {};
    const plan = R.pick(['free', 'pro', 'team', null, U]);
    if (plan !== U) p.plan = plan;
    const a = R.int(0, 9);
    if (a < 4) p.amount = R.int(-20, 100);
    else if (a < 6) p.amount = R.int(0, 400) / 4;
    else if (a === 6) p.amount = String(R.int(0, 50));
    else if (a === 7) p.amount = R.chance(0.5);
    if (R.chance(0.8)) p.n = R.int(0, 9);
    if (R.chance(0.6)) p.mobile = R.chance(0.5);
    if (R.chance(0.3)) p.tags = R.sample(['red', 'green', 'blue'], R.int(0, 3));
    if (R.chance(0.2)) p.coupon = R.pick(['A1', 'B2']);
    const t = R.chance(0.05) ? (fromDay + R.int(0, toDay - fromDay + 1)) * DAY - offMin * 60000 + R.pick([-1, 0]) // local midnights
      : start + Math.floor(R.f() * span);
    out.push(ev(R.pick(NAMES.slice(0, 4)), R.chance(0.04) ? '' : R.pick(users), t, p, `f${round}-${++serial}`));
  }
  return out;
}

// What the report answers, from the events (docs/QUERIES.md#formulas).
function expected(events, { from, to, unit, formula, metrics, on, limit = 60 }, offMin) {
  const fromDay = dayNum(from), toDay = dayNum(to);
  const starts = [];
  if (unit === 'day') for (let d = fromDay; d <= toDay; d++) starts.push(d);
  else for (let d = weekStart(fromDay); d <= toDay; d += 7) starts.push(d);
  const nb = starts.length, RANGE = nb; // cell nb: the whole range
  const letters = Object.keys(metrics).sort();
  const fresh = () => Array.from({ length: nb + 1 }, () => ({ n: 0, users: new Set(), sum: 0, k: 0, min: U, max: U }));
  const cells = {}; // letter -> {all: cells, seg: Map(key -> cells)}
  for (const l of letters) {
    const m = metrics[l];
    const where = m.where ? WHERES.find((w) => w[0] === m.where)[1] : () => true;
    const c = cells[l] = { all: fresh(), seg: new Map() };
    for (const e of events) {
      const p = e.properties;
      if (e.event !== m.event) continue;
      const localDay = Math.floor((p.time + offMin * 60000) / DAY);
      if (localDay < fromDay || localDay > toDay) continue;
      const b = unit === 'day' ? localDay - fromDay : (weekStart(localDay) - weekStart(fromDay)) / 7;
      if (!where(p)) continue;
      const x = m.property ? p[m.property] : U;
      if (m.property && typeof x !== 'number') continue;
      const into = [c.all];
      if (on) for (const k of segKeys(ONS.find((o) => o[0] === on)[1](p))) {
        if (!c.seg.has(k)) c.seg.set(k, fresh());
        into.push(c.seg.get(k));
      }
      for (const cs of into) for (const cell of [cs[b], cs[RANGE]]) {
        cell.n++;
        if (p.distinct_id !== '') cell.users.add(p.distinct_id);
        if (m.property) {
          cell.sum += x; cell.k++;
          if (cell.min === U || x < cell.min) cell.min = x;
          if (cell.max === U || x > cell.max) cell.max = x;
        }
      }
    }
  }
  const value = (l, cell) => {
    const t = metrics[l].type ?? 'total';
    if (!cell) return t === 'total' || t === 'unique' || t === 'sum' ? 0 : U;
    switch (t) {
      case 'total': return cell.n;
      case 'unique': return cell.users.size;
      case 'sum': return cell.sum;
      case 'average': return cell.k ? cell.sum / cell.k : U;
      case 'min': return cell.min;
      case 'max': return cell.max;
    }
    throw new Error(t);
  };
  const f = FORMULAS.find((x) => x[0] === formula.tmpl);
  const evalAt = (get) => {
    const r = f[1](...formula.vars.map((l) => get(l)));
    return typeof r === 'number' && Number.isFinite(r) ? r : null;
  };
  const keys = starts.map(dayKey);
  const out = { formula: formula.text, series: keys, values: {}, totals: {}, metrics: {} };
  const row = (get) => Object.fromEntries(keys.map((k, j) => [k, evalAt((l) => get(l, j))]));
  if (!on) {
    out.values[formula.text] = row((l, j) => value(l, cells[l].all[j]));
    out.totals[formula.text] = evalAt((l) => value(l, cells[l].all[RANGE]));
  } else {
    const segs = [...new Set(letters.flatMap((l) => [...cells[l].seg.keys()]))];
    const total = new Map(segs.map((s) => [s, evalAt((l) => value(l, cells[l].seg.get(s)?.[RANGE]))]));
    segs.sort((a, b) => {
      const ta = total.get(a) ?? -Infinity, tb = total.get(b) ?? -Infinity;
      if (ta !== tb) return tb - ta;
      return Buffer.compare(Buffer.from(a), Buffer.from(b));
    });
    for (const s of segs.slice(0, limit)) {
      out.values[s] = row((l, j) => value(l, cells[l].seg.get(s)?.[j]));
      out.totals[s] = total.get(s);
    }
  }
  for (const l of letters) {
    out.metrics[l] = Object.fromEntries(keys.map((k, j) => {
      const v = value(l, cells[l].all[j]);
      return [k, v === U ? null : v];
    }));
  }
  return out;
}

function randomQuery(R, fromDay, toDay) {
  const n = R.int(1, 4);
  const letters = R.sample([...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'], n).sort();
  const metrics = {};
  for (const l of letters) {
    const type = R.pick(TYPES);
    const m = { event: R.chance(0.05) ? 'Gone' : R.pick(NAMES.slice(0, 4)) };
    if (type !== 'total' || R.chance(0.5)) m.type = type;
    if (!['total', 'unique'].includes(type)) m.property = R.pick(['amount', 'amount', 'n']);
    if (R.chance(0.35)) m.where = R.pick(WHERES)[0];
    metrics[l] = m;
  }
  const [tmpl] = R.pick(FORMULAS);
  const vars = ['x', 'y', 'z'].map(() => R.pick(letters));
  const text = tmpl.replace(/[xyz]/g, (v) => vars['xyz'.indexOf(v)]);
  return { from: dayKey(fromDay), to: dayKey(toDay), formula: { tmpl, vars, text }, metrics };
}

describe('differential', () => {
  for (let round = 0; round < ROUNDS; round++) {
    test(`round ${round} (${DIFF_PROJECTS[round].timezone})`, async () => {
      const R = rng(SEED + round * 7919);
      const proj = DIFF_PROJECTS[round];
      const offMin = OFFSET[proj.timezone];
      const fromDay = dayNum('2024-03-01') + R.int(0, 40), toDay = fromDay + R.int(6, 20);
      const events = genEvents(R, round, fromDay, toDay, offMin);
      await importEvents(srv, events, { secret: proj.api_secret });
      let asked = 0;
      const fails = [];
      for (let i = 0; i < 10; i++) {
        const base = randomQuery(R, fromDay, toDay);
        for (const unit of ['day', 'week']) {
          for (const on of [U, R.pick(ONS)[0]]) {
            const limit = on && R.chance(0.3) ? R.int(1, 3) : U;
            const Q = { ...base, unit, on, limit };
            const params = { from_date: Q.from, to_date: Q.to, unit, formula: Q.formula.text, metrics: Q.metrics, on, limit };
            const res = await q(srv, 'formulas', params, { auth: proj.api_secret });
            asked++;
            if (res.status !== 200) { fails.push(`${res.status} ${res.text.slice(0, 300)}\n  ${JSON.stringify(params)}`); continue; }
            const { computed_at: _at, ...got } = res.json;
            const want = expected(events, Q, offMin);
            const d = firstDiff(got, want, { rel: 1e-9 });
            const order = JSON.stringify(Object.keys(got.values ?? {})) === JSON.stringify(Object.keys(want.values)) &&
              JSON.stringify(Object.keys(got.totals ?? {})) === JSON.stringify(Object.keys(want.totals));
            if (d || !order) fails.push(`${d ? fmtDiff(d) : 'segment order differs: ' + JSON.stringify(Object.keys(got.values)) + ' want ' + JSON.stringify(Object.keys(want.values))}\n  ${JSON.stringify(params)}`);
          }
        }
      }
      assert.equal(fails.length, 0, `seed ${SEED}, ${fails.length} of ${asked} differ:\n${fails.slice(0, 10).join('\n')}`);
    });
  }
});

// ---- saved reports -------------------------------------------------------------------------

describe('bookmark', () => {
  test('a saved formula runs as the direct call answers', async () => {
    const params = { ...R3, unit: 'day', formula: 'A / B * 100', on: 'properties["plan"]',
      metrics: { A: { event: 'Visit' }, B: UNIQ('Visit'), C: { event: 'Buy', type: 'sum', property: 'amount' } } };
    const c = await q(srv, 'bookmarks/create', {}, { method: 'POST', json: { name: 'Visits per visitor', type: 'formula', params } });
    assert.equal(c.status, 200, c.text);
    const id = c.json.bookmark_id;
    const g = await q(srv, 'bookmarks/get', { bookmark_id: id });
    assert.deepEqual(g.json.params, params);
    const run = await q(srv, 'bookmarks/run', { bookmark_id: id });
    assert.equal(run.status, 200, run.text);
    const direct = await ok(params);
    assert.deepEqual(strip(run.json), strip(direct));
    assert.deepEqual(direct.totals, { pro: 200, free: 100 });
    // the request's range replaces the saved one
    const R2 = { from_date: '2024-06-04', to_date: '2024-06-10' };
    assert.deepEqual(strip((await q(srv, 'bookmarks/run', { bookmark_id: id, ...R2 })).json), strip(await ok({ ...params, ...R2 })));
    // a bad definition is refused with the report's own message
    const b = await q(srv, 'bookmarks/create', {}, { method: 'POST', json: { name: 'x', type: 'formula', params: { ...params, formula: 'A + Q' } } });
    assert.equal(b.status, 400);
    assert.match(b.json.error, /'formula' uses metric Q/);
  });
});
