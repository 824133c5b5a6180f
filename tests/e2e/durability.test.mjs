// Durability: what the server acknowledged must survive kill -9, SIGTERM must
// drain requests in flight, dedup must hold across restarts, a full or
// unwritable data dir must give 503 (never "1") without taking the server
// down, and /track's age window.  The mount-based tests need root
// (CAP_SYS_ADMIN): they fail with a clear message instead of skipping.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, exportEvents, basic, DEMO } from './lib/server.mjs';
import {
  request, postTrack, postImportJson, healthz, sleep, sh, mountTmpfs, umount, startTrackLoad, trackForm, slowRequest,
} from './lib/load.mjs';

const mounts = [];
const running = [];
after(async () => {
  for (const s of running) { try { await s.kill9(); } catch { /* already gone */ } }
  for (const m of mounts) umount(m);
});

function track(srv, events) { return postTrack(srv, events); }

// ---------------------------------------------------------------------------
// While the last commit of a project failed, /healthz answers 503
// {"status":"degraded"} naming the project's error; otherwise 200 "ok".
// Either way the server answers: it keeps serving.
function assertServing(h) {
  assert.ok(!h.error, `healthz: connection error ${h.error && h.error.message}`);
  if (h.status === 200) {
    assert.equal(h.json.status, 'ok');
  } else {
    assert.equal(h.status, 503, `healthz answered ${h.status}`);
    assert.equal(h.json.status, 'degraded');
    assert.equal(typeof h.json.projects.demo.error, 'string');
  }
}

test('kill -9 under load at 3 moments: every acknowledged event survives exactly once', async () => {
  const srv = await startServer({ server: { threads: 4 } });
  running.push(srv);
  const sent = new Map();   // insert_id -> { ev, req }
  const reqs = [];
  const killTimes = [500, 1200, 2000];
  for (let round = 0; round < killTimes.length; round++) {
    if (round > 0) await srv.restart();
    const load = startTrackLoad(srv, { clients: 8, batch: 10, tag: `k${round}` });
    await sleep(killTimes[round]);
    const inflight = load.requests.filter((r) => r.outcome === 'pending').length;
    await srv.kill9();
    await load.done();
    for (const [k, v] of load.sent) sent.set(k, v);
    reqs.push(...load.requests);
    const acked = load.requests.filter((r) => r.outcome === 'ack').length;
    const lost = load.requests.filter((r) => r.outcome === 'lost').length;
    assert.ok(acked > 10, `round ${round}: the load made progress before the kill (acked requests: ${acked})`);
    assert.ok(inflight > 0 && lost > 0, `round ${round}: requests were in flight at the kill (pending ${inflight}, lost ${lost})`);
  }
  const nacks = reqs.filter((r) => r.outcome === 'nack');
  assert.deepEqual(nacks.map((r) => `${r.status} ${r.text}`), [], 'no request was refused while the server was up');

  await srv.restart();
  const evs = await exportEvents(srv);
  const count = new Map();
  for (const e of evs) {
    const id = e.properties.$insert_id;
    const s = sent.get(id);
    assert.ok(s, `exported an event that was never sent: ${JSON.stringify(e)}`);
    assert.equal(e.event, s.ev.event);
    assert.equal(e.properties.distinct_id, s.ev.properties.distinct_id);
    assert.equal(e.properties.time, Math.floor(s.ev.properties.time));
    assert.equal(e.properties.pad, s.ev.properties.pad);
    assert.equal(e.properties.req, s.ev.properties.req);
    count.set(id, (count.get(id) || 0) + 1);
  }
  let ackedEvents = 0, lostPresent = 0;
  for (const [id, s] of sent) {
    const n = count.get(id) || 0;
    assert.ok(n <= 1, `event ${id} exported ${n} times`);
    if (s.req.outcome === 'ack') {
      ackedEvents++;
      assert.equal(n, 1, `acknowledged event ${id} is missing after kill -9`);
    } else if (n) {
      lostPresent++;
    }
  }
  // a request is all-or-nothing: its events are either all stored or none
  for (const r of reqs) {
    const present = r.ids.filter((id) => count.get(id)).length;
    assert.ok(present === 0 || present === r.ids.length, `request ${r.ids[0]}..: ${present}/${r.ids.length} events stored`);
  }
  const h = await healthz(srv);
  assert.equal(h.status, 200);
  assert.equal(h.json.projects.demo.events, evs.length, '/healthz event count equals the export count after restart');
  assert.ok(ackedEvents > 300, `enough load: ${ackedEvents} acknowledged events`);
  process.stderr.write(`# kill -9: ${ackedEvents} acknowledged, ${lostPresent} unanswered-but-stored, ${evs.length} exported\n`);
  assert.equal(await srv.stop(), 0);
});

