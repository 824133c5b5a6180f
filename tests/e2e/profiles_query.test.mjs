// Profile queries: /api/2.0/engage (spec §10.15) and /api/2.0/stream/query
// (§10.18, newest first), small hand-computed cases (docs/QUERIES.md is the
// contract).  Profiles are written through /engage and /groups with
// $ignore_time, so no $last_seen appears and every expected answer is
// exact.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, ev } from './lib/query.mjs';
import { request } from './lib/load.mjs';

const PG = { name: 'pg', id: 2, token: 'pg-token', api_secret: 'pg-secret', timezone: 'UTC' };

let srv;

// POST data=<JSON> to an ingestion endpoint; asserts the update was accepted.
async function ingest(path, updates) {
  const res = await request(`${srv.url}${path}?verbose=1`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'data=' + encodeURIComponent(JSON.stringify(updates)),
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text).status, 1, `${path}: ${res.text}`);
}
const up = (id, ops, token = DEMO.token) => ({ $token: token, $distinct_id: id, $ignore_time: true, ...ops });
const gup = (key, id, ops) => ({ $token: DEMO.token, $group_key: key, $group_id: id, $ignore_time: true, ...ops });

async function engage(params, opts = {}) {
  const res = await q(srv, 'engage', params, opts);
  assert.equal(res.status, 200, `engage ${JSON.stringify(params)}: ${res.status} ${res.text}`);
  const j = res.json;
  assert.equal(j.status, 'ok');
  assert.equal(typeof j.session_id, 'string');
  assert.ok(j.session_id.length > 0);
  return j;
}
async function expectErr(name, params, status, msg, opts = {}) {
  const res = await q(srv, name, params, opts);
  assert.equal(res.status, status, `${name} ${JSON.stringify(params)}: ${res.status} ${res.text}`);
  assert.equal(typeof res.json?.error, 'string', res.text);
  if (msg) assert.match(res.json.error, msg);
  return res.json;
}
const ids = (j) => j.results.map((r) => r.$distinct_id);

// The profiles, as they must be stored after the updates below.
const ALICE = { $email: 'alice@example.com', plan: 'pro', age: 30, logins: 5, first: 'a1' };
const BOB = { $email: 'bob@example.com', plan: 'free', age: 25, tags: ['x', 'y'] };
const CAROL = { plan: 'pro', age: 41 };
const DAVE = { $email: 'dave@example.com', plan: 'team', age: 19 };
const ERIN = { plan: 'free', age: 35, score: 1.5 };

before(async () => {
  srv = await startServer({ projects: [DEMO, PG] });
  await ingest('/engage', [
    up('alice', { $set: { $email: 'alice@example.com', plan: 'pro', age: 30 } }),
    up('alice', { $set_once: { first: 'a1' }, $add: { logins: 3 } }),
    up('alice', { $set_once: { first: 'a2' }, $add: { logins: 2 } }),
    up('bob', { $set: { $email: 'bob@example.com', plan: 'free', age: 25 }, $union: { tags: ['x'] } }),
    up('bob', { $union: { tags: ['x', 'y'] } }),
    up('carol', { $set: { plan: 'pro', age: 41, tmp: 1 } }),
    up('carol', { $unset: ['tmp'] }),
    up('dave', { $set: { $email: 'dave@example.com', plan: 'team', age: 19 } }),
    up('erin', { $set: { plan: 'free', age: 35 }, $add: { score: 1.5 } }),
    up('zed', { $set: { plan: 'gone' } }),
    up('zed', { $delete: '' }),
  ]);
  await ingest('/groups', [
    gup('company', 'acme', { $set: { name: 'Acme', seats: 10 } }),
    gup('company', 'beta', { $set: { name: 'Beta', seats: 3 } }),
    gup('company', 'beta', { $add: { seats: 1 } }),
    gup('team', 'red', { $set: { name: 'Red' } }),
  ]);
  // stream/query: u1 and u2 in May 2024 (UTC)
  await importEvents(srv, [
    ev('A', 'u1', Date.parse('2024-05-01T10:00:00Z'), { k: 1 }, 'i-a'),
    ev('B', 'u1', Date.parse('2024-05-02T10:00:00.500Z'), { k: [1, 2], s: 'x' }, 'i-b'),
    ev('C', 'u1', Date.parse('2024-05-03T10:00:00Z'), { k: 3 }, 'i-c'),
    ev('D', 'u2', Date.parse('2024-05-02T12:00:00Z'), { n: null }, 'i-d'),
    ev('E', 'u3', Date.parse('2024-05-02T13:00:00Z'), {}, 'i-e'),
  ]);
});

