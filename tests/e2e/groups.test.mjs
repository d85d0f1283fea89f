// 4. Groups: connection add/remove, user-group add/remove.
// Negative checks use a marker sent afterwards through another route (per-connection
// ordering): the client's NEXT message must be the marker.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique } from './harness.mjs';

describe('groups', () => {
  const ctx = useBroker({ before, after });

  for (const protocol of PROTOCOLS) {
    const other = protocol === 'json' ? 'messagepack' : 'json';

    test(`add connection to group, group send received; after removal not received (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('grp');
      const group = unique('room');
      const member = await broker.connect(hub, { protocol, label: 'member' });
      const outsider = await broker.connect(hub, { protocol: other, label: 'outsider' });

      const add = await broker.addToGroup(hub, group, member.id);
      assert.equal(add.status, 200);

      const args = ['to the group', { g: group }, [1, 2, 3]];
      const send = await broker.sendToGroup(hub, group, 'message', args);
      assert.equal(send.status, 202);
      await member.expect('message', args);

      // the outsider must not have received the group message
      await broker.sendToConnection(hub, outsider.id, 'marker', ['outsider marker']);
      await outsider.expect('marker', ['outsider marker'], 'its marker (group message must not arrive)');

      const rm = await broker.removeFromGroup(hub, group, member.id);
      assert.equal(rm.status, 200);
      await broker.sendToGroup(hub, group, 'message', ['after removal']);
      await broker.sendToConnection(hub, member.id, 'marker', ['member marker']);
      await member.expect('marker', ['member marker'], 'its marker (group message after removal must not arrive)');
      assert.equal(outsider.queue.length, 0, `outsider got extra messages: ${JSON.stringify(outsider.queue)}`);
    });

    test(`group send reaches every member once, including both protocols (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('grp_multi');
      const group = unique('room');
      const a = await broker.connect(hub, { protocol, label: 'a' });
      const b = await broker.connect(hub, { protocol: other, label: 'b' });
      const c = await broker.connect(hub, { protocol, label: 'c (not a member)' });
      await broker.addToGroup(hub, group, a.id);
      await broker.addToGroup(hub, group, b.id);
      await broker.addToGroup(hub, group, a.id); // idempotent: still exactly one delivery
      await broker.sendToGroup(hub, group, 'message', ['multi', null]);
      await a.expect('message', ['multi', null]);
      await b.expect('message', ['multi', null]);
      await broker.broadcast(hub, 'marker', ['m']);
      for (const x of [a, b, c]) await x.expect('marker', ['m'], 'the marker (no duplicate / stray group message)');
    });

    test(`user-group add: group send reaches the user's connections; after removal not (${protocol})`, async () => {
      const { broker } = ctx;
      const hub = unique('ugrp');
      const group = unique('team');
      const gina1 = await broker.connect(hub, { protocol, userId: 'gina', label: 'gina1' });
      const gina2 = await broker.connect(hub, { protocol: other, userId: 'gina', label: 'gina2' });
      const hank = await broker.connect(hub, { protocol, userId: 'hank', label: 'hank' });

      const add = await broker.addUserToGroup(hub, 'gina', group);
      assert.equal(add.status, 200);
      const args = ['team news', { when: 1 }];
      await broker.sendToGroup(hub, group, 'message', args);
      await gina1.expect('message', args);
      await gina2.expect('message', args);
      await broker.sendToUser(hub, 'hank', 'marker', ['hank marker']);
      await hank.expect('marker', ['hank marker'], "hank's marker (group message must not arrive)");

      const rm = await broker.removeUserFromGroup(hub, 'gina', group);
      assert.equal(rm.status, 204);
      await broker.sendToGroup(hub, group, 'message', ['after user removal']);
      await broker.sendToUser(hub, 'gina', 'marker', ['gina marker']);
      await gina1.expect('marker', ['gina marker'], 'the marker (group message after user removal must not arrive)');
      await gina2.expect('marker', ['gina marker'], 'the marker (group message after user removal must not arrive)');
    });
  }

  test('group names with spaces and non-ASCII characters (URL-escaped) work', async () => {
    const { broker } = ctx;
    const hub = unique('grp_esc');
    const group = 'room α 1';
    const m = await broker.connect(hub, { protocol: 'messagepack' });
    await broker.addToGroup(hub, group, m.id); // .../groups/room%20%CE%B1%201/connections/...
    await broker.sendToGroup(hub, group, 'message', ['escaped group']);
    await m.expect('message', ['escaped group']);
  });

  test('groups are scoped to their hub', async () => {
    const { broker } = ctx;
    const hubA = unique('grp_hub_a');
    const hubB = unique('grp_hub_b');
    const group = 'shared-name';
    const a = await broker.connect(hubA, { protocol: 'json' });
    const b = await broker.connect(hubB, { protocol: 'json' });
    await broker.addToGroup(hubA, group, a.id);
    await broker.addToGroup(hubB, group, b.id);
    await broker.sendToGroup(hubA, group, 'message', ['A only']);
    await a.expect('message', ['A only']);
    await broker.sendToConnection(hubB, b.id, 'marker', ['b marker']);
    await b.expect('marker', ['b marker'], 'its marker (hub A group message must not arrive)');
  });

  test('a closed connection no longer receives group sends and does not break them', async () => {
    const { broker } = ctx;
    const hub = unique('grp_closed');
    const group = unique('room');
    const gone = await broker.connect(hub, { protocol: 'json' });
    const stays = await broker.connect(hub, { protocol: 'messagepack' });
    await broker.addToGroup(hub, group, gone.id);
    await broker.addToGroup(hub, group, stays.id);
    await gone.stop();
    await broker.sendToGroup(hub, group, 'message', ['still works']);
    await stays.expect('message', ['still works']);
  });
});
