// Socket.IO 4 behind one route with two application instances (issue #15).
// A Socket.IO session is state in one server process: the handshake, every
// later poll and the WebSocket upgrade must reach the instance that opened
// it. Without affinity (round robin over the two) they do not, and Socket.IO
// answers "Session ID unknown": the failure the affinity cookie exists to
// prevent, and the proof that this test can fail. With the gateway's
// affinity cookie every session stays on one instance and works.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness } from './harness.mjs';
import { call, connect, shoutsArrived, startSocketIoApps } from './socketio.mjs';

const CLIENTS = 8;

function config(apps, upstreamExtra = '') {
  return `[admin]
listen = ""
[[listeners]]
name = "main"
listen = "127.0.0.1:0"
[[routes]]
name = "socketio"
upstream = "app"
[[upstreams]]
name = "app"
endpoints = [${apps.map((a) => JSON.stringify(a.url)).join(', ')}]
${upstreamExtra}`;
}

describe('socket.io 4, two instances behind one route', () => {
  let apps = [];
  let harness;
  afterEach(async () => {
    await harness?.stop();
    await Promise.all(apps.map((a) => a.stop()));
    harness = undefined;
    apps = [];
  });

  test('without affinity (round robin): sessions break with "Session ID unknown"', async () => {
    apps = await startSocketIoApps(2, 'rr');
    harness = await startHarness({ config: config(apps) });
    const base = `http://${harness.gateway}`;
    const results = [];
    // One client at a time: its handshake and its next request go to
    // different instances.
    for (let i = 0; i < 4; i++) {
      results.push(await connect(base, { transports: ['polling'] }).then(
        (s) => { s.disconnect(); return 'connected'; },
        (e) => e.message,
      ));
    }
    const errors = apps.flatMap((a) => a.errors.map((e) => e.message));
    assert.ok(results.some((r) => r !== 'connected'), `every session survived round robin: ${results}`);
    assert.ok(errors.includes('Session ID unknown'), `server-side errors: ${JSON.stringify(errors)}`);
  });

  for (const transports of [undefined, ['polling']]) {
    const name = transports ? "transports: ['polling']" : 'default transports (upgrade)';
    test(`with the affinity cookie, ${name}: every session on one instance, echoes and per-instance broadcasts arrive`, async () => {
      apps = await startSocketIoApps(2, 'aff');
      harness = await startHarness({ config: config(apps, '[upstreams.affinity_cookie]\nname = "tg_affinity"\n') });
      const base = `http://${harness.gateway}`;
      const sockets = await Promise.all(Array.from({ length: CLIENTS }, () => connect(base, { transports, withCredentials: true })));
      try {
        for (const s of sockets) assert.equal(s.io.engine.transport.name, transports ? 'polling' : 'websocket');
        await Promise.all(sockets.map(async (s, i) => {
          const r = await call(s, 'echo', { client: i });
          assert.deepEqual(r, { instance: s.instance, payload: { client: i } });
          await call(s, 'join', 'room');
        }));
        // No adapter between the instances: a broadcast reaches the
        // members on the sender's instance, and each of them exactly once.
        const byInstance = new Map();
        for (const s of sockets) byInstance.set(s.instance, [...(byInstance.get(s.instance) ?? []), s]);
        assert.equal(byInstance.size, 2, 'new sessions are spread over both instances');
        for (const members of byInstance.values()) members[0].emit('shout', 'room', `from ${members[0].instance}`);
        await Promise.all(sockets.map((s) => shoutsArrived(s, 1)));
        for (const s of sockets) assert.deepEqual(s.shouts, [{ instance: s.instance, payload: `from ${s.instance}` }]);
        assert.deepEqual(apps.flatMap((a) => a.errors), [], 'engine.io connection errors on the servers');
      } finally {
        for (const s of sockets) s.disconnect();
      }
    });
  }
});
