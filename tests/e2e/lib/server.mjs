// Start build/mixpaneld on a free loopback port with a temporary data dir.
//
//   const srv = await startServer({ projects: [...], server: {...}, storage: {...} });
//   srv.url        'http://127.0.0.1:PORT'
//   srv.port, srv.dataDir, srv.configPath, srv.log()  (stderr so far)
//   await srv.stop()       SIGTERM, resolves with the exit code
//   await srv.kill9()      SIGKILL, resolves when the process is gone
//   await srv.restart()    start again on the same config and data dir (new port)
//
// MIXPANELD (env) is the binary; `make e2e` sets it (ASan build under test-san).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.MIXPANELD ||
  path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../build/mixpaneld');

export const DEMO = { name: 'demo', id: 1, token: 'demo-token', api_secret: 'demo-secret', timezone: 'UTC' };

function ini(sections) {
  let out = '';
  for (const [name, kv] of Object.entries(sections)) {
    out += `[${name}]\n`;
    for (const [k, v] of Object.entries(kv)) if (v !== undefined && v !== null) out += `${k} = ${v}\n`;
    out += '\n';
  }
  return out;
}

export function makeConfig({ server = {}, storage = {}, projects = [DEMO], dir, extra = {} } = {}) {
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-e2e-'));
  const dataDir = storage.data_dir || path.join(dir, 'data');
  const sections = {
    server: { bind: '127.0.0.1', port: 8080, threads: 2, track_max_age_days: 0, ...server },
    storage: { shard_period: 'month', sync: 'normal', ...storage, data_dir: dataDir },
  };
  for (const p of projects) {
    const { name, ...rest } = p;
    sections[`project.${name}`] = rest;
  }
  // extra: additional INI sections, e.g. {'service_account.ci': {username: 'ci', secret: 's3cret', projects: 'demo'}}
  for (const [name, kv] of Object.entries(extra)) sections[name] = kv;
  const configPath = path.join(dir, 'config.ini');
  fs.writeFileSync(configPath, ini(sections));
  return { dir, dataDir, configPath };
}

export async function startServer(opts = {}) {
  const cfg = opts.configPath ? opts : makeConfig(opts);
  let proc, stderr = '', exited = null, exitCode = null;

  async function launch() {
    stderr = '';
    exitCode = null;
    const args = ['--config', cfg.configPath, '--port', '0', ...(opts.args || [])];
    proc = spawn(opts.wrapper ? opts.wrapper[0] : BIN,
      opts.wrapper ? [...opts.wrapper.slice(1), BIN, ...args] : args,
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
    exited = new Promise((resolve) => proc.on('exit', (code, sig) => { exitCode = code ?? sig; resolve(exitCode); }));
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server did not start:\n' + stderr)), 15000);
      proc.stderr.on('data', (d) => {
        stderr += d.toString();
        if (process.env.E2E_VERBOSE) process.stderr.write(d);
        const m = stderr.match(/listening on https?:\/\/[^ ]*:(\d+)/);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      proc.on('exit', () => { clearTimeout(timer); reject(new Error('server exited at start:\n' + stderr)); });
    });
    const scheme = /listening on https/.test(stderr) ? 'https' : 'http';
    srv.port = port;
    srv.url = `${scheme}://127.0.0.1:${port}`;
    srv.pid = proc.pid;
  }

  const srv = {
    ...cfg,
    log: () => stderr,
    exited: () => exited,
    async stop() {
      if (exitCode !== null) return exitCode;
      proc.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (exitCode !== null) return exitCode;
      proc.kill('SIGKILL');
      return exited;
    },
    async restart() {
      await launch();
      return srv;
    },
  };
  await launch();
  return srv;
}

export function basic(secret) {
  return 'Basic ' + Buffer.from(secret + ':').toString('base64');
}

// All exported events of a project (JSONL parsed), for the given date range.
export async function exportEvents(srv, { from = '1971-01-01', to = '2100-12-31', secret = DEMO.api_secret, params = {} } = {}) {
  const q = new URLSearchParams({ from_date: from, to_date: to, ...params });
  const res = await fetch(`${srv.url}/api/2.0/export?${q}`, { headers: { Authorization: basic(secret) } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`export ${res.status}: ${text}`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

export function b64(obj) {
  return Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj)).toString('base64');
}
