// 7. Default mode with real hub servers: the example apps (examples/chat, examples/echo, built
//    with the Rust hub-server SDK) connect to the broker with its connection string, and the
//    official JS client connects THROUGH THE APP'S NEGOTIATE (`withUrl(app + "/chat")`, the
//    Azure redirect `{url, accessToken}`), then talks to the hub methods the app runs.
//
// Negative checks ("X must not receive M") use a marker sent afterwards on the SAME server
// connection as M would have used (the sender's), so the broker delivers them in order: once the
// marker arrived, M cannot arrive any more.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, startApp, connectViaApp, brokerConnectionString, brokerMetric, received, waitReceived,
  eventually, unique, sleep, withTimeout, signalR, PROTOCOLS, CHAT_TARGETS, ECHO_TARGETS, WAIT_MS,
} from './harness.mjs';

/**
 * Processes and clients of one describe block, torn down in order (clients, apps, broker) even
 * when a test or a hook failed; a crash or panic of any process fails the block.
 */
function useStack(hooks, setup) {
  const stack = { broker: undefined, apps: [], clients: [] };
  stack.client = async (hubUrl, options) => {
    const c = await connectViaApp(hubUrl, options);
    stack.clients.push(c);
    return c;
  };
  stack.app = async (example, options) => {
    const app = await startApp(example, { connectionString: brokerConnectionString(stack.broker), ...options });
    stack.apps.push(app);
    return app;
  };
  hooks.before(async () => {
    await setup(stack);
  });
  hooks.after(async () => {
    const errors = [];
    for (const p of [...stack.apps, stack.broker, ...stack.clients]) {
      if (!p) continue;
      try { (p.assertHealthy ?? p.assertNoUnknownTargets).call(p); } catch (e) { errors.push(e); }
    }
    await Promise.all(stack.clients.map((c) => c.stop().catch(() => {})));
    await Promise.all(stack.apps.map((a) => a.stop()));
    if (stack.broker) await stack.broker.stop();
    if (errors.length) throw errors[0];
  });
  return stack;
}

const other = (protocol) => (protocol === 'json' ? 'messagepack' : 'json');

