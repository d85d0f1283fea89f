// Cluster mode with the official clients: three `switchboard serve --cluster` processes on a
// redis-server this file starts on a free port; clients (JSON and MessagePack) on nodes 1 and 2,
// every REST call sent to node 3, which holds none of them. Then node 2 is killed with SIGKILL
// mid-traffic, and Redis is stopped and started again. Then three nodes in Default mode with the
// echo example's hub server connected to one of them: clients at the other two are served by it.
//
// Needs `redis-server` on PATH (apt-get install -y redis-server): the suite fails without it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { startBroker, startApp, brokerConnectionString, randomAccessKey, unique, eventually, PROTOCOLS, ECHO_TARGETS, sleep } from './harness.mjs';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

class Redis {
  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
  }

  async start() {
    const found = spawnSync('redis-server', ['--version']);
    if (found.error) {
      throw new Error('redis-server not found: install it with `apt-get install -y redis-server` (Debian) — the cluster tests need a real Redis');
    }
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    this.exited = new Promise((resolve) => this.child.on('exit', resolve));
    await eventually(() => new Promise((resolve) => {
      const s = net.connect(this.port, '127.0.0.1');
      s.once('connect', () => { s.end(); resolve(true); });
      s.once('error', () => resolve(false));
    }), `redis-server listening on ${this.port}`);
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function metric(broker, name) {
  const res = await fetch(`${broker.base}/metrics`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no metric ${name} at ${broker.base}`);
  return Number(line.split(' ')[1]);
}

async function readyz(broker) {
  return (await fetch(`${broker.base}/readyz`)).status;
}

describe('cluster (three nodes on Redis)', () => {
  const accessKey = randomAccessKey();
  let redis;
  const nodes = [];

  before(async () => {
    redis = new Redis(await freePort());
    await redis.start();
    for (const id of ['n1', 'n2', 'n3']) {
      nodes.push(await startBroker({ accessKey, extraArgs: ['--cluster', redis.url, '--node-id', id] }));
    }
    for (const n of nodes) {
      await eventually(async () => (await metric(n, 'switchboard_cluster_nodes')) === 2, `${n.base} sees the two other nodes`, 15000);
    }
  });

  after(async () => {
    for (const n of nodes) {
      if (!n.stopping && !n.exit) n.assertHealthy();
      await n.stop();
    }
    await redis?.stop();
  });

  for (const protocol of PROTOCOLS) {
    const other = protocol === 'json' ? 'messagepack' : 'json';

    test(`REST at a third node reaches clients on the other two: all, user, group, connection (${protocol})`, async () => {
      const [n1, n2, n3] = nodes;
      const hub = unique('cl');
      const group = unique('room');
      const alice1 = await n1.connect(hub, { protocol, userId: 'alice', label: 'alice@n1' });
      const alice2 = await n2.connect(hub, { protocol: other, userId: 'alice', label: 'alice@n2' });
      const bob2 = await n2.connect(hub, { protocol, userId: 'bob', label: 'bob@n2' });

      await n3.broadcast(hub, 'message', ['to all', { n: 1 }]);
      for (const c of [alice1, alice2, bob2]) await c.expect('message', ['to all', { n: 1 }]);

      await n3.sendToUser(hub, 'alice', 'message', ['to alice']);
      await alice1.expect('message', ['to alice']);
      await alice2.expect('message', ['to alice']);
      await n3.sendToConnection(hub, bob2.id, 'marker', ['bob only']);
      await bob2.expect('marker', ['bob only'], 'the marker (the user send must not reach bob)');

      await n3.addToGroup(hub, group, alice1.id);
      await n3.addToGroup(hub, group, bob2.id);
      await n3.sendToGroup(hub, group, 'message', ['to the group']);
      await alice1.expect('message', ['to the group']);
      await bob2.expect('message', ['to the group']);
      await n3.sendToConnection(hub, alice2.id, 'marker', ['a2']);
      await alice2.expect('marker', ['a2'], 'the marker (alice@n2 is not in the group)');

      await n3.removeFromGroup(hub, group, alice1.id);
      await n3.sendToGroup(hub, group, 'message', ['after removal']);
      await bob2.expect('message', ['after removal']);
      await n3.sendToConnection(hub, alice1.id, 'marker', ['a1']);
      await alice1.expect('marker', ['a1'], 'the marker (alice@n1 left the group)');

      // Existence, asked at the node that holds none of them.
      const head = (...segments) => n3.rest('HEAD', n3.apiPath(hub, ...segments));
      assert.equal((await head('connections', alice1.id)).status, 200);
      assert.equal((await head('connections', 'nobody')).status, 404);
      assert.equal((await head('users', 'bob')).status, 200);
      assert.equal((await head('groups', group)).status, 200);
      assert.equal((await head('groups', unique('none'))).status, 404);
    });

    test(`a user's membership added at one node reaches the connection it opens later at another (${protocol})`, async () => {
      const [n1, n2, n3] = nodes;
      const hub = unique('clug');
      const group = unique('vip');
      await n3.addUserToGroup(hub, 'carol', group);
      const carol = await n2.connect(hub, { protocol, userId: 'carol', label: 'carol@n2' });
      await n1.sendToGroup(hub, group, 'message', ['vip news']);
      await carol.expect('message', ['vip news']);
      await n1.removeUserFromGroup(hub, 'carol', group);
      await n3.sendToGroup(hub, group, 'message', ['after removal']);
      await n3.sendToConnection(hub, carol.id, 'marker', ['c']);
      await carol.expect('marker', ['c'], 'the marker (carol left the group)');
    });

    test(`a close sent to a third node ends the client with its reason (${protocol})`, async () => {
      const [n1, , n3] = nodes;
      const hub = unique('clclose');
      const dave = await n1.connect(hub, { protocol, label: 'dave@n1' });
      const r = await n3.closeConnection(hub, dave.id, 'bye from n3');
      assert.equal(r.status, 200);
      const err = await dave.waitClosed();
      assert.match(String(err?.message ?? err), /bye from n3/);
    });
  }

  test('a node killed mid-traffic: its clients are cut off, the others keep getting messages', async () => {
    const [n1, n2, n3] = nodes;
    const hub = unique('clkill');
    const erin = await n1.connect(hub, { protocol: 'messagepack', label: 'erin@n1' });
    const fred = await n2.connect(hub, { protocol: 'json', label: 'fred@n2' });
    await n3.broadcast(hub, 'message', ['before']);
    await erin.expect('message', ['before']);
    await fred.expect('message', ['before']);
    n2.stopping = true;
    n2.child.kill('SIGKILL');
    await fred.waitClosed(10000);
    for (const n of [n1, n3]) {
      await eventually(async () => (await metric(n, 'switchboard_cluster_nodes')) === 1, `${n.base} notices the dead node`, 15000);
    }
    await n3.broadcast(hub, 'message', ['after']);
    await erin.expect('message', ['after']);
  });

  test('Redis stopped: nodes turn unready and deliver locally; restarted: cross-node delivery is back', async () => {
    const [n1, , n3] = nodes;
    const hub = unique('clredis');
    const gina = await n1.connect(hub, { protocol: 'json', label: 'gina@n1' });
    await redis.stop();
    for (const n of [n1, n3]) {
      await eventually(async () => (await readyz(n)) === 503, `${n.base} /readyz answers 503`, 10000);
    }
    await n1.broadcast(hub, 'message', ['local']);
    await gina.expect('message', ['local']);
    await redis.start();
    for (const n of [n1, n3]) {
      await eventually(async () => (await readyz(n)) === 200, `${n.base} /readyz answers 200 again`, 15000);
    }
    // The subscriptions come back: a broadcast at n3 reaches gina at n1.
    await eventually(async () => {
      await n3.broadcast(hub, 'marker', ['probe']);
      await sleep(100);
      return gina.received.some((m) => m.target === 'marker');
    }, 'a broadcast at n3 reaches n1 after the restart', 10000);
  });
});

