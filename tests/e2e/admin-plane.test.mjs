// --admin-listen: the admin API and the metrics on a second, private port; the public port
// serves the official client and the REST API, and answers /admin and /metrics with 404.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, unique, eventually } from './harness.mjs';

describe('admin plane on its own port', () => {
  const ctx = useBroker({ before, after }, { extraArgs: ['--admin-listen', '127.0.0.1:0'] });

  /** The admin port's base URL, from the banner. */
  async function adminBase(broker) {
    const line = await eventually(() => broker.stdoutLines.find((l) => l.startsWith('Admin and metrics: ')),
      () => `an "Admin and metrics:" line (stdout: ${JSON.stringify(broker.stdoutLines)})`, 2000);
    return line.slice('Admin and metrics: '.length);
  }

  test('clients and REST on the public port; admin and metrics only on the admin port', async () => {
    const { broker } = ctx;
    const admin = await adminBase(broker);
    assert.match(admin, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(admin, broker.base);

    const hub = unique('plane');
    const client = await broker.connect(hub, { protocol: 'json' });
    await broker.broadcast(hub, 'message', ['public port']);
    await client.expect('message', ['public port']);

    for (const pathname of ['/metrics', '/admin/settings']) {
      const res = await fetch(`${broker.base}${pathname}`);
      assert.equal(res.status, 404, `${pathname} on the public port`);
      assert.equal((await res.json()).code, 'Error.NotFound');
    }
    const metrics = await fetch(`${admin}/metrics`);
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    const connected = /^switchboard_connections (\d+)$/m.exec(text);
    assert.ok(connected, 'the metrics name the current connections');
    assert.ok(Number(connected[1]) >= 1, 'the connected client is counted');
    // The official client connects over WebSockets, and the broadcast went out to it.
    const series = (name) => {
      const m = new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
      assert.ok(m, `${name} in /metrics`);
      return Number(m[1]);
    };
    assert.ok(series('switchboard_connections_by_transport{endpoint="client",transport="websockets"}') >= 1);
    assert.ok(series('switchboard_messages_total{endpoint="client",direction="out"}') >= 1);
    assert.ok(series('switchboard_bytes_total{endpoint="client",direction="out"}') > 0);

    const token = broker.restToken(`${admin}/admin/settings`);
    const settings = await fetch(`${admin}/admin/settings`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(settings.status, 200);
    assert.equal((await settings.json()).mode, 'serverless');
  });
});
