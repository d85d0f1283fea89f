// 9. Classic mode (docs/protocol.md#service-modes): the route is decided per client AT
//    CONNECT TIME.
//    * While no hub server is connected, a client (direct token for /client/?hub=chat) is
//      accepted in a limited serverless state: it receives REST sends, and the first invocation
//      it sends makes the broker close it with `No app server is currently connected to the
//      Azure service.`
//    * Once the chat example hub server is connected, clients that connect — through the app's
//      negotiate or with a direct token — are routed to it (`WhoAmI` answers its server id).
//    * The decision is not revisited: a client that connected before the server stays limited
//      (its invocation after the server connected still closes it with the same error), while
//      it keeps receiving REST broadcasts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, startApp, connectViaApp, brokerConnectionString, waitReceived, withTimeout, unique,
  CHAT_TARGETS, DEFAULT_TARGETS, WAIT_MS,
} from './harness.mjs';

const NO_SERVER = 'No app server is currently connected to the Azure service.';
const TARGETS = [...DEFAULT_TARGETS, ...CHAT_TARGETS];

describe('Classic mode: limited clients without a hub server, routed clients with one', () => {
  const s = { broker: undefined, app: undefined, appClients: [] };
  before(async () => {
    s.broker = await startBroker({ mode: 'classic' });
  });
  after(async () => {
    const errors = [];
    for (const p of [s.app, s.broker]) {
      if (!p) continue;
      try { p.assertHealthy(); } catch (e) { errors.push(e); }
    }
    await Promise.all(s.appClients.map((c) => c.stop().catch(() => {})));
    if (s.app) await s.app.stop();
    if (s.broker) await s.broker.stop();
    if (errors.length) throw errors[0];
  });

  test('no hub server: direct clients connect, receive REST broadcasts; an invocation closes the sender', async () => {
    const { broker } = s;
    const early1 = await broker.connect('chat', { protocol: 'json', userId: 'early1', targets: TARGETS, label: 'early1' });
    s.early2 = await broker.connect('chat', { protocol: 'messagepack', userId: 'early2', targets: TARGETS, label: 'early2' });
    const { early2 } = s;

    await broker.broadcast('chat', 'message', ['hello limited', 1]);
    await early1.expect('message', ['hello limited', 1]);
    await early2.expect('message', ['hello limited', 1]);
    await broker.sendToUser('chat', 'early1', 'marker', ['just early1']);
    await early1.expect('marker', ['just early1']);

    const pending = early1.conn.invoke('SendMessage', 'early1', 'anyone?');
    const err = await early1.waitClosed();
    assert.ok(err instanceof Error, `onclose must receive an Error, got ${String(err)}`);
    assert.ok(err.message.includes(NO_SERVER), `close error: ${err.message}`);
    await assert.rejects(withTimeout(pending, WAIT_MS, 'the pending invoke to settle'), (e) => {
      assert.ok(e instanceof Error);
      return true;
    });

    // the other limited client is untouched
    assert.equal(early2.state, 'Connected');
    await broker.broadcast('chat', 'marker', ['after early1 left']);
    await early2.expect('marker', ['after early1 left']);
  });

  test('with the chat hub server connected: app-negotiated and new direct clients are routed to it; an early client is not', async () => {
    const { broker, early2 } = s;
    assert.ok(early2 && early2.state === 'Connected', 'the previous test must have left early2 connected');
    s.app = await startApp('chat', { connectionString: brokerConnectionString(broker), serverId: 'classic-1', connections: 2 });
    assert.equal(s.app.serverId, 'classic-1');

    // through the app's negotiate (the Azure redirect)
    const viaApp = await connectViaApp(s.app.hubUrl, { protocol: 'json', userId: 'via-app', targets: TARGETS, label: 'via-app' });
    s.appClients.push(viaApp);
    assert.deepEqual(await withTimeout(viaApp.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI via app'), { connectionId: viaApp.id, userId: 'via-app', serverId: 'classic-1' });

    // a direct-token client connected after the server: routed as well
    const late = await broker.connect('chat', { protocol: 'messagepack', userId: 'late-direct', targets: TARGETS, label: 'late-direct' });
    assert.deepEqual(await withTimeout(late.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI direct'), { connectionId: late.id, userId: 'late-direct', serverId: 'classic-1' });
    // and the hub method's broadcast reaches the routed clients
    const text = unique('classic hello');
    await late.conn.invoke('SendMessage', 'late-direct', text);
    assert.deepEqual(await waitReceived(viaApp, 'newMessage', (_u, t) => t === text, 'the chat message'), ['late-direct', text]);

    // REST broadcasts reach routed and limited clients alike
    await broker.broadcast('chat', 'marker', ['rest to all']);
    for (const c of [viaApp, late, early2]) {
      assert.deepEqual(await waitReceived(c, 'marker', (m) => m === 'rest to all', 'the REST broadcast'), ['rest to all']);
    }

    // early2 connected while no server was there: its route is not revisited, so its first
    // invocation still closes it with the Classic-mode error (a routed client would get an answer)
    const pending = early2.conn.invoke('WhoAmI');
    const err = await early2.waitClosed();
    assert.ok(err instanceof Error, `onclose must receive an Error, got ${String(err)}`);
    assert.ok(err.message.includes(NO_SERVER), `close error: ${err.message}`);
    await assert.rejects(withTimeout(pending, WAIT_MS, 'the pending WhoAmI to settle'));

    // the routed clients are unaffected
    assert.equal(viaApp.state, 'Connected');
    assert.equal(late.state, 'Connected');
    assert.equal((await withTimeout(viaApp.conn.invoke('WhoAmI'), WAIT_MS, 'WhoAmI again')).serverId, 'classic-1');
    for (const c of [viaApp, late]) c.assertNoUnknownTargets();
  });
});
