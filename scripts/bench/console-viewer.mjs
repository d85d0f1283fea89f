// scripts/bench/console-viewer.mjs BASE ACCESS_KEY: the web console open in headless Chromium
// while a benchmark runs (scripts/bench/observe.sh): one page on the overview (which polls the
// broker every second) and one on the live trace, started, until this process is killed.
// Uses tests/e2e's playwright-core and /usr/bin/chromium (CHROMIUM_BIN overrides it).
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, key] = process.argv.slice(2);
if (!base || !key) {
  console.error('usage: console-viewer.mjs BASE ACCESS_KEY');
  process.exit(64);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, 'tests/e2e/package.json'));
const { chromium } = require('playwright-core');

const context = await chromium.launchPersistentContext(mkdtempSync(path.join(os.tmpdir(), 'sb-console-')), {
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
/** A page on the console, signed in with the key (each tab keeps its own sessionStorage). */
async function signedIn() {
  const page = await context.newPage();
  await page.goto(`${base}/admin/console`);
  await page.fill('#credential', key);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#overview-cards', { timeout: 15000 });
  return page;
}
await signedIn();
const trace = await signedIn();
await trace.evaluate(() => { location.hash = '#/trace'; });
await trace.click('#trace-start', { timeout: 15000 });
console.log('console open: overview and live trace');
const stop = async () => { await context.close().catch(() => {}); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
