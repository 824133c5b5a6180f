// An independent reference for the query API (docs/QUERIES.md), written in
// SQL over one plain SQLite table, run with the sqlite3 CLI:
//
//   events(id INTEGER PRIMARY KEY, name TEXT, distinct_id TEXT, time_ms INTEGER, props TEXT JSON)
//
// id is the import order (after de-duplication: the last copy of a duplicate
// is kept), props the event's `properties` object as sent.  Only fixed-offset
// time zones are supported: local time = time_ms + offset.
//
//   const ref = new SqlRef(events, { offsetMin: -300 });   // events as sent to /import
//   ref.segmentation({ event, from, to, unit, interval, type, where, on, limit })
//   ref.numeric('sum' | 'average', { event, from, to, unit, where, value })
//   ref.events({ events: [...], from, to, unit, type })
//   ref.funnel({ steps: [{event, where}], from, to, windowMs, interval, unit, where, on, limit })
//   ref.retention({ type, bornEvent, bornWhere, event, where, from, to, unit, interval, intervalCount, unbounded, on, limit })
//   ref.addiction({ event, where, from, to, unit, addictionUnit })
//   ref.close()
//
// Filters (`where`, `bornWhere`, step `where`) are SQL predicates over the
// alias `e` (columns e.name, e.props, e.distinct_id, e.time_ms).  `on` is
// { label: <SQL text, NULL = undefined> } optionally with
// { from: '<table-valued item using e, e.g. json_each(e.props, ...) AS j>' }
// (see onProp).  `value` (sum/average) is a SQL number, NULL = not a number.
// The answers have the exact JSON shapes of the server's reports.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const DAY = 86400000;

