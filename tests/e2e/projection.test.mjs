// The query engine's projection file (data_dir/<project>/projection.bin,
// include/colstore.h): written in the background once a view has been quiet
// for a few seconds, mapped at the next start when every shard's change
// counter still matches, and never trusted when it does not: answers after a
// restart are the same with the file current, stale, damaged or absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, DEMO } from './lib/server.mjs';
import { q, importEvents, ev } from './lib/query.mjs';
import { sanitizerClean } from './lib/wire.mjs';

const DAY = 86400000;
const T0 = Date.UTC(2024, 2, 1);

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

function events(n, base, tag) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(ev(i % 3 ? 'View' : 'Buy', `u${i % 17}`, base + i * 3600000,
      { plan: i % 2 ? 'pro' : 'free', n: i }, `${tag}-${i}`));
  }
  return out;
}

const QS = [
  ['segmentation', { event: 'View', from_date: '2024-03-01', to_date: '2024-04-30', type: 'unique', on: 'properties["plan"]' }],
  ['segmentation', { event: 'Buy', from_date: '2024-03-01', to_date: '2024-04-30', unit: 'week', where: 'properties["n"] > 10' }],
  ['funnels', { events: [{ event: 'View' }, { event: 'Buy' }], from_date: '2024-03-01', to_date: '2024-04-30', interval: 61 }],
  ['retention', { born_event: 'View', from_date: '2024-03-01', to_date: '2024-04-30', unit: 'week', interval_count: 3 }],
];

async function answers(srv) {
  const out = [];
  for (const [name, params] of QS) {
    const r = await q(srv, name, params);
    assert.equal(r.status, 200, r.text);
    out.push(r.json);
  }
  return out;
}

test('projection file: written, mapped after a restart, refused when stale or damaged', { timeout: 120000 }, async () => {
  const srv = await startServer({ storage: { shard_period: 'month' } });
  const file = path.join(srv.dataDir, DEMO.name, 'projection.bin');
  try {
    await importEvents(srv, events(400, T0, 'a'));          // March and April shards
    const before = await answers(srv);
    await waitFor(() => fs.existsSync(file), 30000, 'projection.bin');

    // a restart maps the file: same answers
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    assert.deepStrictEqual(await answers(srv), before);

    // a change after the restart: the mapped view is dropped, the new data counts
    await importEvents(srv, events(50, T0 + 20 * DAY + 1800000, 'b'));
    const changed = await answers(srv);
    assert.notDeepStrictEqual(changed, before);
    assert.equal(await srv.stop(), 0);

    // the file now describes an older state of one shard: refused
    await srv.restart();
    assert.deepStrictEqual(await answers(srv), changed);
    assert.equal(await srv.stop(), 0);

    // damaged files: garbage, truncated, a flipped manifest counter
    const good = fs.existsSync(file) ? fs.readFileSync(file) : null;
    const damaged = [Buffer.from('not a projection file'), good && good.subarray(0, Math.floor(good.length / 2))];
    if (good) {
      const flipped = Buffer.from(good);
      flipped[flipped.length - 1] ^= 0xff;  // inside the strings: a missing NUL
      damaged.push(flipped);
    }
    for (const bytes of damaged.filter(Boolean)) {
      fs.writeFileSync(file, bytes);
      await srv.restart();
      assert.deepStrictEqual(await answers(srv), changed);
      assert.equal(await srv.stop(), 0);
    }
    // absent: rebuilt from the shards
    fs.rmSync(file, { force: true });
    await srv.restart();
    assert.deepStrictEqual(await answers(srv), changed);
  } finally {
    assert.equal(await srv.stop(), 0);
    assert.ok(sanitizerClean(srv.log()), srv.log());
  }
});
