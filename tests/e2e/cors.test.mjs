// An origin list (--cors-allowed-origin): the official client, sending a listed page's Origin
// as a browser would, negotiates and connects; the answers carry the CORS headers for that
// origin only (a browser would keep another origin's page from reading them).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique } from './harness.mjs';

const APP = 'https://app.example.com';

describe('CORS origin list', () => {
  const ctx = useBroker({ before, after }, { extraArgs: ['--cors-allowed-origin', APP] });

  for (const protocol of PROTOCOLS) {
    test(`${protocol}: the official client of a listed origin connects and receives`, async () => {
      const { broker } = ctx;
      const hub = unique('cors');
      const client = await broker.connect(hub, { protocol, headers: { Origin: APP } });
      await broker.broadcast(hub, 'message', ['for the listed origin']);
      await client.expect('message', ['for the listed origin']);
    });
  }

  test('negotiate answers a listed origin with CORS headers and another without', async () => {
    const { broker } = ctx;
    const hub = unique('cors');
    const negotiate = (origin) => fetch(`${broker.base}/client/negotiate?hub=${hub}&negotiateVersion=1`, {
      method: 'POST',
      headers: { Origin: origin, Authorization: `Bearer ${broker.clientToken(hub)}` },
    });
    const listed = await negotiate(APP);
    assert.equal(listed.status, 200);
    assert.equal(listed.headers.get('access-control-allow-origin'), APP);
    assert.equal(listed.headers.get('access-control-allow-credentials'), 'true');
    const other = await negotiate('https://evil.example.net');
    assert.equal(other.status, 200, 'served: CORS is the browser\'s to enforce');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.match(other.headers.get('vary') ?? '', /Origin/i);
  });
});
