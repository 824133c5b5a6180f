// identity_bench.mjs - what identity resolution (Simplified ID Merge,
// docs/IDENTITY.md) costs the query engine (`make bench-identity`, and the
// last part of `make bench`; numbers in docs/PERFORMANCE.md, "Identity").
//
// The issue's target: no measurable slowdown on data without merges, and at
// most 1.5x on data where a third of the users merged.
//
// What it does, in order:
//   1. build/tools/datagen writes one data set twice (default 2,000,000
//      events, 40,000 users, 90 days ending yesterday UTC): "plain" as the
//      query bench's, and "merged" with --merge-third: the same events, but
//      every third user sends their first 1-5 events anonymously (distinct_id
//      "$device:<uuid>", $device_id) and the next one with both $device_id
//      and $user_id, which links the device to the user;
//   2. starts build/mixpaneld with two projects, `plain` and `merged`, and
//      imports each data set into its project through POST /import?strict=1;
//   3. times the projection build: the first query of each project after
//      its import (the engine reads the shards, resolves identity and builds
//      the projection then), one after the other, each once the server is
//      idle and the previous project's projection file is written;
//   4. asks both projects every question below once and checks that the
//      answers are EQUAL: a merged cluster is the same person as the plain
//      user, so unique counts, funnels and retention must not change.  Any
//      difference is printed as a MISMATCH;
//   5. times daily-uniques, funnel and retention on both projects: one
//      untimed warm-up each, then --runs timed runs, plain and merged
//      alternating; medians;
//   6. times the rebuild after a small import: --runs times, one event
//      ("Bench Ping", no effect on the checked answers) is imported into a
//      project, then the first query is timed (the changed shard is re-read
//      and the whole projection rebuilt, identity included);
//   7. restarts the server 2 x --runs times (at most 12) and times the
//      first query of each project right after the start, plain first and
//      merged first alternating, the config in the same order (the
//      projection is mapped from projection.bin, identity included; the
//      load itself, from the server's "query projection ready" log line, is
//      printed too);
//   8. restarts it 6 times (fewer with --runs < 6) with the projection
//      files removed (they are a cache): the server rebuilds both
//      projections from the shards, one after the other, the config's order
//      alternating, and logs each build's time and user count (which must
//      be equal: a cluster is one user); then checks the answers once more,
//      also against the first ones;
//   9. prints a table (plain ms, merged ms, merged/plain, target <= 1.5x,
//      PASS/MISS), the plain project's numbers next to the query bench's
//      (build/bench/query.json, 10M events after `make bench`: context
//      only, no target), warns when other processes used more than 15% of
//      a core meanwhile, and writes everything to build/bench/identity.json.
//
// The timed questions (project time zone UTC; D = the last day of the data;
// the same as tests/bench/query_bench.mjs):
//   daily-uniques  segmentation event="App Open" type=unique unit=day D-29..D
//   funnel         funnels App Open > View Item > Add To Cart > Checkout >
//                  Purchase, length=7 day, D-29..D, interval=30
//   retention      retention born_event="Sign Up" unit=week
//                  interval_count=12, the whole data set
// Checked only (after steps 3, 7 and 8): weekly unique sign-ups, events type=unique by month,
// a sign-up funnel over the whole range, compounded daily retention of
// Purchase, addiction of App Open; and identity/graph of one merged device.
//
// Exit status: 0 when every step ran (a MISS or a MISMATCH is reported, not
// a failure; --strict makes a MISMATCH exit 3); 1 when a step failed.
// Options: --runs N (default 7), --keep (keep the temporary dir), --strict.
// Environment: BENCH_ID_EVENTS (default 2000000), BENCH_ID_USERS (default
// 40000, or BENCH_ID_EVENTS/50 when only BENCH_ID_EVENTS is set),
// BENCH_ID_DAYS (90), MIXPANELD=path, TOOLS=dir.
// Needs Node 20, Linux (/proc).  Disk: about 460 bytes per event and data
// set in /tmp at the peak (1.9 GB at the default; the bodies are deleted
// after the import); memory: the server about 0.6 GB.  About 2-3 minutes.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { machineInfo } from './lib/machine.mjs';
import { fail, stopServer, logTail, ini, table, fmtMs, median, dirBytes, waitExit, cpuSnapshot, cpuOthers, procStatus } from './lib/harness.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const BIN = process.env.MIXPANELD || path.join(ROOT, 'build/mixpaneld');
const TOOLS = process.env.TOOLS || path.join(ROOT, 'build/tools');
const DATAGEN = path.join(TOOLS, 'datagen');
const OUT_JSON = path.join(ROOT, 'build/bench/identity.json');
const QUERY_JSON = path.join(ROOT, 'build/bench/query.json');
const T_START = Date.now();
const DAY = 86400000;
const IMPORT_CONNECTIONS = 4;
const TARGET_RATIO = 1.5;            // merged / plain, every timed row

const PROJECTS = {
  plain: { id: 1, token: 'plain-token', secret: 'plain-secret' },
  merged: { id: 2, token: 'merged-token', secret: 'merged-secret' },
};
const auth = (proj) => `Basic ${Buffer.from(PROJECTS[proj].secret + ':').toString('base64')}`;

