// Hand-written SVG charts: a line chart and a grouped bar chart, with axes and a legend.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Round tick values covering [low, high]. */
function ticks(low, high, count = 5) {
  if (!(high > low)) high = low + 1;
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw) || raw;
  const first = Math.floor(low / step) * step;
  const values = [];
  for (let v = first; v <= high + step * 1e-9; v += step) values.push(Number(v.toPrecision(12)));
  if (values[values.length - 1] < high) values.push(values[values.length - 1] + step);
  return values;
}

function legend(series) {
  return h("div", { class: "legend" },
    series.map((one, i) => h("span", {}, h("i", { class: one.cls || `s${i + 1}` }), one.name)));
}

const PAD = { top: 10, right: 14, bottom: 26, left: 56 };
// Earlier series are drawn wider, so a later one lying on top of them leaves them visible.
const WIDTHS = [3.5, 2.5, 2, 1.5, 1.5];

/** A chart drawn at its container's real width (so text keeps its size), redrawn on resize. */
function responsive(draw, legendNode) {
  const plot = h("div", { class: "chart-plot" });
  let drawn = 0;
  const observer = new ResizeObserver((entries) => {
    const width = Math.floor(entries[0].contentRect.width);
    if (width > 0 && Math.abs(width - drawn) > 2) {
      drawn = width;
      plot.replaceChildren(draw(width));
    }
  });
  observer.observe(plot);
  return h("div", { class: "chart" }, plot, legendNode);
}

/**
 * series: [{name, points: [[x, y]], cls}], x numeric (e.g. step or epoch ms).
 * xFormat / yFormat turn values into axis labels.
 */
export function lineChart({ series, height = 220, xFormat = String, yFormat = String, yMin }) {
  const all = series.flatMap((one) => one.points);
  if (!all.length) return h("div", { class: "chart-empty" }, "No data points yet.");
  return responsive((width) => drawLines({ series, all, width, height, xFormat, yFormat, yMin }), legend(series));
}

function drawLines({ series, all, width, height, xFormat, yFormat, yMin }) {
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  const yTicks = ticks(yMin ?? Math.min(0, ...ys), Math.max(...ys));
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y) => PAD.top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;

  const label = `Line chart of ${series.map((one) => one.name).join(", ")}: ${all.length} points, ${yFormat(Math.min(...ys))} to ${yFormat(Math.max(...ys))}`;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  const grid = s("g", { class: "grid" });
  const axis = s("g", { class: "axis" });
  for (const y of yTicks) {
    grid.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: py(y), y2: py(y) }));
    axis.append(s("text", { x: PAD.left - 6, y: py(y) + 3.5, "text-anchor": "end" }, yFormat(y)));
  }
  const xCount = Math.min(Math.max(2, Math.floor(plotW / 110)), new Set(xs).size);
  for (let i = 0; i < xCount; i += 1) {
    const x = xCount === 1 ? xs[0] : x0 + ((x1 - x0) * i) / (xCount - 1);
    axis.append(s("text", { x: px(x), y: height - 8, "text-anchor": "middle" }, xFormat(x)));
  }
  svg.append(grid, axis);
  series.forEach((one, i) => {
    const cls = one.cls || `s${i + 1}`;
    const points = [...one.points].sort((a, b) => a[0] - b[0]);
    if (points.length > 1) {
      const d = points.map((p, j) => `${j ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
      svg.append(s("path", { class: `line ${cls}`, d, "stroke-width": WIDTHS[i] ?? 1.5 }));
    }
    if (points.length <= 16) {
      for (const [x, y] of points) {
        svg.append(s("circle", { class: `dot ${cls}`, cx: px(x), cy: py(y), r: 3 },
          s("title", {}, `${one.name} · ${xFormat(x)}: ${yFormat(y)}`)));
      }
    }
  });
  return svg;
}

/** groups: [{label, bars: [{name, value, cls}]}]; every group has the same bar names. */
export function barChart({ groups, height = 240, yFormat = String }) {
  if (!groups.length) return h("div", { class: "chart-empty" }, "No data yet.");
  const names = groups[0].bars.map((b) => ({ name: b.name, cls: b.cls }));
  return responsive((width) => drawBars({ groups, names, width, height, yFormat }), legend(names));
}

function drawBars({ groups, names, width, height, yFormat }) {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value || 0));
  const yTicks = ticks(0, Math.max(...values, 0) || 1);
  const y1 = yTicks[yTicks.length - 1];
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const py = (y) => PAD.top + plotH - (y / y1) * plotH;
  const label = `Bar chart of ${names.map((n) => n.name).join(", ")} over ${groups.length} groups, up to ${yFormat(y1)}`;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  const grid = s("g", { class: "grid" });
  const axis = s("g", { class: "axis" });
  for (const y of yTicks) {
    grid.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: py(y), y2: py(y) }));
    axis.append(s("text", { x: PAD.left - 6, y: py(y) + 3.5, "text-anchor": "end" }, yFormat(y)));
  }
  svg.append(grid, axis);
  const slot = plotW / groups.length;
  const barW = Math.min(34, (slot * 0.72) / names.length);
  groups.forEach((group, g) => {
    const start = PAD.left + g * slot + (slot - barW * names.length) / 2;
    group.bars.forEach((bar, b) => {
      const value = bar.value || 0;
      svg.append(s("rect", {
        class: bar.cls || `s${b + 1}`, x: start + b * barW + 1, y: py(value),
        width: Math.max(barW - 2, 1), height: Math.max(py(0) - py(value), 0), rx: 2,
      }, s("title", {}, `${group.label} · ${bar.name}: ${yFormat(value)}`)));
    });
    axis.append(s("text", { x: PAD.left + g * slot + slot / 2, y: height - 8, "text-anchor": "middle" }, group.label));
  });
  return svg;
}
