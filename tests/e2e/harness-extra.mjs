// Extra helpers for the upstream / Classic / runtime / CLI end-to-end tests:
//
// * `startUpstream()`: a real HTTP upstream (node:http on 127.0.0.1:0) that records every
//   request the broker POSTs and answers it with a per-hub handler (or holds it unanswered),
// * `runSwitchboard()`: runs a `switchboard` sub-command (`admin`, `send`) to completion,
// * `tempDir()` / `writeFile`, the admin token, the HMAC signature of a connection id,
// * decoding the upstream's MessagePack bodies (the msgpack library the official MessagePack
//   protocol depends on, and the official protocol itself).
import { createServer } from 'node:http';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';
import { DEBUG, WAIT_MS, signJwt, withTimeout, signalR } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The broker binary (same rule as harness.mjs). */
export function brokerBin() {
  return path.resolve(HERE, process.env.SWITCHBOARD_BIN || '../../target/debug/switchboard');
}

// ---------------------------------------------------------------------------
// upstream

/**
 * A recorded upstream request: `{ seq, method, url, path, hub, category, event, headers, body,
 * text }`. `hub`/`category`/`event` come from the path `/<hub>/api/<category>/<event>` (or
 * `/<prefix>/<hub>/<category>/<event>`), decoded; `headers` are lower-cased (node:http).
 */
function parsePath(p) {
  const parts = p.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
  if (parts.length === 4 && parts[1] === 'api') return { hub: parts[0], category: parts[2], event: parts[3] };
  if (parts.length === 4) return { hub: parts[1], category: parts[2], event: parts[3] }; // /<prefix>/<hub>/<category>/<event>
  return { hub: undefined, category: undefined, event: undefined };
}

/**
 * Starts an HTTP upstream. Each request is answered by the handler registered for its hub
 * (`upstream.handle(hub, fn)`), else by `defaultHandler`, else with 200 and an empty body. A
 * handler gets the recorded request and returns (or resolves) `{ status, headers, body }` or
 * the string `'hold'` (never answered; destroyed at close()).
 */
export async function startUpstream({ defaultHandler } = {}) {
  const up = new Upstream(defaultHandler);
  await up._listen();
  return up;
}

export class Upstream {
  constructor(defaultHandler) {
    this.defaultHandler = defaultHandler;
    this.handlers = new Map();
    this.requests = [];
    this.waiters = new Set();
    this.held = new Set();
    this.errors = [];
    this.server = createServer((req, res) => this._onRequest(req, res));
    this.server.keepAliveTimeout = 30_000;
  }

