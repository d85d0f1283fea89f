import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// 9. Server-Sent Events and long polling with the official JS client, the transport forced with
//    `withUrl(url, { transport: signalR.HttpTransportType.ServerSentEvents | LongPolling })`:
//    * Serverless mode: REST sends of every kind, groups, a REST close with a reason, the
//      no-upstream error of a blocking invoke; MessagePack over long polling, and the client's
//      refusal of MessagePack over SSE (SSE carries Text only);
//    * Default mode through the example hub servers (negotiate via the app, the Azure redirect):
//      EchoReturn, SendMessage, rooms and the Counter stream;
//    * Serverless mode with an upstream (node:http here) answering `Add` with a Completion.
//
// Every client checks its log for "Selecting transport '<name>'." so that a silent fallback to
// another transport cannot pass. Negative checks ("X must not receive M") send a marker after M
// on a route the broker delivers in order, and require the marker as the client's next message.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import {
  startBroker, startApp, brokerConnectionString, Client, signalR, unique, withTimeout, eventually,
  received, waitReceived, DEBUG, WAIT_MS, CHAT_TARGETS, ECHO_TARGETS,
} from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { HttpTransportType } = signalR;
/** [label, transport, the name the client logs when it selects it] */
const TRANSPORTS = [
  ['SSE', HttpTransportType.ServerSentEvents, 'ServerSentEvents'],
  ['LongPolling', HttpTransportType.LongPolling, 'LongPolling'],
];
const TARGETS = ['message', 'marker'];
// The broker names hubs in their canonical (lower-case) form.
const noUpstream = (hub, target) => `Invocation failed: hub '${hub.toLowerCase()}' is in Serverless mode and no upstream is configured to handle '${target}'.`;

/** Throws unless `client` selected exactly the transport `name` (and nothing else). */
function assertTransport(client, name) {
  const selected = client.conn.e2eLogs.filter((l) => l.message.startsWith('Selecting transport '));
  assert.deepEqual(selected.map((l) => l.message), [`Selecting transport '${name}'.`], `${client.name} log:\n${client.logText()}`);
}

/** Stops every client (ignoring errors), collecting the first unexpected-target error. */
async function stopAll(clients) {
  const errors = [];
  for (const c of clients) {
    try { c.assertNoUnknownTargets(); } catch (e) { errors.push(e); }
  }
  await Promise.all(clients.map((c) => c.stop().catch(() => {})));
  clients.length = 0;
  return errors;
}

/** Fails with the broker's own report if it crashed or panicked, then stops it. */
async function stopBroker(broker) {
  if (!broker) return;
  let healthError;
  try { broker.assertHealthy(); } catch (e) { healthError = e; }
  await broker.stop();
  if (healthError) throw healthError;
}

/**
 * Like harness `connectViaApp`, with a forced transport: `withUrl(hubUrl?user=..)` without a
 * token factory (the app answers the Azure redirect), then start().
 */
async function connectViaAppWith(hubUrl, { transport, protocol = 'json', userId, targets = [], label } = {}) {
  const logs = [];
  const name = label ?? `${protocol}${userId ? `:${userId}` : ''}@${hubUrl}`;
  const logger = {
    log(level, message) {
      logs.push({ level, message });
      if (DEBUG) process.stderr.write(`[client ${name}] ${signalR.LogLevel[level]}: ${message}\n`);
    },
  };
  const url = userId === undefined ? hubUrl : `${hubUrl}?user=${encodeURIComponent(userId)}`;
  let builder = new signalR.HubConnectionBuilder().withUrl(url, { transport }).configureLogging(logger);
  if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  conn.e2eLogs = logs;
  conn.e2eName = name;
  const client = new Client(conn, targets);
  try {
    await withTimeout(conn.start(), WAIT_MS * 2, `start() of ${name} via ${url}`);
  } catch (err) {
    err.message = `${err.message}\nclient log:\n${client.logText()}`;
    throw err;
  }
  client.startedId = conn.connectionId;
  return client;
}

/**
 * Runs an official JS client in a separate Node process (so that it can die without a clean
 * stop): it connects to `hub` with `transportName` forced and prints its connection id.
 */
