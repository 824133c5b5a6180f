// Privacy deletions (Mixpanel's GDPR API v3 shape; contract: src/q_privacy.c,
// include/store.h "privacy deletions"):
//   POST /api/app/data-deletions/v3.0/?token=T  {"distinct_ids":[...],"compliance_type":"GDPR"}
//   GET  /api/app/data-deletions/v3.0/TASK
// A deletion covers every distinct_id merged with the ones asked for.  After
// it no report, export, stream, profile query or identity graph shows the
// deleted user's data (including anonymous events sent before the merge),
// also after a restart with a projection file written before the deletion;
// other users are untouched; new events for the id are stored again.
// Every expected answer was worked out by hand from the events below.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startServer, DEMO, exportEvents } from './lib/server.mjs';
import { q, importEvents, firstDiff, fmtDiff } from './lib/query.mjs';
import { request, healthz } from './lib/load.mjs';

const ORIG = { name: 'orig', id: 2, token: 'orig-token', api_secret: 'orig-secret', timezone: 'UTC', identity: 'original' };
const DEL = '/api/app/data-deletions/v3.0/';

const E = (name, user, iso, props, id) => ({
  event: name,
  properties: { time: Date.parse(iso), distinct_id: user, $insert_id: id, ...props },
});

// demo (simplified identity): alice's device "da" sends o1 anonymously, then o2
// carries both $device_id and $user_id (the link $device:da -> alice).
const O1 = E('Open', '$device:da', '2024-04-01T09:00:00Z', { $device_id: 'da', email: 'alice@example.com' }, 'o1');
const O2 = E('Open', 'alice', '2024-04-01T10:00:00Z', { $device_id: 'da', $user_id: 'alice' }, 'o2');
const O3 = E('Buy', 'alice', '2024-04-02T10:00:00Z', { price: 5 }, 'a-buy');
const O4 = E('Open', 'bob', '2024-04-01T11:00:00Z', {}, 'o4');
const O5 = E('Buy', 'bob', '2024-04-02T11:00:00Z', { price: 7 }, 'o5');
const O6 = E('Open', 'carol', '2024-04-01T12:00:00Z', {}, 'o6');
const O7 = E('Buy', 'alice', '2024-05-15T10:00:00Z', { price: 9 }, 'o7'); // another shard (May)
const DEMO_EVENTS = [O1, O2, O3, O4, O5, O6, O7];

// orig (original identity): anon -> ouser by $identify, oalias -> ouser by $create_alias.
const ANON = '0123456789abcdef0123';
const ORIG_EVENTS = [
  E('Open', ANON, '2024-04-01T09:00:00Z', {}, 'q1'),
  E('$identify', 'ouser', '2024-04-01T10:00:00Z', { $anon_id: ANON, $identified_id: 'ouser' }, 'q2'),
  E('$create_alias', 'ouser', '2024-04-01T10:30:00Z', { alias: 'oalias' }, 'q3'),
  E('Buy', 'oalias', '2024-04-01T11:00:00Z', {}, 'q4'),
  E('Buy', 'ouser', '2024-04-01T12:00:00Z', {}, 'q5'),
  E('Open', 'other2', '2024-04-01T13:00:00Z', {}, 'q6'),
];

let srv;

async function ingest(path_, updates) {
  const res = await request(`${srv.url}${path_}?verbose=1`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'data=' + encodeURIComponent(JSON.stringify(updates)),
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text).status, 1, `${path_}: ${res.text}`);
}
const up = (id, set, token = DEMO.token) => ({ $token: token, $distinct_id: id, $ignore_time: true, $set: set });

