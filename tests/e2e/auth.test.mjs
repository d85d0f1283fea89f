// 6. Bad tokens are refused: client connect (negotiate 401) and REST (401 + JSON body).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBroker, PROTOCOLS, unique, withTimeout, WAIT_MS, randomAccessKey, signJwt } from './harness.mjs';

async function assertStartRejected(broker, hub, opts, what) {
  const conn = broker.buildClient(hub, opts);
  let error;
  try {
    await withTimeout(conn.start(), WAIT_MS * 2, `start() with ${what}`);
  } catch (e) {
    error = e;
  }
  if (!error) {
    const id = conn.connectionId;
    await conn.stop();
    assert.fail(`start() with ${what} must be refused, but it connected (connectionId ${id})`);
  }
  assert.doesNotMatch(error.message, /timed out/, `start() with ${what} must be refused promptly`);
  assert.match(error.message, /\b401\b/, `start() with ${what} must fail with HTTP 401, got: ${error.message}`);
  assert.equal(conn.state, 'Disconnected');
}

const now = () => Math.floor(Date.now() / 1000);

function assertJson401(r, what) {
  assert.equal(r.status, 401, `${what}: expected 401, got ${r.status} ${r.text}`);
  assert.ok(r.json !== undefined && typeof r.json === 'object', `${what}: 401 body must be JSON, got ${JSON.stringify(r.text)}`);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/, `${what}: content-type`);
}

