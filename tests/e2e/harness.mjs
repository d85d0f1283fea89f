// Test harness for the Switchboard end-to-end suite.
//
// * starts the broker binary as a child process and parses its listen line,
// * mints HS256 JWTs with node:crypto (independently of the server's own code),
// * makes REST calls against the data-plane API,
// * connects the OFFICIAL JavaScript SignalR clients (JSON and MessagePack),
// * records received messages in an ordered inbox whose waits always time out.
//
// Environment:
//   SWITCHBOARD_BIN   path to the broker binary (default ../../target/debug/switchboard
//                     relative to this directory)
//   E2E_DEBUG=1       echo broker stdout/stderr and SignalR client logs to stderr

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

export { signalR };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DEBUG = process.env.E2E_DEBUG === '1' || process.env.E2E_DEBUG === 'true';

/** Default time to wait for any single expected event (message, close, start). */
export const WAIT_MS = 5000;
/** Both hub protocols every message-related test runs with. */
export const PROTOCOLS = ['json', 'messagepack'];
export const API_VERSION = '2022-06-01';

// ---------------------------------------------------------------------------
// small utilities

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a clear message if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `fn` (sync or async, returns truthy when done) every 25 ms until it is
 * truthy or `ms` elapsed; then throws with `what` (string or function) and the last value seen.
 */
