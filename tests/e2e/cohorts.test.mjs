// Cohorts: saved behavioural cohorts (docs/QUERIES.md "cohorts", docs/API.md
// "Cohorts"): create / update / delete / list (Mixpanel's shape, spec
// §10.16), members, size, composition, filter_by_cohort on the reports and
// on engage.  Hand-computed cases (every expected member list below was
// worked out by hand from the events listed next to it), then a seeded
// randomized differential: random definitions against an independent JS
// evaluation of the same definition over the same events and profiles.
//
//   COHORTS_DIFF_SEED=1234 node --test cohorts.test.mjs    replay a seed
//   COHORTS_DIFF_VERBOSE=1                                 print every definition
//
// Membership is "as of now" and within_days counts back from the server's
// clock, so the events are generated relative to Date.now() and none lies
// within 2 minutes of a whole number of days before now (a window edge).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { request } from './lib/load.mjs';
import { rng } from './lib/rng.mjs';

const SEED = process.env.COHORTS_DIFF_SEED ? Number(process.env.COHORTS_DIFF_SEED) : (Date.now() % 1e9);
const VERBOSE = !!process.env.COHORTS_DIFF_VERBOSE;
console.log(`# cohorts diff seed ${SEED} (COHORTS_DIFF_SEED=${SEED} to replay)`);

const KOL = { name: 'kol', id: 2, token: 'kol-token', api_secret: 'kol-secret', timezone: 'Asia/Kolkata' };
const REP = { name: 'rep', id: 3, token: 'rep-token', api_secret: 'rep-secret', timezone: 'UTC' };
const REPM = { name: 'repm', id: 4, token: 'repm-token', api_secret: 'repm-secret', timezone: 'UTC' };
const DIFF = { name: 'diff', id: 5, token: 'diff-token', api_secret: 'diff-secret', timezone: 'Asia/Kolkata' };
const KOL_OFFSET_MS = 330 * 60000;

const H = 3600e3, D = 86400e3, MIN = 60e3;
const NOW = Date.now();
const ago = (ms) => NOW - ms;

let srv;
let insertSerial = 0;
// One /import event at TIME (ms).
const E = (name, did, time, props = {}) => ({
  event: name,
  properties: { time, distinct_id: did, $insert_id: `c${(++insertSerial).toString(36)}`, ...props },
});
// An anonymous event of device DEV (simplified ID merge: distinct_id $device:DEV).
const DEV = (name, dev, time, props = {}) => E(name, `$device:${dev}`, time, { $device_id: dev, ...props });
// An event that links device DEV to user USER.
const LINK = (name, dev, user, time, props = {}) => E(name, user, time, { $device_id: dev, $user_id: user, ...props });

// POST data=<JSON> to /engage; asserts the updates were accepted.
async function setProfiles(token, profiles) {
  const updates = Object.entries(profiles).map(([id, p]) => ({ $token: token, $distinct_id: id, $ignore_time: true, $set: p }));
  const res = await request(`${srv.url}/engage?verbose=1`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'data=' + encodeURIComponent(JSON.stringify(updates)),
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text).status, 1, `/engage: ${res.text}`);
}

async function ok(resP, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what} status ${res.status}: ${res.text.slice(0, 800)}`);
  assert.ok(res.json !== undefined, `${what} not JSON: ${res.text.slice(0, 500)}`);
  return res.json;
}
async function err(resP, status, msg, what = '') {
  const res = await resP;
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 800)}`);
  assert.equal(typeof res.json?.error, 'string', `${what}: no "error": ${res.text.slice(0, 500)}`);
  assert.equal(res.json.status, 'error', `${what}: ${res.text}`);
  assert.equal(typeof res.json.request, 'string', `${what}: no "request": ${res.text}`);
  if (msg) assert.match(res.json.error, msg, `${what}: message`);
  return res.json;
}
function same(got, want, what) {
  const d = firstDiff(got, want);
  assert.ok(!d, `${what}: ${fmtDiff(d || {})}\n  got:  ${JSON.stringify(got).slice(0, 3000)}\n  want: ${JSON.stringify(want).slice(0, 3000)}`);
}

// All members of a definition (inline), as a list of ids; checks the answer's shape.
async function members(def, { secret = DEMO.api_secret } = {}) {
  const j = await ok(q(srv, 'cohorts/members', { definition: def, page_size: 10000 }, { auth: secret }), `members ${JSON.stringify(def)}`);
  assert.equal(j.status, 'ok');
  assert.equal(j.id, 0);
  assert.equal(j.page, 0);
  assert.equal(j.page_size, 10000);
  assert.equal(j.total, j.results.length, JSON.stringify(j));
  for (const r of j.results) assert.deepEqual(Object.keys(r), ['$distinct_id']);
  return j.results.map((r) => r.$distinct_id);
}
const byteSort = (a) => [...a].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));

// ---- hand data: demo project (UTC), times relative to now -------------------------------
//
// user        events                                                         profile
// a           Purchase 20h ago (amount 10), 2.5d (30), 10d (50); Login 1h    plan pro, age 35
// b           Purchase 40d ago (100); Login 5d                               plan free, age 22, email
// c           Login 3h ago, 2d6h ago                                         -
// d           as device dd1: Purchase 3d ago (20), 4d (no amount);           plan pro, age 28
//             Login 20h ago carrying $device_id dd1 + $user_id d (the merge)
// g           Purchase 6d ago (5)                                            -
// $device:zz  Purchase 2h ago (1), never merged                              -
// e           (no events)                                                    plan pro, age 50, email
// f           (no events)                                                    plan free
const HAND_EVENTS = [
  E('Purchase', 'a', ago(20 * H), { amount: 10 }),
  E('Purchase', 'a', ago(2.5 * D), { amount: 30 }),
  E('Purchase', 'a', ago(10 * D), { amount: 50 }),
  E('Login', 'a', ago(1 * H)),
  E('Purchase', 'b', ago(40 * D), { amount: 100 }),
  E('Login', 'b', ago(5 * D)),
  E('Login', 'c', ago(3 * H)),
  E('Login', 'c', ago(2 * D + 6 * H)),
  DEV('Purchase', 'dd1', ago(3 * D), { amount: 20 }),
  DEV('Purchase', 'dd1', ago(4 * D)),
  LINK('Login', 'dd1', 'd', ago(20 * H)),
  E('Purchase', 'g', ago(6 * D), { amount: 5 }),
  DEV('Purchase', 'zz', ago(2 * H), { amount: 1 }),
];
const HAND_PROFILES = {
  a: { plan: 'pro', age: 35 },
  b: { plan: 'free', age: 22, email: 'b@example.com' },
  d: { plan: 'pro', age: 28 },
  e: { plan: 'pro', age: 50, email: 'e@example.com' },
  f: { plan: 'free' },
};
const ZZ = '$device:zz';
const EVERYONE = [ZZ, 'a', 'b', 'c', 'd', 'e', 'f', 'g'];

