// Real-browser helpers for the e2e tests: headless Debian Chromium driven by
// npm `playwright-core`, a tiny static page server, and a decoder for what the
// browser SDK (`mixpanel-browser`) puts on the wire.
//
//   const browser = await launchBrowser();          // /usr/bin/chromium
//   const site = await startStaticSite();           // site.url, site.origin, await site.close()
//   decodeSdkBody(postData) -> { format: 'base64'|'json', items: [...] }
//
// The page (site.url + '/') loads node_modules/mixpanel-browser's UMD build
// (window.mixpanel) from its own loopback port, so the SDK's requests to
// mixpaneld are cross-origin as on a real site.  It also records every XHR as
// the page's JavaScript sees it (window.__xhrLog: url, status, responseText):
// a status of 0 there means the browser hid the answer (CORS).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const HERE = path.dirname(new URL(import.meta.url).pathname);

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The UMD build of the installed mixpanel-browser (sets window.mixpanel).
export const SDK_FILE = path.join(path.dirname(require.resolve('mixpanel-browser/package.json')), 'dist', 'mixpanel.umd.js');
export const SDK_VERSION = JSON.parse(fs.readFileSync(
  path.join(path.dirname(SDK_FILE), '..', 'package.json'), 'utf8')).version;

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (make test-deps, or apt-get install -y chromium)`);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed: cd ${path.resolve(HERE, '..')} && npm install (${e.message})`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

const XHR_RECORDER = `
window.__xhrLog = [];
(function () {
  var open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__rec = { method: method, url: String(url) };
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    var xhr = this, rec = xhr.__rec || {};
    rec.withCredentials = xhr.withCredentials;
    xhr.addEventListener('loadend', function () {
      var text = null;
      try { text = xhr.responseText; } catch (e) { text = null; }
      window.__xhrLog.push({ method: rec.method, url: rec.url, withCredentials: rec.withCredentials,
                             status: xhr.status, responseText: text });
    });
    return send.apply(this, arguments);
  };
})();
`;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>mixpaneld browser e2e</title>
<script>${XHR_RECORDER}</script>
<script src="/mixpanel.umd.js"></script>
</head><body><p>mixpaneld browser e2e</p></body></html>
`;

// A static HTTP server on a free loopback port: '/' is the page, '/mixpanel.umd.js'
// the SDK, anything else 404.
export async function startStaticSite() {
  const sdk = fs.readFileSync(SDK_FILE);
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/' || p === '/index.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(PAGE);
    } else if (p === '/mixpanel.umd.js') {
      res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
      res.end(sdk);
    } else if (p === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const origin = `http://127.0.0.1:${port}`;
  return {
    port,
    origin,
    url: origin + '/',
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

// UTF-8 decoder that also pairs CESU-8 surrogates (each half of an astral
// character written as its own 3-byte sequence), as the browser SDK's base64
// encoder does.  JS strings are UTF-16, so the halves simply join up.
export function decodeCesu8(buf) {
  const units = [];
  let i = 0;
  while (i < buf.length) {
    const b = buf[i];
    let cp, n;
    if (b < 0x80) { cp = b; n = 1; }
    else if ((b & 0xe0) === 0xc0) { cp = b & 0x1f; n = 2; }
    else if ((b & 0xf0) === 0xe0) { cp = b & 0x0f; n = 3; }
    else if ((b & 0xf8) === 0xf0) { cp = b & 0x07; n = 4; }
    else throw new Error(`bad UTF-8 lead byte 0x${b.toString(16)} at ${i}`);
    if (i + n > buf.length) throw new Error(`truncated UTF-8 sequence at ${i}`);
    for (let k = 1; k < n; k++) {
      const c = buf[i + k];
      if ((c & 0xc0) !== 0x80) throw new Error(`bad UTF-8 continuation byte at ${i + k}`);
      cp = (cp << 6) | (c & 0x3f);
    }
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else {
      units.push(cp);
    }
  }
  let out = '';
  for (let k = 0; k < units.length; k += 4096) out += String.fromCharCode(...units.slice(k, k + 4096));
  return out;
}

// The SDK's form body `data=<percent-encoded base64 or JSON>` -> its items
// (a batch is an array; a single call is one object).
export function decodeSdkBody(postData) {
  const value = new URLSearchParams(postData || '').get('data');
  if (value === null) throw new Error(`no data field in body: ${String(postData).slice(0, 200)}`);
  const t = value.trimStart();
  let format, parsed;
  if (t.startsWith('[') || t.startsWith('{')) {
    format = 'json';
    parsed = JSON.parse(value);
  } else {
    format = 'base64';
    parsed = JSON.parse(decodeCesu8(Buffer.from(value, 'base64')));
  }
  return { format, items: Array.isArray(parsed) ? parsed : [parsed] };
}