function envInt(name, def, min, max) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`identity_bench: ${name} must be an integer in [${min}, ${max}] (got '${v}')`);
    process.exit(2);
  }
  return n;
}

function parseArgs(argv) {
  const o = { runs: 7, keep: false, strict: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--keep') o.keep = true;
    else if (a === '--strict') o.strict = true;
    else {
      console.error(`identity_bench: unknown argument ${a}\nusage: node tests/bench/identity_bench.mjs [--runs N] [--keep] [--strict]`);
      process.exit(2);
    }
  }
  if (!(Number.isInteger(o.runs) && o.runs >= 1 && o.runs <= 100)) {
    console.error('identity_bench: --runs must be an integer in [1, 100]');
    process.exit(2);
  }
  o.events = envInt('BENCH_ID_EVENTS', 2000000, 1000, 200000000);
  const usersDef = process.env.BENCH_ID_EVENTS ? Math.max(100, Math.round(o.events / 50)) : 40000;
  o.users = envInt('BENCH_ID_USERS', usersDef, 3, 100000000);
  o.days = envInt('BENCH_ID_DAYS', 90, 31, 1000);
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const elapsed = () => (Date.now() - T_START) / 1000;
const log = (msg) => console.log(`identity_bench: ${msg} (${elapsed().toFixed(0)} s)`);

const dayStr = (ms) => new Date(ms).toISOString().slice(0, 10);
const dayMs = (s) => Date.parse(`${s}T00:00:00Z`);

// CPU ticks (1/100 s) PID has used.
function cpuTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

// Wait until PID has been (nearly) idle for half a second (the writer's
// work after an import, a projection file being written), at most MAX ms,
// so that a timed first query does not share the CPU with it.
async function waitIdle(pid, max = 20000) {
  const until = Date.now() + max;
  let last = cpuTicks(pid);
  while (Date.now() < until) {
    await sleep(500);
    const now = cpuTicks(pid);
    if (now === null || last === null) return false;
    if (now - last <= 2) return true;
    last = now;
  }
  return false;
}

// ---------- processes ----------

function run(bin, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('error', reject);
    p.on('exit', (code, sig) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(fail(`${path.basename(bin)} ${args.join(' ')} exited with ${code ?? sig}:\n${stderr}`));
    });
  });
}

// Start mixpaneld; it prints "listening on http://127.0.0.1:PORT" to stderr.
async function startServer(cfgPath, logFile) {
  const fd = fs.openSync(logFile, 'a');
  const start = fs.fstatSync(fd).size;   // before the spawn, so a fast start cannot write its line first
  const t0 = performance.now();
  const proc = spawn(BIN, ['--config', cfgPath, '--port', '0'], { stdio: ['ignore', 'ignore', fd] });
  fs.closeSync(fd);
  let exited = false;
  proc.once('exit', () => { exited = true; });
  const until = Date.now() + 120000;
  while (Date.now() < until) {
    const text = fs.readFileSync(logFile, 'utf8').slice(start);
    const m = text.match(/listening on http:\/\/[^\s:]+:(\d+)/);
    if (m) return { proc, logStart: start, url: `http://127.0.0.1:${m[1]}`, startMs: performance.now() - t0 };
    if (exited) throw fail(`mixpaneld exited at start:\n${text}`);
    await sleep(5);
  }
  proc.kill('SIGKILL');
  throw fail(`mixpaneld did not start within 120 s:\n${fs.readFileSync(logFile, 'utf8').slice(start)}`);
}

// ---------- loading ----------

async function postImport(srvUrl, proj, body, ctype) {
  let res, text;
  for (let attempt = 0; ; attempt++) {
    res = await fetch(`${srvUrl}/import?strict=1`, {
      method: 'POST', body, headers: { Authorization: auth(proj), 'Content-Type': ctype },
    });
    text = await res.text();
    if ((res.status !== 429 && res.status !== 503) || attempt > 50) break;
    await sleep(100);
  }
  let j = null;
  try { j = JSON.parse(text); } catch { /* below */ }
  if (res.status !== 200 || !j || j.code !== 200) throw fail(`POST /import (${proj}): HTTP ${res.status}: ${text.slice(0, 500)}`);
  return j.num_records_imported;
}

async function importBodies(srvUrl, proj, dir, expectEvents) {
  const files = fs.readdirSync(dir).filter((f) => /^b-\d+\.(nd)?json$/.test(f)).sort();
  let next = 0, imported = 0, bytes = 0, lastLog = Date.now();
  const t0 = performance.now();
  async function worker() {
    while (next < files.length) {
      const f = files[next++];
      const body = fs.readFileSync(path.join(dir, f));
      bytes += body.length;
      const n = await postImport(srvUrl, proj, body, f.endsWith('.ndjson') ? 'application/x-ndjson' : 'application/json');
      imported += n;   // (not `imported += await ...`: that reads imported before the wait)
      if (Date.now() - lastLog > 15000) {
        lastLog = Date.now();
        log(`${proj}: imported ${fmtInt(imported)} / ${fmtInt(expectEvents)} events`);
      }
    }
  }
  await Promise.all(Array.from({ length: IMPORT_CONNECTIONS }, worker));
  const ms = performance.now() - t0;
  return { events: imported, files: files.length, bytes, seconds: ms / 1000, events_per_s: imported / (ms / 1000) };
}