async function ok(resP, what) {
  const res = await resP;
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text.slice(0, 500)}`);
  return res.json;
}
function same(got, want, what) {
  const d = firstDiff(got, want);
  assert.ok(!d, `${what} ${fmtDiff(d || {})}\n  got:  ${JSON.stringify(got).slice(0, 3000)}\n  want: ${JSON.stringify(want)}`);
}

// POST a deletion; returns the HTTP answer.
function postDeletion(body, { auth, token = DEMO.token, method = 'POST' } = {}) {
  return q(srv, '', token === null ? {} : { token }, { method, auth, path: DEL, json: method === 'POST' ? body : undefined });
}
const getTask = (task, auth) => q(srv, '', {}, { path: DEL + task, auth });

const st = (count, avg, fromStart, scr, ocr, name) =>
  ({ count, avg_time: avg, avg_time_from_start: fromStart, step_conv_ratio: scr, overall_conv_ratio: ocr, goal: name, event: name });
const seg1 = (ev, day, v) => ({ data: { series: [day], values: { [ev]: { [day]: v } } }, legend_size: 1 });

// Every view of the demo project's data, compared with WANT (see BEFORE/AFTER).
async function checkDemo(want, what) {
  const D1 = { from_date: '2024-04-01', to_date: '2024-04-01' };
  same(await ok(q(srv, 'segmentation', { event: 'Open', ...D1 }), 'seg'), seg1('Open', '2024-04-01', want.openGeneral), `${what}: segmentation general`);
  same(await ok(q(srv, 'segmentation', { event: 'Open', ...D1, type: 'unique' }), 'seg'), seg1('Open', '2024-04-01', want.openUnique), `${what}: segmentation unique`);
  same(await ok(q(srv, 'segmentation', { event: 'Buy', from_date: '2024-04-02', to_date: '2024-04-02' }), 'seg'), seg1('Buy', '2024-04-02', want.buy), `${what}: segmentation Buy`);
  same(await ok(q(srv, 'segmentation', { event: 'Buy', from_date: '2024-05-15', to_date: '2024-05-15' }), 'seg'), seg1('Buy', '2024-05-15', want.buyMay), `${what}: segmentation Buy (May shard)`);
  same(await ok(q(srv, 'funnels', { events: [{ event: 'Open' }, { event: 'Buy' }], ...D1 }), 'funnels'), want.funnel, `${what}: funnels`);
  same(await ok(q(srv, 'retention', { born_event: 'Open', event: 'Buy', ...D1, interval_count: 1 }), 'retention'), want.retention, `${what}: retention`);
  const ex = (await exportEvents(srv)).map((e) => e.properties.$insert_id).sort();
  same(ex, want.exported, `${what}: export`);
  for (const id of ['alice', '$device:da', 'bob']) {
    const s = await ok(q(srv, 'stream/query', { distinct_ids: [id] }), 'stream');
    same(s.results.events.map((e) => e.properties.$insert_id), want.stream[id], `${what}: stream/query ${id}`);
  }
  const en = await ok(q(srv, 'engage', { distinct_ids: ['alice', '$device:da', 'bob'] }), 'engage');
  same(en.results.map((r) => r.$distinct_id), want.profiles, `${what}: engage`);
  for (const id of ['alice', '$device:da']) {
    const g = await ok(q(srv, 'identity/graph', { distinct_id: id }), 'graph');
    same({ canonical_id: g.canonical_id, distinct_ids: [...g.distinct_ids].sort(), links: g.links.length }, want.graph[id], `${what}: identity/graph ${id}`);
  }
  const h = await healthz(srv);
  assert.equal(h.json?.projects?.demo?.events, want.total, `${what}: /healthz events: ${h.text}`);
}

const BEFORE = {
  openGeneral: 4, openUnique: 3, buy: 2, buyMay: 1,
  // alice's cluster enters at o1 09:00, buys 04-02 10:00 (90000 s); bob 11:00 -> 11:00 (86400 s); carol never
  funnel: { meta: { dates: ['2024-04-01'] }, data: { '2024-04-01': {
    steps: [st(3, null, null, 1, 1, 'Open'), st(2, 88200, 88200, 2 / 3, 2 / 3, 'Buy')],
    analysis: { completion: 2, starting_amount: 3, steps: 2, worst: 1 } } } },
  // born 09:00 (alice), 11:00 (bob), 12:00 (carol); Buy 25 h and 24 h later -> bucket 1
  retention: { '2024-04-01': { counts: [0, 2], first: 3 } },
  exported: ['a-buy', 'o1', 'o2', 'o4', 'o5', 'o6', 'o7'],
  stream: { alice: ['o7', 'a-buy', 'o2', 'o1'], '$device:da': ['o7', 'a-buy', 'o2', 'o1'], bob: ['o5', 'o4'] },
  profiles: ['$device:da', 'alice', 'bob'],
  graph: {
    alice: { canonical_id: 'alice', distinct_ids: ['$device:da', 'alice'], links: 1 },
    '$device:da': { canonical_id: 'alice', distinct_ids: ['$device:da', 'alice'], links: 1 },
  },
  total: 7,
};
const AFTER = {
  openGeneral: 2, openUnique: 2, buy: 1, buyMay: 0,
  funnel: { meta: { dates: ['2024-04-01'] }, data: { '2024-04-01': {
    steps: [st(2, null, null, 1, 1, 'Open'), st(1, 86400, 86400, 0.5, 0.5, 'Buy')],
    analysis: { completion: 1, starting_amount: 2, steps: 2, worst: 1 } } } },
  retention: { '2024-04-01': { counts: [0, 1], first: 2 } },
  exported: ['o4', 'o5', 'o6'],
  stream: { alice: [], '$device:da': [], bob: ['o5', 'o4'] },
  profiles: ['bob'],
  graph: {
    alice: { canonical_id: 'alice', distinct_ids: ['alice'], links: 0 },
    '$device:da': { canonical_id: '$device:da', distinct_ids: ['$device:da'], links: 0 },
  },
  total: 3,
};

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

before(async () => {
  srv = await startServer({ projects: [DEMO, ORIG] });
  await importEvents(srv, DEMO_EVENTS);
  await importEvents(srv, ORIG_EVENTS, { secret: ORIG.api_secret });
  await ingest('/engage', [up('alice', { plan: 'pro', $email: 'alice@example.com' }), up('$device:da', { seen: true }), up('bob', { plan: 'free' })]);
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

let task;
let projMtime = null;

describe('deleting a simplified-identity user', () => {
  test('before: every view shows alice\'s cluster', async () => {
    await checkDemo(BEFORE, 'before');
    // a projection file written before the deletion, to be checked after the restart
    const file = path.join(srv.dataDir, DEMO.name, 'projection.bin');
    await waitFor(() => fs.existsSync(file), 15000, 'projection.bin');
    projMtime = fs.statSync(file).mtimeMs;
  });

  test('POST: 200 {"status":"ok","results":{"task_id"}}; GET the task: SUCCESS with the counts and the whole cluster', async () => {
    const r = await postDeletion({ distinct_ids: ['alice'], compliance_type: 'GDPR' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.status, 'ok', r.text);
    task = r.json.results?.task_id;
    assert.equal(typeof task, 'string', r.text);
    assert.ok(task.length > 0, r.text);
    assert.deepEqual(Object.keys(r.json).sort(), ['results', 'status']);
    const g = await getTask(task);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.json.status, 'ok', g.text);
    const res = g.json.results;
    assert.equal(res.task_id, task);
    assert.equal(res.status, 'SUCCESS', g.text);
    assert.equal(res.compliance_type, 'GDPR', g.text);
    assert.deepEqual([...res.distinct_ids].sort(), ['$device:da', 'alice'], g.text);
    // events o1 o2 a-buy o7 (two shards), profiles alice and $device:da, the link $device:da -> alice
    assert.deepEqual(res.deleted, { events: 4, profiles: 2, identity_links: 1 }, g.text);
  });

  test('after: every view has lost alice\'s cluster, bob and carol untouched', async () => {
    await checkDemo(AFTER, 'after');
    // the other project is untouched
    const ex = await exportEvents(srv, { secret: ORIG.api_secret });
    assert.equal(ex.length, ORIG_EVENTS.length);
  });

  test('the deleted strings are gone from the shard files too (dict scrubbed, secure_delete)', async () => {
    const dir = path.join(srv.dataDir, DEMO.name);
    for (const f of fs.readdirSync(dir).filter((n) => /^events-.*\.db$/.test(n))) {
      const file = path.join(dir, f);
      const out = execFileSync('sqlite3', [file, "SELECT s FROM dict WHERE s IN ('alice', '$device:da', 'alice@example.com')"]).toString();
      assert.equal(out.trim(), '', `${f}: dict still holds ${out.trim()}`);
      // every string a remaining event uses is still there
      const broken = execFileSync('sqlite3', [file, `SELECT count(*) FROM (SELECT e, d FROM events WHERE e<>0 UNION ALL SELECT e, d FROM stage WHERE e<>0) r
        LEFT JOIN dict x ON x.id = r.e LEFT JOIN dict y ON y.id = r.d
        WHERE x.s IS NULL OR y.s IS NULL OR substr(x.s,1,1) = char(1) OR substr(y.s,1,1) = char(1)`]).toString().trim();
      assert.equal(broken, '0', `${f}: remaining events lost a string`);
    }
  });

  test('after a restart (projection file from before the deletion): still gone', async () => {
    const file = path.join(srv.dataDir, DEMO.name, 'projection.bin');
    const mt = fs.existsSync(file) ? fs.statSync(file).mtimeMs : null;
    assert.equal(await srv.stop(), 0);
    if (mt !== projMtime) process.stderr.write(`# note: projection.bin was rewritten after the deletion (${projMtime} -> ${mt})\n`);
    await srv.restart();
    await checkDemo(AFTER, 'after restart');
    const g = await getTask(task);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.json.results.status, 'SUCCESS');
    assert.deepEqual(g.json.results.deleted, { events: 4, profiles: 2, identity_links: 1 });
  });

  test('new events for the id are stored again; a re-sent identical event is not blocked by the deleted one', async () => {
    // O3 and O1 exactly as before (same $insert_id), and a new linking event
    const O8 = E('Open', 'alice', '2024-04-03T10:00:00Z', { $device_id: 'da', $user_id: 'alice' }, 'o8');
    await importEvents(srv, [O3, O1, O8]);
    let ex = (await exportEvents(srv)).map((e) => e.properties.$insert_id).sort();
    assert.deepEqual(ex, ['a-buy', 'o1', 'o4', 'o5', 'o6', 'o8']);
    same(await ok(q(srv, 'segmentation', { event: 'Buy', from_date: '2024-04-02', to_date: '2024-04-02' }), 'seg'), seg1('Buy', '2024-04-02', 2), 'Buy again');
    // o1 is $device:da's, merged into alice again by o8
    same(await ok(q(srv, 'segmentation', { event: 'Open', from_date: '2024-04-01', to_date: '2024-04-03', type: 'unique', unit: 'month' }), 'seg'),
      seg1('Open', '2024-04-01', 3), 'Open unique again');
    const s = await ok(q(srv, 'stream/query', { distinct_ids: ['alice'] }), 'stream');
    assert.deepEqual(s.results.events.map((e) => e.properties.$insert_id), ['o8', 'a-buy', 'o1']);
    // sent once more: now a duplicate
    await importEvents(srv, [O3, O1]);
    ex = (await exportEvents(srv)).map((e) => e.properties.$insert_id).sort();
    assert.deepEqual(ex, ['a-buy', 'o1', 'o4', 'o5', 'o6', 'o8']);
    const h = await healthz(srv);
    assert.equal(h.json.projects.demo.events, 6, h.text);
  });
});

