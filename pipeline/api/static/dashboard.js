// The dashboard: polls /api/series each second and draws every panel as an SVG chart
// (lines, a colour per series, a legend, axes in the panel's unit, a tooltip).
// No library: the whole page is these three files, served by the pipeline itself.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 220;
const MARGIN = {left: 72, right: 12, top: 10, bottom: 22};
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#e7969c"];
const BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
// points resent each poll: a value can still change within its step, and events come late
const OVERLAP = 5;

const state = {range: 300, now: 0, history: 3600, since: 0, panels: []};

// ---- numbers and units

function scaleOf(ref, unit) {
  const a = Math.abs(ref);
  if (unit === "bytes" || unit === "bytes_per_second") {
    let k = 0;
    while (k < BYTES.length - 1 && a >= 1024 ** (k + 1)) k++;
    return [1024 ** k, " " + BYTES[k] + (unit === "bytes_per_second" ? "/s" : "")];
  }
  if (unit === "percent") return [1, " %"];
  if (unit === "seconds") {
    if (a > 0 && a < 1e-3) return [1e-6, " µs"];
    if (a > 0 && a < 1) return [1e-3, " ms"];
    return [1, " s"];
  }
  const per = unit === "per_second" ? "/s" : "";
  for (const [d, s] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= d) return [d, " " + s + per];
  }
  return [1, per ? " " + per : ""];
}

function decimals(x) {
  x = Math.abs(x);
  return x >= 100 ? 0 : x >= 10 ? 1 : 2;
}

// `ref` sets the scale (an axis' largest tick), else the value's own
function fmt(v, unit, ref) {
  const [d, suffix] = scaleOf(ref === undefined ? v : ref, unit);
  const x = v / d;
  return String(Number(x.toFixed(decimals(ref === undefined ? x : ref / d)))) + suffix;
}