// ---------- the questions ----------

const FUNNEL_STEPS = ['App Open', 'View Item', 'Add To Cart', 'Checkout', 'Purchase'];
const SIGNUP_STEPS = ['App Open', 'Sign Up', 'Complete Onboarding', 'View Item', 'Purchase'];

function questions(meta) {
  const D = meta.to_day;
  const from30 = dayStr(dayMs(D) - 29 * DAY);
  const allFrom = meta.from_day;
  const allDays = Math.round((dayMs(D) - dayMs(allFrom)) / DAY) + 1;
  const values = (j, k) => {
    const o = {};
    for (const [d, n] of Object.entries(j.data?.values?.[k] || {})) if (Number(n)) o[d] = Number(n);
    return o;
  };
  const funnelSteps = (key) => (j) => {
    const b = j.data?.[key];
    if (!b || !Array.isArray(b.steps)) throw new Error(`no data["${key}"].steps`);
    return b.steps.map((s) => ({ count: s.count, avg_time: s.avg_time, avg_time_from_start: s.avg_time_from_start }));
  };
  const cohorts = (j) => {
    const o = {};
    for (const [k, v] of Object.entries(j)) {
      if (!v || !Array.isArray(v.counts)) throw new Error(`"${k}" has no counts`);
      if (v.first) o[k] = { first: v.first, counts: v.counts };
    }
    return o;
  };
  return [
    {
      id: 'daily-uniques', timed: true,
      detail: 'segmentation event="App Open" type=unique unit=day, last 30 days',
      path: '/api/2.0/segmentation',
      params: { event: 'App Open', from_date: from30, to_date: D, unit: 'day', type: 'unique' },
      answer: (j) => {
        if (!Array.isArray(j.data?.series) || j.data.series.length !== 30) throw new Error('data.series is not 30 days');
        return values(j, 'App Open');
      },
    },
    {
      id: 'funnel', timed: true,
      detail: `funnels ${FUNNEL_STEPS.join(' > ')}, length=7 day, last 30 days, one bucket`,
      path: '/api/2.0/funnels',
      params: {
        events: JSON.stringify(FUNNEL_STEPS.map((e) => ({ event: e }))), from_date: from30, to_date: D,
        length: '7', length_unit: 'day', interval: '30',
      },
      answer: funnelSteps(from30),
    },
    {
      id: 'retention', timed: true,
      detail: 'retention born_event="Sign Up" unit=week interval_count=12, whole range',
      path: '/api/2.0/retention',
      params: { from_date: allFrom, to_date: D, born_event: 'Sign Up', unit: 'week', interval_count: '12' },
      answer: cohorts,
    },
    {
      id: 'weekly-signups-unique',
      detail: 'segmentation event="Sign Up" type=unique unit=week, whole range',
      path: '/api/2.0/segmentation',
      params: { event: 'Sign Up', from_date: allFrom, to_date: D, unit: 'week', type: 'unique' },
      answer: (j) => values(j, 'Sign Up'),
    },
    {
      id: 'events-unique-month',
      detail: 'events event=[App Open, Sign Up, Purchase] type=unique unit=month, whole range',
      path: '/api/2.0/events',
      params: { event: JSON.stringify(['App Open', 'Sign Up', 'Purchase']), type: 'unique', unit: 'month', from_date: allFrom, to_date: D },
      answer: (j) => {
        const o = {};
        for (const k of ['App Open', 'Sign Up', 'Purchase']) o[k] = values(j, k);
        return o;
      },
    },
    {
      id: 'signup-funnel',
      detail: `funnels ${SIGNUP_STEPS.join(' > ')}, length=14 day, whole range, one bucket`,
      path: '/api/2.0/funnels',
      params: {
        events: JSON.stringify(SIGNUP_STEPS.map((e) => ({ event: e }))), from_date: allFrom, to_date: D,
        length: '14', length_unit: 'day', interval: String(allDays),
      },
      answer: funnelSteps(allFrom),
    },
    {
      id: 'retention-compounded',
      detail: 'retention retention_type=compounded event="Purchase" unit=day interval_count=7, last 30 days',
      path: '/api/2.0/retention',
      params: { from_date: from30, to_date: D, retention_type: 'compounded', event: 'Purchase', unit: 'day', interval_count: '7' },
      answer: cohorts,
    },
    {
      id: 'addiction',
      detail: 'retention/addiction event="App Open" unit=week addiction_unit=day, last 30 days',
      path: '/api/2.0/retention/addiction',
      params: { from_date: from30, to_date: D, unit: 'week', addiction_unit: 'day', event: 'App Open' },
      answer: (j) => j.data ?? j,
    },
  ];
}

async function ask(srvUrl, proj, qq) {
  const qs = new URLSearchParams(qq.params).toString();
  const t0 = performance.now();
  const res = await fetch(`${srvUrl}${qq.path}?${qs}`, { headers: { Authorization: auth(proj) } });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) return { ms, error: `HTTP ${res.status}: ${text.slice(0, 300)}` };
  try {
    return { ms, answer: qq.answer(JSON.parse(text)) };
  } catch (e) {
    return { ms, error: `unexpected answer (${e.message}): ${text.slice(0, 300)}` };
  }
}