// ---------------------------------------------------------------------------
test('SIGTERM drains /import requests in flight and exits 0', async () => {
  const srv = await startServer({ server: { threads: 4 } });
  running.push(srv);
  const N = 16, PER = 2000;
  const base = Date.parse('2024-03-01T00:00:00Z');
  const bodies = [];
  for (let r = 0; r < N; r++) {
    const evs = [];
    for (let i = 0; i < PER; i++) {
      evs.push({ event: `drain ${r % 4}`, properties: { distinct_id: `d-${i % 50}`, time: (base + (r * PER + i) * 1000) / 1000, $insert_id: `dr-${r}-${i}`, r, i, pad: 'y'.repeat(60) } });
    }
    bodies.push(JSON.stringify(evs));
  }
  let sentCount = 0;
  const answered = new Array(N).fill(false);
  let allSent;
  const allSentP = new Promise((res) => { allSent = res; });
  const results = bodies.map((body, r) => request(`${srv.url}/import`, {
    method: 'POST', body, agent: false,
    headers: { 'Content-Type': 'application/json', Authorization: basic(DEMO.api_secret) },
    onSent: () => { if (++sentCount === N) allSent(); },
  }).then((x) => { answered[r] = true; return { r, ...x }; }));
  // plus 3 slow clients still uploading their bodies when the signal comes
  const SLOW = 3, SLOW_PER = 300;
  let slowStarted = 0, slowGo;
  const slowStartedP = new Promise((res) => { slowGo = res; });
  const slow = [];
  for (let k = 0; k < SLOW; k++) {
    const evs = Array.from({ length: SLOW_PER }, (_, i) => ({ event: 'drain slow', properties: { distinct_id: `s-${k}`, time: base / 1000 + i, $insert_id: `slow-${k}-${i}`, k, i } }));
    slow.push(slowRequest(`${srv.url}/import`, {
      body: JSON.stringify(evs), chunks: 8, delayMs: 150,
      headers: { 'Content-Type': 'application/json', Authorization: basic(DEMO.api_secret) },
      onStarted: () => { if (++slowStarted === SLOW) slowGo(); },
    }));
  }
  // SIGTERM as soon as every fast body has been written (all 16 connections
  // were accepted and are being read/processed), while answers are still
  // pending and the slow bodies are half-way
  await allSentP;
  await slowStartedP;
  const pendingAtTerm = answered.filter((a) => !a).length;
  const tTerm = Date.now();
  const exited = srv.stop();
  // requests sent after the signal must be refused (or, if they raced the
  // signal, answered completely)
  await sleep(50);
  const late = [];
  for (let k = 0; k < 4; k++) {
    late.push(request(`${srv.url}/import`, {
      method: 'POST', agent: false,
      body: JSON.stringify([{ event: 'late', properties: { distinct_id: 'l', time: base / 1000, $insert_id: `late-${k}` } }]),
      headers: { 'Content-Type': 'application/json', Authorization: basic(DEMO.api_secret) },
    }));
  }
  const res = await Promise.all(results);
  let timer;
  const code = await Promise.race([exited, new Promise((res) => { timer = setTimeout(() => res('timeout'), 30000); })]);
  clearTimeout(timer);
  const tExit = Date.now() - tTerm;
  assert.equal(code, 0, `process must exit 0 within 30 s after SIGTERM (got ${code} after ${tExit} ms)\n${srv.log().slice(-2000)}`);
  assert.ok(pendingAtTerm > 0, 'some requests were still unanswered when SIGTERM was sent');
  const slowRes = await Promise.all(slow);
  const lateRes = await Promise.all(late);
  // what each request got: 200 + strict JSON with every record imported is
  // the only acceptable answer for a request accepted before SIGTERM
  const okAnswer = (x, n) => !x.error && x.status === 200 &&
    (() => { try { const j = JSON.parse(x.text); return j.code === 200 && j.num_records_imported === n; } catch { return false; } })();
  const describe = (x) => (x.error ? `connection error ${x.error.code || x.error.message}` : `${x.status} ${x.text}`);
  const problems = [
    ...res.filter((x) => !okAnswer(x, PER)).map((x) => `request ${x.r} (body fully sent before SIGTERM): ${describe(x)}`),
    ...slowRes.map((x, k) => ({ x, k })).filter(({ x }) => !okAnswer(x, SLOW_PER))
      .map(({ x, k }) => `slow request ${k} (body half-uploaded at SIGTERM): ${describe(x)}`),
  ];
  for (const x of lateRes) {
    if (x.error) {
      if (x.error.code !== 'ECONNREFUSED') problems.push(`request sent after SIGTERM cut instead of refused: ${describe(x)}`);
    } else if (!okAnswer(x, 1) && x.status !== 503) {
      problems.push(`request sent after SIGTERM: ${describe(x)}`);
    }
  }
  process.stderr.write(`# SIGTERM: ${pendingAtTerm} requests in flight, exit after ${tExit} ms, late: ${lateRes.map((x) => x.error ? x.error.code : x.status)}\n`);

  // durability of what was answered: every 200 is stored, nothing else is
  await srv.restart();
  const evs = await exportEvents(srv, { params: { event: JSON.stringify(['drain 0', 'drain 1', 'drain 2', 'drain 3', 'drain slow', 'late']) } });
  const stored = new Map();
  for (const e of evs) stored.set(e.properties.$insert_id, (stored.get(e.properties.$insert_id) || 0) + 1);
  for (const x of res) {
    const n = Array.from({ length: PER }, (_, i) => stored.get(`dr-${x.r}-${i}`) || 0);
    if (okAnswer(x, PER)) assert.ok(n.every((c) => c === 1), `answered request ${x.r}: all ${PER} events stored once`);
    else assert.ok(n.every((c) => c === 0), `refused request ${x.r}: none of its events stored`);
  }
  slowRes.forEach((x, k) => {
    const n = Array.from({ length: SLOW_PER }, (_, i) => stored.get(`slow-${k}-${i}`) || 0);
    if (okAnswer(x, SLOW_PER)) assert.ok(n.every((c) => c === 1), `answered slow request ${k} stored`);
    else assert.ok(n.every((c) => c === 0), `refused slow request ${k}: none of its events stored`);
  });
  lateRes.forEach((x, k) => assert.equal(stored.get(`late-${k}`) || 0, okAnswer(x, 1) ? 1 : 0, `late request ${k}`));
  assert.equal(await srv.stop(), 0);

  assert.deepEqual(problems, [],
    `every request accepted before SIGTERM must be processed and answered 200 + JSON (drain_ms is 30 s); log:\n${srv.log().slice(-2500)}`);
});

