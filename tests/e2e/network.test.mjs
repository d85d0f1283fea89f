// [network] rules with the official client: a public port that serves client connections only,
// the REST API allowed for one address as a trusted proxy forwards it, admin and metrics refused
// with 403 and a JSON body.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { useBroker, PROTOCOLS, unique } from './harness.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'switchboard-e2e-network-'));
const config = path.join(dir, 'switchboard.toml');
writeFileSync(config, `
[network]
default_action = "deny"
# The tests' requests come from 127.0.0.1, here also the reverse proxy in front.
trusted_proxies = ["127.0.0.1"]

[[network.rules]]
cidrs = ["127.0.0.1", "::1"]
allow = ["ClientConnection"]

[[network.rules]]
# The application server's address, as the proxy forwards it.
cidrs = ["192.0.2.10/32"]
allow = ["RESTAPI"]
`);

const APP = { 'X-Forwarded-For': '192.0.2.10' };

describe('network rules', () => {
  const ctx = useBroker({ before, after }, { extraArgs: ['--config', config] });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const protocol of PROTOCOLS) {
    test(`${protocol}: the official client connects and gets what the allowed application sends`, async () => {
      const { broker } = ctx;
      const hub = unique('acl');
      const client = await broker.connect(hub, { protocol });
      await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), {
        body: { target: 'message', arguments: ['through the rules', protocol] },
        headers: APP,
      });
      await client.expect('message', ['through the rules', protocol]);
    });
  }

  test('REST from any other address, admin and metrics get 403 with a JSON body', async () => {
    const { broker } = ctx;
    const hub = unique('acl');
    const rest = await broker.rest('POST', broker.apiPath(hub, ':send'), { body: { target: 'message', arguments: [] } });
    assert.equal(rest.status, 403, rest.text);
    assert.equal(rest.json.code, 'Error.Forbidden.NetworkRules');
    assert.match(rest.json.message, /RESTAPI requests from 127\.0\.0\.1/);
    const spoofed = await broker.rest('POST', broker.apiPath(hub, ':send'), {
      body: { target: 'message', arguments: [] },
      headers: { 'X-Forwarded-For': '192.0.2.10, 198.51.100.7' },
    });
    assert.equal(spoofed.status, 403, 'an entry the client wrote in front does not count');
    for (const [pathname, kind] of [['/admin/settings', 'Admin'], ['/metrics', 'Metrics']]) {
      const res = await fetch(`${broker.base}${pathname}`);
      assert.equal(res.status, 403, pathname);
      const body = await res.json();
      assert.match(body.message, new RegExp(`${kind} requests`));
    }
    const health = await fetch(`${broker.base}/healthz`);
    assert.equal(health.status, 200, 'health checks are not governed by the rules');
  });
});
