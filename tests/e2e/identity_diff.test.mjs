// Randomized differential test of identity resolution (ID merge) against an
// independent reference written here in JS.
//
// One data set (seeded) of a few thousand events: most people browse
// anonymously on one or two devices first and log in later (mixpanel-browser
// style payloads with $device_id / $user_id and $identify events), some
// devices are shared, some people only exist server-side, some get an email
// alias ($create_alias, sometimes one already taken), some clusters are joined
// with $merge (through /import, and through /track where it must be ignored),
// some anonymous ids are not GUIDs, some identity events carry a
// $failure_reason, a few events have distinct_id "".  The events arrive out of
// order (time-ordered chunks sent in a shuffled order, shuffled inside, split
// over /import and /track).  The same data goes to two projects of one server:
// identity = simplified and identity = original.
//
// For each mode the reference resolves every stored distinct_id by the rules
// (see resolveSimplified / resolveOriginal), loads the events with resolved
// ids into SQLite (lib/sqlref.mjs, the query engine's reference) and compares
// segmentation (unique, day/week, with `on`), events, events/properties,
// retention/addiction, funnels and retention exactly; then it compares
// GET /api/2.0/identity/graph for a sample of ids and of link outcomes.
//
//   IDENTITY_DIFF_SEED=1234 node --test identity_diff.test.mjs     replay a seed
//   IDENTITY_DIFF_VERBOSE=1                                        print every request
//   IDENTITY_DIFF_SHOW=15 (default)                                mismatches listed
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { postTrack } from './lib/load.mjs';
import { SqlRef, onProp, typeOf, valOf, sqlStr, addDays, dayMs } from './lib/sqlref.mjs';
import { rng } from './lib/rng.mjs';

const SEED = process.env.IDENTITY_DIFF_SEED ? Number(process.env.IDENTITY_DIFF_SEED) : (Date.now() % 1e9);
const VERBOSE = !!process.env.IDENTITY_DIFF_VERBOSE;
const SHOW = Number(process.env.IDENTITY_DIFF_SHOW || 15);
console.log(`# identity_diff seed ${SEED} (IDENTITY_DIFF_SEED=${SEED} to replay)`);

const H = 3600e3, DAY = 86400e3;
const SIMP = { name: 'idsimp', id: 201, token: 'idsimp-token', api_secret: 'idsimp-secret', timezone: 'UTC', identity: 'simplified', offsetMin: 0 };
const ORIG = { name: 'idorig', id: 202, token: 'idorig-token', api_secret: 'idorig-secret', timezone: 'Etc/GMT+5', identity: 'original', offsetMin: -300 };
const IDENTITY_EVENTS = new Set(['$identify', '$create_alias', '$merge']);
const LIMIT = 500;

// ---- seeded PRNG ----------------------------------------------------------------------


// ---- data generation ------------------------------------------------------------------

const NAMES = [['Open', 30], ['View', 30], ['Click', 20], ['Buy', 10], ['Share', 8]];
const DAYS = 12;

