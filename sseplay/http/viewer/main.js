"use strict";
// The viewer: plays one stream at a time, shows its events, the history of its connections
// (opened, ended how, reconnecting, resumed, ids missing), stalls, the answer of an LLM
// stream, and a timeline. Event data is untrusted: it only ever goes into text nodes.
// How a stream is read and reconnected: play.js.
const $ = (id) => document.getElementById(id);
const list = $("events");
// What the page keeps of an endless stream: the newest rows, arrivals and marks.
const MAX_ROWS = 5000;
const MAX_ARRIVALS = 200000;
const MAX_MARKS = 2000;
// A server started with --token serves this page at /?token=SECRET; the page passes the
// token on to /healthz and the streams, as a header (fetch can set one), so it stays out
// of the URLs the page requests.
const PAGE = new URLSearchParams(location.search);
const TOKEN = PAGE.get("token");
const AUTHORIZATION = TOKEN ? { "Authorization": "Bearer " + TOKEN } : {};
// Bodies the page starts from for a provider's route; the request is the person's to edit.
const PROVIDER_BODIES = {
  "openai-chat": { model: "gpt-4o-mini", stream: true, stream_options: { include_usage: true },
                   messages: [{ role: "user", content: "Hello" }] },
  "openai-responses": { model: "gpt-4o-mini", stream: true, input: "Hello" },
  "anthropic": { model: "claude-sonnet-4-5", max_tokens: 1024, stream: true,
                 messages: [{ role: "user", content: "Hello" }] },
  "gemini": { contents: [{ role: "user", parts: [{ text: "Hello" }] }] },
  "ollama": { model: "llama3.2", stream: true, messages: [{ role: "user", content: "Hello" }] },
};
const GEMINI_MODEL = "gemini-2.0-flash";

let health = { streams: [], requests: [], fault_header: false };
let current = null;  // the AbortController of the stream being read
let session = null;  // what is known of the stream being played
let paused = false;
let held = [];
let knownTypes = new Set();
let rawShown = null;  // null: the page chooses (answer first for an LLM stream)

function newSession(expected) {
  return {
    start: performance.now(),
    expected,  // the events of a replayed file, null when unknown or endless
    received: 0,
    arrivals: [],  // ms since start
    marks: [],  // { at, kind, label } on the timeline
    lastArrival: null,
    requestAt: null,  // while a request waits for its answer
    openedAt: null,  // of the connection open now
    lastComment: null,
    lastNumericId: null,
    seenIds: new Set(),
    stall: null,  // { row, since } while no event comes
    answer: new Answer(),
    open: false,
  };
}

function setState(state) {
  $("state").dataset.state = state;
  $("state").textContent = state;
}

// Local time, as `sseplay tail` shows it, to the millisecond.
function clock(date) {
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
    "." + pad(date.getMilliseconds(), 3);
}

function zoneLabel() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const hours = String(Math.floor(Math.abs(minutes) / 60)).padStart(2, "0");
  const rest = String(Math.abs(minutes) % 60).padStart(2, "0");
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  return name === "UTC" ? "times in UTC" : "times in " + name + " (UTC" + sign + hours + ":" + rest + ")";
}

function span(cls, text) {
  const element = document.createElement("span");
  element.className = cls;
  element.textContent = text;
  return element;
}

function matchesFilter(type) {
  const wanted = $("filter").value.trim();
  return wanted === "" || wanted === type;
}

