// Helpers shared by sdk_node, durability and import_cli tests: raw HTTP(S)
// requests with node:http (so that connection errors are visible as such),
// a /track load generator that records what was acknowledged, export over
// HTTPS, and small shell/mount helpers.
import http from 'node:http';
import https from 'node:https';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { basic, DEMO } from './server.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One request.  Resolves { status, headers, text } or { error } (never rejects),
// so a test can tell "answered" from "connection refused/reset".
export function request(url, { method = 'GET', headers = {}, body, agent, timeoutMs = 60000, onSent } = {}) {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const done = (v) => { if (!settled) { settled = true; resolve(v); } };
    const opts = {
      method, host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { ...headers },
      agent: agent === undefined ? false : agent,
    };
    if (u.protocol === 'https:') opts.rejectUnauthorized = false;
    if (body !== undefined) opts.headers['Content-Length'] = Buffer.byteLength(body);
    const req = lib.request(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', (e) => done({ error: e, status: res.statusCode, partial: true }));
      res.on('aborted', () => done({ error: new Error('response aborted'), status: res.statusCode, partial: true }));
    });
    req.setTimeout(timeoutMs, () => { req.destroy(new Error('client timeout')); });
    req.on('error', (e) => done({ error: e }));
    if (onSent) req.on('finish', onSent);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export function trackForm(events) {
  return 'data=' + encodeURIComponent(JSON.stringify(events));
}

export async function postTrack(srv, events, { verbose = false, agent } = {}) {
  return request(`${srv.url}/track${verbose ? '?verbose=1' : ''}`, {
    method: 'POST', body: trackForm(events), agent,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
}

export async function postImportJson(srv, events, { secret = DEMO.api_secret, agent, query = '' } = {}) {
  return request(`${srv.url}/import${query}`, {
    method: 'POST', body: JSON.stringify(events), agent,
    headers: { 'Content-Type': 'application/json', Authorization: basic(secret) },
  });
}

export async function healthz(srv) {
  const r = await request(`${srv.url}/healthz`);
  if (r.error) throw r.error;
  return { status: r.status, json: (r.headers["content-type"] || "").includes("json") ? JSON.parse(r.text) : null, text: r.text };
}

// exportEvents() for http or https servers (self-signed certificates accepted).
export async function exportAll(srv, { from = '1971-01-01', to = '2100-12-31', secret = DEMO.api_secret, params = {} } = {}) {
  const q = new URLSearchParams({ from_date: from, to_date: to, ...params });
  const r = await request(`${srv.url}/api/2.0/export?${q}`, { headers: { Authorization: basic(secret) } });
  if (r.error) throw r.error;
  if (r.status !== 200) throw new Error(`export ${r.status}: ${r.text}`);
  return r.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// A throwaway self-signed certificate for 127.0.0.1.
export function makeCert() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-cert-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  return { dir, key, cert };
}

export function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout || '', stderr: (r.stderr || '') + (r.error ? String(r.error) : '') };
}

// Mount a tmpfs of SIZE on DIR; throws with a clear message when mounting is not permitted.
export function mountTmpfs(dir, size) {
  fs.mkdirSync(dir, { recursive: true });
  const r = sh('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (r.code !== 0) {
    throw new Error(`cannot mount a tmpfs on ${dir} (these tests need root / CAP_SYS_ADMIN; ` +
      `they are not skipped on purpose): mount exited ${r.code}: ${r.stderr.trim()}`);
  }
}

export function umount(dir) {
  let r = sh('umount', [dir]);
  if (r.code !== 0) r = sh('umount', ['-l', dir]);
  return r;
}

let seq = 0;
export function uid(prefix = 'e') {
  return `${prefix}-${process.pid.toString(36)}-${Date.now().toString(36)}-${(seq++).toString(36)}`;
}

// Load generator: CLIENTS concurrent keep-alive clients, each POSTing /track
// batches of BATCH events (unique $insert_id each) until stop() is called or a
// request fails with a connection error.  Every event sent is recorded with
// the outcome of its request: 'ack' (answer "1"), 'nack' (an answer other than
// "1"), 'lost' (no answer: connection error).
export function startTrackLoad(srv, { clients = 8, batch = 10, tag = 'load', timeSec, padLen = 40 } = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const sent = new Map(); // insert_id -> { ev, outcome }
  const requests = [];    // { ids, outcome, status, error }
  let stopping = false;
  const loops = [];
  for (let c = 0; c < clients; c++) {
    loops.push((async () => {
      let n = 0;
      while (!stopping) {
        const evs = [];
        for (let i = 0; i < batch; i++) {
          const id = `${tag}-c${c}-r${n}-i${i}`;
          const ev = {
            event: `load ${c % 3}`,
            properties: {
              token: DEMO.token, distinct_id: `user-${c}`, time: timeSec ?? Date.now() / 1000,
              $insert_id: id, client: c, req: n, i, pad: 'x'.repeat(padLen),
            },
          };
          evs.push(ev);
        }
        n++;
        const rec = { ids: evs.map((e) => e.properties.$insert_id), outcome: 'pending' };
        for (const e of evs) sent.set(e.properties.$insert_id, { ev: e, req: rec });
        requests.push(rec);
        const r = await postTrack(srv, evs, { agent });
        if (r.error) {
          rec.outcome = 'lost';
          rec.error = r.error.code || r.error.message;
          break; // the server is gone
        }
        rec.status = r.status;
        rec.outcome = r.status === 200 && r.text === '1' ? 'ack' : 'nack';
        rec.text = r.text;
        if (rec.outcome === 'nack') break;
      }
    })());
  }
  return {
    sent, requests,
    async stop() { stopping = true; await Promise.all(loops); agent.destroy(); },
    done: () => Promise.all(loops),
  };
}

// A request whose body is written in CHUNKS pieces, DELAY_MS apart (a slow
// client).  onStarted is called once the headers and the first piece are out.
export function slowRequest(url, { method = 'POST', headers = {}, body, chunks = 10, delayMs = 100, onStarted } = {}) {
  const u = new URL(url);
  const buf = Buffer.from(body);
  return new Promise((resolve) => {
    let settled = false;
    const done = (v) => { if (!settled) { settled = true; resolve(v); } };
    const req = http.request({
      method, host: u.hostname, port: u.port, path: u.pathname + u.search, agent: false,
      headers: { ...headers, 'Content-Length': buf.length },
    }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => done({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString() }));
      res.on('error', (e) => done({ error: e, status: res.statusCode, partial: true }));
      res.on('aborted', () => done({ error: new Error('response aborted'), status: res.statusCode, partial: true }));
    });
    req.on('error', (e) => done({ error: e }));
    (async () => {
      const step = Math.ceil(buf.length / chunks);
      for (let off = 0; off < buf.length && !settled; off += step) {
        req.write(buf.subarray(off, off + step));
        if (off === 0 && onStarted) onStarted();
        await sleep(delayMs);
      }
      req.end();
    })();
  });
}