// ---------------------------------------------------------------------------
test('SIGTERM under keep-alive /track load: acknowledged events kept, no answer cut in half', async () => {
  const srv = await startServer({ server: { threads: 4 } });
  running.push(srv);
  const load = startTrackLoad(srv, { clients: 8, batch: 10, tag: 'term' });
  await sleep(700);
  const code = await srv.stop();
  await load.done();
  assert.equal(code, 0);
  const outcomes = {};
  for (const r of load.requests) {
    const k = r.outcome === 'lost' ? `lost:${r.error}` : r.outcome === 'nack' ? `nack:${r.status}` : r.outcome;
    outcomes[k] = (outcomes[k] || 0) + 1;
  }
  process.stderr.write(`# SIGTERM keep-alive load: ${JSON.stringify(outcomes)}\n`);
  // a refused request during shutdown must be a transient refusal (503), never a "0"
  for (const r of load.requests.filter((x) => x.outcome === 'nack')) {
    assert.equal(r.status, 503, `during shutdown: ${r.status} ${r.text}`);
  }
  await srv.restart();
  const evs = await exportEvents(srv);
  const seen = new Map();
  for (const e of evs) {
    assert.ok(load.sent.has(e.properties.$insert_id), 'nothing that was never sent');
    seen.set(e.properties.$insert_id, (seen.get(e.properties.$insert_id) || 0) + 1);
  }
  for (const [id, s] of load.sent) {
    assert.ok((seen.get(id) || 0) <= 1);
    if (s.req.outcome === 'ack') assert.equal(seen.get(id), 1, `acknowledged ${id} lost by a clean shutdown`);
    if (s.req.outcome === 'nack') assert.equal(seen.get(id), undefined, `refused ${id} was stored`);
  }
  const lostSent = load.requests.filter((r) => r.outcome === 'lost' && r.error !== 'ECONNREFUSED');
  assert.deepEqual(lostSent.map((r) => r.error), [],
    'a request sent on an open keep-alive connection during the drain is answered (or the connection closed before it is sent), not reset');
  assert.equal(await srv.stop(), 0);
});