describe('Default mode: example hub servers and the official client through the app negotiate', () => {
  const s = useStack({ before, after }, async (stack) => {
    stack.broker = await startBroker({ mode: 'default' });
    [stack.chat, stack.echo] = await Promise.all([
      stack.app('chat', { serverId: 'chat-1', connections: 3 }),
      stack.app('echo', { serverId: 'echo-1', connections: 3 }),
    ]);
  });

  test('the apps print their lines and negotiate answers the Azure redirect with CORS', async () => {
    assert.equal(s.chat.serverId, 'chat-1');
    assert.equal(s.echo.serverId, 'echo-1');
    const origin = 'http://page.example';
    const res = await withTimeout(fetch(`${s.chat.hubUrl}/negotiate?user=zoe&negotiateVersion=1`, { method: 'POST', headers: { Origin: origin } }), WAIT_MS, 'POST chat negotiate');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), origin);
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    const body = await res.json();
    assert.deepEqual(Object.keys(body), ['url', 'accessToken']);
    assert.equal(body.url, `${s.broker.base}/client/?hub=chat`);
    const claims = JSON.parse(Buffer.from(body.accessToken.split('.')[1], 'base64url').toString());
    assert.equal(claims.nameid, 'zoe');
    const pre = await withTimeout(fetch(`${s.echo.hubUrl}/negotiate`, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-requested-with,x-signalr-user-agent' } }), WAIT_MS, 'OPTIONS echo negotiate');
    assert.ok(pre.status === 200 || pre.status === 204, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /x-signalr-user-agent/);
    const page = await withTimeout(fetch(`${s.chat.base}/`), WAIT_MS, 'GET chat page');
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script src="\/signalr\.min\.js"><\/script>/);
    // the page's browser client, served by the app from `npm ci --prefix examples/chat`
    const js = await withTimeout(fetch(`${s.chat.base}/signalr.min.js`), WAIT_MS, 'GET chat /signalr.min.js');
    const jsBody = await js.text();
    assert.equal(js.status, 200, `GET /signalr.min.js: ${js.status} ${jsBody.trim()} (install the example's client with \`npm ci --prefix examples/chat\` from the repository root)`);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
  });

  for (const protocol of PROTOCOLS) {
    test(`echo: EchoReturn returns the payload; Echo sends it to the caller only (${protocol})`, async () => {
      const a = await s.client(s.echo.hubUrl, { protocol, targets: ECHO_TARGETS, label: 'echo-a' });
      const b = await s.client(s.echo.hubUrl, { protocol: other(protocol), targets: ECHO_TARGETS, label: 'echo-b' });
      const payload = { text: `hello ${protocol}`, n: 1.5, list: [1, 'two', null, true], nested: { deep: ['x'] } };
      assert.deepEqual(await a.conn.invoke('EchoReturn', payload), payload);
      assert.equal(await a.conn.invoke('EchoReturn', 'plain string'), 'plain string');

      const result = await a.conn.invoke('Echo', payload);
      assert.ok(result === null || result === undefined, `Echo returns nothing, got ${JSON.stringify(result)}`);
      await a.expect('echo', [payload]);
      // the marker goes out on a's server connection after the echo: b sees it, and nothing before
      const marker = unique('marker');
      await a.conn.invoke('Broadcast', marker);
      await b.expect('broadcast', [marker], 'the broadcast marker (a\'s echo must not reach b)');
      await a.expect('broadcast', [marker]);
    });

    test(`echo: Broadcast reaches every echo client, both protocols (${protocol})`, async () => {
      const a = await s.client(s.echo.hubUrl, { protocol, targets: ECHO_TARGETS, label: 'bc-a' });
      const b = await s.client(s.echo.hubUrl, { protocol: other(protocol), targets: ECHO_TARGETS, label: 'bc-b' });
      const payload = { from: protocol, values: [3, 2, 1] };
      await b.conn.invoke('Broadcast', payload);
      await waitReceived(a, 'broadcast', (p) => p?.from === protocol && p.values.length === 3, 'the broadcast');
      await waitReceived(b, 'broadcast', (p) => p?.from === protocol, 'its own broadcast');
      assert.deepEqual(a.received.find((m) => m.target === 'broadcast' && m.args[0]?.from === protocol).args, [payload]);
    });

    test(`chat: joined / left carry the user id; SendMessage reaches everyone (${protocol})`, async () => {
      const watcher = await s.client(s.chat.hubUrl, { protocol, userId: unique('watcher'), targets: CHAT_TARGETS, label: 'watcher' });
      const dave = unique('dave');
      const d = await s.client(s.chat.hubUrl, { protocol: other(protocol), userId: dave, targets: CHAT_TARGETS, label: 'dave' });
      await waitReceived(watcher, 'joined', (who) => who === dave, `joined("${dave}")`);
      await waitReceived(d, 'joined', (who) => who === dave, 'its own joined notification');

      const text = unique('hello everyone');
      await d.conn.invoke('SendMessage', dave, text);
      assert.deepEqual(await waitReceived(watcher, 'newMessage', (_u, t) => t === text, 'the message'), [dave, text]);
      assert.deepEqual(await waitReceived(d, 'newMessage', (_u, t) => t === text, 'its own message'), [dave, text]);

      await d.stop();
      await waitReceived(watcher, 'left', (who) => who === dave, `left("${dave}")`);
    });

    test(`chat: WhoAmI returns the connection id, the user id from negotiate and the server id (${protocol})`, async () => {
      const user = unique('who');
      const c = await s.client(s.chat.hubUrl, { protocol, userId: user, targets: CHAT_TARGETS });
      assert.deepEqual(await c.conn.invoke('WhoAmI'), { connectionId: c.id, userId: user, serverId: 'chat-1' });
    });

    test(`chat: rooms (groups) join / send / leave (${protocol})`, async () => {
      const room = unique('room');
      const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
      const a = await s.client(s.chat.hubUrl, { protocol, userId: alice, targets: CHAT_TARGETS, label: 'alice' });
      const b = await s.client(s.chat.hubUrl, { protocol: other(protocol), userId: bob, targets: CHAT_TARGETS, label: 'bob' });
      const c = await s.client(s.chat.hubUrl, { protocol, userId: carol, targets: CHAT_TARGETS, label: 'carol (outsider)' });

      await a.conn.invoke('JoinRoom', room);
      await waitReceived(a, 'roomJoined', (r, who) => r === room && who === alice, 'its own roomJoined');
      await b.conn.invoke('JoinRoom', room);
      await waitReceived(a, 'roomJoined', (r, who) => r === room && who === bob, `roomJoined(${room}, bob)`);
      await waitReceived(b, 'roomJoined', (r, who) => r === room && who === bob, 'its own roomJoined');

      await a.conn.invoke('SendToRoom', room, alice, 'hello room');
      assert.deepEqual(await waitReceived(a, 'roomMessage', (r) => r === room, 'the room message'), [room, alice, 'hello room']);
      assert.deepEqual(await waitReceived(b, 'roomMessage', (r) => r === room, 'the room message'), [room, alice, 'hello room']);
      // carol is not in the room: a marker from alice's connection arrives, the room message never did
      const m1 = unique('m1');
      await a.conn.invoke('SendToUser', carol, m1);
      await waitReceived(c, 'privateMessage', (_f, t) => t === m1, 'the marker');
      assert.ok(!received(c, 'roomMessage'), `the outsider got a room message: ${JSON.stringify(c.received)}`);
      assert.ok(!received(c, 'roomJoined', (r) => r === room), `the outsider got a room notification: ${JSON.stringify(c.received)}`);

      await b.conn.invoke('LeaveRoom', room);
      await waitReceived(a, 'roomLeft', (r, who) => r === room && who === bob, `roomLeft(${room}, bob)`);
      await a.conn.invoke('SendToRoom', room, alice, 'after bob left');
      await waitReceived(a, 'roomMessage', (_r, _u, t) => t === 'after bob left', 'the second room message');
      const m2 = unique('m2');
      await a.conn.invoke('SendToUser', bob, m2);
      await waitReceived(b, 'privateMessage', (_f, t) => t === m2, 'the marker');
      assert.ok(!received(b, 'roomMessage', (_r, _u, t) => t === 'after bob left'), `bob got a room message after leaving: ${JSON.stringify(b.received)}`);
      assert.ok(!received(b, 'roomLeft'), `bob got the notification of his own leaving: ${JSON.stringify(b.received)}`);
    });

    test(`chat: SendToUser reaches every connection of that user and nobody else (${protocol})`, async () => {
      const [erin, frank] = [unique('erin'), unique('frank')];
      const e1 = await s.client(s.chat.hubUrl, { protocol, userId: erin, targets: CHAT_TARGETS, label: 'erin-1' });
      const e2 = await s.client(s.chat.hubUrl, { protocol: other(protocol), userId: erin, targets: CHAT_TARGETS, label: 'erin-2' });
      const f = await s.client(s.chat.hubUrl, { protocol, userId: frank, targets: CHAT_TARGETS, label: 'frank' });

      await f.conn.invoke('SendToUser', erin, 'psst');
      assert.deepEqual(await waitReceived(e1, 'privateMessage', (_f, t) => t === 'psst', 'the private message'), [frank, 'psst']);
      assert.deepEqual(await waitReceived(e2, 'privateMessage', (_f, t) => t === 'psst', 'the private message'), [frank, 'psst']);
      // frank's marker to himself goes out on his connection after the private message
      const marker = unique('self');
      await f.conn.invoke('SendToUser', frank, marker);
      await waitReceived(f, 'privateMessage', (_f, t) => t === marker, 'the marker');
      assert.ok(!received(f, 'privateMessage', (_f, t) => t === 'psst'), `the sender got the private message: ${JSON.stringify(f.received)}`);
      // and each of erin's connections got it exactly once
      for (const e of [e1, e2]) {
        assert.equal(e.received.filter((m) => m.target === 'privateMessage' && m.args[1] === 'psst').length, 1, `${e.name}: ${JSON.stringify(e.received)}`);
      }
    });

    test(`chat: server-to-client stream Counter(5, 10) yields 0..4 then completes (${protocol})`, async () => {
      const c = await s.client(s.chat.hubUrl, { protocol, userId: unique('streamer'), targets: CHAT_TARGETS });
      const items = await withTimeout(new Promise((resolve, reject) => {
        const got = [];
        c.conn.stream('Counter', 5, 10).subscribe({
          next: (n) => got.push(n),
          complete: () => resolve(got),
          error: reject,
        });
      }), WAIT_MS, 'the Counter stream to complete');
      assert.deepEqual(items, [0, 1, 2, 3, 4]);
    });

    test(`chat: client-to-server upload UploadSum(subject) returns the sum (${protocol})`, async () => {
      const c = await s.client(s.chat.hubUrl, { protocol, userId: unique('uploader'), targets: CHAT_TARGETS });
      const subject = new signalR.Subject();
      const result = c.conn.invoke('UploadSum', subject);
      for (const n of [1, 2, 3.5, 10]) subject.next(n);
      subject.complete();
      assert.equal(await withTimeout(result, WAIT_MS, 'UploadSum'), 16.5);
    });

    test(`chat: client result: AskClient returns what the caller's answer handler returned (${protocol})`, async () => {
      const questions = [];
      const c = await s.client(s.chat.hubUrl, {
        protocol,
        userId: unique('oracle'),
        targets: CHAT_TARGETS,
        handlers: { answer: (q) => { questions.push(q); return `42: ${q}`; } },
      });
      assert.equal(await withTimeout(c.conn.invoke('AskClient', '?'), WAIT_MS, 'AskClient'), '42: ?');
      assert.deepEqual(questions, ['?']);
    });
  }

  test('a client of a Default-mode hub with no hub server is refused with Azure\'s text', async () => {
    const { broker } = s;
    const err = await broker.connect('lonely').then(
      (c) => { c.stop(); return undefined; },
      (e) => e,
    );
    assert.ok(err instanceof Error, 'connecting to hub "lonely" must fail');
    assert.ok(err.message.includes('However app servers are not connected.'), `error: ${err.message}`);
  });
});