describe('errors', () => {
  test('auth: missing 401, wrong secret 401', async () => {
    let r = await postDeletion({ distinct_ids: ['bob'], compliance_type: 'GDPR' }, { auth: null });
    assert.equal(r.status, 401, r.text);
    r = await postDeletion({ distinct_ids: ['bob'], compliance_type: 'GDPR' }, { auth: 'wrong-secret' });
    assert.equal(r.status, 401, r.text);
    r = await getTask(task, null);
    assert.equal(r.status, 401, r.text);
  });

  test('GET on the POST path 405', async () => {
    let r = await q(srv, '', { token: DEMO.token }, { path: DEL });
    assert.equal(r.status, 405, r.text);
    r = await q(srv, '', {}, { path: DEL.slice(0, -1) });
    assert.equal(r.status, 405, r.text);
  });

  test('bad bodies: 400 with a message', async () => {
    for (const [body, what] of [
      [{ compliance_type: 'GDPR' }, 'no distinct_ids'],
      [{ distinct_ids: [], compliance_type: 'GDPR' }, 'empty distinct_ids'],
      [{ distinct_ids: 'bob', compliance_type: 'GDPR' }, 'distinct_ids a string'],
      [{ distinct_ids: [''], compliance_type: 'GDPR' }, 'an empty id'],
      [{ distinct_ids: [7], compliance_type: 'GDPR' }, 'a number'],
      [{ distinct_ids: ['bob'], compliance_type: 'XYZ' }, 'compliance_type XYZ'],
      [{ distinct_ids: ['bob'], compliance_type: 5 }, 'compliance_type a number'],
    ]) {
      const r = await postDeletion(body);
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.error, 'string', `${what}: ${r.text}`);
    }
    // the token of another project
    const r = await postDeletion({ distinct_ids: ['bob'], compliance_type: 'GDPR' }, { token: ORIG.token });
    assert.equal(r.status, 400, r.text);
    assert.equal(typeof r.json?.error, 'string', r.text);
    // nothing was deleted by any of them
    const ex = (await exportEvents(srv)).map((e) => e.properties.$insert_id);
    assert.ok(ex.includes('o4') && ex.includes('o5'), ex.join(','));
  });

  test('unknown task 404; a task of another project 404', async () => {
    let r = await getTask('00000000000000000000000000000000');
    assert.equal(r.status, 404, r.text);
    r = await getTask(task, ORIG.api_secret);
    assert.equal(r.status, 404, r.text);
  });

  test('an id nobody has: SUCCESS with zero counts (CCPA); a profile-only id', async () => {
    const r = await postDeletion({ distinct_ids: ['nobody'], compliance_type: 'CCPA' });
    assert.equal(r.status, 200, r.text);
    const g = await getTask(r.json.results.task_id);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.json.results.status, 'SUCCESS');
    assert.equal(g.json.results.compliance_type, 'CCPA');
    assert.deepEqual(g.json.results.distinct_ids, ['nobody']);
    assert.deepEqual(g.json.results.deleted, { events: 0, profiles: 0, identity_links: 0 });
    // a profile without events
    await ingest('/engage', [up('pat', { plan: 'p' })]);
    const r2 = await postDeletion({ distinct_ids: ['pat'], compliance_type: 'GDPR' });
    assert.equal(r2.status, 200, r2.text);
    const g2 = await ok(getTask(r2.json.results.task_id), 'task');
    assert.deepEqual(g2.results.distinct_ids, ['pat']);
    assert.deepEqual(g2.results.deleted, { events: 0, profiles: 1, identity_links: 0 });
    const en = await ok(q(srv, 'engage', { distinct_id: 'pat' }), 'engage');
    assert.equal(en.total, 0, JSON.stringify(en));
  });
});

