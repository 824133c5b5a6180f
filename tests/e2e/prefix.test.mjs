// Pitfall 7: SDK hosts may carry a path prefix; [server] path_prefix serves
// every route under it as well as at the root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, exportEvents, DEMO } from './lib/server.mjs';

test('path_prefix: /mp/track/ and /track both ingest; /mpx/track is 404', async () => {
  const srv = await startServer({ server: { path_prefix: '/mp' } });
  try {
    const send = (path, id) => fetch(`${srv.url}${path}?verbose=1`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'data=' + encodeURIComponent(JSON.stringify({ event: 'prefixed', properties: { token: DEMO.token, distinct_id: 'p', time: 1717000000, $insert_id: id } })),
    });
    let r = await send('/mp/track/', 'pre-1');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 1, error: null });
    r = await send('/track', 'pre-2');
    assert.equal(r.status, 200);
    r = await send('/mpx/track', 'pre-3');
    assert.equal(r.status, 404);
    const evs = await exportEvents(srv);
    assert.deepEqual(evs.map((e) => e.properties.$insert_id).sort(), ['pre-1', 'pre-2']);
    r = await fetch(`${srv.url}/mp/healthz`);
    assert.equal(r.status, 200);
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});
