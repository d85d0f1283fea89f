// 11. `switchboard send` (the management client on the command line) with the connection string
//     the broker printed: broadcast, --user, --group (after a REST group add), --connection; the
//     official JS clients (JSON and MessagePack) receive exactly the `--args` values. A bad
//     `--args` exits 64 with one stderr line and sends nothing.
//
// Absence ("X must not receive it") is proven with a REST broadcast marker sent afterwards:
// it must be the client's next message.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, brokerConnectionString, unique } from './harness.mjs';
import { runSwitchboard } from './harness-extra.mjs';

const HUB = 'chat';
const TARGETS = ['note', 'marker'];
const ARGS = '[1,"x",{"a":true}]';
const EXPECTED = [1, 'x', { a: true }];

describe('switchboard send', () => {
  const ctx = useBroker({ before, after }, { mode: 'serverless' });
  const c = {};

  before(async () => {
    const { broker } = ctx;
    c.u1json = await broker.connect(HUB, { protocol: 'json', userId: 'u1', targets: TARGETS, label: 'u1-json' });
    c.u1mp = await broker.connect(HUB, { protocol: 'messagepack', userId: 'u1', targets: TARGETS, label: 'u1-msgpack' });
    c.u2 = await broker.connect(HUB, { protocol: 'messagepack', userId: 'u2', targets: TARGETS, label: 'u2-msgpack' });
    c.anon = await broker.connect(HUB, { protocol: 'json', targets: TARGETS, label: 'anonymous-json' });
    c.all = [c.u1json, c.u1mp, c.u2, c.anon];
  });

  /** `switchboard send --connection-string CS --hub chat --target note --args ARGS ...extra`. */
  function send(extra, { args = ARGS, target = 'note' } = {}) {
    return runSwitchboard(['send', '--connection-string', brokerConnectionString(ctx.broker), '--hub', HUB, '--target', target, '--args', args, ...extra]);
  }

  function assertSent(r, what) {
    assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.equal(r.stdout, `sent to ${what} of hub '${HUB}' (202)\n`);
    assert.equal(r.stderr, '');
  }

  /** A REST broadcast marker; every client in `others` must get it as its NEXT message. */
  async function markerNext(others) {
    const m = unique('marker');
    await ctx.broker.broadcast(HUB, 'marker', [m]);
    for (const o of others) await o.expect('marker', [m], `the marker (${o.name} must not have received the note)`);
    // the recipients got the marker too, after the note
    for (const o of c.all.filter((x) => !others.includes(x))) await o.expect('marker', [m]);
  }

  test('the printed connection string names the broker', () => {
    const cs = brokerConnectionString(ctx.broker);
    assert.equal(cs, `Endpoint=http://127.0.0.1;Port=${ctx.broker.port};AccessKey=${ctx.broker.accessKey};Version=1.0;`);
  });

  test('broadcast: every client receives exactly the --args values', async () => {
    assertSent(await send([]), 'all');
    for (const x of c.all) await x.expect('note', EXPECTED);
  });

  test('broadcast of richer JSON values reaches JSON and MessagePack clients unchanged', async () => {
    const values = [null, 1.5, -7, 'é ✓ "q" \\ \n', [1, [2, []]], { n: { m: [] }, t: false }];
    assertSent(await send([], { args: JSON.stringify(values) }), 'all');
    for (const x of c.all) await x.expect('note', values);
  });

  test('--user u1: both connections of u1, nobody else', async () => {
    assertSent(await send(['--user', 'u1']), "user 'u1'");
    await c.u1json.expect('note', EXPECTED);
    await c.u1mp.expect('note', EXPECTED);
    await markerNext([c.u2, c.anon]);
  });

  test('--group: the members added through REST, nobody else', async () => {
    const group = unique('grp');
    await ctx.broker.addToGroup(HUB, group, c.u2.id);
    await ctx.broker.addToGroup(HUB, group, c.anon.id);
    assertSent(await send(['--group', group]), `group '${group}'`);
    await c.u2.expect('note', EXPECTED);
    await c.anon.expect('note', EXPECTED);
    await markerNext([c.u1json, c.u1mp]);
  });

  test('--connection: that connection only', async () => {
    assertSent(await send(['--connection', c.u1mp.id]), `connection '${c.u1mp.id}'`);
    await c.u1mp.expect('note', EXPECTED);
    await markerNext([c.u1json, c.u2, c.anon]);
  });

  test('invalid --args JSON exits 64 with one stderr line and sends nothing', async () => {
    for (const bad of ['[1,', '{"a":1}', 'not json']) {
      const r = await send([], { args: bad });
      assert.equal(r.code, 64, `--args ${bad}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^switchboard: --args must be a JSON array: [^\n]+\n$/, `--args ${bad}: stderr ${JSON.stringify(r.stderr)}`);
    }
    await markerNext(c.all);
    for (const x of c.all) x.assertNoUnknownTargets();
  });
});
