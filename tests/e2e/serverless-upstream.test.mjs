// 8. Serverless mode with upstream webhooks (docs/protocol.md#upstream-webhooks): a real HTTP
//    upstream written here with node:http receives the `connected` / invocation /
//    `disconnected` events of the official JS clients (JSON and MessagePack) and answers them;
//    its answers become the clients' Completions.
//
// Three brokers, one upstream server (each test uses its own hub, so handlers never clash):
//   * `--config` file with `[[upstream]]` and `[upstream_options] timeout_secs = 1`,
//   * `--upstream TEMPLATE` with two `--access-key`s (the signature carries both HMACs),
//   * `--upstream-settings` with the local emulator's settings.json.
// Per connection the broker makes its upstream calls one at a time, in order; so an invocation
// that completes is a marker for every earlier message of the same connection.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, unique, randomAccessKey, signJwt, withTimeout, WAIT_MS } from './harness.mjs';
import {
  startUpstream, framedCompletion, framedInvocation, decodeUnframedMsgpack, upstreamSignature,
  tempDir, writeFile, HAVE_MSGPACK_LIB,
} from './harness-extra.mjs';

const PROTOCOLS = ['json', 'messagepack'];
const CONTENT_TYPE = { json: 'application/json', messagepack: 'application/x-msgpack' };
const ASRS_HEADERS = [
  'x-asrs-category', 'x-asrs-client-query', 'x-asrs-connection-id', 'x-asrs-event', 'x-asrs-hub',
  'x-asrs-signature', 'x-asrs-user-claims', 'x-asrs-user-id',
];

/** The Invocation an upstream request carries, decoded strictly in `protocol`. */
function upstreamInvocation(protocol, rec) {
  if (protocol === 'json') {
    assert.ok(!rec.body.includes(0x1e), `JSON upstream body must not be framed (0x1E): ${JSON.stringify(rec.text)}`);
    return { message: JSON.parse(rec.text) };
  }
  const { raw, message } = decodeUnframedMsgpack(rec.body);
  return { raw, message };
}

/** The standard upstream behaviour of a test hub (see the event names). */
function hubHandler(protocol) {
  return (rec) => {
    if (rec.category === 'connections') return { status: 200 };
    const { message } = upstreamInvocation(protocol, rec);
    const id = message.invocationId;
    switch (rec.event) {
      case 'Add':
        return { status: 200, headers: { 'Content-Type': CONTENT_TYPE[protocol] }, body: framedCompletion(protocol, id, message.arguments[0] + message.arguments[1]) };
      case 'Void204':
        return { status: 204 };
      case 'Empty200':
        return { status: 200 };
      case 'Forbidden':
        // The body of a non-200 answer is ignored, even a valid Completion
        return { status: 403, body: framedCompletion(protocol, id, 'must be ignored') };
      case 'Hang':
        return 'hold';
      case 'Note':
        // a non-blocking invocation's answer must never reach the client
        return { status: 200, body: framedInvocation(protocol, 'message', ['leak', message.arguments[0]]) };
      default:
        return { status: 404 };
    }
  };
}

/** A client token with claims in sorted order (so "token order" and "sorted" agree). */
function tokenWithClaims(key, hub, claims) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ aud: `http://127.0.0.1/client/?hub=${hub}`, exp: now + 3600, iat: now, nbf: now, ...claims }, key);
}

const KEY = randomAccessKey();
const KEY2 = randomAccessKey();
let upstream;
let tmp;

before(async () => {
  upstream = await startUpstream();
  tmp = tempDir();
});
after(async () => {
  await upstream?.close();
  tmp?.cleanup();
  upstream?.assertHealthy();
});

/** Starts a broker for a describe block; stops it after, failing on a crash or panic. */
function useServerlessBroker(options) {
  const ctx = {};
  before(async () => {
    ctx.broker = await startBroker({ mode: 'serverless', ...options() });
  });
  after(async () => {
    const b = ctx.broker;
    if (!b) return;
    let err;
    try { b.assertHealthy(); } catch (e) { err = e; }
    await b.stop();
    if (err) throw err;
  });
  return ctx;
}