after(async () => {
  // a clean exit (under ASan: no leak, no error report)
  if (srv) assert.equal(await srv.stop(), 0, srv.log().slice(-4000));
});

describe('engage', () => {
  test('one profile by distinct_id: the stored properties as they are', async () => {
    const j = await engage({ distinct_id: 'alice' });
    assert.equal(j.page, 0);
    assert.equal(j.page_size, 1000);
    assert.equal(j.total, 1);
    assert.deepEqual(j.results, [{ $distinct_id: 'alice', $properties: ALICE }]);
  });

  test('every profile, ordered by distinct_id; deleted ones are gone', async () => {
    const j = await engage({});
    assert.equal(j.total, 5);
    assert.deepEqual(j.results, [
      { $distinct_id: 'alice', $properties: ALICE },
      { $distinct_id: 'bob', $properties: BOB },
      { $distinct_id: 'carol', $properties: CAROL },
      { $distinct_id: 'dave', $properties: DAVE },
      { $distinct_id: 'erin', $properties: ERIN },
    ]);
  });

  test('distinct_ids: sorted, repeats once, unknown ids left out; POST form too', async () => {
    const j = await engage({ distinct_ids: ['erin', 'alice', 'nobody', 'alice'] }, { method: 'POST' });
    assert.equal(j.total, 2);
    assert.deepEqual(ids(j), ['alice', 'erin']);
    assert.deepEqual((await engage({ distinct_ids: [] })).total, 0);
    assert.deepEqual(ids(await engage({ distinct_id: 'nobody' })), []);
  });

  test('where: string equality, numbers, defined(), user[...] equals properties[...]', async () => {
    assert.deepEqual(ids(await engage({ where: 'properties["plan"] == "pro"' })), ['alice', 'carol']);
    assert.deepEqual(ids(await engage({ where: 'user["plan"] == "pro"' })), ['alice', 'carol']);
    assert.deepEqual(ids(await engage({ where: 'user["age"] > 30' })), ['carol', 'erin']);
    assert.deepEqual(ids(await engage({ where: 'properties["age"] >= 25 and properties["age"] <= 30' })), ['alice', 'bob']);
    assert.deepEqual(ids(await engage({ where: 'defined(properties["$email"])' })), ['alice', 'bob', 'dave']);
    assert.deepEqual(ids(await engage({ where: 'not defined(user["$email"])' })), ['carol', 'erin']);
    assert.deepEqual(ids(await engage({ where: 'properties["logins"] == 5' })), ['alice']);
    assert.deepEqual(ids(await engage({ where: '"y" in properties["tags"]' })), ['bob']);
    assert.deepEqual(ids(await engage({ where: 'properties["$distinct_id"] == "dave"' })), ['dave']);
    const j = await engage({ where: 'properties["plan"] == "free"' });
    assert.equal(j.total, 2);
    assert.deepEqual(j.results, [{ $distinct_id: 'bob', $properties: BOB }, { $distinct_id: 'erin', $properties: ERIN }]);
  });

  test('where and distinct_ids together', async () => {
    const j = await engage({ distinct_ids: ['carol', 'bob', 'alice'], where: 'properties["plan"] == "pro"' });
    assert.equal(j.total, 2);
    assert.deepEqual(ids(j), ['alice', 'carol']);
  });

  test('output_properties: only those (absent ones left out)', async () => {
    const j = await engage({ where: 'properties["age"] < 26', output_properties: ['plan', '$email', 'missing'] });
    assert.deepEqual(j.results, [
      { $distinct_id: 'bob', $properties: { plan: 'free', $email: 'bob@example.com' } },
      { $distinct_id: 'dave', $properties: { plan: 'team', $email: 'dave@example.com' } },
    ]);
    const k = await engage({ distinct_id: 'carol', output_properties: [] });
    assert.deepEqual(k.results, [{ $distinct_id: 'carol', $properties: {} }]);
  });

  test('group profiles with data_group_id = the group key', async () => {
    const j = await engage({ data_group_id: 'company' });
    assert.equal(j.total, 2);
    assert.deepEqual(j.results, [
      { $distinct_id: 'acme', $group_key: 'company', $group_id: 'acme', $properties: { name: 'Acme', seats: 10 } },
      { $distinct_id: 'beta', $group_key: 'company', $group_id: 'beta', $properties: { name: 'Beta', seats: 4 } },
    ]);
    assert.deepEqual(ids(await engage({ data_group_id: 'company', where: 'properties["seats"] > 5' })), ['acme']);
    assert.deepEqual(ids(await engage({ data_group_id: 'company', where: 'group["seats"] < 5' })), ['beta']);
    assert.deepEqual(ids(await engage({ data_group_id: 'company', distinct_id: 'beta' })), ['beta']);
    assert.deepEqual(ids(await engage({ data_group_id: 'company', where: 'properties["$group_id"] == "beta"' })), ['beta']);
    assert.deepEqual(ids(await engage({ data_group_id: 'team' })), ['red']);
    assert.equal((await engage({ data_group_id: 'nosuchkey' })).total, 0);
    // user profiles are not group profiles
    assert.equal((await engage({ data_group_id: 'company', distinct_id: 'alice' })).total, 0);
  });

  test('errors', async () => {
    await expectErr('engage', { distinct_ids: '["a",' }, 400, /'distinct_ids' must be a JSON array/);
    await expectErr('engage', { distinct_ids: '[1,2]' }, 400, /'distinct_ids' must be a JSON array/);
    await expectErr('engage', { distinct_ids: '{"a":1}' }, 400, /'distinct_ids'/);
    await expectErr('engage', { output_properties: 'plan' }, 400, /'output_properties' must be a JSON array/);
    await expectErr('engage', { where: 'properties["plan" ==' }, 400, /invalid expression in 'where'/);
    await expectErr('engage', { where: 'properties["plan"] and true' }, 400, /cannot evaluate expression/);
    await expectErr('engage', { filter_by_cohort: '{"id":1}' }, 404, /no cohort 1/);
    await expectErr('engage', { filter_by_cohort: 'nope' }, 400, /filter_by_cohort/);
    await expectErr('engage', { behaviors: '[]' }, 400, /'behaviors' is not supported/);
    await expectErr('engage', { page: 1 }, 400, /'session_id' is required/);
    await expectErr('engage', { page: -1 }, 400, /'page'/);
    await expectErr('engage', { page_size: 0 }, 400, /'page_size' must be an integer from 1 to 1000/);
    await expectErr('engage', { page_size: 1001 }, 400, /'page_size'/);
    await expectErr('engage', { page: 1, session_id: 'no-such-session' }, 400, /^request for page in uncached query for params$/);
    // page 0 with an unknown session runs afresh, under a new session id
    const fresh = await engage({ page: 0, session_id: 'no-such-session' });
    assert.equal(fresh.total, 5);
    assert.notEqual(fresh.session_id, 'no-such-session');
    await expectErr('engage', {}, 401, null, { auth: null });
    await expectErr('engage', {}, 401, null, { auth: 'wrong-secret' });
    // include_all_users is accepted and ignored
    assert.equal((await engage({ include_all_users: 'false' })).total, 5);
  });
});