export async function eventually(fn, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${ms} ms: ${typeof what === 'function' ? what() : what} (last value: ${JSON.stringify(last)})`);
    }
    await sleep(25);
  }
}

let uniqueCounter = 0;
/** A short unique name, e.g. for hubs/groups/users, safe in URLs. */
export function unique(prefix) {
  uniqueCounter += 1;
  return `${prefix}_${process.pid}_${uniqueCounter}_${randomBytes(3).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// JWT (HS256) minting

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * Signs a compact JWS. `alg` HS256 (default) or HS512, key = UTF-8 bytes of
 * `key`. `header` overrides/extends the header. `alg: 'none'` produces an
 * unsigned token (for negative tests).
 */
export function signJwt(claims, key, { alg = 'HS256', header = {} } = {}) {
  const h = { alg, typ: 'JWT', ...header };
  const signingInput = `${b64url(JSON.stringify(h))}.${b64url(JSON.stringify(claims))}`;
  if (alg === 'none') return `${signingInput}.`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  if (!hash) throw new Error(`unsupported alg ${alg}`);
  const sig = createHmac(hash, Buffer.from(key, 'utf8')).update(signingInput).digest();
  return `${signingInput}.${b64url(sig)}`;
}

function standardClaims(aud, { lifetime = 3600, now = Math.floor(Date.now() / 1000), extra = {} } = {}) {
  return { aud, exp: now + lifetime, iat: now, nbf: now, ...extra };
}

/** A random access key: 44 base64 chars (32 random bytes), like Azure's. */
export function randomAccessKey() {
  return randomBytes(32).toString('base64');
}

// ---------------------------------------------------------------------------
// broker process

/**
 * Starts `switchboard serve --listen 127.0.0.1:0 --mode serverless --access-key KEY`
 * (`mode: null`: no --mode flag; `extraArgs` are appended).
 * Resolves with a Broker once the stdout line `Listening on http(s)://127.0.0.1:<port>`
 * appeared. Rejects (and kills the child) after `startTimeoutMs` or if it exits.
 */
export async function startBroker({ mode = 'serverless', accessKey = randomAccessKey(), extraArgs = [], startTimeoutMs = 15000 } = {}) {
  const bin = path.resolve(HERE, process.env.SWITCHBOARD_BIN || '../../target/debug/switchboard');
  if (!existsSync(bin)) {
    throw new Error(`broker binary not found at ${bin}; build it with \`cargo build --bin switchboard\` or set SWITCHBOARD_BIN`);
  }
  // `mode: null` passes no --mode flag (the mode then comes from a --config file)
  const args = ['serve', '--listen', '127.0.0.1:0', ...(mode === null ? [] : ['--mode', mode]), '--access-key', accessKey, ...extraArgs];
  // hermetic: the broker reads SWITCHBOARD_* variables (config file, mode, keys...)
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  env.RUST_BACKTRACE = process.env.RUST_BACKTRACE || '1';
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const broker = new Broker(child, accessKey, `${bin} ${args.join(' ')}`);
  await broker._waitListening(startTimeoutMs);
  return broker;
}

/**
 * A Broker for a broker this process did not start (another process's, e.g. a test's child
 * that runs clients with other trust settings): REST calls and clients against `base`.
 */
export function remoteBroker(base, accessKey) {
  return Object.assign(Object.create(Broker.prototype), {
    base, accessKey, connections: new Set(), stdoutLines: [], stderrText: '',
  });
}

const liveChildren = new Set();
process.on('exit', () => {
  // last resort: never leave a broker running behind a crashed test file
  for (const c of liveChildren) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export class Broker {
  constructor(child, accessKey, commandLine) {
    this.child = child;
    this.accessKey = accessKey;
    this.commandLine = commandLine;
    this.stdoutLines = [];
    this.stderrText = '';
    this.port = undefined;
    this.base = undefined; // http://127.0.0.1:<port>
    this.exit = undefined; // { code, signal } once exited
    this.stopping = false;
    this.connections = new Set();
    liveChildren.add(child);

    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        liveChildren.delete(child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    child.on('error', (err) => {
      this.spawnError = err;
    });

    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      if (DEBUG) process.stderr.write(`[broker stdout] ${chunk}`);
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        this.stdoutLines.push(line);
        this._onLine?.(line);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      if (DEBUG) process.stderr.write(`[broker stderr] ${chunk}`);
      this.stderrText += chunk;
      if (this.stderrText.length > 200_000) this.stderrText = this.stderrText.slice(-100_000);
    });
  }

  _waitListening(ms) {
    return new Promise((resolve, reject) => {
      const fail = (why) => {
        clearTimeout(timer);
        this._onLine = undefined;
        try { this.child.kill('SIGKILL'); } catch { /* ignore */ }
        reject(new Error(`broker did not start: ${why}\ncommand: ${this.commandLine}\nstdout:\n${this.stdoutLines.join('\n')}\nstderr (tail):\n${this.stderrTail()}`));
      };
      const timer = setTimeout(() => fail(`no "Listening on http(s)://127.0.0.1:<port>" line on stdout within ${ms} ms`), ms);
      const check = (line) => {
        const m = /Listening on (https?:\/\/127\.0\.0\.1:(\d+))\/?\s*$/.exec(line);
        if (m) {
          clearTimeout(timer);
          this._onLine = undefined;
          this.port = Number(m[2]);
          this.base = m[1];
          resolve();
        }
      };
      this._onLine = check;
      for (const l of this.stdoutLines) check(l);
      this.exited.then(({ code, signal }) => {
        if (this.port === undefined) fail(`process exited early (code ${code}, signal ${signal})`);
      });
      this.child.on('error', (err) => fail(`spawn error: ${err.message}`));
    });
  }

  stderrTail(n = 4000) {
    return this.stderrText.slice(-n);
  }

  /** Kills the broker (SIGTERM, then SIGKILL after 3 s). Safe to call twice. */
  async stop() {
    this.stopping = true;
    for (const c of this.connections) {
      try { await withTimeout(c.stop(), 3000, 'connection.stop()'); } catch { /* broker may be dead */ }
    }
    this.connections.clear();
    if (this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => { try { this.child.kill('SIGKILL'); } catch { /* ignore */ } }, 3000);
    const res = await this.exited;
    clearTimeout(timer);
    return res;
  }

  /**
   * Throws if the broker died on its own or logged a Rust panic. Call in an
   * `after` hook (before stop) so a crash fails the suite loudly.
   */
  assertHealthy() {
    if (this.exit && !this.stopping) {
      throw new Error(`broker exited unexpectedly (code ${this.exit.code}, signal ${this.exit.signal})\nstderr (tail):\n${this.stderrTail()}`);
    }
    const idx = this.stderrText.indexOf('panicked at');
    if (idx >= 0) {
      throw new Error(`broker panicked:\n${this.stderrText.slice(Math.max(0, idx - 200), idx + 2000)}`);
    }
  }

  // ----- tokens -----

  /** Client token: aud = http://127.0.0.1/client/?hub=<hub> (no port). */
  clientToken(hub, { userId, claims = {}, key = this.accessKey, lifetime, now, aud, alg, header } = {}) {
    const extra = { ...claims };
    if (userId !== undefined) extra.nameid = userId;
    const audience = aud ?? `http://127.0.0.1/client/?hub=${hub}`;
    return signJwt(standardClaims(audience, { lifetime, now, extra }), key, { alg, header });
  }

  /** REST token for `url` (request URL as sent); the port is dropped from aud by default. */
  restToken(url, { key = this.accessKey, lifetime, now, aud, claims = {}, alg, header } = {}) {
    const audience = aud ?? stripPort(url);
    return signJwt(standardClaims(audience, { lifetime, now, extra: claims }), key, { alg, header });
  }

  // ----- REST -----

  /** Path + query for the 2022-06-01 API, e.g. api('chat', 'groups', g, ':send'). Segments are URI-encoded. */
  apiPath(hub, ...segments) {
    const parts = ['api', 'hubs', hub, ...segments].map((s) => (s.startsWith(':') ? s : encodeURIComponent(s)));
    return `/${parts.join('/')}`;
  }

  /**
   * Performs a REST call. `pathAndQuery` is e.g. `/api/hubs/chat/:send`; unless
   * `apiVersion: false`, `api-version=2022-06-01` is appended; `query` adds more
   * parameters. Token: `token` (string), `token: null` (no Authorization header),
   * or a fresh REST token for the exact URL (tokenOptions passed to restToken).
   * Resolves { status, headers, text, json, url }.
   */
  async rest(method, pathAndQuery, { body, rawBody, query = {}, apiVersion = true, token, tokenOptions = {}, headers = {} } = {}) {
    const url = new URL(pathAndQuery, this.base);
    if (apiVersion) url.searchParams.set('api-version', API_VERSION);
    for (const [k, v] of Object.entries(query)) url.searchParams.append(k, v);
    const urlString = url.toString();
    const h = { ...headers };
    const tok = token === undefined ? this.restToken(urlString, tokenOptions) : token;
    if (tok !== null) h.Authorization = `Bearer ${tok}`;
    let payload;
    if (rawBody !== undefined) {
      payload = rawBody;
      h['Content-Type'] ??= 'application/json';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      h['Content-Type'] ??= 'application/json';
    }
    const res = await withTimeout(fetch(urlString, { method, headers: h, body: payload }), WAIT_MS, `${method} ${urlString}`);
    const text = method === 'HEAD' ? '' : await withTimeout(res.text(), WAIT_MS, `body of ${method} ${urlString}`);
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    return { status: res.status, headers: res.headers, text, json, url: urlString };
  }

  /** REST call that must answer `expected`; otherwise throws with the full exchange. */
  async restExpect(expected, method, pathAndQuery, options = {}) {
    const r = await this.rest(method, pathAndQuery, options);
    if (r.status !== expected) {
      const body = options.rawBody ?? (options.body !== undefined ? JSON.stringify(options.body) : '');
      throw new Error(`${method} ${r.url}${body ? ` body=${body}` : ''}: expected HTTP ${expected}, got ${r.status} ${r.text ? `body=${r.text.slice(0, 500)}` : '(empty body)'}`);
    }
    return r;
  }

  // convenience senders (all assert the documented status code)
  broadcast(hub, target, args, query) {
    return this.restExpect(202, 'POST', this.apiPath(hub, ':send'), { body: { target, arguments: args }, query });
  }
  sendToUser(hub, user, target, args) {
    return this.restExpect(202, 'POST', this.apiPath(hub, 'users', user, ':send'), { body: { target, arguments: args } });
  }
  sendToGroup(hub, group, target, args) {
    return this.restExpect(202, 'POST', this.apiPath(hub, 'groups', group, ':send'), { body: { target, arguments: args } });
  }
  sendToConnection(hub, connectionId, target, args) {
    return this.restExpect(202, 'POST', this.apiPath(hub, 'connections', connectionId, ':send'), { body: { target, arguments: args } });
  }
  addToGroup(hub, group, connectionId) {
    return this.restExpect(200, 'PUT', this.apiPath(hub, 'groups', group, 'connections', connectionId));
  }
  removeFromGroup(hub, group, connectionId) {
    return this.restExpect(200, 'DELETE', this.apiPath(hub, 'groups', group, 'connections', connectionId));
  }
  addUserToGroup(hub, user, group) {
    return this.restExpect(200, 'PUT', this.apiPath(hub, 'users', user, 'groups', group));
  }
  removeUserFromGroup(hub, user, group) {
    return this.restExpect(204, 'DELETE', this.apiPath(hub, 'users', user, 'groups', group));
  }
  closeConnection(hub, connectionId, reason) {
    return this.restExpect(200, 'DELETE', this.apiPath(hub, 'connections', connectionId), { query: reason === undefined ? {} : { reason } });
  }
  async headStatus(hub, ...segments) {
    return (await this.rest('HEAD', this.apiPath(hub, ...segments))).status;
  }

  // ----- SignalR clients -----

  /**
   * Builds (does not start) an official SignalR HubConnection to
   * `${base}/client/?hub=${hub}`. `token` overrides the minted client token
   * (`token: null` = no accessTokenFactory at all).
   */
  buildClient(hub, { protocol = 'json', userId, token, tokenOptions = {}, transport, label, headers } = {}) {
    const tok = token === undefined ? this.clientToken(hub, { userId, ...tokenOptions }) : token;
    const logs = [];
    const name = label ?? `${protocol}${userId ? `:${userId}` : ''}@${hub}`;
    const logger = {
      log(level, message) {
        logs.push({ level, message });
        if (DEBUG) process.stderr.write(`[client ${name}] ${signalR.LogLevel[level]}: ${message}\n`);
      },
    };
    const options = {};
    if (tok !== null) options.accessTokenFactory = () => tok;
    if (transport !== undefined) options.transport = transport;
    // Extra request headers (negotiate, the transports), e.g. the Origin a browser would send.
    if (headers !== undefined) options.headers = headers;
    let builder = new signalR.HubConnectionBuilder()
      .withUrl(`${this.base}/client/?hub=${encodeURIComponent(hub)}`, options)
      .configureLogging(logger);
    if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
    else if (protocol !== 'json') throw new Error(`unknown protocol ${protocol}`);
    const conn = builder.build();
    conn.e2eLogs = logs;
    conn.e2eName = name;
    return conn;
  }

  /**
   * Builds, starts and tracks a client; returns a Client (connection + ordered inbox).
   * `targets` lists the hub method names the inbox records.
   */
  async connect(hub, { targets = DEFAULT_TARGETS, ...opts } = {}) {
    const conn = this.buildClient(hub, opts);
    const client = new Client(conn, targets);
    this.connections.add(conn);
    try {
      await withTimeout(conn.start(), WAIT_MS * 2, `start() of ${conn.e2eName}`);
    } catch (err) {
      this.connections.delete(conn);
      err.message = `${err.message}\nclient log:\n${client.logText()}`;
      throw err;
    }
    if (typeof conn.connectionId !== 'string' || conn.connectionId.length === 0) {
      throw new Error(`${conn.e2eName}: connectionId after start() is ${JSON.stringify(conn.connectionId)}`);
    }
    client.startedId = conn.connectionId;
    return client;
  }
}

export const DEFAULT_TARGETS = ['message', 'marker'];

function stripPort(urlString) {
  const u = new URL(urlString);
  u.port = '';
  return u.toString();
}

/** A started client plus an ordered inbox of everything it received. */
export class Client {
  constructor(conn, targets) {
    this.conn = conn;
    this.name = conn.e2eName;
    this.queue = [];
    this.waiters = [];
    this.received = []; // full history
    this.closeError = undefined;
    this.closed = new Promise((resolve) => {
      conn.onclose((err) => {
        this.closeError = err;
        this.isClosed = true;
        resolve(err);
      });
    });
    for (const t of targets) {
      conn.on(t, (...args) => this._push({ target: t, args }));
    }
  }

  /** The connectionId captured right after start() (the JS client nulls it once stopped). */
  get id() {
    return this.startedId ?? this.conn.connectionId;
  }

  get state() {
    return this.conn.state;
  }

  _push(msg) {
    this.received.push(msg);
    const w = this.waiters.shift();
    if (w) w(msg);
    else this.queue.push(msg);
  }

  logText() {
    return this.conn.e2eLogs.map((l) => `  ${signalR.LogLevel[l.level]}: ${l.message}`).join('\n');
  }

  /** Throws if the client saw a message for a target nobody registered. */
  assertNoUnknownTargets() {
    const bad = this.conn.e2eLogs.filter((l) => l.message.includes('No client method with the name'));
    if (bad.length) throw new Error(`${this.name} received messages for unexpected targets:\n${bad.map((b) => b.message).join('\n')}`);
  }

  /** The next received message {target, args}, in arrival order; throws after `ms`. */
  next(what = 'a message', ms = WAIT_MS) {
    this.assertNoUnknownTargets();
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const waiter = (msg) => {
        clearTimeout(timer);
        resolve(msg);
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.name} (id ${this.id}, state ${this.state}${this.isClosed ? `, closed: ${this.closeError?.message}` : ''}): timed out after ${ms} ms waiting for ${what}; received so far: ${JSON.stringify(this.received)}`));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** Awaits the next message and asserts it is exactly {target, args}. */
  async expect(target, args, what) {
    const label = what ?? `${target}(${JSON.stringify(args)})`;
    const msg = await this.next(label);
    const ok = msg.target === target && deepEqual(msg.args, args);
    if (!ok) {
      throw new Error(`${this.name}: expected next message ${target}(${JSON.stringify(args)}), got ${msg.target}(${JSON.stringify(msg.args)}); history: ${JSON.stringify(this.received)}`);
    }
    return msg;
  }

  /** Awaits the onclose callback; returns its Error (or undefined). */
  waitClosed(ms = WAIT_MS) {
    return withTimeout(this.closed, ms, `${this.name} (id ${this.id}) to be closed`);
  }

  stop() {
    return withTimeout(this.conn.stop(), 3000, `${this.name}.stop()`);
  }
}

function deepEqual(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

/**
 * Standard suite lifecycle: starts a broker before the tests of the enclosing
 * describe (or file) and always stops it after, failing if it crashed/panicked.
 * Returns a getter-backed object whose `.broker` is the live Broker.
 */
export function useBroker(hooks, options) {
  const ctx = { broker: undefined };
  hooks.before(async () => {
    ctx.broker = await startBroker(options);
  });
  hooks.after(async () => {
    const b = ctx.broker;
    if (!b) return;
    let healthError;
    try { b.assertHealthy(); } catch (e) { healthError = e; }
    await b.stop();
    if (healthError) throw healthError;
  });
  return ctx;
}

// ---------------------------------------------------------------------------
// Default mode: the example hub servers (examples/chat, examples/echo) and clients that
// negotiate through the app (the Azure redirect flow).
//
// Environment:
//   SWITCHBOARD_EXAMPLES_DIR  directory of the example binaries (default ../../target/debug/examples)
//   SWITCHBOARD_CHAT_BIN      the chat example binary (default <examples dir>/chat)
//   SWITCHBOARD_ECHO_BIN      the echo example binary (default <examples dir>/echo)

/** Client methods the chat example calls (all recorded by the inbox). */
export const CHAT_TARGETS = ['newMessage', 'joined', 'left', 'roomJoined', 'roomLeft', 'roomMessage', 'privateMessage'];
/** Client methods the echo example calls. */
export const ECHO_TARGETS = ['echo', 'broadcast'];

/**
 * The connection string of the broker: the one it printed (`Connection string: ...`) with the
 * key given to it in place of the `<the access key you gave>` it prints for a key it did not
 * generate.
 */
export function brokerConnectionString(broker) {
  const line = broker.stdoutLines.find((l) => l.startsWith('Connection string: '));
  if (line) {
    return line.slice('Connection string: '.length).trim()
      .replace('AccessKey=<the access key you gave>;', `AccessKey=${broker.accessKey};`);
  }
  // printed right after the listen line; fall back to the documented shape
  return `Endpoint=http://127.0.0.1;Port=${broker.port};AccessKey=${broker.accessKey};Version=1.0;`;
}

/** The value of an unlabelled counter in the broker's `GET /metrics`, or undefined. */
export async function brokerMetric(broker, name) {
  const res = await withTimeout(fetch(`${broker.base}/metrics`), WAIT_MS, `GET ${broker.base}/metrics`);
  const text = await withTimeout(res.text(), WAIT_MS, 'body of GET /metrics');
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${text.slice(0, 300)}`);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

function exampleBin(example) {
  const override = process.env[`SWITCHBOARD_${example.toUpperCase()}_BIN`];
  const dir = process.env.SWITCHBOARD_EXAMPLES_DIR || '../../target/debug/examples';
  return path.resolve(HERE, override || path.join(dir, example));
}

/**
 * Starts an example hub server (`chat` or `echo`) against `connectionString`:
 * `<bin> --connection-string CS --listen 127.0.0.1:0 [--server-id ID] [--connections N]`.
 * Resolves once its page / negotiate line is printed and, unless `waitConnected: false`, once it
 * printed `<example> hub server connected (<id>)`. Kills the child on failure.
 */
export async function startApp(example, { connectionString, serverId, connections, extraArgs = [], waitConnected = true, startTimeoutMs = 15000 } = {}) {
  const bin = exampleBin(example);
  if (!existsSync(bin)) {
    throw new Error(`example binary not found at ${bin}; build it with \`cargo build --example ${example}\` (or \`cargo build --workspace --all-targets\`) or set SWITCHBOARD_${example.toUpperCase()}_BIN`);
  }
  const args = ['--connection-string', connectionString, '--listen', '127.0.0.1:0'];
  if (serverId !== undefined) args.push('--server-id', serverId);
  if (connections !== undefined) args.push('--connections', String(connections));
  args.push(...extraArgs);
  // hermetic: the connection string comes from the flag only
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'Azure__SignalR__ConnectionString' && !k.startsWith('SWITCHBOARD_')));
  env.RUST_BACKTRACE = process.env.RUST_BACKTRACE || '1';
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const app = new AppServer(example, child, `${bin} ${args.join(' ')}`);
  try {
    const pageLine = example === 'chat'
      ? /^Chat page on (http:\/\/127\.0\.0\.1:\d+)\/$/
      : new RegExp(`^Negotiate on (http://127\\.0\\.0\\.1:\\d+)/${example}$`);
    const m = await app.waitForLine(pageLine, startTimeoutMs, 'its listen line');
    app.base = m[1];
    app.hubUrl = `${app.base}/${example}`;
    if (waitConnected) {
      const c = await app.waitForLine(new RegExp(`^${example} hub server connected \\((.+)\\)$`), startTimeoutMs, 'its "connected" line');
      app.serverId = c[1];
    }
  } catch (err) {
    await app.kill('SIGKILL');
    throw err;
  }
  return app;
}