describe('authentication', () => {
  const ctx = useBroker({ before, after });

  for (const protocol of PROTOCOLS) {
    describe(`client connect refused (${protocol})`, () => {
      test('forged signature (signed with another key)', async () => {
        const { broker } = ctx;
        const hub = unique('auth');
        await assertStartRejected(broker, hub, { protocol, tokenOptions: { key: randomAccessKey() } }, 'a forged signature');
      });

      test('expired token', async () => {
        const { broker } = ctx;
        const hub = unique('auth');
        const t = now() - 7200;
        await assertStartRejected(broker, hub, { protocol, tokenOptions: { now: t, lifetime: 3600 } }, 'an expired token');
      });

      test('wrong audience: a REST-audience token', async () => {
        const { broker } = ctx;
        const hub = unique('auth');
        const token = broker.restToken(`http://127.0.0.1/api/hubs/${hub}/:send?api-version=2022-06-01`);
        await assertStartRejected(broker, hub, { protocol, token }, 'a REST-audience token');
      });

      test("wrong audience: another hub's client token", async () => {
        const { broker } = ctx;
        const hub = unique('auth');
        const token = broker.clientToken(unique('otherhub'));
        await assertStartRejected(broker, hub, { protocol, token }, "another hub's token");
      });

      test('no token at all', async () => {
        const { broker } = ctx;
        await assertStartRejected(broker, unique('auth'), { protocol, token: null }, 'no token');
      });

      test('alg "none" (unsigned) token', async () => {
        const { broker } = ctx;
        const hub = unique('auth');
        const token = broker.clientToken(hub, { alg: 'none' });
        await assertStartRejected(broker, hub, { protocol, token }, 'an unsigned alg=none token');
      });
    });
  }

  test('a kid header (the .NET SDK puts a meaningless key hash there) does not break validation', async () => {
    const { broker } = ctx;
    const hub = unique('auth_kid');
    const c = await broker.connect(hub, { protocol: 'messagepack', tokenOptions: { header: { kid: '-1234567890' } } });
    await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), {
      body: { target: 'message', arguments: ['kid ok'] },
      tokenOptions: { header: { kid: '987654321' } },
    });
    await c.expect('message', ['kid ok']);
  });

  test('HS512-signed client token is accepted', async () => {
    const { broker } = ctx;
    const hub = unique('auth_hs512');
    const c = await broker.connect(hub, { protocol: 'json', tokenOptions: { alg: 'HS512' } });
    assert.equal(c.state, 'Connected');
  });

  describe('REST refused with 401 and nothing is delivered', () => {
    test('client-audience token, forged, expired, missing, other-path, alg none', async () => {
      const { broker } = ctx;
      const hub = unique('auth_rest');
      const listener = await broker.connect(hub, { protocol: 'json', userId: 'u' });
      const p = broker.apiPath(hub, ':send');
      const body = { target: 'message', arguments: ['must not be delivered'] };
      const cases = [
        ['client-audience token', { token: broker.clientToken(hub) }],
        ['forged signature', { tokenOptions: { key: randomAccessKey() } }],
        ['expired token', { tokenOptions: { now: now() - 7200, lifetime: 3600 } }],
        ['no Authorization header', { token: null }],
        ['token for another path', { token: broker.restToken(`http://127.0.0.1${broker.apiPath(unique('x'), ':send')}?api-version=2022-06-01`) }],
        ['alg none', { tokenOptions: { alg: 'none' } }],
        ['garbage bearer', { token: 'not.a.jwt' }],
      ];
      for (const [what, opts] of cases) {
        const r = await broker.rest('POST', p, { body, ...opts });
        assertJson401(r, `POST ${p} with ${what}`);
        if (what === 'forged signature') {
          assert.equal(r.json.message, "Unauthorized: the token is not signed with any of this broker's access keys.", `POST ${p} with ${what}: message`);
        }
      }
      // same for the other operation kinds
      const ops = [
        ['POST', broker.apiPath(hub, 'users', 'u', ':send'), body],
        ['POST', broker.apiPath(hub, 'connections', listener.id, ':send'), body],
        ['POST', broker.apiPath(hub, 'groups', 'g', ':send'), body],
        ['PUT', broker.apiPath(hub, 'groups', 'g', 'connections', listener.id)],
        ['PUT', broker.apiPath(hub, 'users', 'u', 'groups', 'g')],
        ['DELETE', broker.apiPath(hub, 'connections', listener.id)],
      ];
      for (const [method, path, b] of ops) {
        const r = await broker.rest(method, path, { body: b, token: broker.clientToken(hub) });
        assertJson401(r, `${method} ${path} with a client-audience token`);
      }
      const head = await broker.rest('HEAD', broker.apiPath(hub, 'connections', listener.id), { token: broker.clientToken(hub) });
      assert.equal(head.status, 401, `HEAD with client-audience token: got ${head.status}`);

      // v1 with a wrong key
      const v1 = `/api/v1/hubs/${hub}`;
      const r1 = await broker.rest('POST', v1, { apiVersion: false, body, tokenOptions: { aud: `http://127.0.0.1${v1}`, key: randomAccessKey() } });
      assertJson401(r1, `POST ${v1} with a forged token`);

      // nothing of the above was delivered, the connection was not closed, no group join happened
      await broker.broadcast(hub, 'marker', ['marker']);
      await listener.expect('marker', ['marker'], 'the marker (rejected REST calls must not deliver)');
      assert.equal(listener.state, 'Connected');
      assert.equal(await broker.headStatus(hub, 'groups', 'g'), 404, 'rejected PUT must not have joined the group');
    });

    test('REST token audience with the port included is also accepted', async () => {
      const { broker } = ctx;
      const hub = unique('auth_port');
      const c = await broker.connect(hub, { protocol: 'messagepack' });
      const url = `${broker.base}${broker.apiPath(hub, ':send')}?api-version=2022-06-01`;
      await broker.restExpect(202, 'POST', broker.apiPath(hub, ':send'), {
        body: { target: 'message', arguments: ['port aud'] },
        tokenOptions: { aud: url },
      });
      await c.expect('message', ['port aud']);
    });
  });

  test('signJwt sanity: token structure', () => {
    const t = signJwt({ aud: 'x' }, 'k');
    assert.equal(t.split('.').length, 3);
    assert.deepEqual(JSON.parse(Buffer.from(t.split('.')[0], 'base64url')), { alg: 'HS256', typ: 'JWT' });
  });
});