describe('engage paging', () => {
  test('page_size 2 over 5 profiles: total, pages 0..3 of one session, a snapshot', async () => {
    const P = PG.api_secret;
    await ingest('/engage', ['p1', 'p2', 'p3', 'p4', 'p5'].map((id, i) => up(id, { $set: { n: i + 1 } }, PG.token)));
    const p0 = await engage({ page_size: 2 }, { auth: P });
    assert.equal(p0.total, 5);
    assert.equal(p0.page, 0);
    assert.equal(p0.page_size, 2);
    assert.deepEqual(p0.results, [{ $distinct_id: 'p1', $properties: { n: 1 } }, { $distinct_id: 'p2', $properties: { n: 2 } }]);
    const sid = p0.session_id;

    // change the profiles after page 0: the session keeps its list and order
    await ingest('/engage', [
      up('p0', { $set: { n: 0 } }, PG.token),          // new, sorts first
      up('p3', { $set: { n: 33 } }, PG.token),         // changed: shown as it is now
      up('p5', { $delete: '' }, PG.token),             // deleted: stays in the list, properties {}
    ]);
    const p1 = await engage({ page: 1, page_size: 2, session_id: sid }, { auth: P });
    assert.equal(p1.total, 5);
    assert.equal(p1.page, 1);
    assert.equal(p1.session_id, sid);
    assert.deepEqual(p1.results, [{ $distinct_id: 'p3', $properties: { n: 33 } }, { $distinct_id: 'p4', $properties: { n: 4 } }]);
    const p2 = await engage({ page: 2, page_size: 2, session_id: sid }, { auth: P, method: 'POST' });
    assert.equal(p2.total, 5);
    assert.deepEqual(p2.results, [{ $distinct_id: 'p5', $properties: {} }]);
    const p3 = await engage({ page: 3, page_size: 2, session_id: sid }, { auth: P });
    assert.deepEqual(p3.results, []);
    assert.equal(p3.total, 5);
    // page 0 again with the session: the same snapshot
    assert.deepEqual(ids(await engage({ page: 0, page_size: 2, session_id: sid }, { auth: P })), ['p1', 'p2']);

    // a new query sees the new state
    const fresh = await engage({ page_size: 2 }, { auth: P });
    assert.equal(fresh.total, 5);
    assert.notEqual(fresh.session_id, sid);
    assert.deepEqual(ids(fresh), ['p0', 'p1']);

    // the session belongs to its parameters and its project
    await expectErr('engage', { page: 1, page_size: 2, session_id: sid, where: 'true' }, 400, /uncached query/, { auth: P });
    await expectErr('engage', { page: 1, page_size: 2, session_id: sid }, 400, /uncached query/);
  });

  test('a where session pages its own matches', async () => {
    const P = PG.api_secret;
    const where = 'properties["n"] >= 2';
    const p0 = await engage({ page_size: 1, where }, { auth: P });
    assert.equal(p0.total, 3); // p2 (2), p3 (33), p4 (4); p5 is deleted
    assert.deepEqual(ids(p0), ['p2']);
    const p2 = await engage({ page: 2, page_size: 1, where, session_id: p0.session_id }, { auth: P });
    assert.deepEqual(ids(p2), ['p4']);
  });
});

