// Stateful reconnect (docs/protocol.md#stateful-reconnect) with the official JS client's
// `.withStatefulReconnect()` over WebSockets, JSON and MessagePack.
//
// The clients reach the broker THROUGH A TCP PROXY written here (node:net on 127.0.0.1:0
// forwarding to the broker) that can reset every socket it carries and refuse new connections
// for a while; REST calls and the upstream go straight to the broker. A cut is an ungraceful
// loss (TCP reset, no WebSocket close frame): the client opens a new WebSocket to the same URL
// at once (no negotiate, no handshake), both sides send Sequence and replay what the other has
// not acknowledged, and duplicates are dropped on both sides.
//
// * server → client: 300 numbered REST broadcasts with two cuts mid-stream arrive exactly once,
//   in order, and the client stays Connected; switchboard_stateful_reconnects_total counts them;
// * client → server: 200 numbered `send`s with two cuts reach the recording upstream exactly
//   once, in order;
// * after the window (`limits.reconnect_window_secs = 1`): a client that cannot come back closes,
//   its connection disappears from the broker, and another client is unaffected;
// * Default mode, a client routed to the chat example hub server: 150 numbered chat messages
//   (client → hub server → broadcast back) across two cuts arrive exactly once, in order, at the
//   stateful client and at a watcher; the hub server sees no disconnect (no `left`, no second
//   `joined`, WhoAmI gives the same connection id) — until the window expires (`left`);
// * negotiate answers `useStatefulReconnect: true` only when asked, in every mode.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import {
  startBroker, unique, withTimeout, eventually, brokerMetric, signalR, DEBUG, WAIT_MS, PROTOCOLS,
  startApp, brokerConnectionString,
} from './harness.mjs';
import { startUpstream, decodeUnframedMsgpack, tempDir, writeFile } from './harness-extra.mjs';

const RECONNECTS = 'switchboard_stateful_reconnects_total';
/** Time for a whole numbered stream (hundreds of messages and two reconnects) to arrive. */
const STREAM_MS = 20_000;

const range = (n) => Array.from({ length: n }, (_, i) => i);

// ---------------------------------------------------------------------------
// the TCP proxy

