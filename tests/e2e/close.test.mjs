// 5. DELETE /api/hubs/{hub}/connections/{id}?reason=... closes that client with the
//    reason; the other clients stay connected and keep receiving.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique, eventually } from './harness.mjs';

describe('close connection', () => {
  const ctx = useBroker({ before, after });

  for (const protocol of PROTOCOLS) {
    const other = protocol === 'json' ? 'messagepack' : 'json';

    test(`DELETE connection with reason closes only that ${protocol} client`, async () => {
      const { broker } = ctx;
      const hub = unique('close');
      const victim = await broker.connect(hub, { protocol, userId: 'victim', label: 'victim' });
      const sameProto = await broker.connect(hub, { protocol, userId: 'victim', label: 'same-user-same-protocol' });
      const otherProto = await broker.connect(hub, { protocol: other, label: 'other-protocol' });

      const reason = `kicked by e2e ${protocol}`;
      const r = await broker.closeConnection(hub, victim.id, reason);
      assert.equal(r.status, 200);

      const err = await victim.waitClosed();
      assert.ok(err instanceof Error, `onclose must receive an Error, got ${String(err)}`);
      assert.ok(err.message.includes(reason), `close error "${err.message}" must contain the reason "${reason}"`);
      assert.equal(victim.state, 'Disconnected');

      // the others are unaffected
      assert.equal(sameProto.state, 'Connected');
      assert.equal(otherProto.state, 'Connected');
      await broker.broadcast(hub, 'message', ['still here', 1]);
      await sameProto.expect('message', ['still here', 1]);
      await otherProto.expect('message', ['still here', 1]);
      await broker.sendToUser(hub, 'victim', 'marker', ['user send after close']);
      await sameProto.expect('marker', ['user send after close']);
      assert.equal(victim.received.length, 0, `closed client received ${JSON.stringify(victim.received)}`);

      // the closed connection is gone
      await eventually(async () => (await broker.headStatus(hub, 'connections', victim.id)) === 404,
        `HEAD connections/${victim.id} to become 404 after close`);
    });
  }

  test('the reason text may contain spaces and non-ASCII characters', async () => {
    const { broker } = ctx;
    const hub = unique('close_utf8');
    const c = await broker.connect(hub, { protocol: 'json' });
    const reason = 'adiós – bye ✓';
    await broker.closeConnection(hub, c.id, reason);
    const err = await c.waitClosed();
    assert.ok(err instanceof Error, `onclose must receive an Error, got ${String(err)}`);
    assert.ok(err.message.includes(reason), `close error "${err.message}" must contain "${reason}"`);
  });

  test('messages sent before the close are delivered before the close', async () => {
    const { broker } = ctx;
    const hub = unique('close_order');
    const c = await broker.connect(hub, { protocol: 'messagepack' });
    await broker.sendToConnection(hub, c.id, 'message', ['last words']);
    await broker.closeConnection(hub, c.id, 'bye');
    await c.waitClosed();
    assert.deepStrictEqual(c.received, [{ target: 'message', args: ['last words'] }]);
  });
});
