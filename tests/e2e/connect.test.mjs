// 1. Connecting with a valid token (JSON and MessagePack); the startup lines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique, eventually } from './harness.mjs';

describe('connect', () => {
  const ctx = useBroker({ before, after });

  test('broker prints the listen line and the connection string on stdout, without the key it was given', async () => {
    const { broker } = ctx;
    assert.equal(broker.stdoutLines[0], `Listening on http://127.0.0.1:${broker.port}`);
    const expected = `Connection string: Endpoint=http://127.0.0.1;Port=${broker.port};AccessKey=<the access key you gave>;Version=1.0;`;
    await eventually(() => broker.stdoutLines.includes(expected),
      () => `stdout line ${JSON.stringify(expected)} (stdout so far: ${JSON.stringify(broker.stdoutLines)})`, 2000);
  });

  for (const protocol of PROTOCOLS) {
    test(`${protocol} client connects with a valid token and gets a connectionId`, async () => {
      const { broker } = ctx;
      const hub = unique('connect');
      const a = await broker.connect(hub, { protocol });
      const b = await broker.connect(hub, { protocol, userId: 'connect-user' });
      for (const c of [a, b]) {
        assert.equal(c.state, 'Connected');
        assert.equal(typeof c.id, 'string');
        assert.ok(c.id.length > 0, 'connectionId must be non-empty');
        // ids are used unencoded in URLs by the JS client
        assert.match(c.id, /^[A-Za-z0-9_\-.~]+$/, `connectionId ${c.id} must be URL-safe`);
      }
      assert.notEqual(a.id, b.id, 'two connections must get different ids');
      await a.stop();
      await b.stop();
      assert.equal(a.state, 'Disconnected');
      assert.equal(a.closeError, undefined, `client-initiated stop must not report an error, got ${a.closeError?.message}`);
    });
  }

  test('many clients of both protocols connect concurrently with distinct ids', async () => {
    const { broker } = ctx;
    const hub = unique('connect_many');
    const clients = await Promise.all(
      Array.from({ length: 10 }, (_, i) => broker.connect(hub, { protocol: PROTOCOLS[i % 2], userId: `u${i % 3}` })),
    );
    const ids = new Set(clients.map((c) => c.id));
    assert.equal(ids.size, clients.length);
    await Promise.all(clients.map((c) => c.stop()));
  });
});