/** A TCP forwarder to `127.0.0.1:<targetPort>` that can cut every connection it carries. */
class TcpProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.refusing = false;
    this.accepted = 0;
    this.refused = 0;
    this.server = net.createServer((client) => this._onConnection(client));
  }

  start() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        this.base = `http://127.0.0.1:${this.port}`;
        resolve(this);
      });
    });
  }

  _onConnection(client) {
    if (this.refusing) {
      // accepted by the kernel, then dropped at once: the client's connect fails
      this.refused += 1;
      reset(client);
      return;
    }
    this.accepted += 1;
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    const end = () => {
      if (!this.pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Resets both sides of every carried connection; returns how many there were. */
  cutAll() {
    const pairs = [...this.pairs];
    this.pairs.clear();
    for (const { client, upstream } of pairs) {
      reset(client);
      reset(upstream);
    }
    return pairs.length;
  }

  /** Refuses every new connection for `ms`. */
  refuseFor(ms) {
    this.refusing = true;
    clearTimeout(this.refuseTimer);
    this.refuseTimer = setTimeout(() => { this.refusing = false; }, ms);
  }

  /** Accepts new connections again. */
  stopRefusing() {
    clearTimeout(this.refuseTimer);
    this.refusing = false;
  }

  async close() {
    clearTimeout(this.refuseTimer);
    this.cutAll();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** An abrupt loss: TCP reset where available, else a plain destroy (never a WebSocket close). */
function reset(socket) {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) {
    try {
      socket.resetAndDestroy();
      return;
    } catch { /* not connected yet: destroy below */ }
  }
  socket.destroy();
}

// ---------------------------------------------------------------------------
// clients

/**
 * An official HubConnection to `${baseUrl}/client/?hub=<hub>` (WebSockets only), stateful unless
 * `stateful: false`, with a log kept for failure messages. Handlers are registered by the test
 * before `start()`.
 */
function makeClient(broker, baseUrl, hub, { protocol = 'json', stateful = true, label } = {}) {
  const logs = [];
  const name = label ?? `${stateful ? 'stateful ' : ''}${protocol}@${hub}`;
  const logger = {
    log(level, message) {
      if (level < signalR.LogLevel.Debug) return; // no per-message traces
      logs.push(`${signalR.LogLevel[level]}: ${message}`);
      if (DEBUG) process.stderr.write(`[client ${name}] ${signalR.LogLevel[level]}: ${message}\n`);
    },
  };
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${baseUrl}/client/?hub=${encodeURIComponent(hub)}`, {
      accessTokenFactory: () => broker.clientToken(hub),
      transport: signalR.HttpTransportType.WebSockets,
    })
    .configureLogging(logger);
  if (stateful) builder = builder.withStatefulReconnect();
  if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  const c = {
    conn,
    name,
    logs,
    isClosed: false,
    closeError: undefined,
    logText: () => logs.map((l) => `  ${l}`).join('\n'),
    describe: () => `${name} (id ${c.id}, state ${conn.state}${c.isClosed ? `, closed: ${c.closeError?.message}` : ''})`,
  };
  c.closed = new Promise((resolve) => {
    conn.onclose((err) => {
      c.isClosed = true;
      c.closeError = err;
      resolve(err);
    });
  });
  c.start = async () => {
    try {
      await withTimeout(conn.start(), WAIT_MS * 2, `start() of ${name}`);
    } catch (err) {
      err.message = `${err.message}\nclient log:\n${c.logText()}`;
      throw err;
    }
    c.id = conn.connectionId;
  };
  c.stop = async () => {
    try { await withTimeout(conn.stop(), 3000, `${name}.stop()`); } catch { /* already gone */ }
  };
  return c;
}

async function reconnects(broker) {
  const v = await brokerMetric(broker, RECONNECTS);
  assert.equal(typeof v, 'number', `GET /metrics has no ${RECONNECTS} line`);
  return v;
}

/** Before a second cut: the previous cut's reconnect must be complete (else it would be cut too). */
async function waitReconnects(broker, atLeast, c) {
  await eventually(async () => (await reconnects(broker)) >= atLeast,
    () => `${RECONNECTS} >= ${atLeast} for ${c.describe()}\nclient log:\n${c.logText()}`, WAIT_MS * 2);
}

/** Starts a broker (plus its proxy) for a describe block; stops both after, failing on a panic. */
function useProxiedBroker(options = () => ({})) {
  const ctx = {};
  before(async () => {
    ctx.broker = await startBroker(options());
    ctx.proxy = await new TcpProxy(ctx.broker.port).start();
  });
  after(async () => {
    await ctx.proxy?.close();
    const b = ctx.broker;
    if (!b) return;
    let err;
    try { b.assertHealthy(); } catch (e) { err = e; }
    await b.stop();
    if (err) throw err;
  });
  return ctx;
}

// ---------------------------------------------------------------------------

describe('stateful reconnect, server → client: REST broadcasts across two cuts', () => {
  const ctx = useProxiedBroker();

  for (const protocol of PROTOCOLS) {
    test(`300 numbered broadcasts arrive exactly once, in order; the client stays Connected (${protocol})`, async () => {
      const { broker, proxy } = ctx;
      const hub = unique('s2c');
      const c = makeClient(broker, proxy.base, hub, { protocol });
      const got = [];
      const markers = [];
      c.conn.on('num', (n) => { got.push(n); });
      c.conn.on('marker', (m) => { markers.push(m); });
      try {
        await c.start();
        const before0 = await reconnects(broker);
        const cuts = [];
        for (let i = 0; i < 300; i += 1) {
          // the first reconnect must be complete before the second cut (else that would cut
          // the reconnect itself); checked well before it, so the second cut is mid-stream too
          if (i === 150) await waitReconnects(broker, before0 + 1, c);
          if (i === 100 || i === 200) {
            cuts.push({ beforeBroadcast: i, receivedSoFar: got.length, sockets: proxy.cutAll() });
          }
          await broker.broadcast(hub, 'num', [i]);
        }
        await eventually(() => got.length >= 300 || c.isClosed,
          () => `${c.describe()} to receive 300 numbers (has ${got.length}); cuts: ${JSON.stringify(cuts)}\nclient log:\n${c.logText()}`,
          STREAM_MS);
        // a marker sent last proves nothing else (no late duplicate) is on its way
        await broker.broadcast(hub, 'marker', ['end']);
        await eventually(() => markers.length === 1 || c.isClosed,
          () => `${c.describe()} to receive the end marker`, WAIT_MS);
        assert.equal(c.isClosed, false, `${c.describe()} closed\nclient log:\n${c.logText()}`);
        assert.deepEqual(got, range(300), `exactly 0..299 in order (cuts: ${JSON.stringify(cuts)})`);
        assert.deepEqual(markers, ['end']);
        assert.equal(c.conn.state, signalR.HubConnectionState.Connected);
        for (const cut of cuts) assert.ok(cut.sockets >= 1, `the proxy carried the client's socket at each cut: ${JSON.stringify(cuts)}`);
        const after = await reconnects(broker);
        assert.ok(after >= before0 + 2, `${RECONNECTS} went from ${before0} to ${after}, expected at least 2 more`);
        assert.ok(after >= 2, `${RECONNECTS} is ${after}`);
      } finally {
        await c.stop();
      }
    });
  }
});