function place(row) {
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  list.prepend(row);
  if (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
}

// Rows wait while paused, markers with them, so that the list keeps arrival order.
function later(render) {
  if (paused) held.push(render); else render();
}

function showEvent(item) {
  const row = document.createElement("div");
  row.className = "event";
  row.dataset.type = item.type;
  row.hidden = !matchesFilter(item.type);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(span("time", item.time), span("type", item.type), span("id", item.id ? "id " + item.id : ""));
  for (const flag of item.flags) {
    const mark = span("flag", flag.text);
    mark.dataset.kind = flag.kind;
    meta.append(mark);
  }
  const pre = document.createElement("pre");
  pre.className = "data";
  showText(pre, item.flags.some((f) => f.kind === "json") ? item.data : pretty(item.data));
  row.append(meta, pre);
  place(row);
}

// A row of the connection history; ``timeline``: also marked on the timeline.
function marker(kind, text, timeline = false) {
  const at = session ? performance.now() - session.start : 0;
  if (timeline && session) addMark(at, timelineKind(kind), text);
  const row = document.createElement("div");
  row.className = "marker";
  row.dataset.kind = kind;
  row.append(span("time", clock(new Date())), span("what", text));
  later(() => place(row));
  redraw();
  return row;
}

function addMark(at, kind, label) {
  session.marks.push({ at, kind, label });
  if (session.marks.length > MAX_MARKS) session.marks.shift();
}

const TIMELINE_KINDS = { fault: "fault", stall: "stall", finished: "end", end: "end" };
function timelineKind(kind) {
  return TIMELINE_KINDS[kind] || "reconnect";
}

function suggestType(type) {
  if (knownTypes.has(type)) return;
  knownTypes.add(type);
  const option = document.createElement("option");
  option.value = type;
  $("types").appendChild(option);
}

function idFlags(id) {
  const flags = [];
  if (id && session.seenIds.has(id)) flags.push({ kind: "id", text: "id " + id + " again" });
  if (id && session.seenIds.size < 100000) session.seenIds.add(id);
  if (/^[0-9]{1,30}$/.test(id)) {
    const number = BigInt(id);
    const last = session.lastNumericId;
    if (last !== null && number > last + 1n) {
      const first = last + 1n;
      const gap = first === number - 1n ? "id " + first + " missing" : "ids " + first + "-" + (number - 1n) + " missing";
      marker("fault", gap, true);
    }
    if (last === null || number > last) session.lastNumericId = number;
  }
  return flags;
}

function receive(event) {
  const now = performance.now();
  endStall(now);
  session.received += 1;
  session.arrivals.push(now - session.start);
  if (session.arrivals.length > MAX_ARRIVALS) session.arrivals.splice(0, MAX_ARRIVALS / 2);
  session.lastArrival = now;
  $("count").textContent = session.received + (session.received === 1 ? " event" : " events");
  suggestType(event.type);
  const flags = [...idFlags(event.id), ...flagsOf(event.data)];
  if (flags.some((f) => f.kind === "json" || f.kind === "utf8")) {
    addMark(now - session.start, "fault", flags.map((f) => f.text).join("; "));
  }
  if (session.answer.take(event, now)) showAnswer();
  const item = { time: clock(new Date()), type: event.type, id: event.id, data: event.data, flags };
  later(() => showEvent(item));
  redraw();
}

function showAnswer() {
  const answer = session.answer;
  if (!answer.provider) return;
  $("answer").hidden = false;
  $("raw").hidden = false;
  if (rawShown === null) setRaw(false);
  $("answer-provider").textContent = answer.provider + (answer.done ? " \u00b7 complete" : "");
  showText($("answer-text"), answer.text);
  const tools = [];
  for (const tool of answer.tools.values()) {
    const box = document.createElement("div");
    box.className = "tool";
    box.append(span("name", "\u2192 " + tool.name + (tool.id ? " (" + tool.id + ")" : "")));
    const args = document.createElement("pre");
    args.textContent = tool.args;
    box.append(args);
    tools.push(box);
  }
  $("tools").replaceChildren(...tools);
  $("finish").textContent = answer.finish ? "finish: " + answer.finish : "";
  const u = answer.usage;
  const count = (n) => (n === undefined || n === null ? "?" : String(n));
  $("usage").textContent = u ? "usage: " + count(u.input) + " in, " + count(u.output) + " out" +
    (u.total !== undefined && u.total !== null ? ", " + u.total + " total" : "") : "";
  $("speed").textContent = answer.speed(session.start);
  $("answer-error").textContent = answer.error ? "error: " + answer.error : "";
}

function setRaw(shown) {
  rawShown = shown;
  $("main").classList.toggle("answer-view", !shown);
  $("raw").textContent = shown ? "Hide raw events" : "Show raw events";
}

let drawing = false;
function redraw() {
  if (drawing || !session) return;
  drawing = true;
  requestAnimationFrame(() => {
    drawing = false;
    if (!session) return;
    const stalled = session.stall === null ? null : session.stall.since - session.start;
    drawTimeline($("timeline"), session.arrivals, session.marks, performance.now() - session.start, stalled);
  });
}

function restart(expected) {
  if (current) current.abort();
  current = new AbortController();
  clearView();
  session = newSession(expected);
  redraw();
  return current.signal;
}

function play(stream) {
  $("request").hidden = true;
  knownTypes = new Set();
  $("types").replaceChildren();
  for (const type of ["message", ...stream.types]) suggestType(type);
  const signal = restart(stream.live || stream.events === undefined ? null : stream.events);
  const waiting = document.createElement("p");
  waiting.className = "empty";
  waiting.textContent = "Waiting for the events of " + stream.route + "\u2026";
  list.replaceChildren(waiting);
  follow(stream, signal);
}

function prepare(request) {
  if (current) current.abort();
  session = null;
  clearView();
  setState("idle");
  $("request").hidden = false;
  $("request-method").textContent = request.method;
  let path = request.path.replaceAll("{model}", GEMINI_MODEL);
  let query = request.query || "";
  if (request.shape === "gemini" && !/(^|&)alt=/.test(query)) query = query ? query + "&alt=sse" : "alt=sse";
  $("request-path").value = path + (query ? "?" + query : "");
  const template = PROVIDER_BODIES[request.shape];
  $("request-body").value = request.body !== null ? request.body : template ? JSON.stringify(template, null, 2) : "";
  $("request-body").hidden = request.method === "GET";
  const hint = document.createElement("p");
  hint.className = "empty";
  hint.textContent = "Edit the request and press Send; the answer shows here as it arrives.";
  list.replaceChildren(hint);
}

function clearView() {
  list.replaceChildren();
  held = [];
  $("count").textContent = "0 events";
  $("answer").hidden = true;
  $("raw").hidden = true;
  rawShown = null;
  $("main").classList.remove("answer-view");
  $("timeline").replaceChildren();
}

// The requests a person can make from the page: shaped routes (gemini: the streaming ones).
function playable(request) {
  return request.shape !== "gemini" || request.path.includes(":streamGenerateContent");
}

async function start() {
  $("zone").textContent = zoneLabel();
  health = await (await fetch("/healthz", { headers: AUTHORIZATION })).json();
  health.requests = (health.requests || []).filter(playable);
  if (health.control) new ConnectionsPanel(AUTHORIZATION).start();
  if (PAGE.get("fault")) {
    $("notice").textContent = health.fault_header
      ? "fault from the address: " + PAGE.get("fault")
      : "?fault= is not passed on: the server was started without --fault-header";
  }
  const select = $("streams");
  for (const stream of health.streams) {
    const option = document.createElement("option");
    option.value = stream.route;
    option.textContent = stream.route + " (" + stream.file + ", " + stream.events + " events)";
    select.appendChild(option);
  }
  health.requests.forEach((request, index) => {
    const option = document.createElement("option");
    option.value = "request " + index;
    option.textContent = request.method + " " + request.path + " (" + (request.shape || "recorded") + ")";
    select.appendChild(option);
  });
  const pick = () => {
    const stream = health.streams.find((s) => s.route === select.value);
    if (stream) play(stream);
    else if (select.value.startsWith("request ")) prepare(health.requests[Number(select.value.slice(8))]);
  };
  select.addEventListener("change", pick);
  if (select.options.length) pick();
}

$("send").addEventListener("click", () => {
  const signal = restart(null);
  sendRequest(signal);
});
$("raw").addEventListener("click", () => setRaw(!rawShown));
$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").textContent = paused ? "Resume" : "Pause";
  if (!paused) { held.forEach((render) => render()); held = []; }
});
$("clear").addEventListener("click", () => {
  list.replaceChildren();
  held = [];
  if (session) {
    session.received = 0;
    session.arrivals = [];
    session.marks = [];
    session.stall = null;
    redraw();
  }
  $("count").textContent = "0 events";
});
$("filter").addEventListener("input", () => {
  for (const row of list.querySelectorAll(".event")) row.hidden = !matchesFilter(row.dataset.type);
});
setInterval(() => { watchStall(); if (session && session.open) redraw(); }, 250);
start();