// ---------------------------------------------------------------------------
test('dedup across restarts and within one request: one copy, properties of the last one', async () => {
  const srv = await startServer();
  running.push(srv);
  const t = Math.floor(Date.now() / 1000) - 3600;
  const mk = (v) => Array.from({ length: 20 }, (_, i) => ({
    event: `dedup ${i % 2}`, properties: { token: DEMO.token, distinct_id: `dd-${i % 3}`, time: t + i, $insert_id: `dd-ins-${i}`, v, i },
  }));
  let r = await track(srv, mk(1));
  assert.equal(r.text, '1');
  r = await postImportJson(srv, mk(2).map((e) => ({ ...e, properties: { ...e.properties, token: undefined } })));
  assert.equal(r.status, 200, r.text);
  assert.equal(await srv.stop(), 0);
  await srv.restart();
  r = await track(srv, mk(3));
  assert.equal(r.text, '1');
  // twice in one request: the later copy wins
  r = await track(srv, [...mk(4), ...mk(5)]);
  assert.equal(r.text, '1');
  let evs = await exportEvents(srv);
  assert.equal(evs.length, 20, `each event once, got ${evs.length}`);
  for (const e of evs) {
    assert.equal(e.properties.v, 5, `event ${e.properties.$insert_id} must carry the last copy's properties`);
    assert.equal(e.properties.time, t + e.properties.i);
  }
  let h = await healthz(srv);
  assert.equal(h.json.projects.demo.events, 20);
  // and after another restart, a copy sent again is still a duplicate
  assert.equal(await srv.stop(), 0);
  await srv.restart();
  r = await track(srv, mk(6).slice(0, 5));
  assert.equal(r.text, '1');
  evs = await exportEvents(srv);
  assert.equal(evs.length, 20);
  for (const e of evs) assert.equal(e.properties.v, e.properties.i < 5 ? 6 : 5);
  h = await healthz(srv);
  assert.equal(h.json.projects.demo.events, 20);
  assert.equal(await srv.stop(), 0);
});