describe('Serverless upstream from a TOML [[upstream]] (timeout_secs = 1)', () => {
  const ctx = useServerlessBroker(() => {
    const config = writeFile(tmp.file('upstream.toml'), [
      '[[upstream]]',
      `url_template = "${upstream.template}"`,
      'hub_pattern = "*"',
      'category_pattern = "*"',
      'event_pattern = "*"',
      '',
      '[upstream_options]',
      'timeout_secs = 1',
      '',
    ].join('\n'));
    return { accessKey: KEY, extraArgs: ['--config', config] };
  });

  test('the signature helper matches the Functions extension test vector', () => {
    assert.equal(upstreamSignature(['7aab239577fd4f24bc919802fb629f5f'], '0f9c97a2f0bf4706afe87a14e0797b11'),
      'sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561');
  });

  test('hub and event are URI-escaped in the URL (Uri.EscapeDataString); headers carry the raw UTF-8 values', async () => {
    const { broker } = ctx;
    // Lower case: the broker names hubs in their canonical form (`{hub}` is lower-cased).
    const hub = 'esc`,.[]';
    upstream.handle(hub, hubHandler('json'));
    const c = await broker.connect(hub, { protocol: 'json', userId: 'u é' });
    await c.conn.send('Send Me/now?x=1#y%', 1);
    assert.equal(await withTimeout(c.conn.invoke('Add', 1, 2), WAIT_MS, 'invoke Add (marker)'), 3);
    const reqs = upstream.forConnection(c.id);
    const base = '/esc%60%2C.%5B%5D/api';
    assert.deepEqual(reqs.map((r) => r.url), [`${base}/connections/connected`, `${base}/messages/Send%20Me%2Fnow%3Fx%3D1%23y%25`, `${base}/messages/Add`]);
    const utf8 = (v) => Buffer.from(v, 'latin1').toString('utf8'); // node:http reads header bytes as latin1
    const h = reqs[1].headers;
    assert.equal(h['x-asrs-hub'], hub);
    assert.equal(h['x-asrs-event'], 'Send Me/now?x=1#y%');
    assert.equal(utf8(h['x-asrs-user-id']), 'u é');
    assert.equal(utf8(h['x-asrs-user-claims']), 'nameid: u é');
    assert.equal(h['x-asrs-client-query'], '?hub=esc%60%2C.%5B%5D');
    assert.deepEqual(JSON.parse(reqs[1].text), { type: 1, target: 'Send Me/now?x=1#y%', arguments: [1] });
    await c.stop();
  });

  for (const protocol of PROTOCOLS) {
    test(`connected event: POST with every X-ASRS-* header, the signature and {"type":10} (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_conn');
      upstream.handle(hub, hubHandler(protocol));
      const token = tokenWithClaims(KEY, hub, { nameid: 'alice', role: ['admin', 'ops'] });
      const c = await broker.connect(hub, { protocol, token });
      // the broker waits for the upstream's answer before it completes the handshake
      const reqs = upstream.forConnection(c.id);
      assert.equal(reqs.length, 1, `exactly the connected event before start() resolved: ${JSON.stringify(reqs.map((r) => r.url))}`);
      const rec = reqs[0];
      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, `/${hub}/api/connections/connected`);
      const h = rec.headers;
      assert.deepEqual(Object.keys(h).filter((k) => k.startsWith('x-asrs-')).sort(), ASRS_HEADERS);
      assert.equal(h['x-asrs-connection-id'], c.id);
      assert.equal(h['x-asrs-hub'], hub);
      assert.equal(h['x-asrs-category'], 'connections');
      assert.equal(h['x-asrs-event'], 'connected');
      assert.equal(h['x-asrs-user-id'], 'alice');
      assert.equal(h['x-asrs-user-claims'], 'nameid: alice, role: admin, role: ops');
      assert.ok(h['x-asrs-client-query'].startsWith('?hub='), `client query ${h['x-asrs-client-query']}`);
      assert.equal(h['x-asrs-client-query'], `?hub=${hub}`);
      assert.equal(h['x-asrs-signature'], upstreamSignature([KEY], c.id));
      assert.equal(h['content-type'], 'application/json');
      assert.equal(rec.text, '{"type":10}');

      // an anonymous client: no user id and no claims headers
      const anon = await broker.connect(hub, { protocol });
      const a = upstream.forConnection(anon.id);
      assert.equal(a.length, 1);
      assert.equal(a[0].headers['x-asrs-user-id'], undefined);
      assert.equal(a[0].headers['x-asrs-user-claims'], undefined);
      assert.equal(a[0].headers['x-asrs-connection-id'], anon.id);
      assert.equal(a[0].headers['x-asrs-signature'], upstreamSignature([KEY], anon.id));
      await c.stop();
      await anon.stop();
    });

    test(`invoke("Add", 2, 3): the upstream gets the unframed invocation and its Completion resolves to 5 (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_add');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol, userId: 'bob' });
      assert.equal(await withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'invoke Add'), 5);

      const rec = await upstream.waitEvent(c.id, 'Add');
      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, `/${hub}/api/messages/Add`);
      assert.equal(rec.headers['content-type'], CONTENT_TYPE[protocol]);
      assert.equal(rec.headers['x-asrs-category'], 'messages');
      assert.equal(rec.headers['x-asrs-event'], 'Add');
      assert.equal(rec.headers['x-asrs-hub'], hub);
      assert.equal(rec.headers['x-asrs-connection-id'], c.id);
      assert.equal(rec.headers['x-asrs-user-id'], 'bob');
      assert.equal(rec.headers['x-asrs-user-claims'], 'nameid: bob');
      assert.equal(rec.headers['x-asrs-signature'], upstreamSignature([KEY], c.id));
      const { message, raw } = upstreamInvocation(protocol, rec);
      assert.equal(typeof message.invocationId, 'string');
      assert.ok(message.invocationId.length > 0);
      if (protocol === 'json') {
        assert.deepEqual(message, { type: 1, invocationId: message.invocationId, target: 'Add', arguments: [2, 3] });
      } else {
        // fixarray header first: no VarInt length prefix in front of the array
        assert.ok(rec.body[0] === 0x95 || rec.body[0] === 0x96, `first byte 0x${rec.body[0].toString(16)} must be a fixarray(5|6) header`);
        assert.equal(message.type, 1);
        assert.equal(message.target, 'Add');
        assert.deepEqual(message.arguments, [2, 3]);
        if (HAVE_MSGPACK_LIB) {
          assert.deepEqual(raw.slice(0, 5), [1, {}, message.invocationId, 'Add', [2, 3]]);
          if (raw.length === 6) assert.deepEqual(raw[5], []);
          assert.ok(raw.length === 5 || raw.length === 6, `array length ${raw.length}`);
        }
      }
      await c.stop();
    });

    test(`upstream statuses: 204 and empty 200 → no result; 403 → error; no answer → 500 after the 1 s timeout (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_status');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol });
      assert.equal(await withTimeout(c.conn.invoke('Void204', 1), WAIT_MS, 'invoke Void204'), undefined);
      assert.equal(await withTimeout(c.conn.invoke('Empty200', 1), WAIT_MS, 'invoke Empty200'), undefined);
      await assert.rejects(withTimeout(c.conn.invoke('Forbidden', 1), WAIT_MS, 'invoke Forbidden'),
        (err) => { assert.equal(err.message, 'Invocation failed, status code 403'); return true; });

      const started = Date.now();
      await assert.rejects(withTimeout(c.conn.invoke('Hang', 1), WAIT_MS, 'invoke Hang (upstream never answers)'),
        (err) => { assert.equal(err.message, 'Invocation failed, status code 500'); return true; });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 900 && elapsed < 4000, `the timeout must be about 1 s, took ${elapsed} ms`);
      const held = await upstream.waitEvent(c.id, 'Hang');
      assert.equal(held.headers['x-asrs-category'], 'messages');

      // the connection goes on after a timeout
      assert.equal(await withTimeout(c.conn.invoke('Add', 40, 2), WAIT_MS, 'invoke Add after the timeout'), 42);
      assert.deepEqual(upstream.forConnection(c.id).map((r) => r.event), ['connected', 'Void204', 'Empty200', 'Forbidden', 'Hang', 'Add']);
      assert.deepEqual(c.received, []);
      await c.stop();
    });

    test(`send("Note", i) ×100: the upstream gets 0..99 in order, once each; no answer reaches the client (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_note');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol });
      await withTimeout(Promise.all(Array.from({ length: 100 }, (_, i) => c.conn.send('Note', i))), WAIT_MS, '100 sends');
      // the marker: a blocking invocation on the same connection is called after all 100
      assert.equal(await withTimeout(c.conn.invoke('Add', 50, 50), WAIT_MS * 2, 'invoke Add (marker)'), 100);

      const reqs = upstream.forConnection(c.id);
      const notes = reqs.filter((r) => r.event === 'Note');
      assert.deepEqual(notes.map((r) => upstreamInvocation(protocol, r).message.arguments), Array.from({ length: 100 }, (_, i) => [i]));
      for (const r of notes) {
        const { message } = upstreamInvocation(protocol, r);
        assert.ok(message.invocationId === undefined || message.invocationId === null, `a send has no invocation id: ${JSON.stringify(message)}`);
        assert.equal(r.headers['content-type'], CONTENT_TYPE[protocol]);
      }
      assert.deepEqual(reqs.map((r) => r.event), ['connected', ...Array(100).fill('Note'), 'Add']);
      // the upstream answered every Note with a framed Invocation of "message": none got through
      assert.deepEqual(c.received, [], `the client received upstream answers to sends: ${JSON.stringify(c.received.slice(0, 5))}`);
      c.assertNoUnknownTargets();
      await c.stop();
    });

    test(`the upstream refuses "connected" with 401 → start() rejects (${protocol})`, async () => {
      const { broker } = ctx;
      const before = upstream.requests.length;
      upstream.handle('deny', (rec) => (rec.event === 'connected' ? { status: 401 } : { status: 200 }));
      await assert.rejects(broker.connect('deny', { protocol }), (err) => {
        assert.ok(err.message.includes('The upstream refused the connection (status code 401).'), `start() error: ${err.message}`);
        return true;
      });
      const asked = upstream.requests.slice(before).filter((r) => r.hub === 'deny');
      assert.deepEqual(asked.map((r) => `${r.category}/${r.event}`), ['connections/connected']);
      assert.equal(asked[0].headers['x-asrs-signature'], upstreamSignature([KEY], asked[0].headers['x-asrs-connection-id']));
    });

    test(`disconnected after stop(): {"type":11}, after every earlier call, last of the connection (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_disc');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol, userId: 'carol' });
      for (let i = 0; i < 3; i += 1) await c.conn.send('Note', i);
      await c.stop();
      const rec = await upstream.waitEvent(c.id, 'disconnected');
      assert.equal(rec.method, 'POST');
      assert.equal(rec.path, `/${hub}/api/connections/disconnected`);
      assert.equal(rec.headers['content-type'], 'application/json');
      assert.equal(rec.headers['x-asrs-category'], 'connections');
      assert.equal(rec.headers['x-asrs-event'], 'disconnected');
      assert.equal(rec.headers['x-asrs-user-id'], 'carol');
      assert.equal(rec.headers['x-asrs-signature'], upstreamSignature([KEY], c.id));
      assert.equal(rec.text, '{"type":11}');
      // Marker: another connection of the hub completes a full round trip (connected, Add,
      // disconnected) after it; the stopped connection still has nothing after "disconnected".
      const m = await broker.connect(hub, { protocol });
      assert.equal(await withTimeout(m.conn.invoke('Add', 1, 2), WAIT_MS, 'marker invoke'), 3);
      await m.stop();
      await upstream.waitEvent(m.id, 'disconnected');
      assert.deepEqual(upstream.forConnection(c.id).map((r) => r.event), ['connected', 'Note', 'Note', 'Note', 'disconnected']);
    });

    test(`disconnected after a REST close carries the reason as error (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_kick');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol });
      await broker.closeConnection(hub, c.id, 'kicked "out"');
      await c.waitClosed();
      const rec = await upstream.waitEvent(c.id, 'disconnected');
      assert.deepEqual(JSON.parse(rec.text), { type: 11, error: 'kicked "out"' });
      assert.equal(rec.headers['content-type'], 'application/json');
    });
  }
});

