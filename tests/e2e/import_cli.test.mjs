// `mixpaneld import --config CFG --project demo FILE...`: Mixpanel export
// files (NDJSON as /api/2.0/export writes it, the same gzipped, a JSON array,
// a file with bad lines), summary and exit status, then the data read back
// through a server started on the same data dir.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { startServer, makeConfig, exportEvents, BIN } from './lib/server.mjs';
import { postImportJson } from './lib/load.mjs';
import { EXAMPLES } from './lib/wire.mjs';

const EXAMPLE = path.join(EXAMPLES, 'export.jsonl');
const running = [];
after(async () => { for (const s of running) { try { await s.kill9(); } catch { /* gone */ } } });

function cli(cfg, files, project = 'demo') {
  const r = spawnSync(BIN, ['import', '--config', cfg.configPath, '--project', project, ...files], { encoding: 'utf8', timeout: 30000 });
  const m = (r.stdout || '').match(/(\d+) records read, (\d+) imported, (\d+) duplicates, (\d+) rejected/);
  const reasons = {};
  for (const l of (r.stdout || '').split('\n')) {
    const k = l.match(/^\s+rejected (\d+): (.*)$/);
    if (k) reasons[k[2]] = Number(k[1]);
  }
  return {
    code: r.status, stdout: r.stdout || '', stderr: r.stderr || '',
    sum: m ? { read: +m[1], imported: +m[2], dups: +m[3], rejected: +m[4] } : null,
    reasons,
  };
}

function show(r) { return `exit ${r.code}\nstdout:\n${r.stdout}\nstderr (tail):\n${r.stderr.slice(-1500)}`; }

// NDJSON lines in the shape of Mixpanel's raw export: the two lines of the
// spec example, then N generated ones spread over several months.
function exportLines(n, prefix) {
  const lines = fs.readFileSync(EXAMPLE, 'utf8').split('\n').filter(Boolean);
  const out = prefix === 'nd' ? [...lines] : [];
  const t0 = Date.parse('2024-01-01T00:00:00Z') / 1000;
  for (let i = 0; i < n; i++) {
    const t = t0 + i * 2711; // ~45 min apart: ~3.5 months for 3000 events
    out.push(JSON.stringify({
      event: ['Signed up', 'Viewed page', 'Purchased'][i % 3],
      properties: {
        time: t, distinct_id: `${prefix}-user-${i % 97}`, $insert_id: `${prefix}${i.toString(36).padStart(6, '0')}x`,
        mp_lib: 'web', $os: i % 2 ? 'Linux' : 'Mac OS X', $city: 'Zürich', mp_country_code: 'CH', n: i,
        amount: i % 3 === 2 ? i / 4 : undefined, tags: i % 5 === 0 ? ['a', 'b'] : undefined,
        mp_processing_time_ms: t * 1000 + 1234,
      },
    }));
  }
  return out;
}

