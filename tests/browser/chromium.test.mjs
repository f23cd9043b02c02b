// Headless Chromium (Debian's `chromium`, driven by playwright-core) talking
// to a Python `websockets` upstream through tidegate over wss://, from a page
// at an allowed Origin; and a page at a disallowed Origin that must not get in.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, startHarness } from '../node/harness.mjs';

// playwright-core is installed in tests/node (one package.json for all JS tests).
const require = createRequire(join(REPO, 'tests', 'node', 'package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH
  ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));

const PAGE = `<!doctype html><meta charset="utf-8"><title>tidegate browser test</title>
<script>
window.runWs = (url, steps) => new Promise((resolve) => {
  const log = { events: [], texts: [], binaries: [] };
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const done = (extra) => resolve(Object.assign(log, extra));
  const timer = setTimeout(() => done({ timeout: true }), 20000);
  ws.onopen = () => {
    log.events.push('open');
    log.protocol = ws.protocol;
    log.extensions = ws.extensions;
    if (steps) ws.send('hello from chromium ✓');
  };
  ws.onerror = () => log.events.push('error');
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      log.texts.push(ev.data);
      ws.send(new Uint8Array([0, 1, 2, 253, 254, 255]));
    } else {
      log.binaries.push(Array.from(new Uint8Array(ev.data)));
      ws.send('close:4001:bye from upstream');
    }
  };
  ws.onclose = (ev) => {
    clearTimeout(timer);
    log.events.push('close');
    done({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
  };
});
// Echo of text and binary messages of every size in \`sizes\`; what came
// back, compared in the page (a 1 MiB array would not cross to Node cheaply).
window.echoSizes = (url, sizes) => new Promise((resolve) => {
  const out = { mismatches: [], count: 0 };
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const timer = setTimeout(() => resolve(Object.assign(out, { timeout: true })), 60000);
  const queue = [];
  for (const n of sizes) {
    // n bytes of UTF-8, with a 3-byte character at the end when it fits.
    queue.push(n >= 3 ? 'x'.repeat(n - 3) + '✓' : 'x'.repeat(n));
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 9)) & 255;
    queue.push(b);
  }
  let sent;
  const next = () => {
    if (queue.length === 0) { ws.close(1000); return; }
    sent = queue.shift();
    ws.send(sent);
  };
  ws.onopen = () => { out.extensions = ws.extensions; next(); };
  ws.onmessage = (ev) => {
    out.count++;
    const same = typeof sent === 'string'
      ? ev.data === sent
      : ev.data instanceof ArrayBuffer && ev.data.byteLength === sent.length
        && new Uint8Array(ev.data).every((v, i) => v === sent[i]);
    if (!same) out.mismatches.push((typeof sent === 'string' ? 'text ' : 'binary ') + sent.length);
    next();
  };
  ws.onclose = (ev) => { clearTimeout(timer); resolve(Object.assign(out, { code: ev.code })); };
});
</script>`;

let harness;
let deflateHarness;
let edgeHarness;
let http;
let context;
let profile;
let httpPort;

before(async () => {
  assert.ok(CHROMIUM, 'chromium not found (apt-get install chromium)');
  http = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  httpPort = http.address().port;
  // Only the page at http://127.0.0.1:PORT may connect; the same page at
  // http://localhost:PORT is another Origin and must be refused.
  harness = await startHarness({
    tls: true,
    upstream: 'python',
    allowOrigins: [`http://127.0.0.1:${httpPort}`],
  });
  // The same, in front of an upstream that accepts permessage-deflate:
  // negotiated end to end, compressed frames relayed as they are.
  deflateHarness = await startHarness({
    tls: true,
    upstream: 'python-deflate',
    allowOrigins: [`http://127.0.0.1:${httpPort}`],
  });
  // Edge compression: the gateway answers the browser and compresses
  // itself; the upstream (which declines the extension) sees plain frames.
  edgeHarness = await startHarness({
    tls: true,
    upstream: 'python',
    deflate: 'edge',
    allowOrigins: [`http://127.0.0.1:${httpPort}`],
  });
  profile = mkdtempSync(join(tmpdir(), 'tidegate-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    timeout: 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // the gateway's certificate comes from a throwaway test CA
      '--ignore-certificate-errors',
    ],
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await harness?.stop();
  await deflateHarness?.stop();
  await edgeHarness?.stop();
  await new Promise((resolve) => (http ? http.close(resolve) : resolve()));
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function runFrom(origin, steps, h = harness) {
  const page = await context.newPage();
  try {
    await page.goto(`${origin}/`, { timeout: 30_000 });
    return await page.evaluate(([url, s]) => window.runWs(url, s), [h.url, steps]);
  } finally {
    await page.close();
  }
}

test('page at an allowed Origin talks text and binary over wss:// and sees the upstream close code', async () => {
  const r = await runFrom(`http://127.0.0.1:${httpPort}`, true);
  assert.ok(!r.timeout, `timed out: ${JSON.stringify(r)}\n${harness.stderr()}`);
  assert.deepEqual(r.events, ['open', 'close'], JSON.stringify(r));
  assert.equal(r.extensions, '', 'this upstream declines permessage-deflate');
  assert.deepEqual(r.texts, ['hello from chromium ✓']);
  assert.deepEqual(r.binaries, [[0, 1, 2, 253, 254, 255]]);
  assert.equal(r.code, 4001);
  assert.equal(r.reason, 'bye from upstream');
  assert.equal(r.wasClean, true);
});

test('page at a disallowed Origin cannot connect', async () => {
  const r = await runFrom(`http://localhost:${httpPort}`, false);
  assert.ok(!r.timeout, `timed out: ${JSON.stringify(r)}`);
  assert.deepEqual(r.events, ['error', 'close'], JSON.stringify(r));
  assert.equal(r.code, 1006);
  assert.equal(r.wasClean, false);
});

for (const [mode, h] of [['end to end', () => deflateHarness], ['at the edge', () => edgeHarness]]) {
  test(`permessage-deflate is negotiated ${mode} and messages of 1 B to 1 MiB echo`, async () => {
    const page = await context.newPage();
    try {
      await page.goto(`http://127.0.0.1:${httpPort}/`, { timeout: 30_000 });
      const sizes = [1, 125, 126, 1000, 65_535, 65_536, 300_000, 1 << 20];
      const r = await page.evaluate(([url, s]) => window.echoSizes(url, s), [h().url, sizes]);
      assert.ok(!r.timeout, `timed out: ${JSON.stringify(r)}\n${h().stderr()}`);
      assert.match(r.extensions, /^permessage-deflate/, JSON.stringify(r));
      assert.deepEqual(r.mismatches, []);
      assert.equal(r.count, 2 * sizes.length);
      assert.equal(r.code, 1000);
    } finally {
      await page.close();
    }
  });
}