// ---- kol project (Asia/Kolkata, +05:30): local-day edges in March 2024 -------------------
const KOL_EVENTS = [
  E('Visit', 'x1', Date.parse('2024-03-09T18:29:59.999Z')), // 03-09 23:59:59.999 IST
  E('Visit', 'x2', Date.parse('2024-03-09T18:30:00.000Z')), // 03-10 00:00 IST
  E('Visit', 'x3', Date.parse('2024-03-10T18:29:59.000Z')), // 03-10 23:59:59 IST
  E('Visit', 'x4', Date.parse('2024-03-10T18:30:00.000Z')), // 03-11 00:00 IST
];
const KOL_PROFILES = { p: { plan: 'free' } };

before(async () => {
  srv = await startServer({ projects: [DEMO, KOL, REP, REPM, DIFF] });
  await importEvents(srv, HAND_EVENTS);
  await setProfiles(DEMO.token, HAND_PROFILES);
  await importEvents(srv, KOL_EVENTS, { secret: KOL.api_secret });
  await setProfiles(KOL.token, KOL_PROFILES);
});
after(async () => {
  if (srv) assert.equal(await srv.stop(), 0, srv.log().slice(-4000));
});

// ---- CRUD ------------------------------------------------------------------------------

describe('cohorts: create, list, update, delete', () => {
  const BUYERS = { event: 'Purchase' };
  const PRO = { profile: 'user["plan"] == "pro"' };

  test('create (JSON body and form fields), list, update, delete', async () => {
    const c1 = await ok(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'Buyers', description: 'bought once', definition: BUYERS } }), 'create json');
    assert.equal(c1.status, 'ok');
    assert.ok(Number.isInteger(c1.id) && c1.id >= 1, JSON.stringify(c1));
    const c2 = await ok(q(srv, 'cohorts/create', { name: 'Pro plan', definition: PRO, is_visible: 0 }, { method: 'POST' }), 'create form');
    assert.ok(c2.id > c1.id, JSON.stringify(c2));

    // list: Mixpanel's shape (spec §10.16), count = members now (profile-only included)
    const list = await ok(q(srv, 'cohorts/list', {}, { method: 'POST' }), 'list');
    assert.ok(Array.isArray(list));
    const mine = list.filter((c) => c.id === c1.id || c.id === c2.id);
    assert.equal(mine.length, 2, JSON.stringify(list));
    const [l1, l2] = mine;
    assert.deepEqual(Object.keys(l1).sort(), ['count', 'created', 'description', 'id', 'is_visible', 'name', 'project_id']);
    same({ ...l1, created: 'x' }, { count: 5, is_visible: 1, description: 'bought once', created: 'x', project_id: DEMO.id, id: c1.id, name: 'Buyers' }, 'list[Buyers]');
    same({ ...l2, created: 'x' }, { count: 3, is_visible: 0, description: '', created: 'x', project_id: DEMO.id, id: c2.id, name: 'Pro plan' }, 'list[Pro]');
    assert.match(l1.created, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    const created = Date.parse(l1.created.replace(' ', 'T') + 'Z');
    assert.ok(Math.abs(created - Date.now()) < 5 * MIN, `created ${l1.created} is not now (UTC)`);
    // GET works too
    same(await ok(q(srv, 'cohorts/list', {})), list, 'list GET');

    // members of a saved cohort
    const m1 = await ok(q(srv, 'cohorts/members', { id: c1.id }), 'members id');
    same(m1, { status: 'ok', id: c1.id, total: 5, page: 0, page_size: 1000, results: [ZZ, 'a', 'b', 'd', 'g'].map((x) => ({ $distinct_id: x })) }, 'members of Buyers');

    // partial update: the name only keeps the definition
    same(await ok(q(srv, 'cohorts/update', {}, { method: 'POST', json: { id: c1.id, name: 'Customers' } }), 'update name'),
      { status: 'ok', id: c1.id }, 'update answer');
    let l = (await ok(q(srv, 'cohorts/list', {}))).find((c) => c.id === c1.id);
    assert.equal(l.name, 'Customers');
    assert.equal(l.description, 'bought once');
    assert.equal(l.count, 5);
    assert.deepEqual((await ok(q(srv, 'cohorts/members', { id: c1.id }))).results.map((r) => r.$distinct_id), [ZZ, 'a', 'b', 'd', 'g']);
    // a new definition changes the members (form fields this time)
    await ok(q(srv, 'cohorts/update', { id: c1.id, definition: { event: 'Purchase', at_least: 2 } }, { method: 'POST' }), 'update definition');
    l = (await ok(q(srv, 'cohorts/list', {}))).find((c) => c.id === c1.id);
    assert.equal(l.name, 'Customers');
    assert.equal(l.count, 2);
    assert.deepEqual((await ok(q(srv, 'cohorts/members', { id: c1.id }))).results.map((r) => r.$distinct_id), ['a', 'd']);
    // an update with a bad definition is refused and changes nothing
    await err(q(srv, 'cohorts/update', {}, { method: 'POST', json: { id: c1.id, definition: { event: 'Purchase', at_least: -1 } } }), 400, /at_least must be a non-negative integer/);
    assert.equal((await ok(q(srv, 'cohorts/members', { id: c1.id }))).total, 2);

    // delete, then 404 everywhere
    same(await ok(q(srv, 'cohorts/delete', {}, { method: 'POST', json: { id: c1.id } }), 'delete'), { status: 'ok', id: c1.id }, 'delete answer');
    await err(q(srv, 'cohorts/members', { id: c1.id }), 404, new RegExp(`no cohort ${c1.id} in this project`));
    await err(q(srv, 'segmentation', { event: 'Purchase', from_date: '2024-01-01', to_date: '2024-01-02', filter_by_cohort: { id: c1.id } }), 404, /no cohort/);
    await err(q(srv, 'cohorts/delete', { id: c1.id }, { method: 'POST' }), 404, /no cohort/, 'delete twice');
    await err(q(srv, 'cohorts/update', {}, { method: 'POST', json: { id: c1.id, name: 'x' } }), 404, /no cohort/, 'update deleted');
    const left = await ok(q(srv, 'cohorts/list', {}));
    assert.ok(!left.some((c) => c.id === c1.id), JSON.stringify(left));
    assert.ok(left.some((c) => c.id === c2.id));
    // cohorts belong to their project
    await err(q(srv, 'cohorts/members', { id: c2.id }, { auth: KOL.api_secret }), 404, /no cohort/, 'other project');
    await ok(q(srv, 'cohorts/delete', {}, { method: 'POST', json: { id: c2.id } }));
  });

  test('errors', async () => {
    const create = (def, extra = {}) => q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'x', definition: def, ...extra } });
    await err(create({ event: 'A', foo: 1 }), 400, /definition: unknown key 'foo' in an event condition/, 'unknown key (event)');
    await err(create({ foo: 1 }), 400, /a condition needs one of and, or, not, event, profile \(got 'foo'\)/, 'unknown key');
    await err(create({ and: [{ event: 'A' }], foo: 1 }), 400, /'and' takes no other keys/, 'and + key');
    await err(create({ and: [] }), 400, /definition\.and must be a non-empty array of conditions/, 'and []');
    await err(create({ or: [] }), 400, /definition\.or must be a non-empty array/, 'or []');
    await err(create({ or: { event: 'A' } }), 400, /definition\.or must be a non-empty array/, 'or {}');
    await err(create({ event: 'A', at_least: -1 }), 400, /definition\.at_least must be a non-negative integer/, 'at_least -1');
    await err(create({ event: 'A', at_most: 1.5 }), 400, /definition\.at_most must be a non-negative integer/, 'at_most 1.5');
    await err(create({ event: 'A', at_least: 1, exactly: 2 }), 400, /give one of at_least, at_most, exactly, did, did_not/, 'two ops');
    await err(create({ event: 'A', did: false }), 400, /did must be true/, 'did false');
    await err(create({ event: '' }), 400, /definition\.event must be a non-empty event name/, 'empty event');
    await err(create({ event: 'A', within_days: 0 }), 400, /definition\.within_days must be 1\.\.3660/, 'within_days 0');
    await err(create({ event: 'A', within_days: 3661 }), 400, /within_days must be 1\.\.3660/, 'within_days 3661');
    await err(create({ event: 'A', from_date: '2024-01-01' }), 400, /from_date and to_date go together/, 'from without to');
    await err(create({ event: 'A', to_date: '2024-01-01' }), 400, /from_date and to_date go together/, 'to without from');
    await err(create({ event: 'A', within_days: 3, from_date: '2024-01-01', to_date: '2024-01-02' }), 400, /give within_days or from_date\/to_date, not both/, 'both windows');
    await err(create({ event: 'A', from_date: '2024-01-05', to_date: '2024-01-02' }), 400, /to_date must not be before from_date/, 'to < from');
    await err(create({ event: 'A', from_date: '2024-1-5', to_date: '2024-01-06' }), 400, /from_date/, 'bad date');
    await err(create({ and: [{ event: 'A' }, { event: 'B', where: 'properties["x" == 1' }] }), 400,
      /^invalid expression in 'definition\.and\[1\]\.where' at position \d+: /, 'bad where');
    await err(create({ profile: 'user["plan"] ==' }), 400, /^invalid expression in 'definition\.profile' at position \d+: /, 'bad profile');
    await err(create({ event: 'A', where: 3 }), 400, /where must be an expression/, 'where not a string');
    await err(create('Purchase'), 400, /definition must be a condition object/, 'a string');
    await err(create([{ event: 'A' }]), 400, /definition must be a condition object/, 'an array');
    await err(create({}), 400, /definition must be a condition object/, 'empty object');
    await err(create({ not: [{ event: 'A' }] }), 400, /definition\.not must be a condition object/, 'not of a list');
    // nesting: 8 levels below the root are fine, 9 are not
    const nest = (n) => { let c = { event: 'A' }; for (let i = 0; i < n; i++) c = { not: c }; return c; };
    await ok(create(nest(8)), 'depth 8');
    await err(create(nest(9)), 400, /conditions nest deeper than 8/, 'depth 9');
    const andNest = (n) => { let c = { event: 'A' }; for (let i = 0; i < n; i++) c = { and: [c] }; return c; };
    await err(create(andNest(9)), 400, /nest deeper than 8/, 'and depth 9');
    // 128 conditions are fine, 129 are not
    const many = (n) => ({ or: Array.from({ length: n }, (_, i) => ({ event: `E${i}` })) });
    await ok(create(many(127)), '128 conditions');
    await err(create(many(128)), 400, /the definition has more than 128 conditions/, '129 conditions');
    // name, definition
    await err(q(srv, 'cohorts/create', {}, { method: 'POST', json: { definition: { event: 'A' } } }), 400, /name must be a non-empty string/, 'no name');
    await err(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: '', definition: { event: 'A' } } }), 400, /name must be a non-empty string/, 'empty name');
    await err(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'x' } }), 400, /definition is required/, 'no definition');
    await err(q(srv, 'cohorts/create', {}, { method: 'POST', json: '{"name":' }), 400, /not valid JSON/, 'bad body');
    // ids
    await err(q(srv, 'cohorts/members', { id: 987654 }), 404, /^no cohort 987654 in this project$/, 'unknown id');
    await err(q(srv, 'cohorts/members', { id: 'abc' }), 400, /id must be a cohort id/, 'id abc');
    await err(q(srv, 'cohorts/members', {}), 400, /id \(a saved cohort\) or definition/, 'neither');
    await err(q(srv, 'cohorts/members', { definition: '{"event":' }), 400, /definition is not valid JSON/, 'bad inline');
    await err(q(srv, 'cohorts/update', {}, { method: 'POST', json: { name: 'x' } }), 400, /id \(the cohort to update\) is required/);
    await err(q(srv, 'cohorts/update', {}, { method: 'POST', json: { id: 987654, name: 'x' } }), 404, /no cohort 987654/);
    await err(q(srv, 'cohorts/delete', {}, { method: 'POST', json: {} }), 400, /id \(the cohort to delete\) is required/);
    // methods
    await err(q(srv, 'cohorts/create', { name: 'x', definition: { event: 'A' } }), 405, /^cohorts\/create needs POST$/, 'GET create');
    await err(q(srv, 'cohorts/update', { id: 1, name: 'x' }), 405, /needs POST/, 'GET update');
    await err(q(srv, 'cohorts/delete', { id: 1 }), 405, /needs POST/, 'GET delete');
    // composition: properties required
    await err(q(srv, 'cohorts/composition', { definition: { event: 'A' } }), 400, /properties must be a JSON array/);
    await err(q(srv, 'cohorts/composition', { definition: { event: 'A' }, properties: '"plan"' }), 400, /properties must be a JSON array/);
    // size: dates required
    await err(q(srv, 'cohorts/size', { definition: { event: 'A' } }), 400, /from_date/);
  });
});