  _listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        this.base = `http://127.0.0.1:${this.port}`;
        resolve();
      });
    });
  }

  /** The `[[upstream]]` URL template of this server: `<base>/{hub}/api/{category}/{event}`. */
  get template() {
    return `${this.base}/{hub}/api/{category}/{event}`;
  }

  /** Registers the handler of one hub's requests. */
  handle(hub, fn) {
    this.handlers.set(hub, fn);
  }

  _onRequest(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const url = new URL(req.url, this.base);
      const body = Buffer.concat(chunks);
      const rec = {
        seq: this.requests.length,
        method: req.method,
        url: req.url,
        path: url.pathname,
        ...parsePath(url.pathname),
        headers: req.headers,
        body,
        text: body.toString('utf8'),
      };
      this.requests.push(rec);
      if (DEBUG) process.stderr.write(`[upstream] ${req.method} ${req.url} conn=${req.headers['x-asrs-connection-id']} ${rec.text.slice(0, 200)}\n`);
      for (const w of [...this.waiters]) w(rec);
      let answer;
      try {
        const fn = this.handlers.get(rec.hub) ?? this.defaultHandler;
        answer = fn ? await fn(rec) : undefined;
      } catch (err) {
        this.errors.push(err);
        answer = { status: 599, body: String(err) };
      }
      if (answer === 'hold') {
        this.held.add(res);
        res.on('close', () => this.held.delete(res));
        return;
      }
      const { status = 200, headers = {}, body: out } = answer ?? {};
      const payload = out === undefined ? undefined : Buffer.from(out);
      res.writeHead(status, { ...(payload ? { 'Content-Length': payload.length } : { 'Content-Length': 0 }), ...headers });
      res.end(payload);
    });
  }

  /** Requests of one connection id, in arrival order. */
  forConnection(id) {
    return this.requests.filter((r) => r.headers['x-asrs-connection-id'] === id);
  }

  /** The first request (past or future) satisfying `pred`; throws after `ms` naming `what`. */
  waitFor(pred, what, ms = WAIT_MS) {
    const found = this.requests.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = (rec) => {
        if (!pred(rec)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(rec);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const seen = this.requests.slice(-20).map((r) => `${r.method} ${r.url} conn=${r.headers['x-asrs-connection-id']} body=${r.text.slice(0, 80)}`);
        reject(new Error(`upstream: timed out after ${ms} ms waiting for ${what}; last requests:\n  ${seen.join('\n  ') || '(none)'}`));
      }, ms);
      this.waiters.add(waiter);
    });
  }

  /** Waits for the request of `event` (`connected`, `disconnected`, a target) of connection `id`. */
  waitEvent(id, event, ms) {
    return this.waitFor((r) => r.headers['x-asrs-connection-id'] === id && r.event === event,
      `event "${event}" of connection ${id}`, ms);
  }

  /** Throws if a handler threw. */
  assertHealthy() {
    if (this.errors.length) throw this.errors[0];
  }

  async close() {
    for (const res of this.held) res.destroy();
    this.held.clear();
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------
// hub protocol helpers for upstream answers

const msgpackProtocol = new MessagePackHubProtocol();

/** A framed Completion with `result` in `protocol`, as an upstream answers a blocking invocation. */
export function framedCompletion(protocol, invocationId, result) {
  if (protocol === 'json') return Buffer.from(`${JSON.stringify({ type: 3, invocationId, result })}\x1e`);
  return Buffer.from(msgpackProtocol.writeMessage({ type: 3, invocationId, result, headers: {} }));
}

/** A framed non-blocking Invocation of `target(args)` in `protocol`. */
export function framedInvocation(protocol, target, args) {
  if (protocol === 'json') return Buffer.from(`${JSON.stringify({ type: 1, target, arguments: args })}\x1e`);
  return Buffer.from(msgpackProtocol.writeMessage({ type: 1, target, arguments: args, headers: {} }));
}

/** VarInt length prefix of the MessagePack hub protocol framing. */
function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

let msgpackLib;
try {
  // the decoder of the msgpack library the official MessagePack protocol depends on
  msgpackLib = await import('@msgpack/msgpack');
} catch {
  msgpackLib = undefined;
}

/**
 * Decodes an upstream MessagePack body (an UNFRAMED hub message): `{ raw, message }` where `raw`
 * is the array as @msgpack/msgpack decodes it (undefined when that package is not installed) and
 * `message` is what the official MessagePackHubProtocol parses once the VarInt prefix is added.
 * Throws if the body is not exactly one message.
 */
export function decodeUnframedMsgpack(body) {
  const raw = msgpackLib ? msgpackLib.decode(body) : undefined;
  const framed = Buffer.concat([varint(body.length), body]);
  const ab = framed.buffer.slice(framed.byteOffset, framed.byteOffset + framed.length);
  const messages = msgpackProtocol.parseMessages(ab, { log() {} });
  if (messages.length !== 1) throw new Error(`expected one MessagePack message, parsed ${messages.length}`);
  return { raw, message: messages[0] };
}

export const HAVE_MSGPACK_LIB = msgpackLib !== undefined;

// ---------------------------------------------------------------------------
// signatures, tokens

/**
 * `sha256=<hex>` of HMAC-SHA256(key, connectionId) for each key, comma-joined
 * (docs/protocol.md#upstream-requests).
 */
export function upstreamSignature(keys, connectionId) {
  return keys.map((k) => `sha256=${createHmac('sha256', Buffer.from(k, 'utf8')).update(connectionId, 'utf8').digest('hex')}`).join(',');
}

/** An admin token (aud `http://127.0.0.1/admin/settings`) signed with `key`. */
export function adminToken(key, { aud = 'http://127.0.0.1/admin/settings', lifetime = 300 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ aud, exp: now + lifetime, iat: now, nbf: now }, key);
}

/** GET/PATCH `<base>/admin/settings`; resolves `{ status, json, text }`. */
export async function adminSettings(base, key, { method = 'GET', body, token } = {}) {
  const headers = { Authorization: `Bearer ${token ?? adminToken(key)}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await withTimeout(fetch(`${base}/admin/settings`, { method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) }), WAIT_MS, `${method} ${base}/admin/settings`);
  const text = await withTimeout(res.text(), WAIT_MS, `body of ${method} /admin/settings`);
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, json, text };
}

// ---------------------------------------------------------------------------
// files and sub-commands

/** A fresh temporary directory, removed by the returned `cleanup()`. */
export function tempDir(prefix = 'switchboard-e2e-') {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, file: (name) => path.join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeFile(file, text) {
  writeFileSync(file, text);
  return file;
}

/**
 * Runs `switchboard <args...>` to completion (killed after `timeoutMs`); resolves
 * `{ code, signal, stdout, stderr }` (never rejects on a non-zero exit).
 */
export function runSwitchboard(args, { timeoutMs = 10_000 } = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  return new Promise((resolve, reject) => {
    execFile(brokerBin(), args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err && err.code === 'ENOENT') return reject(new Error(`broker binary not found at ${brokerBin()}`));
      if (err && err.killed) return reject(new Error(`switchboard ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, signal: err?.signal ?? null, stdout, stderr });
    });
  });
}

export { signalR };
