// Headless Chromium for the browser suites (Debian's `chromium` driven by
// playwright-core from tests/node), in a throwaway profile.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { REPO, startHarness } from '../node/harness.mjs';

// playwright-core is installed in tests/node (one package.json for all JS tests).
export const requireFromNode = createRequire(join(REPO, 'tests', 'node', 'package.json'));
const { chromium } = requireFromNode('playwright-core');

export const CHROMIUM = process.env.CHROMIUM_PATH
  ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));

/** @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>} */
export async function launchChromium() {
  if (!CHROMIUM) throw new Error('chromium not found (apt-get install chromium)');
  const profile = mkdtempSync(join(tmpdir(), 'tidegate-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Listens on an ephemeral loopback port.
 * @param {import('node:http').Server} http
 * @returns {Promise<{port: number, stop: () => Promise<void>}>} stop ends open connections too
 */
export async function listenLocal(http) {
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    port: http.address().port,
    stop: () => new Promise((resolve) => { http.closeAllConnections(); http.close(resolve); }),
  };
}

/**
 * Hooks of the enclosing suite: start the application with `startApp()` and,
 * for `via === 'gateway'`, a `tidegate proxy` in front of it. The returned
 * object's `app`, `harness` (gateway only) and `origin` (where the page is
 * loaded from) are set once the `before` hook has run.
 */
export function appVia(via, startApp) {
  const s = { app: undefined, harness: undefined, origin: undefined };
  before(async () => {
    s.app = await startApp();
    if (via === 'gateway') {
      s.harness = await startHarness({ upstreamUrl: `ws://127.0.0.1:${s.app.port}` });
      s.origin = `http://${s.harness.gateway}`;
    } else {
      s.origin = `http://127.0.0.1:${s.app.port}`;
    }
  });
  after(async () => {
    await s.harness?.stop();
    await s.app?.stop();
  });
  return s;
}
