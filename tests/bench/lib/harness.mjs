// Helpers the benchmarks share (query_bench.mjs, identity_bench.mjs): process
// CPU and exit, files, tables.
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export function fail(msg) {
  const e = new Error(msg);
  e.benchFailure = true;
  return e;
}

export async function stopServer(server) {
  server.proc.kill('SIGTERM');
  const killer = setTimeout(() => server.proc.kill('SIGKILL'), 120000);
  const code = await waitExit(server.proc);
  clearTimeout(killer);
  return code;
}

export function logTail(file) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => !/ info \S+ \S+ \d{3} /.test(l))
      .slice(-30).join('\n');
  } catch {
    return '';
  }
}

export function ini(sections) {
  let s = '';
  for (const [name, kv] of Object.entries(sections)) {
    s += `[${name}]\n`;
    for (const [k, v] of Object.entries(kv)) s += `${k} = ${v}\n`;
    s += '\n';
  }
  return s;
}

export function table(rows, right) {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (right.includes(i) ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  ').trimEnd();
  const out = [line(rows[0]), w.map((n) => '-'.repeat(n)).join('  ')];
  for (const r of rows.slice(1)) out.push(line(r));
  return out.join('\n');
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '-';
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return null;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

export function dirBytes(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += dirBytes(p);
    else if (e.isFile()) n += fs.statSync(p).size;
  }
  return n;
}

export function waitExit(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve(proc.exitCode ?? proc.signalCode);
    else proc.once('exit', (code, sig) => resolve(code ?? sig));
  });
}

// CPU ticks of every process, and of the machine (to warn about a busy machine).
export function cpuSnapshot() {
  const procs = new Map();
  let pids = [];
  try { pids = fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)); } catch { /* not Linux */ }
  for (const pid of pids) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
      procs.set(Number(pid), { comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')), ticks: Number(rest[11]) + Number(rest[12]) });
    } catch { /* exited */ }
  }
  return { t: performance.now(), procs };
}

// % of one core used by processes other than MINE between A and B.
export function cpuOthers(a, b, mine) {
  const secs = (b.t - a.t) / 1000;
  const top = [];
  let others = 0;
  for (const [pid, pb] of b.procs) {
    if (mine.includes(pid)) continue;
    const d = pb.ticks - (a.procs.get(pid)?.ticks ?? pb.ticks);
    if (d > 0) {
      others += d;
      top.push([pb.comm, d]);
    }
  }
  const pct = (t) => Math.round(t / 100 / secs * 1000) / 10;  // 100 ticks per second
  top.sort((x, y) => y[1] - x[1]);
  return { seconds: secs, others_pct: pct(others), top_others: top.slice(0, 3).map(([c, v]) => `${c} ${pct(v)}%`) };
}

// /proc/PID/status: the Vm* and Rss* fields, in bytes ({} once PID is gone).
export function procStatus(pid) {
  const out = {};
  try {
    for (const l of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = l.match(/^(Vm\w+|Rss\w+):\s+(\d+) kB/);
      if (m) out[m[1]] = Number(m[2]) * 1024;
    }
  } catch { /* gone */ }
  return out;
}