test('import NDJSON, gzip, JSON array and a file with bad records; re-import is all duplicates', async () => {
  const cfg = makeConfig();
  const dir = cfg.dir;
  const nd = exportLines(3000, 'nd');          // 3002 lines: > max_events_per_request (2000)
  const ndFile = path.join(dir, 'export.jsonl');
  fs.writeFileSync(ndFile, nd.join('\n') + '\n');
  const gzLines = exportLines(500, 'gz');
  const gzFile = path.join(dir, 'export-gz.jsonl.gz');
  fs.writeFileSync(gzFile, zlib.gzipSync(gzLines.join('\r\n') + '\r\n')); // CRLF too
  const arr = exportLines(40, 'ar').map((l) => JSON.parse(l));
  const arrFile = path.join(dir, 'events.json');
  fs.writeFileSync(arrFile, JSON.stringify(arr, null, 2));
  const badFile = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(badFile, [
    JSON.stringify({ event: 'good 1', properties: { time: 1717000000, distinct_id: 'b', $insert_id: 'bad-file-1' } }),
    'this is not json',
    '{"event":"truncated","properties":{"time":1717000000,',
    JSON.stringify({ properties: { time: 1717000001, distinct_id: 'b', $insert_id: 'bad-file-noname' } }), // invalid: no event
    '',
    JSON.stringify({ event: 'good 2', properties: { time: 1717000002, distinct_id: 'b', $insert_id: 'bad-file-2' } }),
  ].join('\n') + '\n');

  let r = cli(cfg, [ndFile]);
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(r.sum, { read: 3002, imported: 3002, dups: 0, rejected: 0 }, show(r));

  r = cli(cfg, [gzFile]);
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(r.sum, { read: 500, imported: 500, dups: 0, rejected: 0 }, show(r));

  r = cli(cfg, [arrFile]);
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(r.sum, { read: 40, imported: 40, dups: 0, rejected: 0 }, show(r));

  r = cli(cfg, [badFile]);
  assert.equal(r.code, 1, `rejects -> exit 1\n${show(r)}`);
  assert.deepEqual(r.sum, { read: 5, imported: 2, dups: 0, rejected: 3 }, show(r));
  assert.equal(r.reasons['line is not valid JSON'], 2, show(r));
  const other = Object.entries(r.reasons).filter(([k]) => k !== 'line is not valid JSON');
  assert.equal(other.length, 1, show(r));
  assert.equal(other[0][1], 1);
  assert.match(other[0][0], /event/, 'the reason names the missing event name');

  // the same files again: everything is a duplicate; several files in one run
  r = cli(cfg, [ndFile, gzFile, arrFile]);
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(r.sum, { read: 3542, imported: 0, dups: 3542, rejected: 0 }, show(r));

  // a missing file: exit 1, the others still imported
  r = cli(cfg, [path.join(dir, 'nope.jsonl'), arrFile]);
  assert.equal(r.code, 1, show(r));
  assert.match(r.stderr, /nope\.jsonl/);
  assert.deepEqual(r.sum, { read: 40, imported: 0, dups: 40, rejected: 0 }, show(r));
  // an unknown project: usage/config error, exit 2
  r = cli(cfg, [arrFile], 'nosuch');
  assert.equal(r.code, 2, show(r));
  assert.match(r.stderr, /nosuch/);

  // read it all back through a server on the same data dir
  const srv = await startServer(cfg);
  running.push(srv);
  const evs = await exportEvents(srv);
  assert.equal(evs.length, 3002 + 500 + 40 + 2);
  const byId = new Map(evs.map((e) => [e.properties.$insert_id, e]));
  assert.equal(byId.size, evs.length, 'each event once');
  const check = (line) => {
    const src = typeof line === 'string' ? JSON.parse(line) : line;
    const e = byId.get(src.properties.$insert_id);
    assert.ok(e, `missing ${src.properties.$insert_id}`);
    assert.equal(e.event, src.event);
    for (const [k, v] of Object.entries(src.properties)) {
      if (k === 'mp_processing_time_ms') continue;
      assert.deepEqual(e.properties[k], v, `${src.properties.$insert_id}.${k}`);
    }
    assert.equal(e.properties.$import, true);
  };
  nd.forEach(check);
  gzLines.forEach(check);
  arr.forEach(check);
  assert.equal(byId.get('a1b2c3d4e5f6g7h8').properties.$city, 'Berlin');
  assert.equal(byId.get('bad-file-1').event, 'good 1');
  assert.equal(byId.get('bad-file-2').event, 'good 2');
  assert.equal(byId.get('bad-file-noname'), undefined);
  const hz = JSON.parse(await (await fetch(`${srv.url}/healthz`)).text());
  assert.equal(hz.projects.demo.events, evs.length);

  // the CLI while the server runs on the same data dir: must import correctly
  // or fail cleanly (message, non-zero exit, nothing half-done)
  const extra = path.join(dir, 'extra.jsonl');
  fs.writeFileSync(extra, JSON.stringify({ event: 'while running', properties: { time: 1717000100, distinct_id: 'w', $insert_id: 'while-running-1' } }) + '\n');
  r = cli(cfg, [extra]);
  const after1 = await exportEvents(srv, { params: { event: JSON.stringify(['while running']) } });
  if (r.code === 0) {
    process.stderr.write('# CLI with the server running: imported (works)\n');
    assert.deepEqual(r.sum, { read: 1, imported: 1, dups: 0, rejected: 0 });
    assert.equal(after1.length, 1, 'imported while running and visible to the server');
  } else {
    process.stderr.write(`# CLI with the server running: refused, exit ${r.code}: ${r.stderr.trim().split('\n').pop()}\n`);
    assert.match(r.stderr, /in use|running|lock/i, `a clear message:\n${show(r)}`);
    assert.equal(after1.length, 0, 'nothing imported');
  }
  // the server is unaffected
  assert.equal((await fetch(`${srv.url}/healthz`)).status, 200);
  assert.equal(await srv.stop(), 0);
});

