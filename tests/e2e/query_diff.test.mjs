// Randomized differential test of the query API against an independent SQL
// reference (lib/sqlref.mjs, SQLite through the sqlite3 CLI).
//
// Each round generates events (skewed names, numeric / string / boolean /
// list / null properties, duplicates by $insert_id, empty distinct_ids,
// events 0-3 s apart for the 2-second rule and on local-midnight edges),
// imports them into a fresh project (time zones UTC, UTC-5, UTC+5:30), and
// compares every report with the reference exactly (floats to 1e-9 relative).
//
//   QUERY_DIFF_SEED=1234 node --test query_diff.test.mjs      replay a seed
//   QUERY_DIFF_ROUNDS=6 (default)                             rounds to run
//   QUERY_DIFF_VERBOSE=1                                      print every request
//   QUERY_DIFF_SHOW=25 (default)                              mismatches listed per round
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { SqlRef, onProp, numProp, typeOf, valOf, sqlStr, jpath, addDays, dayMs } from './lib/sqlref.mjs';
import { rng } from './lib/rng.mjs';

const SEED = process.env.QUERY_DIFF_SEED ? Number(process.env.QUERY_DIFF_SEED) : (Date.now() % 1e9);
const ROUNDS = Number(process.env.QUERY_DIFF_ROUNDS || 6);
const VERBOSE = !!process.env.QUERY_DIFF_VERBOSE;
const SHOW = Number(process.env.QUERY_DIFF_SHOW || 25);
console.log(`# query_diff seed ${SEED} (QUERY_DIFF_SEED=${SEED} to replay)`);


// ---- filters, segments and values: (Mixpanel expression, SQL over alias e) pairs ----

const isNum = (p) => `${typeOf(p)} IN ('integer','real')`;
const eqStr = (p, v) => `coalesce((${typeOf(p)} = 'text' AND ${valOf(p)} = ${sqlStr(v)}), 0)`;
const numCmp = (p, op, v) => `coalesce((${isNum(p)} AND ${valOf(p)} ${op} ${v}), 0)`;
const listHas = (p, v) => `(CASE ${typeOf(p)} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(e.props, ${jpath(p)}) x WHERE x.type = 'text' AND x.atom = ${sqlStr(v)})
                              WHEN 'text' THEN instr(${valOf(p)}, ${sqlStr(v)}) > 0 ELSE 0 END)`;
const listEq = (p, v) => `(CASE ${typeOf(p)} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(e.props, ${jpath(p)}) x WHERE x.type = 'text' AND x.atom = ${sqlStr(v)})
                              WHEN 'text' THEN ${valOf(p)} = ${sqlStr(v)} ELSE 0 END)`;

const WHERES = [
  ['properties["plan"] == "pro"', eqStr('plan', 'pro')],
  ['properties["plan"] != "free"', `NOT ${eqStr('plan', 'free')}`],
  ['properties["amount"] > 50', numCmp('amount', '>', 50)],
  ['properties["amount"] >= 20 and properties["amount"] < 60', `(${numCmp('amount', '>=', 20)} AND ${numCmp('amount', '<', 60)})`],
  ['properties["country"] in ["US", "FR"]', `coalesce((${typeOf('country')} = 'text' AND ${valOf('country')} IN ('US','FR')), 0)`],
  ['"red" in properties["tags"]', listHas('tags', 'red')],
  ['defined(properties["coupon"])', `(${typeOf('coupon')} IS NOT NULL)`],
  ['not defined(properties["amount"])', `(${typeOf('amount')} IS NULL)`],
  ['properties["mobile"] == true', `coalesce(${typeOf('mobile')} = 'true', 0)`],
  ['properties["plan"] == "pro" or properties["mobile"] == false', `(${eqStr('plan', 'pro')} OR coalesce(${typeOf('mobile')} = 'false', 0))`],
  ['properties["n"] % 3 == 0', `coalesce((${isNum('n')} AND ${valOf('n')} % 3 = 0), 0)`],
  ['properties["country"] == "US" and not (properties["amount"] > 50)', `(${eqStr('country', 'US')} AND NOT ${numCmp('amount', '>', 50)})`],
  ['properties["tags"] == "blue"', listEq('tags', 'blue')],
  ['properties["amount"] == 12', numCmp('amount', '=', 12)],
  ['event["name"] != "View" or properties["plan"] == "pro"', `(e.name <> 'View' OR ${eqStr('plan', 'pro')})`],
  ['event["name"] in ["Open", "Buy"] and defined(properties["country"])', `(e.name IN ('Open','Buy') AND ${typeOf('country')} IS NOT NULL)`],
  ['properties["plan"] == "team" or (properties["country"] == "IN" and properties["n"] < 5)', `(${eqStr('plan', 'team')} OR (${eqStr('country', 'IN')} AND ${numCmp('n', '<', 5)}))`],
].map(([mp, sql]) => ({ mp, sql }));