// ---- membership semantics --------------------------------------------------------------

describe('cohorts: membership (hand-computed, as of now)', () => {
  const cases = [
    // did / did_not
    ['did Purchase', { event: 'Purchase' }, [ZZ, 'a', 'b', 'd', 'g']],
    ['did: true', { event: 'Purchase', did: true }, [ZZ, 'a', 'b', 'd', 'g']],
    ['did_not Purchase (profile-only users are members)', { event: 'Purchase', did_not: true }, ['c', 'e', 'f']],
    ['did an event nobody did', { event: 'Nothing' }, []],
    ['did_not an event nobody did: everyone', { event: 'Nothing', did_not: true }, EVERYONE],
    // counts
    ['at_least 2', { event: 'Purchase', at_least: 2 }, ['a', 'd']],
    ['at_least 3', { event: 'Purchase', at_least: 3 }, ['a']],
    ['at_least 0: everyone', { event: 'Purchase', at_least: 0 }, EVERYONE],
    ['at_most 1', { event: 'Purchase', at_most: 1 }, [ZZ, 'b', 'c', 'e', 'f', 'g']],
    ['exactly 1', { event: 'Purchase', exactly: 1 }, [ZZ, 'b', 'g']],
    ['exactly 0', { event: 'Purchase', exactly: 0 }, ['c', 'e', 'f']],
    ['exactly 2 Login', { event: 'Login', exactly: 2 }, ['c']],
    // within_days (relative to now)
    ['within_days 7', { event: 'Purchase', within_days: 7 }, [ZZ, 'a', 'd', 'g']],
    ['within_days 7, at_least 2', { event: 'Purchase', within_days: 7, at_least: 2 }, ['a', 'd']],
    ['within_days 2', { event: 'Purchase', within_days: 2 }, [ZZ, 'a']],
    ['within_days 1, exactly 1', { event: 'Purchase', within_days: 1, exactly: 1 }, [ZZ, 'a']],
    ['within_days 7, did_not', { event: 'Purchase', within_days: 7, did_not: true }, ['b', 'c', 'e', 'f']],
    ['within_days 30, at_most 1', { event: 'Purchase', within_days: 30, at_most: 1 }, [ZZ, 'b', 'c', 'e', 'f', 'g']],
    ['Login within_days 1', { event: 'Login', within_days: 1 }, ['a', 'c', 'd']],
    ['Login within_days 3, exactly 1', { event: 'Login', within_days: 3, exactly: 1 }, ['a', 'd']],
    // where on the event's properties
    ['where amount >= 30', { event: 'Purchase', where: 'properties["amount"] >= 30' }, ['a', 'b']],
    ['where amount >= 30, within_days 7', { event: 'Purchase', where: 'properties["amount"] >= 30', within_days: 7 }, ['a']],
    ['where amount >= 30, at_least 2', { event: 'Purchase', where: 'properties["amount"] >= 30', at_least: 2 }, ['a']],
    ['where not defined(amount)', { event: 'Purchase', where: 'not defined(properties["amount"])' }, ['d']],
    ['where amount < 25, did_not', { event: 'Purchase', where: 'properties["amount"] < 25', did_not: true }, ['b', 'c', 'e', 'f']],
    // profile conditions
    ['profile ==', { profile: 'user["plan"] == "pro"' }, ['a', 'd', 'e']],
    ['profile !=: users without a profile too', { profile: 'user["plan"] != "pro"' }, [ZZ, 'b', 'c', 'f', 'g']],
    ['profile defined()', { profile: 'defined(user["email"])' }, ['b', 'e']],
    ['profile numeric >', { profile: 'user["age"] > 30' }, ['a', 'e']],
    ['profile numeric range', { profile: 'user["age"] >= 22 and user["age"] < 35' }, ['b', 'd']],
    ['profile not defined()', { profile: 'not defined(user["plan"])' }, [ZZ, 'c', 'g']],
    // and / or / not
    ['and', { and: [{ event: 'Purchase' }, { profile: 'user["plan"] == "pro"' }] }, ['a', 'd']],
    ['or', { or: [{ event: 'Login', within_days: 1 }, { profile: 'user["age"] > 40' }] }, ['a', 'c', 'd', 'e']],
    ['not', { not: { event: 'Login' } }, [ZZ, 'e', 'f', 'g']],
    ['not not', { not: { not: { event: 'Login' } } }, ['a', 'b', 'c', 'd']],
    ['nested', { and: [{ or: [{ event: 'Purchase', at_least: 2 }, { profile: 'defined(user["email"])' }] }, { not: { event: 'Login', within_days: 1 } }] }, ['b', 'e']],
    ['nested 2', { or: [{ and: [{ event: 'Login' }, { event: 'Purchase', did_not: true }] }, { and: [{ profile: 'user["plan"] == "free"' }, { not: { event: 'Login', within_days: 7 } }] }] }, ['c', 'f']],
    // identity: d's anonymous purchases (as $device:dd1) count for d, who is listed under the canonical id
    ['identity: anonymous events count for the merged user', { event: 'Purchase', at_least: 2, within_days: 7 }, ['a', 'd']],
    ['identity: where over anonymous events', { event: 'Purchase', where: 'properties["amount"] == 20' }, ['d']],
  ];
  for (const [name, def, want] of cases) {
    test(name, async () => {
      assert.deepEqual(await members(def), want, `${JSON.stringify(def)}`);
    });
  }

  test('a profile condition with properties[...] reads the profile (q_cohorts.c header)', async () => {
    assert.deepEqual(await members({ profile: 'properties["plan"] == "pro"' }), ['a', 'd', 'e']);
  });

  test('a project with profiles and no events: profile conditions over properties[...] / event[...] answer (own server)', async () => {
    // its own server: a crash here must not take the other tests down
    const solo = await startServer({ projects: [DEMO] });
    try {
      const res = await request(`${solo.url}/engage?verbose=1`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'data=' + encodeURIComponent(JSON.stringify([{ $token: DEMO.token, $distinct_id: 'p1', $ignore_time: true, $set: { plan: 'pro' } }])),
      });
      assert.equal(res.status, 200, res.text);
      const m = async (def) => {
        let r;
        try { r = await q(solo, 'cohorts/members', { definition: def }); } catch (e) {
          assert.fail(`cohorts/members ${JSON.stringify(def)}: no answer (${e.cause?.code || e.message}); server exit: ` +
            `${await Promise.race([solo.exited(), new Promise((ok2) => setTimeout(() => ok2('still running'), 300))])}`);
        }
        assert.equal(r.status, 200, r.text);
        return r.json.results.map((x) => x.$distinct_id);
      };
      assert.deepEqual(await m({ profile: 'user["plan"] == "pro"' }), ['p1']);
      assert.deepEqual(await m({ profile: 'properties["plan"] == "pro"' }), ['p1']);
      await m({ profile: 'event["name"] == "x"' });
    } finally {
      await solo.kill9();
    }
  });

  test('from_date/to_date: local days of the project time zone (Asia/Kolkata)', async () => {
    const k = (def) => members(def, { secret: KOL.api_secret });
    assert.deepEqual(await k({ event: 'Visit', from_date: '2024-03-10', to_date: '2024-03-10' }), ['x2', 'x3']);
    assert.deepEqual(await k({ event: 'Visit', from_date: '2024-03-09', to_date: '2024-03-10' }), ['x1', 'x2', 'x3']);
    assert.deepEqual(await k({ event: 'Visit', from_date: '2024-03-11', to_date: '2024-03-31' }), ['x4']);
    assert.deepEqual(await k({ event: 'Visit', from_date: '2024-03-01', to_date: '2024-03-09' }), ['x1']);
    // users without an event in the range, and the profile-only user p
    assert.deepEqual(await k({ event: 'Visit', from_date: '2024-03-10', to_date: '2024-03-10', did_not: true }), ['p', 'x1', 'x4']);
    // in the hand project (UTC) too: a's purchase 10 days ago, alone in its day
    const day = new Date(ago(10 * D)).toISOString().slice(0, 10);
    assert.deepEqual(await members({ event: 'Purchase', from_date: day, to_date: day }), ['a']);
    assert.deepEqual(await members({ event: 'Purchase', from_date: '2000-01-01', to_date: '2100-12-31', at_least: 2 }), ['a', 'd']);
  });

  test('members: paging, sorted by distinct_id', async () => {
    const def = { event: 'Nothing', did_not: true };
    const page = async (p, s) => ok(q(srv, 'cohorts/members', { definition: def, page: p, page_size: s }));
    same(await page(0, 3), { status: 'ok', id: 0, total: 8, page: 0, page_size: 3, results: [ZZ, 'a', 'b'].map((x) => ({ $distinct_id: x })) }, 'page 0');
    same(await page(1, 3), { status: 'ok', id: 0, total: 8, page: 1, page_size: 3, results: ['c', 'd', 'e'].map((x) => ({ $distinct_id: x })) }, 'page 1');
    same(await page(2, 3), { status: 'ok', id: 0, total: 8, page: 2, page_size: 3, results: ['f', 'g'].map((x) => ({ $distinct_id: x })) }, 'page 2');
    same(await page(3, 3), { status: 'ok', id: 0, total: 8, page: 3, page_size: 3, results: [] }, 'page 3');
    const all = await ok(q(srv, 'cohorts/members', { definition: def }));
    assert.equal(all.page_size, 1000);
    assert.deepEqual(all.results.map((r) => r.$distinct_id), EVERYONE);
    await err(q(srv, 'cohorts/members', { definition: def, page_size: 0 }), 400, /page_size/);
    await err(q(srv, 'cohorts/members', { definition: def, page_size: 10001 }), 400, /page_size/);
    await err(q(srv, 'cohorts/members', { definition: def, page: -1 }), 400, /page/);
  });

  test('size: the member count as of the end of each local day', async () => {
    const size = async (def, from, to, extra = {}) => ok(q(srv, 'cohorts/size', { definition: def, from_date: from, to_date: to, unit: 'day', ...extra }, { auth: KOL.api_secret }));
    same(await size({ event: 'Visit' }, '2024-03-08', '2024-03-12'),
      { status: 'ok', id: 0, unit: 'day', series: { '2024-03-08': 0, '2024-03-09': 1, '2024-03-10': 3, '2024-03-11': 4, '2024-03-12': 4 } }, 'did Visit');
    // every user of today's data, and the profile-only p, until their visit
    same(await size({ event: 'Visit', did_not: true }, '2024-03-08', '2024-03-12'),
      { status: 'ok', id: 0, unit: 'day', series: { '2024-03-08': 5, '2024-03-09': 4, '2024-03-10': 2, '2024-03-11': 1, '2024-03-12': 1 } }, 'did_not Visit');
    // within_days counts back from the end of each day: [end - 1 day, end)
    same(await size({ event: 'Visit', within_days: 1 }, '2024-03-08', '2024-03-12'),
      { status: 'ok', id: 0, unit: 'day', series: { '2024-03-08': 0, '2024-03-09': 1, '2024-03-10': 2, '2024-03-11': 1, '2024-03-12': 0 } }, 'within_days 1');
    // a saved cohort, by id
    const c = await ok(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'Visitors', definition: { event: 'Visit' } }, auth: KOL.api_secret }));
    same(await ok(q(srv, 'cohorts/size', { id: c.id, from_date: '2024-03-10', to_date: '2024-03-11' }, { auth: KOL.api_secret })),
      { status: 'ok', id: c.id, unit: 'day', series: { '2024-03-10': 3, '2024-03-11': 4 } }, 'by id');
    // today (hand project, UTC): the size now
    const today = new Date().toISOString().slice(0, 10);
    const j = await ok(q(srv, 'cohorts/size', { definition: { event: 'Purchase' }, from_date: today, to_date: today }));
    assert.deepEqual(j.series, { [today]: 5 });
  });

  test('composition: profile properties of the members', async () => {
    const j = await ok(q(srv, 'cohorts/composition', { definition: { event: 'Purchase' }, properties: ['plan', 'age', 'email'] }));
    same(j, {
      status: 'ok', id: 0, total: 5,
      properties: {
        plan: { pro: 2, free: 1, undefined: 2 },
        age: { 35: 1, 22: 1, 28: 1, undefined: 2 },
        email: { 'b@example.com': 1, undefined: 4 },
      },
    }, 'composition of Purchase');
    // profile-only members
    const k = await ok(q(srv, 'cohorts/composition', { definition: { profile: 'user["plan"] == "pro"' }, properties: ['age'] }));
    same(k, { status: 'ok', id: 0, total: 3, properties: { age: { 35: 1, 28: 1, 50: 1 } } }, 'composition of pro');
  });
});

