// Node `ws` client through the real tidegate binary, over ws:// and wss://.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { startHarness } from './harness.mjs';

const TIMEOUT = 30_000;

/** Open a client and collect what it receives. */
function open(h, path = '/', options = {}) {
  const ws = new WebSocket(h.url.replace(/\/$/, '') + path, {
    ca: h.ca,
    handshakeTimeout: TIMEOUT,
    maxPayload: 0, // no client-side limit: limits are the gateway's business
    ...options,
  });
  const inbox = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data: isBinary ? data : data.toString('utf8'), isBinary };
    const w = waiters.shift();
    if (w) w(m); else inbox.push(m);
  });
  ws.next = () => new Promise((resolve, reject) => {
    if (inbox.length) return resolve(inbox.shift());
    const t = setTimeout(() => reject(new Error('no message within timeout')), TIMEOUT);
    waiters.push((m) => { clearTimeout(t); resolve(m); });
  });
  ws.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  ws.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  return ws;
}

for (const scheme of ['ws', 'wss']) {
  describe(`node ws client over ${scheme}://`, () => {
    let echo;
    let py;
    before(async () => {
      [echo, py] = await Promise.all([
        startHarness({ tls: scheme === 'wss', upstream: 'echo' }),
        startHarness({ tls: scheme === 'wss', upstream: 'python' }),
      ]);
    });
    after(async () => {
      await Promise.all([echo?.stop(), py?.stop()]);
    });

    test('echoes text and binary messages', async () => {
      const ws = open(echo);
      await ws.opened;
      for (const text of ['hello', '', 'héllo wörld ✓ 🌊', 'x'.repeat(70_000)]) {
        ws.send(text);
        const m = await ws.next();
        assert.equal(m.isBinary, false);
        assert.equal(m.data, text);
      }
      for (const n of [1, 125, 126, 65_536, 1 << 20]) {
        const blob = randomBytes(n);
        ws.send(blob);
        const m = await ws.next();
        assert.equal(m.isBinary, true);
        assert.ok(blob.equals(m.data), `binary message of ${n} bytes differs`);
      }
      ws.close(1000);
      assert.equal((await ws.closed).code, 1000);
    });

    test('permessage-deflate offered by ws is not negotiated', async () => {
      const ws = open(echo, '/', { perMessageDeflate: true });
      await ws.opened;
      assert.equal(ws.extensions, '');
      ws.send('plain');
      assert.equal((await ws.next()).data, 'plain');
      ws.close();
      await ws.closed;
    });

    test('fragmented messages arrive intact', async () => {
      const ws = open(echo);
      await ws.opened;
      const parts = ['frag-1 ', 'ü'.repeat(1000), ' frag-3', ' end'];
      parts.forEach((p, i) => ws.send(p, { fin: i === parts.length - 1 }));
      assert.equal((await ws.next()).data, parts.join(''));

      const bparts = [randomBytes(1), randomBytes(70_000), randomBytes(7)];
      bparts.forEach((p, i) => ws.send(p, { binary: true, fin: i === bparts.length - 1 }));
      const m = await ws.next();
      assert.equal(m.isBinary, true);
      assert.ok(Buffer.concat(bparts).equals(m.data));

      ws.send('after');
      assert.equal((await ws.next()).data, 'after');
      ws.close();
      await ws.closed;
    });

    test('ping gets a pong with the same payload', async () => {
      const ws = open(echo);
      await ws.opened;
      for (const payload of ['', 'ping-1', randomBytes(125)]) {
        const pong = new Promise((resolve) => ws.once('pong', resolve));
        ws.ping(payload);
        const got = await pong;
        assert.ok(Buffer.from(payload).equals(got));
      }
      ws.close();
      await ws.closed;
    });

    test('client close code comes back', async () => {
      const ws = open(echo);
      await ws.opened;
      ws.close(4000, 'bye');
      const { code } = await ws.closed;
      assert.equal(code, 4000);
    });

    test('upstream close code and reason reach the client', async () => {
      const ws = open(py);
      await ws.opened;
      ws.send('close:4001:node says bye');
      const { code, reason } = await ws.closed;
      assert.equal(code, 4001);
      assert.equal(reason, 'node says bye');
    });

    test('path and query pass through', async () => {
      const ws = open(py, '/room/42?token=abc');
      await ws.opened;
      ws.send('whoami');
      const info = JSON.parse((await ws.next()).data);
      assert.equal(info.path, '/room/42?token=abc');
      ws.close();
      await ws.closed;
    });
  });
}