describe('Serverless upstream from --upstream with two access keys', () => {
  const ctx = useServerlessBroker(() => ({ accessKey: KEY, extraArgs: ['--access-key', KEY2, '--upstream', upstream.template] }));

  for (const protocol of PROTOCOLS) {
    test(`X-ASRS-Signature carries one HMAC per key: sha256=<primary>,sha256=<secondary> (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_keys');
      upstream.handle(hub, hubHandler(protocol));
      // a token signed with the secondary key is accepted too
      const c = await broker.connect(hub, { protocol, userId: 'dave', tokenOptions: { key: KEY2 } });
      const [connected] = upstream.forConnection(c.id);
      const expected = upstreamSignature([KEY, KEY2], c.id);
      assert.match(expected, /^sha256=[0-9a-f]{64},sha256=[0-9a-f]{64}$/);
      assert.equal(connected.headers['x-asrs-signature'], expected);
      assert.equal(await withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'invoke Add'), 5);
      assert.equal((await upstream.waitEvent(c.id, 'Add')).headers['x-asrs-signature'], expected);
      await c.stop();
      assert.equal((await upstream.waitEvent(c.id, 'disconnected')).headers['x-asrs-signature'], expected);
    });
  }
});

describe('Serverless upstream from the emulator settings.json (--upstream-settings)', () => {
  const ctx = useServerlessBroker(() => {
    const settings = writeFile(tmp.file('settings.json'), JSON.stringify({
      UpstreamSettings: {
        Templates: [{ UrlTemplate: `${upstream.base}/emu/{hub}/{category}/{event}`, EventPattern: '*', HubPattern: '*', CategoryPattern: '*' }],
      },
    }, null, 2));
    return { accessKey: KEY, extraArgs: ['--upstream-settings', settings] };
  });

  for (const protocol of PROTOCOLS) {
    test(`one invocation round trip through the emulator's template (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('up_emu');
      upstream.handle(hub, hubHandler(protocol));
      const c = await broker.connect(hub, { protocol });
      assert.equal(await withTimeout(c.conn.invoke('Add', 2, 3), WAIT_MS, 'invoke Add'), 5);
      const reqs = upstream.forConnection(c.id);
      assert.deepEqual(reqs.map((r) => r.path), [`/emu/${hub}/connections/connected`, `/emu/${hub}/messages/Add`]);
      assert.equal(reqs[1].headers['content-type'], CONTENT_TYPE[protocol]);
      assert.equal(reqs[1].headers['x-asrs-signature'], upstreamSignature([KEY], c.id));
      await c.stop();
    });
  }
});