// ---- filter_by_cohort ------------------------------------------------------------------

// rep: a seeded small data set over the last 10 days; repm: the same events
// of the cohort's members only.  Every report filtered by the cohort on rep
// must answer what the unfiltered report answers on repm.
// Is T within 2 minutes of a window edge (a whole number of days before now)?
const nearEdge = (t) => { const x = (NOW - t) % D; return x < 2 * MIN || x > D - 2 * MIN; };

// Events and profiles; devices dev<i> are linked to user LINKS[i] (or never).
function genData(R, { users, names, days, nEvents, nDevices, linked, withProfiles, profileOnly }) {
  const ids = Array.from({ length: users }, (_, i) => `u${String(i).padStart(2, '0')}`);
  const links = new Map(); // device id -> user
  const events = [];
  const props = () => {
    const p = {};
    const plan = R.weighted([['free', 45], ['pro', 25], ['team', 15], [null, 15]]);
    if (plan) p.plan = plan;
    if (R.chance(0.8)) p.amount = R.int(0, 100);
    if (R.chance(0.4)) p.tags = [...new Set(Array.from({ length: R.int(1, 3) }, () => R.pick(['red', 'green', 'blue'])))];
    if (R.chance(0.6)) p.mobile = R.chance(0.5);
    return p;
  };
  const when = () => {
    for (;;) {
      const t = NOW - 3 * MIN - Math.floor(R.f() * (days * D - 3 * MIN));
      if (!nearEdge(t)) return t;
    }
  };
  for (let i = 0; i < nEvents; i++) {
    const name = R.weighted(names);
    if (R.chance(0.1) && nDevices) {
      const dev = `dev${R.int(0, nDevices - 1)}`;
      events.push(DEV(name, dev, when(), props()));
    } else {
      events.push(E(name, R.pick(ids), when(), props()));
    }
  }
  for (let i = 0; i < nDevices; i++) {
    if (i >= linked) continue;
    const user = ids[(i * 7) % users];
    links.set(`$device:dev${i}`, user);
    events.push(LINK(R.weighted(names), `dev${i}`, user, when(), props()));
  }
  const profiles = {};
  for (const id of ids) {
    if (!R.chance(withProfiles)) continue;
    const p = {};
    const plan = R.weighted([['free', 40], ['pro', 35], ['team', 15], [null, 10]]);
    if (plan) p.plan = plan;
    if (R.chance(0.8)) p.age = R.int(18, 70);
    if (R.chance(0.5)) p.email = `${id}@example.com`;
    if (R.chance(0.4)) p.tags = [...new Set(Array.from({ length: R.int(1, 3) }, () => R.pick(['vip', 'beta', 'churn'])))];
    profiles[id] = p;
  }
  for (let i = 0; i < profileOnly; i++) {
    const p = {};
    const plan = R.weighted([['free', 40], ['pro', 40], [null, 20]]);
    if (plan) p.plan = plan;
    if (R.chance(0.7)) p.age = R.int(18, 70);
    if (R.chance(0.5)) p.email = `p${i}@example.com`;
    if (R.chance(0.4)) p.tags = [R.pick(['vip', 'beta', 'churn'])];
    profiles[`p${String(i).padStart(2, '0')}`] = p;
  }
  return { events, profiles, links };
}

