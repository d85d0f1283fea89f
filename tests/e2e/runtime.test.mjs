// 10. Runtime settings without a restart: `switchboard admin` (the CLI), PATCH/GET
//     /admin/settings (admin token, aud http://127.0.0.1/admin/settings) and SIGHUP with
//     `--config`.
//
// The first block is one scenario in steps (each test builds on the previous one's settings):
//   Default mode with the chat example and its clients → `admin --mode serverless` closes the
//   hub server's connections and their clients; direct clients connect → `admin --set-upstream`
//   reaches an already open client's next invocation → `admin --set-access-key NEW` refuses
//   old-key tokens on negotiate while the open clients keep receiving NEW-key REST sends.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, startApp, connectViaApp, brokerConnectionString, brokerMetric, randomAccessKey, eventually,
  withTimeout, unique, CHAT_TARGETS, DEFAULT_TARGETS, WAIT_MS,
} from './harness.mjs';
import { startUpstream, framedCompletion, adminSettings, adminToken, runSwitchboard, tempDir, writeFile } from './harness-extra.mjs';

const SERVER_GONE = 'The app server this client was connected to has disconnected.';
const noUpstream = (hub, target) => `Invocation failed: hub '${hub}' is in Serverless mode and no upstream is configured to handle '${target}'.`;

/** The connection string of the broker at `base` (`http://127.0.0.1:<port>`) with `key`. */
function cs(base, key) {
  const url = new URL(base);
  return `Endpoint=${url.protocol}//${url.hostname};Port=${url.port};AccessKey=${key};Version=1.0;`;
}

