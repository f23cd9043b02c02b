// Headless Chromium for the browser suites (Debian's `chromium` driven by
// playwright-core from tests/node), in a throwaway profile.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from '../node/harness.mjs';

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