// -> { baseDay, items: [{ ev: {event, properties}, via: 'import'|'track' }] }  (no tokens yet)
function generate(R) {
  const baseDay = addDays('2024-01-01', R.int(0, 300));
  const start = dayMs(baseDay) - DAY;
  const span = (DAYS + 2) * DAY;
  const usedT = new Set();
  const uniq = (t) => { t = Math.round(t); while (usedT.has(t)) t++; usedT.add(t); return t; };
  const hex = (n) => Array.from({ length: n }, () => '0123456789abcdef'[R.int(0, 15)]).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${R.pick(['8', '9', 'a', 'b'])}${hex(3)}-${hex(12)}`;
  const items = [];
  let serial = 0;
  const push = (name, t, props, via = 'import') => {
    const ev = { event: name, properties: { time: uniq(t), $insert_id: `d${(++serial).toString(36)}`, ...props } };
    items.push({ ev, via });
    return ev;
  };
  const randVia = () => (R.chance(0.3) ? 'track' : 'import');
  const gap = () => R.weighted([[R.int(1, 120) * 1000, 40], [R.int(2, 60) * 60e3, 35], [R.int(1, 20) * H, 20], [R.int(1, 3) * DAY, 5]]);
  const pool = [];   // devices seen so far (shared devices are picked from here)
  const users = [];  // user ids
  const emails = []; // aliases created
  const NPEOPLE = R.int(110, 140);
  for (let p = 0; p < NPEOPLE; p++) {
    const U = `u${p}`;
    users.push(U);
    const plan = R.weighted([['free', 5], ['pro', 3], ['team', 2]]);
    const kind = R.weighted([['identifies', 70], ['anonymous', 15], ['server', 15]]);
    const devices = [];
    const ndev = kind === 'server' ? 0 : R.weighted([[1, 6], [2, 4]]);
    for (let d = 0; d < ndev; d++) {
      if (pool.length && R.chance(0.1)) { devices.push(R.pick(pool)); continue; } // a shared device
      const D = R.chance(0.08) ? `anon-${p}-${d}-${hex(6)}` : uuid(); // non-GUID (legacy) anonymous ids
      pool.push(D);
      devices.push(D);
    }
    const idT = new Map();
    devices.forEach((D, d) => idT.set(D, kind === 'identifies' && (d === 0 || R.chance(0.6)) ? start + R.f() * span : Infinity));
    let email = null;
    if (kind !== 'anonymous' && R.chance(0.18)) {
      // usually a new address; sometimes one already taken by someone else
      email = emails.length && R.chance(0.15) ? R.pick(emails) : `u${p}@mail.test`;
      if (!emails.includes(email)) emails.push(email);
      push('$create_alias', start + R.f() * span, { distinct_id: U, alias: email }, randVia());
    }
    const sessions = R.int(1, 8);
    for (let s = 0; s < sessions; s++) {
      let t = start + R.f() * span;
      const D = devices.length ? R.pick(devices) : null;
      const n = R.int(1, 8);
      for (let i = 0; i < n; i++) {
        const name = R.weighted(NAMES);
        const props = { plan, country: R.pick(['US', 'FR', 'DE', 'IN']) };
        if (R.chance(0.01)) {
          push(name, t, { distinct_id: '', ...props }, randVia());
        } else if (D === null) { // server-side
          const id = email && R.chance(0.4) ? email : U;
          push(name, t, { distinct_id: id, ...props }, 'import');
        } else if (t < idT.get(D)) { // anonymous browser event
          push(name, t, { distinct_id: `$device:${D}`, $device_id: D, ...props }, randVia());
        } else if (R.chance(0.8)) { // identified browser event
          push(name, t, { distinct_id: U, $device_id: D, $user_id: U, ...props }, randVia());
        } else {
          push(name, t, { distinct_id: U, $user_id: U, ...props }, randVia());
        }
        t += gap();
      }
    }
    for (const D of devices) {
      const t = idT.get(D);
      if (!Number.isFinite(t)) continue;
      const style = R.weighted([['browser', 62], ['http', 25], ['httpRaw', 5], ['failed', 4], ['same', 2], ['twice', 2]]);
      if (style === 'browser' || style === 'twice') {
        push('$identify', t, { distinct_id: U, $anon_distinct_id: `$device:${D}`, $device_id: D, $user_id: U }, randVia());
        if (style === 'twice') push('$identify', t + R.int(1, 48) * H, { distinct_id: U, $anon_distinct_id: `$device:${D}`, $device_id: D, $user_id: U }, randVia());
      } else if (style === 'http') {
        push('$identify', t, { distinct_id: U, $identified_id: U, $anon_id: `$device:${D}` }, 'import');
      } else if (style === 'httpRaw') { // anon id without the "$device:" prefix: merges the raw id, not the events' id
        push('$identify', t, { distinct_id: U, $identified_id: U, $anon_id: D }, 'import');
      } else if (style === 'failed') { // already failed in Mixpanel: ignored
        push('$identify', t, { distinct_id: U, $identified_id: U, $anon_id: `$device:${D}`, $failure_reason: 'errAnonDistinctIdAssignedAlready' }, 'import');
      } else {
        push('$identify', t, { distinct_id: U, $identified_id: U, $anon_id: U }, 'import'); // errSameIDs
      }
      // an identified event right after login (simplified links on it when there is no browser $identify)
      if (R.chance(0.5)) push('Open', t + R.int(1, 30) * 1000, { distinct_id: U, $device_id: D, $user_id: U, plan, country: 'US' }, randVia());
    }
  }
  // $merge: joins two users, or a user and an anonymous id; some through /track (ignored), a few malformed
  const nMerge = R.int(8, 16);
  for (let k = 0; k < nMerge; k++) {
    const a = R.pick(users);
    const b = R.chance(0.7) ? R.pick(users) : `$device:${R.pick(pool)}`;
    if (a === b) continue;
    const props = { $distinct_ids: [a, b] };
    if (R.chance(0.5)) props.distinct_id = a;
    push('$merge', start + R.f() * span, props, R.chance(0.75) ? 'import' : 'track');
  }
  for (let k = 0; k < 2; k++) push('$merge', start + R.f() * span, { $distinct_ids: [R.pick(users), R.pick(users), R.pick(users)] }, 'import');
  push('$merge', start + R.f() * span, { $distinct_ids: [R.pick(users)] }, 'import');
  // ties: another user proposes a device link at exactly the time of the device's earliest proposal
  // (simplified: the smallest user id wins).  A 'Login' event: no report step or birth depends on
  // the order of two events at the same ms, should a $merge put both users in one cluster.
  const first = new Map();
  for (const it of items) {
    const p = it.ev.properties;
    if (!p.$device_id || !p.$user_id) continue;
    const f = first.get(p.$device_id);
    if (!f || p.time < f.time) first.set(p.$device_id, { time: p.time, u: p.$user_id });
  }
  const tied = R.shuffle([...first.keys()]).slice(0, 6);
  for (const D of tied) {
    const f = first.get(D), U2 = R.pick(users);
    if (U2 === f.u) continue;
    items.push({ ev: { event: 'Login', properties: { time: f.time, $insert_id: `d${(++serial).toString(36)}`, distinct_id: U2, $device_id: D, $user_id: U2, plan: 'free', country: 'US' } }, via: 'import' });
  }
  // exact duplicates (same $insert_id), sent again later through the same endpoint
  const nd = Math.floor(items.length * 0.01);
  for (let i = 0; i < nd; i++) {
    const it = R.pick(items);
    items.push({ ev: JSON.parse(JSON.stringify(it.ev)), via: it.via });
  }
  return { baseDay, items };
}

// Arrival order: time-ordered chunks, sent in a shuffled order, each shuffled in part.
function arrival(R, items) {
  const sorted = [...items].sort((a, b) => a.ev.properties.time - b.ev.properties.time);
  const chunks = [];
  for (let i = 0; i < sorted.length;) {
    const n = R.int(150, 400);
    chunks.push(sorted.slice(i, i + n));
    i += n;
  }
  R.shuffle(chunks);
  for (const c of chunks) {
    for (let k = 0; k < c.length * 0.2; k++) { const i = R.int(0, c.length - 1), j = R.int(0, c.length - 1); [c[i], c[j]] = [c[j], c[i]]; }
  }
  return chunks;
}

// ---- what the server stores -------------------------------------------------------------

const idText = (v) => (typeof v === 'string' ? v : null);
function storedId(props, mode) {
  const sent = idText(props.distinct_id);
  if (sent !== null && mode === 'original') return sent;
  const u = idText(props.$user_id), d = idText(props.$device_id);
  if (u) return u;
  if (d) return `$device:${d}`;
  return sent ?? '';
}

// Stored events of a mode: de-duplicated by (event, stored distinct_id, time, $insert_id).
function stored(items, mode) {
  const seen = new Map();
  for (const it of items) {
    const p = it.ev.properties;
    const did = storedId(p, mode);
    const key = JSON.stringify([it.ev.event, did, p.time, p.$insert_id]);
    seen.set(key, { name: it.ev.event, did, time: p.time, props: p, via: it.via, iid: p.$insert_id });
  }
  return [...seen.values()];
}

// ---- the reference: identity resolution --------------------------------------------------

// Simplified: "$device:D" -> U from every event with both ids; per device the earliest
// time wins, ties by the smallest U.
function resolveSimplified(evs) {
  const best = new Map(); // "$device:D" -> {u, time}
  const proposals = new Map(); // "$device:D" -> Map(U -> earliest time)
  for (const e of evs) {
    const d = idText(e.props.$device_id), u = idText(e.props.$user_id);
    if (!d || !u) continue;
    const key = `$device:${d}`;
    const b = best.get(key);
    if (!b || e.time < b.time || (e.time === b.time && u < b.u)) best.set(key, { u, time: e.time });
    const m = proposals.get(key) || new Map();
    proposals.set(key, m);
    if (!m.has(u) || e.time < m.get(u)) m.set(u, e.time);
  }
  const members = new Map(); // U -> Set
  for (const [dev, { u }] of best) {
    if (!members.has(u)) members.set(u, new Set([u]));
    members.get(u).add(dev);
  }
  const canon = (id) => best.get(id)?.u ?? id;
  const cluster = (id) => { const c = canon(id); return { canonical: c, ids: [...(members.get(c) || [c])] }; };
  const links = [];
  for (const [dev, m] of proposals) {
    for (const [u, time] of m) {
      links.push(u === best.get(dev).u
        ? { type: 'device', from: dev, to: u, time, status: 'merged' }
        : { type: 'device', from: dev, to: u, time, status: 'refused', reason: 'errDeviceAlreadyMapped' });
    }
  }
  return { resolve: canon, cluster, links, stats: { devicesLinked: best.size, refused: links.filter((l) => l.status === 'refused').length } };
}

// Original: $identify / $create_alias / $merge replayed in (time, name, ids) order.
// ambiguous: the first event whose outcome the contract leaves open (removed by the caller).
function resolveOriginal(evs) {
  const ids = (e) => {
    if (e.name === '$identify') return [e.props.$identified_id ?? e.did, e.props.$anon_id ?? e.props.$anon_distinct_id];
    if (e.name === '$create_alias') return [e.props.alias, e.did];
    return e.props.$distinct_ids;
  };
  const list = evs.filter((e) => IDENTITY_EVENTS.has(e.name) && !('$failure_reason' in e.props) && !(e.name === '$merge' && e.via !== 'import'));
  list.sort((a, b) => (a.time - b.time) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
    (JSON.stringify(ids(a)) < JSON.stringify(ids(b)) ? -1 : JSON.stringify(ids(a)) > JSON.stringify(ids(b)) ? 1 : 0));
  const cl = new Map(); // id -> {canon, members:Set}
  const get = (id) => { let c = cl.get(id); if (!c) { c = { canon: id, members: new Set([id]) }; cl.set(id, c); } return c; };
  const join = (keep, other) => { // keep's canonical
    const c = { canon: keep.canon, members: new Set([...keep.members, ...other.members]) };
    for (const m of c.members) cl.set(m, c);
  };
  const identified = new Set(), aliases = new Set();
  const links = [];
  const stats = {};
  const note = (l) => { links.push(l); const k = l.reason || l.status; stats[k] = (stats[k] || 0) + 1; };
  const isGuid = (s) => /^[0-9a-f-]{16,}$/i.test(s.startsWith('$device:') ? s.slice(8) : s);
  for (const e of list) {
    const base = { type: e.name, time: e.time, iid: e.iid };
    if (e.name === '$identify') {
      const [idd, anon] = ids(e);
      if (typeof idd !== 'string' || typeof anon !== 'string' || !idd || !anon) return { ambiguous: e };
      const L = { ...base, from: anon, to: idd };
      if (anon === idd) { note({ ...L, status: 'refused', reason: 'errSameIDs' }); continue; }
      if (!isGuid(anon)) { note({ ...L, status: 'refused', reason: 'errAnonDistinctIdNonGUIDForm' }); continue; }
      const ca = get(anon), ci = get(idd);
      if (ca === ci) {
        // a no-op success; whether it makes idd an "identified id" is left open: only keep it when idd already is one
        if (!identified.has(idd)) return { ambiguous: e };
        note({ ...L, status: 'noop' });
        continue;
      }
      if ([...ca.members].some((m) => identified.has(m))) { note({ ...L, status: 'refused', reason: 'errAnonDistinctIdAssignedAlready' }); continue; }
      if (ca.members.size + ci.members.size > LIMIT) { note({ ...L, status: 'refused', reason: 'errManyIDs' }); continue; }
      join(ci, ca);
      identified.add(idd);
      note({ ...L, status: 'merged' });
    } else if (e.name === '$create_alias') {
      const [alias, target] = ids(e);
      if (typeof alias !== 'string' || !alias || !target) return { ambiguous: e };
      const L = { ...base, from: alias, to: target };
      if (alias === target) { note({ ...L, status: 'refused', reason: 'errSameIDs' }); continue; }
      if (aliases.has(alias)) { note({ ...L, status: 'refused', reason: 'errAliasAlreadyExists' }); continue; }
      const ca = get(alias), ct = get(target);
      if (ca === ct) return { ambiguous: e }; // already together: does it "use" the alias?  left open
      if (ca.members.size + ct.members.size > LIMIT) { note({ ...L, status: 'refused', reason: 'errManyIDs' }); continue; }
      join(ct, ca);
      aliases.add(alias);
      note({ ...L, status: 'merged' });
    } else {
      const d = ids(e);
      if (!Array.isArray(d) || d.length !== 2 || !d.every((x) => typeof x === 'string' && x)) { stats.malformedMerge = (stats.malformedMerge || 0) + 1; continue; }
      const L = { ...base, from: d[0], to: d[1] };
      const c0 = get(d[0]), c1 = get(d[1]);
      if (c0 === c1) { note({ ...L, status: 'noop' }); continue; }
      if (c0.members.size + c1.members.size > LIMIT) { note({ ...L, status: 'refused', reason: 'errManyIDs' }); continue; }
      join(c1.members.size > c0.members.size ? c1 : c0, c1.members.size > c0.members.size ? c0 : c1);
      note({ ...L, status: 'merged' });
    }
  }
  const resolve = (id) => (cl.has(id) ? cl.get(id).canon : id);
  const cluster = (id) => (cl.has(id) ? { canonical: cl.get(id).canon, ids: [...cl.get(id).members] } : { canonical: id, ids: [id] });
  return { resolve, cluster, links, stats };
}

// ---- filters and segments (Mixpanel expression, SQL over alias e) -----------------------------

const eqStr = (p, v) => `coalesce((${typeOf(p)} = 'text' AND ${valOf(p)} = ${sqlStr(v)}), 0)`;
const WHERES = [
  { mp: 'properties["plan"] == "pro"', sql: eqStr('plan', 'pro') },
  { mp: 'properties["country"] in ["US", "FR"]', sql: `coalesce((${typeOf('country')} = 'text' AND ${valOf('country')} IN ('US','FR')), 0)` },
  { mp: 'properties["plan"] != "free"', sql: `NOT ${eqStr('plan', 'free')}` },
];
const ONS = [
  { mp: 'properties["plan"]', sql: onProp('plan') },
  { mp: 'properties["country"]', sql: onProp('country') },
];
const WINDOWS = [[{}, 30 * DAY], [{ length: 1, length_unit: 'day' }, DAY], [{ length: 2, length_unit: 'hour' }, 2 * H], [{ length: 3, length_unit: 'day' }, 3 * DAY]];

// ---- the test ---------------------------------------------------------------------------------

let srv;
const OPEN_REFS = [];
const R0 = rng(SEED);
const data = generate(R0);
const chunks = arrival(R0, data.items);

// The stored events of MODE and their resolution.
function reference(mode, items) {
  const evs = stored(items, mode);
  return { evs, res: mode === 'simplified' ? resolveSimplified(evs) : resolveOriginal(evs) };
}

// Original: identity events whose outcome the contract leaves open (a no-op $identify
// whose identified id is not an identified id yet; a $create_alias whose alias is
// already in the target's cluster) are removed from the data set before it is sent.
{
  let removed = 0;
  for (;;) {
    const { res } = reference('original', data.items);
    if (!res.ambiguous) break;
    const iid = res.ambiguous.iid;
    data.items = data.items.filter((it) => it.ev.properties.$insert_id !== iid);
    for (const c of chunks) for (let i = c.length - 1; i >= 0; i--) if (c[i].ev.properties.$insert_id === iid) c.splice(i, 1);
    removed++;
  }
  if (removed) console.log(`# identity_diff: ${removed} identity event(s) with an outcome the contract leaves open were left out`);
}