// ---- an independent evaluation of a definition (docs/QUERIES.md "cohorts") ----

const dayStart = (day, offsetMs) => { const [y, m, d] = day.split('-').map(Number); return Date.UTC(y, m - 1, d) - offsetMs; };
const num = (v) => typeof v === 'number';
// The same expressions in Mixpanel's language and in JS (P: the event's
// properties, U: the profile or undefined).
const WHERES = [
  ['properties["plan"] == "pro"', (P) => P.plan === 'pro'],
  ['properties["plan"] != "free"', (P) => P.plan !== 'free'],
  ['properties["amount"] > 50', (P) => num(P.amount) && P.amount > 50],
  ['properties["amount"] >= 20 and properties["amount"] < 60', (P) => num(P.amount) && P.amount >= 20 && P.amount < 60],
  ['not (properties["amount"] > 50)', (P) => !(num(P.amount) && P.amount > 50)],
  ['defined(properties["tags"])', (P) => P.tags !== undefined],
  ['"red" in properties["tags"]', (P) => Array.isArray(P.tags) && P.tags.includes('red')],
  ['properties["mobile"] == true', (P) => P.mobile === true],
  ['properties["plan"] == "team" or properties["mobile"] == false', (P) => P.plan === 'team' || P.mobile === false],
];
const PROFILE_CONDS = [
  ['user["plan"] == "pro"', (U) => !!U && U.plan === 'pro'],
  ['user["plan"] != "free"', (U) => !(U && U.plan === 'free')],
  ['defined(user["email"])', (U) => !!U && U.email !== undefined],
  ['user["age"] > 40', (U) => !!U && num(U.age) && U.age > 40],
  ['user["age"] >= 25 and user["age"] < 45', (U) => !!U && num(U.age) && U.age >= 25 && U.age < 45],
  ['not defined(user["plan"])', (U) => !(U && U.plan !== undefined)],
  ['"vip" in user["tags"]', (U) => !!U && Array.isArray(U.tags) && U.tags.includes('vip')],
];