test('a line holding two JSON records is not silently cut to the first one', () => {
  const cfg = makeConfig();
  const f = path.join(cfg.dir, 'two-per-line.jsonl');
  const a = JSON.stringify({ event: 'first', properties: { time: 1717000000, distinct_id: 'u', $insert_id: 'two-1' } });
  const b = JSON.stringify({ event: 'second', properties: { time: 1717000001, distinct_id: 'u', $insert_id: 'two-2' } });
  fs.writeFileSync(f, `${a}${b}\n${a.replace('two-1', 'two-3')} trailing garbage\n`);
  const r = cli(cfg, [f]);
  // acceptable: the lines are rejected as invalid JSON (exit 1), or every
  // record is imported; not acceptable: a record dropped without a word
  const accounted = r.sum ? r.sum.imported + r.sum.dups + r.sum.rejected : 0;
  assert.ok(r.sum, show(r));
  assert.ok(r.sum.read >= 2 && accounted === r.sum.read, show(r));
  assert.ok(r.sum.rejected === 0 ? r.sum.imported === 3 : r.code === 1,
    `"{...}{...}" and "{...} trailing garbage" must be rejected as invalid JSON (or fully imported), ` +
    `not imported as their first value with exit 0:\n${show(r)}`);
});

test('historical data spanning more than 24 shards in one batch (shard_period = day)', async () => {
  const cfg = makeConfig({ storage: { shard_period: 'day' } });
  const t0 = Date.parse('2024-03-01T12:00:00Z') / 1000;
  const evs = Array.from({ length: 40 }, (_, i) => ({ event: 'daily', properties: { time: t0 + i * 86400, distinct_id: 'd', $insert_id: `day-${i}` } }));
  const f = path.join(cfg.dir, 'days.jsonl');
  fs.writeFileSync(f, evs.map((e) => JSON.stringify(e)).join('\n') + '\n');
  const r = cli(cfg, [f]);
  assert.equal(r.code, 0, `40 days of history in one file must import:\n${show(r)}`);
  assert.deepEqual(r.sum, { read: 40, imported: 40, dups: 0, rejected: 0 }, show(r));
});

test('/import of one request spanning more than 24 day shards', async () => {
  const srv = await startServer({ storage: { shard_period: 'day' } });
  running.push(srv);
  const t0 = Date.parse('2024-03-01T12:00:00Z') / 1000;
  const evs = Array.from({ length: 40 }, (_, i) => ({ event: 'daily', properties: { time: t0 + i * 86400, distinct_id: 'd', $insert_id: `day-${i}` } }));
  const r = await postImportJson(srv, evs);
  assert.ok(!r.error);
  assert.equal(r.status, 200, `a valid 40-event /import spanning 40 days: ${r.status} ${r.text} ` +
    '(a 503 "retry later" here is permanent: every retry fails the same way)');
  const out = await exportEvents(srv);
  assert.equal(out.length, 40);
  assert.equal(await srv.stop(), 0);
});
