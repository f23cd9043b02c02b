// Long-polling (issue #15), first directly (baseline), then through
// `tidegate proxy` with its default timeouts:
//  * an upstream that holds a request 90 s before answering is answered, not
//    cut by the gateway;
//  * a client that disconnects mid-poll cancels the upstream request: the
//    upstream sees its socket close.
// All cases run concurrently, so the file costs one hold (about 90 s).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, get } from 'node:http';
import { HTTP_PROXY_TODO, startHarness } from './harness.mjs';

/** How long the upstream holds a poll: the 90 s (TG_TEST_LONGPOLL_SECONDS for a quick local run). */
const HOLD_MS = Number(process.env.TG_TEST_LONGPOLL_SECONDS ?? 90) * 1000;
/** Step timeout on top of the hold: generous, never the thing asserted. */
const SLACK_MS = 60_000;

/** Waits for `promise` at most `ms`, so no case can hang. */
function within(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * The application: `/hold` answers after HOLD_MS; `/forever` never answers
 * and reports when its client's socket closes (via `cancelled`).
 */
async function startApp() {
  const state = { arrived: {}, cancelled: {} };
  const signal = (map, key) => {
    let resolve;
    map[key] = new Promise((r) => { resolve = r; });
    return resolve;
  };
  const arrivedForever = signal(state.arrived, 'forever');
  const cancelled = signal(state.cancelled, 'forever');
  const http = createServer((req, res) => {
    if (req.url === '/hold') {
      const timer = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`answered after ${HOLD_MS} ms`);
      }, HOLD_MS);
      res.on('close', () => clearTimeout(timer));
    } else if (req.url === '/forever') {
      arrivedForever();
      res.on('close', () => cancelled(res.writableFinished ? 'finished' : 'client gone'));
    } else {
      res.writeHead(404).end();
    }
  });
  // Node's own server timeouts must not be what cuts a poll.
  http.requestTimeout = 0;
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    port: http.address().port,
    state,
    stop: () => new Promise((resolve) => { http.closeAllConnections(); http.close(resolve); }),
  };
}

/** GET base+path on a fresh connection; resolves with status and body. */
function fetchText(base, path) {
  const req = get(`${base}${path}`, { agent: false });
  const done = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  return { req, done };
}

describe('long-poll', { concurrency: true }, () => {
  const setups = {};
  before(async () => {
    for (const via of ['direct', 'gateway']) {
      const app = await startApp();
      let harness;
      let base = `http://127.0.0.1:${app.port}`;
      if (via === 'gateway') {
        harness = await startHarness({ upstreamUrl: `ws://127.0.0.1:${app.port}` });
        base = `http://${harness.gateway}`;
      }
      setups[via] = { app, harness, base };
    }
  });
  after(async () => {
    for (const s of Object.values(setups)) {
      await s.harness?.stop();
      await s.app.stop();
    }
  });

  for (const via of ['direct', 'gateway']) {
    const todo = via === 'gateway' ? HTTP_PROXY_TODO : undefined;

    test(`${via}: a request held ${HOLD_MS / 1000} s upstream is answered, not cut`, { todo }, async () => {
      const { base } = setups[via];
      const r = await within(fetchText(base, '/hold').done, HOLD_MS + SLACK_MS, 'held poll');
      assert.deepEqual(r, { status: 200, body: `answered after ${HOLD_MS} ms` });
    });

    test(`${via}: a client that disconnects mid-poll cancels the upstream request`, { todo }, async () => {
      const { base, app } = setups[via];
      const { req, done } = fetchText(base, '/forever');
      done.catch(() => {}); // the abort below rejects it: expected
      await within(app.state.arrived.forever, SLACK_MS, 'poll reaches the upstream');
      req.destroy();
      const how = await within(app.state.cancelled.forever, SLACK_MS, 'upstream sees the socket close');
      assert.equal(how, 'client gone');
    });
  }
});