describe('stateful reconnect, client → server: sends to the upstream across two cuts', () => {
  let upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  const ctx = useProxiedBroker(() => ({ extraArgs: ['--upstream', upstream.template] }));
  after(async () => {
    await upstream?.close();
    upstream?.assertHealthy();
  });

  /** The first argument of a recorded upstream invocation. */
  function firstArg(protocol, rec) {
    if (protocol === 'json') return JSON.parse(rec.text).arguments[0];
    return decodeUnframedMsgpack(rec.body).message.arguments[0];
  }

  for (const protocol of PROTOCOLS) {
    test(`200 numbered sends reach the upstream exactly once, in order (${protocol})`, async () => {
      const { broker, proxy } = ctx;
      const hub = unique('c2s');
      upstream.handle(hub, () => ({ status: 200 }));
      const c = makeClient(broker, proxy.base, hub, { protocol });
      try {
        await c.start();
        const before0 = await reconnects(broker);
        const cuts = [];
        for (let i = 0; i < 200; i += 1) {
          if (i === 105) await waitReconnects(broker, before0 + 1, c);
          if (i === 70 || i === 140) {
            cuts.push({ beforeSend: i, sockets: proxy.cutAll() });
          }
          await withTimeout(c.conn.send('Num', i), WAIT_MS, `${c.describe()}: send('Num', ${i})`);
        }
        // per connection the broker calls the upstream one message at a time, in order: once
        // `Done` arrived, every earlier message has
        await withTimeout(c.conn.send('Done'), WAIT_MS, `${c.describe()}: send('Done')`);
        await upstream.waitEvent(c.id, 'Done', STREAM_MS);
        const reqs = upstream.forConnection(c.id).filter((r) => r.category === 'messages');
        const nums = reqs.filter((r) => r.event === 'Num').map((r) => firstArg(protocol, r));
        assert.deepEqual(nums, range(200), `the upstream got exactly 0..199 in order (cuts: ${JSON.stringify(cuts)})`);
        assert.deepEqual(reqs.map((r) => r.event).filter((e) => e !== 'Num'), ['Done']);
        assert.equal(c.isClosed, false, `${c.describe()} closed\nclient log:\n${c.logText()}`);
        assert.equal(c.conn.state, signalR.HubConnectionState.Connected);
        for (const cut of cuts) assert.ok(cut.sockets >= 1, `the proxy carried the client's socket at each cut: ${JSON.stringify(cuts)}`);
        const after = await reconnects(broker);
        assert.ok(after >= before0 + 2, `${RECONNECTS} went from ${before0} to ${after}, expected at least 2 more`);
      } finally {
        await c.stop();
      }
    });
  }
});

