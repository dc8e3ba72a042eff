// The event stream interpretation of WHATWG HTML 9.2.6, fed decoded text in any pieces
// (a TextDecoder in streaming mode has already removed one leading BOM, as 9.2.6 says).
// Checked in Chromium against tests/conformance/sse_vectors*.json, split at every place.
class EventStreamParser {
  constructor(dispatch, lastEventId, onComment = () => {}) {
    this.dispatch = dispatch;
    this.onComment = onComment;
    this.pending = "";
    this.skipLF = false;  // a CR ended the last piece: an LF starting the next belongs to it
    this.data = null;
    this.type = "";
    this.idBuffer = lastEventId;  // kept across reconnections (9.2.4)
    this.lastEventId = lastEventId;
    this.retry = null;
    this.fields = 0;  // field lines since the last blank line: an event cut off midway
  }

  feed(text) {
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    const lines = (this.pending + text).split(/\r\n|\r|\n/);
    this.pending = lines.pop();
    if (this.pending === "" && text.endsWith("\r")) this.skipLF = true;
    for (const line of lines) this.line(line);
  }

  // What was received of an event that never got its blank line, at the end of a stream.
  get unfinished() {
    return this.fields > 0 || this.pending !== "";
  }

  line(line) {
    if (line === "") return this.end();
    if (line.startsWith(":")) return this.onComment(line.slice(1));
    this.fields += 1;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data = this.data === null ? value : this.data + "\n" + value;
    else if (field === "id" && !value.includes("\0")) this.idBuffer = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.retry = parseInt(value, 10);
  }

  end() {
    this.fields = 0;
    this.lastEventId = this.idBuffer;
    if (this.data !== null) {
      this.dispatch({ type: this.type || "message", data: this.data, id: this.lastEventId });
    }
    this.data = null;
    this.type = "";
  }
}

// A Last-Event-ID goes out as UTF-8, as EventSource sends it: fetch() takes a header value
// as a string of bytes, one character each.
function asHeaderBytes(text) {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) out += String.fromCharCode(byte);
  return out;
}
