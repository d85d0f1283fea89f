// 2. REST broadcast reaches a JSON and a MessagePack client with exact arguments.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, unique } from './harness.mjs';

/** Arguments covering strings, numbers, booleans, null, nested objects/arrays, unicode. */
export const RICH_ARGS = [
  'hello',
  '',
  'ünïcödé ✓ 漢字 😀🎉 "quotes" \\ back\\slash\nnew line\ttab \u0001 </script>',
  0,
  42,
  -7,
  3.5,
  -0.125,
  0.1,
  1e-7,
  2147483648,
  -2147483649,
  9007199254740991,
  -9007199254740991,
  true,
  false,
  null,
  { nested: { a: [1, 'two', { three: 3 }], empty: {}, list: [], n: null, f: 2.25 }, 'key with space': 'v', ünï: 'cöde', '': 'empty key' },
  [1, [2, [3, []]], 'x', null, { y: true }],
  [],
  {},
];

async function connectPair(broker, hub) {
  const json = await broker.connect(hub, { protocol: 'json', label: 'json' });
  const msgpack = await broker.connect(hub, { protocol: 'messagepack', label: 'messagepack' });
  return [json, msgpack];
}

describe('broadcast', () => {
  const ctx = useBroker({ before, after });

  test('POST /api/hubs/{hub}/:send reaches a JSON and a MessagePack client with exact arguments', async () => {
    const { broker } = ctx;
    const hub = unique('bcast');
    const clients = await connectPair(broker, hub);
    const r = await broker.broadcast(hub, 'message', RICH_ARGS);
    assert.equal(r.status, 202);
    for (const c of clients) {
      const msg = await c.next('the broadcast');
      assert.equal(msg.target, 'message', `${c.name} target`);
      assert.deepStrictEqual(msg.args, RICH_ARGS, `${c.name} arguments`);
    }
    // a second, different broadcast arrives after the first (ordering)
    await broker.broadcast(hub, 'marker', ['second', 2]);
    for (const c of clients) await c.expect('marker', ['second', 2]);
  });

  test('JSON escapes in the REST body are decoded for both protocols', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_esc');
    const clients = await connectPair(broker, hub);
    // raw text with \u escapes (incl. a surrogate pair), escaped quote, backslash and solidus
    const raw = '{"target":"message","arguments":["caf\\u00e9 \\ud83c\\udf89 \\"q\\" \\\\ \\/ \\n", {"k\\u00fc":[1.5e2,-0.5E1,true]}]}';
    const expected = ['café 🎉 "q" \\ / \n', { kü: [150, -5, true] }];
    await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), { rawBody: raw });
    for (const c of clients) {
      const msg = await c.next('the escaped broadcast');
      assert.equal(msg.target, 'message');
      assert.deepStrictEqual(msg.args, expected, `${c.name} arguments`);
    }
  });

  test('arguments may be omitted (empty argument list)', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_noargs');
    const clients = await connectPair(broker, hub);
    await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), { rawBody: '{"target":"marker"}' });
    for (const c of clients) await c.expect('marker', []);
  });

  test('PascalCase body keys (as the .NET Management SDK sends) are accepted', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_pascal');
    const clients = await connectPair(broker, hub);
    await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), {
      rawBody: '{"Target":"message","Arguments":["pascal",1]}',
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    for (const c of clients) await c.expect('message', ['pascal', 1]);
  });

  test('v1 API: POST /api/v1/hubs/{hub} broadcasts (aud = URL without query)', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_v1');
    const clients = await connectPair(broker, hub);
    const p = `/api/v1/hubs/${hub}`;
    await broker.restExpect(202, 'POST', p, {
      apiVersion: false,
      body: { target: 'message', arguments: ['v1', { n: 1 }, [null]] },
      tokenOptions: { aud: `http://127.0.0.1${p}` },
    });
    for (const c of clients) await c.expect('message', ['v1', { n: 1 }, [null]]);
  });

  test('broadcast with excluded= skips the excluded connection', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_excl');
    const [json, msgpack] = await connectPair(broker, hub);
    await broker.broadcast(hub, 'message', ['not for json'], { excluded: json.id });
    await msgpack.expect('message', ['not for json']);
    await broker.broadcast(hub, 'marker', ['after']);
    await json.expect('marker', ['after'], 'the marker (the excluded broadcast must not arrive before it)');
    await msgpack.expect('marker', ['after']);
  });

  test('a broadcast does not leak into another hub', async () => {
    const { broker } = ctx;
    const hubA = unique('bcast_a');
    const hubB = unique('bcast_b');
    const a = await broker.connect(hubA, { protocol: 'json' });
    const b = await broker.connect(hubB, { protocol: 'messagepack' });
    await broker.broadcast(hubA, 'message', ['only A']);
    await a.expect('message', ['only A']);
    await broker.broadcast(hubB, 'marker', ['only B']);
    await b.expect('marker', ['only B'], 'the hub-B marker (hub-A broadcast must not arrive)');
    await broker.broadcast(hubA, 'marker', ['A again']);
    await a.expect('marker', ['A again'], 'the hub-A marker (hub-B broadcast must not arrive)');
  });

  test('200 sequential REST sends arrive complete and in order (both protocols)', async () => {
    const { broker } = ctx;
    const hub = unique('bcast_order');
    const clients = await connectPair(broker, hub);
    const N = 200;
    for (let i = 0; i < N; i++) {
      if (i % 2) await broker.broadcast(hub, 'message', [i]);
      else await broker.sendToConnection(hub, clients[i % 4 === 0 ? 0 : 1].id, 'message', [i]);
    }
    const expectJson = Array.from({ length: N }, (_, i) => i).filter((i) => i % 2 === 1 || i % 4 === 0);
    const expectMsgpack = Array.from({ length: N }, (_, i) => i).filter((i) => i % 2 === 1 || i % 4 === 2);
    for (const [c, want] of [[clients[0], expectJson], [clients[1], expectMsgpack]]) {
      const got = [];
      for (let k = 0; k < want.length; k++) got.push((await c.next(`message #${k + 1} of ${want.length}`)).args[0]);
      assert.deepStrictEqual(got, want, `${c.name} order`);
    }
  });

  for (const [label, size] of [['64 KB', 64 * 1024], ['900 KB (REST body limit is 1 MB, spec 4.1)', 900 * 1024]]) {
    test(`a ${label} argument is delivered intact to both protocols`, async () => {
      const { broker } = ctx;
      const hub = unique('bcast_big');
      const clients = await connectPair(broker, hub);
      const chunk = 'abcdefghijklmnopqrstuvwxyz0123456789ü✓';
      const big = chunk.repeat(Math.ceil(size / chunk.length)).slice(0, size);
      await broker.broadcast(hub, 'message', [big, { n: size }]);
      for (const c of clients) {
        const msg = await c.next(`the ${label} broadcast`);
        assert.equal(msg.target, 'message');
        assert.equal(msg.args[0].length, big.length, `${c.name} string length`);
        assert.ok(msg.args[0] === big, `${c.name} string content differs`);
        assert.deepStrictEqual(msg.args[1], { n: size });
      }
    });
  }

  test('a broadcast to a hub with no clients is still accepted (202)', async () => {
    const { broker } = ctx;
    const r = await broker.broadcast(unique('bcast_empty'), 'message', ['nobody']);
    assert.equal(r.status, 202);
  });
});
