// The smallest end-to-end path: track one event, read it back through export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, exportEvents } from './lib/server.mjs';

test('track then export', async () => {
  const srv = await startServer();
  try {
    const body = 'data=' + encodeURIComponent(JSON.stringify({
      event: 'Signed up', properties: { token: 'demo-token', distinct_id: 'u-1', time: 1717000000.5, $insert_id: 'smoke-1', plan: 'pro' },
    }));
    const res = await fetch(`${srv.url}/track`, { method: 'POST', body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '1');
    const evs = await exportEvents(srv);
    assert.equal(evs.length, 1);
    assert.equal(evs[0].event, 'Signed up');
    assert.equal(evs[0].properties.time, 1717000000);
    assert.equal(evs[0].properties.distinct_id, 'u-1');
    assert.equal(evs[0].properties.plan, 'pro');
    assert.equal(evs[0].properties.$insert_id, 'smoke-1');
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});
