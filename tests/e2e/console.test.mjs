// The web console (/admin/console) in headless Chromium: sign in (an access key signed into a
// token by WebCrypto, or a pasted token), see official clients appear under their hub with
// their transport and user, switch the service mode, watch a broadcast in the live trace, and
// fit a phone's screen. Needs /usr/bin/chromium (`apt-get install chromium`; CHROMIUM_BIN
// overrides the path) and playwright-core (a devDependency) to drive it.
//
// SWITCHBOARD_CONSOLE_SCREENSHOT=<file.png> also saves the overview with a few busy clients
// (how docs/console.png is made).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { useBroker, unique, eventually, sleep, signalR } from './harness.mjs';
import { adminToken, adminSettings } from './harness-extra.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const UI_WAIT = 10_000;

describe('web console in headless Chromium', () => {
  const ctx = useBroker({ before, after }, { mode: 'serverless' });
  let context;
  let userDataDir;

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is missing at ${CHROMIUM}: the console test needs it. Install it with \`apt-get install -y --no-install-recommends chromium\` (or set CHROMIUM_BIN).`);
    }
    userDataDir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  after(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  /** A fresh page on the console, signed in with `credential` (the access key by default). */
  async function signedIn(credential = ctx.broker.accessKey) {
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    page.errors = errors;
    await page.goto(`${ctx.broker.base}/admin/console`);
    await page.fill('#credential', credential);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#overview-cards', { timeout: UI_WAIT });
    return page;
  }

  test('an access key or a pasted token signs in; a wrong key is refused with a message', async () => {
    const page = await context.newPage();
    await page.goto(`${ctx.broker.base}/admin/console/`);
    await page.fill('#credential', 'not-the-key-but-long-enough-to-look-like-one-0123');
    await page.click('#signin-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('signin-error').textContent.includes('refused'), null, { timeout: UI_WAIT });
    assert.equal(await page.isVisible('#nav'), false);

    const token = adminToken(ctx.broker.accessKey, { aud: 'http://127.0.0.1/admin', lifetime: 600 });
    await page.fill('#credential', token);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#overview-cards', { timeout: UI_WAIT });
    const stored = await page.evaluate(() => sessionStorage.getItem('switchboard.adminToken'));
    assert.equal(stored, token, 'the token is kept in sessionStorage');
    await page.click('#signout');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('switchboard.adminToken')), null);
    await page.close();

    // The key itself: signed into a token in the page (127.0.0.1 is a secure context).
    const keyed = await signedIn();
    const signed = await keyed.evaluate(() => sessionStorage.getItem('switchboard.adminToken'));
    assert.match(signed, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.ok(!signed.includes(ctx.broker.accessKey), 'the key is not stored');
    assert.deepEqual(keyed.errors, []);
    await keyed.close();
  });

  test('official clients appear under their hub with transport, protocol, user and groups', async () => {
    const { broker } = ctx;
    const hub = unique('console');
    const alice = await broker.connect(hub, { protocol: 'json', userId: 'alice' });
    const bob = await broker.connect(hub, { protocol: 'messagepack', userId: 'bob', transport: signalR.HttpTransportType.LongPolling });
    const add = await broker.rest('PUT', broker.apiPath(hub, 'groups', 'vip', 'connections', alice.id));
    assert.equal(add.status, 200, add.text);

    const page = await signedIn();
    await page.waitForFunction(() => /\d/.test(document.querySelector('#overview-cards .card:nth-child(2) .value')?.textContent ?? ''), null, { timeout: UI_WAIT });
    await page.click('#nav a[data-page=hubs]');
    await page.click(`a[href="#/hub/${hub}"]`, { timeout: UI_WAIT });
    const row = (id) => page.locator(`tr[data-connection="${id}"]`);
    await row(alice.id).waitFor({ timeout: UI_WAIT });
    assert.equal(await row(alice.id).locator('td.transport').textContent(), 'WebSockets');
    assert.equal(await row(alice.id).locator('td.user').textContent(), 'alice');
    assert.match(await row(alice.id).textContent(), /vip/);
    assert.equal(await row(bob.id).locator('td.transport').textContent(), 'LongPolling');
    assert.match(await row(bob.id).textContent(), /messagepack/);

    // Groups -> the group's connections.
    await page.click('nav.tabs a:has-text("Groups")');
    await page.click(`a:has-text("vip")`, { timeout: UI_WAIT });
    await row(alice.id).waitFor({ timeout: UI_WAIT });
    assert.equal(await row(bob.id).count(), 0, 'only the group is shown');

    // A client that leaves is gone after a refresh.
    await page.click('nav.tabs a:has-text("Connections")');
    await row(bob.id).waitFor({ timeout: UI_WAIT });
    await bob.stop();
    await eventually(async () => {
      await page.click('.pager button:has-text("Refresh")');
      await sleep(200);
      return (await row(bob.id).count()) === 0 && (await row(alice.id).count()) === 1;
    }, 'the stopped client left the list');
    assert.deepEqual(page.errors, []);
    await page.close();
    await alice.stop();
  });

  test('the service mode changes from the settings page', async () => {
    const { broker } = ctx;
    const page = await signedIn();
    await page.click('#nav a[data-page=settings]');
    await page.waitForSelector('#mode-select', { timeout: UI_WAIT });
    assert.equal(await page.textContent('#mode-current'), 'serverless');
    await page.selectOption('#mode-select', 'classic');
    await page.click('#mode-apply');
    await page.waitForFunction(() => document.getElementById('mode-current').textContent === 'classic', null, { timeout: UI_WAIT });
    assert.equal((await adminSettings(broker.base, broker.accessKey)).json.mode, 'classic');

    // The overview shows it too; then back to serverless for the other tests.
    await page.click('#nav a[data-page=overview]');
    await page.waitForFunction(() => document.querySelector('#overview-cards .value').textContent === 'classic', null, { timeout: UI_WAIT });
    const back = await adminSettings(broker.base, broker.accessKey, { method: 'PATCH', body: { mode: 'serverless' } });
    assert.equal(back.status, 200);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('a broadcast shows in the live trace', async () => {
    const { broker } = ctx;
    const hub = unique('traced');
    const client = await broker.connect(hub, { protocol: 'json', userId: 'tracy' });
    const page = await signedIn();
    await page.click('#nav a[data-page=settings]');
    await page.waitForSelector('#log-messaging', { timeout: UI_WAIT });
    await page.selectOption('#log-messaging', 'debug');
    await page.selectOption('#log-connectivity', 'debug');
    await page.click('button:has-text("Apply levels")');
    await eventually(async () => {
      const res = await fetch(`${broker.base}/admin/logs`, { headers: { Authorization: `Bearer ${adminToken(broker.accessKey)}` } });
      return (await res.json()).messaging === 'debug';
    }, 'the log levels applied from the settings page');
    await page.click('#nav a[data-page=trace]');
    await page.fill('#trace-hub', hub);
    await page.click('#trace-start');
    await page.waitForFunction(() => document.getElementById('trace-status').textContent.startsWith('Live'), null, { timeout: UI_WAIT });
    await eventually(async () => {
      await broker.broadcast(hub, 'message', ['traced']);
      await sleep(200);
      const text = await page.textContent('#trace-rows');
      return text.includes(hub) && /Messaging/.test(text);
    }, 'a messaging event of the hub in the trace', UI_WAIT);
    const download = page.waitForEvent('download');
    await page.click('#trace-export');
    const csv = await (await download).createReadStream();
    let text = '';
    for await (const chunk of csv) text += chunk;
    assert.match(text.split('\r\n')[0], /"time","level","category"/);
    assert.ok(text.includes(hub), 'the CSV holds the hub');
    await page.click('#trace-stop');
    assert.deepEqual(page.errors, []);
    await page.close();
    await client.stop();
  });

  test('the trace page reads an event stream: events, filters in the query, drop notices, CSV', async () => {
    // A scripted stream in the contract's shape, so the page is checked whatever the broker's
    // trace does; the test above watches the broker's own.
    const page = await signedIn();
    const seen = [];
    const event = (i, message) => ({
      time: `2026-12-07T15:00:0${i}.123Z`, level: 'Informational', category: 'MessagingLogs', operationName: 'BroadcastMessage',
      callerIpAddress: '127.0.0.1',
      properties: { type: 'MessagingLogs', collection: 'Message', connectionId: `c${i}`, hub: 'chat', userId: 'u1', message },
    });
    await page.route('**/admin/trace?**', (route) => {
      seen.push({ url: route.request().url(), auth: route.request().headers().authorization });
      route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        body: `data: ${JSON.stringify(event(1, 'first'))}\n\n`
          + 'event: dropped\ndata: {"dropped":7}\n\n'
          + `data: ${JSON.stringify(event(2, '=HYPERLINK("x") <img src=x onerror=alert(1)>'))}\n\n`,
      });
    });
    await page.click('#nav a[data-page=trace]');
    await page.uncheck('#cat-http');
    await page.fill('#trace-hub', 'chat');
    await page.fill('#trace-user', 'u1');
    await page.click('#trace-start');
    await page.waitForFunction(() => document.querySelectorAll('#trace-rows tr').length === 2, null, { timeout: UI_WAIT });
    const query = new URL(seen[0].url).searchParams;
    assert.equal(query.get('categories'), 'connectivity,messaging');
    assert.equal(query.get('hub'), 'chat');
    assert.equal(query.get('userId'), 'u1');
    assert.equal(query.get('connectionId'), null);
    assert.match(seen[0].auth, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    assert.match(await page.textContent('#trace-dropped'), /7 event\(s\) dropped/);
    // Data is text: the markup in a message is shown, not run.
    assert.equal(await page.locator('#trace-rows img').count(), 0);
    assert.match(await page.textContent('#trace-rows'), /<img src=x onerror=alert\(1\)>/);
    const download = page.waitForEvent('download');
    await page.click('#trace-export');
    let csv = '';
    for await (const chunk of await (await download).createReadStream()) csv += chunk;
    const lines = csv.trim().split('\r\n');
    assert.equal(lines.length, 3, csv);
    assert.match(lines[1], /"BroadcastMessage","chat","c1","u1"/);
    assert.ok(lines[2].includes('"\'=HYPERLINK(""x"") <img'), `a formula is neutralised: ${lines[2]}`);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('a phone-sized screen shows every page without horizontal scrolling', async () => {
    const { broker } = ctx;
    const hub = unique('phone_with_a_rather_long_hub_name');
    const client = await broker.connect(hub, { protocol: 'json', userId: 'a-user-with-a-long-identifier-0123456789' });
    const page = await signedIn();
    await page.setViewportSize({ width: 390, height: 844 });
    for (const hash of ['#/overview', '#/hubs', `#/hub/${hub}`, `#/hub/${hub}/users`, '#/servers', '#/settings', '#/trace']) {
      await page.evaluate((h) => { location.hash = h; }, hash);
      await page.waitForSelector('#view h1', { timeout: UI_WAIT });
      await sleep(300);
      const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
      assert.ok(scroll <= width, `${hash}: the page is ${scroll}px wide on a ${width}px screen`);
    }
    assert.deepEqual(page.errors, []);
    await page.close();
    await client.stop();
  });

  // Not a check but how docs/console.png is made: defined only when asked for, so the suite
  // reports no skipped test.
  const screenshot = process.env.SWITCHBOARD_CONSOLE_SCREENSHOT;
  if (screenshot) test('overview screenshot with a few busy clients', async () => {
    const file = screenshot;
    const { broker } = ctx;
    const page = await signedIn();
    const plan = [];
    for (const [hub, n] of [['chat', 5], ['news', 3]]) {
      for (let i = 0; i < n; i++) plan.push({ hub, i });
    }
    const clients = [];
    const stop = Date.now() + 25_000;
    let n = 0;
    while (Date.now() < stop) {
      n += 1;
      // Clients arrive one by one over the first seconds.
      if (n % 8 === 1 && plan.length) {
        const { hub, i } = plan.shift();
        const transport = i === 0 && hub === 'news' ? signalR.HttpTransportType.LongPolling : undefined;
        clients.push(await broker.connect(hub, { protocol: i % 2 ? 'messagepack' : 'json', userId: `user${i}`, transport }));
      }
      await broker.broadcast('chat', 'message', [`tick ${n}`, 'x'.repeat(200 + ((n * 37) % 400))]);
      if (n % 3 === 0) await broker.broadcast('news', 'message', [`news ${n}`]);
      // Client to service messages too (serverless without an upstream drops them, counted).
      if (clients.length) await clients[n % clients.length].conn.send('chat', `hello ${n}`);
      await sleep(40 + ((n * 13) % 120));
    }
    await page.screenshot({ path: path.resolve(file), clip: { x: 0, y: 0, width: 1280, height: 430 } });
    await page.close();
    for (const c of clients) await c.stop();
  });
});