// Deep comparison (exact); a list of differences "path: a vs b".
function diff(a, b, p = '', out = []) {
  if (out.length >= 8) return out;
  if (typeof a === 'number' && typeof b === 'number') {
    if (a !== b) out.push(`${p || '.'}: ${a} vs ${b}`);
  } else if (a && b && typeof a === 'object' && typeof b === 'object') {
    if (Array.isArray(a) !== Array.isArray(b)) out.push(`${p || '.'}: array vs object`);
    else {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const k of keys) {
        if (!(k in a)) out.push(`${p}.${k}: missing vs ${JSON.stringify(b[k]).slice(0, 80)}`);
        else if (!(k in b)) out.push(`${p}.${k}: ${JSON.stringify(a[k]).slice(0, 80)} vs missing`);
        else diff(a[k], b[k], `${p}.${k}`, out);
        if (out.length >= 8) break;
      }
    }
  } else if (a !== b) out.push(`${p || '.'}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  return out;
}

// Ask every question of both projects once; compare.  Returns rows.
async function checkAll(srvUrl, qs, phase) {
  const rows = [];
  for (const qq of qs) {
    const a = await ask(srvUrl, 'plain', qq);
    const b = await ask(srvUrl, 'merged', qq);
    const row = { id: qq.id, phase, plain: a.error ? { error: a.error } : a.answer, merged: b.error ? { error: b.error } : b.answer };
    if (a.error || b.error) row.errors = [a.error && `plain: ${a.error}`, b.error && `merged: ${b.error}`].filter(Boolean);
    else row.diffs = diff(b.answer, a.answer);
    row.equal = !row.errors && row.diffs.length === 0;
    if (!row.equal) {
      console.log(`\n  !!!!!!!! MISMATCH in ${qq.id} (${phase}): merged vs plain !!!!!!!!`);
      for (const d of row.errors || row.diffs) console.log(`  !!  ${d}`);
      console.log(`  !!  request: ${qq.path}?${new URLSearchParams(qq.params)}\n`);
    }
    rows.push(row);
  }
  return rows;
}

// The projection file of PROJ written after SINCE (ms since the epoch)?
// Waits up to MAX ms; the persisting thread writes a view 5 s after its build.
async function waitPersisted(dataDir, proj, since, max = 30000) {
  const f = path.join(dataDir, proj, 'projection.bin');
  const until = Date.now() + max;
  while (Date.now() < until) {
    try {
      if (fs.statSync(f).mtimeMs >= since) {
        await sleep(300);   // let the write finish
        return true;
      }
    } catch { /* not yet */ }
    await sleep(100);
  }
  return false;
}

// The "query projection ready" lines of the server's log since START.
function readyLines(logFile, start) {
  const o = {};
  const text = fs.readFileSync(logFile, 'utf8').slice(start);
  for (const m of text.matchAll(/project (\S+): query projection ready: (\d+) events, (\d+) users in ([\d.]+) s/g)) {
    o[m[1]] = { events: Number(m[2]), users: Number(m[3]), ms: Number(m[4]) * 1000 };
  }
  return o;
}

// ---------- output ----------

const fmtInt = (n) => (n === null || n === undefined ? '-' : Math.round(n).toLocaleString('en-US'));
const fmtLoad = (ms) => (ms === null || ms === undefined ? '-' : ms < 10 ? '<10' : fmtMs(ms));   // the log has 10 ms steps
const fmtBytes = (b) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

// ---------- main ----------

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  for (const f of [BIN, DATAGEN]) {
    if (!fs.existsSync(f)) throw fail(`${f} is missing: run 'make all tools' first`);
  }
  const result = {
    machine: machineInfo(),
    binary: {
      path: path.relative(ROOT, BIN) || BIN,
      sha256: crypto.createHash('sha256').update(fs.readFileSync(BIN)).digest('hex'),
      mtime: fs.statSync(BIN).mtime.toISOString(),
    },
    target_ratio: TARGET_RATIO,
    settings: { runs: opt.runs, server_threads: 2 },
  };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-idbench-'));
  const p = {
    plain: path.join(tmp, 'plain'), merged: path.join(tmp, 'merged'), data: path.join(tmp, 'data'),
    cfg: path.join(tmp, 'config.ini'), log: path.join(tmp, 'mixpaneld.log'),
  };
  let server = null;
  const serverPids = [];
  const died = () => (server && (server.proc.exitCode !== null || server.proc.signalCode !== null)
    ? fail(`mixpaneld died (${server.proc.exitCode ?? server.proc.signalCode}); the end of its log:\n${logTail(p.log)}`)
    : null);

  try {
    // 1. the two data sets, the same end day
    const endDay = dayStr(Math.floor(Date.now() / DAY) * DAY - DAY);
    log(`generating ${fmtInt(opt.events)} events, ${fmtInt(opt.users)} users, ${opt.days} days, twice (plain, --merge-third) into ${tmp}`);
    const t0 = performance.now();
    const base = ['--events', String(opt.events), '--users', String(opt.users), '--days', String(opt.days),
      '--end-day', endDay, '--batch', '2000', '--quiet'];
    const [gp, gm] = await Promise.all([
      run(DATAGEN, [...base, '--json-dir', p.plain]),
      run(DATAGEN, [...base, '--json-dir', p.merged, '--merge-third']),
    ]);
    const meta = JSON.parse(gp.stdout.trim().split('\n').pop());
    const metaM = JSON.parse(gm.stdout.trim().split('\n').pop());
    if (metaM.events !== meta.events || JSON.stringify(metaM.per_event) !== JSON.stringify(meta.per_event)) {
      throw fail('datagen --merge-third wrote other events than without it');
    }
    result.data = { ...meta, cpu_s: undefined, merge: metaM.merge, generate_s: (performance.now() - t0) / 1000 };
    log(`generated ${meta.from_day} .. ${meta.to_day} in ${result.data.generate_s.toFixed(1)} s; merged: ` +
      `${fmtInt(metaM.merge.users)} of the users merged, ${fmtInt(metaM.merge.anonymous_events)} events sent anonymously`);

    // 2. one server, two projects
    // (ORDER: the order of the projects in the config, which is the order in
    // which the server loads their projections at start)
    const writeConfig = (order) => fs.writeFileSync(p.cfg, ini({
      server: { bind: '127.0.0.1', port: 8080, threads: 2, track_max_age_days: 0 },
      storage: { data_dir: p.data },
      ...Object.fromEntries(order.map((name) => [`project.${name}`,
        { id: PROJECTS[name].id, token: PROJECTS[name].token, api_secret: PROJECTS[name].secret, timezone: 'UTC' }])),
    }));
    const restart = async () => {
      const code = await stopServer(server);
      server = null;
      if (code !== 0) throw fail(`mixpaneld exited with ${code} after SIGTERM:\n${logTail(p.log)}`);
      server = await startServer(p.cfg, p.log);
      serverPids.push(server.proc.pid);
    };
    writeConfig(['plain', 'merged']);
    server = await startServer(p.cfg, p.log);
    serverPids.push(server.proc.pid);
    log(`mixpaneld on ${server.url} (pid ${server.proc.pid}); importing`);
    result.load = {};
    for (const proj of ['plain', 'merged']) {
      const imp = await importBodies(server.url, proj, p[proj], meta.events);
      if (imp.events !== meta.events) throw fail(`${proj}: imported ${imp.events} events, generated ${meta.events}`);
      const hz = await (await fetch(`${server.url}/healthz`)).json().catch(() => ({}));
      imp.healthz_events = hz.projects?.[proj]?.events ?? null;
      imp.store_bytes = dirBytes(path.join(p.data, proj));
      result.load[proj] = imp;
      log(`${proj}: ${fmtInt(imp.events)} events in ${imp.seconds.toFixed(1)} s = ${fmtInt(imp.events_per_s)} events/s ` +
        `(healthz ${fmtInt(imp.healthz_events)}, store ${fmtBytes(imp.store_bytes)})`);
    }
    const link = findFirstLink(p.merged);
    if (!opt.keep) {
      fs.rmSync(p.plain, { recursive: true, force: true });
      fs.rmSync(p.merged, { recursive: true, force: true });
    }
    const qs = questions(meta);
    const uniques = qs[0];

    // 3. the projection build: the first query of each project
    const cpu0 = cpuSnapshot();
    result.build = {};
    for (const proj of ['plain', 'merged']) {
      await waitIdle(server.proc.pid);
      const since = Date.now();
      const r = await ask(server.url, proj, uniques);
      if (r.error) throw died() || fail(`${proj}: first query: ${r.error}`);
      const persisted = await waitPersisted(p.data, proj, since);
      result.build[proj] = { first_query_ms: r.ms, persisted };
      log(`${proj}: first query after the import (projection build) ${fmtMs(r.ms)} ms` +
        `${persisted ? '' : ' (projection.bin not written within 30 s)'}`);
    }

    // 4. the answers
    log('checking the answers (plain vs merged)');
    result.checks = await checkAll(server.url, qs, 'after the import');
    if (died()) throw died();
    // the merge did happen: one merged device resolves to its user
    result.graph = await graphCheck(server.url, link);

    // 5. the timed questions, plain and merged alternating
    result.questions = [];
    for (const qq of qs.filter((x) => x.timed)) {
      const times = { plain: [], merged: [] };
      for (const proj of ['plain', 'merged']) await ask(server.url, proj, qq);   // warm-up
      for (let i = 0; i < opt.runs; i++) {
        for (const proj of i % 2 ? ['merged', 'plain'] : ['plain', 'merged']) {
          const r = await ask(server.url, proj, qq);
          if (r.error) throw died() || fail(`${proj}: ${qq.id}: ${r.error}`);
          times[proj].push(r.ms);
        }
      }
      const row = { id: qq.id, detail: qq.detail, plain_ms: median(times.plain), merged_ms: median(times.merged), runs: times };
      row.ratio = row.merged_ms / row.plain_ms;
      log(`${qq.id}: plain ${fmtMs(row.plain_ms)} ms, merged ${fmtMs(row.merged_ms)} ms (${row.ratio.toFixed(2)}x)`);
      result.questions.push(row);
    }

    // 6. rebuilds after a small import
    const pingT = dayMs(meta.to_day) + 12 * 3600000;
    const times = { plain: [], merged: [] };
    for (let i = 0; i < opt.runs; i++) {
      for (const proj of i % 2 ? ['merged', 'plain'] : ['plain', 'merged']) {
        const ev = [{ event: 'Bench Ping', properties: { time: pingT + i, distinct_id: 'bench-ping', $insert_id: `bench-ping-${i}` } }];
        if (await postImport(server.url, proj, JSON.stringify(ev), 'application/json') !== 1) throw fail(`${proj}: ping not imported`);
        const r = await ask(server.url, proj, uniques);
        if (r.error) throw died() || fail(`${proj}: query after a ping: ${r.error}`);
        times[proj].push(r.ms);
      }
    }
    result.rebuild = { plain_ms: median(times.plain), merged_ms: median(times.merged), runs: times };
    log(`rebuild after a one-event import: plain ${fmtMs(result.rebuild.plain_ms)} ms, merged ${fmtMs(result.rebuild.merged_ms)} ms`);
    const since = Date.now();
    const pers = await Promise.all(['plain', 'merged'].map((proj) => waitPersisted(p.data, proj, since - 1000)));
    const st = procStatus(server.proc.pid);
    result.memory = { peak_rss_bytes: st.VmHWM ?? null, rss_bytes: st.VmRSS ?? null };

    // 7. restarts: the first query of each project right after the start,
    // plain first and merged first alternating, and the config in the same
    // order (the server loads the projections in the config's order)
    const restarts = Math.min(12, 2 * opt.runs);
    log(`server peak RSS ${fmtBytes(st.VmHWM || 0)}; restarting it ${restarts} times` +
      `${pers.every(Boolean) ? '' : ' (a projection file was not rewritten within 30 s)'}`);
    result.restart = { restarts, start_ms: [], runs: { plain: [], merged: [] }, load: { plain: [], merged: [] } };
    for (let i = 0; i < restarts; i++) {
      const order = i % 2 ? ['merged', 'plain'] : ['plain', 'merged'];
      writeConfig(order);
      await restart();
      result.restart.start_ms.push(server.startMs);
      for (const proj of order) {
        const r = await ask(server.url, proj, uniques);
        if (r.error) throw died() || fail(`${proj}: first query after the restart: ${r.error}`);
        result.restart.runs[proj].push(r.ms);
      }
      // the warm-up thread logs each project's load
      for (let k = 0; k < 100 && Object.keys(readyLines(p.log, server.logStart)).length < 2; k++) await sleep(50);
      const ld = readyLines(p.log, server.logStart);
      for (const proj of ['plain', 'merged']) result.restart.load[proj].push(ld[proj]?.ms ?? null);
    }
    result.restart.first_query_ms = { plain: median(result.restart.runs.plain), merged: median(result.restart.runs.merged) };
    log(`after ${restarts} restarts: first query plain ${fmtMs(result.restart.first_query_ms.plain)} ms, merged ` +
      `${fmtMs(result.restart.first_query_ms.merged)} ms (medians)`);
    result.checks.push(...await checkAll(server.url, qs, 'after a restart'));

    // 8. full rebuilds from the shards at start: projection.bin removed (it
    // is only a cache), the server builds both projections one after the
    // other and logs each build's time; the config's order alternates
    const rebuilds = Math.max(2, Math.min(6, opt.runs - (opt.runs % 2)));
    result.cold = { restarts: rebuilds, load: { plain: [], merged: [] }, users: { plain: [], merged: [] } };
    for (let i = 0; i < rebuilds; i++) {
      const order = i % 2 ? ['merged', 'plain'] : ['plain', 'merged'];
      const code = await stopServer(server);
      server = null;
      if (code !== 0) throw fail(`mixpaneld exited with ${code} after SIGTERM:\n${logTail(p.log)}`);
      for (const proj of order) fs.rmSync(path.join(p.data, proj, 'projection.bin'), { force: true });
      writeConfig(order);
      server = await startServer(p.cfg, p.log);
      serverPids.push(server.proc.pid);
      let ld = {};
      for (let k = 0; k < 1200 && Object.keys(ld).length < 2 && !died(); k++) {
        await sleep(100);
        ld = readyLines(p.log, server.logStart);
      }
      for (const proj of order) {
        result.cold.load[proj].push(ld[proj]?.ms ?? null);
        result.cold.users[proj].push(ld[proj]?.users ?? null);
      }
      // (stopped right away, before the projection files are written 5 s later)
    }
    const okNums = (xs) => xs.filter((x) => x !== null);
    result.cold.build_ms = { plain: median(okNums(result.cold.load.plain)), merged: median(okNums(result.cold.load.merged)) };
    log(`rebuilds from the shards at start: plain ${fmtMs(result.cold.build_ms.plain)} ms, merged ${fmtMs(result.cold.build_ms.merged)} ms ` +
      `(medians of ${rebuilds}; users ${result.cold.users.plain[0]} and ${result.cold.users.merged[0]})`);
    {
      // the users the server counted in each projection: merged clusters are users
      const a = result.cold.users.plain, b = result.cold.users.merged;
      const row = { id: 'projection-users', phase: 'rebuilds at start', plain: a, merged: b, diffs: diff(b, a) };
      row.equal = row.diffs.length === 0 && a.every((x) => x !== null);
      if (!row.equal) console.log(`\n  !!!!!!!! MISMATCH in the users of the projections: plain ${a.join(',')} vs merged ${b.join(',')} !!!!!!!!\n`);
      result.checks.push(row);
    }
    result.cpu = cpuOthers(cpu0, cpuSnapshot(), [process.pid, ...serverPids]);
    result.checks.push(...await checkAll(server.url, qs, 'after a rebuild at start'));
    // the same answers as after the import (the pings change none of them)
    for (const c of result.checks.filter((x) => x.phase !== 'after the import')) {
      const before = result.checks.find((x) => x.id === c.id && x.phase === 'after the import');
      const d = before && !c.errors && !before.errors ? diff(c.plain, before.plain) : [];
      if (d.length) {
        c.equal = false;
        c.diffs_to_before = d;
        console.log(`\n  !!!!!!!! MISMATCH in ${c.id}: plain ${c.phase} vs plain after the import !!!!!!!!`);
        for (const x of d) console.log(`  !!  ${x}`);
      }
    }
    const st2 = procStatus(server.proc.pid);
    result.memory.after_restart_peak_rss_bytes = st2.VmHWM ?? null;
    const code2 = await stopServer(server);
    server = null;
    if (code2 !== 0) throw fail(`mixpaneld exited with ${code2} after SIGTERM:\n${logTail(p.log)}`);
  } finally {
    if (server) server.proc.kill('SIGKILL');
    if (!opt.keep) fs.rmSync(tmp, { recursive: true, force: true });
    else console.log(`identity_bench: kept ${tmp}`);
  }

  report(result);
  fs.mkdirSync(path.dirname(OUT_JSON), { recursive: true });
  result.total_seconds = elapsed();
  fs.writeFileSync(OUT_JSON, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nidentity_bench: results in ${path.relative(process.cwd(), OUT_JSON) || OUT_JSON} (${elapsed().toFixed(0)} s)`);
  const bad = result.checks.some((c) => !c.equal) || (result.graph && !result.graph.ok);
  if (bad && opt.strict) process.exit(3);
}

