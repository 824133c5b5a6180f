// The official browser SDK (npm `mixpanel-browser`, UMD build) in headless
// Debian Chromium (npm `playwright-core`), against build/mixpaneld.  The page
// comes from a static server on another loopback port, so every SDK request
// is a cross-origin XHR with credentials, as on a real site.
//
// The scenario is the one of shared/fixtures/sdk-capture/browser-batch.json
// (init, track with an emoji, register, identify, alias, people.set,
// set_group + get_group().set, time_event + track, track_pageview, reset,
// track), run three times, each in a fresh browser context against its own
// project (ids 1..3) so the results cannot mix:
//   (a) default batching (base64 arrays to /track/, /engage/, /groups/, verbose=1, every 5 s)
//   (b) batch_requests: false (one request per call, callbacks get Number(body))
//   (c) api_payload_format: 'json' (the batches as percent-encoded JSON)
// What the browser sent is read back from the captured requests (base64 with
// CESU-8 emoji decoded) and compared with the project's export.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startServer, exportEvents } from './lib/server.mjs';
import { launchBrowser, startStaticSite, decodeSdkBody, SDK_VERSION } from './lib/browser.mjs';

const NOTE = 'Zürich 🚀 a+b=c & d';
const PROJECTS = [
  { name: 'browser_batch', id: 1, token: 'browser-token-batch-0001', api_secret: 'browser-secret-batch-0001' },
  { name: 'browser_nobatch', id: 2, token: 'browser-token-nobatch-0002', api_secret: 'browser-secret-nobatch-0002' },
  { name: 'browser_json', id: 3, token: 'browser-token-json-0003', api_secret: 'browser-secret-json-0003' },
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let srv, site, browser;
before(async () => {
  [srv, site, browser] = await Promise.all([startServer({ projects: PROJECTS }), startStaticSite(), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await site?.close();
  if (srv) assert.equal(await srv.stop(), 0, 'server must exit 0 on SIGTERM');
});

// Runs inside the page.  Returns the SDK's identity state along the way and,
// with `callbacks`, what each callback was given (awaits all of them).
async function scenario({ token, apiHost, config, user, alias, note, callbacks }) {
  const mp = window.mixpanel;
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = { state: {}, callbacks: [] };
  const pending = [];
  const cb = (label) => {
    if (!callbacks) return undefined;
    let done;
    pending.push(new Promise((r) => { done = r; }));
    return (value) => { out.callbacks.push({ label, value }); done(); };
  };
  const state = () => ({
    distinct_id: mp.get_distinct_id(),
    device_id: mp.get_property('$device_id'),
    user_id: mp.get_property('$user_id') ?? null,
  });
  await new Promise((resolve) => mp.init(token, { ...config, api_host: apiHost, loaded: () => resolve() }));
  out.state.init = state();
  mp.track('Page Viewed', { page: 'landing', note }, cb('track Page Viewed'));
  mp.register({ plan_tier: 'free', utm_source: 'newsletter' });
  mp.track('App Opened', {}, cb('track App Opened'));
  mp.identify(user);
  out.state.identify = state();
  mp.alias(alias);
  out.state.alias = state();
  mp.people.set({ $name: 'Browser Person', plan: 'pro' }, cb('people.set'));
  mp.set_group('company', 'c-042', cb('set_group'));
  mp.get_group('company', 'c-042').set({ industry: 'retail', seats: 12 }, cb('get_group().set'));
  mp.time_event('Signup Completed');
  await wait(300);
  mp.track('Signup Completed', { signup_method: 'github' }, cb('track Signup Completed'));
  mp.track_pageview();
  mp.reset();
  out.state.reset = state();
  mp.track('App Opened', { after_reset: true }, cb('track App Opened after reset'));
  // generous: under a loaded CI machine Chromium and the server share 2 cores
  await Promise.race([Promise.all(pending), wait(30000)]);
  out.pendingCallbacks = pending.length - out.callbacks.length;
  return out;
}

function queueKeys(token) {
  return ['ev', 'pp', 'gr'].map((q) => `__mpq_${token}_${q}`);
}

// The profile tables, read with the sqlite3 CLI (profiles have no read API).
function profiles(project) {
  const db = path.join(srv.dataDir, project.name, 'meta.db');
  const q = (sql) => JSON.parse(execFileSync('sqlite3', ['-json', db, sql], { encoding: 'utf8' }) || '[]');
  return {
    users: q('SELECT distinct_id, props FROM profiles').map((r) => ({ ...r, props: JSON.parse(r.props) })),
    groups: q('SELECT group_key, group_id, props FROM group_profiles').map((r) => ({ ...r, props: JSON.parse(r.props) })),
  };
}

async function runMode(t, { project, config, batch, label }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requests = []; // SDK requests to mixpaneld
  const responses = []; // { url, status, headers, body: Promise }
  const failed = [];
  const consoleErrors = [];
  let inflight = 0;
  const ours = (url) => url.startsWith(srv.url + '/');
  page.on('request', (r) => {
    if (!ours(r.url())) return;
    inflight++;
    requests.push({ method: r.method(), url: r.url(), postData: r.postData(), headers: r.allHeaders().catch(() => ({})) });
  });
  page.on('requestfinished', (r) => { if (ours(r.url())) inflight--; });
  page.on('requestfailed', (r) => {
    if (!ours(r.url())) return;
    inflight--;
    failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (!ours(r.url())) return;
    responses.push({ url: r.url(), status: r.status(), headers: r.headers(), body: r.text().catch((e) => `<${e.message}>`) });
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  try {
    await page.goto(site.url);
    assert.equal(await page.evaluate(() => typeof window.mixpanel?.init), 'function', 'the UMD build must define window.mixpanel');
    const user = `user-${label}`;
    const alias = `user-${label}-alias`;
    const t0 = Date.now();
    const run = await page.evaluate(scenario, {
      token: project.token, apiHost: srv.url, config, user, alias, note: NOTE, callbacks: !batch,
    });

    // Wait until everything has been sent and answered: in batch mode the
    // queues in localStorage empty out only when the SDK has a final answer.
    const keys = queueKeys(project.token);
    let queues;
    const deadline = Date.now() + 20000;
    for (;;) {
      queues = await page.evaluate((ks) => Object.fromEntries(ks.map((k) => [k, localStorage.getItem(k)])), keys);
      const empty = Object.values(queues).every((v) => v === null || JSON.parse(v).length === 0);
      const sentAll = requests.some((r) => r.url.includes('/track/'));
      if (empty && sentAll && inflight === 0) break;
      if (Date.now() > deadline)
        assert.fail(`SDK did not finish sending within 20 s: inflight=${inflight}, queues=${JSON.stringify(queues)}\n${srv.log().slice(-2000)}`);
      await sleep(200);
    }
    await sleep(300); // let the last response events arrive
    t.diagnostic(`${label}: all sent and answered ${Date.now() - t0} ms after init; ${requests.length} requests`);
    const xhrLog = await page.evaluate(() => window.__xhrLog);

    // --- the SDK's own view ------------------------------------------------
    const st = run.state;
    assert.match(st.init.distinct_id, /^\$device:/);
    assert.equal(st.init.distinct_id, `$device:${st.init.device_id}`);
    assert.equal(st.identify.distinct_id, user);
    assert.equal(st.identify.user_id, user);
    assert.equal(st.reset.distinct_id, `$device:${st.reset.device_id}`);
    assert.notEqual(st.reset.device_id, st.init.device_id, 'reset() makes a new device id');
    if (batch) {
      for (const k of keys)
        assert.ok(queues[k] === null || JSON.parse(queues[k]).length === 0, `${k} must be empty after the flush: ${queues[k]}`);
    } else {
      assert.equal(run.pendingCallbacks, 0, `every callback must be called: ${JSON.stringify(run.callbacks)}`);
      assert.deepEqual(run.callbacks.map((c) => c.label).sort(), ['get_group().set', 'people.set', 'set_group',
        'track App Opened', 'track App Opened after reset', 'track Page Viewed', 'track Signup Completed']);
      for (const c of run.callbacks) assert.equal(c.value, 1, `${c.label}: the SDK's callback got ${JSON.stringify(c.value)}, not 1`);
    }
    assert.deepEqual(failed, [], 'no SDK request may fail at the network level');
    assert.deepEqual(consoleErrors, [], 'no errors in the page console');

    // --- the wire ----------------------------------------------------------
    assert.equal(responses.length, requests.length, 'every SDK request got a response');
    for (const r of responses) {
      const body = await r.body;
      assert.equal(r.status, 200, `${r.url} -> ${r.status} ${body}`);
      assert.equal(r.headers['access-control-allow-origin'], site.origin, `${r.url}: Access-Control-Allow-Origin`);
      assert.equal(r.headers['access-control-allow-credentials'], 'true', `${r.url}: Access-Control-Allow-Credentials`);
      if (batch) assert.deepEqual(JSON.parse(body), { status: 1, error: null }, `${r.url}: verbose=1 answer`);
      else assert.equal(body, '1', `${r.url}: answer`);
    }
    // What the page's JavaScript saw (a CORS failure shows as status 0).
    const sdkXhrs = xhrLog.filter((x) => ours(x.url));
    assert.equal(sdkXhrs.length, requests.length, 'the page saw every SDK XHR complete');
    for (const x of sdkXhrs) {
      assert.equal(x.withCredentials, true, 'the SDK sends its XHRs with credentials');
      assert.equal(x.status, 200, `the page's XHR to ${x.url} saw status ${x.status} (0 = blocked by CORS)`);
      if (batch) assert.deepEqual(JSON.parse(x.responseText), { status: 1, error: null });
      else assert.equal(x.responseText, '1');
    }

    // Decode what was sent.
    const sent = { track: [], engage: [], groups: [] };
    for (const r of requests) {
      assert.equal(r.method, 'POST');
      const u = new URL(r.url);
      const kind = { '/track/': 'track', '/engage/': 'engage', '/groups/': 'groups' }[u.pathname];
      assert.ok(kind, `unexpected SDK request ${u.pathname}`);
      assert.equal((await r.headers).origin, site.origin, 'the SDK request is cross-origin');
      assert.equal(u.searchParams.get('verbose'), batch ? '1' : null, `${u.pathname}: verbose`);
      const { format, items } = decodeSdkBody(r.postData);
      assert.equal(format, config.api_payload_format === 'json' ? 'json' : 'base64', `${u.pathname}: payload format`);
      if (!batch) assert.equal(items.length, 1, 'without batching each request holds one item');
      sent[kind].push(...items);
    }
    // Retried batches may repeat events: one per $insert_id.
    const byId = new Map();
    for (const e of sent.track) byId.set(e.properties.$insert_id, e);
    const events = [...byId.values()];
    // (A batch is not in call order: the SDK's queue has its own order.)
    assert.deepEqual(events.map((e) => e.event).sort(), ['$create_alias', '$identify', '$identify', '$mp_web_page_view',
      'App Opened', 'App Opened', 'Page Viewed', 'Signup Completed'], 'the events the SDK sent');
    assert.equal(sent.engage.length, 3, `profile updates sent: ${JSON.stringify(sent.engage)}`);
    assert.equal(sent.groups.length, 1, `group updates sent: ${JSON.stringify(sent.groups)}`);
    assert.equal(events[0].properties.note, NOTE, 'the decoded request carries the emoji (CESU-8 paired)');
    for (const e of events) {
      assert.equal(e.properties.token, project.token);
      assert.equal(e.properties.$lib_version, SDK_VERSION);
    }

    // --- what the server stored -------------------------------------------
    let exported = [];
    for (let i = 0; i < 40; i++) {
      exported = await exportEvents(srv, { secret: project.api_secret, params: { time_in_ms: 'true' } });
      if (exported.length >= events.length) break;
      await sleep(100);
    }
    const exportedSec = await exportEvents(srv, { secret: project.api_secret });
    assert.equal(exported.length, events.length,
      `export holds each sent event once: got ${exported.map((e) => e.event).join(', ')}`);
    assert.equal(exportedSec.length, events.length);
    const ids = exported.map((e) => e.properties.$insert_id);
    assert.equal(new Set(ids).size, ids.length, 'no $insert_id is stored twice');
    const got = new Map(exported.map((e) => [e.properties.$insert_id, e]));
    const gotSec = new Map(exportedSec.map((e) => [e.properties.$insert_id, e]));

    // Simplified ID merge at query time (docs/IDENTITY.md): a device belongs to the
    // $user_id of its earliest event that carries both, and the export shows that id.
    const owner = new Map();
    for (const e of [...events].sort((a, b) => a.properties.time - b.properties.time)) {
      const p = e.properties;
      if (p.$device_id && p.$user_id && !owner.has(p.$device_id)) owner.set(p.$device_id, p.$user_id);
    }
    const stored = [];
    for (const e of events) {
      const p = e.properties;
      const x = got.get(p.$insert_id);
      assert.ok(x, `event ${e.event} ($insert_id ${p.$insert_id}) is in the export`);
      assert.equal(x.event, e.event);
      assert.match(p.$insert_id, /^[0-9a-z]{16}$/);
      assert.equal(x.properties.$device_id, p.$device_id, `${e.event}: $device_id`);
      assert.equal(typeof p.time, 'number');
      assert.equal(x.properties.time, Math.round(p.time * 1000), `${e.event}: time in ms (sent ${p.time})`);
      assert.equal(gotSec.get(p.$insert_id).properties.time, Math.floor(p.time), `${e.event}: time in seconds (sent ${p.time})`);
      // Simplified ID merge: $user_id wins over the sent distinct_id, else "$device:"+$device_id
      // (stored); the export then shows the user the device was merged into.
      const storedId = p.$user_id || `$device:${p.$device_id}`;
      const want = p.$user_id || owner.get(p.$device_id) || storedId;
      assert.equal(x.properties.distinct_id, want, `${e.event}: distinct_id (sent ${p.distinct_id}, $user_id ${p.$user_id})`);
      const before = p.distinct_id !== storedId ? p.distinct_id : storedId !== want ? storedId : undefined;
      assert.equal(x.properties.$distinct_id_before_identity, before, `${e.event}: $distinct_id_before_identity`);
      assert.equal(x.properties.token, undefined, 'token is not stored');
      assert.equal(x.properties.mp_lib, 'web');
      assert.equal(x.properties.$lib_version, SDK_VERSION);
      assert.equal(x.properties.$current_url, site.url);
      stored.push(x);
    }

    // The scenario, event by event, as stored.
    const one = (pred, what) => {
      const list = stored.filter(pred);
      assert.equal(list.length, 1, `exactly one stored ${what}: ${JSON.stringify(list)}`);
      return list[0];
    };
    const pageViewed = one((x) => x.event === 'Page Viewed', 'Page Viewed');
    const appOpened = one((x) => x.event === 'App Opened' && !x.properties.after_reset, 'App Opened');
    const identify1 = one((x) => x.event === '$identify' && x.properties.$user_id === user, '$identify');
    const createAlias = one((x) => x.event === '$create_alias', '$create_alias');
    const identify2 = one((x) => x.event === '$identify' && x.properties.$user_id === alias, '$identify (alias)');
    const signup = one((x) => x.event === 'Signup Completed', 'Signup Completed');
    const pageview = one((x) => x.event === '$mp_web_page_view', '$mp_web_page_view');
    const afterReset = one((x) => x.event === 'App Opened' && x.properties.after_reset, 'App Opened after reset');
    const dev1 = st.init.device_id;
    const anon1 = `$device:${dev1}`;
    assert.equal(pageViewed.properties.note, NOTE, 'the emoji text is stored exactly');
    assert.equal(pageViewed.properties.page, 'landing');
    // anonymous events, merged into the user by identify()
    assert.equal(pageViewed.properties.distinct_id, user);
    assert.equal(pageViewed.properties.$distinct_id_before_identity, anon1);
    assert.equal(pageViewed.properties.$device_id, dev1);
    assert.equal(appOpened.properties.distinct_id, user);
    assert.equal(appOpened.properties.plan_tier, 'free');
    assert.equal(appOpened.properties.utm_source, 'newsletter');
    assert.equal(identify1.properties.distinct_id, user);
    assert.equal(identify1.properties.$user_id, user);
    assert.equal(identify1.properties.$anon_distinct_id, anon1);
    assert.equal(createAlias.properties.distinct_id, user);
    assert.equal(createAlias.properties.alias, alias);
    assert.equal(identify2.properties.distinct_id, alias);
    // After alias the SDK keeps distinct_id = user but sends $user_id = alias:
    // the server attributes the events to $user_id and keeps the sent id.
    for (const x of [signup, pageview]) {
      assert.equal(x.properties.$device_id, dev1);
      assert.equal(x.properties.$user_id, alias);
      assert.equal(x.properties.distinct_id, alias);
      assert.equal(x.properties.$distinct_id_before_identity, user);
      assert.deepEqual(x.properties.company, ['c-042']);
      assert.equal(x.properties.plan_tier, 'free');
    }
    assert.equal(signup.properties.signup_method, 'github');
    assert.equal(typeof signup.properties.$duration, 'number');
    assert.ok(signup.properties.$duration >= 0.25 && signup.properties.$duration < 30, `$duration ${signup.properties.$duration}`);
    assert.equal(pageview.properties.current_url_path, '/');
    assert.equal(pageview.properties.current_page_title, 'mixpaneld browser e2e');
    assert.equal(afterReset.event, 'App Opened');
    assert.equal(afterReset.properties.after_reset, true);
    assert.equal(afterReset.properties.distinct_id, `$device:${st.reset.device_id}`);
    assert.equal(afterReset.properties.$device_id, st.reset.device_id);
    assert.equal(afterReset.properties.$user_id, undefined);
    assert.equal(afterReset.properties.plan_tier, undefined, 'reset() clears super properties');

    // Profiles: not keyed here by an assumption about ID merge on /engage.
    const prof = profiles(project);
    const person = prof.users.find((u) => u.props.$name === 'Browser Person');
    assert.ok(person, `a user profile has $name = Browser Person: ${JSON.stringify(prof.users)}`);
    assert.equal(person.props.plan, 'pro');
    assert.deepEqual(person.props.company, ['c-042']);
    assert.equal(person.props.$initial_referrer, '$direct');
    const group = prof.groups.find((g) => g.group_key === 'company' && g.group_id === 'c-042');
    assert.ok(group, `group profile company/c-042: ${JSON.stringify(prof.groups)}`);
    assert.equal(group.props.industry, 'retail');
    assert.equal(group.props.seats, 12);
  } finally {
    await context.close();
  }
}

test('browser SDK, default batching: base64 batches every 5 s, verbose=1, queues drained', async (t) => {
  await runMode(t, { project: PROJECTS[0], config: {}, batch: true, label: 'batch' });
});

test('browser SDK, batch_requests: false: one request per call, callbacks get 1', async (t) => {
  await runMode(t, { project: PROJECTS[1], config: { batch_requests: false }, batch: false, label: 'nobatch' });
});

test("browser SDK, api_payload_format: 'json': JSON batches", async (t) => {
  await runMode(t, { project: PROJECTS[2], config: { api_payload_format: 'json' }, batch: true, label: 'json' });
});