const numLabel = (sqlv) => `(CASE WHEN ${sqlv} THEN 'true' ELSE 'false' END)`;
const ONS = [
  ['properties["plan"]', onProp('plan')],
  ['properties["country"]', onProp('country')],
  ['properties["tags"]', onProp('tags')],
  ['properties["mobile"]', onProp('mobile')],
  ['properties["amount"]', onProp('amount')],
  ['properties["coupon"]', onProp('coupon')],
  ['properties["n"]', onProp('n')],
  ['properties["amount"] > 50', { label: `(CASE WHEN ${isNum('amount')} THEN ${numLabel(`${valOf('amount')} > 50`)} END)` }],
].map(([mp, sql]) => ({ mp, sql }));
// scalar-valued segments (funnels and retention: one segment per user)
const FUNNEL_ONS = ONS.filter((o) => ['properties["plan"]', 'properties["country"]', 'properties["mobile"]', 'properties["n"]', 'properties["coupon"]', 'properties["tags"]'].includes(o.mp));
const SCALAR_ONS = ONS.filter((o) => ['properties["plan"]', 'properties["country"]', 'properties["mobile"]', 'properties["n"]', 'properties["coupon"]'].includes(o.mp));

const VALUES = [
  ['properties["amount"]', numProp('amount')],
  ['number(properties["amount"])', `(CASE ${typeOf('amount')} WHEN 'integer' THEN ${valOf('amount')} WHEN 'real' THEN ${valOf('amount')}
     WHEN 'text' THEN CAST(${valOf('amount')} AS REAL) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)`],
  ['properties["amount"] * 2 + 1', `(CASE WHEN ${isNum('amount')} THEN ${valOf('amount')} * 2 + 1 END)`],
  ['properties["n"]', numProp('n')],
].map(([mp, sql]) => ({ mp, sql }));

// ---- event generation ---------------------------------------------------------------

const mondayOf = (d) => addDays(d, -((new Date(dayMs(d)).getUTCDay() + 6) % 7));

const NAMES = [['Open', 30], ['View', 25], ['Click', 20], ['Buy', 12], ['Share', 10], ['Rare', 3]];
const H = 3600e3, DAY = 86400e3;