describe('Serverless upstream rule patterns: the first matching rule wins', () => {
  const ctx = useServerlessBroker(() => {
    const config = writeFile(tmp.file('patterns.toml'), [
      '[[upstream]]',
      `url_template = "${upstream.base}/first/{hub}/{category}/{event}"`,
      'hub_pattern = "pat_alpha, pat_beta"',
      'category_pattern = "messages"',
      'event_pattern = "*"',
      '',
      '[[upstream]]',
      `url_template = "${upstream.base}/second/{hub}/{category}/{event}"`,
      'hub_pattern = "*"',
      'category_pattern = "*"',
      'event_pattern = "connected,Add"',
      '',
    ].join('\n'));
    return { accessKey: KEY, extraArgs: ['--config', config] };
  });

  test('hub / category / event patterns pick the URL; unmatched events are not sent; streams are refused', async () => {
    const { broker } = ctx;
    const answer = (rec) => {
      if (rec.category !== 'messages') return { status: 200 };
      const msg = JSON.parse(rec.text);
      return { status: 200, body: framedCompletion('json', msg.invocationId, `${rec.path}`) };
    };
    upstream.handle('pat_alpha', answer);
    upstream.handle('pat_gamma', answer);
    const streamError = (c) => withTimeout(new Promise((resolve) => {
      c.conn.stream('Add', 1).subscribe({ next() {}, complete: () => resolve('completed'), error: (e) => resolve(e.message) });
    }), WAIT_MS, 'the stream to end');

    const a = await broker.connect('pat_alpha', { protocol: 'json' });
    assert.equal(await withTimeout(a.conn.invoke('Add', 1), WAIT_MS, 'alpha Add'), '/first/pat_alpha/messages/Add');
    assert.equal(await withTimeout(a.conn.invoke('Other', 1), WAIT_MS, 'alpha Other'), '/first/pat_alpha/messages/Other');
    assert.equal(await streamError(a), 'Invocation failed: streaming invocations are not forwarded to upstreams in Serverless mode.');

    const g = await broker.connect('pat_gamma', { protocol: 'json' });
    assert.equal(await withTimeout(g.conn.invoke('Add', 1), WAIT_MS, 'gamma Add'), '/second/pat_gamma/messages/Add');
    await assert.rejects(withTimeout(g.conn.invoke('Other', 1), WAIT_MS, 'gamma Other'), (err) => {
      assert.equal(err.message, "Invocation failed: hub 'pat_gamma' is in Serverless mode and no upstream is configured to handle 'Other'.");
      return true;
    });
    assert.deepEqual(upstream.forConnection(a.id).map((r) => r.path), ['/second/pat_alpha/connections/connected', '/first/pat_alpha/messages/Add', '/first/pat_alpha/messages/Other']);
    assert.deepEqual(upstream.forConnection(g.id).map((r) => r.path), ['/second/pat_gamma/connections/connected', '/second/pat_gamma/messages/Add']);
    await a.stop();
    await g.stop();
  });
});
