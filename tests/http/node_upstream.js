// An upstream nobody in sseplay wrote: Node's own http server (issue 24's proof).
// Prints its port on stdout once it listens.
const http = require("http");
const zlib = require("zlib");

let release = null; // resolves the held stream of /hold

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (url.pathname === "/hold") {
      // Event 1, then nothing until /release is asked for: a proxy that holds event 1
      // back for more bytes never gives it to its client.
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
      res.write(": hello\n\nid: 1\nevent: first\ndata: one\n\n");
      new Promise((resolve) => (release = resolve)).then(() => {
        res.end("data:two\nretry: 3000\n\n");
      });
    } else if (url.pathname === "/release") {
      if (release) release();
      res.end("released");
    } else if (url.pathname === "/split") {
      // One event in two writes 0.4 s apart.
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: hel");
      setTimeout(() => res.end("lo\n\n"), 400);
    } else if (url.pathname === "/gzip") {
      res.writeHead(200, { "Content-Type": "text/event-stream", "Content-Encoding": "gzip" });
      const gz = zlib.createGzip();
      gz.pipe(res);
      gz.write("data: a\n\n");
      gz.flush(() => {
        gz.write("data: b\r\n\r\n");
        gz.end();
      });
    } else if (url.pathname === "/secret") {
      const ok =
        req.headers["authorization"] === "Bearer sk-SECRET-AUTH" &&
        url.searchParams.get("key") === "SECRET-KEY" &&
        req.headers["x-custom-secret"] === "SECRET-CUSTOM";
      res.writeHead(ok ? 200 : 401, {
        "Content-Type": "application/json",
        "Set-Cookie": "session=SECRET-COOKIE",
      });
      res.end(JSON.stringify({ ok }));
    } else if (url.pathname === "/echo") {
      res.writeHead(200, { "Content-Type": "text/plain", "X-Method": req.method });
      res.end("got " + body.toString());
    } else if (url.pathname === "/cut") {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write("data: before the cut\n\n");
      setTimeout(() => req.socket.destroy(), 100);
    } else {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("no such path");
    }
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(server.address().port + "\n");
});