/** `switchboard admin --connection-string <base, key> ...`; asserts exit 0 and returns the printed settings. */
async function admin(base, key, ...args) {
  const r = await runSwitchboard(['admin', '--connection-string', cs(base, key), ...args]);
  assert.equal(r.code, 0, `switchboard admin ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stderr, '', `switchboard admin wrote to stderr: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('runtime settings: switchboard admin and /admin/settings with clients connected', () => {
  const KEY = randomAccessKey();
  const NEW_KEY = randomAccessKey();
  const s = { appClients: [] };
  before(async () => {
    s.upstream = await startUpstream();
    s.broker = await startBroker({ mode: 'default', accessKey: KEY });
    s.app = await startApp('chat', { connectionString: brokerConnectionString(s.broker), serverId: 'rt-1', connections: 2 });
  });
  after(async () => {
    const errors = [];
    for (const p of [s.app, s.broker, s.upstream]) {
      if (!p) continue;
      try { p.assertHealthy(); } catch (e) { errors.push(e); }
    }
    await Promise.all(s.appClients.map((c) => c.stop().catch(() => {})));
    if (s.app) await s.app.stop();
    if (s.broker) await s.broker.stop();
    if (s.upstream) await s.upstream.close();
    if (errors.length) throw errors[0];
  });

  test('GET/PATCH /admin/settings: admin token required; an invalid PATCH changes nothing', async () => {
    const { broker } = s;
    const initial = { mode: 'default', accessKeys: { count: 1 }, upstream: [] };
    const got = await adminSettings(broker.base, KEY);
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(got.json, initial);
    // the CLI without a change prints the same
    assert.deepEqual(await admin(broker.base, KEY), initial);

    assert.equal((await adminSettings(broker.base, KEY, { token: '' })).status, 401);
    assert.equal((await adminSettings(broker.base, KEY, { token: adminToken(KEY, { aud: 'http://127.0.0.1/api/hubs/chat' }) })).status, 401);
    assert.equal((await adminSettings(broker.base, KEY, { token: adminToken(randomAccessKey()) })).status, 401);
    const forged = await adminSettings(broker.base, KEY, { method: 'PATCH', body: { mode: 'serverless' }, token: adminToken(randomAccessKey()) });
    assert.equal(forged.status, 401, forged.text);

    const bad = await adminSettings(broker.base, KEY, { method: 'PATCH', body: { mode: 'bogus' } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json?.code, 'Error.InvalidRequest', bad.text);
    // validated as a whole: a valid mode next to an unknown field changes nothing either
    const unknown = await adminSettings(broker.base, KEY, { method: 'PATCH', body: { mode: 'serverless', bogus: 1 } });
    assert.equal(unknown.status, 400, unknown.text);
    assert.equal(unknown.json?.code, 'Error.InvalidRequest', unknown.text);
    const badKeys = await adminSettings(broker.base, KEY, { method: 'PATCH', body: { mode: 'serverless', accessKeys: [] } });
    assert.equal(badKeys.status, 400, badKeys.text);
    assert.deepEqual((await adminSettings(broker.base, KEY)).json, initial);

    // a PATCH that changes nothing answers the settings in force
    const same = await adminSettings(broker.base, KEY, { method: 'PATCH', body: { mode: 'default' } });
    assert.equal(same.status, 200, same.text);
    assert.deepEqual(same.json, initial);
  });

  test('admin --mode serverless closes the chat server connections and their clients; direct clients connect', async () => {
    const { broker, app } = s;
    const a = await connectViaApp(app.hubUrl, { protocol: 'json', userId: 'rt-a', targets: CHAT_TARGETS, label: 'routed-json' });
    const b = await connectViaApp(app.hubUrl, { protocol: 'messagepack', userId: 'rt-b', targets: CHAT_TARGETS, label: 'routed-msgpack' });
    s.appClients.push(a, b);
    for (const c of [a, b]) assert.equal((await withTimeout(c.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI')).serverId, 'rt-1');
    // Default mode: a direct client without a hub server would be refused; with one it is routed
    const direct = await broker.connect('chat', { protocol: 'json', userId: 'rt-direct-default', targets: CHAT_TARGETS });
    assert.equal((await withTimeout(direct.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI direct')).serverId, 'rt-1');

    await eventually(async () => (await brokerMetric(broker, 'switchboard_server_connections')) === 2,
      'switchboard_server_connections == 2 (the chat example\'s two server connections)');

    const printed = await admin(broker.base, KEY, '--mode', 'serverless');
    assert.deepEqual(printed, { mode: 'serverless', accessKeys: { count: 1 }, upstream: [] });

    for (const c of [a, b, direct]) {
      const err = await c.waitClosed();
      assert.ok(err instanceof Error, `${c.name}: onclose must receive an Error, got ${String(err)}`);
      assert.ok(err.message.includes(SERVER_GONE), `${c.name}: close error "${err.message}"`);
    }

    // the hub server's connections were closed (its reconnects are refused in Serverless mode)
    await eventually(async () => (await brokerMetric(broker, 'switchboard_server_connections')) === 0,
      'switchboard_server_connections == 0 after the switch to Serverless');

    // new direct clients are served by the broker itself now
    const hub = 'chat';
    const c = await broker.connect(hub, { protocol: 'messagepack', userId: 'rt-serverless', targets: DEFAULT_TARGETS });
    await assert.rejects(withTimeout(c.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI in Serverless mode'),
      (err) => { assert.equal(err.message, noUpstream(hub, 'WhoAmI')); return true; });
    await broker.broadcast(hub, 'message', ['serverless now']);
    await c.expect('message', ['serverless now']);
    assert.equal((await adminSettings(broker.base, KEY)).json.mode, 'serverless');
    s.serverlessClient = c;
  });

  test('admin --set-upstream: an already open JSON client\'s next invoke reaches the new upstream', async () => {
    const { broker, upstream } = s;
    const hub = unique('rt_up');
    upstream.handle(hub, (rec) => {
      if (rec.category !== 'messages') return { status: 200 };
      const msg = JSON.parse(rec.text);
      return { status: 200, body: framedCompletion('json', msg.invocationId, msg.arguments[0] + msg.arguments[1]) };
    });
    const c = await broker.connect(hub, { protocol: 'json', userId: 'rt-up' });
    await assert.rejects(withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'Add without upstream'),
      (err) => { assert.equal(err.message, noUpstream(hub, 'Add')); return true; });

    const printed = await admin(broker.base, KEY, '--set-upstream', upstream.template);
    assert.equal(printed.mode, 'serverless');
    assert.deepEqual(printed.upstream, [{ url_template: upstream.template, hub_pattern: '*', category_pattern: '*', event_pattern: '*' }]);

    assert.equal(await withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'Add with the new upstream'), 5);
    // it connected before the rule existed: its first upstream request is the invocation
    const reqs = upstream.forConnection(c.id);
    assert.deepEqual(reqs.map((r) => `${r.category}/${r.event}`), ['messages/Add']);
    assert.equal(reqs[0].headers['x-asrs-user-id'], 'rt-up');
    assert.equal(reqs[0].path, `/${hub}/api/messages/Add`);
    s.upstreamClient = c;
  });

  test('admin --set-access-key NEW: old-key tokens are refused on negotiate; open clients keep receiving NEW-key REST sends', async () => {
    const { broker } = s;
    const hub = unique('rt_keys');
    const open = await broker.connect(hub, { protocol: 'messagepack', userId: 'rt-open', label: 'open-before-rotation' });
    const openJson = await broker.connect(hub, { protocol: 'json', userId: 'rt-open', label: 'open-json-before-rotation' });

    const printed = await admin(broker.base, KEY, '--set-access-key', NEW_KEY);
    assert.deepEqual(printed.accessKeys, { count: 1 });

    // old key: negotiate refuses the token
    await assert.rejects(broker.connect(hub, { protocol: 'json', tokenOptions: { key: KEY } }), (err) => {
      assert.ok(err.message.includes("Status code '401'"), `start() error: ${err.message}`);
      return true;
    });
    const restOld = await broker.rest('POST', broker.apiPath(hub, ':send'), { body: { target: 'message', arguments: ['old key'] }, tokenOptions: { key: KEY } });
    assert.equal(restOld.status, 401, restOld.text);
    // the CLI signed with the old key is refused too
    const cliOld = await runSwitchboard(['admin', '--connection-string', cs(broker.base, KEY)]);
    assert.equal(cliOld.code, 1, `stdout: ${cliOld.stdout}\nstderr: ${cliOld.stderr}`);
    assert.match(cliOld.stderr, /^switchboard: the broker answered 401: .*\n$/);

    // the new key works for REST and new clients; the open clients still receive
    broker.accessKey = NEW_KEY;
    const fresh = await broker.connect(hub, { protocol: 'json', userId: 'rt-fresh' });
    await broker.broadcast(hub, 'message', ['rotated', 2]);
    for (const c of [open, openJson, fresh]) await c.expect('message', ['rotated', 2]);
    await broker.sendToUser(hub, 'rt-open', 'marker', ['user send after rotation']);
    await open.expect('marker', ['user send after rotation']);
    await openJson.expect('marker', ['user send after rotation']);
    assert.equal(open.state, 'Connected');
    // the old-key REST send above never arrived: the marker was the next message after "rotated"
    assert.deepEqual(open.received.map((m) => m.args[0]), ['rotated', 'user send after rotation']);
    // the client opened before the key change still reaches the upstream
    if (s.upstreamClient) assert.equal(await withTimeout(s.upstreamClient.conn.invoke('Add', 20, 22), WAIT_MS, 'Add after rotation'), 42);
    assert.deepEqual((await adminSettings(broker.base, NEW_KEY)).json.accessKeys, { count: 1 });
  });
});

describe('runtime settings: SIGHUP reloads the --config file', () => {
  const KEY = randomAccessKey();
  const s = {};
  before(async () => {
    s.tmp = tempDir();
    s.config = writeFile(s.tmp.file('switchboard.toml'), 'mode = "serverless"\n');
    // no --mode flag: flags win over the file, also on reload
    s.broker = await startBroker({ mode: null, accessKey: KEY, extraArgs: ['--config', s.config] });
  });
  after(async () => {
    let err;
    try { s.broker?.assertHealthy(); } catch (e) { err = e; }
    await s.broker?.stop();
    s.tmp?.cleanup();
    if (err) throw err;
  });

  test('rewrite the mode, SIGHUP, GET /admin/settings follows; a bad file changes nothing', async () => {
    const { broker } = s;
    await eventually(() => broker.stdoutLines.includes('Mode: serverless'), () => `stdout line "Mode: serverless" (stdout: ${JSON.stringify(broker.stdoutLines)})`);
    assert.equal((await adminSettings(broker.base, KEY)).json.mode, 'serverless');
    const c = await broker.connect('hup', { protocol: 'json' });

    writeFile(s.config, 'mode = "classic"\n\n[[upstream]]\nurl_template = "http://127.0.0.1:9/{hub}"\n');
    process.kill(broker.child.pid, 'SIGHUP');
    const view = await eventually(async () => {
      const r = await adminSettings(broker.base, KEY);
      return r.json?.mode === 'classic' ? r.json : undefined;
    }, 'GET /admin/settings to show mode "classic" after SIGHUP', WAIT_MS);
    assert.deepEqual(view, { mode: 'classic', accessKeys: { count: 1 }, upstream: [{ url_template: 'http://127.0.0.1:9/{hub}', hub_pattern: '*', category_pattern: '*', event_pattern: '*' }] });
    assert.equal(broker.exit, undefined, 'the broker must survive SIGHUP');

    // an invalid file: the reload is refused (logged) and nothing changes
    const stderrBefore = broker.stderrText.length;
    writeFile(s.config, 'mode = "bogus"\n');
    process.kill(broker.child.pid, 'SIGHUP');
    await eventually(() => broker.stderrText.slice(stderrBefore).includes('configuration not reloaded'),
      () => `the broker to log "configuration not reloaded" (stderr tail: ${broker.stderrTail(800)})`);
    assert.equal((await adminSettings(broker.base, KEY)).json.mode, 'classic');

    // back to a valid file
    writeFile(s.config, 'mode = "default"\n');
    process.kill(broker.child.pid, 'SIGHUP');
    const back = await eventually(async () => {
      const r = await adminSettings(broker.base, KEY);
      return r.json?.mode === 'default' ? r.json : undefined;
    }, 'GET /admin/settings to show mode "default" after the second SIGHUP', WAIT_MS);
    assert.deepEqual(back, { mode: 'default', accessKeys: { count: 1 }, upstream: [] });

    // the client connected in Serverless mode keeps its route: REST sends still reach it
    await broker.broadcast('hup', 'message', ['after reloads']);
    await c.expect('message', ['after reloads']);
    assert.equal(broker.exit, undefined);
  });
});