class Reference {
  constructor({ events, profiles, links }, { offsetMs, now }) {
    this.offsetMs = offsetMs;
    this.now = now;
    this.profiles = profiles;
    const canon = (did) => links.get(did) ?? did;
    this.byUser = new Map(); // canonical id -> events
    for (const e of events) {
      const did = e.properties.distinct_id;
      if (did === '') continue;
      const u = canon(did);
      if (!this.byUser.has(u)) this.byUser.set(u, []);
      this.byUser.get(u).push(e);
    }
    this.dids = new Set(events.map((e) => e.properties.distinct_id));
  }
  // Every member (sorted by bytes).
  members(def) {
    const out = [];
    for (const [u, evs] of this.byUser) if (this.value(def, evs, this.profiles[u])) out.push(u);
    for (const [id, p] of Object.entries(this.profiles)) {
      if (this.dids.has(id)) continue;
      if (this.value(def, [], p)) out.push(id);
    }
    return byteSort(out);
  }
  value(c, evs, prof) {
    if (c.and) return c.and.every((k) => this.value(k, evs, prof));
    if (c.or) return c.or.some((k) => this.value(k, evs, prof));
    if (c.not) return !this.value(c.not, evs, prof);
    if (c.profile) return c.jsProfile(prof);
    let lo = -Infinity, hi = this.now;
    if (c.within_days) lo = this.now - c.within_days * D;
    if (c.from_date) {
      lo = dayStart(c.from_date, this.offsetMs);
      hi = Math.min(hi, dayStart(c.to_date, this.offsetMs) + D); // fixed offset: every day is 24 h
    }
    let n = 0;
    for (const e of evs) {
      const t = e.properties.time;
      if (e.event === c.event && t >= lo && t < hi && (!c.jsWhere || c.jsWhere(e.properties))) n++;
    }
    if ('did_not' in c) return n === 0;
    if ('at_least' in c) return n >= c.at_least;
    if ('at_most' in c) return n <= c.at_most;
    if ('exactly' in c) return n === c.exactly;
    return n >= 1;
  }
}

// A random definition; the JS predicates ride along as non-enumerable
// properties (JSON.stringify leaves them out).
function randomDef(R, names, depth = 0) {
  const todayLocal = new Date(NOW + KOL_OFFSET_MS).toISOString().slice(0, 10);
  const shift = (day, n) => new Date(Date.parse(day + 'T00:00:00Z') + n * D).toISOString().slice(0, 10);
  const kind = depth >= 3 ? R.weighted([['event', 3], ['profile', 1]])
    : R.weighted([['and', depth === 0 ? 4 : 2], ['or', depth === 0 ? 4 : 2], ['not', 1], ['event', depth === 0 ? 1 : 4], ['profile', depth === 0 ? 0.5 : 1.5]]);
  if (kind === 'and' || kind === 'or') return { [kind]: Array.from({ length: R.int(1, 3) }, () => randomDef(R, names, depth + 1)) };
  if (kind === 'not') return { not: randomDef(R, names, depth + 1) };
  if (kind === 'profile') {
    const [src, fn] = R.pick(PROFILE_CONDS);
    const c = { profile: src };
    Object.defineProperty(c, 'jsProfile', { value: fn });
    return c;
  }
  const c = { event: R.pick(names.map((n) => n[0])) };
  const op = R.weighted([['default', 3], ['did', 1], ['did_not', 2], ['at_least', 3], ['at_most', 2], ['exactly', 2]]);
  if (op === 'did' || op === 'did_not') c[op] = true;
  else if (op === 'at_least') c.at_least = R.int(0, 4);
  else if (op === 'at_most') c.at_most = R.int(0, 3);
  else if (op === 'exactly') c.exactly = R.int(0, 3);
  const w = R.weighted([['none', 4], ['within', 4], ['dates', 3]]);
  if (w === 'within') c.within_days = R.pick([1, 2, 3, 5, 7, 10, 14, 30]);
  else if (w === 'dates') {
    c.from_date = shift(todayLocal, -R.int(0, 22));
    c.to_date = shift(c.from_date, R.int(0, 8));
  }
  if (R.chance(0.35)) {
    const [src, fn] = R.pick(WHERES);
    c.where = src;
    Object.defineProperty(c, 'jsWhere', { value: fn });
  }
  return c;
}

