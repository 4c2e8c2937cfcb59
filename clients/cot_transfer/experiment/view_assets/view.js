// The run viewer: reads the page's embedded JSON and draws everything itself (SVG and a canvas).
// Problem details are parsed only when a problem is opened, so a 500-problem page loads quickly.
"use strict";
(function () {
  const started = performance.now();
  const INDEX = JSON.parse(document.getElementById("index").textContent);
  const timings = { index_parse_ms: performance.now() - started };
  window.__viewTimings = timings;
  const PALETTE = ["#1f77b4", "#9467bd", "#2ca02c", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const problems = INDEX.problems;
  const keys = INDEX.keys;
  const state = { receiver: INDEX.primary, shade: INDEX.primary, metric: "importance", sort: { key: "id", dir: 1 },
                  position: null, detail: null, cut: null };
  const details = new Map();
  let chartCounter = 0;

  // ------------------------------------------------------------------ helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) if (value !== null && value !== undefined) node.setAttribute(key, value);
    return node;
  }
  const isNum = (x) => typeof x === "number" && !Number.isNaN(x);
  const pct = (x) => (isNum(x) ? `${Math.round(100 * x)}%` : "–");
  const fmt = (x, digits = 2) => (isNum(x) ? x.toFixed(digits) : "–");
  const signed = (x) => (isNum(x) ? (x >= 0 ? "+" : "") + x.toFixed(2) : "–");
  const keyName = (index) => {
    const key = keys[index];
    const modes = new Set(keys.map((k) => k.mode));
    return modes.size > 1 ? `${key.name} · ${key.mode}` : key.name;
  };
  const color = (index) => PALETTE[index % PALETTE.length];

  // ------------------------------------------------------------------ line chart (SVG)
  // series: {name, color, dash, marker, filled, xs, ys, bands, band: "fill" | "hatch" | "none", cuts}
  function lineChart(options) {
    const width = options.width || 520, height = options.height || 300;
    const margin = { left: 46, right: 12, top: 22, bottom: 38 };
    const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
    const x = (v) => margin.left + v * plotW;
    const y = (v) => margin.top + (1 - v) * plotH;
    const id = `c${++chartCounter}`;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": options.title, class: options.className || "" });
    const defs = svg("defs");
    root.append(defs);
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 10; i++) {
      grid.append(svg("line", { x1: x(i / 10), x2: x(i / 10), y1: y(0), y2: y(1) }));
      if (i % 2 === 0) grid.append(svg("line", { x1: x(0), x2: x(1), y1: y(i / 10), y2: y(i / 10) }));
    }
    root.append(grid);
    const axis = svg("g", { class: "axis" });
    axis.append(svg("path", { d: `M${x(0)},${y(1)}V${y(0)}H${x(1)}`, fill: "none" }));
    for (let i = 0; i <= 10; i += 2) {
      const tx = svg("text", { x: x(i / 10), y: y(0) + 14, "text-anchor": "middle" });
      tx.textContent = `${i * 10}%`;
      axis.append(tx);
      const ty = svg("text", { x: x(0) - 5, y: y(i / 10) + 4, "text-anchor": "end" });
      ty.textContent = options.yPercent ? `${i * 10}%` : (i / 10).toFixed(1);
      axis.append(ty);
    }
    const xl = svg("text", { x: x(0.5), y: height - 4, "text-anchor": "middle" });
    xl.textContent = options.xLabel || "CoT prefix (share of the strong CoT's tokens)";
    axis.append(xl);
    const yl = svg("text", { x: 12, y: y(0.5), transform: `rotate(-90 12 ${y(0.5)})`, "text-anchor": "middle" });
    yl.textContent = options.yLabel || "";
    axis.append(yl);
    root.append(axis);
    if (isNum(options.selectedX)) {
      root.append(svg("line", { x1: x(options.selectedX), x2: x(options.selectedX), y1: y(0), y2: y(1), stroke: "#f80", "stroke-width": 2, class: "selected-cut" }));
    }
    const legend = el("div", { class: "legend" });
    for (const series of options.series) {
      if (series.band && series.band !== "none" && series.bands) {
        let fill = series.color, opacity = series.opacity || 0.18;
        if (series.band === "hatch") {
          const patternId = `${id}-h${defs.childNodes.length}`;
          const pattern = svg("pattern", { id: patternId, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
          pattern.append(svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: series.color, "stroke-width": 1.5, "stroke-opacity": 0.55 }));
          defs.append(pattern);
          fill = `url(#${patternId})`;
          opacity = 1;
        }
        for (const segment of bandSegments(series.xs, series.bands)) {
          const upper = segment.map((p) => `${x(p[0])},${y(p[2])}`);
          const lower = segment.slice().reverse().map((p) => `${x(p[0])},${y(p[1])}`);
          root.append(svg("polygon", { points: upper.concat(lower).join(" "), fill, "fill-opacity": opacity, stroke: "none", class: "band" }));
        }
      }
    }
    for (const series of options.series) {
      if (!series.ys) { addLegend(legend, series); continue; }
      let d = "", pen = false;
      series.xs.forEach((xv, i) => {
        const yv = series.ys[i];
        if (!isNum(yv) || !isNum(xv)) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(xv).toFixed(1)},${y(yv).toFixed(1)}`;
        pen = true;
      });
      root.append(svg("path", { d, fill: "none", stroke: series.color, "stroke-width": series.filled ? 2.6 : 1.6, "stroke-dasharray": series.dash || null, class: "curve", "data-series": series.name }));
      series.xs.forEach((xv, i) => {
        const yv = series.ys[i];
        if (!isNum(yv) || !isNum(xv)) return;
        const marker = drawMarker(series.marker, x(xv), y(yv), series.color, series.filled);
        marker.classList.add("pt");
        if (series.cuts) {
          marker.dataset.cut = series.cuts[i];
          if (series.cuts[i] === options.selectedCut) marker.classList.add("selected");
          marker.addEventListener("click", () => options.onClick(series.cuts[i]));
        }
        const title = svg("title");
        title.textContent = series.tooltip ? series.tooltip(i) : `${series.name}: ${pct(xv)} → ${fmt(yv)}`;
        marker.append(title);
        root.append(marker);
      });
      addLegend(legend, series);
    }
    const figure = el("figure", { class: "chart" }, el("div", { class: "title", text: options.title }), root, legend);
    if (options.caption) figure.append(el("figcaption", { text: options.caption }));
    return figure;
  }
  function bandSegments(xs, bands) {
    const segments = [];
    let current = [];
    xs.forEach((xv, i) => {
      const band = bands[i];
      if (band && isNum(band[0]) && isNum(band[1]) && isNum(xv)) current.push([xv, band[0], band[1]]);
      else { if (current.length) segments.push(current); current = []; }
    });
    if (current.length) segments.push(current);
    return segments.map((segment) => (segment.length === 1 ? [[segment[0][0] - 0.006, segment[0][1], segment[0][2]], [segment[0][0] + 0.006, segment[0][1], segment[0][2]]] : segment));
  }
  function drawMarker(kind, cx, cy, stroke, filled) {
    const fill = filled ? stroke : "#fff";
    const common = { fill, stroke, "stroke-width": 1.5 };
    if (kind === "diamond") return svg("path", { d: `M${cx},${cy - 5}L${cx + 5},${cy}L${cx},${cy + 5}L${cx - 5},${cy}Z`, ...common });
    if (kind === "square") return svg("rect", { x: cx - 4, y: cy - 4, width: 8, height: 8, ...common });
    return svg("circle", { cx, cy, r: 4, ...common });
  }
  function addLegend(legend, series) {
    const sample = svg("svg", { width: 34, height: 14 });
    if (series.band && series.band !== "none") {
      const rect = svg("rect", { x: 0, y: 1, width: 34, height: 12, fill: series.color, "fill-opacity": series.band === "hatch" ? 0.12 : 0.18 });
      sample.append(rect);
    }
    if (series.ys) {
      sample.append(svg("line", { x1: 0, x2: 34, y1: 7, y2: 7, stroke: series.color, "stroke-width": series.filled ? 2.6 : 1.6, "stroke-dasharray": series.dash || null }));
      sample.append(drawMarker(series.marker, 17, 7, series.color, series.filled));
    }
    legend.append(el("span", {}, sample, series.legend || series.name));
  }

  // ------------------------------------------------------------------ run level
  function renderRun() {
    document.getElementById("title").textContent = `cot-transfer · ${INDEX.title}`;
    document.getElementById("subtitle").textContent =
      `${INDEX.strong_model} → ${INDEX.weak_model} · ${INDEX.n_problems} problems, ${INDEX.baseline_unsolved} unsolved alone · n = ${INDEX.n_samples} · τ = ${INDEX.tau}, τ0 = ${INDEX.tau0} · cut: ${INDEX.cut}` +
      (INDEX.cut === "search" ? " (searched: rows only at the cuts the search probed; a curve's line joins probes, not measured steps)" : "");
    const level = Math.round(100 * INDEX.confidence);
    const container = document.getElementById("unlock-charts");
    for (const block of INDEX.receivers) {
      const s = block.series;
      const series = [];
      const hasTrue = (s.true_unlock_rate_interval || []).some((pair) => pair && isNum(pair[0]));
      if (hasTrue) series.push({ name: "true unlock rate", legend: `true unlock rate, ${level}% interval`, color: "#17becf", opacity: 0.1, xs: s.fractions, bands: s.true_unlock_rate_interval, band: "fill" });
      // Drawn bottom to top: any correct, the unlock rate, then the dashed curve without answer
      // leaks, so that where the curves coincide each one still shows.
      series.push({ name: "any correct", legend: "any sample correct (interval: hover / summary.json)", color: "#ff7f0e", dash: "2 3", marker: "square", filled: false, xs: s.fractions, ys: s.any_correct_rate,
        tooltip: (i) => `any correct at ${pct(s.fractions[i])}: ${pct(s.any_correct_rate[i])} [${pct((s.any_correct_rate_interval[i] || [])[0])}, ${pct((s.any_correct_rate_interval[i] || [])[1])}]` });
      series.push({ name: "unlock rate", legend: `unlock rate (potential ≥ τ), ${level}% CI`, color: PALETTE[0], marker: "circle", filled: true, xs: s.fractions, ys: s.unlock_rate, bands: s.unlock_rate_interval, band: "fill" });
      series.push({ name: "unlock rate, answer not in prefix", legend: `answer not in the prefix, ${level}% CI`, color: PALETTE[1], dash: "6 4", marker: "diamond", filled: false, xs: s.fractions, ys: s.unlock_rate_without_answer, bands: s.unlock_rate_without_answer_interval, band: "hatch" });
      container.append(lineChart({
        title: `Unlock rate · ${keyName(block.key)}${block.primary ? " (primary)" : ""}${block.measures === "self_potential" ? " · self-potential" : ""}`,
        yLabel: "share of baseline-unsolved problems", yPercent: true, series, className: "unlock-chart",
        caption: `Over the ${block.baseline_unsolved} of ${block.n_problems} problems with potential at 0% ≤ τ0. The dashed curve counts only prefixes that do not state the reference answer; where it equals the unlock rate it lies on the solid line.`,
      }));
    }
    const meanSeries = INDEX.receivers.map((block) => ({
      name: keyName(block.key), legend: `${keyName(block.key)}, ${level}% CI`, color: color(block.key), marker: "circle", filled: true,
      xs: block.series.fractions, ys: block.series.mean_potential, bands: block.series.mean_potential_interval, band: "fill",
    }));
    document.getElementById("potential-mean").replaceWith(Object.assign(lineChart({ title: "Mean potential per receiver", yLabel: "mean potential", series: meanSeries,
      caption: "Mean over problems of the share of correct samples at each cut; τ applies to each problem's potential, not to this mean." }), { id: "potential-mean" }));
    renderHeatmap();
    renderGroups();
    const settings = document.getElementById("settings");
    for (const [name, value] of INDEX.settings) settings.append(el("tr", {}, el("th", { text: name }), el("td", { text: value })));
  }

  function viridis(t) {
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const v = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(v));
    const f = v - i;
    return `rgb(${stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c))).join(",")})`;
  }
  let heatOrder = [];
  function renderHeatmap() {
    const canvas = document.getElementById("heatmap");
    heatOrder = problems.map((p, i) => i).filter((i) => problems[i].heat.length);
    const key = (i) => [isNum(problems[i].heat[0]) ? problems[i].heat[0] : 9, isNum(problems[i].fu[INDEX.primary]) ? problems[i].fu[INDEX.primary] : 9];
    heatOrder.sort((a, b) => { const ka = key(a), kb = key(b); return ka[0] - kb[0] || ka[1] - kb[1] || (problems[a].id < problems[b].id ? -1 : 1); });
    const rowH = heatOrder.length ? Math.max(1, Math.min(14, Math.floor(600 / heatOrder.length))) : 14;
    canvas.height = Math.max(40, rowH * heatOrder.length);
    const context = canvas.getContext("2d");
    context.fillStyle = "#ddd";
    context.fillRect(0, 0, canvas.width, canvas.height);
    heatOrder.forEach((i, row) => {
      const heat = problems[i].heat;
      const cellW = canvas.width / heat.length;
      heat.forEach((value, column) => {
        context.fillStyle = isNum(value) ? viridis(value) : "#ccc";
        context.fillRect(column * cellW, row * rowH, Math.ceil(cellW), rowH);
      });
    });
    canvas.title = "click a row to open its problem";
    canvas.addEventListener("click", (event) => {
      const rect = canvas.getBoundingClientRect();
      const row = Math.floor(((event.clientY - rect.top) * canvas.height) / rect.height / rowH);
      if (heatOrder[row] !== undefined) openProblem(heatOrder[row]);
    });
    const scale = document.getElementById("heatmap-scale");
    const bar = el("div", { style: `height:10px;width:200px;display:inline-block;vertical-align:middle;background:linear-gradient(to right,${[0, 0.25, 0.5, 0.75, 1].map(viridis).join(",")})` });
    scale.append(el("span", { text: "potential 0 " }), bar, el("span", { text: " 1 (grey: no result)" }));
  }

  function renderGroups() {
    const container = document.getElementById("groups");
    if (!INDEX.groups.length) { container.append(el("p", { class: "muted", text: "No group fields (level, subject or --group-by) in this run." })); return; }
    for (const group of INDEX.groups) {
      const fractions = group.values.length ? group.values[0].fractions : [];
      const table = el("table", {});
      table.append(el("tr", {}, el("th", { text: group.field }), el("th", { text: "problems" }), el("th", { text: "unsolved" }),
        ...fractions.map((f) => el("th", { text: `unlock @ ${pct(f)}` }))));
      for (const value of group.values) {
        table.append(el("tr", {}, el("td", { text: value.value }), el("td", { class: "num", text: value.n_problems }), el("td", { class: "num", text: value.baseline_unsolved }),
          ...value.unlock_rate.map((rate) => el("td", { class: "num", text: pct(rate) }))));
      }
      container.append(el("h3", { text: `By ${group.field}` }), table);
    }
  }

  // ------------------------------------------------------------------ problem list
  const rows = [];
  function groupText(problem) { return Object.entries(problem.g).map(([k, v]) => `${k}=${v}`).join(", "); }
  function sortValue(problem, key) {
    const r = state.receiver;
    switch (key) {
      case "id": return problem.id;
      case "group": return groupText(problem);
      case "label": return problem.label || "";
      case "fu": return problem.fu[r];
      case "p0": return problem.p0[r];
      case "p1": return problem.p1[r];
      case "jump": return problem.jump[r];
      case "aip": return problem.aip;
      case "sc": return problem.sc === null || problem.sc === undefined ? null : problem.sc ? 1 : 0;
      default: return null;
    }
  }
  function unlockText(problem) {
    const value = problem.fu[state.receiver];
    if (isNum(value)) return pct(value);
    const p0 = problem.p0[state.receiver];
    if (isNum(p0) && p0 > INDEX.tau0) return "solved at 0%";
    return isNum(p0) ? "never" : "–";
  }
  function buildList() {
    const body = document.querySelector("#problem-table tbody");
    const receiverSelect = document.getElementById("f-receiver");
    keys.forEach((key, index) => receiverSelect.append(el("option", { value: index, text: keyName(index) })));
    receiverSelect.value = String(state.receiver);
    const labels = new Set(problems.map((p) => p.label).filter(Boolean));
    for (const label of [...labels].sort()) document.getElementById("f-label").append(el("option", { value: label, text: label }));
    const groups = new Set(problems.flatMap((p) => Object.entries(p.g).map(([k, v]) => `${k}=${v}`)));
    for (const group of [...groups].sort()) document.getElementById("f-group").append(el("option", { value: group, text: group }));
    problems.forEach((problem, position) => {
      const row = el("tr", { "data-id": problem.id, "data-position": position, onclick: () => openProblem(position) });
      row.cells_ = Array.from({ length: 9 }, () => el("td"));
      row.append(...row.cells_);
      rows.push(row);
      body.append(row);
    });
    fillList();
    for (const th of document.querySelectorAll("#problem-table th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        sortList();
      });
    }
    for (const input of document.querySelectorAll("#filters input, #filters select")) input.addEventListener("input", () => {
      if (input.id === "f-receiver") { state.receiver = Number(input.value); fillList(); sortList(); }
      filterList();
    });
    sortList();
    filterList();
  }
  function fillList() {
    rows.forEach((row, position) => {
      const p = problems[position];
      const c = row.cells_;
      c[0].textContent = p.id;
      c[1].textContent = groupText(p);
      c[2].replaceChildren(p.label ? el("span", { class: `label label-${p.label}`, text: p.label }) : "");
      c[3].textContent = unlockText(p); c[3].className = "num";
      c[4].textContent = fmt(p.p0[state.receiver]); c[4].className = "num";
      c[5].textContent = fmt(p.p1[state.receiver]); c[5].className = "num";
      c[6].textContent = fmt(p.jump[state.receiver]); c[6].className = "num";
      c[7].textContent = isNum(p.aip) ? pct(p.aip) : "–"; c[7].className = "num";
      c[8].replaceChildren(p.sc === true ? el("span", { class: "ok", text: "✓ correct" }) : p.sc === false ? el("span", { class: "bad", text: "✗ wrong" }) : "–");
    });
  }
  function sortList() {
    const { key, dir } = state.sort;
    const order = rows.map((row, position) => position);
    order.sort((a, b) => {
      const va = sortValue(problems[a], key), vb = sortValue(problems[b], key);
      const na = va === null || va === undefined, nb = vb === null || vb === undefined;
      if (na || nb) return na && nb ? a - b : na ? 1 : -1;  // missing values last, whatever the direction
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return a - b;
    });
    const body = document.querySelector("#problem-table tbody");
    body.append(...order.map((position) => rows[position]));
    for (const th of document.querySelectorAll("#problem-table th[data-sort]")) {
      th.classList.toggle("sorted-asc", th.dataset.sort === key && dir === 1);
      th.classList.toggle("sorted-desc", th.dataset.sort === key && dir === -1);
    }
  }
  function filterList() {
    const text = document.getElementById("f-id").value.trim().toLowerCase();
    const label = document.getElementById("f-label").value;
    const group = document.getElementById("f-group").value;
    const strong = document.getElementById("f-strong").value;
    const unlock = document.getElementById("f-unlock").value;
    const low = Number(document.getElementById("f-unlock-min").value || 0);
    const high = Number(document.getElementById("f-unlock-max").value || 1);
    let shown = 0;
    rows.forEach((row, position) => {
      const p = problems[position];
      const fu = p.fu[state.receiver];
      const p0 = p.p0[state.receiver];
      let ok = (!text || p.id.toLowerCase().includes(text)) && (!label || p.label === label)
        && (!group || groupText(p).split(", ").includes(group)) && (!strong || String(p.sc) === strong);
      if (unlock === "unlocked") ok = ok && isNum(fu);
      if (unlock === "never") ok = ok && !isNum(fu) && isNum(p0) && p0 <= INDEX.tau0;
      if (unlock === "solved") ok = ok && isNum(p0) && p0 > INDEX.tau0;
      if (isNum(fu)) ok = ok && fu >= low - 1e-9 && fu <= high + 1e-9;
      row.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.getElementById("f-count").textContent = `${shown} of ${problems.length} problems`;
  }

  // ------------------------------------------------------------------ one problem
  function detailOf(position) {
    if (!details.has(position)) details.set(position, JSON.parse(document.getElementById(`problem-${position}`).textContent));
    return details.get(position);
  }
  function openProblem(position) {
    const opened = performance.now();
    state.position = position;
    state.detail = detailOf(position);
    const detail = state.detail;
    const problem = problems[position];
    const head = document.getElementById("problem-head");
    head.replaceChildren(
      el("h2", { text: `Problem ${problem.id}` }),
      el("div", {}, el("span", { class: "problem-text", text: detail.problem || "(problem text not in the folder)" })),
      el("p", {}, `reference answer: `, el("code", { text: detail.reference ?? "?" }), ` · strong answer: `, el("code", { text: detail.strong_answer ?? "none" }),
        problem.sc === true ? el("span", { class: "ok", text: " ✓" }) : problem.sc === false ? el("span", { class: "bad", text: " ✗" }) : "",
        ` · CoT: ${detail.cot_tokens ?? "?"} tokens, ${detail.cuts.length} cuts`,
        INDEX.cut === "search" ? `, ${detail.cuts.filter((cut, i) => detail.receivers.some((receiver) => receiver && receiver.pts[i])).length} probed by the search` : "",
        detail.truncated ? " · cut off inside its reasoning (left out of the statistics)" : "",
        detail.label ? el("span", {}, " · ", el("span", { class: `label label-${detail.label[0]}`, text: `${detail.label[0]} (confidence ${fmt(detail.label[3], 3)})` })) : ""),
    );
    const byLabel = detail.label ? detail.label[2] : null;
    const steps = (detail.receivers[state.shade] || {}).steps || [];
    const biggest = steps.reduce((best, step) => (best === null || Math.abs(step[2]) > Math.abs(best[2]) ? step : best), null);
    state.cut = byLabel ?? (biggest ? biggest[1] : detail.cuts.length - 1);
    renderShadeControls();
    renderProblemBody();
    activate("problem");
    const hash = `#problem=${encodeURIComponent(problem.id)}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    timings.last_problem_ms = performance.now() - opened;
  }
  function renderShadeControls() {
    const controls = document.getElementById("shade-controls");
    const receiver = el("select", { id: "shade-receiver" });
    keys.forEach((key, index) => receiver.append(el("option", { value: index, text: keyName(index) })));
    receiver.value = String(state.shade);
    receiver.addEventListener("input", () => { state.shade = Number(receiver.value); renderProblemBody(); });
    const metric = el("select", { id: "shade-metric" }, el("option", { value: "importance", text: "resampling importance (Δ potential)" }), el("option", { value: "shift", text: "answer shift (total variation)" }));
    metric.value = state.metric;
    metric.addEventListener("input", () => { state.metric = metric.value; renderProblemBody(); });
    controls.replaceChildren(el("label", {}, "steps shaded by ", metric), el("label", {}, " of ", receiver),
      el("span", {}, el("span", { class: "swatch", style: "background:rgba(44,160,44,.55)" }), " potential rises"),
      el("span", {}, el("span", { class: "swatch", style: "background:rgba(214,39,40,.55)" }), " falls (bold: interval excludes 0)"),
      el("span", {}, el("span", { class: "swatch", style: "outline:2px solid #ff7f0e" }), " the dynamics label's step"),
      el("span", {}, el("span", { class: "cut aip", style: "display:inline-block;color:#fff;background:#d62728;border-radius:3px;padding:0 3px;font-size:10px", text: "A" }), " prefix states the answer"));
  }
  function shadeOf(step) {
    if (!step) return "";
    if (state.metric === "shift") {
      const value = step[5];
      return isNum(value) ? `background: rgba(31,119,180,${(0.08 + 0.5 * value).toFixed(2)})` : "";
    }
    const value = step[2];
    if (!isNum(value) || value === 0) return "";
    const significant = step[3] > 0 || step[4] < 0;
    const alpha = Math.min(0.65, 0.06 + 0.55 * Math.abs(value)) * (significant ? 1 : 0.5);
    const rgb = value > 0 ? "44,160,44" : "214,39,40";
    return `background: rgba(${rgb},${alpha.toFixed(2)})${significant ? "; font-weight: 600" : ""}`;
  }
  function renderProblemBody() {
    renderCot();
    renderPotentialChart();
    renderStepTable();
    renderCutDetail();
  }
  function renderCot() {
    const detail = state.detail;
    const cot = document.getElementById("cot");
    cot.replaceChildren();
    const cuts = detail.cuts.map((cut, index) => ({ index, fraction: cut[0], offset: cut[1], exact: cut[2], steps: cut[3], tokens: cut[4], aip: cut[5] }));
    const ordered = cuts.slice().sort((a, b) => a.offset - b.offset || a.fraction - b.fraction);
    const stepAt = new Map();
    for (const step of (detail.receivers[state.shade] || {}).steps || []) stepAt.set(step[1], step);
    const label = detail.label;
    let previous = 0;
    ordered.forEach((cut, order) => {
      if (cut.offset > previous || order > 0) {
        const text = detail.cot.slice(previous, cut.offset);
        if (text) {
          const span = el("span", { class: "step", "data-step": cut.index, text, style: shadeOf(stepAt.get(cut.index)) });
          const step = stepAt.get(cut.index);
          if (step) span.title = `step to cut ${cut.index}: Δ potential ${signed(step[2])} [${signed(step[3])}, ${signed(step[4])}], answer shift ${fmt(step[5])}`;
          if (label && label[2] === cut.index) span.classList.add("labelled");
          cot.append(span);
        }
      }
      if (label && label[2] === cut.index) cot.append(el("span", { class: "badge", text: `${label[0]} ▸`, title: `dynamics label ${label[0]} at this step (confidence ${fmt(label[3], 3)})` }));
      const marker = el("span", { class: `cut${cut.aip ? " aip" : ""}${cut.exact ? "" : " approx"}${cut.index === state.cut ? " selected" : ""}`, "data-cut": cut.index,
        text: `${cut.aip ? "A " : ""}${pct(cut.fraction)}`, onclick: () => selectCut(cut.index) });
      marker.title = `cut ${cut.index}: ${pct(cut.fraction)} of the CoT${isNum(cut.tokens) ? `, ${cut.tokens} tokens` : ""}${isNum(cut.steps) && cut.steps ? `, ${cut.steps} steps` : ""}${cut.aip ? ", the prefix states the reference answer" : ""}${cut.exact ? "" : " (position approximate)"}`;
      cot.append(marker);
      previous = Math.max(previous, cut.offset);
    });
    if (previous < detail.cot.length) cot.append(el("span", { class: "step", text: detail.cot.slice(previous) }));
    if (!detail.cot) cot.append(el("span", { class: "muted", text: "(no CoT stored for this problem)" }));
    document.getElementById("final").replaceChildren(detail.final_text ? el("p", {}, "after the reasoning: ", el("code", { text: detail.final_text })) : "");
    const selected = cot.querySelector(".cut.selected");
    if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: "nearest" });
  }
  function renderPotentialChart() {
    const detail = state.detail;
    const level = Math.round(100 * INDEX.confidence);
    const series = [];
    detail.receivers.forEach((receiver, index) => {
      if (!receiver) return;
      const order = detail.cuts.map((cut, i) => i).filter((i) => receiver.pts[i]).sort((a, b) => detail.cuts[a][0] - detail.cuts[b][0]);
      series.push({
        name: keyName(index), legend: `${keyName(index)}, ${level}% Wilson interval`, color: color(index), marker: "circle", filled: true,
        xs: order.map((i) => detail.cuts[i][0]), ys: order.map((i) => receiver.pts[i][2]), bands: order.map((i) => [receiver.pts[i][3], receiver.pts[i][4]]),
        band: "fill", cuts: order, tooltip: (k) => { const p = receiver.pts[order[k]]; return `${keyName(index)} at ${pct(detail.cuts[order[k]][0])}: ${p[1]}/${p[0]} correct = ${fmt(p[2])} [${fmt(p[3])}, ${fmt(p[4])}] (click: answers)`; },
      });
    });
    const chart = lineChart({ title: "Potential at each cut (click a point)", yLabel: "potential", series, selectedX: detail.cuts[state.cut] ? detail.cuts[state.cut][0] : null,
      selectedCut: state.cut, onClick: selectCut, className: "potential-chart" });
    chart.id = "potential-chart";
    document.getElementById("potential-chart").replaceWith(chart);
  }
  function renderStepTable() {
    const detail = state.detail;
    const container = document.getElementById("step-table");
    const steps = ((detail.receivers[state.shade] || {}).steps || []).slice().sort((a, b) => detail.cuts[a[1]][0] - detail.cuts[b[1]][0]);
    if (!steps.length) { container.replaceChildren(); return; }
    const level = Math.round(100 * INDEX.confidence);
    const table = el("table", {}, el("tr", {}, el("th", { text: "step" }), el("th", { text: `Δ potential [${level}% Newcombe]` }), el("th", { text: "answer shift (TV)" })));
    for (const step of steps) {
      const significant = step[3] > 0 || step[4] < 0;
      table.append(el("tr", { class: significant ? "sig" : "", onclick: () => selectCut(step[1]) },
        el("td", { text: `${pct(detail.cuts[step[0]][0])} → ${pct(detail.cuts[step[1]][0])}` }),
        el("td", { class: "num", text: `${signed(step[2])} [${signed(step[3])}, ${signed(step[4])}]` }),
        el("td", { class: "num", text: fmt(step[5]) })));
    }
    container.replaceChildren(el("div", { class: "muted", text: `Step importance of ${keyName(state.shade)} (each step: the text between two adjacent cuts)` }), table);
  }
  function selectCut(index) {
    state.cut = index;
    for (const marker of document.querySelectorAll("#cot .cut")) marker.classList.toggle("selected", Number(marker.dataset.cut) === index);
    renderPotentialChart();
    renderCutDetail();
  }
  function renderCutDetail() {
    const detail = state.detail;
    const container = document.getElementById("cut-detail");
    const cut = detail.cuts[state.cut];
    if (!cut) { container.replaceChildren(); return; }
    const parts = [el("h3", { text: `Cut ${state.cut}: ${pct(cut[0])} of the CoT${isNum(cut[4]) ? ` · ${cut[4]} tokens` : ""}${cut[3] ? ` · ${cut[3]} steps` : ""}${cut[5] ? " · the prefix states the reference answer" : ""}` })];
    detail.receivers.forEach((receiver, index) => {
      if (!receiver || !receiver.rows[state.cut]) return;
      const row = receiver.rows[state.cut];
      const point = receiver.pts[state.cut];
      const box = el("div", { class: "receiver", "data-receiver": index });
      box.append(el("div", {}, el("strong", { text: keyName(index) }), ` · ${point[1]}/${point[0]} correct, potential ${fmt(point[2])} [${fmt(point[3])}, ${fmt(point[4])}]`));
      const answers = el("div", { class: "answers" });
      const total = row.a.reduce((sum, item) => sum + item[1], 0) || 1;
      for (const [answer, count] of row.a) {
        const isRef = detail.reference !== null && answer === detail.reference;
        answers.append(el("code", { text: answer === "" ? "(no answer)" : answer, title: isRef ? "the reference answer (as text)" : "" }),
          el("div", {}, el("div", { class: `bar${isRef ? " ref" : ""}`, style: `width:${(100 * count / total).toFixed(1)}%` })),
          el("span", { text: `${count} (${pct(count / total)})${isRef ? " ✓" : ""}` }));
      }
      box.append(el("div", { class: "muted", text: row.a.length ? "answers of the samples (green: the reference answer, compared as text)" : "no answer counts kept" }), answers);
      box.append(el("div", { class: "muted", text: `kept completions: ${row.c.length} of ${point[0]} samples` }));
      for (const [text, answer, correct, tokens, finish] of row.c) {
        box.append(el("div", { class: "completion" },
          el("span", { class: correct ? "ok" : "bad", text: correct ? "✓ correct" : "✗ wrong" }),
          ` · answer `, el("code", { text: answer ?? "none" }), ` · ${tokens ?? "?"} tokens · ${finish}`,
          el("pre", { text: text || "(empty)" })));
      }
      parts.push(box);
    });
    container.replaceChildren(...parts);
  }

  // ------------------------------------------------------------------ tabs and start
  function activate(tab) {
    for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.tab === tab);
    for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== `tab-${tab}`;
    if (tab === "problem") document.getElementById("problem-tab").disabled = false;
  }
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => activate(button.dataset.tab));
  renderRun();
  buildList();
  const wanted = decodeURIComponent((location.hash.match(/problem=([^&]+)/) || [])[1] || "");
  const position = problems.findIndex((p) => p.id === wanted);
  if (position >= 0) openProblem(position);
  timings.first_render_ms = performance.now() - started;
})();
