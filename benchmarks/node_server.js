// The Node baseline: the http module, an absolute setTimeout schedule, JSON.stringify per event.
// node benchmarks/node_server.js FILE INTERVAL_SECONDS PORT
const http = require("http");
const fs = require("fs");
const [file, intervalText, portText] = process.argv.slice(2);
const records = fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const interval = parseFloat(intervalText) * 1000;

http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store" });
  const start = Date.now();
  let n = 0;
  let timer = null;
  const tick = () => {
    while (n < records.length && Date.now() - start >= n * interval) {
      res.write(`id: ${n + 1}\ndata: ${JSON.stringify(records[n])}\n\n`);
      n += 1;
    }
    if (n >= records.length) { res.end(); return; }
    timer = setTimeout(tick, start + n * interval - Date.now());
  };
  req.on("close", () => clearTimeout(timer));
  tick();
}).listen(parseInt(portText, 10), "127.0.0.1", () => console.log("ready"));