// ---------------------------------------------------------------------------
test('full disk: 503 (never "1"), server keeps serving, recovers when space is freed, acknowledged data intact', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-full-'));
  const dataDir = path.join(base, 'data');
  mountTmpfs(dataDir, '3m');
  mounts.push(dataDir);
  const srv = await startServer({ storage: { data_dir: dataDir } });
  running.push(srv);
  const acked = new Map();
  let failed = null, n = 0;
  const t = Math.floor(Date.now() / 1000);
  for (; n < 2000 && !failed; n++) {
    const evs = Array.from({ length: 50 }, (_, i) => ({
      event: 'fill', properties: { token: DEMO.token, distinct_id: `f-${i}`, time: t, $insert_id: `fill-${n}-${i}`, blob: `${n}-${i}-`.padEnd(400, 'z') },
    }));
    const r = await track(srv, evs);
    assert.ok(!r.error, `request ${n}: connection error ${r.error && r.error.message}`);
    if (r.status === 200 && r.text === '1') for (const e of evs) acked.set(e.properties.$insert_id, e);
    else failed = { n, status: r.status, text: r.text, headers: r.headers, ids: evs.map((e) => e.properties.$insert_id) };
  }
  assert.ok(failed, 'the 3 MB data dir filled up');
  assert.equal(failed.status, 503, `a request that cannot be stored gets 503, got ${failed.status} ${failed.text}`);
  assert.notEqual(failed.text, '1');
  assert.equal(JSON.parse(failed.text).status, 0);
  assert.ok(failed.headers['retry-after'], '503 carries Retry-After');

  // the server stays up; while full, each request is either stored and
  // acknowledged (space a rolled-back transaction left behind can be reused)
  // or refused with 503 and not stored
  let h = await healthz(srv);
  assertServing(h);
  const whileFull = [];
  for (let k = 0; k < 5; k++) {
    const evs = Array.from({ length: 50 }, (_, i) => ({
      event: 'fill', properties: { token: DEMO.token, distinct_id: `x-${i}`, time: t, $insert_id: `while-full-${k}-${i}`, blob: 'q'.repeat(400) },
    }));
    const again = await track(srv, evs);
    assert.ok(!again.error, `while full: connection error ${again.error && again.error.message}`);
    assert.ok((again.status === 200 && again.text === '1') || again.status === 503, `while full: ${again.status} ${again.text}`);
    whileFull.push({ ok: again.text === '1', ids: evs.map((e) => e.properties.$insert_id) });
    if (again.text === '1') for (const e of evs) acked.set(e.properties.$insert_id, e);
  }
  assert.ok(whileFull.some((w) => !w.ok), 'the disk stays full: later requests are refused too');

  // free space: new writes succeed again
  const rm = sh('mount', ['-o', 'remount,size=64m', dataDir]);
  assert.equal(rm.code, 0, `remount size=64m: ${rm.stderr}`);
  const ok = await track(srv, [{ event: 'after-full', properties: { token: DEMO.token, distinct_id: 'x', time: t, $insert_id: 'after-full-1' } }]);
  assert.ok(!ok.error);
  assert.equal(ok.status, 200, `after freeing space: ${ok.status} ${ok.text}`);
  assert.equal(ok.text, '1');
  assert.equal((await healthz(srv)).status, 200, 'healthy again after a successful commit');
  // the request that failed can be retried and is then stored
  const retry = await track(srv, Array.from({ length: 50 }, (_, i) => ({
    event: 'fill', properties: { token: DEMO.token, distinct_id: `f-${i}`, time: t, $insert_id: `fill-${failed.n}-${i}`, blob: `${failed.n}-${i}-`.padEnd(400, 'z') },
  })));
  assert.equal(retry.text, '1');

  const check = async () => {
    const evs = await exportEvents(srv);
    const seen = new Map();
    for (const e of evs) seen.set(e.properties.$insert_id, (seen.get(e.properties.$insert_id) || 0) + 1);
    for (const [id, e] of acked) {
      assert.equal(seen.get(id), 1, `acknowledged event ${id} is in the export exactly once`);
    }
    for (const w of whileFull) if (!w.ok) for (const id of w.ids) assert.equal(seen.get(id), undefined, `refused event ${id} was stored`);
    assert.equal(seen.get('after-full-1'), 1);
    for (const id of failed.ids) assert.equal(seen.get(id), 1, `retried event ${id} stored once`);
    assert.equal(evs.length, acked.size + 1 + failed.ids.length);
    const hz = await healthz(srv);
    assert.equal(hz.json.projects.demo.events, evs.length, '/healthz count equals export count');
  };
  await check();
  assert.equal(await srv.stop(), 0);
  await srv.restart();
  await check();
  assert.equal(await srv.stop(), 0);
  process.stderr.write(`# full disk: ${acked.size} events acknowledged before request ${failed.n} failed\n`);
});

// ---------------------------------------------------------------------------
test('full disk under concurrent load: acknowledged events kept, refused ones 503 and absent', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-full2-'));
  const dataDir = path.join(base, 'data');
  mountTmpfs(dataDir, '3m');
  mounts.push(dataDir);
  const srv = await startServer({ storage: { data_dir: dataDir }, server: { threads: 4 } });
  running.push(srv);
  const load = startTrackLoad(srv, { clients: 8, batch: 10, tag: 'full', padLen: 400 });
  let timer;
  const finished = await Promise.race([load.done().then(() => true), new Promise((res) => { timer = setTimeout(() => res(false), 20000); })]);
  clearTimeout(timer);
  if (!finished) await load.stop();
  assert.ok(finished, 'every client met a refusal within 20 s (the disk filled up)');
  const lost = load.requests.filter((r) => r.outcome === 'lost');
  assert.deepEqual(lost.map((r) => r.error), [], 'no connection errors: the server survives a full disk');
  const nacks = load.requests.filter((r) => r.outcome === 'nack');
  assert.ok(nacks.length >= 1);
  for (const r of nacks) assert.equal(r.status, 503, `refused with ${r.status} ${r.text}`);
  assertServing(await healthz(srv));
  assert.equal(sh('mount', ['-o', 'remount,size=64m', dataDir]).code, 0);
  const evs = await exportEvents(srv);
  const seen = new Map();
  for (const e of evs) seen.set(e.properties.$insert_id, (seen.get(e.properties.$insert_id) || 0) + 1);
  for (const [id, s] of load.sent) {
    if (s.req.outcome === 'ack') assert.equal(seen.get(id), 1, `acknowledged ${id} missing or doubled`);
    else assert.equal(seen.get(id), undefined, `refused ${id} (${s.req.status}) was stored`);
  }
  assert.equal(evs.length, load.requests.filter((r) => r.outcome === 'ack').length * 10);
  assert.equal((await healthz(srv)).json.projects.demo.events, evs.length, '/healthz count equals export count');
  assert.equal((await postTrack(srv, [{ event: 'ok again', properties: { token: DEMO.token, distinct_id: 'z', $insert_id: 'ok-again' } }])).text, '1');
  assert.equal(await srv.stop(), 0);
  await srv.restart();
  assert.equal((await exportEvents(srv)).length, evs.length + 1);
  assert.equal(await srv.stop(), 0);
});

