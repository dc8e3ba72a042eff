// What an event's data holds that a person would miss: JSON that does not parse, the
// U+FFFD a decoder put where bytes were not UTF-8, a BOM, characters that draw nothing.
// The data is shown as text; each such character is wrapped in a span whose label is
// drawn by CSS (::after), so the row's textContent stays exactly the data as received.

// Characters that draw nothing or move the text: C0/C1 controls but tab and LF, soft
// hyphen, combining grapheme joiner, Arabic letter mark, zero-width and direction marks,
// line and paragraph separators, embeddings and isolates, word joiner and invisible
// operators, the BOM (zero-width no-break space), interlinear annotations. U+200D (the
// zero-width joiner of emoji sequences) and variation selectors are left alone.
const INVISIBLE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u034F\u061C\u180E\u200B\u200C\u200E\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\uFFFD]/g;
const NAMES = { "\uFEFF": "BOM", "\uFFFD": "U+FFFD", "\u200B": "ZWSP", "\u2028": "LSEP", "\u2029": "PSEP",
                "\u00AD": "SHY", "\u200E": "LRM", "\u200F": "RLM", "\u2060": "WJ" };

function codeOf(char) {
  return "U+" + char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
}

function looksLikeJson(data) {
  if (data === "[DONE]") return false;  // OpenAI's last event, by design not JSON
  const start = data.trimStart()[0];
  return start === "{" || start === "[";
}

// The flags of one event's data, each { kind, text }.
function flagsOf(data) {
  const flags = [];
  if (looksLikeJson(data)) {
    try { JSON.parse(data); } catch (error) {
      flags.push({ kind: "json", text: "invalid JSON: " + error.message });
    }
  }
  const counts = new Map();
  for (const match of data.matchAll(INVISIBLE)) counts.set(match[0], (counts.get(match[0]) || 0) + 1);
  const replaced = counts.get("\uFFFD");
  if (replaced) {
    counts.delete("\uFFFD");
    flags.push({ kind: "utf8", text: replaced + " U+FFFD (bytes that were not UTF-8)" });
  }
  const bom = counts.get("\uFEFF");
  if (bom) {
    counts.delete("\uFEFF");
    flags.push({ kind: "bom", text: "BOM (U+FEFF) in the data" + (bom > 1 ? " \u00d7" + bom : "") });
  }
  if (counts.size) {
    const named = [...counts].map(([c, n]) => codeOf(c) + (n > 1 ? " \u00d7" + n : ""));
    flags.push({ kind: "invisible", text: "invisible: " + named.join(", ") });
  }
  return flags;
}

// ``text`` into ``element`` as text nodes, each invisible character in a labelled span.
function showText(element, text) {
  element.replaceChildren();
  let at = 0;
  for (const match of text.matchAll(INVISIBLE)) {
    if (match.index > at) element.append(document.createTextNode(text.slice(at, match.index)));
    const mark = document.createElement("span");
    mark.className = match[0] === "\uFFFD" ? "invisible replaced" : "invisible";
    mark.dataset.code = NAMES[match[0]] || codeOf(match[0]);
    mark.title = codeOf(match[0]);
    mark.textContent = match[0];
    element.append(mark);
    at = match.index + match[0].length;
  }
  if (at < text.length) element.append(document.createTextNode(text.slice(at)));
}

// JSON indented from its own text, so that numbers keep every digit they were sent with:
// JSON.parse would turn a 23-digit integer into 1.2345678901234568e+22.
function pretty(data) {
  try { JSON.parse(data); } catch (_) { return data; }
  const space = " \t\n\r";
  let out = "";
  let depth = 0;
  const newline = () => "\n" + "  ".repeat(depth);
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c === '"') {
      let j = i + 1;
      while (data[j] !== '"') j += data[j] === "\\" ? 2 : 1;
      out += data.slice(i, j + 1);
      i = j;
    } else if (c === "{" || c === "[") {
      let j = i + 1;
      while (space.includes(data[j])) j++;
      if (data[j] === (c === "{" ? "}" : "]")) { out += c + data[j]; i = j; continue; }
      depth++;
      out += c + newline();
    } else if (c === "}" || c === "]") {
      depth--;
      out += newline() + c;
    } else if (c === ",") {
      out += "," + newline();
    } else if (c === ":") {
      out += ": ";
    } else if (!space.includes(c)) {
      out += c;
    }
  }
  return out;
}
