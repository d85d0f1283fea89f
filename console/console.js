// Switchboard web console: plain JavaScript, no framework, no build step, nothing loaded from
// elsewhere. It calls the broker's admin JSON API with an admin token kept in sessionStorage.
//
// Every piece of data goes into the DOM as text (textContent, attributes set one by one), never
// as HTML: hub, group and user names and log messages come from clients.
"use strict";

(() => {
  const TOKEN_KEY = "switchboard.adminToken";
  const POLL_MS = 1500;
  const SAMPLES = 120;
  const TRACE_ROWS = 2000;
  const PAGE = 50;

  // ---- DOM helpers -------------------------------------------------------------------------

  /** An element with attributes (`class`, `for`, `on*` handlers, properties) and children
   * (strings become text nodes). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  const $ = (id) => document.getElementById(id);

  function clear(el) {
    while (el.firstChild) el.firstChild.remove();
  }

  function table(headers, rows) {
    return h("div", { class: "table-wrap" },
      h("table", null,
        h("thead", null, h("tr", null, headers.map((t) =>
          h("th", { class: t.endsWith("#") ? "num" : null }, t.replace(/#$/, ""))))),
        h("tbody", null, rows.length ? rows : h("tr", null,
          h("td", { colspan: headers.length, class: "muted" }, "Nothing here.")))));
  }

  // ---- Formatting --------------------------------------------------------------------------

  function fmtNum(n) {
    if (n === undefined || n === null || Number.isNaN(n)) return "—";
    const abs = Math.abs(n);
    if (abs >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (abs >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (abs >= 1e4) return (n / 1e3).toFixed(1) + "k";
    if (abs >= 100 || Number.isInteger(n)) return String(Math.round(n));
    return n.toFixed(1);
  }

  function fmtBytes(n) {
    if (n === undefined || n === null || Number.isNaN(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(1)) + " " + units[i];
  }

  function fmtDuration(secs) {
    const d = Math.floor(secs / 86400), hr = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, s = Math.floor(secs % 60);
    if (d) return `${d}d ${hr}h`;
    if (hr) return `${hr}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function fmtSince(ms) {
    if (!ms) return "—";
    const ago = Math.max(0, (Date.now() - ms) / 1000);
    return `${fmtDuration(ago)} ago`;
  }

  // ---- Token and API -----------------------------------------------------------------------

  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY),
    set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
    clear: () => sessionStorage.removeItem(TOKEN_KEY),
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token.get() };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (res.status === 401) {
      signOut("The broker refused the token (missing, expired or signed with another key). Sign in again.");
      throw new ApiError(401, "unauthorized");
    }
    if (!res.ok) {
      const message = (body && (body.message || body.error)) || text || res.statusText;
      throw new ApiError(res.status, `${res.status}: ${message}`);
    }
    return body;
  }

  function looksLikeJwt(s) {
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(s);
  }

  function b64url(bytes) {
    let bin = "";
    for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /** An admin JWT (HS256, audience `<origin>/admin`, 8 hours) signed with `key` by WebCrypto. */
  async function signAdminToken(key) {
    const enc = new TextEncoder();
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(enc.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
    const claims = { aud: location.origin + "/admin", iat: now, nbf: now - 60, exp: now + 8 * 3600 };
    const payload = b64url(enc.encode(JSON.stringify(claims)));
    const hmac = await crypto.subtle.importKey("raw", enc.encode(key),
      { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const sig = await crypto.subtle.sign("HMAC", hmac, enc.encode(header + "." + payload));
    return header + "." + payload + "." + b64url(sig);
  }

  async function onSignIn(event) {
    event.preventDefault();
    const input = $("credential");
    const value = input.value.trim();
    const error = $("signin-error");
    error.textContent = "";
    if (!value) return;
    let candidate = value;
    if (!looksLikeJwt(value)) {
      if (!(window.crypto && crypto.subtle)) {
        error.textContent = "This page cannot sign a token here (WebCrypto needs https or localhost). " +
          "Paste a token from `switchboard token --admin` instead.";
        return;
      }
      candidate = await signAdminToken(value);
    }
    input.value = "";
    token.set(candidate);
    try {
      await api("/admin/overview");
    } catch (e) {
      if (e.status !== 401) { token.clear(); error.textContent = String(e.message || e); }
      return;
    }
    showApp();
  }

  function signOut(message) {
    token.clear();
    stopPages();
    $("nav").hidden = true;
    $("signout").hidden = true;
    $("view").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
  }

  function showApp() {
    $("signin").hidden = true;
    $("nav").hidden = false;
    $("signout").hidden = false;
    $("view").hidden = false;
    route();
  }

  // ---- Router ------------------------------------------------------------------------------

  /** Stops what the current page runs (polling, a trace stream) when another page opens. */
  let cleanups = [];
  function onLeave(fn) { cleanups.push(fn); }
  function stopPages() {
    for (const fn of cleanups) { try { fn(); } catch { /* already stopped */ } }
    cleanups = [];
  }

  function route() {
    if (!token.get()) { signOut(); return; }
    stopPages();
    const parts = location.hash.replace(/^#\/?/, "").split("?")[0].split("/").map(decodeURIComponent);
    const query = new URLSearchParams(location.hash.split("?")[1] || "");
    const page = parts[0] || "overview";
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === page || (page === "hub" && a.dataset.page === "hubs"));
    }
    const view = $("view");
    clear(view);
    const pages = { overview, hubs, hub, servers, settings, trace };
    const show = pages[page] || overview;
    Promise.resolve(show(view, parts.slice(1), query)).catch((e) => {
      if (e && e.status === 401) return;
      view.append(h("p", { class: "error" }, String((e && e.message) || e)));
    });
  }

  // ---- Overview: cards and live charts -----------------------------------------------------

  /** A live chart: one or two series drawn as SVG polylines scaled to their own maximum. */
  function chart(title, format, names) {
    const path1 = svg("polyline", { class: "line", "vector-effect": "non-scaling-stroke" });
    const path2 = names && names[1] ? svg("polyline", { class: "line second", "vector-effect": "non-scaling-stroke" }) : null;
    const area = svg("polygon", { class: "area" });
    const box = svg("svg", { viewBox: `0 0 ${SAMPLES - 1} 100`, preserveAspectRatio: "none", role: "img", "aria-label": title },
      svg("line", { class: "grid", x1: 0, x2: SAMPLES - 1, y1: 50, y2: 50, "vector-effect": "non-scaling-stroke" }),
      area, path1, path2);
    const now = h("span", { class: "now" }, "—");
    const peak = h("span", { class: "legend" }, "");
    const el = h("div", { class: "chart" },
      h("header", null, h("span", { class: "title" }, title), now),
      box,
      h("div", { class: "legend" },
        names && names[1] ? [h("span", { class: "first" }, "■ " + names[0]), " ", h("span", { class: "second" }, "■ " + names[1]), " · "] : null,
        peak));
    function draw(series1, series2) {
      const all = series1.concat(series2 || []).filter((v) => v !== null);
      const max = Math.max(1, ...all);
      // Until the window is full, the samples so far stretch across the whole width.
      const x = (i, n) => (n < 2 ? SAMPLES - 1 : (i * (SAMPLES - 1)) / (n - 1));
      const pts = (s) => s.map((v, i) => `${x(i, s.length)},${100 - ((v || 0) / max) * 96}`).join(" ");
      path1.setAttribute("points", pts(series1));
      if (series1.length) area.setAttribute("points", `0,100 ${pts(series1)} ${SAMPLES - 1},100`);
      if (path2 && series2) path2.setAttribute("points", pts(series2));
      const last1 = series1[series1.length - 1];
      const last2 = series2 ? series2[series2.length - 1] : undefined;
      now.textContent = series2 ? `${format(last1)} / ${format(last2)}` : format(last1);
      const secs = Math.round((Math.max(series1.length, 1) * POLL_MS) / 1000);
      peak.textContent = `peak ${format(all.length ? Math.max(...all) : 0)} in the last ${fmtDuration(secs)}`;
    }
    return { el, draw };
  }

  function card(label, value, sub) {
    const v = h("div", { class: "value" }, value);
    const s = h("div", { class: "sub" }, sub || "");
    return { el: h("div", { class: "card" }, h("div", { class: "label" }, label), v, s), v, s };
  }

  function overview(view) {
    view.append(h("h1", null, "Overview"));
    const c = {
      mode: card("Service mode", "—"),
      clients: card("Client connections", "—"),
      servers: card("Hub-server connections", "—"),
      hubs: card("Hubs", "—"),
    };
    view.append(h("div", { class: "cards", id: "overview-cards" }, Object.values(c).map((x) => x.el)));
    const about = h("p", { class: "muted" });
    view.append(about);
    const charts = {
      clients: chart("Client connections", fmtNum),
      messages: chart("Messages / s", fmtNum, ["in", "out"]),
      bytes: chart("Bytes / s", fmtBytes, ["in", "out"]),
    };
    const grid = h("div", { class: "charts" }, charts.clients.el, charts.messages.el, charts.bytes.el);
    view.append(grid);
    const history = { clients: [], msgIn: [], msgOut: [], bytesIn: [], bytesOut: [] };
    let previous = null;
    let stopped = false;
    const push = (arr, v) => { arr.push(v); if (arr.length > SAMPLES) arr.shift(); };
    const rate = (now, before, key) => {
      if (!before || now.counters[key] === undefined || before.counters[key] === undefined) return null;
      const dt = (now.time - before.time) / 1000;
      return dt > 0 ? Math.max(0, (now.counters[key] - before.counters[key]) / dt) : null;
    };
    async function tick() {
      if (stopped) return;
      try {
        const o = await api("/admin/overview");
        if (stopped) return;
        c.mode.v.textContent = o.mode;
        c.mode.s.textContent = o.cluster ? `cluster node ${o.nodeId || ""} (this node's numbers)` : "single node";
        c.clients.v.textContent = fmtNum(o.clients.total);
        c.clients.s.textContent = `WebSockets ${o.clients.webSockets} · SSE ${o.clients.serverSentEvents} · long polling ${o.clients.longPolling}`;
        c.servers.v.textContent = fmtNum(o.serverConnections);
        c.hubs.v.textContent = fmtNum(o.hubs);
        about.textContent = `Switchboard ${o.version} · up ${fmtDuration(o.uptimeSecs)} · started ${new Date(o.startedAt).toLocaleString()}`;
        push(history.clients, o.clients.total);
        if (previous) {
          push(history.msgIn, rate(o, previous, "messagesReceived"));
          push(history.msgOut, rate(o, previous, "messagesDelivered"));
          push(history.bytesIn, rate(o, previous, "bytesReceived"));
          push(history.bytesOut, rate(o, previous, "bytesSent"));
        }
        previous = o;
        charts.clients.draw(history.clients);
        charts.messages.draw(history.msgIn, history.msgOut);
        const hasBytes = o.counters.bytesReceived !== undefined || o.counters.bytesSent !== undefined;
        charts.bytes.el.hidden = !hasBytes;
        if (hasBytes) charts.bytes.draw(history.bytesIn, history.bytesOut);
      } catch (e) {
        if (e.status === 401) return;
        about.textContent = `Cannot read the overview: ${e.message || e}`;
      }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    }
    let timer = null;
    onLeave(() => { stopped = true; clearTimeout(timer); });
    return tick();
  }

  // ---- Hubs and what they hold ---------------------------------------------------------------

  /** A paged list: `load(after)` answers `{value, total, next}`; `row(item)` makes a `<tr>`. */
  function pagedTable(container, headers, load, row, describe) {
    const stack = [];
    let after = null;
    const status = h("span", { class: "muted" });
    const prev = h("button", { class: "secondary", type: "button", onclick: () => { after = stack.pop() ?? null; show(); } }, "← Previous");
    const next = h("button", { class: "secondary", type: "button" }, "Next →");
    const refresh = h("button", { class: "secondary", type: "button", onclick: () => show() }, "Refresh");
    const body = h("div");
    container.append(body, h("div", { class: "pager" }, prev, next, refresh, status));
    let nextAfter = null;
    next.addEventListener("click", () => { stack.push(after); after = nextAfter; show(); });
    async function show() {
      const page = await load(after);
      clear(body);
      body.append(table(headers, page.value.map(row)));
      nextAfter = page.next ?? null;
      next.disabled = !page.next;
      prev.disabled = stack.length === 0;
      const first = stack.length * PAGE;
      status.textContent = page.value.length
        ? `${first + 1}–${first + page.value.length} of ${page.total} ${describe}`
        : `${page.total} ${describe}`;
    }
    return show();
  }

  const enc = encodeURIComponent;

  function pageQuery(after, extra) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (after) q.set("after", after);
    for (const [k, v] of Object.entries(extra || {})) if (v) q.set(k, v);
    return q.toString();
  }

  function hubs(view) {
    view.append(h("h1", null, "Hubs"),
      h("p", { class: "muted" }, "Hubs running on this node, with their client connections."));
    const box = h("div", { class: "panel" });
    view.append(box);
    return pagedTable(box, ["Hub", "Clients#"],
      (after) => api(`/admin/hubs?${pageQuery(after)}`),
      (hb) => h("tr", null,
        h("td", null, h("a", { href: `#/hub/${enc(hb.name)}` }, hb.name)),
        h("td", { class: "num" }, fmtNum(hb.clients))),
      "hubs");
  }

  function hub(view, parts, query) {
    const name = parts[0] || "";
    const tab = parts[1] || "connections";
    view.append(h("h1", null, "Hub ", h("span", { class: "mono" }, name)));
    const tabs = [["connections", "Connections"], ["groups", "Groups"], ["users", "Users"], ["servers", "Hub servers"]];
    view.append(h("nav", { class: "tabs" }, tabs.map(([id, label]) =>
      h("a", { href: `#/hub/${enc(name)}/${id}`, class: id === tab ? "active" : null }, label))));
    const box = h("div", { class: "panel" });
    view.append(box);
    const base = `/admin/hubs/${enc(name)}`;
    if (tab === "groups") {
      return pagedTable(box, ["Group", "Connections#"],
        (after) => api(`${base}/groups?${pageQuery(after)}`),
        (g) => h("tr", null,
          h("td", null, h("a", { href: `#/hub/${enc(name)}/connections?group=${enc(g.name)}` }, g.name)),
          h("td", { class: "num" }, fmtNum(g.connections))),
        "groups");
    }
    if (tab === "users") {
      return pagedTable(box, ["User", "Connections#"],
        (after) => api(`${base}/users?${pageQuery(after)}`),
        (u) => h("tr", null,
          h("td", null, h("a", { href: `#/hub/${enc(name)}/connections?user=${enc(u.userId)}` }, u.userId)),
          h("td", { class: "num" }, fmtNum(u.connections))),
        "users");
    }
    if (tab === "servers") {
      return serverTable(box, () => api(`${base}/servers`), false);
    }
    const group = query.get("group"), user = query.get("user");
    if (group || user) {
      box.append(h("p", null, "Only ", group ? ["group ", h("strong", null, group)] : ["user ", h("strong", null, user)],
        " · ", h("a", { href: `#/hub/${enc(name)}/connections` }, "show all")));
    }
    return pagedTable(box, ["Connection", "Transport", "Protocol", "User", "Groups", "Hub server", "Connected"],
      (after) => api(`${base}/connections?${pageQuery(after, { group, user })}`),
      (c) => h("tr", { "data-connection": c.connectionId },
        h("td", { class: "mono" }, c.connectionId),
        h("td", { class: "transport" }, c.transport || "—"),
        h("td", null, c.protocol),
        h("td", { class: "user" }, c.userId ?? h("span", { class: "muted" }, "anonymous")),
        h("td", null, c.groups.map((g) => h("span", { class: "pill" }, g)),
          c.groupCount > c.groups.length ? h("span", { class: "muted" }, `+${c.groupCount - c.groups.length}`) : null),
        h("td", { class: "mono" }, c.server ? `${c.server.serverId} #${c.server.connection}` : h("span", { class: "muted" }, "none")),
        h("td", { title: new Date(c.connectedAt).toLocaleString() }, fmtSince(c.connectedAt))),
      "connections");
  }

  async function serverTable(box, load, withHub) {
    const list = await load();
    const headers = (withHub ? ["Hub"] : []).concat(["Server id", "Connection", "Type", "Clients#", "State"]);
    box.append(table(headers, list.value.map((s) => h("tr", null,
      withHub ? h("td", null, h("a", { href: `#/hub/${enc(s.hub)}/servers` }, s.hub)) : null,
      h("td", { class: "mono" }, s.serverId),
      h("td", null, `#${s.connection}`),
      h("td", null, s.connectionType),
      h("td", { class: "num" }, fmtNum(s.clients)),
      h("td", null, s.shuttingDown ? h("span", { class: "warn" }, "shutting down") : "serving",
        s.node ? ` (node ${s.node})` : "")))),
    h("p", { class: "muted" }, list.value.length < list.total
      ? `First ${list.value.length} of ${list.total} hub-server connections.`
      : `${list.total} hub-server connections.`));
  }

  function servers(view) {
    view.append(h("h1", null, "Hub-server connections"),
      h("p", { class: "muted" }, "App servers connected to this node, by hub (Default mode routes each client to one of them)."));
    const box = h("div", { class: "panel" });
    view.append(box);
    return serverTable(box, () => api("/admin/servers"), true);
  }

  // ---- Settings ----------------------------------------------------------------------------

  async function settings(view) {
    view.append(h("h1", null, "Settings"));
    const current = await api("/admin/settings");

    // Service mode.
    const modeMsg = h("p", { class: "muted", id: "mode-message" });
    const mode = h("select", { id: "mode-select" },
      ["default", "serverless", "classic"].map((m) => h("option", { value: m, selected: m === current.mode }, m)));
    const modeNow = h("strong", { id: "mode-current" }, current.mode);
    view.append(h("section", { class: "panel" },
      h("h2", null, "Service mode"),
      h("p", null, "Now: ", modeNow, ". Open clients keep their route; switching to serverless closes the hub-server connections that carry clients."),
      h("label", { for: "mode-select" }, "Mode"), mode,
      h("button", { type: "button", id: "mode-apply", onclick: async () => {
        modeMsg.textContent = "";
        try {
          const s = await api("/admin/settings", { method: "PATCH", body: { mode: mode.value } });
          modeNow.textContent = s.mode;
          modeMsg.textContent = `Mode is now ${s.mode}.`;
        } catch (e) { modeMsg.textContent = String(e.message || e); }
      } }, "Apply"),
      modeMsg));

    // Upstream rules.
    const rules = h("div");
    const addRule = (r) => {
      const field = (label, key, value) => h("div", null, h("label", null, label),
        h("input", { value: value ?? "", "data-key": key, spellcheck: "false" }));
      const row = h("div", { class: "rule" },
        field("URL template", "url_template", r.url_template),
        field("Hubs", "hub_pattern", r.hub_pattern ?? "*"),
        field("Categories", "category_pattern", r.category_pattern ?? "*"),
        field("Events", "event_pattern", r.event_pattern ?? "*"),
        h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove"));
      rules.append(row);
    };
    (current.upstream || []).forEach(addRule);
    const upMsg = h("p", { class: "muted" });
    view.append(h("section", { class: "panel" },
      h("h2", null, "Upstream rules"),
      h("p", { class: "muted" }, "First match wins. Query values are shown as *** (they may be keys): give whole URLs again when you save."),
      rules,
      h("button", { type: "button", class: "secondary", onclick: () => addRule({}) }, "Add rule"), " ",
      h("button", { type: "button", onclick: async () => {
        const upstream = [...rules.querySelectorAll(".rule")].map((row) => {
          const r = {};
          for (const input of row.querySelectorAll("input")) r[input.dataset.key] = input.value.trim();
          return r;
        });
        try {
          await api("/admin/settings", { method: "PATCH", body: { upstream } });
          upMsg.textContent = `Saved ${upstream.length} rule(s).`;
        } catch (e) { upMsg.textContent = String(e.message || e); }
      } }, "Save rules"),
      upMsg));

    // Access keys.
    const primary = h("input", { type: "password", autocomplete: "new-password", id: "key-primary" });
    const secondary = h("input", { type: "password", autocomplete: "new-password", id: "key-secondary" });
    const keyMsg = h("p", { class: "muted" });
    view.append(h("section", { class: "panel" },
      h("h2", null, "Access keys"),
      h("p", null, `${current.accessKeys.count} key(s) in force. Rotating replaces all of them: tokens signed with a removed key stop working for new requests (open connections stay). Keep the old key as secondary while clients move.`),
      h("label", { for: "key-primary" }, "New primary key (32+ characters)"), primary,
      h("label", { for: "key-secondary" }, "Secondary key (optional)"), secondary,
      h("button", { type: "button", onclick: async () => {
        const keys = [primary.value, secondary.value].filter((k) => k);
        if (!keys.length) { keyMsg.textContent = "Give at least one key."; return; }
        if (!confirm("Replace the access keys? Tokens signed with other keys stop working.")) return;
        try {
          const s = await api("/admin/settings", { method: "PATCH", body: { accessKeys: keys } });
          primary.value = ""; secondary.value = "";
          keyMsg.textContent = `${s.accessKeys.count} key(s) in force now. If your admin token was signed with an access key, sign in again with the new one.`;
        } catch (e) { keyMsg.textContent = String(e.message || e); }
      } }, "Rotate keys"),
      keyMsg));

    // Log levels (served by the broker's events module; older brokers answer 404).
    const logs = h("section", { class: "panel" }, h("h2", null, "Log levels"));
    view.append(logs);
    try {
      const levels = await api("/admin/logs");
      const selects = {};
      for (const [cat, level] of Object.entries(levels)) {
        selects[cat] = h("select", { id: `log-${cat}` },
          ["off", "error", "warning", "info", "debug"].map((l) => h("option", { value: l, selected: l === level }, l)));
        logs.append(h("div", { class: "level-row" }, h("label", { for: `log-${cat}` }, cat), selects[cat]));
      }
      const logMsg = h("p", { class: "muted" });
      logs.append(h("button", { type: "button", onclick: async () => {
        const body = {};
        for (const [cat, sel] of Object.entries(selects)) body[cat] = sel.value;
        try {
          const now = await api("/admin/logs", { method: "PATCH", body });
          logMsg.textContent = "In force: " + Object.entries(now).map(([k, v]) => `${k} ${v}`).join(", ");
        } catch (e) { logMsg.textContent = String(e.message || e); }
      } }, "Apply levels"), logMsg);
    } catch (e) {
      if (e.status === 401) return;
      logs.append(h("p", { class: "muted" }, e.status === 404
        ? "This broker does not serve log levels (/admin/logs)."
        : String(e.message || e)));
    }
  }

  // ---- Live trace --------------------------------------------------------------------------

  const TRACE_COLUMNS = [
    ["time", (e) => e.time],
    ["level", (e) => e.level],
    ["category", (e) => e.category],
    ["operationName", (e) => e.operationName],
    ["hub", (e) => e.properties && e.properties.hub],
    ["connectionId", (e) => e.properties && e.properties.connectionId],
    ["userId", (e) => e.properties && e.properties.userId],
    ["transportType", (e) => e.properties && e.properties.transportType],
    ["callerIpAddress", (e) => e.callerIpAddress],
    ["message", (e) => e.properties && e.properties.message],
  ];

  /** A CSV cell: quoted, and a leading = + - @ neutralised so spreadsheets do not run it. */
  function csvCell(v) {
    let s = v === undefined || v === null ? "" : String(v);
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return '"' + s.replace(/"/g, '""') + '"';
  }

  function trace(view) {
    view.append(h("h1", null, "Live trace"),
      h("p", { class: "muted" }, "Events of this node as they happen, in Azure's resource-log shape: every level of the chosen categories, whatever the log levels (those decide what is written to the broker's log)."));
    const cats = [["connectivity", "Connectivity"], ["messaging", "Messaging"], ["http", "HTTP requests"]];
    const boxes = Object.fromEntries(cats.map(([id]) => [id, h("input", { type: "checkbox", checked: true, id: `cat-${id}` })]));
    const hubF = h("input", { id: "trace-hub", placeholder: "any" });
    const connF = h("input", { id: "trace-connection", placeholder: "any" });
    const userF = h("input", { id: "trace-user", placeholder: "any" });
    const start = h("button", { type: "button", id: "trace-start" }, "Start");
    const stop = h("button", { type: "button", class: "secondary", id: "trace-stop", disabled: true }, "Stop");
    const clearBtn = h("button", { type: "button", class: "secondary" }, "Clear");
    const exportBtn = h("button", { type: "button", class: "secondary", id: "trace-export" }, "Export CSV");
    const status = h("p", { class: "muted", id: "trace-status" }, "Stopped.");
    const dropped = h("div", { class: "banner", id: "trace-dropped", hidden: true });
    const tbody = h("tbody", { id: "trace-rows" });
    view.append(h("section", { class: "panel" },
      h("div", { class: "checks" }, cats.map(([id, label]) => h("label", null, boxes[id], label))),
      h("div", { class: "toolbar" },
        h("div", null, h("label", { for: "trace-hub" }, "Hub"), hubF),
        h("div", null, h("label", { for: "trace-connection" }, "Connection id"), connF),
        h("div", null, h("label", { for: "trace-user" }, "User id"), userF),
        h("div", { class: "actions" }, start, " ", stop, " ", clearBtn, " ", exportBtn)),
      status, dropped,
      h("div", { class: "table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, ["Time", "Level", "Category", "Operation", "Hub", "Connection", "User", "Message"].map((t) => h("th", null, t)))),
        tbody))));

    const events = [];
    let controller = null;

    function addEvent(e) {
      events.push(e);
      if (events.length > TRACE_ROWS) events.shift();
      const p = e.properties || {};
      tbody.prepend(h("tr", null,
        h("td", { class: "mono" }, (e.time || "").replace("T", " ").replace("Z", "")),
        h("td", null, e.level || ""),
        h("td", null, (e.category || "").replace(/Logs$/, "")),
        h("td", null, e.operationName || ""),
        h("td", null, p.hub || ""),
        h("td", { class: "mono" }, p.connectionId || ""),
        h("td", null, p.userId || ""),
        h("td", null, p.message || "")));
      while (tbody.children.length > TRACE_ROWS) tbody.lastChild.remove();
    }

    async function run() {
      const q = new URLSearchParams();
      const chosen = cats.map(([id]) => id).filter((id) => boxes[id].checked);
      q.set("categories", chosen.join(","));
      if (hubF.value.trim()) q.set("hub", hubF.value.trim());
      if (connF.value.trim()) q.set("connectionId", connF.value.trim());
      if (userF.value.trim()) q.set("userId", userF.value.trim());
      controller = new AbortController();
      start.disabled = true; stop.disabled = false;
      dropped.hidden = true;
      status.textContent = "Connecting…";
      try {
        const res = await fetch(`/admin/trace?${q}`, {
          headers: { Authorization: "Bearer " + token.get(), Accept: "text/event-stream" },
          signal: controller.signal,
          cache: "no-store",
        });
        if (res.status === 401) { signOut("The broker refused the token. Sign in again."); return; }
        if (res.status === 404) { status.textContent = "This broker does not serve the live trace (/admin/trace)."; return; }
        if (res.status === 429) { status.textContent = "Too many viewers are watching this broker's trace; try again when one stops."; return; }
        if (!res.ok || !res.body) { status.textContent = `The trace answered ${res.status}.`; return; }
        status.textContent = "Live: waiting for events…";
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
            let kind = "message";
            const data = [];
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (!data.length) continue;
            let obj;
            try { obj = JSON.parse(data.join("\n")); } catch { continue; }
            if (kind === "dropped") {
              dropped.hidden = false;
              dropped.textContent = `${obj.dropped} event(s) dropped: this viewer could not keep up (narrow the filters).`;
            } else {
              addEvent(obj);
              status.textContent = `Live: ${events.length} event(s) shown.`;
            }
          }
        }
        status.textContent = "The trace ended.";
      } catch (e) {
        status.textContent = e.name === "AbortError" ? "Stopped." : `The trace failed: ${e.message || e}`;
      } finally {
        start.disabled = false; stop.disabled = true;
        controller = null;
      }
    }

    start.addEventListener("click", () => { run(); });
    stop.addEventListener("click", () => { if (controller) controller.abort(); });
    clearBtn.addEventListener("click", () => { events.length = 0; clear(tbody); });
    exportBtn.addEventListener("click", () => {
      const lines = [TRACE_COLUMNS.map(([n]) => csvCell(n)).join(",")];
      for (const e of events) lines.push(TRACE_COLUMNS.map(([, get]) => csvCell(get(e))).join(","));
      const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `switchboard-trace-${new Date().toISOString().replace(/[:.]/g, "-")}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    });
    onLeave(() => { if (controller) controller.abort(); });
  }

  // ---- Start -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (e) => { onSignIn(e).catch((err) => { $("signin-error").textContent = String(err.message || err); }); });
    $("signout").addEventListener("click", () => signOut("Signed out."));
    $("subtle-note").textContent = window.crypto && crypto.subtle
      ? "An access key pasted here is turned into an 8-hour admin token with WebCrypto."
      : "This page is not on https or localhost, so it cannot sign a token from a key: paste a token.";
    window.addEventListener("hashchange", () => { if (token.get()) route(); });
    if (token.get()) showApp(); else signOut();
  });
})();