describe('filter_by_cohort', () => {
  const R = rng(4242);
  const NAMES = [['Open', 30], ['View', 30], ['Buy', 12], ['Share', 8]];
  const data = genData(R, { users: 30, names: NAMES, days: 10, nEvents: 500, nDevices: 6, linked: 4, withProfiles: 0.6, profileOnly: 3 });
  const DEF = { or: [{ event: 'Buy', at_least: 2 }, { profile: 'user["plan"] == "pro"' }] };
  Object.defineProperty(DEF.or[1], 'jsProfile', { value: PROFILE_CONDS[0][1] });
  const ref = new Reference(data, { offsetMs: 0, now: NOW });
  const want = ref.members(DEF);
  const wantWithEvents = new Set(want.filter((m) => ref.byUser.has(m)));
  const links = data.links;
  const memberEvents = data.events.filter((e) => wantWithEvents.has(links.get(e.properties.distinct_id) ?? e.properties.distinct_id));
  const today = new Date(NOW).toISOString().slice(0, 10);
  const from = new Date(NOW - 11 * D).toISOString().slice(0, 10);
  let savedId;

  before(async () => {
    await importEvents(srv, data.events, { secret: REP.api_secret });
    await setProfiles(REP.token, data.profiles);
    await importEvents(srv, memberEvents, { secret: REPM.api_secret });
    await setProfiles(REPM.token, data.profiles);
    savedId = (await ok(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'Buyers or pro', definition: DEF }, auth: REP.api_secret }))).id;
  });

  test('the cohort (precondition)', async () => {
    assert.ok(wantWithEvents.size >= 5 && wantWithEvents.size <= 25, `members with events: ${wantWithEvents.size}`);
    assert.deepEqual(await members(DEF, { secret: REP.api_secret }), want);
  });

  const REPORTS = [
    ['segmentation general', 'segmentation', { event: 'View', from_date: from, to_date: today, unit: 'day' }],
    ['segmentation unique', 'segmentation', { event: 'View', from_date: from, to_date: today, unit: 'day', type: 'unique' }],
    ['segmentation unique on plan', 'segmentation', { event: 'Open', from_date: from, to_date: today, type: 'unique', on: 'properties["plan"]' }],
    ['segmentation/sum', 'segmentation/sum', { event: 'Buy', from_date: from, to_date: today, on: 'properties["amount"]' }],
    ['events', 'events', { event: ['Open', 'Buy'], type: 'unique', unit: 'day', from_date: from, to_date: today }],
    ['funnels', 'funnels', { events: [{ event: 'Open' }, { event: 'View' }, { event: 'Buy' }], from_date: from, to_date: today, length: 3, length_unit: 'day', interval: 30 }],
    ['retention', 'retention', { born_event: 'Open', event: 'View', from_date: from, to_date: today, unit: 'day', interval_count: 5 }],
    ['retention compounded', 'retention', { retention_type: 'compounded', event: 'Share', from_date: from, to_date: today, unit: 'week' }],
    ['flows', 'flows', { event: 'Open', from_date: from, to_date: today, steps: 3 }],
    ['events/top general', 'events/top', { type: 'general' }],
    ['events/top unique', 'events/top', { type: 'unique' }],
  ];
  for (const [what, endpoint, params] of REPORTS) {
    test(`${what}: as the report over the members' events only`, async () => {
      const whole = await ok(q(srv, endpoint, params, { auth: REP.api_secret }), `${what} unfiltered`);
      delete whole.computed_at;
      const wantJ = await ok(q(srv, endpoint, params, { auth: REPM.api_secret }), `${what} members only`);
      delete wantJ.computed_at; // segmentation/sum: the time of the answer
      const forms = [['{"id":N}', { id: savedId }], ['N', String(savedId)], ['inline', { definition: DEF }]];
      for (const [form, f] of forms) {
        const got = await ok(q(srv, endpoint, { ...params, filter_by_cohort: f }, { auth: REP.api_secret }), `${what} filter ${form}`);
        delete got.computed_at;
        // events/top: percent_change scales by the elapsed part of today, which moves between requests
        const d = firstDiff(got, wantJ, { rel: endpoint === 'events/top' ? 1e-3 : 1e-9 });
        assert.ok(!d, `${what}, filter_by_cohort=${form}: ${fmtDiff(d || {})}\n  got:  ${JSON.stringify(got).slice(0, 3000)}\n  want: ${JSON.stringify(wantJ).slice(0, 3000)}`);
      }
      if (endpoint !== 'events/top' || wantJ.events.length) assert.notDeepEqual(whole, wantJ, `${what}: the cohort should change the answer`);
    });
  }

  test('a hand check: unique users of View over the range', async () => {
    const seen = new Set(memberEvents.filter((e) => e.event === 'View' && e.properties.time < NOW).map((e) => links.get(e.properties.distinct_id) ?? e.properties.distinct_id));
    const j = await ok(q(srv, 'kpi', { event: 'View', type: 'unique', from_date: from, to_date: today, filter_by_cohort: { id: savedId } }, { auth: REP.api_secret }));
    assert.equal(j.value, seen.size, JSON.stringify(j));
  });

  test('stream/query and a saved report keep to the cohort too', async () => {
    const member = [...wantWithEvents].sort()[0];
    const outsider = [...ref.byUser.keys()].sort().find((u) => !wantWithEvents.has(u));
    const stream = (ids, f) => ok(q(srv, 'stream/query', { distinct_ids: ids, filter_by_cohort: f }, { auth: REP.api_secret }));
    const both = await stream([member, outsider], { id: savedId });
    const alone = await stream([member], undefined);
    same(both, alone, 'stream/query: the outsider\'s events are left out');
    assert.ok(alone.results.events.length > 0);
    // a bookmark with filter_by_cohort among its params runs filtered
    const params = { event: 'View', type: 'unique', unit: 'day', from_date: from, to_date: today, filter_by_cohort: { id: savedId } };
    const b = await ok(q(srv, 'bookmarks/create', {}, { method: 'POST', json: { name: 'members view', type: 'insights', params }, auth: REP.api_secret }));
    const run = await ok(q(srv, 'bookmarks/run', { bookmark_id: b.bookmark_id }, { auth: REP.api_secret }));
    const direct = await ok(q(srv, 'segmentation', params, { auth: REP.api_secret }));
    same(run, direct, 'bookmarks/run');
    same(run, await ok(q(srv, 'segmentation', { ...params, filter_by_cohort: undefined }, { auth: REPM.api_secret })), 'bookmarks/run vs members only');
  });

  test('errors', async () => {
    const seg = (f) => q(srv, 'segmentation', { event: 'View', from_date: from, to_date: today, filter_by_cohort: f }, { auth: REP.api_secret });
    await err(seg({ id: 987654 }), 404, /^no cohort 987654 in this project$/, 'unknown id');
    await err(seg('987654'), 404, /no cohort 987654/, 'unknown id, bare');
    await err(seg('{"id":'), 400, /filter_by_cohort is not valid JSON/, 'bad JSON');
    await err(seg({ foo: 1 }), 400, /filter_by_cohort must be \{"id": N\}/, 'neither id nor definition');
    await err(seg({ id: 0 }), 400, /filter_by_cohort must be/, 'id 0');
    await err(seg({ definition: { event: 'View', within_days: 0 } }), 400, /within_days must be 1\.\.3660/, 'bad inline');
  });
});

