// The Connections panel of a server with --control (issue 26): its open connections (each
// can be ended), its journal of requests and its verdict on the clients. Shown only when
// /healthz says "control" and the server answers GET /_sseplay/connections.
//
// The journal is a live SSE feed (sseplay/http/journal.py): first every entry the server
// keeps (each as "open" or "end"), then "open" when a request starts, "end" (same seq) when
// it ends, "verdict" when the verdict changes, "dropped" when the oldest entries were let
// go. A feed entry says what its request was sent only once it has ended, so an open
// request's row takes its status, events and last id from the open connections, listed
// again soon after each "open" and "end", and every few seconds. When the feed ends (the
// server stopped) or cannot be had, the panel says so and asks again, waiting a little
// longer each time up to FEED_RETRY_MS's last; a new feed brings every entry kept again
// (a restarted server's seqs start at 1 again), so the rows start anew.
const VIEWER_CLIENT = "viewer";  // the page's own streams, as the journal names their client
const JOURNAL_ROWS = 200;  // newest journal entries kept on the page
const POLL_MS = 2000;
const SOON_MS = 100;  // the open connections are listed again this soon after a request starts or ends
const FEED_RETRY_MS = [500, 1000, 2000, 4000, 8000];
const FRESH_MS = 1000;  // a new feed with no event this long: the server keeps no entry

class ConnectionsPanel {
  constructor(headers) {
    this.headers = headers;
    this.entries = new Map();  // seq -> { entry, row }, oldest first
    this.live = new Map();  // connection id -> the open connection as listed
    this.kicked = new Set();  // connection ids ended from this page
    this.soon = null;
    this.fresh = null;  // a new feed's timer, until its first event
    this.feedLive = false;  // whether the rows are kept up to date
  }

  async start() {
    const first = await this.connections();
    if (first === null) return false;
    $("connections").hidden = false;
    this.showConnections(first);
    setInterval(() => this.refresh(), POLL_MS);
    this.follow();
    return true;
  }

  // ---- the open connections ----

  // The open connections, or null when the server does not answer with them.
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

  async refresh() {
    const listed = await this.connections();
    if (listed !== null) this.showConnections(listed);
    else this.showConnections([], "the server does not answer");
  }

  refreshSoon() {
    if (this.soon !== null) return;
    this.soon = setTimeout(() => { this.soon = null; this.refresh(); }, SOON_MS);
  }

  showConnections(listed, trouble) {
    $("connections-count").textContent = trouble || listed.length + " open";
    this.live = new Map(listed.map((c) => [String(c.id), c]));
    const rows = listed.map((c) => {
      const row = document.createElement("tr");
      row.dataset.connection = String(c.id);
      const cells = [c.id, c.route, this.clientOf(c), c.age === undefined ? "" : c.age + " s", c.events,
                     c.last_id === null || c.last_id === undefined ? "" : c.last_id,
                     (c.faults || []).join("; ")];
      for (const value of cells) row.append(cell(value));
      const end = document.createElement("button");
      end.type = "button";
      end.textContent = "end";
      end.title = "end this connection (DELETE /_sseplay/connections/" + c.id + ")";
      end.addEventListener("click", () => this.kick(c.id, end));
      const last = document.createElement("td");
      last.append(end);
      row.append(last);
      return row;
    });
    $("connections-live").replaceChildren(...rows);
    for (const known of this.entries.values()) {
      if (known.entry.ended === null) this.render(known);
    }
  }

  // Its address, after the name the journal knows its client by when that is another.
  clientOf(connection) {
    const entry = this.entryOf(connection.id);
    const address = connection.client === undefined ? "" : String(connection.client);
    if (!entry || !entry.client || address.startsWith(entry.client + ":")) return address;
    return entry.client + " (" + address + ")";
  }

  entryOf(connectionId) {
    for (const known of this.entries.values()) {
      if (String(known.entry.connection) === String(connectionId)) return known.entry;
    }
    return null;
  }

