// TLS on the listener (--tls-cert/--tls-key): the official client over wss:// and https:// with
// every transport, trusting a CA minted for this run (openssl; no key material is committed)
// through NODE_EXTRA_CA_CERTS, as a Node application would; refused without it; plain HTTP on
// the TLS port.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useBroker, withTimeout } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** A throwaway CA and a certificate for localhost / 127.0.0.1 it signed, in `dir`. */
function mintCertificates(dir) {
  const openssl = (...args) => {
    try {
      execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      if (err.code === 'ENOENT') {
        throw new Error('openssl is missing: the TLS tests mint their certificates with it (apt-get install openssl)');
      }
      throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr}`);
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-days', '1', '-subj', '/CN=Switchboard e2e test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'server.ext', '-out', 'server.pem');
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

/** Run the client fixture in a child Node process with `env`; its JSON line and exit code. */
async function runClients(broker, env) {
  const child = spawn(process.execPath, [path.join(HERE, 'fixtures', 'tls-client.mjs'), broker.base, broker.accessKey], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => { stdout += c; });
  child.stderr.on('data', (c) => { stderr += c; });
  const code = await withTimeout(new Promise((resolve) => child.on('exit', resolve)), 45000, 'the TLS client process');
  const line = stdout.trim().split('\n').pop();
  let result;
  try { result = JSON.parse(line); } catch { result = undefined; }
  assert.ok(result, `the client process printed no result (exit ${code})\nstdout: ${stdout}\nstderr: ${stderr}`);
  return { code, result, stderr };
}

/** A counter from /metrics, fetched over https trusting the test CA. */
function metric(broker, name) {
  return withTimeout(new Promise((resolve, reject) => {
    https.get(`${broker.base}/metrics`, { ca: readFileSync(files.ca) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        const line = text.split('\n').find((l) => l.startsWith(`${name} `));
        if (line === undefined) reject(new Error(`no ${name} in /metrics`));
        else resolve(Number(line.split(' ')[1]));
      });
    }).on('error', reject);
  }), 5000, `GET ${broker.base}/metrics`);
}

const dir = mkdtempSync(path.join(tmpdir(), 'switchboard-e2e-tls-'));
const files = mintCertificates(dir);

describe('TLS', () => {
  const ctx = useBroker({ before, after }, { extraArgs: ['--tls-cert', files.cert, '--tls-key', files.key] });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the broker announces https:// and an https connection string', () => {
    const { broker } = ctx;
    assert.equal(broker.stdoutLines[0], `Listening on https://127.0.0.1:${broker.port}`);
    assert.equal(broker.base, `https://127.0.0.1:${broker.port}`);
    assert.ok(broker.stdoutLines.some((l) => l.startsWith(`Connection string: Endpoint=https://127.0.0.1;Port=${broker.port};`)),
      JSON.stringify(broker.stdoutLines));
  });

  test('the official client connects over wss:// and https:// with every transport and protocol', async () => {
    const { code, result, stderr } = await runClients(ctx.broker, { NODE_EXTRA_CA_CERTS: files.ca });
    assert.equal(code, 0, `${JSON.stringify(result)}\n${stderr}`);
    assert.deepEqual(result.results.map((r) => `${r.transport}/${r.protocol}`), [
      'WebSockets/json', 'WebSockets/messagepack', 'ServerSentEvents/json', 'LongPolling/json', 'LongPolling/messagepack',
    ]);
  });

  test('a client that does not trust the CA refuses the certificate', async () => {
    const before = await metric(ctx.broker, 'switchboard_tls_handshake_failures_total');
    const { code, result } = await runClients(ctx.broker, { NODE_EXTRA_CA_CERTS: '' });
    assert.notEqual(code, 0);
    assert.equal(result.ok, false);
    assert.match(result.error, /negotiation/);
    // The broker saw the client end the handshake (it refused the certificate).
    assert.ok(await metric(ctx.broker, 'switchboard_tls_handshake_failures_total') > before);
  });

  test('plain HTTP on the TLS port gets a 400 with a JSON body that says https://', async () => {
    const res = await fetch(`http://127.0.0.1:${ctx.broker.port}/client/negotiate?hub=chat`, { method: 'POST' });
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type'), /application\/json/);
    const body = await res.json();
    assert.equal(body.code, 'Error.InvalidRequest');
    assert.match(body.message, /https:\/\//);
  });
});