describe('engage with filter_by_cohort', () => {
  const eng = async (params) => {
    const j = await ok(q(srv, 'engage', params), `engage ${JSON.stringify(params)}`);
    assert.equal(j.status, 'ok');
    assert.equal(j.total, j.results.length);
    return j;
  };
  const BUYERS = { definition: { event: 'Purchase' } };

  test('include_all_users (default true): members without a profile, with empty $properties', async () => {
    const j = await eng({ filter_by_cohort: BUYERS });
    same(j.results, [
      { $distinct_id: ZZ, $properties: {} },
      { $distinct_id: 'a', $properties: HAND_PROFILES.a },
      { $distinct_id: 'b', $properties: HAND_PROFILES.b },
      { $distinct_id: 'd', $properties: HAND_PROFILES.d },
      { $distinct_id: 'g', $properties: {} },
    ], 'engage Buyers');
    same((await eng({ filter_by_cohort: BUYERS, include_all_users: true })).results, j.results, 'include_all_users=true');
  });

  test('include_all_users=false: only profiles', async () => {
    const j = await eng({ filter_by_cohort: BUYERS, include_all_users: false });
    assert.deepEqual(j.results.map((r) => r.$distinct_id), ['a', 'b', 'd']);
  });

  test('profile-only members, saved cohorts, where, distinct_ids', async () => {
    const pro = { definition: { profile: 'user["plan"] == "pro"' } };
    assert.deepEqual((await eng({ filter_by_cohort: pro })).results.map((r) => r.$distinct_id), ['a', 'd', 'e']);
    const c = await ok(q(srv, 'cohorts/create', {}, { method: 'POST', json: { name: 'Not buyers', definition: { event: 'Purchase', did_not: true } } }));
    assert.deepEqual((await eng({ filter_by_cohort: { id: c.id } })).results.map((r) => r.$distinct_id), ['c', 'e', 'f']);
    assert.deepEqual((await eng({ filter_by_cohort: String(c.id), include_all_users: false })).results.map((r) => r.$distinct_id), ['e', 'f']);
    // where applies to the members without a profile as to an empty profile
    assert.deepEqual((await eng({ filter_by_cohort: BUYERS, where: 'properties["age"] > 25' })).results.map((r) => r.$distinct_id), ['a', 'd']);
    assert.deepEqual((await eng({ filter_by_cohort: BUYERS, where: 'not defined(properties["age"])' })).results.map((r) => r.$distinct_id), [ZZ, 'g']);
    assert.deepEqual((await eng({ filter_by_cohort: BUYERS, distinct_ids: ['b', 'e', 'g'] })).results.map((r) => r.$distinct_id), ['b', 'g']);
    await ok(q(srv, 'cohorts/delete', {}, { method: 'POST', json: { id: c.id } }));
  });

  test('errors', async () => {
    await err(q(srv, 'engage', { filter_by_cohort: { id: 987654 } }), 404, /no cohort 987654/);
    await err(q(srv, 'engage', { filter_by_cohort: 'nope' }), 400, /filter_by_cohort is not valid JSON/);
    await err(q(srv, 'engage', { filter_by_cohort: BUYERS, data_group_id: 'company' }), 400, /cannot be used with data_group_id/);
    await err(q(srv, 'engage', { behaviors: '[]' }), 400, /'behaviors' is not supported/);
  });
});

// ---- randomized differential -----------------------------------------------------------

describe('randomized differential: cohorts/members against an independent evaluation', () => {
  const R = rng(SEED);
  const NAMES = [['Open', 30], ['View', 25], ['Click', 20], ['Buy', 12], ['Share', 10], ['Rare', 3]];
  const data = genData(R, { users: 80, names: NAMES, days: 20, nEvents: 2000, nDevices: 14, linked: 9, withProfiles: 0.55, profileOnly: 10 });
  const ref = new Reference(data, { offsetMs: KOL_OFFSET_MS, now: NOW });

  before(async () => {
    await importEvents(srv, data.events, { secret: DIFF.api_secret });
    await setProfiles(DIFF.token, data.profiles);
  });

  test(`20 random definitions (seed ${SEED})`, async () => {
    const failures = [];
    let nonTrivial = 0;
    for (let i = 0; i < 20; i++) {
      const def = randomDef(R, NAMES);
      const want = ref.members(def);
      if (want.length > 0 && want.length < ref.byUser.size + 10) nonTrivial++;
      const got = await members(def, { secret: DIFF.api_secret });
      if (VERBOSE) console.log(`# def ${i}: ${JSON.stringify(def)} -> ${want.length} members`);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        const extra = got.filter((x) => !want.includes(x)), missing = want.filter((x) => !got.includes(x));
        failures.push(`definition ${i}: ${JSON.stringify(def)}\n    server has ${got.length}, reference ${want.length}; ` +
          `not expected: ${JSON.stringify(extra.slice(0, 10))}, missing: ${JSON.stringify(missing.slice(0, 10))}`);
      }
    }
    assert.ok(nonTrivial >= 5, `only ${nonTrivial} of 20 definitions have a non-trivial answer`);
    if (failures.length) assert.fail(`seed ${SEED}: ${failures.length}/20 definitions differ (COHORTS_DIFF_SEED=${SEED} to replay)\n  ${failures.join('\n  ')}`);
  });
});
