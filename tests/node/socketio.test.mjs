// Socket.IO 4 (issue #15): socket.io-client against a socket.io server, first
// directly (the baseline: the same test without the gateway passes), then
// through `tidegate proxy`. With the client's default transports every session
// starts on HTTP long-polling and upgrades to WebSocket; with
// `transports: ['polling']` it stays on long-polling. Every echo is
// acknowledged and a room broadcast reaches every member.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HTTP_PROXY_TODO, startHarness } from './harness.mjs';
import { call, connect, shoutsArrived, startSocketIoApps } from './socketio.mjs';

/** Sessions per case: enough to overlap polls and upgrades, cheap on 2 cores. */
const CLIENTS = 8;
const ECHOES = 3;

/** Runs CLIENTS sessions with `transports`, checks transport, echoes, broadcast. */
async function sessions(base, transports, room) {
  const sockets = await Promise.all(Array.from({ length: CLIENTS }, () => connect(base, { transports })));
  try {
    const want = transports ? 'polling' : 'websocket';
    for (const s of sockets) assert.equal(s.io.engine.transport.name, want, 'transport after connect');
    await Promise.all(sockets.map(async (s, i) => {
      for (let n = 0; n < ECHOES; n++) {
        const payload = { client: i, n, text: `héllo ${i}/${n} ✓` };
        const r = await call(s, 'echo', payload);
        assert.deepEqual(r, { instance: s.instance, payload });
      }
      await call(s, 'join', room);
    }));
    sockets[0].emit('shout', room, 'to everyone in the room');
    await Promise.all(sockets.map((s) => shoutsArrived(s, 1)));
    for (const s of sockets) {
      assert.deepEqual(s.shouts, [{ instance: sockets[0].instance, payload: 'to everyone in the room' }]);
      // Still on the transport it should be on: polling never upgraded.
      assert.equal(s.io.engine.transport.name, want, 'transport at the end');
    }
  } finally {
    for (const s of sockets) s.disconnect();
  }
}

for (const via of ['direct', 'gateway']) {
  describe(`socket.io 4 ${via}`, () => {
    const todo = via === 'gateway' ? HTTP_PROXY_TODO : undefined;
    let apps;
    let harness;
    let base;
    before(async () => {
      apps = await startSocketIoApps(1);
      if (via === 'gateway') {
        harness = await startHarness({ upstreamUrl: apps[0].url });
        base = `http://${harness.gateway}`;
      } else {
        base = `http://127.0.0.1:${apps[0].port}`;
      }
    });
    after(async () => {
      await harness?.stop();
      await Promise.all((apps ?? []).map((a) => a.stop()));
    });

    test('default transports: polling, then upgrade to websocket; echoes and a room broadcast arrive', { todo }, async () => {
      await sessions(base, undefined, 'room-default');
      assert.deepEqual(apps[0].errors, [], 'engine.io connection errors on the server');
    });

    test("transports: ['polling'] only: echoes and a room broadcast arrive over long-polling", { todo }, async () => {
      await sessions(base, ['polling'], 'room-polling');
      assert.deepEqual(apps[0].errors, [], 'engine.io connection errors on the server');
    });
  });
}