describe('stream/query', () => {
  const T = (iso) => Math.floor(Date.parse(iso) / 1000);
  const A = { event: 'A', properties: { time: T('2024-05-01T10:00:00Z'), distinct_id: 'u1', $insert_id: 'i-a', $import: true, k: 1 } };
  const B = { event: 'B', properties: { time: T('2024-05-02T10:00:00Z'), distinct_id: 'u1', $insert_id: 'i-b', $import: true, k: [1, 2], s: 'x' } };
  const C = { event: 'C', properties: { time: T('2024-05-03T10:00:00Z'), distinct_id: 'u1', $insert_id: 'i-c', $import: true, k: 3 } };
  const D = { event: 'D', properties: { time: T('2024-05-02T12:00:00Z'), distinct_id: 'u2', $insert_id: 'i-d', $import: true, n: null } };

  async function stream(params) {
    const res = await q(srv, 'stream/query', params);
    assert.equal(res.status, 200, `stream/query ${JSON.stringify(params)}: ${res.status} ${res.text}`);
    assert.equal(res.json.status, 'ok');
    return res.json.results.events;
  }

  test('one user, newest first, time in whole seconds', async () => {
    assert.deepEqual(await stream({ distinct_ids: ['u1'] }), [C, B, A]);
    assert.equal(B.properties.time, 1714644000); // 10:00:00.500 -> floor
  });

  test('several ids merged newest first, each user once', async () => {
    assert.deepEqual(await stream({ distinct_ids: ['u2', 'u1', 'u1', 'nobody'] }), [C, D, B, A]);
  });

  test('from_date / to_date (inclusive days) and limit', async () => {
    assert.deepEqual(await stream({ distinct_ids: ['u1', 'u2'], from_date: '2024-05-02', to_date: '2024-05-02' }), [D, B]);
    assert.deepEqual(await stream({ distinct_ids: ['u1', 'u2'], from_date: '2024-05-03', to_date: '2024-05-31' }), [C]);
    assert.deepEqual(await stream({ distinct_ids: ['u1', 'u2'], from_date: '2024-06-01', to_date: '2024-06-30' }), []);
    assert.deepEqual(await stream({ distinct_ids: ['u1', 'u2'], limit: 2 }), [C, D]);
    assert.deepEqual(await stream({ distinct_ids: ['u1', 'u2'], limit: 1, from_date: '2024-05-01', to_date: '2024-05-02' }), [D]);
  });

  test('unknown ids and an empty list give no events', async () => {
    assert.deepEqual(await stream({ distinct_ids: ['nobody'] }), []);
    assert.deepEqual(await stream({ distinct_ids: [] }), []);
    assert.deepEqual(await stream({ distinct_ids: [''] }), []);
  });

  test('errors', async () => {
    await expectErr('stream/query', {}, 400, /'distinct_ids' is a required parameter/);
    await expectErr('stream/query', { distinct_ids: 'u1' }, 400, /'distinct_ids' must be a JSON array/);
    await expectErr('stream/query', { distinct_ids: '[1]' }, 400, /'distinct_ids' must be a JSON array/);
    await expectErr('stream/query', { distinct_ids: ['u1'], from_date: '2024-05-01' }, 400, /'to_date' is a required parameter/);
    await expectErr('stream/query', { distinct_ids: ['u1'], from_date: '2024-5-1', to_date: '2024-05-02' }, 400, /'from_date' is invalid/);
    await expectErr('stream/query', { distinct_ids: ['u1'], limit: 10001 }, 400, /'limit' must be an integer from 1 to 10000/);
    await expectErr('stream/query', { distinct_ids: ['u1'] }, 401, null, { auth: null });
  });
});