async function startClientProcess(broker, hub, transportName) {
  const token = broker.clientToken(hub);
  const code = `
    import * as signalR from '@microsoft/signalr';
    const conn = new signalR.HubConnectionBuilder()
      .withUrl(${JSON.stringify(`${broker.base}/client/?hub=${hub}`)}, {
        accessTokenFactory: () => ${JSON.stringify(token)},
        transport: signalR.HttpTransportType.${transportName},
      })
      .configureLogging(signalR.LogLevel.None)
      .build();
    await conn.start();
    process.stdout.write('connected ' + conn.connectionId + '\\n');
    setInterval(() => {}, 1000);
  `;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: HERE, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let out = '';
  let err = '';
  proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
  try {
    const connectionId = await withTimeout(new Promise((resolve, reject) => {
      proc.stdout.setEncoding('utf8').on('data', (c) => {
        out += c;
        const m = /connected (\S+)\n/.exec(out);
        if (m) resolve(m[1]);
      });
      exited.then(({ code, signal }) => reject(new Error(`the client process exited (code ${code}, signal ${signal}) before connecting:\n${out}\n${err}`)));
    }), WAIT_MS * 2, `the ${transportName} client process to connect`);
    return { process: proc, connectionId, exited };
  } catch (e) {
    proc.kill('SIGKILL');
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------

describe('Serverless mode over SSE and long polling', () => {
  let broker;
  const clients = [];
  before(async () => {
    broker = await startBroker({ mode: 'serverless' });
  });
  after(async () => {
    const errors = await stopAll(clients);
    await stopBroker(broker);
    if (errors.length) throw errors[0];
  });
  const connect = async (hub, opts) => {
    const c = await broker.connect(hub, { targets: TARGETS, ...opts });
    clients.push(c);
    return c;
  };

  for (const [label, transport, name] of TRANSPORTS) {
    test(`${label}: REST broadcast, user and connection sends arrive with the exact arguments`, async () => {
      const hub = unique(`sends_${label}`);
      const user = unique('user');
      const c = await connect(hub, { transport, userId: user, label: `${label}-client` });
      assertTransport(c, name);
      assert.equal(c.state, 'Connected');
      assert.equal((await broker.rest('HEAD', broker.apiPath(hub, 'connections', c.id))).status, 200);

      const rich = { text: 'héllo "quoted" \\ back\nslash', n: -1.25, list: [1, 'two', null, true], nested: { deep: [{}] } };
      await broker.broadcast(hub, 'message', ['broadcast', rich]);
      await c.expect('message', ['broadcast', rich]);
      await broker.sendToUser(hub, user, 'message', ['to user', 42]);
      await c.expect('message', ['to user', 42]);
      await broker.sendToConnection(hub, c.id, 'marker', ['to connection', [null, false]]);
      await c.expect('marker', ['to connection', [null, false]]);
      // several sends back to back all arrive, in order (long polling batches them)
      for (let i = 0; i < 5; i += 1) await broker.broadcast(hub, 'message', ['burst', i]);
      for (let i = 0; i < 5; i += 1) await c.expect('message', ['burst', i]);
    });

    test(`${label}: group add / send / remove`, async () => {
      const hub = unique(`groups_${label}`);
      const group = unique('group');
      const c = await connect(hub, { transport, label: `${label}-member` });
      assertTransport(c, name);
      await broker.addToGroup(hub, group, c.id);
      await broker.sendToGroup(hub, group, 'message', ['in group', 1]);
      await c.expect('message', ['in group', 1]);
      await broker.removeFromGroup(hub, group, c.id);
      await broker.sendToGroup(hub, group, 'message', ['after removal', 2]);
      const marker = unique('marker');
      await broker.sendToConnection(hub, c.id, 'marker', [marker]);
      await c.expect('marker', [marker], 'the marker (the group send after removal must not arrive)');
    });

    test(`${label}: DELETE connection with a reason closes the client with that reason`, async () => {
      const hub = unique(`close_${label}`);
      const victim = await connect(hub, { transport, label: `${label}-victim` });
      const bystander = await connect(hub, { transport, label: `${label}-bystander` });
      assertTransport(victim, name);
      const reason = `kicked over ${label}`;
      await broker.closeConnection(hub, victim.id, reason);
      const err = await victim.waitClosed();
      assert.ok(err instanceof Error, `onclose must receive an Error, got ${String(err)}`);
      assert.equal(err.message, `Server returned an error on close: ${reason}`);
      assert.equal(victim.state, 'Disconnected');
      await eventually(async () => (await broker.rest('HEAD', broker.apiPath(hub, 'connections', victim.id))).status === 404,
        `HEAD connections/${victim.id} to become 404 after the close`);
      // the other client is unaffected
      await broker.broadcast(hub, 'message', ['still here']);
      await bystander.expect('message', ['still here']);
      assert.equal(bystander.state, 'Connected');
    });

    test(`${label}: a blocking invoke without an upstream gets the no-upstream error; the client stays connected`, async () => {
      const hub = unique(`noup_${label}`);
      const c = await connect(hub, { transport, label: `${label}-invoker` });
      assertTransport(c, name);
      await assert.rejects(withTimeout(c.conn.invoke('Add', 1, 2), WAIT_MS, 'invoke Add'),
        (err) => { assert.equal(err.message, noUpstream(hub, 'Add')); return true; });
      // a non-blocking send is dropped silently
      await withTimeout(c.conn.send('Note', 'x'), WAIT_MS, 'send Note');
      await broker.sendToConnection(hub, c.id, 'marker', ['after invoke']);
      await c.expect('marker', ['after invoke']);
      assert.equal(c.state, 'Connected');
    });

    test(`${label}: stop() ends the connection at once (the client sends a Close message first)`, async () => {
      const hub = unique(`stop_${label}`);
      const c = await connect(hub, { transport, label: `${label}-stopper` });
      assertTransport(c, name);
      await c.stop();
      assert.equal(await c.waitClosed(), undefined, 'a clean stop() closes without an error');
      await eventually(async () => (await broker.rest('HEAD', broker.apiPath(hub, 'connections', c.id))).status === 404,
        `HEAD connections/${c.id} to become 404 within 3 s of stop()`, 3000);
    });
  }

  // The broker learns that an SSE client died (no Close message) when a write fails: with a
  // 1 s keep-alive within a few seconds (the HTTP layer does not read a streaming response's
  // socket, so it cannot tell earlier; with the default 15 s keep-alive it takes up to ~45 s).
  test('SSE: a client process that dies (no Close message) is disconnected at the next keep-alive', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-sse-'));
    const config = join(dir, 'switchboard.toml');
    writeFileSync(config, '[limits]\nkeep_alive_interval_secs = 1\n');
    const quick = await startBroker({ mode: 'serverless', extraArgs: ['--config', config] });
    const hub = unique('sse_killed');
    const child = await startClientProcess(quick, hub, 'ServerSentEvents');
    try {
      assert.equal((await quick.rest('HEAD', quick.apiPath(hub, 'connections', child.connectionId))).status, 200);
      child.process.kill('SIGKILL');
      await withTimeout(child.exited, WAIT_MS, 'the client process to exit after SIGKILL');
      await eventually(async () => (await quick.rest('HEAD', quick.apiPath(hub, 'connections', child.connectionId))).status === 404,
        `HEAD connections/${child.connectionId} to become 404 within 15 s of the client process dying`, 15000);
    } finally {
      child.process.kill('SIGKILL');
      await quick.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('MessagePack over long polling: broadcast and connection send received', async () => {
    const hub = unique('mp_lp');
    const c = await connect(hub, { transport: HttpTransportType.LongPolling, protocol: 'messagepack', label: 'mp-lp' });
    assertTransport(c, 'LongPolling');
    const payload = { bytes: 'binary-safe', n: 7, list: [1.5, 'x', null] };
    await broker.broadcast(hub, 'message', ['mp', payload]);
    await c.expect('message', ['mp', payload]);
    await broker.sendToConnection(hub, c.id, 'marker', ['mp marker']);
    await c.expect('marker', ['mp marker']);
    await assert.rejects(withTimeout(c.conn.invoke('Add', 1), WAIT_MS, 'invoke Add (msgpack)'),
      (err) => { assert.equal(err.message, noUpstream(hub, 'Add')); return true; });
  });

  test('MessagePack with SSE forced fails to start (SSE offers Text only)', async () => {
    const hub = unique('mp_sse');
    const conn = broker.buildClient(hub, { protocol: 'messagepack', transport: HttpTransportType.ServerSentEvents, label: 'mp-sse' });
    const err = await withTimeout(conn.start(), WAIT_MS * 2, 'start() of a MessagePack client with SSE forced').then(
      () => { conn.stop(); return undefined; },
      (e) => e,
    );
    assert.ok(err instanceof Error, 'start() must fail');
    assert.equal(err.message, "Unable to connect to the server with any of the available transports. WebSockets failed: Error: 'WebSockets' is disabled by the client. ServerSentEvents failed: Error: 'ServerSentEvents' does not support Binary. LongPolling failed: Error: 'LongPolling' is disabled by the client.");
    assert.equal(conn.state, 'Disconnected');
  });
});

// ---------------------------------------------------------------------------------------------

describe('Default mode over SSE and long polling: the example hub servers', () => {
  let broker;
  const apps = [];
  const clients = [];
  let chat;
  let echo;
  before(async () => {
    broker = await startBroker({ mode: 'default' });
    const cs = brokerConnectionString(broker);
    const started = await Promise.allSettled([
      startApp('chat', { connectionString: cs, serverId: 'chat-t', connections: 2 }),
      startApp('echo', { connectionString: cs, serverId: 'echo-t', connections: 2 }),
    ]);
    for (const s of started) if (s.status === 'fulfilled') apps.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    [chat, echo] = apps;
  });
  after(async () => {
    const errors = [];
    for (const a of apps) {
      try { a.assertHealthy(); } catch (e) { errors.push(e); }
    }
    errors.push(...await stopAll(clients));
    await Promise.all(apps.map((a) => a.stop()));
    await stopBroker(broker);
    if (errors.length) throw errors[0];
  });
  const client = async (app, opts) => {
    const c = await connectViaAppWith(app.hubUrl, opts);
    clients.push(c);
    return c;
  };

  for (const [label, transport, name] of TRANSPORTS) {
    test(`${label}: EchoReturn round trip; SendMessage reaches a WebSocket client and the sender`, async () => {
      const e = await client(echo, { transport, targets: ECHO_TARGETS, label: `${label}-echo` });
      assertTransport(e, name);
      const payload = { text: `hello over ${label}`, n: 1.5, list: [1, 'two', null, true], nested: { deep: ['x'] } };
      assert.deepEqual(await withTimeout(e.conn.invoke('EchoReturn', payload), WAIT_MS, 'EchoReturn'), payload);
      await withTimeout(e.conn.invoke('Echo', payload), WAIT_MS, 'Echo');
      await e.expect('echo', [payload]);

      const user = unique(`${label}_sender`);
      const s = await client(chat, { transport, userId: user, targets: CHAT_TARGETS, label: `${label}-sender` });
      assertTransport(s, name);
      const ws = await client(chat, { transport: HttpTransportType.WebSockets, userId: unique('ws_watcher'), targets: CHAT_TARGETS, label: 'ws-watcher' });
      const text = unique(`via ${label}`);
      await withTimeout(s.conn.invoke('SendMessage', user, text), WAIT_MS, 'SendMessage');
      assert.deepEqual(await waitReceived(s, 'newMessage', (_u, t) => t === text, 'its own message'), [user, text]);
      assert.deepEqual(await waitReceived(ws, 'newMessage', (_u, t) => t === text, 'the message'), [user, text]);
      // and the other way: a WebSocket client's message reaches the SSE / LP client
      const back = unique('from ws');
      await withTimeout(ws.conn.invoke('SendMessage', 'ws', back), WAIT_MS, 'SendMessage from ws');
      assert.deepEqual(await waitReceived(s, 'newMessage', (_u, t) => t === back, 'the WebSocket client\'s message'), ['ws', back]);
    });

    test(`${label}: rooms join / send / leave`, async () => {
      const room = unique('room');
      const [alice, bob] = [unique('alice'), unique('bob')];
      const a = await client(chat, { transport, userId: alice, targets: CHAT_TARGETS, label: `${label}-alice` });
      const b = await client(chat, { transport, userId: bob, targets: CHAT_TARGETS, label: `${label}-bob` });
      assertTransport(a, name);
      await withTimeout(a.conn.invoke('JoinRoom', room), WAIT_MS, 'alice JoinRoom');
      await withTimeout(b.conn.invoke('JoinRoom', room), WAIT_MS, 'bob JoinRoom');
      await waitReceived(a, 'roomJoined', (r, who) => r === room && who === bob, `roomJoined(${room}, bob)`);
      await withTimeout(a.conn.invoke('SendToRoom', room, alice, 'hello room'), WAIT_MS, 'SendToRoom');
      assert.deepEqual(await waitReceived(b, 'roomMessage', (r) => r === room, 'the room message'), [room, alice, 'hello room']);

      await withTimeout(b.conn.invoke('LeaveRoom', room), WAIT_MS, 'bob LeaveRoom');
      await waitReceived(a, 'roomLeft', (r, who) => r === room && who === bob, `roomLeft(${room}, bob)`);
      await withTimeout(a.conn.invoke('SendToRoom', room, alice, 'after bob left'), WAIT_MS, 'SendToRoom after leave');
      await waitReceived(a, 'roomMessage', (_r, _u, t) => t === 'after bob left', 'the second room message');
      // a marker from alice's connection (sent after the room message) reaches bob: the room
      // message never will
      const marker = unique('m');
      await withTimeout(a.conn.invoke('SendToUser', bob, marker), WAIT_MS, 'SendToUser');
      await waitReceived(b, 'privateMessage', (_f, t) => t === marker, 'the marker');
      assert.ok(!received(b, 'roomMessage', (_r, _u, t) => t === 'after bob left'), `bob got a room message after leaving: ${JSON.stringify(b.received)}`);
    });

    test(`${label}: server-to-client stream Counter(5, 10) yields 0..4 then completes`, async () => {
      const c = await client(chat, { transport, userId: unique(`${label}_stream`), targets: CHAT_TARGETS, label: `${label}-streamer` });
      assertTransport(c, name);
      const items = await withTimeout(new Promise((resolve, reject) => {
        const got = [];
        c.conn.stream('Counter', 5, 10).subscribe({ next: (n) => got.push(n), complete: () => resolve(got), error: reject });
      }), WAIT_MS, 'the Counter stream to complete');
      assert.deepEqual(items, [0, 1, 2, 3, 4]);
    });
  }

  test('LongPolling + MessagePack: EchoReturn and the Counter stream', async () => {
    const e = await client(echo, { transport: HttpTransportType.LongPolling, protocol: 'messagepack', targets: ECHO_TARGETS, label: 'lp-mp-echo' });
    assertTransport(e, 'LongPolling');
    const payload = { text: 'msgpack over long polling', n: 3, list: [1, null, 'z'] };
    assert.deepEqual(await withTimeout(e.conn.invoke('EchoReturn', payload), WAIT_MS, 'EchoReturn'), payload);
    const c = await client(chat, { transport: HttpTransportType.LongPolling, protocol: 'messagepack', userId: unique('lp_mp'), targets: CHAT_TARGETS, label: 'lp-mp-chat' });
    const items = await withTimeout(new Promise((resolve, reject) => {
      const got = [];
      c.conn.stream('Counter', 3, 0).subscribe({ next: (n) => got.push(n), complete: () => resolve(got), error: reject });
    }), WAIT_MS, 'the Counter stream to complete');
    assert.deepEqual(items, [0, 1, 2]);
  });
});

// ---------------------------------------------------------------------------------------------

/** VarInt length prefix of the MessagePack hub protocol framing. */
function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

const msgpack = new MessagePackHubProtocol();
const nullLogger = { log() {} };

/** The Invocation in an upstream body (unframed, in the client's protocol). */
function upstreamInvocation(contentType, body) {
  if (contentType === 'application/json') {
    assert.ok(!body.includes(0x1e), `a JSON upstream body is unframed: ${JSON.stringify(body.toString())}`);
    return JSON.parse(body.toString('utf8'));
  }
  assert.equal(contentType, 'application/x-msgpack');
  const framed = Buffer.concat([varint(body.length), body]);
  const [message] = msgpack.parseMessages(framed.buffer.slice(framed.byteOffset, framed.byteOffset + framed.length), nullLogger);
  return message;
}

/** A framed Completion with `result` in the protocol of `contentType`. */
function framedCompletion(contentType, invocationId, result) {
  if (contentType === 'application/json') return Buffer.from(`${JSON.stringify({ type: 3, invocationId, result })}\x1e`);
  return Buffer.from(msgpack.writeMessage({ type: 3, invocationId, result, headers: {} }));
}

/**
 * A node:http upstream on 127.0.0.1:0: `/{hub}/api/{category}/{event}`; `connections/*` → 200;
 * `messages/Add` → 200 with the framed Completion of `a + b`; anything else → 404. Records the
 * invocations it answered.
 */
async function startAddUpstream() {
  const invocations = [];
  const sockets = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        const [, , , category, event] = decodeURI(new URL(req.url, 'http://x').pathname).split('/');
        if (category === 'connections') {
          res.writeHead(200).end();
          return;
        }
        const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim();
        const inv = upstreamInvocation(contentType, Buffer.concat(chunks));
        invocations.push({ event, contentType, inv });
        if (category === 'messages' && event === 'Add') {
          res.writeHead(200, { 'Content-Type': contentType }).end(framedCompletion(contentType, inv.invocationId, inv.arguments[0] + inv.arguments[1]));
          return;
        }
        res.writeHead(404).end();
      } catch (err) {
        invocations.push({ error: String(err) });
        res.writeHead(500).end();
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    template: `${base}/{hub}/api/{category}/{event}`,
    invocations,
    close: () => withTimeout(new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }), WAIT_MS, 'the upstream server to close'),
  };
}

describe('Serverless mode with an upstream over SSE and long polling', () => {
  let broker;
  let upstream;
  const clients = [];
  before(async () => {
    upstream = await startAddUpstream();
    broker = await startBroker({ mode: 'serverless', extraArgs: ['--upstream', upstream.template] });
  });
  after(async () => {
    const errors = await stopAll(clients);
    await stopBroker(broker);
    await upstream?.close();
    if (errors.length) throw errors[0];
  });

  const cases = [
    ...TRANSPORTS.map(([label, transport, name]) => ({ label, transport, name, protocol: 'json' })),
    { label: 'LongPolling', transport: HttpTransportType.LongPolling, name: 'LongPolling', protocol: 'messagepack' },
  ];
  for (const { label, transport, name, protocol } of cases) {
    test(`${label} (${protocol}): invoke Add goes to the upstream and returns its result`, async () => {
      const hub = unique(`up_${label}_${protocol}`);
      const c = await broker.connect(hub, { transport, protocol, targets: TARGETS, label: `${label}-${protocol}-adder` });
      clients.push(c);
      assertTransport(c, name);
      const before = upstream.invocations.length;
      assert.equal(await withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'invoke Add'), 5);
      assert.equal(await withTimeout(c.conn.invoke('Add', 40.5, 1.5), WAIT_MS, 'invoke Add'), 42);
      const seen = upstream.invocations.slice(before);
      assert.equal(seen.length, 2, `upstream invocations: ${JSON.stringify(seen)}`);
      const contentType = protocol === 'json' ? 'application/json' : 'application/x-msgpack';
      for (const [i, args] of [[0, [2, 3]], [1, [40.5, 1.5]]]) {
        assert.equal(seen[i].contentType, contentType);
        assert.equal(seen[i].inv.type, 1);
        assert.equal(seen[i].inv.target, 'Add');
        assert.deepEqual(seen[i].inv.arguments, args);
        assert.equal(typeof seen[i].inv.invocationId, 'string');
      }
      // the connection is still usable after the upstream calls
      await broker.sendToConnection(hub, c.id, 'marker', ['after add']);
      await c.expect('marker', ['after add']);
    });
  }
});