  async kick(connectionId, button) {
    button.disabled = true;
    this.kicked.add(String(connectionId));
    let answer;
    try {
      const response = await fetch("/_sseplay/connections/" + encodeURIComponent(connectionId),
                                   { method: "DELETE", headers: this.headers });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        answer = "answered " + response.status + (body.error ? ": " + body.error : "");
      }
    } catch (error) {
      answer = error.message;
    }
    if (answer !== undefined) {
      this.kicked.delete(String(connectionId));
      $("journal-note").textContent = "could not end connection " + connectionId + ": " + answer;
    }
    this.refreshSoon();
  }

  // ---- the journal ----

  async follow() {
    let failures = 0;
    for (;;) {
      const outcome = await this.read();
      this.feedLive = false;
      for (const known of this.entries.values()) {
        if (known.entry.ended === null) this.render(known);
      }
      if (outcome.final) {
        $("journal-state").textContent = "journal: " + outcome.why;
        return;
      }
      if (outcome.live) failures = 0;  // it was live: the waits start anew
      const wait = FEED_RETRY_MS[Math.min(failures, FEED_RETRY_MS.length - 1)];
      failures += 1;
      $("journal-state").textContent = "journal: " + outcome.why + "; trying again in " + wait / 1000 + " s";
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // One feed, read to its end: { live: whether it was had, why it ended, final: no use asking again }.
  async read() {
    const parser = new EventStreamParser((event) => this.take(event), "");
    let response;
    try {
      const headers = { "Accept": "text/event-stream", ...this.headers };
      response = await fetch("/_sseplay/journal", { headers, cache: "no-store" });
    } catch (error) {
      return { live: false, why: "no answer (" + error.message + ")" };
    }
    if (response.status !== 200) {
      const final = response.status >= 400 && response.status < 500 && response.status !== 429;
      return { live: false, final, why: "answered " + response.status };
    }
    clearTimeout(this.fresh);
    this.fresh = setTimeout(() => this.startAnew(), FRESH_MS);  // or at its first event
    $("journal-state").textContent = "journal: live";
    this.feedLive = true;
    try {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (error) {
      return { live: true, why: "the feed broke off (" + error.message + ")" };
    }
    this.refreshSoon();
    return { live: true, why: "the server ended the feed" };
  }

  // A new feed sends every entry the server keeps, and its verdict: what was shown goes,
  // at once with the first of them (the page never shows an empty journal in between).
  startAnew() {
    clearTimeout(this.fresh);
    this.fresh = null;
    this.entries.clear();
    $("journal").replaceChildren();
    $("journal-note").textContent = "";
    $("verdict").textContent = "";
    delete $("verdict").dataset.ok;
  }

  take(event) {
    let value;
    try { value = JSON.parse(event.data); } catch (_) { return; }
    if (!value || typeof value !== "object") return;
    if (this.fresh !== null) this.startAnew();
    if (event.type === "verdict") return this.showVerdict(value);
    if (event.type === "dropped") return this.showDropped(value.dropped);
    if ("seq" in value) {
      this.showEntry(value);
      this.refreshSoon();
    }
  }

  showDropped(count) {
    $("journal-note").textContent = "the server dropped its oldest entries to stay within its journal's size: " +
      count + " so far";
  }

  showEntry(entry) {
    const seq = String(entry.seq);
    let known = this.entries.get(seq);
    if (known) known.entry = entry;
    else {
      known = { entry, row: document.createElement("tr") };
      $("journal").prepend(known.row);
      this.entries.set(seq, known);
    }
    this.render(known);
    while (this.entries.size > JOURNAL_ROWS) {
      const [oldest, old] = this.entries.entries().next().value;
      old.row.remove();
      this.entries.delete(oldest);
    }
  }

  // An entry's row; while its request is open, with what its connection was sent so far.
  render({ entry, row }) {
    const open = entry.ended === null;
    const live = open ? this.live.get(String(entry.connection)) : undefined;
    let { status, events, last_id: lastId } = entry;
    if (live) {
      if (status === null) status = 200;  // listed: its stream has started
      events = live.events;
      lastId = live.last_id;
    }
    // An open request's end is not known once the feed has ended.
    let ended = !open ? entry.ended : this.feedLive ? "open" : "not known (no feed)";
    if (entry.ended === "end" && this.kicked.has(String(entry.connection))) ended += " (ended from this page)";
    row.dataset.seq = String(entry.seq);
    row.dataset.connection = String(entry.connection);
    row.dataset.ended = !open ? String(entry.ended) : this.feedLive ? "open" : "not known";
    const when = typeof entry.time === "number" ? clock(new Date(entry.time * 1000)) : "";
    const target = (entry.method || "") + " " + (entry.path || entry.route || "") + (entry.query ? "?" + entry.query : "");
    const cells = [entry.seq, when, entry.client, target, entry.last_event_id, status, events, lastId, ended,
                   entry.gap_ms === null || entry.gap_ms === undefined ? "" : entry.gap_ms + " ms"];
    row.replaceChildren(...cells.map(cell));
    row.title = "connection " + entry.connection + (entry.retry_ms === null || entry.retry_ms === undefined
      ? "" : ", sent retry: " + entry.retry_ms);
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