/** A running example hub server process. */
export class AppServer {
  constructor(example, child, commandLine) {
    this.example = example;
    this.child = child;
    this.commandLine = commandLine;
    this.stdoutLines = [];
    this.stderrText = '';
    this.exit = undefined;
    this.killedOnPurpose = false;
    this.lineWaiters = new Set();
    liveChildren.add(child);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        liveChildren.delete(child);
        this.exit = { code, signal };
        for (const w of this.lineWaiters) w.onExit();
        resolve(this.exit);
      });
    });
    child.on('error', (err) => {
      this.spawnError = err;
    });
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      if (DEBUG) process.stderr.write(`[${example} stdout] ${chunk}`);
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r$/, '');
        pending = pending.slice(nl + 1);
        this.stdoutLines.push(line);
        for (const w of this.lineWaiters) w.onLine(line);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      if (DEBUG) process.stderr.write(`[${example} stderr] ${chunk}`);
      this.stderrText += chunk;
      if (this.stderrText.length > 200_000) this.stderrText = this.stderrText.slice(-100_000);
    });
  }

  get pid() {
    return this.child.pid;
  }

  describe() {
    return `command: ${this.commandLine}\nstdout:\n${this.stdoutLines.join('\n')}\nstderr (tail):\n${this.stderrText.slice(-4000)}`;
  }

  /** Resolves with the match of the first stdout line (past or future) matching `re`. */
  waitForLine(re, ms, what) {
    for (const l of this.stdoutLines) {
      const m = re.exec(l);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        onLine: (line) => {
          const m = re.exec(line);
          if (m) done(() => resolve(m));
        },
        onExit: () => done(() => reject(new Error(`${this.example} exited (code ${this.exit.code}, signal ${this.exit.signal}) before printing ${what}\n${this.describe()}`))),
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.example} did not print ${what} (${re}) within ${ms} ms\n${this.describe()}`))), ms);
      const done = (settle) => {
        clearTimeout(timer);
        this.lineWaiters.delete(waiter);
        settle();
      };
      this.lineWaiters.add(waiter);
      if (this.exit) waiter.onExit();
    });
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). Safe to call twice. */
  async kill(signal = 'SIGTERM', graceMs = 5000) {
    this.killedOnPurpose = true;
    if (this.exit) return this.exit;
    try { this.child.kill(signal); } catch { /* already gone */ }
    const timer = setTimeout(() => { try { this.child.kill('SIGKILL'); } catch { /* ignore */ } }, graceMs);
    const res = await this.exited;
    clearTimeout(timer);
    return res;
  }

  /** Graceful stop (SIGTERM: `HubServer::stop`), SIGKILL after 5 s. */
  stop() {
    return this.kill('SIGTERM');
  }

  /** Throws if the app died on its own or logged a Rust panic. */
  assertHealthy() {
    if (this.exit && !this.killedOnPurpose) {
      throw new Error(`${this.example} exited unexpectedly (code ${this.exit.code}, signal ${this.exit.signal})\n${this.describe()}`);
    }
    const idx = this.stderrText.indexOf('panicked at');
    if (idx >= 0) throw new Error(`${this.example} panicked:\n${this.stderrText.slice(Math.max(0, idx - 200), idx + 2000)}`);
  }
}

/**
 * Builds, starts and returns a Client of an app's hub through the APP's negotiate endpoint:
 * `withUrl(hubUrl?user=<userId>)` with no token factory; the app answers the Azure redirect
 * `{url, accessToken}` and the client follows it to the broker. `handlers` are registered
 * before start (`{ answer: (q) => ... }` for client results).
 */
export async function connectViaApp(hubUrl, { protocol = 'json', userId, targets = [], handlers = {}, label } = {}) {
  const logs = [];
  const name = label ?? `${protocol}${userId ? `:${userId}` : ''}@${hubUrl}`;
  const logger = {
    log(level, message) {
      logs.push({ level, message });
      if (DEBUG) process.stderr.write(`[client ${name}] ${signalR.LogLevel[level]}: ${message}\n`);
    },
  };
  const url = userId === undefined ? hubUrl : `${hubUrl}?user=${encodeURIComponent(userId)}`;
  let builder = new signalR.HubConnectionBuilder().withUrl(url).configureLogging(logger);
  if (protocol === 'messagepack') builder = builder.withHubProtocol(new MessagePackHubProtocol());
  else if (protocol !== 'json') throw new Error(`unknown protocol ${protocol}`);
  const conn = builder.build();
  conn.e2eLogs = logs;
  conn.e2eName = name;
  const client = new Client(conn, targets);
  for (const [method, fn] of Object.entries(handlers)) conn.on(method, fn);
  try {
    await withTimeout(conn.start(), WAIT_MS * 2, `start() of ${name} via ${url}`);
  } catch (err) {
    err.message = `${err.message}\nclient log:\n${client.logText()}`;
    throw err;
  }
  client.startedId = conn.connectionId;
  return client;
}

/** Whether `client` received `target` with arguments satisfying `pred`. */
export function received(client, target, pred = () => true) {
  return client.received.some((m) => m.target === target && pred(...m.args));
}

/**
 * Waits until `client` has received `target` with arguments satisfying `pred` (in any order
 * relative to other messages); returns that message's arguments.
 */
export async function waitReceived(client, target, pred = () => true, what = target, ms = WAIT_MS) {
  const msg = await eventually(
    () => client.received.find((m) => m.target === target && pred(...m.args)),
    () => `${client.name} (id ${client.id}, state ${client.state}${client.isClosed ? `, closed: ${client.closeError?.message}` : ''}) to receive ${what}; received so far: ${JSON.stringify(client.received)}`,
    ms,
  );
  return msg.args;
}
