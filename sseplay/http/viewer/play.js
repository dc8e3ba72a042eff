"use strict";
// Playing a stream: one connection at a time (request, answer, events, how it ended), the
// reconnect loop of EventSource for GET streams, one request for the page's own requests,
// and the watch for stalls. The rows and the state go through main.js (marker, setState).
//
// The stream is read with fetch() and parsed by parser.js rather than by an EventSource:
// that delivers a named event only to a listener registered for that name in advance, so
// a viewer would miss every type it was not told about, it cannot send a token header or a
// POST body, and it tells nothing of a status or of how a connection ended. Reconnecting
// follows 9.2.3/9.2.4: wait the retry time, send Last-Event-ID; a 204 or a wrong answer
// ends it for good.
const DEFAULT_RETRY_MS = 3000;  // what Chromium waits before a server sends retry:
const STALL_FACTOR = 5;  // a gap this many times the usual one is a stall...
const STALL_FLOOR_MS = 1000;  // ...and never under a second
const FIRST_WAIT_MS = 2000;  // no answer, or no first event, for this long: a stall
const USUAL_GAPS = 50;  // the usual gap: the median of this many last ones
const BODY_SHOWN = 2000;  // characters of an answer that is not a stream

// Stalls: once the gap since the last event is a few times the usual one, a row says how
// long it has been, growing until an event comes or the connection ends.
function usualGap() {
  const arrivals = session.arrivals;
  const gaps = [];
  for (let i = Math.max(1, arrivals.length - USUAL_GAPS); i < arrivals.length; i++) gaps.push(arrivals[i] - arrivals[i - 1]);
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

// What the page is waiting for now, if anything: { since, threshold, text(ms) }.
function waitingFor() {
  const lastArrival = session.lastArrival === null ? -Infinity : session.lastArrival;
  if (session.open && session.arrivals.length >= 3 && lastArrival > session.openedAt) {
    const usual = usualGap();
    const pings = session.lastComment !== null && session.lastComment > lastArrival ? "; comments (pings) still coming" : "";
    return { since: lastArrival, threshold: Math.max(STALL_FACTOR * usual, STALL_FLOOR_MS),
             text: (s) => "no event for " + s + " s (usual gap " + Math.round(usual) + " ms)" + pings };
  }
  if (session.open) {
    const since = Math.max(session.openedAt, lastArrival);
    const opened = since === session.openedAt ? " since the stream opened" : "";
    return { since, threshold: FIRST_WAIT_MS, text: (s) => "no event for " + s + " s" + opened };
  }
  if (session.requestAt !== null) {
    return { since: session.requestAt, threshold: FIRST_WAIT_MS, text: (s) => "no answer for " + s + " s to the request" };
  }
  return null;
}

function watchStall() {
  if (!session || paused) return;
  const waiting = waitingFor();
  if (waiting === null) return;
  const silent = performance.now() - waiting.since;
  if (silent < waiting.threshold) return;
  const text = waiting.text(Math.floor(silent / 1000));
  if (session.stall === null) {
    session.stall = { row: marker("stall", text), since: waiting.since };
    setState("stalled");
  } else {
    session.stall.row.querySelector(".what").textContent = text;
  }
}

function endStall(now) {
  const stall = session.stall;
  if (stall === null) return;
  session.stall = null;
  const text = "silence of " + ((now - stall.since) / 1000).toFixed(1) + " s";
  stall.row.querySelector(".what").textContent = text;
  addMark(stall.since - session.start, "stall", text);
  if (session.open) setState("open");
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// The URL of a stream with the page's own ?fault= (a server with --fault-header reads it)
// and, on a first connection, its ?lastEventId= (which stands in for the header).
function withPageParameters(path, query, first) {
  const url = new URL(path + (query ? "?" + query : ""), location.origin);
  if (health.fault_header && PAGE.get("fault")) url.searchParams.set("fault", PAGE.get("fault"));
  if (first && PAGE.get("lastEventId") !== null) url.searchParams.set("lastEventId", PAGE.get("lastEventId"));
  return url.pathname + url.search;
}

async function startOfBody(response) {
  try {
    const text = await response.text();
    return text.length > BODY_SHOWN ? text.slice(0, BODY_SHOWN) + "\u2026" : text;
  } catch (_) {
    return "";
  }
}

// One connection: its request, its answer, its events. Returns how it ended: "over" (204),
// "failed" (another answer), "closed" (the server ended the body) or "dropped" (an error).
async function connect(request, parser, signal) {
  const headers = { "Accept": "text/event-stream", ...AUTHORIZATION, ...request.headers };
  // Named in the journal, apart from a client under test on the same machine.
  if (health.control) headers["Sseplay-Client"] = VIEWER_CLIENT;
  let response;
  session.requestAt = performance.now();
  try {
    response = await fetch(request.url, { method: request.method, headers, body: request.body, signal, cache: "no-store" });
  } catch (error) {
    if (signal.aborted) return "aborted";
    session.requestAt = null;
    endStall(performance.now());
    marker("fault", "could not connect: " + error.message, true);
    return "dropped";
  }
  session.requestAt = null;
  endStall(performance.now());
  const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
  const status = response.status + (response.statusText ? " " + response.statusText : "");
  if (response.status === 204) {
    await response.body?.cancel();
    marker("finished", "answered 204: the server says the stream is over, no more reconnecting");
    return "over";
  }
  if (response.status !== 200 || type !== "text/event-stream") {
    const body = await startOfBody(response);
    const what = response.status === 200 ? "answered 200 " + (type || "without a type") + ", not an event stream" : "answered " + status;
    marker("fault", what + (body ? ":\n" + body : " (no body)"), true);
    return "failed";
  }
  session.open = true;
  session.openedAt = performance.now();
  marker("open", "opened: " + status + " " + request.method + " " + request.url);
  setState("open");
  if (request.resumeAfter) {
    const how = request.headers["Last-Event-ID"] ? "Last-Event-ID" : "?lastEventId= of the address";
    marker("resume", "resumed after id " + request.resumeAfter + " (" + how + ")");
  }
  let events = 0;
  const counted = parser.dispatch;
  parser.dispatch = (event) => { events += 1; counted(event); };
  let outcome = "closed";
  let reason = "";
  try {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
  } catch (error) {
    if (signal.aborted) return "aborted";
    outcome = "dropped";
    reason = error.message;
  }
  session.open = false;
  endStall(performance.now());
  const cut = parser.unfinished ? "; cut in the middle of an event, which is lost" : "";
  const after = " after " + events + (events === 1 ? " event" : " events");
  if (outcome === "dropped") {
    marker("fault", "dropped: " + reason + after + cut, true);
  } else if (!cut && (finished() || session.expected === null)) {
    marker("end", "ended: the server closed the stream" + after);
  } else {
    // Closed before the file's last event, or in the middle of one: a drop, as a client sees it.
    const short = finished() ? "" : ", before the end (" + session.received + " of " + session.expected + ")";
    marker("fault", "dropped: the server closed the stream" + after + short + cut, true);
  }
  return outcome;
}

function finished() {
  // The provider's last event, or as many events as the file has, or (ids of a file
  // numbered 1, 2, 3...) its last id, when some were lost on the way.
  const expected = session.expected;
  return session.answer.done || (expected !== null &&
    (session.received >= expected || session.lastNumericId === BigInt(expected)));
}

// A stream read the way EventSource reads it, reconnecting until a 204 or a wrong answer.
async function follow(stream, signal) {
  let lastEventId = "";
  let retry = DEFAULT_RETRY_MS;
  let first = true;
  setState("connecting");
  while (!signal.aborted) {
    const parser = new EventStreamParser(receive, lastEventId, () => { session.lastComment = performance.now(); });
    const headers = {};
    if (lastEventId) headers["Last-Event-ID"] = asHeaderBytes(lastEventId);
    const url = withPageParameters(stream.route, "", first);
    const resumeAfter = first ? PAGE.get("lastEventId") : lastEventId;
    const outcome = await connect({ url, method: "GET", headers, resumeAfter }, parser, signal);
    if (outcome === "aborted" || signal.aborted) return;
    if (outcome === "over") return setState("ended");
    if (outcome === "failed") return setState("failed");
    lastEventId = parser.lastEventId;
    if (parser.retry !== null) retry = parser.retry;
    if (finished() && outcome === "closed") {
      marker("finished", "finished: " + session.received + " events; reconnecting in " + retry +
        " ms only to be told 204", true);
      setState("finished");
    } else {
      marker("reconnect", "reconnecting in " + retry + " ms" + (lastEventId ? ", after id " + lastEventId : ""), true);
      setState("reconnecting");
    }
    await pause(retry, signal);
    first = false;
  }
}

// A stream asked for with a request of the page's own (POST to a shaped route, a recorded
// request): one connection, no reconnecting, as the SDKs do.
async function sendRequest(signal) {
  const method = $("request-method").textContent;
  const [path, query] = $("request-path").value.split(/\?(.*)/s);
  const url = withPageParameters(path, query || "", true);
  const body = method === "GET" || method === "HEAD" ? undefined : $("request-body").value;
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  setState("connecting");
  const parser = new EventStreamParser(receive, "", () => { session.lastComment = performance.now(); });
  const outcome = await connect({ url, method, headers, body }, parser, signal);
  if (outcome === "aborted" || signal.aborted) return;
  if (outcome === "failed") return setState("failed");
  if (session.answer.done) {
    marker("finished", "finished: the provider's last event came", true);
    setState("finished");
  } else {
    setState("ended");
  }
}
