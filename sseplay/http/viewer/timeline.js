// The timeline of the stream being played, drawn as plain SVG: a strip of arrivals
// (one tick per pixel column, taller where more events came), the connection marks on it
// (reconnects, faults, stalls), and a histogram of the gaps between arrivals.
const SVG = "http://www.w3.org/2000/svg";
const MARK_COLOURS = { reconnect: "#f0b84a", fault: "#f06a6a", stall: "#b58cff", end: "#5ccf7a" };
const GAP_BINS = 18;  // powers of two from 1 ms to 2^17 ms (about two minutes)

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function seconds(ms) {
  return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s";
}

// ``arrivals``: ms since the start; ``marks``: { at, kind, label }; ``now``: ms since the
// start; ``stalledSince``: the last arrival of a stall going on now, else null.
function drawTimeline(svg, arrivals, marks, now, stalledSince = null) {
  const width = Math.max(svg.clientWidth || 600, 200);
  const height = 76;
  const histogram = Math.min(220, Math.round(width * 0.3));
  const strip = width - histogram - 24;
  const span = Math.max(now, arrivals.length ? arrivals[arrivals.length - 1] : 0, 250);
  const x = (at) => 4 + (at / span) * (strip - 8);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const children = [svgElement("rect", { x: 0, y: 0, width: strip, height: 56, class: "lane" })];

  const columns = new Map();
  for (const at of arrivals) {
    const column = Math.round(x(at));
    columns.set(column, (columns.get(column) || 0) + 1);
  }
  const most = Math.max(1, ...columns.values());
  for (const [column, count] of columns) {
    const tall = 14 + 36 * (count / most);
    children.push(svgElement("line", { x1: column, x2: column, y1: 53 - tall, y2: 53, class: "arrival" }));
  }
  if (stalledSince !== null) {
    const silence = svgElement("rect", { x: x(stalledSince), y: 0, width: Math.max(x(now) - x(stalledSince), 1),
                                         height: 56, class: "stalled", fill: MARK_COLOURS.stall, "fill-opacity": 0.25 });
    silence.append(svgElement("title", {}, "no event for " + seconds(now - stalledSince)));
    children.push(silence);
  }
  for (const mark of marks) {
    const at = x(mark.at);
    const line = svgElement("line", { x1: at, x2: at, y1: 0, y2: 56, stroke: MARK_COLOURS[mark.kind] || "#fff",
                                      "stroke-width": 2, "stroke-dasharray": "4 3", class: "mark " + mark.kind });
    line.append(svgElement("title", {}, mark.label));
    children.push(line);
  }
  children.push(svgElement("text", { x: 2, y: 70, class: "axis" }, "0"));
  children.push(svgElement("text", { x: strip - 2, y: 70, class: "axis", "text-anchor": "end" }, seconds(span)));

  // The gaps between arrivals, on a log scale: where most of them sit, and the outliers.
  const bins = new Array(GAP_BINS).fill(0);
  const gaps = [];
  for (let i = 1; i < arrivals.length; i++) gaps.push(arrivals[i] - arrivals[i - 1]);
  for (const gap of gaps) bins[Math.min(GAP_BINS - 1, Math.max(0, Math.floor(Math.log2(Math.max(gap, 1)))))] += 1;
  const left = strip + 24;
  const bar = histogram / GAP_BINS;
  const tallest = Math.max(1, ...bins);
  bins.forEach((count, i) => {
    if (!count) return;
    const tall = 50 * (count / tallest);
    const rect = svgElement("rect", { x: left + i * bar, y: 54 - tall, width: Math.max(bar - 1, 1), height: tall,
                                      class: "gap-bin" });
    rect.append(svgElement("title", {}, count + " gaps of " + seconds(2 ** i) + " to " + seconds(2 ** (i + 1))));
    children.push(rect);
  });
  const sorted = gaps.slice().sort((a, b) => a - b);
  const caption = sorted.length ? "gaps, median " + seconds(sorted[Math.floor(sorted.length / 2)]) : "gaps";
  children.push(svgElement("text", { x: left, y: 70, class: "axis" }, caption));
  svg.replaceChildren(...children);
}