before(async () => {
  srv = await startServer({ projects: [SIMP, ORIG].map(({ offsetMin, ...p }) => p) });
  // the same arrival order for both projects; per chunk one /import request and one /track request
  for (const proj of [SIMP, ORIG]) {
    for (const c of chunks) {
      const imp = c.filter((it) => it.via === 'import').map((it) => it.ev);
      const trk = c.filter((it) => it.via === 'track').map((it) => ({ event: it.ev.event, properties: { ...it.ev.properties, token: proj.token } }));
      if (imp.length) await importEvents(srv, imp, { secret: proj.api_secret });
      if (trk.length) {
        const r = await postTrack(srv, trk, { verbose: true });
        assert.ok(!r.error, `/track: ${r.error}`);
        assert.equal(r.status, 200, `/track: ${r.status} ${r.text}`);
        assert.equal(JSON.parse(r.text).status, 1, `/track answer: ${r.text}`);
      }
    }
  }
});
after(async () => {
  for (const r of OPEN_REFS) r.close();
  if (srv) assert.equal(await srv.stop(), 0);
});

for (const proj of [SIMP, ORIG]) {
  const mode = proj.identity;
  let ref, rawRef, res, evs;
  const getRaw = () => {
    if (!rawRef) OPEN_REFS.push(rawRef = new SqlRef(evs.map((e) => ({ event: e.name, properties: { ...e.props, distinct_id: e.did, time: e.time } })), { offsetMin: proj.offsetMin }));
    return rawRef;
  };

  test(`${mode}: reports over resolved ids = SQL reference (seed ${SEED})`, async (t) => {
    ({ evs, res } = reference(mode, data.items));
    assert.ok(!res.ambiguous);
    const resolved = evs.map((e) => ({ event: e.name, properties: { ...e.props, distinct_id: e.did === '' ? '' : res.resolve(e.did), time: e.time } }));
    ref = new SqlRef(resolved, { offsetMin: proj.offsetMin });
    OPEN_REFS.push(ref);
    const nUsersRaw = new Set(evs.map((e) => e.did)).size;
    const nUsers = new Set(evs.map((e) => (e.did === '' ? '' : res.resolve(e.did)))).size;
    t.diagnostic(`${mode}: ${data.items.length} events sent, ${evs.length} stored, ${nUsersRaw} distinct ids -> ${nUsers} resolved users; ` +
      `identity: ${JSON.stringify(res.stats)}`);
    assert.ok(nUsers < nUsersRaw * 0.9, `the data set should merge a good share of ids (${nUsersRaw} -> ${nUsers})`);

    const R = rng(SEED * 31 + (mode === 'original' ? 2 : 1));
    const failures = [];
    let nq = 0;
    const range = (maxLen = 5) => { const from = addDays(data.baseDay, R.int(0, 6)); return { from, to: addDays(from, R.int(0, maxLen)) }; };
    const maybe = (p, list) => (R.chance(p) ? R.pick(list) : null);

    async function check(name, params, want) {
      nq++;
      const res2 = await q(srv, name, params, { auth: proj.api_secret });
      const shown = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== null && v !== undefined));
      const req = `${name} ${JSON.stringify(shown)}`;
      if (VERBOSE) console.log('#', req, '\n#   want', JSON.stringify(want).slice(0, 400));
      if (res2.status !== 200 || res2.json === undefined) { failures.push(`${req}\n    status ${res2.status}: ${res2.text.slice(0, 300)}`); return; }
      const d = firstDiff(res2.json, want);
      if (d) failures.push({ req, name, params, d, got: res2.json });
    }

    try {
      // segmentation, unique, by day (with and without where)
      for (let i = 0; i < 8; i++) {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        const where = i < 2 ? null : maybe(0.4, WHERES);
        await check('segmentation', { event, from_date: from, to_date: to, type: 'unique', unit: 'day', where: where?.mp },
          ref.segmentation({ event, from, to, type: 'unique', unit: 'day', where: where?.sql }));
      }
      // segmentation, unique, with `on`
      for (let i = 0; i < 5; i++) {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        const on = ONS[i % ONS.length];
        await check('segmentation', { event, from_date: from, to_date: to, type: 'unique', on: on.mp },
          ref.segmentation({ event, from, to, type: 'unique', unit: 'day', on: on.sql }));
      }
      // segmentation, unique / average over weeks
      for (const type of ['unique', 'unique', 'average']) {
        const { from, to } = range(9);
        const event = R.weighted(NAMES);
        await check('segmentation', { event, from_date: from, to_date: to, type, unit: 'week' },
          ref.segmentation({ event, from, to, type, unit: 'week' }));
      }
      // events, unique
      for (let i = 0; i < 2; i++) {
        const { from, to } = range();
        const names = [...new Set([R.weighted(NAMES), R.weighted(NAMES), '$identify'])];
        await check('events', { event: names, type: 'unique', unit: 'day', from_date: from, to_date: to },
          ref.events({ events: names, from, to, unit: 'day', type: 'unique' }));
      }
      // events/properties, unique (= segmentation on the property)
      {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        await check('events/properties', { event, name: 'country', type: 'unique', unit: 'day', from_date: from, to_date: to },
          ref.segmentation({ event, from, to, type: 'unique', on: onProp('country'), limit: 255 }));
      }
      // retention/addiction (users per number of active hours / days)
      for (const [unit, addictionUnit] of [['day', 'hour'], ['week', 'day']]) {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        await check('retention/addiction', { event, from_date: from, to_date: to, unit, addiction_unit: addictionUnit },
          ref.addiction({ event, from, to, unit, addictionUnit }));
      }
      // funnels
      for (let i = 0; i < 8; i++) {
        const { from, to } = range();
        const nsteps = R.int(2, 3);
        const steps = Array.from({ length: nsteps }, () => ({ event: R.weighted(NAMES) }));
        const [win, windowMs] = R.pick(WINDOWS);
        const bucket = R.weighted([[{}, 4], [{ unit: 'week' }, 1], [{ interval: 3 }, 1]]);
        const on = maybe(0.25, ONS);
        await check('funnels', { events: steps, from_date: from, to_date: to, ...win, ...bucket, on: on?.mp },
          ref.funnel({ steps, from, to, windowMs, interval: bucket.interval || 1, unit: bucket.unit, on: on?.sql }));
      }
      // retention, birth, day unit
      for (let i = 0; i < 6; i++) {
        const { from, to } = range();
        const bornEvent = R.weighted(NAMES);
        const event = R.chance(0.75) ? R.weighted(NAMES) : null;
        const intervalCount = R.int(2, 6);
        const unbounded = R.chance(0.2);
        const on = maybe(0.2, ONS.slice(0, 1));
        await check('retention', { born_event: bornEvent, event, from_date: from, to_date: to, unit: 'day', interval_count: intervalCount,
          unbounded_retention: unbounded ? 'true' : null, on: on?.mp },
        ref.retention({ type: 'birth', bornEvent, event, from, to, unit: 'day', intervalCount, unbounded, on: on?.sql }));
      }
      // retention, compounded
      {
        const { from, to } = range();
        const event = R.weighted(NAMES);
        await check('retention', { retention_type: 'compounded', event, from_date: from, to_date: to, interval_count: 3 },
          ref.retention({ type: 'compounded', event, from, to, unit: 'day', intervalCount: 3 }));
      }
    } finally {
      t.diagnostic(`${mode}: ${nq} reports compared, ${failures.length} mismatches`);
    }
    if (failures.length) {
      const lines = failures.slice(0, SHOW).map((f) => {
        if (typeof f === 'string') return '  ' + f;
        // would a server without identity resolution have answered this?
        let hint = '';
        try {
          const p = f.params, r = getRaw();
          let rawWant = null;
          if (f.name === 'segmentation') rawWant = r.segmentation({ event: p.event, from: p.from_date, to: p.to_date, type: p.type, unit: p.unit || 'day', where: WHERES.find((w) => w.mp === p.where)?.sql, on: ONS.find((o) => o.mp === p.on)?.sql });
          if (rawWant && !firstDiff(f.got, rawWant)) hint = '\n    (the server\'s answer equals the answer without identity resolution)';
        } catch { /* the hint is best effort */ }
        return `  ${f.req}\n    ${fmtDiff(f.d)}${hint}`;
      });
      assert.fail(`seed ${SEED}, ${mode}: ${failures.length}/${nq} reports differ from the reference (IDENTITY_DIFF_SEED=${SEED} to replay):\n` +
        lines.join('\n') + (failures.length > SHOW ? `\n  ... and ${failures.length - SHOW} more` : ''));
    }
  });

  test(`${mode}: identity graph = reference clusters and link outcomes (seed ${SEED})`, async (t) => {
    if (!res) ({ evs, res } = reference(mode, data.items));
    const R = rng(SEED * 37 + (mode === 'original' ? 2 : 1));
    const failures = [];
    // ids: a sample of stored distinct ids, preferring merged ones
    const all = [...new Set(evs.map((e) => e.did).filter((d) => d !== ''))];
    const merged = all.filter((d) => res.cluster(d).ids.length > 1);
    const sample = new Set([...R.shuffle([...merged]).slice(0, 25), ...R.shuffle([...all]).slice(0, 10)]);
    const cache = new Map();
    const graph = async (id) => {
      if (cache.has(id)) return cache.get(id);
      const r = await q(srv, 'identity/graph', { distinct_id: id }, { auth: proj.api_secret });
      const g = r.status === 200 && r.json ? r.json : { error: `status ${r.status}: ${r.text.slice(0, 300)}` };
      cache.set(id, g);
      return g;
    };
    for (const id of sample) {
      const want = res.cluster(id);
      const g = await graph(id);
      if (g.error) { failures.push(`graph(${JSON.stringify(id)}): ${g.error}`); continue; }
      if (g.canonical_id !== want.canonical) failures.push(`graph(${JSON.stringify(id)}).canonical_id: got ${JSON.stringify(g.canonical_id)}, want ${JSON.stringify(want.canonical)} (cluster ${JSON.stringify(want.ids)})`);
      else if (!Array.isArray(g.distinct_ids) || g.distinct_ids[0] !== want.canonical) failures.push(`graph(${JSON.stringify(id)}).distinct_ids[0] is not the canonical id: ${JSON.stringify(g.distinct_ids)}`);
      else if (JSON.stringify([...g.distinct_ids].sort()) !== JSON.stringify([...want.ids].sort())) {
        const got = new Set(g.distinct_ids), w = new Set(want.ids);
        failures.push(`graph(${JSON.stringify(id)}).distinct_ids: extra ${JSON.stringify([...got].filter((x) => !w.has(x)))}, missing ${JSON.stringify([...w].filter((x) => !got.has(x)))}`);
      }
      if (g.identity !== mode) failures.push(`graph(${JSON.stringify(id)}).identity: ${JSON.stringify(g.identity)}`);
    }
    // link outcomes: merged and refused links (no-ops aside) appear, with their reason, in the graph of one side
    const links = res.links.filter((l) => l.status === 'merged' || l.status === 'refused');
    const byStatus = (s) => links.filter((l) => l.status === s);
    const linkSample = [...R.shuffle(byStatus('merged')).slice(0, 15), ...R.shuffle(byStatus('refused')).slice(0, 25)];
    for (const l of linkSample) {
      let hit = false;
      for (const id of [l.from, l.to]) {
        const g = await graph(id);
        if ((g.links || []).some((x) => x.type === l.type && x.status === l.status && (l.reason === undefined || x.reason === l.reason) &&
          ((x.from === l.from && x.to === l.to) || (x.from === l.to && x.to === l.from)) &&
          (l.type !== 'device' || l.status !== 'merged' || x.time === l.time))) { hit = true; break; }
      }
      if (!hit) {
        const g1 = await graph(l.from), g2 = await graph(l.to);
        const near = [...(g1.links || []), ...(g2.links || [])].filter((x) => (x.from === l.from && x.to === l.to) || (x.from === l.to && x.to === l.from));
        failures.push(`link ${JSON.stringify({ type: l.type, from: l.from, to: l.to, time: l.time, status: l.status, reason: l.reason })} ` +
          `not in graph(from) or graph(to); links between these ids there: ${JSON.stringify(near).slice(0, 600)}`);
      }
    }
    t.diagnostic(`${mode}: ${sample.size} clusters and ${linkSample.length} links compared, ${failures.length} mismatches`);
    if (failures.length) {
      assert.fail(`seed ${SEED}, ${mode}: identity graph differs from the reference (IDENTITY_DIFF_SEED=${SEED} to replay):\n` +
        failures.slice(0, SHOW).map((f) => '  ' + f).join('\n') + (failures.length > SHOW ? `\n  ... and ${failures.length - SHOW} more` : ''));
    }
  });
}