describe('Default mode: stickiness over two app servers, and losing one', () => {
  const CLIENTS = 20;
  const s = useStack({ before, after }, async (stack) => {
    stack.broker = await startBroker({ mode: 'default' });
    [stack.a, stack.b] = await Promise.all([
      stack.app('chat', { serverId: 'sticky-a', connections: 2 }),
      stack.app('chat', { serverId: 'sticky-b', connections: 2 }),
    ]);
    stack.users = [];
    for (let i = 0; i < CLIENTS; i += 1) {
      const c = await stack.client(stack.a.hubUrl, { protocol: PROTOCOLS[i % 2], userId: unique(`u${i}`), targets: CHAT_TARGETS, label: `client-${i}` });
      stack.users.push(c);
    }
  });

  test(`${CLIENTS} clients always get the same server; both servers got clients`, async () => {
    const perServer = new Map();
    for (const c of s.users) {
      const seen = [];
      for (let i = 0; i < 3; i += 1) seen.push(await c.conn.invoke('WhoAmI'));
      for (const w of seen) assert.equal(w.connectionId, c.id);
      const ids = new Set(seen.map((w) => w.serverId));
      assert.equal(ids.size, 1, `${c.name} was served by ${[...ids].join(', ')}`);
      c.serverId = seen[0].serverId;
      perServer.set(c.serverId, (perServer.get(c.serverId) ?? 0) + 1);
    }
    assert.deepEqual([...perServer.keys()].sort(), ['sticky-a', 'sticky-b'], `clients per server: ${JSON.stringify([...perServer])}`);
  });

  test('SIGKILL of one app server closes exactly its clients with an error; the others keep working', async () => {
    // the server ids come from the previous test; ask again if it did not run
    for (const c of s.users) c.serverId ??= (await c.conn.invoke('WhoAmI')).serverId;
    const victims = s.users.filter((c) => c.serverId === 'sticky-a');
    const survivors = s.users.filter((c) => c.serverId === 'sticky-b');
    assert.ok(victims.length > 0 && survivors.length > 0, `clients per server: a=${victims.length} b=${survivors.length}`);

    await s.a.kill('SIGKILL');
    for (const v of victims) {
      const err = await v.waitClosed();
      assert.ok(err instanceof Error, `${v.name}: onclose must receive an Error, got ${String(err)}`);
      assert.ok(err.message.includes('The app server this client was connected to has disconnected.'), `${v.name}: close error "${err.message}"`);
    }
    const text = unique('still here');
    await survivors[0].conn.invoke('SendMessage', 'survivor', text);
    for (const c of survivors) {
      await waitReceived(c, 'newMessage', (_u, t) => t === text, 'the broadcast after the other server died');
      assert.equal(c.state, 'Connected', `${c.name} must stay connected`);
      assert.ok(!c.isClosed, `${c.name} was closed: ${c.closeError?.message}`);
    }
    // a new client is routed to the remaining server
    const late = await s.client(s.b.hubUrl, { protocol: 'messagepack', userId: unique('late'), targets: CHAT_TARGETS });
    assert.equal((await late.conn.invoke('WhoAmI')).serverId, 'sticky-b');
  });

  test('SIGTERM stops an app server gracefully: exit code 0, its clients are closed', async () => {
    const clients = s.users.filter((c) => !c.isClosed);
    assert.ok(clients.length > 0, 'some clients must still be connected');
    const exit = await withTimeout(s.b.kill('SIGTERM', 10_000), 12_000, 'the app to exit after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM:\n${s.b.describe()}`);
    for (const c of clients) await c.waitClosed();
  });
});

describe('Serverless mode refuses a hub server', () => {
  const s = useStack({ before, after }, async (stack) => {
    stack.broker = await startBroker({ mode: 'serverless' });
  });

  test('the chat example never reports connected and the broker counts the refused handshakes', async () => {
    const started = Date.now();
    const app = await s.app('chat', { serverId: 'refused', connections: 2, waitConnected: false });
    await eventually(async () => (await brokerMetric(s.broker, 'switchboard_server_handshakes_failed_total')) >= 1,
      'switchboard_server_handshakes_failed_total >= 1');
    // give it a few seconds in all to (wrongly) report its connections
    await sleep(Math.max(0, 3000 - (Date.now() - started)));
    const connected = app.stdoutLines.find((l) => l.startsWith('chat hub server connected'));
    assert.equal(connected, undefined, `the app must not connect to a Serverless hub:\n${app.describe()}`);
    assert.equal(app.exit, undefined, `the app must keep retrying, not exit:\n${app.describe()}`);
  });
});
