// The chat example's page (examples/chat) in headless Chromium with no network beyond
// 127.0.0.1: every request to another host is aborted and counted, and none may be attempted.
// The page must load the official browser client from the example itself (`/signalr.min.js`,
// installed by `npm ci --prefix examples/chat`), connect through the app's negotiate, and carry
// a message from one tab to another. Without the installed client the example starts anyway and
// both its terminal and its page say how to install it.
//
// Needs /usr/bin/chromium (CHROMIUM_BIN overrides the path), playwright-core (a devDependency),
// the broker and the chat example binaries (as default-mode.test.mjs), and the example's npm
// dependency installed (`npm ci --prefix examples/chat` from the repository root; scripts/test.sh
// does it): missing = failure with the install hint.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startBroker, startApp, brokerConnectionString, unique, eventually, withTimeout, WAIT_MS } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const UI_WAIT = 10_000;
const INSTALL = 'npm ci --prefix examples/chat';

/** Whether `url` (a string or URL) is on the loopback address the broker and app listen on. */
const isLocal = (url) => new URL(url).hostname === '127.0.0.1';

describe('the chat example page offline in headless Chromium', () => {
  let broker;
  const apps = [];
  let context;
  let userDataDir;
  /** Every non-local URL the browser tried (HTTP requests and WebSockets), all aborted. */
  const blocked = [];

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is missing at ${CHROMIUM}: the chat page test needs it. Install it with \`apt-get install -y --no-install-recommends chromium\` (or set CHROMIUM_BIN).`);
    }
    broker = await startBroker({ mode: 'default' });
    apps.push(await startApp('chat', { connectionString: brokerConnectionString(broker), serverId: 'page-1', connections: 2 }));
    userDataDir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run',
        // belt and braces: no other host even resolves
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
    });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      blocked.push(url);
      return route.abort('internetdisconnected');
    });
    await context.routeWebSocket((url) => !isLocal(url), (ws) => {
      blocked.push(ws.url());
      ws.close();
    });
  });

  after(async () => {
    const errors = [];
    for (const p of [...apps, broker]) {
      if (!p) continue;
      try { p.assertHealthy(); } catch (e) { errors.push(e); }
    }
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await Promise.all(apps.map((a) => a.stop()));
    if (broker) await broker.stop();
    if (errors.length) throw errors[0];
  });

  /** A new tab on `app`'s chat page; fails when the page reached for another host. */
  async function openChat(app) {
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e));
    await page.goto(`${app.base}/`);
    assert.deepEqual(blocked, [], `the chat page tried to load from the internet: ${blocked.join(', ')}`);
    return page;
  }

  /** Signs `page` in as `name` and waits for "Connected as <name>". */
  async function signIn(page, name) {
    await page.fill('#name', name);
    await page.click('#login button[type=submit]');
    await page.waitForFunction((n) => document.getElementById('status').textContent.startsWith(`Connected as ${n},`), name, { timeout: UI_WAIT })
      .catch(async (e) => {
        throw new Error(`${name} did not connect; status: ${await page.textContent('#status')}; log: ${await page.textContent('#log')}; page errors: ${page.errors.join('; ')}\n${e.message}`);
      });
  }

  const logHas = (page, text) => page.waitForFunction((t) => document.getElementById('log').textContent.includes(t), text, { timeout: UI_WAIT });

  test('the example serves the installed browser client; the page names no other host', async () => {
    const [app] = apps;
    const js = await withTimeout(fetch(`${app.base}/signalr.min.js`), WAIT_MS, 'GET /signalr.min.js');
    const body = await js.text();
    if (js.status !== 200) {
      throw new Error(`the chat example does not serve the SignalR browser client (GET /signalr.min.js: ${js.status} ${body.trim()}); install it with \`${INSTALL}\` from the repository root`);
    }
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(body, /signalR/);
    const map = await withTimeout(fetch(`${app.base}/signalr.min.js.map`), WAIT_MS, 'GET /signalr.min.js.map');
    assert.equal(map.status, 200);
    assert.equal(JSON.parse(await map.text()).version, 3, 'a source map');
    const html = await (await withTimeout(fetch(`${app.base}/`), WAIT_MS, 'GET /')).text();
    assert.match(html, /<script src="\/signalr\.min\.js"><\/script>/);
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no script or style from another host');
  });

  test('two tabs chat through the broker with every other host unreachable', async () => {
    const [app] = apps;
    const [alice, bob] = [unique('alice'), unique('bob')];
    const a = await openChat(app);
    const b = await openChat(app);
    await signIn(a, alice);
    await signIn(b, bob);
    await logHas(a, `${bob} joined the chat`);

    const text = unique('hello from the air gap');
    await a.fill('#text', text);
    await a.click('#send-all button[type=submit]');
    await logHas(b, `${alice}: ${text}`);
    await logHas(a, `${alice}: ${text}`);
    assert.match(await b.textContent('#status'), /served by app server page-1\./);

    assert.deepEqual(blocked, [], `requests to other hosts: ${blocked.join(', ')}`);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
    await a.close();
    await b.close();
  });

  test('without the installed client the example says how to install it, in its terminal and its page', async () => {
    const missing = path.join(os.tmpdir(), `${unique('no-signalr')}.min.js`);
    const app = await startApp('chat', {
      connectionString: brokerConnectionString(broker), serverId: 'page-missing', connections: 1, extraArgs: ['--signalr-js', missing],
    });
    apps.push(app);
    const hint = 'chat: the SignalR browser client is not installed: run `npm ci --prefix examples/chat`';
    await eventually(() => app.stderrText.includes(`${hint} (no file at ${missing};`), () => `the install hint on stderr:\n${app.stderrText}`);
    const js = await withTimeout(fetch(`${app.base}/signalr.min.js`), WAIT_MS, 'GET /signalr.min.js');
    assert.equal(js.status, 404);
    assert.match(await js.text(), /not installed: run `npm ci --prefix examples\/chat`/);

    const page = await openChat(app);
    assert.match(await page.textContent('#status'), /The SignalR browser client is not installed: run `npm ci --prefix examples\/chat`/);
    assert.equal(await page.isDisabled('#login button[type=submit]'), true);
    assert.deepEqual(page.errors, []);
    await page.close();
  });
});