// ---------------------------------------------------------------------------
test('data dir not writable at run time (write permission removed): 503, server up, works again when writable', async () => {
  // A tmpfs cannot be remounted read-only while the server holds its files
  // open for writing (EBUSY), so the server runs as root WITHOUT
  // CAP_DAC_OVERRIDE and the project directory loses its write permission:
  // a new shard file cannot be created (EACCES).
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-ro-'));
  const dataDir = path.join(base, 'data');
  mountTmpfs(dataDir, '16m');
  mounts.push(dataDir);
  const busy = sh('mount', ['-o', 'remount,ro', dataDir]); // without a server this works...
  assert.equal(busy.code, 0, `remount ro: ${busy.stderr}`);
  assert.equal(sh('mount', ['-o', 'remount,rw', dataDir]).code, 0);
  const srv = await startServer({
    storage: { data_dir: dataDir },
    wrapper: ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--'],
  });
  running.push(srv);
  const now = Math.floor(Date.now() / 1000);
  let r = await track(srv, [{ event: 'rw', properties: { token: DEMO.token, distinct_id: 'a', time: now, $insert_id: 'rw-1' } }]);
  assert.equal(r.text, '1');
  const ro = sh('mount', ['-o', 'remount,ro', dataDir]);
  process.stderr.write(`# remount,ro with the server running: exit ${ro.code} ${ro.stderr.trim()}\n`);
  if (ro.code === 0) sh('mount', ['-o', 'remount,rw', dataDir]);

  const projDir = path.join(dataDir, 'demo');
  fs.chmodSync(projDir, 0o555);
  try {
    // an event of a month that has no shard yet: the server must create a file
    const old = now - 86400 * 95;
    const evs = [{ event: 'ro', properties: { token: DEMO.token, distinct_id: 'a', time: old, $insert_id: 'ro-1' } }];
    r = await track(srv, evs);
    assert.ok(!r.error, r.error && r.error.message);
    assert.equal(r.status, 503, `unwritable data dir: expected 503, got ${r.status} ${r.text}`);
    assert.notEqual(r.text, '1');
    const rv = await request(`${srv.url}/track?verbose=1`, { method: 'POST', body: trackForm(evs), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(rv.status, 503);
    assert.equal(JSON.parse(rv.text).status, 0);
    const h = await healthz(srv);
    assertServing(h);
    // writes to the current (already open) shard are unaffected
    r = await track(srv, [{ event: 'rw', properties: { token: DEMO.token, distinct_id: 'a', time: now, $insert_id: 'rw-2' } }]);
    assert.equal(r.text, '1');
  } finally {
    fs.chmodSync(projDir, 0o750);
  }
  r = await track(srv, [{ event: 'ro', properties: { token: DEMO.token, distinct_id: 'a', time: now - 86400 * 95, $insert_id: 'ro-1' } }]);
  assert.equal(r.text, '1', `writable again: ${r.status} ${r.text}`);
  const evs = await exportEvents(srv);
  assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['ro-1', 'rw-1', 'rw-2']);
  const h = await healthz(srv);
  assert.equal(h.json.projects.demo.events, 3);
  assert.equal(await srv.stop(), 0);
});

test('read-only data dir at start-up (ro bind mount): refused with a clear message or 503s, never "1"', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-rostart-'));
  const dataDir = path.join(base, 'data');
  mountTmpfs(dataDir, '16m');
  mounts.push(dataDir);
  // a data dir with a project in it, from a previous run
  const first = await startServer({ storage: { data_dir: dataDir } });
  const now = Math.floor(Date.now() / 1000);
  assert.equal((await track(first, [{ event: 'x', properties: { token: DEMO.token, distinct_id: 'a', time: now, $insert_id: 'x1' } }])).text, '1');
  assert.equal(await first.stop(), 0);
  const cfg = { configPath: first.configPath, dir: first.dir, dataDir };
  const script = `mount --bind "${dataDir}" "${dataDir}" && mount -o remount,bind,ro "${dataDir}" && exec "$0" "$@"`;
  let srv, startErr;
  try {
    srv = await startServer({ ...cfg, wrapper: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script] });
    running.push(srv);
  } catch (e) {
    startErr = e;
  }
  if (startErr) {
    const msg = startErr.message;
    assert.match(msg, /read-only|Read-only|EROFS/i, `the start-up error must say the data dir is read-only:\n${msg}`);
    assert.ok(msg.includes(dataDir), `the start-up error must name the data dir:\n${msg}`);
    process.stderr.write(`# read-only at start: server refused to start: ${msg.split('\n').filter(Boolean).slice(-1)[0]}\n`);
    return;
  }
  const r = await track(srv, [{ event: 'y', properties: { token: DEMO.token, distinct_id: 'a', time: now, $insert_id: 'y1' } }]);
  assert.equal(r.status, 503, `read-only data dir: expected 503, got ${r.status} ${r.text}`);
  assert.notEqual(r.text, '1');
  assertServing(await healthz(srv));
  process.stderr.write('# read-only at start: server started and answers 503\n');
  assert.equal(await srv.stop(), 0);
});

