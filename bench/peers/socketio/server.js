// socket.io 4.8.4 peer for scripts/bench/peers.sh: one Node process on 127.0.0.1.
//
//   node server.js            # listens on 127.0.0.1:3000 (HOST / PORT override)
//
// Clients connect with engine.io v4 over WebSocket (/socket.io/?EIO=4&transport=websocket).
// POST /broadcast with any body calls io.emit('msg', body) — the body as one string — and answers
// 202 once the emit has been handed to every socket, so the publisher has the same shape as
// Nchan's POST /pub and Switchboard's REST broadcast. GET /health answers 200 with the client count.
// PING_INTERVAL_MS / PING_TIMEOUT_MS override engine.io's heartbeat (defaults 25000 / 20000).

"use strict";

const http = require("http");
const { Server } = require("socket.io");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/broadcast") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      io.emit("msg", Buffer.concat(chunks).toString("utf8"));
      res.writeHead(202, { "content-type": "text/plain" });
      res.end();
    });
    return;
  }
  if (req.method === "GET" && req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`${io.engine.clientsCount}\n`);
    return;
  }
  // socket.io handles its own path (/socket.io/); anything else is not found.
  if (!req.url.startsWith("/socket.io/")) {
    res.writeHead(404);
    res.end();
  }
});

// socket.io's defaults (25 s / 20 s) unless overridden, e.g. to test a client's pong handling.
const pingInterval = Number(process.env.PING_INTERVAL_MS || 25000);
const pingTimeout = Number(process.env.PING_TIMEOUT_MS || 20000);

const io = new Server(server, {
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval,
  pingTimeout,
});

server.keepAliveTimeout = 60000;
server.listen(port, host, () => {
  console.log(`socket.io ${require("socket.io/package.json").version} listening on ${host}:${port} (pid ${process.pid})`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