describe('original identity', () => {
  const O = { auth: ORIG.api_secret };
  const D1 = { from_date: '2024-04-01', to_date: '2024-04-01' };

  test('deleting an alias deletes the whole cluster', async () => {
    const g0 = await ok(q(srv, 'identity/graph', { distinct_id: 'oalias' }, O), 'graph');
    assert.equal(g0.canonical_id, 'ouser', JSON.stringify(g0));
    assert.deepEqual([...g0.distinct_ids].sort(), [ANON, 'oalias', 'ouser']);
    same(await ok(q(srv, 'segmentation', { event: 'Buy', ...D1, type: 'unique' }, O), 'seg'), seg1('Buy', '2024-04-01', 1), 'orig before');
    await ingest('/engage', [up('ouser', { plan: 'x' }, ORIG.token), up('other2', { plan: 'y' }, ORIG.token)]);

    const r = await postDeletion({ distinct_ids: ['oalias'], compliance_type: 'GDPR' }, { auth: ORIG.api_secret, token: ORIG.token });
    assert.equal(r.status, 200, r.text);
    const t = await ok(getTask(r.json.results.task_id, ORIG.api_secret), 'task');
    assert.equal(t.results.status, 'SUCCESS');
    assert.deepEqual([...t.results.distinct_ids].sort(), [ANON, 'oalias', 'ouser']);
    // q1 .. q5 (the $identify and $create_alias events are ouser's), ouser's profile; no idlinks in original mode
    assert.deepEqual(t.results.deleted, { events: 5, profiles: 1, identity_links: 0 });

    const ex = (await exportEvents(srv, { secret: ORIG.api_secret })).map((e) => e.properties.$insert_id);
    assert.deepEqual(ex, ['q6']);
    same(await ok(q(srv, 'segmentation', { event: 'Buy', ...D1, type: 'unique' }, O), 'seg'), seg1('Buy', '2024-04-01', 0), 'orig Buy after');
    same(await ok(q(srv, 'segmentation', { event: 'Open', ...D1, type: 'unique' }, O), 'seg'), seg1('Open', '2024-04-01', 1), 'orig Open after');
    for (const id of [ANON, 'oalias', 'ouser']) {
      const s = await ok(q(srv, 'stream/query', { distinct_ids: [id] }, O), 'stream');
      assert.deepEqual(s.results.events, [], id);
      const g = await ok(q(srv, 'identity/graph', { distinct_id: id }, O), 'graph');
      assert.equal(g.canonical_id, id, JSON.stringify(g));
      assert.deepEqual(g.links, [], JSON.stringify(g));
    }
    const en = await ok(q(srv, 'engage', {}, O), 'engage');
    assert.deepEqual(en.results.map((p) => p.$distinct_id), ['other2']);
    const h = await healthz(srv);
    assert.equal(h.json.projects.orig.events, 1, h.text);
  });
});
