// Saved reports ("bookmarks"), dashboards, kpi and insights?bookmark_id=
// (docs/QUERIES.md#saved-reports-bookmarks, #kpi, #dashboards).  A saved report run must
// answer exactly what the same report asked directly answers; kpi values
// below are worked out by hand from the events listed next to them.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents } from './lib/query.mjs';

const LA = { name: 'la', id: 2, token: 'la-token', api_secret: 'la-secret', timezone: 'America/Los_Angeles' };
const la = { auth: LA.api_secret };

let n = 0;
const E = (name, user, iso, props = {}) => ({
  event: name,
  properties: { time: typeof iso === 'number' ? iso : Date.parse(iso), distinct_id: user, $insert_id: `r${++n}`, ...props },
});

// demo (UTC)
//   2024-05-26..28: nothing                       (kpi previous = 0)
//   2024-05-29..31: Open u4, u4, u5   3 events, 2 users
//   2024-06-01..03: Open u1 u2 u1 | u1 u3 | u2   6 events, 3 users (daily uniques 2 + 2 + 1 = 5)
const DEMO_EVENTS = [
  E('Open', 'u4', '2024-05-29T10:00:00Z', { plan: 'free' }),
  E('Open', 'u4', '2024-05-30T10:00:00Z', { plan: 'free' }),
  E('Open', 'u5', '2024-05-31T23:59:59.999Z', { plan: 'pro' }),
  E('Open', 'u1', '2024-06-01T00:00:00Z', { plan: 'pro' }),
  E('Open', 'u2', '2024-06-01T08:00:00Z', { plan: 'free' }),
  E('Open', 'u1', '2024-06-01T09:00:00Z', { plan: 'pro' }),
  E('Pay', 'u1', '2024-06-01T09:30:00Z', { amount: 5 }),
  E('Open', 'u1', '2024-06-02T10:00:00Z', { plan: 'pro' }),
  E('Open', 'u3', '2024-06-02T11:00:00Z', { plan: 'team' }),
  E('Pay', 'u3', '2024-06-02T12:00:00Z', { amount: 7 }),
  E('Open', 'u2', '2024-06-03T23:59:59.999Z', { plan: 'free' }),
];
// relative to now (UTC days): today, yesterday, 3 days ago
const now = Date.now();
const DAY = 86400e3;
const RECENT = [E('Recent', 'x1', now - 1000), E('Recent', 'x2', now - DAY), E('Recent', 'x3', now - 3 * DAY)];
const day = (ms) => new Date(ms).toISOString().slice(0, 10);

// la (America/Los_Angeles, -07:00 in June): local 06-01 00:00 and 06-02 23:00
const LA_EVENTS = [E('Open', 'l1', '2024-06-01T07:00:00Z'), E('Open', 'l2', '2024-06-03T06:00:00Z')];

const R3 = { from_date: '2024-06-01', to_date: '2024-06-03' };
const INSIGHTS = { event: 'Open', type: 'general', unit: 'day', ...R3 };
const FUNNEL = { events: [{ event: 'Open' }, { event: 'Pay' }], ...R3, length: 1, length_unit: 'day' };
const RETENTION = { born_event: 'Open', event: 'Open', unit: 'day', ...R3 };
const KPI = { event: 'Open', type: 'general', ...R3 };

const post = (name, json, opts = {}) => q(srv, name, {}, { method: 'POST', json, ...opts });
const create = (def, opts) => post('bookmarks/create', def, opts);

async function ok(resP, what = '') {
  const res = await resP;
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text.slice(0, 600)}`);
  return res.json;
}
async function err(resP, status, what = '', msg = null) {
  const res = await resP;
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 600)}`);
  assert.equal(typeof res.json?.error, 'string', `${what}: no error string: ${res.text}`);
  if (msg) assert.match(res.json.error, msg, `${what}: message`);
  return res.json.error;
}