function genEvents(R, { round, baseDay, offsetMin, days = 10 }) {
  const users = Array.from({ length: 40 }, (_, i) => `u${String(i + 1).padStart(2, '0')}`);
  const start = dayMs(baseDay) - offsetMin * 60000 - 2 * DAY; // two local days before the range
  const span = (days + 5) * DAY;
  const used = new Map(); // user -> Set(ms) (distinct times per user)
  let serial = 0;
  const props = () => {
    const p = {};
    const plan = R.weighted([['free', 50], ['pro', 25], ['team', 15], [null, 10]]);
    if (plan) p.plan = plan;
    const a = R.weighted([['int', 50], ['frac', 20], ['str', 8], ['bool', 2], ['none', 20]]);
    if (a === 'int') p.amount = R.int(0, 100);
    else if (a === 'frac') p.amount = R.int(0, 400) / 4;
    else if (a === 'str') p.amount = String(R.pick([12, 7, 55, 80]));
    else if (a === 'bool') p.amount = R.chance(0.5);
    const c = R.weighted([['US', 30], ['FR', 15], ['DE', 15], ['IN', 20], ['BR', 10], [null, 10]]);
    if (c) p.country = c;
    const t = R.f();
    if (t < 0.3) p.tags = R.sample(['red', 'green', 'blue', 'new'], R.int(0, 3));
    else if (t < 0.35) p.tags = R.pick(['redish', 'blue']);
    const m = R.f();
    if (m < 0.4) p.mobile = true; else if (m < 0.8) p.mobile = false;
    if (R.chance(0.2)) p.coupon = R.pick(['SPRING', 'VIP', 'X1']); else if (R.chance(0.05)) p.coupon = null;
    if (R.chance(0.9)) p.n = R.int(0, 9);
    return p;
  };
  const out = [];
  const add = (user, t, name) => {
    const u = user;
    const set = used.get(u) || new Set();
    used.set(u, set);
    while (set.has(t)) t += 1;
    set.add(t);
    out.push({ event: name, properties: { time: t, distinct_id: u, $insert_id: `r${round}-${(++serial).toString(36)}`, ...props() } });
  };
  for (const u of users) {
    const sessions = R.int(1, 16);
    for (let s = 0; s < sessions; s++) {
      let t = start + Math.floor(R.f() * span);
      const n = R.int(1, 14);
      for (let i = 0; i < n; i++) {
        const user = R.chance(0.03) ? '' : u;
        add(user, t, R.weighted(NAMES));
        t += R.weighted([[R.int(0, 2500), 30], [2000, 3], [2001, 3], [R.int(1, 600) * 1000, 35], [R.int(1, 20) * 3600e3 + R.int(0, 3599e3), 25], [R.int(1, 4) * DAY, 4]]);
      }
    }
  }
  // events on local-midnight edges
  for (let d = 0; d < days + 2; d++) {
    const mid = dayMs(addDays(baseDay, d)) - offsetMin * 60000;
    for (const dt of [-1, 0, 1]) add(R.pick(users), mid + dt, R.weighted(NAMES));
  }
  // events exactly k days / 1 hour (+-1 ms) after another event of the same user: retention bucket and funnel window edges
  const base = out.filter((e) => e.properties.distinct_id !== '');
  for (let i = 0; i < 120; i++) {
    const e = R.pick(base);
    const dt = R.pick([DAY, 2 * DAY, 3 * DAY, 7 * DAY, H]) + R.pick([-1, 0, 0, 1]);
    add(e.properties.distinct_id, e.properties.time + dt, R.weighted(NAMES));
  }
  // exact duplicates (same $insert_id), some in later chunks
  const dups = Math.floor(out.length * 0.03);
  for (let i = 0; i < dups; i++) {
    const i0 = R.int(0, out.length - 1);
    const copy = JSON.parse(JSON.stringify(out[i0]));
    if (R.chance(0.3)) Object.assign(copy.properties, { plan: R.pick(['free', 'pro', 'team']), amount: R.int(0, 100) });
    out.splice(R.int(i0 + 1, out.length), 0, copy); // after the original: the last copy's properties count
  }
  return out;
}

// ---- the rounds ---------------------------------------------------------------------

const ZONES = [
  { timezone: 'UTC', offsetMin: 0 },
  { timezone: 'Etc/GMT+5', offsetMin: -300 },
  { timezone: 'Asia/Kolkata', offsetMin: 330 },
];
const PROJECTS = Array.from({ length: ROUNDS }, (_, i) => ({
  name: `diff${i}`, id: 10 + i, token: `diff${i}-token`, api_secret: `diff${i}-secret`, timezone: ZONES[i % ZONES.length].timezone,
}));

let srv;
before(async () => { srv = await startServer({ projects: PROJECTS }); });
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

const WINDOWS = [
  [{}, 30 * DAY], [{ length: 1, length_unit: 'hour' }, H], [{ length: 30, length_unit: 'minute' }, 30 * 60e3],
  [{ length: 1, length_unit: 'day' }, DAY], [{ length: 2, length_unit: 'day' }, 2 * DAY], [{ length: 90, length_unit: 'second' }, 90e3],
  [{ length: 1, length_unit: 'week' }, 7 * DAY],
];