describe('stateful reconnect after the window (limits.reconnect_window_secs = 1)', () => {
  let tmp;
  before(() => {
    tmp = tempDir();
  });
  const ctx = useProxiedBroker(() => ({
    extraArgs: ['--config', writeFile(tmp.file('window.toml'), '[limits]\nreconnect_window_secs = 1\n')],
  }));
  after(() => tmp?.cleanup());

  for (const protocol of PROTOCOLS) {
    test(`a client that cannot come back closes; its connection is gone; another client is unaffected (${protocol})`, async () => {
      const { broker, proxy } = ctx;
      const hub = unique('window');
      const lost = makeClient(broker, proxy.base, hub, { protocol, label: `lost ${protocol}` });
      // never behind the proxy: it never loses its connection
      const other = makeClient(broker, broker.base, hub, { protocol, label: `direct ${protocol}` });
      const lostGot = [];
      const otherGot = [];
      lost.conn.on('num', (n) => { lostGot.push(n); });
      other.conn.on('num', (n) => { otherGot.push(n); });
      try {
        await lost.start();
        await other.start();
        await broker.broadcast(hub, 'num', [1]);
        await eventually(() => lostGot.length === 1 && otherGot.length === 1,
          () => `both clients to receive 1 (lost: ${JSON.stringify(lostGot)}, other: ${JSON.stringify(otherGot)})`);

        proxy.refuseFor(3000);
        assert.ok(proxy.cutAll() >= 1, 'the proxy carried the lost client\'s socket');
        const err = await withTimeout(lost.closed, WAIT_MS, `${lost.describe()} to close (onclose) after its stateful reconnect failed`);
        assert.ok(proxy.refused >= 1, 'the client tried to reconnect through the proxy and was refused');
        assert.equal(lost.conn.state, signalR.HubConnectionState.Disconnected);
        assert.ok(err instanceof Error, `onclose got an error: ${err}`);

        // the broker keeps it for the 1 s window, then drops it
        await eventually(async () => (await broker.headStatus(hub, 'connections', lost.id)) === 404,
          `HEAD connections/${lost.id} to answer 404 once the 1 s reconnect window is over`, 6000);

        await broker.broadcast(hub, 'num', [2]);
        await eventually(() => otherGot.length === 2,
          () => `${other.describe()} to receive 2 (has ${JSON.stringify(otherGot)})`);
        assert.deepEqual(otherGot, [1, 2]);
        assert.deepEqual(lostGot, [1]);
        assert.equal(other.isClosed, false);
        assert.equal(other.conn.state, signalR.HubConnectionState.Connected);
        assert.equal(await broker.headStatus(hub, 'connections', other.id), 200);
      } finally {
        proxy.stopRefusing();
        await lost.stop();
        await other.stop();
      }
    });
  }
});

