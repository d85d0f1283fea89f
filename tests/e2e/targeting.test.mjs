// 3. Send to a user reaches every connection of that user and no one else;
//    send to a connection reaches only that connection.
// Negative checks: after the targeted send, a marker is broadcast to everybody;
// a non-target's NEXT message must be the marker (per-connection ordering), so no
// long sleeps are needed to prove that nothing else arrived.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique } from './harness.mjs';

describe('targeted sends', () => {
  const ctx = useBroker({ before, after });

  for (const protocol of PROTOCOLS) {
    const other = protocol === 'json' ? 'messagepack' : 'json';

    test(`send to user reaches all of that user's connections and nobody else (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('user');
      const alice1 = await broker.connect(hub, { protocol, userId: 'alice', label: 'alice1' });
      const alice2 = await broker.connect(hub, { protocol: other, userId: 'alice', label: 'alice2' });
      const alice3 = await broker.connect(hub, { protocol, userId: 'alice', label: 'alice3' });
      const bob = await broker.connect(hub, { protocol, userId: 'bob', label: 'bob' });
      const anon = await broker.connect(hub, { protocol, label: 'anonymous' });
      const otherHub = unique('user_other');
      const aliceOtherHub = await broker.connect(otherHub, { protocol, userId: 'alice', label: 'alice@otherhub' });

      const args = ['for alice', { n: 1, list: [true, null, 'ü'] }];
      const r = await broker.sendToUser(hub, 'alice', 'message', args);
      assert.equal(r.status, 202);
      for (const c of [alice1, alice2, alice3]) await c.expect('message', args);

      await broker.broadcast(hub, 'marker', ['m1']);
      for (const c of [alice1, alice2, alice3, bob, anon]) {
        await c.expect('marker', ['m1'], 'the marker (nothing else may arrive before it)');
      }
      await broker.broadcast(otherHub, 'marker', ['other hub']);
      await aliceOtherHub.expect('marker', ['other hub'], 'the other-hub marker (user send must be scoped to its hub)');
    });

    test(`send to connection reaches only that connection (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('conn');
      const target = await broker.connect(hub, { protocol, userId: 'carol', label: 'target' });
      const sameUser = await broker.connect(hub, { protocol: other, userId: 'carol', label: 'same-user' });
      const bystander = await broker.connect(hub, { protocol, label: 'bystander' });

      const args = [{ only: target.id }, 7, 'ß∂ƒ'];
      const r = await broker.sendToConnection(hub, target.id, 'message', args);
      assert.equal(r.status, 202);
      await target.expect('message', args);

      await broker.broadcast(hub, 'marker', ['m2']);
      for (const c of [target, sameUser, bystander]) {
        await c.expect('marker', ['m2'], 'the marker (nothing else may arrive before it)');
      }
    });
  }

  test('send to a user nobody is connected as is accepted (202) and delivered to no one', async () => {
    const { broker } = ctx;
    const hub = unique('user_none');
    const c = await broker.connect(hub, { protocol: 'json', userId: 'present' });
    await broker.sendToUser(hub, 'absent', 'message', ['x']);
    await broker.broadcast(hub, 'marker', ['m']);
    await c.expect('marker', ['m'], 'the marker');
  });

  test('send to an unknown connection id is accepted (202)', async () => {
    const { broker } = ctx;
    const r = await broker.sendToConnection(unique('conn_none'), 'doesNotExist123', 'message', ['x']);
    assert.equal(r.status, 202);
  });

  test('user id with URL-escaped characters (e-mail address) is routed', async () => {
    const { broker } = ctx;
    const hub = unique('user_esc');
    const user = 'dave+test@example.com';
    const dave = await broker.connect(hub, { protocol: 'messagepack', userId: user });
    const other = await broker.connect(hub, { protocol: 'json', userId: 'dave' });
    await broker.sendToUser(hub, user, 'message', ['hi dave']); // path segment dave%2Btest%40example.com
    await dave.expect('message', ['hi dave']);
    await broker.broadcast(hub, 'marker', ['m']);
    await other.expect('marker', ['m'], 'the marker');
    await dave.expect('marker', ['m']);
  });

  test('user id from the asrs.s.uid claim (Azure SDK style) is used for user sends', async () => {
    const { broker } = ctx;
    const hub = unique('user_uid');
    const c = await broker.connect(hub, {
      protocol: 'json',
      token: broker.clientToken(hub, { claims: { 'asrs.s.uid': 'erin' } }),
    });
    await broker.sendToUser(hub, 'erin', 'message', ['hi erin']);
    await c.expect('message', ['hi erin']);
  });
});
