// SockJS (issue #15): the `sockjs` server package and `sockjs-client` in
// headless Chromium, once per transport the client offers in a browser
// (forced with the client's `transports` option), first directly (baseline),
// then through `tidegate proxy`. Every transport starts with `GET /echo/info`;
// the fallbacks are plain HTTP (xhr-streaming, xhr-polling, eventsource).
// The page and the client bundle come from the application's own HTTP server,
// so the page is same-origin with the SockJS endpoint, as in a Spring app.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { HTTP_PROXY_TODO } from '../node/harness.mjs';
import { appVia, launchChromium, listenLocal, requireFromNode } from './browser.mjs';

const sockjs = requireFromNode('sockjs');
const BUNDLE = readFileSync(requireFromNode.resolve('sockjs-client/dist/sockjs.min.js'));
const TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource'];
const MESSAGES = ['hello', 'héllo wörld ✓', 'x'.repeat(20_000)];

const PAGE = `<!doctype html><meta charset="utf-8"><title>tidegate sockjs test</title>
<script src="/sockjs.min.js"></script>
<script>
// Opens a SockJS session on one transport, waits for the server's greeting,
// sends every message and collects the echoes, then closes.
window.runSockJs = (transport, messages) => new Promise((resolve) => {
  const log = { transport: null, received: [], events: [] };
  const sock = new SockJS('/echo', null, { transports: [transport], timeout: 20000 });
  const timer = setTimeout(() => { log.timeout = true; sock.close(); resolve(log); }, 30000);
  sock.onopen = () => { log.events.push('open'); log.transport = sock.transport; };
  sock.onmessage = (ev) => {
    log.received.push(ev.data);
    if (ev.data === 'welcome') for (const m of messages) sock.send(m);
    if (log.received.length === messages.length + 1) sock.close(1000, 'done');
  };
  sock.onclose = (ev) => {
    clearTimeout(timer);
    log.events.push('close');
    log.code = ev.code;
    resolve(log);
  };
});
</script>`;

/** The application: SockJS echo at /echo plus the page and the client bundle. */
async function startApp() {
  const opened = [];
  const echo = sockjs.createServer({ prefix: '/echo', log: () => {}, disconnect_delay: 2000 });
  echo.on('connection', (conn) => {
    opened.push(conn.protocol);
    conn.write('welcome');
    conn.on('data', (m) => conn.write(m));
  });
  const http = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (req.url === '/sockjs.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(BUNDLE);
    } else if (!req.url.startsWith('/echo')) {
      res.writeHead(404).end();
    }
  });
  echo.installHandlers(http);
  return { ...(await listenLocal(http)), opened };
}

let browser;
before(async () => { browser = await launchChromium(); });
after(async () => { await browser?.close(); });

for (const via of ['direct', 'gateway']) {
  describe(`sockjs in chromium ${via}`, () => {
    const todo = via === 'gateway' ? HTTP_PROXY_TODO : undefined;
    const s = appVia(via, startApp);

    for (const transport of TRANSPORTS) {
      test(`${transport}: messages both ways`, { todo }, async () => {
        const page = await browser.context.newPage();
        try {
          await page.goto(`${s.origin}/`, { timeout: 30_000 });
          const r = await page.evaluate(([t, m]) => window.runSockJs(t, m), [transport, MESSAGES]);
          assert.ok(!r.timeout, `timed out: ${JSON.stringify(r).slice(0, 500)}\n${s.harness?.stderr() ?? ''}`);
          assert.equal(r.transport, transport, 'the client ran on the forced transport');
          assert.deepEqual(r.received, ['welcome', ...MESSAGES]);
          assert.deepEqual(r.events, ['open', 'close']);
          assert.equal(r.code, 1000);
          assert.equal(s.app.opened.at(-1), transport, 'the server saw the same transport');
        } finally {
          await page.close();
        }
      });
    }
  });
}