describe('stateful reconnect in Default mode: a client routed to the chat hub server', () => {
  let tmp;
  let chat;
  before(() => {
    tmp = tempDir();
  });
  // a 2 s window, so that the expiry test is quick; the cuts below come back within it
  const ctx = useProxiedBroker(() => ({
    mode: 'default',
    extraArgs: ['--config', writeFile(tmp.file('window.toml'), '[limits]\nreconnect_window_secs = 2\n')],
  }));
  before(async () => {
    chat = await startApp('chat', { connectionString: brokerConnectionString(ctx.broker), serverId: 'chat-sr' });
  });
  after(async () => {
    if (chat) {
      let err;
      try { chat.assertHealthy(); } catch (e) { err = e; }
      await chat.stop();
      if (err) throw err;
    }
    tmp?.cleanup();
  });

  /** A direct (never cut) client of the chat hub that records who joined and left. */
  function watcher(broker, protocol) {
    const w = makeClient(broker, broker.base, 'chat', { protocol, stateful: false, label: `watcher ${protocol}` });
    w.joined = [];
    w.left = [];
    w.messages = [];
    w.conn.on('joined', (who) => { w.joined.push(who); });
    w.conn.on('left', (who) => { w.left.push(who); });
    w.conn.on('newMessage', (user, text) => { w.messages.push([user, text]); });
    return w;
  }

  for (const protocol of PROTOCOLS) {
    test(`150 chat messages across two cuts arrive once, in order; the hub server sees no disconnect (${protocol})`, async () => {
      const { broker, proxy } = ctx;
      const w = watcher(broker, protocol);
      const c = makeClient(broker, proxy.base, 'chat', { protocol });
      const sender = unique('sender');
      const got = [];
      c.conn.on('newMessage', (user, text) => { if (user === sender) got.push(Number(text)); });
      c.conn.on('joined', () => {});
      c.conn.on('left', () => {});
      try {
        await w.start();
        await c.start();
        await eventually(() => w.joined.includes(c.id), () => `the watcher to see ${c.id} join (joined: ${JSON.stringify(w.joined)})`);
        const before0 = await reconnects(broker);
        const cuts = [];
        for (let i = 0; i < 150; i += 1) {
          if (i === 75) await waitReconnects(broker, before0 + 1, c);
          if (i === 50 || i === 100) cuts.push({ beforeSend: i, sockets: proxy.cutAll() });
          // invoke, not send: the hub server runs a client's invocations one at a time and closes a
          // client that queues more than its inbox holds (the SDK's policy), so the test waits
          // for each completion — which, across a cut, arrives through the replay
          await withTimeout(c.conn.invoke('SendMessage', sender, String(i)), WAIT_MS * 2, `${c.describe()}: invoke #${i}`);
        }
        const watched = () => w.messages.filter(([user]) => user === sender).map(([, text]) => Number(text));
        await eventually(() => (got.length >= 150 && watched().length >= 150) || c.isClosed,
          () => `150 messages at both (client ${got.length}, watcher ${watched().length}); cuts ${JSON.stringify(cuts)}\nclient log:\n${c.logText()}`,
          STREAM_MS);
        // the same logical connection on the hub server
        const me = await withTimeout(c.conn.invoke('WhoAmI'), WAIT_MS, `${c.describe()}: WhoAmI`);
        assert.equal(me.connectionId, c.id);
        assert.equal(me.serverId, 'chat-sr');
        assert.equal(c.isClosed, false, `${c.describe()} closed\nclient log:\n${c.logText()}`);
        assert.deepEqual(got, range(150), `the sender got 0..149 once, in order (cuts ${JSON.stringify(cuts)})`);
        assert.deepEqual(watched(), range(150), 'the watcher got 0..149 once, in order');
        assert.deepEqual(w.left, [], 'the hub server announced no departure');
        assert.deepEqual(w.joined.filter((who) => who === c.id), [c.id], 'the hub server saw one connect');
        for (const cut of cuts) assert.ok(cut.sockets >= 1, `the proxy carried the client's socket at each cut: ${JSON.stringify(cuts)}`);
        assert.ok((await reconnects(broker)) >= before0 + 2);

        // a proper stop is a disconnect the hub server sees
        await c.stop();
        await eventually(() => w.left.includes(c.id), () => `the watcher to see ${c.id} leave (left: ${JSON.stringify(w.left)})`);
      } finally {
        await c.stop();
        await w.stop();
      }
    });
  }

  test('a client that does not come back within the window: the hub server sees the disconnect then', async () => {
    const { broker, proxy } = ctx;
    const w = watcher(broker, 'json');
    const c = makeClient(broker, proxy.base, 'chat', { label: 'lost' });
    c.conn.on('joined', () => {});
    c.conn.on('left', () => {});
    try {
      await w.start();
      await c.start();
      await eventually(() => w.joined.includes(c.id), () => `the watcher to see ${c.id} join`);
      proxy.refuseFor(6000);
      const lostAt = Date.now();
      assert.ok(proxy.cutAll() >= 1, 'the proxy carried the lost client\'s socket');
      await eventually(() => w.left.includes(c.id), () => `the watcher to see ${c.id} leave once the 2 s window is over (left: ${JSON.stringify(w.left)})`, 8000);
      const after = Date.now() - lostAt;
      assert.ok(after >= 1500, `the hub server saw the disconnect ${after} ms after the loss, inside the 2 s window`);
      assert.equal(await broker.headStatus('chat', 'connections', c.id), 404);
    } finally {
      proxy.stopRefusing();
      await c.stop();
      await w.stop();
    }
  });
});

