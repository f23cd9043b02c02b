// Starts Socket.IO application instances (tests/node/apps/socketio-app.mjs),
// one child process each, and drives socket.io-client sessions against a base
// URL (an instance directly, or tidegate in front of one or several).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

const APP = join(dirname(fileURLToPath(import.meta.url)), 'apps', 'socketio-app.mjs');

/** How long any single step of a session may take: generous, never asserted. */
export const STEP_TIMEOUT = 30_000;

/**
 * Starts `n` Socket.IO instances on `n` ports.
 * @returns {Promise<Array<{name: string, port: number, url: string,
 *   errors: Array<{code: number, message: string}>, stop: () => Promise<void>}>>}
 *   url is ws://127.0.0.1:PORT (what `tidegate proxy --upstream` takes).
 */
export async function startSocketIoApps(n, prefix = 'app') {
  return Promise.all(Array.from({ length: n }, (_, i) => startOne(`${prefix}${i}`)));
}

async function startOne(name) {
  const child = spawn(process.execPath, [APP, name], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const errors = [];
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 30s:\n${stderr}`)), 30_000);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited ${code}:\n${stderr}`)); });
    lines.on('line', (l) => {
      const m = JSON.parse(l);
      if (m.event === 'listening') { clearTimeout(timer); resolve(m.port); }
      if (m.event === 'connection_error') errors.push({ code: m.code, message: m.message });
    });
  });
  return {
    name,
    port,
    url: `ws://127.0.0.1:${port}`,
    errors,
    stderr: () => stderr,
    stop: async () => {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

function withTimeout(promise, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${STEP_TIMEOUT} ms`)), STEP_TIMEOUT);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Connects one socket.io-client session to `base` (http://host:port) and
 * waits for the server's 'hello'; with upgrade allowed, also waits until the
 * engine runs on the websocket transport.
 * @param {string} base
 * @param {{transports?: string[], withCredentials?: boolean}} opts
 *   transports: default the client's own (polling first, then upgrade);
 *   withCredentials: keep cookies (in Node, engine.io-client's cookie jar:
 *   what an affinity cookie needs, as a browser would do).
 */
export async function connect(base, opts = {}) {
  const socket = io(base, {
    forceNew: true,
    reconnection: false,
    timeout: STEP_TIMEOUT,
    withCredentials: opts.withCredentials ?? false,
    ...(opts.transports ? { transports: opts.transports } : {}),
  });
  const shouts = [];
  socket.on('shout', (m) => shouts.push(m));
  socket.shouts = shouts;
  const hello = await withTimeout(new Promise((resolve, reject) => {
    socket.once('hello', resolve);
    socket.once('connect_error', (e) => {
      reject(new Error(`connect_error: ${e.message} ${JSON.stringify(e.description ?? e.context ?? '')}`));
    });
  }), 'hello');
  socket.instance = hello.instance;
  const upgrades = !opts.transports || opts.transports.includes('websocket');
  if (upgrades && socket.io.engine.transport.name !== 'websocket') {
    await withTimeout(new Promise((resolve) => socket.io.engine.once('upgrade', resolve)), 'upgrade');
  }
  return socket;
}

/** Emits with an acknowledgement and waits for it. */
export function call(socket, event, arg) {
  return withTimeout(new Promise((resolve) => socket.emit(event, arg, resolve)), `ack of ${event}`);
}

/** Waits until `socket` has received `count` shouts. */
export function shoutsArrived(socket, count) {
  return withTimeout(new Promise((resolve) => {
    const check = () => {
      if (socket.shouts.length >= count) resolve(socket.shouts);
      else setTimeout(check, 20);
    };
    check();
  }), 'room broadcast');
}