let srv;
before(async () => {
  srv = await startServer({ projects: [DEMO, LA] });
  await importEvents(srv, [...DEMO_EVENTS, ...RECENT]);
  await importEvents(srv, LA_EVENTS, { secret: LA.api_secret });
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

describe('bookmarks', () => {
  const ids = {};

  test('create, get, list', async () => {
    ids.ins = (await ok(create({ name: 'Opens', type: 'insights', params: INSIGHTS, description: 'daily opens' }), 'create insights')).bookmark_id;
    assert.ok(Number.isInteger(ids.ins));
    ids.fun = (await ok(create({ name: 'Open → Pay', type: 'funnels', params: FUNNEL }), 'create funnels')).bookmark_id;
    ids.ret = (await ok(create({ name: 'Back', type: 'retention', params: RETENTION }), 'create retention')).bookmark_id;
    ids.kpi = (await ok(create({ name: 'KPI', type: 'kpi', params: KPI }), 'create kpi')).bookmark_id;
    assert.equal(new Set(Object.values(ids)).size, 4);

    const g = await ok(q(srv, 'bookmarks/get', { bookmark_id: ids.ins }), 'get');
    assert.equal(g.bookmark_id, ids.ins);
    assert.equal(g.name, 'Opens');
    assert.equal(g.type, 'insights');
    assert.equal(g.description, 'daily opens');
    assert.deepEqual(g.params, INSIGHTS);
    assert.match(g.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(g.updated, g.created);

    const list = await ok(q(srv, 'bookmarks/list'), 'list');
    assert.deepEqual(list.map((b) => [b.bookmark_id, b.name, b.type, b.description]), [
      [ids.ins, 'Opens', 'insights', 'daily opens'], [ids.fun, 'Open → Pay', 'funnels', ''],
      [ids.ret, 'Back', 'retention', ''], [ids.kpi, 'KPI', 'kpi', ''],
    ]);
    for (const b of list) assert.deepEqual(Object.keys(b).sort(), ['bookmark_id', 'created', 'description', 'name', 'type', 'updated']);
    // the other project sees none of them
    assert.deepEqual(await ok(q(srv, 'bookmarks/list', {}, la)), []);
    await err(q(srv, 'bookmarks/get', { bookmark_id: ids.ins }, la), 404, 'other project');
  });

  test('form body and query-string parameters work too', async () => {
    const c = await ok(q(srv, 'bookmarks/create', { name: 'Form', type: 'insights', params: INSIGHTS }, { method: 'POST' }), 'form create');
    const g = await ok(q(srv, 'bookmarks/get', { bookmark_id: c.bookmark_id }));
    assert.deepEqual(g.params, INSIGHTS);
    await ok(q(srv, 'bookmarks/delete', { bookmark_id: c.bookmark_id }, { method: 'POST' }), 'form delete');
    await err(q(srv, 'bookmarks/get', { bookmark_id: c.bookmark_id }), 404);
  });

  test('run equals the same report asked directly, for every kind', async () => {
    const cases = [[ids.ins, 'segmentation', INSIGHTS], [ids.fun, 'funnels', FUNNEL], [ids.ret, 'retention', RETENTION], [ids.kpi, 'kpi', KPI]];
    for (const [id, endpoint, params] of cases) {
      const direct = await ok(q(srv, endpoint, params), `direct ${endpoint}`);
      const saved = await ok(q(srv, 'bookmarks/run', { bookmark_id: id }), `run ${endpoint}`);
      assert.deepEqual(saved, direct, endpoint);
      // also under /api/query and as POST
      assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: id }, { method: 'POST', prefix: '/api/query' })), direct);
    }
    // spot check so "equal" is not "equally empty"
    const seg = await ok(q(srv, 'bookmarks/run', { bookmark_id: ids.ins }));
    assert.deepEqual(seg.data.values, { Open: { '2024-06-01': 3, '2024-06-02': 2, '2024-06-03': 1 } });
  });

  test('request from_date / to_date / last_days override the saved range, nothing else', async () => {
    const R2 = { from_date: '2024-05-30', to_date: '2024-06-01' };
    const want = await ok(q(srv, 'segmentation', { ...INSIGHTS, ...R2 }));
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: ids.ins, ...R2 })), want);
    // other request parameters do not change the saved report
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: ids.ins, event: 'Pay', type: 'unique' })),
      await ok(q(srv, 'segmentation', INSIGHTS)));
    const today = day(Date.now());
    const last2 = await ok(q(srv, 'bookmarks/run', { bookmark_id: ids.ins, last_days: 2 }));
    assert.deepEqual(last2.data.series, [day(Date.now() - DAY), today]);
    await err(q(srv, 'bookmarks/run', { bookmark_id: ids.ins, last_days: 0 }), 400, 'last_days 0', /last_days/);
    await err(q(srv, 'bookmarks/run', { bookmark_id: ids.ins, from_date: '2024-06-01' }), 400, 'half a range', /'to_date' is a required parameter/);
  });

  test('update: fields, validation of the new definition, 404', async () => {
    const id = (await ok(create({ name: 'tmp', type: 'insights', params: INSIGHTS }))).bookmark_id;
    const before = await ok(q(srv, 'bookmarks/get', { bookmark_id: id }));
    await new Promise((r) => setTimeout(r, 1100));
    await ok(post('bookmarks/update', { bookmark_id: id, name: 'renamed', description: 'd' }), 'update name');
    let g = await ok(q(srv, 'bookmarks/get', { bookmark_id: id }));
    assert.equal(g.name, 'renamed');
    assert.equal(g.description, 'd');
    assert.deepEqual(g.params, INSIGHTS);
    assert.equal(g.created, before.created);
    assert.ok(g.updated > before.updated, `${g.updated} > ${before.updated}`);
    const P2 = { ...INSIGHTS, type: 'unique' };
    await ok(post('bookmarks/update', { bookmark_id: id, params: P2 }), 'update params');
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: id })), await ok(q(srv, 'segmentation', P2)));
    // change the type with matching params
    await ok(post('bookmarks/update', { bookmark_id: id, type: 'kpi', params: KPI }), 'update type');
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: id })), await ok(q(srv, 'kpi', KPI)));
    // a bad new definition is refused and nothing changes
    const bad = { ...KPI, where: 'properties["plan"] ==' };
    const direct = await err(q(srv, 'kpi', bad), 400);
    assert.equal(await err(post('bookmarks/update', { bookmark_id: id, params: bad }), 400), direct);
    await err(post('bookmarks/update', { bookmark_id: id, type: 'funnels' }), 400, 'kpi params as a funnel', /funnel_id/);
    g = await ok(q(srv, 'bookmarks/get', { bookmark_id: id }));
    assert.equal(g.type, 'kpi');
    assert.deepEqual(g.params, KPI);
    await err(post('bookmarks/update', { bookmark_id: id }), 400, 'nothing to update', /nothing to update/);
    await err(post('bookmarks/update', { bookmark_id: 999999, name: 'x' }), 404, 'unknown id', /bookmark 999999 not found/);
    await ok(post('bookmarks/delete', { bookmark_id: id }));
    await err(post('bookmarks/delete', { bookmark_id: id }), 404, 'deleted twice');
    // the id of the newest bookmark, deleted, is not given again
    const next = (await ok(create({ name: 'next', type: 'kpi', params: KPI }))).bookmark_id;
    assert.ok(next > id, `${next} > ${id}`);
    await ok(post('bookmarks/delete', { bookmark_id: next }));
  });

  test('bad definitions: 400 with what is wrong', async () => {
    const whereBad = { ...INSIGHTS, where: 'properties["plan"] == "pro" )' };
    const direct = await err(q(srv, 'segmentation', whereBad), 400);
    assert.equal(await err(create({ name: 'b', type: 'insights', params: whereBad }), 400, 'bad where'), direct);
    assert.match(direct, /position 28/);
    await err(create({ name: 'b', type: 'insights', params: { ...INSIGHTS, event: undefined } }), 400, 'no event', /'event' is a required parameter/);
    await err(create({ name: 'b', type: 'insights', params: { event: 'Open' } }), 400, 'no range', /'from_date' is a required parameter/);
    await err(create({ name: 'b', type: 'insights', params: { ...INSIGHTS, unit: 'year' } }), 400, 'bad unit', /'unit' must be one of/);
    await err(create({ name: 'b', type: 'funnels', params: { ...FUNNEL, events: '[{"event":' } }), 400, 'bad steps');
    await err(create({ name: 'b', type: 'retention', params: { ...RETENTION, born_where: '(' } }), 400, 'bad born_where', /born_where/);
    await err(create({ name: 'b', type: 'kpi', params: { ...KPI, type: 'sum' } }), 400, 'bad kpi type', /'type' must be one of/);
    await err(create({ name: 'b', type: 'insights', params: { event: 'Open', last_days: 'x' } }), 400, 'bad last_days', /last_days/);
    await err(create({ name: 'b', type: 'chart', params: INSIGHTS }), 400, 'unknown type', /'type' must be one of: insights, funnels, retention, flows, formula, kpi/);
    await err(create({ name: 'b', params: INSIGHTS }), 400, 'no type', /'type' is a required parameter/);
    await err(create({ name: 'b', type: 'insights', params: [1] }), 400, 'params array', /'params' must be a JSON object/);
    await err(create({ name: 'b', type: 'insights' }), 400, 'no params', /'params' must be a JSON object/);
    await err(create({ name: '', type: 'insights', params: INSIGHTS }), 400, 'empty name', /'name' must not be empty/);
    await err(create({ type: 'insights', params: INSIGHTS }), 400, 'no name', /'name' is a required parameter/);
    await err(create({ name: 7, type: 'insights', params: INSIGHTS }), 400, 'name not a string', /'name' must be a string/);
    await err(create({ name: 'x'.repeat(256), type: 'insights', params: INSIGHTS }), 400, 'long name', /255 bytes/);
    await ok(create({ name: 'é'.repeat(127) + 'x', type: 'insights', params: INSIGHTS }), '255-byte name');
    await err(create('{"name":"b","type":"insights","params":{'), 400, 'bad JSON', /not valid JSON/);
    await err(create('[1]'), 400, 'JSON not an object', /must be a JSON object/);
    await err(q(srv, 'bookmarks/create', { name: 'b', type: 'insights', params: '{"event":' }, { method: 'POST' }), 400, 'form params', /'params' is not valid JSON/);
    // kinds whose report this server does not have (yet)
    // flows and formula bookmarks are checked by their own reports
    await err(create({ name: 'b', type: 'flows', params: { last_days: 7, steps: 99 } }), 400, 'flows', /steps|event/);
    await ok(create({ name: 'b', type: 'flows', params: { ...INSIGHTS, steps: 2 } }), 'a flows bookmark');
    await err(create({ name: 'b', type: 'formula', params: INSIGHTS }), 400, 'formula', /'formula' is a required parameter/);
  });

  test('ids: 404 unknown, 400 malformed, 405 GET on POST endpoints', async () => {
    for (const e of ['bookmarks/get', 'bookmarks/run', 'insights'])
      await err(q(srv, e, { bookmark_id: 424242 }), 404, e, /bookmark 424242 not found/);
    for (const e of ['dashboards/get', 'dashboards/run'])
      await err(q(srv, e, { dashboard_id: 424242 }), 404, e, /dashboard 424242 not found/);
    await err(post('dashboards/update', { dashboard_id: 424242, name: 'x' }), 404, 'dash update');
    await err(post('dashboards/delete', { dashboard_id: 424242 }), 404, 'dash delete');
    await err(q(srv, 'bookmarks/get'), 400, 'no id', /'bookmark_id' is a required parameter/);
    await err(q(srv, 'bookmarks/get', { bookmark_id: 'abc' }), 400, 'bad id', /positive integer/);
    await err(q(srv, 'bookmarks/run', { bookmark_id: -1 }), 400, 'negative id', /positive integer/);
    await err(q(srv, 'insights'), 400, 'insights without id', /'bookmark_id' is a required parameter/);
    for (const e of ['bookmarks/create', 'bookmarks/update', 'bookmarks/delete', 'dashboards/create', 'dashboards/update', 'dashboards/delete'])
      await err(q(srv, e, { bookmark_id: 1 }), 405, e, /needs POST/);
  });

  test('insights?bookmark_id= (spec §10.17 shape)', async () => {
    const j = await ok(q(srv, 'insights', { bookmark_id: ids.ins }), 'insights');
    assert.deepEqual(Object.keys(j).sort(), ['computed_at', 'date_range', 'headers', 'series']);
    assert.match(j.computed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    assert.ok(Math.abs(Date.parse(j.computed_at) - Date.now()) < 60e3);
    assert.deepEqual(j.date_range, { from_date: '2024-06-01T00:00:00+00:00', to_date: '2024-06-03T23:59:59.999000+00:00' });
    assert.deepEqual(j.headers, ['$event']);
    assert.deepEqual(j.series, { Open: { '2024-06-01T00:00:00+00:00': 3, '2024-06-02T00:00:00+00:00': 2, '2024-06-03T00:00:00+00:00': 1 } });
    // the values are segmentation's, bucket for bucket
    const seg = await ok(q(srv, 'segmentation', INSIGHTS));
    assert.deepEqual(Object.values(j.series.Open), seg.data.series.map((k) => seg.data.values.Open[k]));
    // with the range overridden
    const o = await ok(q(srv, 'insights', { bookmark_id: ids.ins, from_date: '2024-05-31', to_date: '2024-05-31' }));
    assert.deepEqual(o.series, { Open: { '2024-05-31T00:00:00+00:00': 1 } });
    // not an insights bookmark
    await err(q(srv, 'insights', { bookmark_id: ids.fun }), 400, 'funnel bookmark', /not insights/);
  });

  test('insights in a time zone with an offset, weeks, and `on`', async () => {
    const P = { event: 'Open', unit: 'day', from_date: '2024-06-01', to_date: '2024-06-02' };
    const id = (await ok(create({ name: 'LA', type: 'insights', params: P }, la))).bookmark_id;
    const j = await ok(q(srv, 'insights', { bookmark_id: id }, la));
    assert.deepEqual(j.date_range, { from_date: '2024-06-01T00:00:00-07:00', to_date: '2024-06-02T23:59:59.999000-07:00' });
    assert.deepEqual(j.series, { Open: { '2024-06-01T00:00:00-07:00': 1, '2024-06-02T00:00:00-07:00': 1 } });
    const W = { event: 'Open', unit: 'week', on: 'properties["plan"]', type: 'unique', ...R3 };
    const wid = (await ok(create({ name: 'weekly by plan', type: 'insights', params: W }))).bookmark_id;
    const w = await ok(q(srv, 'insights', { bookmark_id: wid }));
    assert.deepEqual(w.headers, ['$event', 'properties["plan"]']);
    // 2024-06-01 is a Saturday: weeks of Monday 05-27 and Monday 06-03
    assert.deepEqual(w.series, { Open: {
      pro: { '2024-05-27T00:00:00+00:00': 1, '2024-06-03T00:00:00+00:00': 0 },
      free: { '2024-05-27T00:00:00+00:00': 1, '2024-06-03T00:00:00+00:00': 1 },
      team: { '2024-05-27T00:00:00+00:00': 1, '2024-06-03T00:00:00+00:00': 0 },
    } });
  });

  test('kpi by hand: general, unique over the whole range, previous period, change', async () => {
    const g = await ok(q(srv, 'kpi', KPI));
    assert.deepEqual(g, { event: 'Open', type: 'general', from_date: '2024-06-01', to_date: '2024-06-03',
      previous_from_date: '2024-05-29', previous_to_date: '2024-05-31', value: 6, previous: 3, change: 1 });
    // unique: 3 distinct users in the range (not 2 + 2 + 1), 2 before
    const u = await ok(q(srv, 'kpi', { ...KPI, type: 'unique' }));
    assert.deepEqual([u.value, u.previous, u.change], [3, 2, 0.5]);
    // nothing in the previous period: change null
    const z = await ok(q(srv, 'kpi', { event: 'Open', from_date: '2024-05-29', to_date: '2024-05-31' }));
    assert.deepEqual([z.value, z.previous, z.change, z.previous_from_date, z.previous_to_date], [3, 0, null, '2024-05-26', '2024-05-28']);
    // where; one-day range
    const w = await ok(q(srv, 'kpi', { ...KPI, where: 'properties["plan"] == "pro"' }));
    assert.deepEqual([w.value, w.previous, w.change], [3, 1, 2]);
    const one = await ok(q(srv, 'kpi', { event: 'Open', from_date: '2024-06-01', to_date: '2024-06-01', type: 'unique' }));
    assert.deepEqual([one.value, one.previous, one.change, one.previous_from_date, one.previous_to_date], [2, 1, 1, '2024-05-31', '2024-05-31']);
    // a drop: 06-03 (1) vs 06-02 (2)
    const drop = await ok(q(srv, 'kpi', { event: 'Open', from_date: '2024-06-03', to_date: '2024-06-03' }));
    assert.deepEqual([drop.value, drop.previous, drop.change], [1, 2, -0.5]);
    await err(q(srv, 'kpi', { event: 'Open' }), 400, 'no range', /'from_date' is a required parameter/);
    await err(q(srv, 'kpi', { ...KPI, event: undefined }), 400, 'no event', /'event' is a required parameter/);
    await err(q(srv, 'kpi', { ...KPI, on: 'properties["plan"]' }), 400, 'on', /'on' is not supported/);
  });

  test('last_days: today - (N - 1) .. today, kpi and insights', async () => {
    const today = day(Date.now()), yest = day(Date.now() - DAY);
    // Recent: today, yesterday, 3 days ago -> last 2 days: 2, the 2 before: 1
    const k = await ok(q(srv, 'kpi', { event: 'Recent', last_days: 2 }));
    assert.deepEqual(k, { event: 'Recent', type: 'general', from_date: yest, to_date: today,
      previous_from_date: day(Date.now() - 3 * DAY), previous_to_date: day(Date.now() - 2 * DAY), value: 2, previous: 1, change: 1 });
    const id = (await ok(create({ name: 'recent kpi', type: 'kpi', params: { event: 'Recent', last_days: 2 } }))).bookmark_id;
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: id })), k);
    // the request's range wins over the saved last_days
    assert.deepEqual(await ok(q(srv, 'bookmarks/run', { bookmark_id: id, ...R3 })), await ok(q(srv, 'kpi', { event: 'Recent', ...R3 })));
    assert.deepEqual((await ok(q(srv, 'bookmarks/run', { bookmark_id: id, last_days: 4 }))).value, 3);
    const iid = (await ok(create({ name: 'recent', type: 'insights', params: { event: 'Recent', unit: 'day', last_days: 4 } }))).bookmark_id;
    const run = await ok(q(srv, 'bookmarks/run', { bookmark_id: iid }));
    const days = [3, 2, 1, 0].map((i) => day(Date.now() - i * DAY));
    assert.deepEqual(run, await ok(q(srv, 'segmentation', { event: 'Recent', unit: 'day', from_date: days[0], to_date: today })));
    assert.deepEqual(run.data.values.Recent, { [days[0]]: 1, [days[1]]: 0, [days[2]]: 1, [days[3]]: 1 });
    const ins = await ok(q(srv, 'insights', { bookmark_id: iid }));
    assert.equal(ins.date_range.from_date, `${days[0]}T00:00:00+00:00`);
    assert.equal(ins.date_range.to_date, `${today}T23:59:59.999000+00:00`);
  });

  test('dashboards: create, get, list, run, update, delete; deleting a bookmark removes its cells', async () => {
    const layout = [
      { bookmark_id: ids.ins, x: 0, y: 0, w: 6, h: 4 },
      { bookmark_id: ids.fun, x: 6, y: 0, w: 6, h: 4 },
      { bookmark_id: ids.kpi, x: 0, y: 4, w: 3, h: 2 },
    ];
    const did = (await ok(post('dashboards/create', { name: 'Main', description: 'the main one', layout }), 'create')).dashboard_id;
    assert.ok(Number.isInteger(did));
    const g = await ok(q(srv, 'dashboards/get', { dashboard_id: did }));
    assert.equal(g.dashboard_id, did);
    assert.equal(g.name, 'Main');
    assert.equal(g.description, 'the main one');
    assert.deepEqual(g.layout, [
      { ...layout[0], name: 'Opens', type: 'insights' },
      { ...layout[1], name: 'Open → Pay', type: 'funnels' },
      { ...layout[2], name: 'KPI', type: 'kpi' },
    ]);
    const list = await ok(q(srv, 'dashboards/list'));
    assert.deepEqual(list.map((d) => [d.dashboard_id, d.name, d.description]), [[did, 'Main', 'the main one']]);

    const run = await ok(q(srv, 'dashboards/run', { dashboard_id: did }));
    assert.equal(run.dashboard_id, did);
    assert.equal(run.name, 'Main');
    assert.deepEqual(run.reports.map((r) => [r.bookmark_id, r.name, r.type]), [[ids.ins, 'Opens', 'insights'], [ids.fun, 'Open → Pay', 'funnels'], [ids.kpi, 'KPI', 'kpi']]);
    assert.deepEqual(run.reports[0].result, await ok(q(srv, 'segmentation', INSIGHTS)));
    assert.deepEqual(run.reports[1].result, await ok(q(srv, 'funnels', FUNNEL)));
    assert.deepEqual(run.reports[2].result, await ok(q(srv, 'kpi', KPI)));
    // the range of the request applies to every report
    const R2 = { from_date: '2024-05-29', to_date: '2024-05-31' };
    const run2 = await ok(q(srv, 'dashboards/run', { dashboard_id: did, ...R2 }));
    assert.deepEqual(run2.reports[2].result, await ok(q(srv, 'kpi', { ...KPI, ...R2 })));

    // defaults for the cell, order kept, a bookmark twice
    const d2 = (await ok(post('dashboards/create', { name: 'Two', layout: [{ bookmark_id: ids.ret }, { bookmark_id: ids.ins }, { bookmark_id: ids.ret }] }))).dashboard_id;
    assert.deepEqual((await ok(q(srv, 'dashboards/get', { dashboard_id: d2 }))).layout.map((c) => [c.bookmark_id, c.x, c.y, c.w, c.h]),
      [[ids.ret, 0, 0, 6, 4], [ids.ins, 0, 0, 6, 4], [ids.ret, 0, 0, 6, 4]]);

    // a layout naming a bookmark that does not exist, or malformed
    await err(post('dashboards/create', { name: 'bad', layout: [{ bookmark_id: ids.ins }, { bookmark_id: 987654 }] }), 400, 'missing bookmark', /bookmark 987654 does not exist/);
    assert.equal((await ok(q(srv, 'dashboards/list'))).length, 2, 'nothing saved by the refused create');
    await err(post('dashboards/create', { name: 'bad', layout: {} }), 400, 'layout object', /'layout' must be a JSON array/);
    await err(post('dashboards/create', { name: 'bad' }), 400, 'no layout', /'layout' must be a JSON array/);
    await err(post('dashboards/create', { name: 'bad', layout: [7] }), 400, 'cell not an object', /layout\[0\] must be an object/);
    await err(post('dashboards/create', { name: 'bad', layout: [{ bookmark_id: ids.ins, w: 0 }] }), 400, 'w 0', /layout\[0\]\.w must be an integer/);
    await err(post('dashboards/create', { name: 'bad', layout: [{ bookmark_id: 'x' }] }), 400, 'bad id', /layout\[0\]\.bookmark_id/);
    await err(post('dashboards/create', { layout: [] }), 400, 'no name', /'name' is a required parameter/);
    await err(post('dashboards/update', { dashboard_id: d2, layout: [{ bookmark_id: 987654 }] }), 400, 'update missing bookmark', /987654/);
    assert.equal((await ok(q(srv, 'dashboards/get', { dashboard_id: d2 }))).layout.length, 3, 'refused update changes nothing');

    // update: name, then the layout
    await ok(post('dashboards/update', { dashboard_id: d2, name: 'Second', layout: [{ bookmark_id: ids.kpi, x: 1, y: 2, w: 3, h: 4 }] }));
    const g2 = await ok(q(srv, 'dashboards/get', { dashboard_id: d2 }));
    assert.equal(g2.name, 'Second');
    assert.deepEqual(g2.layout, [{ bookmark_id: ids.kpi, x: 1, y: 2, w: 3, h: 4, name: 'KPI', type: 'kpi' }]);
    await err(post('dashboards/update', { dashboard_id: d2 }), 400, 'nothing to update', /nothing to update/);

    // deleting a bookmark takes it out of every layout
    const victim = (await ok(create({ name: 'victim', type: 'kpi', params: KPI }))).bookmark_id;
    await ok(post('dashboards/update', { dashboard_id: did, layout: [...layout, { bookmark_id: victim }] }));
    assert.equal((await ok(q(srv, 'dashboards/get', { dashboard_id: did }))).layout.length, 4);
    await ok(post('bookmarks/delete', { bookmark_id: victim }));
    const after = await ok(q(srv, 'dashboards/get', { dashboard_id: did }));
    assert.deepEqual(after.layout.map((c) => c.bookmark_id), [ids.ins, ids.fun, ids.kpi]);
    assert.deepEqual((await ok(q(srv, 'dashboards/run', { dashboard_id: did }))).reports.map((r) => r.bookmark_id), [ids.ins, ids.fun, ids.kpi]);

    // a report that fails in a run is an error entry; the others still run
    const bad = (await ok(post('dashboards/create', { name: 'Half', layout: [{ bookmark_id: ids.ins }, { bookmark_id: ids.kpi }] }))).dashboard_id;
    const half = await ok(q(srv, 'dashboards/run', { dashboard_id: bad, from_date: '2024-06-03', to_date: '2024-06-01' }));
    assert.equal(half.reports.length, 2);
    for (const r of half.reports) {
      assert.equal(r.status, 400);
      assert.match(r.error, /'to_date' must not be before 'from_date'/);
      assert.equal(r.result, undefined);
    }
    await ok(post('dashboards/delete', { dashboard_id: bad }));
    await err(q(srv, 'dashboards/get', { dashboard_id: bad }), 404);
    // the bookmarks of a deleted dashboard stay
    await ok(q(srv, 'bookmarks/get', { bookmark_id: ids.ins }));
    ids.dash = did;
    ids.dash2 = d2;
  });

  test('kept across a restart: same definitions, same answers', async () => {
    const snap = async () => ({
      bookmarks: await ok(q(srv, 'bookmarks/list')),
      defs: await Promise.all(Object.entries(ids).filter(([k]) => !k.startsWith('dash')).map(([, id]) => ok(q(srv, 'bookmarks/get', { bookmark_id: id })))),
      runs: await Promise.all([ids.ins, ids.fun, ids.ret, ids.kpi].map((id) => ok(q(srv, 'bookmarks/run', { bookmark_id: id })))),
      insights: (({ computed_at, ...rest }) => rest)(await ok(q(srv, 'insights', { bookmark_id: ids.ins }))),
      dashboards: await ok(q(srv, 'dashboards/list')),
      dash: await ok(q(srv, 'dashboards/get', { dashboard_id: ids.dash })),
      dashRun: await ok(q(srv, 'dashboards/run', { dashboard_id: ids.dash })),
    });
    const before = await snap();
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    const after = await snap();
    assert.deepEqual(after, before);
    // and it can still be written to
    const id = (await ok(create({ name: 'after restart', type: 'insights', params: INSIGHTS }))).bookmark_id;
    assert.ok(id > ids.kpi);
  });
});