describe('negotiate: useStatefulReconnect', () => {
  const ctx = useProxiedBroker();

  async function negotiate(broker, hub, ask) {
    const url = `${broker.base}/client/negotiate?hub=${encodeURIComponent(hub)}&negotiateVersion=1${ask ? '&useStatefulReconnect=true' : ''}`;
    const res = await withTimeout(fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${broker.clientToken(hub)}` } }), WAIT_MS, `POST ${url}`);
    const text = await withTimeout(res.text(), WAIT_MS, `body of POST ${url}`);
    assert.equal(res.status, 200, `POST ${url} answered ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  test('Serverless: true only when asked; a client that did not ask gets no such property', async () => {
    const hub = unique('neg');
    const asked = await negotiate(ctx.broker, hub, true);
    assert.equal(asked.useStatefulReconnect, true, JSON.stringify(asked));
    const notAsked = await negotiate(ctx.broker, hub, false);
    assert.ok(!Object.hasOwn(notAsked, 'useStatefulReconnect'), `no useStatefulReconnect property expected: ${JSON.stringify(notAsked)}`);
  });

  for (const protocol of PROTOCOLS) {
    test(`official clients with and without withStatefulReconnect() both connect and receive (${protocol})`, async () => {
      // a client that did not ask refuses a server that offers it anyway
      // ("Client didn't negotiate Stateful Reconnect but the server did.")
      const { broker } = ctx;
      const hub = unique('neg');
      const plain = makeClient(broker, broker.base, hub, { protocol, stateful: false });
      const stateful = makeClient(broker, broker.base, hub, { protocol });
      const got = { plain: [], stateful: [] };
      plain.conn.on('num', (n) => { got.plain.push(n); });
      stateful.conn.on('num', (n) => { got.stateful.push(n); });
      try {
        await plain.start();
        await stateful.start();
        await broker.broadcast(hub, 'num', [7]);
        await eventually(() => got.plain.length === 1 && got.stateful.length === 1,
          () => `both clients to receive 7: ${JSON.stringify(got)}`);
        assert.deepEqual(got, { plain: [7], stateful: [7] });
      } finally {
        await plain.stop();
        await stateful.stop();
      }
    });
  }

  describe('Default mode', () => {
    let broker;
    before(async () => {
      broker = await startBroker({ mode: 'default' });
    });
    after(async () => {
      if (!broker) return;
      let err;
      try { broker.assertHealthy(); } catch (e) { err = e; }
      await broker.stop();
      if (err) throw err;
    });

    test('offered when asked (the broker keeps the replay buffer for routed clients too)', async () => {
      const hub = unique('neg');
      const asked = await negotiate(broker, hub, true);
      assert.equal(asked.useStatefulReconnect, true, JSON.stringify(asked));
      const notAsked = await negotiate(broker, hub, false);
      assert.ok(!Object.hasOwn(notAsked, 'useStatefulReconnect'), JSON.stringify(notAsked));
    });
  });
});