// identity/graph of the first device that datagen linked (LINK, from the
// merged bodies): its canonical id must be the user.
async function graphCheck(srvUrl, link) {
  if (!link) return { ok: null, note: 'no linking event found in the first bodies' };
  const { device, user } = link;
  const res = await fetch(`${srvUrl}/api/2.0/identity/graph?${new URLSearchParams({ distinct_id: `$device:${device}` })}`,
    { headers: { Authorization: auth('merged') } });
  const text = await res.text();
  let j = null;
  try { j = JSON.parse(text); } catch { /* below */ }
  const ok = res.status === 200 && j?.canonical_id === user;
  const out = { ok, device: `$device:${device}`, user, canonical_id: j?.canonical_id ?? null, distinct_ids: j?.distinct_ids ?? null };
  if (!ok) {
    console.log(`\n  !!!!!!!! identity/graph of $device:${device}: canonical id ${JSON.stringify(j?.canonical_id)}, ` +
      `expected ${user} (HTTP ${res.status}: ${text.slice(0, 200)}) !!!!!!!!\n`);
  }
  return out;
}

function findFirstLink(dir) {
  const files = fs.readdirSync(dir).filter((f) => /^b-\d+\.(nd)?json$/.test(f)).sort();
  for (const f of files.slice(0, 20)) {
    const m = fs.readFileSync(path.join(dir, f), 'utf8').match(/"\$device_id":"([0-9a-f-]+)","\$user_id":"([^"]+)"/);
    if (m) return { device: m[1], user: m[2] };
  }
  return null;
}