function nice(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  const f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function yTicks(lo, hi, unit) {
  if (hi <= lo) hi = lo + 1;
  const [d] = scaleOf(Math.max(Math.abs(lo), Math.abs(hi)), unit);
  const step = nice((hi - lo) / d / 4) * d;
  const top = Math.ceil(hi / step) * step, bottom = Math.floor(lo / step) * step;
  const ticks = [];
  for (let v = bottom; v <= top + step / 2; v += step) ticks.push(v);
  return ticks;
}

function clock(t, seconds) {
  const d = new Date(t * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "");
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function html(name, cls, parent, text) {
  const node = document.createElement(name);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

// ---- data

function merge(doc) {
  state.now = doc.now;
  state.history = doc.history;
  doc.panels.forEach((p, i) => {
    let panel = state.panels[i];
    if (!panel) panel = state.panels[i] = makePanel(p);
    panel.meta = p;
    for (const s of p.series) {
      let mine = panel.series.get(s.name);
      if (!mine) {
        mine = {t: [], v: [], colour: COLOURS[panel.colours++ % COLOURS.length]};
        panel.series.set(s.name, mine);
      }
      if (s.t.length) {
        let keep = mine.t.length;
        while (keep > 0 && mine.t[keep - 1] >= s.t[0]) keep--;
        mine.t.splice(keep, Infinity, ...s.t);
        mine.v.splice(keep, Infinity, ...s.v);
      }
    }
    const cutoff = state.now - state.history;
    for (const [name, s] of panel.series) {
      let drop = 0;
      while (drop < s.t.length && s.t[drop] < cutoff) drop++;
      s.t.splice(0, drop);
      s.v.splice(0, drop);
      if (!s.t.length) panel.series.delete(name);
    }
  });
  state.since = doc.now - OVERLAP;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/series?since=" + state.since, {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    merge(await r.json());
    status.textContent = "";
    drawAll();
  } catch (e) {
    status.textContent = "cannot reach the pipeline (" + e.message + "); retrying";
  }
  setTimeout(poll, 1000);
}

// ---- drawing

function makePanel(meta) {
  const root = html("section", "panel", document.getElementById("panels"));
  root.dataset.panel = meta.index;
  const title = html("h2", "", root, meta.title + " ");
  const note = html("span", "note", title);
  const svg = el("svg", {role: "img", "aria-label": meta.title}, root);
  const legend = html("ul", "legend", root);
  const panel = {root, note, svg, legend, meta, series: new Map(), colours: 0, hover: null};
  svg.addEventListener("mousemove", (e) => {
    panel.hover = e.clientX - svg.getBoundingClientRect().left;
    tooltip(panel, e.clientX, e.clientY);
  });
  svg.addEventListener("mouseleave", () => {
    panel.hover = null;
    document.getElementById("tooltip").hidden = true;
    drawPanel(panel);
  });
  return panel;
}

function frame(panel) {
  const width = Math.max(panel.svg.clientWidth, 200);
  const t1 = state.now, t0 = t1 - state.range;
  let lo = Infinity, hi = -Infinity;
  for (const s of panel.series.values()) {
    for (let i = 0; i < s.t.length; i++) {
      if (s.t[i] >= t0) { lo = Math.min(lo, s.v[i]); hi = Math.max(hi, s.v[i]); }
    }
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  const ticks = yTicks(Math.min(0, lo), hi, panel.meta.unit);
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const plotW = width - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  return {
    width, t0, t1, ticks,
    x: (t) => MARGIN.left + (t - t0) / (t1 - t0) * plotW,
    y: (v) => MARGIN.top + (1 - (v - y0) / (y1 - y0)) * plotH,
    time: (px) => t0 + (px - MARGIN.left) / plotW * (t1 - t0),
  };
}

function gapOf(s) {
  // a line breaks where a series missed several of its samples (a container stopped)
  const diffs = [];
  for (let i = Math.max(1, s.t.length - 20); i < s.t.length; i++) diffs.push(s.t[i] - s.t[i - 1]);
  diffs.sort((a, b) => a - b);
  return Math.max(3, 3 * (diffs.length ? diffs[diffs.length >> 1] : 1));
}

function drawAxes(svg, f, unit) {
  const bottom = HEIGHT - MARGIN.bottom;
  const ref = f.ticks[f.ticks.length - 1] || f.ticks[0];
  for (const v of f.ticks) {
    const y = f.y(v);
    el("line", {class: "grid", x1: MARGIN.left, x2: f.width - MARGIN.right, y1: y, y2: y}, svg);
    el("text", {x: MARGIN.left - 6, y: y + 4, "text-anchor": "end"}, svg).textContent = fmt(v, unit, ref);
  }
  const span = f.t1 - f.t0;
  const step = [10, 15, 30, 60, 120, 300, 600, 900, 1800].find((s) => span / s <= 6) || 3600;
  for (let t = Math.ceil(f.t0 / step) * step; t <= f.t1; t += step) {
    const x = f.x(t);
    el("line", {class: "grid", x1: x, x2: x, y1: MARGIN.top, y2: bottom}, svg);
    el("text", {x, y: bottom + 15, "text-anchor": "middle"}, svg).textContent = clock(t, step < 60);
  }
  el("line", {class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: bottom}, svg);
  el("line", {class: "axis", x1: MARGIN.left, x2: f.width - MARGIN.right, y1: bottom, y2: bottom}, svg);
}

function drawPanel(panel) {
  const {svg, meta} = panel;
  const f = frame(panel);
  svg.setAttribute("viewBox", `0 0 ${f.width} ${HEIGHT}`);
  svg.dataset.t0 = f.t0;
  svg.dataset.t1 = f.t1;
  svg.replaceChildren();
  drawAxes(svg, f, meta.unit);
  const names = [...panel.series.keys()].sort();
  panel.legend.replaceChildren();
  for (const name of names) {
    const s = panel.series.get(name);
    const gap = gapOf(s);
    let d = "", drawn = 0, prev = -Infinity;
    for (let i = 0; i < s.t.length; i++) {
      if (s.t[i] < f.t0) continue;
      d += (s.t[i] - prev > gap ? "M" : "L") + f.x(s.t[i]).toFixed(1) + " " + f.y(s.v[i]).toFixed(1);
      prev = s.t[i];
      drawn++;
    }
    const last = s.v[s.v.length - 1];
    el("path", {class: "line", d: d || "M0 0", stroke: s.colour, "data-series": name, "data-points": drawn,
                "data-last": last}, svg);
    if (drawn) {  // the latest point marked: a series of one point is seen too
      el("circle", {class: "last", r: 2.5, fill: s.colour, cx: f.x(s.t[s.t.length - 1]), cy: f.y(last)}, svg);
    }
    const item = html("li", "", panel.legend);
    item.dataset.series = name;
    item.dataset.last = last;
    html("span", "swatch", item).style.background = s.colour;
    html("span", "name", item, name);
    html("span", "value", item, fmt(last, meta.unit));
  }
  if (!names.length) {
    el("text", {class: "empty", x: f.width / 2, y: HEIGHT / 2, "text-anchor": "middle"}, svg).textContent =
      `no ${meta.field} from ${meta.input} yet`;
  }
  const dropped = meta.dropped_points ? `${meta.dropped_points} points of series past max_series dropped` : "";
  panel.note.textContent = dropped;
  if (panel.hover !== null) drawRule(panel, f);
}

function nearest(s, t) {
  let lo = 0, hi = s.t.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (s.t[mid] < t) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && t - s.t[lo - 1] < s.t[lo] - t) lo--;
  return lo;
}

function drawRule(panel, f) {
  const x = Math.min(Math.max(panel.hover, MARGIN.left), f.width - MARGIN.right);
  el("line", {class: "rule", x1: x, x2: x, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom}, panel.svg);
  return f.time(x);
}

function tooltip(panel, cx, cy) {
  drawPanel(panel);
  const box = document.getElementById("tooltip");
  const t = frame(panel).time(Math.max(panel.hover, MARGIN.left));
  const rows = [];
  for (const [name, s] of panel.series) {
    if (!s.t.length) continue;
    const i = nearest(s, t);
    if (Math.abs(s.t[i] - t) <= gapOf(s)) rows.push([name, s.v[i], s.colour, s.t[i]]);
  }
  if (!rows.length) { box.hidden = true; return; }
  rows.sort((a, b) => b[1] - a[1]);
  box.replaceChildren();
  html("div", "time", box, clock(rows[0][3], true));
  for (const [name, v, colour] of rows) {
    const row = html("div", "row", box);
    html("span", "swatch", row).style.cssText = `display:inline-block;width:8px;height:8px;margin-right:4px;background:${colour}`;
    row.appendChild(document.createTextNode(`${name}: ${fmt(v, panel.meta.unit)}`));
  }
  box.hidden = false;
  box.style.left = Math.min(cx + 14, window.innerWidth - box.offsetWidth - 4) + "px";
  box.style.top = (cy + 14) + "px";
}

function drawAll() {
  for (const panel of state.panels) drawPanel(panel);
}

for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => {
    state.range = Number(button.dataset.range);
    for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("on", b === button);
    drawAll();
  });
}
window.addEventListener("resize", drawAll);
poll();
