// Seeing inside with the official client: the live trace (GET /admin/trace, Server-Sent
// Events read with fetch) shows each transport's connect and the reason of each disconnect, and
// the JSON resource logs on the broker's stderr say the same.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, unique, eventually, signalR, WAIT_MS } from './harness.mjs';

/** A live-trace viewer: the events it received so far, parsed. */
async function openTrace(broker, query = '') {
  const token = broker.restToken(`${broker.base}/admin`);
  const abort = new AbortController();
  const res = await fetch(`${broker.base}/admin/trace${query}`, {
    headers: { Authorization: `Bearer ${token}` },
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const viewer = { events: [], dropped: [], attached: false, close: () => abort.abort() };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  (async () => {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        return; // aborted
      }
      if (chunk.done) return;
      buf += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (event.startsWith(': attached')) viewer.attached = true;
        else if (event.startsWith('event: dropped\ndata: ')) viewer.dropped.push(JSON.parse(event.slice(21)).dropped);
        else if (event.startsWith('data: ')) viewer.events.push(JSON.parse(event.slice(6)));
      }
    }
  })();
  await eventually(() => viewer.attached, 'the trace to attach');
  return viewer;
}

const find = (viewer, op, id) => viewer.events.find((e) => e.operationName === op && e.properties.connectionId === id);

describe('live trace and resource logs', () => {
  const ctx = useBroker({ before, after }, { extraArgs: ['--log-format', 'json', '--log-level', 'connectivity=info'] });

  for (const [transport, name] of [
    [signalR.HttpTransportType.WebSockets, 'WebSockets'],
    [signalR.HttpTransportType.ServerSentEvents, 'ServerSentEvents'],
    [signalR.HttpTransportType.LongPolling, 'LongPolling'],
  ]) {
    test(`a ${name} client's connect and close, as the trace and the logs tell it`, async () => {
      const { broker } = ctx;
      const hub = unique('trace');
      const viewer = await openTrace(broker, `?hub=${hub}`);
      try {
        const client = await broker.connect(hub, { protocol: 'json', transport, userId: 'dora' });
        const id = client.id;
        const started = await eventually(() => find(viewer, 'ConnectionStarted', id), `ConnectionStarted of ${id}`);
        assert.equal(started.category, 'ConnectivityLogs');
        assert.equal(started.properties.transportType, name);
        assert.equal(started.properties.userId, 'dora');
        assert.equal(started.properties.hub, hub);
        assert.equal(started.callerIpAddress, '127.0.0.1');

        // The application closes it with a reason: the trace says which.
        await broker.closeConnection(hub, id, 'maintenance window');
        await client.waitClosed();
        const ended = await eventually(() => find(viewer, 'ConnectionEnded', id), `ConnectionEnded of ${id}`);
        assert.equal(ended.properties.closeCategory, 'closed_by_app_server');
        assert.match(ended.properties.message, /maintenance window/);

        // The same line on stderr, as JSON.
        const line = await eventually(() => broker.stderrText.split('\n').find((l) => l.includes(`"ConnectionEnded"`) && l.includes(id)),
          `the ConnectionEnded line of ${id} on stderr`, WAIT_MS);
        assert.equal(JSON.parse(line).properties.closeCategory, 'closed_by_app_server');
        assert.deepEqual(viewer.dropped, []);
      } finally {
        viewer.close();
      }
    });
  }

  test('a broadcast is traced once, with its hub', async () => {
    const { broker } = ctx;
    const hub = unique('trace');
    const viewer = await openTrace(broker, `?hub=${hub}&categories=messaging`);
    try {
      const client = await broker.connect(hub, { protocol: 'messagepack' });
      await broker.broadcast(hub, 'message', ['traced']);
      await client.expect('message', ['traced']);
      const traced = await eventually(() => viewer.events.find((e) => e.category === 'MessagingLogs'), 'the broadcast in the trace');
      assert.equal(traced.properties.messageType, 'BroadcastDataMessage');
      assert.equal(traced.properties.hub, hub);
      assert.ok(viewer.events.every((e) => e.category === 'MessagingLogs'), 'only the category asked for');
    } finally {
      viewer.close();
    }
  });
});