// A data directory of the release before saved reports: meta.db at schema
// version 4 (no bookmarks tables) with a saved funnel.  The new server must
// add the tables and keep the funnel; the new objects then survive restarts.
test('upgrade: a meta.db of schema version 4 gets the tables, keeps its funnels', async () => {
  const s = await startServer({ projects: [DEMO] });
  try {
    await importEvents(s, DEMO_EVENTS);
    const f = await ok(q(s, 'funnels/create', {}, { method: 'POST', json: { name: 'Old funnel', steps: ['Open', 'Pay'], length: 1, length_unit: 'day' } }));
    assert.equal(await s.stop(), 0);
    const meta = path.join(s.dataDir, DEMO.name, 'meta.db');
    const sql = (text) => {
      const r = spawnSync('sqlite3', ['-bail', meta], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    assert.equal(sql('PRAGMA user_version;'), '5');
    sql("DROP TABLE dashboard_items; DROP TABLE dashboards; DROP TABLE bookmarks; " +
      "DELETE FROM sqlite_sequence WHERE name IN ('bookmarks', 'dashboards'); PRAGMA user_version=4;");
    await s.restart();
    assert.match(s.log(), /applied migration meta\/005_reports\.sql/);
    assert.deepEqual(await ok(q(s, 'funnels/list')), [{ funnel_id: f.funnel_id, name: 'Old funnel' }]);
    assert.deepEqual(await ok(q(s, 'bookmarks/list')), []);
    const P = { funnel_id: f.funnel_id, ...R3 };
    const id = (await ok(q(s, 'bookmarks/create', {}, { method: 'POST', json: { name: 'saved funnel', type: 'funnels', params: P } }))).bookmark_id;
    const did = (await ok(q(s, 'dashboards/create', {}, { method: 'POST', json: { name: 'D', layout: [{ bookmark_id: id }] } }))).dashboard_id;
    const want = await ok(q(s, 'funnels', P));
    assert.deepEqual(await ok(q(s, 'bookmarks/run', { bookmark_id: id })), want);
    assert.equal(await s.stop(), 0);
    await s.restart();
    assert.doesNotMatch(s.log(), /applied migration/);
    assert.deepEqual(await ok(q(s, 'bookmarks/run', { bookmark_id: id })), want);
    assert.deepEqual((await ok(q(s, 'dashboards/run', { dashboard_id: did }))).reports[0].result, want);
  } finally {
    await s.stop();
  }
});
