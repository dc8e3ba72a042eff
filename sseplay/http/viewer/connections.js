// The Connections panel of a server with --control (issue 26): its open connections (polled;
// each can be ended), its journal of requests (a live SSE feed: the entries so far, then
// "open" and "end" of each request, the same seq) and its verdict on the clients. Shown
// only when /healthz says "control" and the server answers GET /_sseplay/connections.
const JOURNAL_ROWS = 200;  // newest journal entries kept on the page
const POLL_MS = 2000;

class ConnectionsPanel {
  constructor(headers) {
    this.headers = headers;
    this.entries = new Map();  // seq -> row
  }

  async start() {
    const first = await this.connections();
    if (first === null) return false;
    $("connections").hidden = false;
    this.showConnections(first);
    setInterval(async () => {
      const listed = await this.connections();
      if (listed !== null) this.showConnections(listed);
    }, POLL_MS);
    this.follow();
    return true;
  }

  // The open connections, or null when the server has no control API.
  async connections() {
    try {
      const response = await fetch("/_sseplay/connections", { headers: this.headers, cache: "no-store" });
      if (response.status !== 200) return null;
      const body = await response.json();
      const listed = Array.isArray(body) ? body : body && body.connections;
      return Array.isArray(listed) ? listed : null;
    } catch (_) {
      return null;
    }
  }

  showConnections(listed) {
    $("connections-count").textContent = listed.length + " open";
    const rows = listed.map((c) => {
      const row = document.createElement("tr");
      const cells = [c.id, c.route, c.client, c.age === undefined ? "" : c.age + " s", c.events,
                     c.last_id === null || c.last_id === undefined ? "" : c.last_id,
                     (c.faults || []).join("; ")];
      for (const value of cells) row.append(cell(value));
      const end = document.createElement("button");
      end.type = "button";
      end.textContent = "end";
      end.addEventListener("click", () => fetch("/_sseplay/connections/" + encodeURIComponent(c.id),
                                                { method: "DELETE", headers: this.headers }));
      const last = document.createElement("td");
      last.append(end);
      row.append(last);
      return row;
    });
    $("connections-live").replaceChildren(...rows);
  }

  async follow() {
    const parser = new EventStreamParser((event) => this.take(event), "");
    try {
      const headers = { "Accept": "text/event-stream", ...this.headers };
      const response = await fetch("/_sseplay/journal", { headers, cache: "no-store" });
      if (response.status !== 200) {
        $("journal-state").textContent = "journal: answered " + response.status;
        return;
      }
      $("journal-state").textContent = "journal: live";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
      $("journal-state").textContent = "journal: the server ended the feed";
    } catch (error) {
      $("journal-state").textContent = "journal: " + error.message;
    }
  }

  take(event) {
    let value;
    try { value = JSON.parse(event.data); } catch (_) { return; }
    if (event.type === "verdict") return this.showVerdict(value);
    if (value && typeof value === "object" && "seq" in value) this.showEntry(value);
  }

  showEntry(entry) {
    const row = document.createElement("tr");
    row.dataset.seq = String(entry.seq);
    row.dataset.ended = entry.ended === null ? "open" : String(entry.ended);
    const when = typeof entry.time === "number" ? clock(new Date(entry.time * 1000)) : "";
    const target = (entry.method || "") + " " + (entry.path || entry.route || "") + (entry.query ? "?" + entry.query : "");
    const cells = [entry.seq, when, entry.client, target, entry.last_event_id || "", entry.status === null ? "" : entry.status,
                   entry.events, entry.last_id || "", entry.ended === null ? "open" : entry.ended,
                   entry.gap_ms === null || entry.gap_ms === undefined ? "" : entry.gap_ms + " ms"];
    for (const value of cells) row.append(cell(value));
    const known = this.entries.get(entry.seq);
    if (known) known.replaceWith(row);
    else $("journal").prepend(row);
    this.entries.set(entry.seq, row);
    while (this.entries.size > JOURNAL_ROWS) {
      const [oldest, old] = this.entries.entries().next().value;
      old.remove();
      this.entries.delete(oldest);
    }
  }

  showVerdict(verdict) {
    const broken = Array.isArray(verdict.broken) ? verdict.broken : [];
    const rules = Array.isArray(verdict.rules) ? verdict.rules.join(", ") : "";
    $("verdict").dataset.ok = String(Boolean(verdict.ok));
    const lines = [(verdict.ok ? "verdict: ok" : "verdict: " + broken.length + " broken") + (rules ? " (" + rules + ")" : "")];
    for (const b of broken) {
      lines.push(b.rule + ": client " + b.client + ", connection " + b.connection + ": " + b.message);
    }
    $("verdict").textContent = lines.join("\n");
  }
}

function cell(value) {
  const td = document.createElement("td");
  td.textContent = value === undefined || value === null ? "" : String(value);
  return td;
}