for (let round = 0; round < ROUNDS; round++) {
  test(`round ${round} (seed ${SEED}, timezone ${PROJECTS[round].timezone})`, async (t) => {
    const R = rng(SEED * 7919 + round);
    const zone = ZONES[round % ZONES.length];
    const proj = PROJECTS[round];
    const baseDay = addDays('2023-01-02', R.int(0, 800));
    const events = genEvents(R, { round, baseDay, offsetMin: zone.offsetMin });
    await importEvents(srv, events, { secret: proj.api_secret });
    const ref = new SqlRef(events, { offsetMin: zone.offsetMin });
    const failures = [];
    let nq = 0;
    const names = NAMES.map((n) => n[0]);
    const range = () => {
      const from = addDays(baseDay, R.int(0, 3));
      return { from, to: addDays(from, R.int(0, 6)) };
    };
    const maybe = (p, list) => (R.chance(p) ? R.pick(list) : null);

    async function check(name, params, want, { pick = (j) => j } = {}) {
      nq++;
      const res = await q(srv, name, params, { auth: proj.api_secret, prefix: R.chance(0.5) ? '/api/2.0' : '/api/query' });
      const shown = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== null && v !== undefined));
      const req = `${name} ${JSON.stringify(shown)}`;
      if (VERBOSE) console.log('#', req, '\n#   want', JSON.stringify(want).slice(0, 400));
      if (res.status !== 200 || res.json === undefined) {
        failures.push(`${req}\n    status ${res.status}: ${res.text.slice(0, 300)}`);
        return;
      }
      const d = firstDiff(pick(res.json), want);
      if (d) failures.push(`${req}\n    ${fmtDiff(d)}`);
    }

    try {
      // segmentation: every type, with and without where / on / limit / interval
      for (const type of ['general', 'unique', 'average']) {
        for (let i = 0; i < 16; i++) {
          let { from, to } = range();
          const event = R.weighted(NAMES);
          const where = i === 0 ? null : maybe(0.5, WHERES);
          const on = i === 0 ? null : maybe(0.7, ONS);
          const limit = on ? maybe(0.4, [1, 2, 3, 5, 10]) : null;
          const interval = R.chance(0.15) ? R.int(2, 4) : null;
          const unit = interval ? null : R.weighted([['day', 5], ['hour', 2], ['week', 2], ['month', 1], ['minute', 0.5]]);
          if (unit === 'minute') to = from;
          await check('segmentation', { event, from_date: from, to_date: to, type, unit, interval, where: where?.mp, on: on?.mp, limit },
            ref.segmentation({ event, from, to, type, unit: unit || 'day', interval, where: where?.sql, on: on?.sql, limit: limit ?? 60 }));
        }
      }
      // segmentation/sum and /average
      for (const kind of ['sum', 'average']) {
        for (let i = 0; i < 6; i++) {
          const { from, to } = range();
          const event = R.weighted(NAMES);
          const value = VALUES[i % VALUES.length];
          const where = maybe(0.4, WHERES);
          const unit = R.pick(['day', 'hour']);
          await check(`segmentation/${kind}`, { event, from_date: from, to_date: to, unit, on: value.mp, where: where?.mp },
            ref.numeric(kind, { event, from, to, unit, where: where?.sql, value: value.sql }).results,
            { pick: (j) => (j.status === 'ok' ? j.results : j) });
        }
      }
      // events
      for (const type of ['general', 'unique', 'average', 'general', 'unique', 'average']) {
        const { from, to } = range();
        const evs = [...R.sample(names, R.int(1, 4)), ...(R.chance(0.3) ? ['Missing'] : [])];
        const unit = R.pick(['day', 'week', 'hour']);
        await check('events', { event: evs, type, unit, from_date: from, to_date: to },
          ref.events({ events: evs, from, to, unit, type }));
      }
      // events/properties
      for (let i = 0; i < 4; i++) {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        const prop = R.pick(['plan', 'country', 'tags']);
        const type = R.pick(['general', 'unique']);
        const values = R.chance(0.4) ? R.sample({ plan: ['free', 'pro', 'team'], country: ['US', 'FR', 'IN'], tags: ['red', 'blue', 'new'] }[prop], 2) : null;
        await check('events/properties', { event, name: prop, values, type, unit: 'day', from_date: from, to_date: to },
          ref.segmentation({ event, from, to, type, on: onProp(prop), values, limit: 255 }));
      }
      // funnels
      for (let i = 0; i < 40; i++) {
        const { from, to } = range();
        const nsteps = R.int(2, 4);
        const steps = [];
        for (let s = 0; s < nsteps; s++) {
          const ev = s > 0 && R.chance(0.25) ? R.pick(steps).event : R.weighted(NAMES.slice(0, 5));
          const w = maybe(0.25, WHERES);
          steps.push(w ? { event: ev, where: w } : { event: ev });
        }
        const [win, windowMs] = R.pick(WINDOWS);
        const bucket = R.weighted([[{}, 4], [{ unit: 'day' }, 3], [{ interval: R.int(2, 4) }, 2], [{ unit: 'week' }, 2], [{ unit: 'month' }, 1]]);
        const where = maybe(0.25, WHERES);
        const on = maybe(0.3, FUNNEL_ONS);
        const limit = on ? maybe(0.3, [1, 2, 3]) : null;
        await check('funnels', {
          events: steps.map((s) => (s.where ? { event: s.event, where: s.where.mp } : { event: s.event })),
          from_date: from, to_date: to, ...win, ...bucket, where: where?.mp, on: on?.mp, limit,
        }, ref.funnel({ steps: steps.map((s) => ({ event: s.event, where: s.where?.sql })), from, to, windowMs,
          interval: bucket.interval || 1, unit: bucket.unit, where: where?.sql, on: on?.sql, limit: limit ?? 255 }));
      }
      // retention
      for (let i = 0; i < 30; i++) {
        const { from, to } = range();
        const type = i % 3 === 2 ? 'compounded' : 'birth';
        const bornEvent = R.weighted(NAMES.slice(0, 5));
        const event = R.chance(0.8) ? R.weighted(NAMES.slice(0, 5)) : null;
        const bornWhere = type === 'birth' ? maybe(0.3, WHERES) : null;
        const where = maybe(0.2, WHERES);
        const unit = R.weighted([['day', 6], ['week', 3], ['month', 1]]);
        const interval = R.chance(0.3) ? 2 : 1;
        const intervalCount = R.int(1, 5);
        const unbounded = R.chance(0.3);
        const on = maybe(0.25, SCALAR_ONS);
        const limit = on ? maybe(0.3, [1, 2]) : null;
        await check('retention', {
          retention_type: type, born_event: type === 'birth' ? bornEvent : null, event, born_where: bornWhere?.mp, where: where?.mp,
          from_date: from, to_date: to, unit, interval: interval === 1 ? null : interval, interval_count: intervalCount,
          unbounded_retention: unbounded ? 'true' : null, on: on?.mp, limit,
        }, ref.retention({ type, bornEvent, bornWhere: bornWhere?.sql, event, where: where?.sql, from, to, unit, interval,
          intervalCount, unbounded, on: on?.sql, limit: limit ?? 255 }));
      }
      // retention/addiction
      for (const [unit, addictionUnit] of [['day', 'hour'], ['week', 'day'], ['week', 'hour'], ['month', 'day'], ['month', 'hour'], ['day', 'hour'], ['week', 'day'], ['day', 'hour']]) {
        let { from, to } = range();
        if (R.chance(0.5)) { // whole periods (the partial-period rule aside)
          if (unit === 'week') { from = mondayOf(from); to = addDays(from, 6); }
          if (unit === 'month') { from = from.slice(0, 8) + '01'; to = addDays(addDays(from, 31).slice(0, 8) + '01', -1); }
        }
        const event = R.weighted(NAMES.slice(0, 5));
        const where = maybe(0.3, WHERES);
        await check('retention/addiction', { event, where: where?.mp, from_date: from, to_date: to, unit, addiction_unit: addictionUnit },
          ref.addiction({ event, where: where?.sql, from, to, unit, addictionUnit }));
      }
    } finally {
      ref.close();
    }
    t.diagnostic(`${events.length} events sent, ${nq} reports compared, ${failures.length} mismatches`);
    if (failures.length) {
      const cats = {};
      for (const f of failures) {
        const m = f.match(/^(\S+) [\s\S]*?\n\s+(?:at (\S+?):|status (\d+))/);
        const key = !m ? '?' : `${m[1]} ${m[2] ? m[2].replace(/\["\d{4}-\d\d-\d\d[^"]*"\]/g, '[<date>]').replace(/\["values"\]\["[^"]*"\]/, '["values"][<seg>]') : 'status ' + m[3]}`;
        cats[key] = (cats[key] || 0) + 1;
      }
      for (const [k, n] of Object.entries(cats).sort((a, b) => b[1] - a[1])) t.diagnostic(`mismatch category: ${n} x ${k}`);
      const shown = failures.slice(0, SHOW).map((f) => '  ' + f).join('\n');
      assert.fail(`seed ${SEED} round ${round} (${proj.timezone}, base ${baseDay}): ${failures.length}/${nq} reports differ from the SQL reference ` +
        `(QUERY_DIFF_SEED=${SEED} to replay):\n${shown}${failures.length > SHOW ? `\n  ... and ${failures.length - SHOW} more` : ''}`);
    }
  });
}