export const sqlStr = (s) => "'" + String(s).replace(/'/g, "''") + "'";
export const jpath = (name) => sqlStr(`$."${name}"`);

// ---- filter / label / value helpers (SQL over alias e) --------------------

// A property's label rows: each distinct element of a list, or the scalar.
export function onProp(name) {
  return {
    from: `json_each(e.props, ${jpath(name)}) AS j`,
    label: `CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'
            WHEN 'text' THEN j.atom WHEN 'integer' THEN CAST(j.atom AS TEXT) WHEN 'real' THEN CAST(j.atom AS TEXT) END`,
  };
}
// A number-valued property (NULL when not a number).
export const numProp = (name) => `(CASE WHEN json_type(e.props, ${jpath(name)}) IN ('integer','real') THEN json_extract(e.props, ${jpath(name)}) END)`;
export const typeOf = (name) => `json_type(e.props, ${jpath(name)})`;
export const valOf = (name) => `json_extract(e.props, ${jpath(name)})`;

// ---- dates ------------------------------------------------------------------

export function dayMs(d) { // 'YYYY-MM-DD' -> ms of its midnight (as if UTC)
  const [y, m, dd] = d.split('-').map(Number);
  return Date.UTC(y, m - 1, dd);
}
export function fmtDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
export function addDays(d, n) { return fmtDay(dayMs(d) + n * DAY); }
function mondayOnOrBefore(d) {
  const ms = dayMs(d);
  const wd = (new Date(ms).getUTCDay() + 6) % 7; // Monday 0
  return fmtDay(ms - wd * DAY);
}
export function daysInMonth(key) { // 'YYYY-MM-..'
  const [y, m] = key.split('-').map(Number);
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

// Every bucket key overlapping [from, to] (unit, or {days: N} from `from`).
export function seriesKeys(unit, from, to) {
  const out = [];
  const end = dayMs(to);
  if (typeof unit === 'object') {
    for (let t = dayMs(from); t <= end; t += unit.days * DAY) out.push(fmtDay(t));
    return out;
  }
  switch (unit) {
    case 'minute': case 'hour':
      for (let t = dayMs(from); t < end + DAY; t += unit === 'hour' ? 3600000 : 60000) {
        const iso = new Date(t).toISOString();
        out.push(unit === 'hour' ? `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00:00` : `${iso.slice(0, 10)} ${iso.slice(11, 16)}:00`);
      }
      return out;
    case 'day':
      for (let t = dayMs(from); t <= end; t += DAY) out.push(fmtDay(t));
      return out;
    case 'week':
      for (let t = dayMs(mondayOnOrBefore(from)); t <= end; t += 7 * DAY) out.push(fmtDay(t));
      return out;
    case 'month': {
      let [y, m] = from.split('-').map(Number);
      for (;;) {
        const k = `${y}-${String(m).padStart(2, '0')}-01`;
        if (dayMs(k) > end) return out;
        out.push(k);
        if (++m > 12) { m = 1; y++; }
      }
    }
    default: throw new Error('unit ' + unit);
  }
}

// SQL: the bucket key of local time LT (ms).
function keySql(unit, lt, from) {
  const s = `(${lt}) / 1000, 'unixepoch'`;
  if (typeof unit === 'object')
    return `date(${sqlStr(from)}, '+' || ((CAST(julianday(date(${s})) - julianday(${sqlStr(from)}) AS INTEGER) / ${unit.days}) * ${unit.days}) || ' days')`;
  switch (unit) {
    case 'minute': return `strftime('%Y-%m-%d %H:%M:00', ${s})`;
    case 'hour': return `strftime('%Y-%m-%d %H:00:00', ${s})`;
    case 'day': return `date(${s})`;
    case 'week': return `date(${s}, '-6 days', 'weekday 1')`;
    case 'month': return `strftime('%Y-%m-01', ${s})`;
    default: throw new Error('unit ' + unit);
  }
}

function sortSegments(totals) { // [[key, total]] -> keys by total desc, key asc
  return totals.sort((a, b) => (b[1] - a[1]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((x) => x[0]);
}

// ---- the reference ------------------------------------------------------------

export class SqlRef {
  constructor(events, { offsetMin = 0, dir = null } = {}) {
    this.dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'mixpaneld-sqlref-'));
    this.db = path.join(this.dir, 'ref.db');
    this.off = offsetMin * 60000;
    const jf = path.join(this.dir, 'events.json');
    fs.writeFileSync(jf, JSON.stringify(events));
    fs.rmSync(this.db, { force: true });
    this.exec(`
      CREATE TABLE events(id INTEGER PRIMARY KEY, name TEXT NOT NULL, distinct_id TEXT NOT NULL, time_ms INTEGER NOT NULL, props TEXT NOT NULL);
      INSERT INTO events(name, distinct_id, time_ms, props)
        SELECT json_extract(value, '$.event'),
               coalesce(CAST(json_extract(value, '$.properties.distinct_id') AS TEXT), ''),
               CASE WHEN json_extract(value, '$.properties.time') >= 1e11
                    THEN CAST(round(json_extract(value, '$.properties.time')) AS INTEGER)
                    ELSE CAST(round(json_extract(value, '$.properties.time') * 1000) AS INTEGER) END,
               json_extract(value, '$.properties')
        FROM json_each(readfile(${sqlStr(jf)})) ORDER BY key;
      DELETE FROM events WHERE id NOT IN
        (SELECT max(id) FROM events GROUP BY name, distinct_id, time_ms, json_extract(props, '$."$insert_id"'));
      CREATE INDEX events_user ON events(distinct_id, time_ms, id);
      CREATE INDEX events_name ON events(name, time_ms);
    `);
  }

  close() { fs.rmSync(this.dir, { recursive: true, force: true }); }

  exec(sql) {
    const r = spawnSync('sqlite3', ['-bail', '-json', this.db], { input: sql, maxBuffer: 1 << 28, encoding: 'utf8' });
    if (r.status !== 0 || r.stderr) throw new Error(`sqlite3 failed (${r.status}): ${r.stderr}\n--- SQL ---\n${sql}`);
    return r.stdout;
  }

  all(sql) {
    const out = this.exec(sql).trim();
    return out ? JSON.parse(out) : [];
  }

  count() { return this.all('SELECT count(*) AS n FROM events')[0].n; }

  lt(alias = 'e') { return `(${alias}.time_ms + ${this.off})`; }
  range(from, to, alias = 'e') {
    return `${this.lt(alias)} >= ${dayMs(from)} AND ${this.lt(alias)} < ${dayMs(to) + DAY}`;
  }

  // segmentation (and events/properties): general / unique / average.
  // values: keep only these segment labels (events/properties `values`).
  segmentation({ event, from, to, unit = 'day', interval = null, type = 'general', where = null, on = null, limit = 60, values: only = null }) {
    const u = interval ? { days: interval } : unit;
    const keys = seriesKeys(u, from, to);
    const label = on ? on.label : sqlStr(event);
    const rows = this.all(`
      SELECT k, label, count(*) AS n, count(DISTINCT CASE WHEN uid <> '' THEN uid END) AS uu FROM (
        SELECT DISTINCT e.id, e.distinct_id AS uid, ${keySql(u, this.lt(), from)} AS k, ${label} AS label
        FROM events e ${on && on.from ? ', ' + on.from : ''}
        WHERE e.name = ${sqlStr(event)} AND ${this.range(from, to)} AND (${where || '1'}))
      WHERE label IS NOT NULL ${only ? `AND label IN (${only.map(sqlStr).join(',')})` : ''}
      GROUP BY k, label`);
    const values = on ? {} : { [event]: {} }; // without `on` the event's key is always there
    for (const r of rows) {
      let v;
      if (type === 'general') v = r.n;
      else if (type === 'unique') v = r.uu; // a segment whose events all have distinct_id "" is listed, with 0
      else if (type === 'average') v = r.uu ? r.n / r.uu : 0;
      else throw new Error('type ' + type);
      (values[r.label] ||= {})[r.k] = v;
    }
    return this.#shape(keys, values, on ? limit : null);
  }

  #shape(keys, values, limit) {
    const totals = [];
    for (const [label, m] of Object.entries(values)) {
      let tot = 0;
      for (const k of keys) { m[k] ??= 0; tot += m[k]; }
      totals.push([label, tot]);
    }
    const keep = limit == null ? totals.map((x) => x[0]) : sortSegments(totals).slice(0, limit);
    const out = {};
    for (const l of keep) out[l] = values[l];
    return { data: { series: keys, values: out }, legend_size: keep.length };
  }

  // events: one key per name.
  events({ events, from, to, unit = 'day', type = 'general' }) {
    const keys = seriesKeys(unit, from, to);
    const rows = this.all(`
      SELECT e.name AS name, ${keySql(unit, this.lt(), from)} AS k, count(*) AS n,
             count(DISTINCT CASE WHEN e.distinct_id <> '' THEN e.distinct_id END) AS uu
      FROM events e WHERE e.name IN (${events.map(sqlStr).join(',')}) AND ${this.range(from, to)}
      GROUP BY e.name, k`);
    const values = {};
    for (const n of events) values[n] = {};
    for (const r of rows) values[r.name][r.k] = type === 'general' ? r.n : type === 'unique' ? r.uu : (r.uu ? r.n / r.uu : 0);
    return this.#shape(keys, values, null);
  }

  // segmentation/sum and segmentation/average.
  numeric(kind, { event, from, to, unit = 'day', where = null, value }) {
    const keys = seriesKeys(unit, from, to);
    const rows = this.all(`
      SELECT ${keySql(unit, this.lt(), from)} AS k, total(coalesce(${value}, 0)) AS s, count(*) AS n
      FROM events e WHERE e.name = ${sqlStr(event)} AND ${this.range(from, to)} AND (${where || '1'})
      GROUP BY k`);
    const results = {};
    for (const k of keys) results[k] = 0;
    for (const r of rows) results[r.k] = kind === 'sum' ? r.s : (r.n ? r.s / r.n : 0);
    return { status: 'ok', results };
  }

  // funnels.  steps: [{event, where}], windowMs; interval (days) or unit.
  funnel({ steps, from, to, windowMs = 30 * DAY, interval = 1, unit = null, where = null, on = null, limit = 255 }) {
    const u = unit || { days: interval };
    const keys = seriesKeys(u, from, to);
    const n = steps.length;
    const pred = (s) => `(e.name = ${sqlStr(s.event)} AND (${s.where || '1'}))`;
    let sql = `
      CREATE TEMP TABLE q AS SELECT e.id, e.distinct_id AS uid, e.time_ms AS t, e.name, e.props,
             ${keySql(u, this.lt(), from)} AS k, (${this.range(from, to)}) AS inr
        FROM events e WHERE e.distinct_id <> '' AND (${where || '1'});
      CREATE INDEX q_u ON q(uid, t, id);
      CREATE TEMP TABLE f1 AS
        SELECT x.k, x.uid, (SELECT e.id FROM q e WHERE e.uid = x.uid AND e.k = x.k AND e.inr AND ${pred(steps[0])}
                            ORDER BY e.t, e.id LIMIT 1) AS id1
        FROM (SELECT DISTINCT e.k, e.uid FROM q e WHERE e.inr AND ${pred(steps[0])}) x;
      CREATE TEMP TABLE g1 AS SELECT f1.*, q.t AS t1 FROM f1 JOIN q ON q.id = f1.id1;
    `;
    for (let i = 2; i <= n; i++) {
      const used = Array.from({ length: i - 1 }, (_, j) => `g.id${j + 1}`).join(', ');
      sql += `
      CREATE TEMP TABLE f${i} AS SELECT g.*, CASE WHEN g.id${i - 1} IS NOT NULL THEN
          (SELECT e.id FROM q e WHERE e.uid = g.uid AND ${pred(steps[i - 1])} AND e.id NOT IN (${used})
             AND e.t >= g.t${i - 1} - 2000 AND e.t < g.t1 + ${windowMs}
           ORDER BY e.t, e.id LIMIT 1) END AS id${i}
        FROM g${i - 1} g;
      CREATE TEMP TABLE g${i} AS SELECT f.*, q.t AS t${i} FROM f${i} f LEFT JOIN q ON q.id = f.id${i};
      `;
    }
    const aggs = ['count(*) AS c1'];
    for (let i = 2; i <= n; i++) {
      aggs.push(`count(id${i}) AS c${i}`,
        `avg(CASE WHEN id${i} IS NOT NULL THEN (t${i} - t${i - 1}) / 1000.0 END) AS a${i}`,
        `avg(CASE WHEN id${i} IS NOT NULL THEN (t${i} - t1) / 1000.0 END) AS s${i}`);
    }
    let rows;
    if (on) {
      sql += `
      SELECT g.k, lab AS label, ${aggs.join(', ')} FROM
        (SELECT DISTINCT g.*, ${on.label} AS lab FROM g${n} g JOIN q e ON e.id = g.id1 ${on.from ? ', ' + on.from : ''}) g
      WHERE lab IS NOT NULL GROUP BY g.k, lab
      UNION ALL
      SELECT g.k, NULL AS label, ${aggs.join(', ')} FROM g${n} g GROUP BY g.k;`;
      rows = this.all(sql);
    } else {
      sql += `SELECT g.k, NULL AS label, ${aggs.join(', ')} FROM g${n} g GROUP BY g.k;`;
      rows = this.all(sql);
    }
    const stepsOf = (r) => {
      const c = (i) => (r ? r[`c${i}`] : 0);
      const out = [];
      for (let i = 1; i <= n; i++) {
        const ci = c(i), prev = i === 1 ? ci : c(i - 1), first = c(1);
        out.push({
          count: ci,
          avg_time: i === 1 || !r ? null : r[`a${i}`],
          avg_time_from_start: i === 1 || !r ? null : r[`s${i}`],
          step_conv_ratio: i === 1 ? (ci > 0 ? 1 : 0) : (prev ? ci / prev : 0),
          overall_conv_ratio: i === 1 ? (ci > 0 ? 1 : 0) : (first ? ci / first : 0),
          goal: steps[i - 1].event,
          event: steps[i - 1].event,
        });
      }
      return out;
    };
    const analysis = (st) => {
      let worst = 1, drop = 0;
      for (let i = 1; i < st.length; i++) {
        const d = st[i - 1].count - st[i].count;
        if (d > drop) { drop = d; worst = i; }
      }
      return { completion: st[st.length - 1].count, starting_amount: st[0].count, steps: st.length, worst };
    };
    const overall = {}, seg = {};
    for (const r of rows) {
      if (r.label === null) overall[r.k] = r;
      else (seg[r.label] ||= {})[r.k] = r;
    }
    const data = {};
    if (!on) {
      for (const k of keys) { const st = stepsOf(overall[k]); data[k] = { steps: st, analysis: analysis(st) }; }
    } else {
      const totals = Object.entries(seg).map(([l, m]) => [l, Object.values(m).reduce((a, r) => a + r.c1, 0)]);
      const keep = sortSegments(totals).slice(0, limit);
      for (const k of keys) {
        data[k] = { $overall: stepsOf(overall[k]) };
        for (const l of keep) data[k][l] = stepsOf(seg[l][k]);
      }
    }
    return { meta: { dates: keys }, data };
  }

  // retention: birth / compounded.
  retention({ type = 'birth', bornEvent, bornWhere = null, event = null, where = null, from, to, unit = 'day', interval = 1,
    intervalCount = 1, unbounded = false, on = null, limit = 255 }) {
    const keys = seriesKeys(unit, from, to);
    const L = interval * (unit === 'day' ? 1 : unit === 'week' ? 7 : 30) * DAY;
    const N = intervalCount;
    const retPred = `(${event ? `e.name = ${sqlStr(event)}` : '1'} AND (${where || '1'}))`;
    let sql;
    if (type === 'birth') {
      sql = `
      CREATE TEMP TABLE born AS SELECT uid, id, t FROM (
        SELECT e.distinct_id AS uid, e.id, e.time_ms AS t,
               row_number() OVER (PARTITION BY e.distinct_id ORDER BY e.time_ms, e.id) AS rn
        FROM events e WHERE e.name = ${sqlStr(bornEvent)} AND e.distinct_id <> '' AND (${bornWhere || '1'})) WHERE rn = 1;
      CREATE TEMP TABLE coh AS SELECT ${keySql(unit, `b.t + ${this.off}`, from)} AS k, b.uid, b.id AS bid, b.t AS B
        FROM born b WHERE b.t + ${this.off} >= ${dayMs(from)} AND b.t + ${this.off} < ${dayMs(to) + DAY};`;
    } else {
      sql = `
      CREATE TEMP TABLE coh AS SELECT k, uid, id AS bid, t AS B FROM (
        SELECT ${keySql(unit, this.lt(), from)} AS k, e.distinct_id AS uid, e.id, e.time_ms AS t,
               row_number() OVER (PARTITION BY ${keySql(unit, this.lt(), from)}, e.distinct_id ORDER BY e.time_ms, e.id) AS rn
        FROM events e WHERE e.distinct_id <> '' AND ${this.range(from, to)} AND ${retPred}) WHERE rn = 1;`;
    }
    sql += `
      CREATE TEMP TABLE lab AS SELECT c.k, c.uid, ${on ? on.label : 'NULL'} AS label
        FROM coh c JOIN events e ON e.id = c.bid ${on && on.from ? ', ' + on.from : ''};
      CREATE TEMP TABLE ret AS SELECT c.k, c.uid, max((e.time_ms - c.B) / ${L}) AS m, (e.time_ms - c.B) / ${L} AS i
        FROM coh c JOIN events e ON e.distinct_id = c.uid
        WHERE e.time_ms > c.B AND e.time_ms < c.B + ${(N + 1) * L} AND ${retPred}
        GROUP BY c.k, c.uid${unbounded ? '' : ', i'};
      WITH RECURSIVE nn(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM nn WHERE i < ${N}),
      grp AS (SELECT k, uid, NULL AS label FROM coh UNION ALL SELECT k, uid, label FROM lab WHERE label IS NOT NULL)
      SELECT 'first' AS what, g.k, g.label, NULL AS i, count(DISTINCT g.uid) AS n FROM grp g GROUP BY g.k, g.label
      UNION ALL
      SELECT 'count', g.k, g.label, nn.i, count(DISTINCT g.uid) FROM grp g JOIN ret r ON r.k = g.k AND r.uid = g.uid
        JOIN nn ON ${unbounded ? 'r.m >= nn.i' : 'r.i = nn.i'} GROUP BY g.k, g.label, nn.i;`;
    const rows = this.all(sql);
    const empty = () => { const o = {}; for (const k of keys) o[k] = { counts: new Array(N + 1).fill(0), first: 0 }; return o; };
    const overall = empty(), seg = {};
    for (const r of rows) {
      const tgt = r.label === null ? overall : (seg[r.label] ||= empty());
      if (r.what === 'first') tgt[r.k].first = r.n; else tgt[r.k].counts[r.i] = r.n;
    }
    if (!on) return overall;
    const totals = Object.entries(seg).map(([l, m]) => [l, Object.values(m).reduce((a, x) => a + x.first, 0)]);
    const out = { $overall: overall };
    for (const l of sortSegments(totals).slice(0, limit)) out[l] = seg[l];
    return out;
  }

  // retention/addiction.
  addiction({ event, where = null, from, to, unit = 'day', addictionUnit = 'hour' }) {
    const keys = seriesKeys(unit, from, to);
    const rows = this.all(`
      SELECT k, n, count(*) AS users FROM (
        SELECT ${keySql(unit, this.lt(), from)} AS k, e.distinct_id, count(DISTINCT ${keySql(addictionUnit, this.lt(), from)}) AS n
        FROM events e WHERE ${event ? `e.name = ${sqlStr(event)} AND` : ''} e.distinct_id <> '' AND ${this.range(from, to)} AND (${where || '1'})
        GROUP BY k, e.distinct_id)
      GROUP BY k, n`);
    const data = {};
    for (const k of keys) {
      const per = addictionUnit === 'hour' ? 24 : 1;
      const len = unit === 'day' ? 24 / (addictionUnit === 'hour' ? 1 : 24) : unit === 'week' ? 7 * per : daysInMonth(k) * per;
      data[k] = new Array(len).fill(0);
    }
    for (const r of rows)
      for (let j = 0; j < Math.min(r.n, data[r.k].length); j++) data[r.k][j] += r.users;
    return { data };
  }
}