function report(r) {
  const d = r.data;
  const m = r.machine;
  console.log('');
  console.log(`mixpaneld identity benchmark, ${m.date}`);
  console.log(`machine: ${m.nproc} CPUs (${m.cpu_model}), ${m.ram_gib} GiB RAM, ${m.kernel}`);
  console.log(`data: ${fmtInt(d.events)} events, ${fmtInt(d.users)} users, ${d.days} days (${d.from_day} .. ${d.to_day}), seed ${d.seed}; ` +
    `merged: the same events, ${fmtInt(d.merge.users)} users (every third) merged, ` +
    `${fmtInt(d.merge.anonymous_events)} events sent anonymously, ${fmtInt(d.merge.linking_events)} linking events`);
  console.log(`load (/import): plain ${r.load.plain.seconds.toFixed(1)} s, merged ${r.load.merged.seconds.toFixed(1)} s; ` +
    `medians of ${r.settings.runs} warm runs, ms (after one untimed run)`);
  console.log('');
  const rows = [['question', 'plain', 'merged', 'merged/plain', 'target', 'result', 'answers']];
  const verdict = (ratio) => (ratio === null || !Number.isFinite(ratio) ? 'MISS (no answer)' : ratio <= TARGET_RATIO ? 'PASS' : 'MISS');
  const ans = (id) => {
    const cs = r.checks.filter((c) => c.id === id);
    if (!cs.length) return '-';
    return cs.every((c) => c.equal) ? 'equal' : 'MISMATCH';
  };
  const add = (name, a, b, answers = '') => {
    const ratio = a && b !== null && b !== undefined ? b / a : null;
    const v = verdict(ratio);
    rows.push([name, fmtMs(a), fmtMs(b), ratio === null ? '-' : `${ratio.toFixed(2)}x`, `<= ${TARGET_RATIO}x`, v, answers]);
    return { ratio, verdict: v };
  };
  r.rows = [];
  for (const q of r.questions) r.rows.push({ id: q.id, ...add(q.id, q.plain_ms, q.merged_ms, ans(q.id)) });
  r.rows.push({ id: 'projection build', ...add('projection build (first query after import)', r.build.plain.first_query_ms, r.build.merged.first_query_ms) });
  r.rows.push({ id: 'cold rebuild', ...add(`rebuild from the shards at start (median of ${r.cold.restarts})`, r.cold.build_ms.plain, r.cold.build_ms.merged) });
  r.rows.push({ id: 'rebuild', ...add(`rebuild after a 1-event import (median of ${r.settings.runs})`, r.rebuild.plain_ms, r.rebuild.merged_ms) });
  r.rows.push({ id: 'restart first query', ...add(`first query after restart (median of ${r.restart.restarts})`, r.restart.first_query_ms.plain, r.restart.first_query_ms.merged) });
  console.log(table(rows, [1, 2, 3]));
  console.log('');
  const ld = r.restart.load;
  console.log(`after each restart the server was up in ${r.restart.start_ms.map((x) => fmtMs(x)).join(', ')} ms and logged ` +
    `the projections loaded (from projection.bin) in plain ${ld.plain.map(fmtLoad).join(', ')} ms, ` +
    `merged ${ld.merged.map(fmtLoad).join(', ')} ms`);
  const extra = r.checks.filter((c) => !r.questions.some((q) => q.id === c.id));
  const extraIds = [...new Set(extra.map((c) => c.id))];
  console.log(`also checked (after the import, after a restart, after a rebuild at start): ` +
    extraIds.map((id) => `${id} ${extra.filter((c) => c.id === id).every((c) => c.equal) ? 'equal' : 'MISMATCH'}`).join(', '));
  if (r.graph) {
    console.log(r.graph.ok ? `identity/graph: ${r.graph.device} -> ${r.graph.user} (cluster of ${r.graph.distinct_ids?.length} ids)`
      : `identity/graph: ${r.graph.note || `MISMATCH: ${r.graph.device} -> ${r.graph.canonical_id}, expected ${r.graph.user}`}`);
  }
  const mem = r.memory || {};
  console.log(`server peak RSS ${fmtBytes(Math.max(mem.peak_rss_bytes || 0, mem.after_restart_peak_rss_bytes || 0))} (both projects)`);

  // context: the query bench's numbers (no target)
  let qb = null;
  try { qb = JSON.parse(fs.readFileSync(QUERY_JSON, 'utf8')); } catch { /* none */ }
  if (qb && Array.isArray(qb.questions)) {
    const med = (id) => qb.questions.find((x) => x.id === id)?.engines?.mixpaneld?.median_ms;
    const first = qb.questions[0]?.engines?.mixpaneld?.first_ms;
    r.context = {
      query_bench: { file: path.relative(ROOT, QUERY_JSON), date: qb.machine?.date, events: qb.data?.events,
        'daily-uniques': med('daily-uniques'), funnel: med('funnel'), retention: med('retention'), first_query_after_import_ms: first },
    };
    const c = r.context.query_bench;
    console.log(`\ncontext, no target: the plain project (${fmtInt(d.events)} events) next to the query bench ` +
      `(${fmtInt(c.events)} events, ${c.date}, build/bench/query.json):`);
    const crow = [['question', `plain ${fmtInt(d.events)}`, `query bench ${fmtInt(c.events)}`]];
    for (const q of r.questions) crow.push([q.id, fmtMs(q.plain_ms), fmtMs(c[q.id])]);
    crow.push(['first query after import', fmtMs(r.build.plain.first_query_ms), fmtMs(c.first_query_after_import_ms)]);
    console.log(table(crow, [1, 2]));
  }
  if (r.cpu && r.cpu.others_pct > 15) {
    console.log(`\nWARNING: other processes used ${r.cpu.others_pct.toFixed(0)}% of a core while the timings ran ` +
      `(${r.cpu.top_others.join(', ')}): the times are noisy.`);
  }
  const bad = r.checks.filter((c) => !c.equal);
  if (bad.length || (r.graph && r.graph.ok === false)) {
    console.log('\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
    console.log('!!  MISMATCH: the merged project answers differently from the plain one');
    for (const c of bad) console.log(`!!  ${c.id} (${c.phase}): ${(c.errors || c.diffs_to_before || c.diffs).slice(0, 3).join('; ')}`);
    if (r.graph && r.graph.ok === false) console.log(`!!  identity/graph: ${r.graph.device} -> ${r.graph.canonical_id}, expected ${r.graph.user}`);
    console.log('!!  (both answers in build/bench/identity.json)');
    console.log('!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!');
  }
}

main().catch((e) => {
  console.error(`identity_bench: ${e.benchFailure ? e.message : e.stack}`);
  process.exit(1);
});
