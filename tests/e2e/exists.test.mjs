// 7. HEAD existence checks: connections, groups, users (200 / 404).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique, eventually } from './harness.mjs';

describe('existence checks (HEAD)', () => {
  const ctx = useBroker({ before, after });

  for (const protocol of PROTOCOLS) {
    test(`connection / user / group existence follows the ${protocol} client's lifetime`, async () => {
      const { broker } = ctx;
      const hub = unique('head');
      const group = unique('grp');
      const user = unique('usr');

      assert.equal(await broker.headStatus(hub, 'connections', 'noSuchConnection'), 404, 'unknown connection');
      assert.equal(await broker.headStatus(hub, 'users', user), 404, 'user not yet connected');
      assert.equal(await broker.headStatus(hub, 'groups', group), 404, 'empty group');

      const c = await broker.connect(hub, { protocol, userId: user });
      assert.equal(await broker.headStatus(hub, 'connections', c.id), 200, 'connected connection');
      assert.equal(await broker.headStatus(hub, 'users', user), 200, 'connected user');
      assert.equal(await broker.headStatus(hub, 'groups', group), 404, 'group without members');
      // scoped per hub
      const otherHub = unique('head_other');
      assert.equal(await broker.headStatus(otherHub, 'connections', c.id), 404, 'connection looked up in another hub');
      assert.equal(await broker.headStatus(otherHub, 'users', user), 404, 'user looked up in another hub');

      await broker.addToGroup(hub, group, c.id);
      assert.equal(await broker.headStatus(hub, 'groups', group), 200, 'group with a member');
      assert.equal(await broker.headStatus(otherHub, 'groups', group), 404, 'group looked up in another hub');
      await broker.removeFromGroup(hub, group, c.id);
      assert.equal(await broker.headStatus(hub, 'groups', group), 404, 'group after its only member left');

      await broker.addToGroup(hub, group, c.id);
      await c.stop();
      await eventually(async () => (await broker.headStatus(hub, 'connections', c.id)) === 404, 'HEAD connection → 404 after the client stopped');
      await eventually(async () => (await broker.headStatus(hub, 'users', user)) === 404, 'HEAD user → 404 after its only connection stopped');
      await eventually(async () => (await broker.headStatus(hub, 'groups', group)) === 404, 'HEAD group → 404 after its only member disconnected');
    });
  }

  test('HEAD /api/health answers 200 without a token', async () => {
    const { broker } = ctx;
    const r = await broker.rest('HEAD', '/api/health', { token: null });
    assert.equal(r.status, 200);
  });

  test('a user stays present while any of its connections is open', async () => {
    const { broker } = ctx;
    const hub = unique('head_multi');
    const user = unique('usr');
    const a = await broker.connect(hub, { protocol: 'json', userId: user });
    const b = await broker.connect(hub, { protocol: 'messagepack', userId: user });
    await a.stop();
    // give the broker time to process a's disconnect, proven by a's id disappearing
    await eventually(async () => (await broker.headStatus(hub, 'connections', a.id)) === 404, 'HEAD connection a → 404');
    assert.equal(await broker.headStatus(hub, 'users', user), 200, 'user still has connection b');
    assert.equal(await broker.headStatus(hub, 'connections', b.id), 200);
    await b.stop();
    await eventually(async () => (await broker.headStatus(hub, 'users', user)) === 404, 'HEAD user → 404 after both stopped');
  });

  test('HEAD on a user-group membership', async () => {
    const { broker } = ctx;
    const hub = unique('head_ug');
    const user = unique('usr');
    const group = unique('grp');
    const c = await broker.connect(hub, { protocol: 'json', userId: user });
    assert.equal(await broker.headStatus(hub, 'users', user, 'groups', group), 404, 'user not in group yet');
    await broker.addUserToGroup(hub, user, group);
    assert.equal(await broker.headStatus(hub, 'users', user, 'groups', group), 200, 'user in group');
    assert.equal(await broker.headStatus(hub, 'groups', group), 200, "group contains the user's connection");
    await broker.removeUserFromGroup(hub, user, group);
    assert.equal(await broker.headStatus(hub, 'users', user, 'groups', group), 404, 'user removed from group');
    assert.equal(await broker.headStatus(hub, 'groups', group), 404, 'group empty again');
    await c.stop();
  });
});