// ---------------------------------------------------------------------------
test('/track age window (track_max_age_days = 5): 6 days old -> 0, 1 day old -> 1, future -> now', async () => {
  const srv = await startServer({ server: { track_max_age_days: 5 } });
  running.push(srv);
  const now = Date.now() / 1000;
  const ev = (name, time, id) => ({ event: name, properties: { token: DEMO.token, distinct_id: 'w', time, $insert_id: id } });
  let r = await track(srv, [ev('six days', now - 6 * 86400, 'w6')]);
  assert.equal(r.status, 200);
  assert.equal(r.text, '0');
  r = await request(`${srv.url}/track?verbose=1`, { method: 'POST', body: trackForm([ev('six days', now - 6 * 86400, 'w6')]), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200);
  const j = JSON.parse(r.text);
  assert.equal(j.status, 0);
  assert.match(j.error, /\/import/, `verbose error mentions /import: ${j.error}`);
  r = await track(srv, [ev('one day', now - 86400, 'w1')]);
  assert.equal(r.text, '1');
  r = await track(srv, [ev('four days 23h', now - 5 * 86400 + 3600, 'w5')]);
  assert.equal(r.text, '1');
  const before = Date.now();
  r = await track(srv, [ev('future', now + 86400 * 3, 'wf')]);
  const afterT = Date.now();
  assert.equal(r.text, '1');
  // the 6-day-old event is also refused through the SDK's GET form
  r = await request(`${srv.url}/track?data=${encodeURIComponent(Buffer.from(JSON.stringify(ev('six days', now - 6 * 86400, 'w6'))).toString('base64'))}`);
  assert.equal(r.text, '0');
  // /import is not limited
  r = await postImportJson(srv, [{ event: 'six days', properties: { distinct_id: 'w', time: now - 6 * 86400, $insert_id: 'w6' } }]);
  assert.equal(r.status, 200, r.text);

  const evs = await exportEvents(srv, { params: { time_in_ms: 'true' } });
  const by = Object.fromEntries(evs.map((e) => [e.event, e]));
  assert.ok(by['one day']);
  assert.equal(by['one day'].properties.time, Math.floor((now - 86400) * 1000));
  assert.ok(by['four days 23h']);
  assert.ok(by.future, 'future event stored');
  assert.ok(by.future.properties.time >= before - 1000 && by.future.properties.time <= afterT + 1000,
    `future time clamped to now: ${by.future.properties.time} not in [${before}, ${afterT}]`);
  assert.equal(evs.filter((e) => e.event === 'six days').length, 1, 'only the /import copy of the 6-day-old event');
  assert.equal(by['six days'].properties.$import, true);
  assert.equal(await srv.stop(), 0);
});