describe('cluster in Default mode: a hub server on one node serves clients on the others', () => {
  const accessKey = randomAccessKey();
  let redis;
  let app;
  let chat;
  const nodes = [];

  before(async () => {
    redis = new Redis(await freePort());
    await redis.start();
    for (const id of ['d1', 'd2', 'd3']) {
      nodes.push(await startBroker({ mode: 'default', accessKey, extraArgs: ['--cluster', redis.url, '--node-id', id] }));
    }
    for (const n of nodes) {
      await eventually(async () => (await metric(n, 'switchboard_cluster_nodes')) === 2, `${n.base} sees the two other nodes`, 15000);
    }
    // The echo app's connections all land on d1.
    app = await startApp('echo', { connectionString: brokerConnectionString(nodes[0]), serverId: 'echo-d1', connections: 2 });
    // The chat app's on d2.
    chat = await startApp('chat', { connectionString: brokerConnectionString(nodes[1]), serverId: 'chat-d2', connections: 2 });
  });

  after(async () => {
    await app?.stop();
    await chat?.stop();
    for (const n of nodes) {
      if (!n.exit) n.assertHealthy();
      await n.stop();
    }
    await redis?.stop();
  });

  for (const protocol of PROTOCOLS) {
    test(`clients at nodes without a hub server invoke it, get results and its broadcasts (${protocol})`, async () => {
      const [d1, d2, d3] = nodes;
      const local = await d1.connect('echo', { protocol, userId: 'ann', targets: ECHO_TARGETS, label: 'ann@d1' });
      const far = await d2.connect('echo', { protocol, userId: 'ben', targets: ECHO_TARGETS, label: 'ben@d2' });
      const farther = await d3.connect('echo', { protocol: protocol === 'json' ? 'messagepack' : 'json', userId: 'cy', targets: ECHO_TARGETS, label: 'cy@d3' });
      for (const c of [far, farther]) {
        assert.deepEqual(await c.conn.invoke('EchoReturn', { from: c.name, n: 1 }), { from: c.name, n: 1 });
      }
      // In order, through the hub server and back.
      for (let i = 0; i < 20; i++) await far.conn.send('Echo', i);
      for (let i = 0; i < 20; i++) await far.expect('echo', [i]);
      await farther.conn.send('Broadcast', 'from d3');
      for (const c of [local, far, farther]) await c.expect('broadcast', ['from d3']);
      // The hub server sees d2's and d3's clients as its own; REST at d1 reaches them too.
      await d1.sendToConnection('echo', far.id, 'echo', ['rest via d1']);
      await far.expect('echo', ['rest via d1']);
      for (const c of [local, far, farther]) await c.stop();
    });
  }

  test('the chat app on d2 serves rooms, private messages, streams and client results to clients on d1 and d3', async () => {
    const [d1, , d3] = nodes;
    const room = unique('room');
    const targets = ['newMessage', 'joined', 'left', 'roomJoined', 'roomLeft', 'roomMessage', 'privateMessage'];
    const ann = await d1.connect('chat', { protocol: 'json', userId: 'ann', targets, label: 'ann@d1' });
    const bob = await d3.connect('chat', { protocol: 'messagepack', userId: 'bob', targets, label: 'bob@d3' });
    await ann.conn.invoke('JoinRoom', room);
    await bob.conn.invoke('JoinRoom', room);
    await bob.conn.invoke('SendToRoom', room, 'bob', 'hi room');
    await eventually(() => ann.received.some((m) => m.target === 'roomMessage' && m.args[2] === 'hi room'), 'ann@d1 gets the room message');
    await ann.conn.invoke('SendToUser', 'bob', 'psst');
    await eventually(() => bob.received.some((m) => m.target === 'privateMessage' && m.args[1] === 'psst'), 'bob@d3 gets the private message');
    const who = await bob.conn.invoke('WhoAmI');
    assert.equal(who.userId, 'bob');
    assert.equal(who.serverId, 'chat-d2');
    const items = [];
    await new Promise((resolve, reject) => {
      bob.conn.stream('Counter', 5, 1).subscribe({ next: (i) => items.push(i), complete: resolve, error: reject });
    });
    assert.deepEqual(items, [0, 1, 2, 3, 4]);
    // A client result: the app on d2 asks ann on d1 and gets her answer.
    ann.conn.on('answer', (q) => `42: ${q}`);
    assert.equal(await ann.conn.invoke('AskClient', '?'), '42: ?');
    for (const c of [ann, bob]) await c.stop();
  });

  test('the hub server stops: clients routed to it from other nodes are closed with the reason', async () => {
    const [, d2] = nodes;
    const dora = await d2.connect('echo', { protocol: 'json', userId: 'dora', targets: ECHO_TARGETS, label: 'dora@d2' });
    assert.equal(await dora.conn.invoke('EchoReturn', 'hi'), 'hi');
    await app.stop();
    const err = await dora.waitClosed(10000);
    assert.match(String(err?.message ?? err), /app server/);
    await assert.rejects(d2.connect('echo', { protocol: 'json', userId: 'eve', targets: ECHO_TARGETS, label: 'eve@d2' }), /app servers are not connected|Default/);
  });
});
