// The control-room page: server-sent events from /events, details from /api/castings/<id>.
// No libraries, nothing from the internet: tables in the DOM, charts on <canvas>.
"use strict";

const MAX_ROWS = 500;
const PAD_LEFT = 48, PAD_RIGHT = 4; // plot area inside each chart canvas (room for the y labels)
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

const state = { rows: new Map(), order: [], strand: null, strands: new Set(), selected: null, detail: null };
const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#castings tbody");

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour12: false });
}
const fmtMs = (ms) => (ms == null ? "–" : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(1)} %`);

function rowElement(r) {
  const tr = document.createElement("tr");
  tr.dataset.castingId = r.casting_id;
  tr.dataset.scoredAt = r.scored_at || "";
  tr.dataset.shownMs = String(Date.now());
  tr.dataset.strand = r.strand || "";
  if (r.predicted_defect) tr.classList.add("defect");
  const p = r.defect_probability;
  const cells = [
    [fmtTime(r.scored_at)], [r.strand || "–"], [r.casting_id],
    [`${p == null ? "–" : p.toFixed(3)}<span class="pbar"><i style="width:${(100 * (p || 0)).toFixed(1)}%"></i>` +
      `<b style="left:${(100 * (r.threshold || 0)).toFixed(1)}%"></b></span>`, "num", true],
    [r.predicted_defect ? '<span class="badge defect">DEFECT</span>' : '<span class="badge ok">ok</span>', "verdict", true],
    [r.n_steps ?? "–", "num"], [fmtMs(r.latency_ms), "num"], [r.model_version || "–", "model"],
  ];
  for (const [value, cls, html] of cells) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (html) td.innerHTML = value; else td.textContent = value;
    tr.appendChild(td);
  }
  tr.addEventListener("click", () => select(r.casting_id));
  if (r.casting_id === state.selected) tr.classList.add("selected");
  return tr;
}

function visible(r) { return state.strand === null || r.strand === state.strand; }

function addRows(rows, fresh) {
  // rows come newest first; insert oldest first so the newest ends on top
  for (const r of [...rows].reverse()) {
    const old = state.rows.get(r.casting_id);
    if (old && old.el) old.el.remove();
    state.order = state.order.filter((id) => id !== r.casting_id);
    state.order.unshift(r.casting_id);
    r.el = rowElement(r);
    if (fresh) {
      r.el.classList.add("fresh");
      r.el.addEventListener("animationend", () => r.el.classList.remove("fresh"), { once: true });
    }
    state.rows.set(r.casting_id, r);
    if (r.strand && !state.strands.has(r.strand)) { state.strands.add(r.strand); renderStrands(); }
    if (visible(r)) tbody.insertBefore(r.el, tbody.firstChild);
  }
  while (state.order.length > MAX_ROWS) {
    const id = state.order.pop();
    const r = state.rows.get(id);
    if (r && r.el) r.el.remove();
    state.rows.delete(id);
  }
  $("list-count").textContent = `${state.order.length} shown, newest first`;
}

function renderAll() {
  tbody.replaceChildren(...state.order.map((id) => state.rows.get(id)).filter(visible).map((r) => r.el));
}

function renderStrands() {
  const box = $("strands");
  box.replaceChildren();
  const names = [null, ...[...state.strands].sort()];
  for (const name of names) {
    const b = document.createElement("button");
    b.textContent = name === null ? "all strands" : name;
    b.className = state.strand === name ? "on" : "";
    b.addEventListener("click", () => { state.strand = name; renderStrands(); renderAll(); });
    box.appendChild(b);
  }
}

function renderSummary(s) {
  $("rate-per-min").textContent = s.castings_per_min ?? "–";
  $("rate-defect-share").textContent = pct(s.defect_share);
  $("rate-latency").textContent = `${fmtMs(s.latency_p50_ms)} / ${fmtMs(s.latency_p99_ms)}`;
  $("rate-lag").textContent = s.lag == null ? "–" : String(s.lag);
  $("model-version").textContent = s.model_version ? `${s.model_version} (threshold ${s.threshold?.toFixed(3)})` : "–";
  const dl = Object.entries(s.deadletters || {}).sort((a, b) => b[1] - a[1]);
  $("deadletters").textContent = dl.length ? dl.map(([r, n]) => `${r} ${n}`).join(" · ") : "none";
  $("kept").textContent = `server keeps ${s.castings_kept} of at most ${s.max_castings} castings`;
}

// ------------------------------------------------------------------ the selected casting

async function select(id) {
  state.selected = id;
  for (const tr of tbody.querySelectorAll("tr.selected")) tr.classList.remove("selected");
  const row = state.rows.get(id);
  if (row && row.el) row.el.classList.add("selected");
  const reply = await fetch(withToken(`api/castings/${encodeURIComponent(id)}`));
  if (!reply.ok) { $("detail-title").textContent = `${id}: not kept by the server any more`; return; }
  state.detail = await reply.json();
  drawDetail();
}

function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.max(1, Math.round(w * ratio));
  canvas.height = Math.max(1, Math.round(h * ratio));
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return [ctx, w, h];
}

function shade(ctx, attention, maxA, w, h, alpha) {
  const n = attention.length, dx = w / n;
  for (let i = 0; i < n; i++) {
    const a = attention[i] / maxA;
    if (a <= 0.02) continue;
    ctx.fillStyle = `rgba(240,160,48,${(alpha * a).toFixed(3)})`;
    ctx.fillRect(i * dx, 0, Math.ceil(dx) + 0.5, h);
  }
}

function drawDetail() {
  const d = state.detail;
  if (!d) return;
  $("detail-empty").hidden = true;
  $("charts").hidden = false;
  const box = $("detail");
  box.dataset.castingId = d.casting_id;
  box.dataset.steps = String(d.n_steps ?? 0);
  // ids and names come from the topics and the config: text, never markup
  const title = $("detail-title");
  title.textContent = `${d.casting_id} `;
  if (d.predicted_defect != null) {
    const badge = document.createElement("span");
    badge.className = d.predicted_defect ? "badge defect" : "badge ok";
    badge.textContent = d.predicted_defect ? "DEFECT" : "ok";
    title.appendChild(badge);
  }
  $("detail-meta").textContent = d.defect_probability == null ? "not scored yet"
    : `p = ${d.defect_probability.toFixed(3)} (threshold ${d.threshold.toFixed(3)}) · ${d.n_steps} steps · ` +
      `model ${d.model_version} · latency ${fmtMs(d.latency_ms)} · scored ${fmtTime(d.scored_at)} · ` +
      `top steps ${d.top_steps.join(", ")}`;
  const n = d.n_steps || (d.traces[0] || []).length;
  const attention = d.attention.length === n ? d.attention : [];
  const maxA = Math.max(1e-12, ...attention);

  // the attention as a heat band over the steps, top steps marked
  // (same plot geometry as the traces below, so a step sits at the same x in the band and in every chart)
  const band = $("attention-band");
  const [bctx, cw, bh] = canvasContext(band);
  const bw = cw - PAD_LEFT - PAD_RIGHT;
  bctx.translate(PAD_LEFT, 0);
  bctx.fillStyle = "#202a35"; bctx.fillRect(0, 0, bw, bh);
  shade(bctx, attention, maxA, bw, bh, 1.0);
  bctx.fillStyle = "#f0a030";
  for (const step of d.top_steps) {
    const x = (step + 0.5) * (bw / n);
    bctx.beginPath(); bctx.moveTo(x - 5, 0); bctx.lineTo(x + 5, 0); bctx.lineTo(x, 8); bctx.fill();
  }
  band.dataset.steps = String(attention.length);
  band.dataset.topSteps = d.top_steps.join(",");

  // one chart per channel on the same step axis, shaded by the attention
  const traces = $("traces");
  traces.replaceChildren();
  d.channels.forEach((ch, c) => {
    const row = document.createElement("div");
    row.className = "trace-row";
    const label = document.createElement("div");
    label.className = "trace-label";
    label.textContent = ch.name;
    const unit = document.createElement("span");
    unit.className = "unit";
    unit.textContent = ch.unit;
    label.appendChild(unit);
    row.appendChild(label);
    const canvas = document.createElement("canvas");
    canvas.className = "trace";
    canvas.dataset.channel = ch.name;
    canvas.dataset.unit = ch.unit;
    row.appendChild(canvas);
    traces.appendChild(row);
    drawTrace(canvas, d.traces[c], attention, maxA, d.top_steps, c === d.channels.length - 1);
  });
}

function drawTrace(canvas, values, attention, maxA, topSteps, axis) {
  const [ctx, w, h] = canvasContext(canvas);
  const padL = PAD_LEFT, padB = axis ? 16 : 4, plotW = w - padL - PAD_RIGHT, plotH = h - padB - 6;
  const n = values.length;
  ctx.save(); ctx.translate(padL, 4);
  ctx.fillStyle = "#131a22"; ctx.fillRect(0, 0, plotW, plotH);
  shade(ctx, attention, maxA, plotW, plotH, 0.55);
  const finite = values.filter((v) => v !== null);
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (!finite.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const y = (v) => plotH - ((v - lo) / (hi - lo)) * (plotH - 4) - 2;
  ctx.strokeStyle = "rgba(240,160,48,0.9)"; ctx.setLineDash([3, 3]);
  for (const step of topSteps) {
    const x = (step + 0.5) * (plotW / n);
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, plotH); ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.strokeStyle = "#6cb6ff"; ctx.lineWidth = 1.4; ctx.beginPath();
  let pen = false, drawn = 0;
  values.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    const x = (i + 0.5) * (plotW / n);
    if (pen) ctx.lineTo(x, y(v)); else ctx.moveTo(x, y(v));
    pen = true; drawn++;
  });
  ctx.stroke();
  ctx.restore();
  ctx.fillStyle = "#8a99aa"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "right";
  ctx.textBaseline = "top"; ctx.fillText(fmtNum(hi), padL - 4, 4);
  ctx.textBaseline = "bottom"; ctx.fillText(fmtNum(lo), padL - 4, plotH + 4);
  if (axis) {
    ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillText("step 0", padL, h);
    ctx.textAlign = "right"; ctx.fillText(`step ${n - 1}`, w - 4, h);
  }
  canvas.dataset.steps = String(n);
  canvas.dataset.drawnPoints = String(drawn);
}

function fmtNum(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2); }

// ------------------------------------------------------------------ the live stream

function connect() {
  const source = new EventSource(withToken("events"));
  source.addEventListener("open", () => { $("connection").textContent = "live"; $("connection").className = "conn up"; });
  source.addEventListener("error", () => {
    $("connection").textContent = "reconnecting…"; $("connection").className = "conn down";
  });
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    state.rows.clear(); state.order = []; tbody.replaceChildren();
    addRows(data.rows, false);
    renderSummary(data.summary);
  });
  source.addEventListener("update", (e) => {
    const data = JSON.parse(e.data);
    if (data.rows.length) addRows(data.rows, true);
    renderSummary(data.summary);
    if (!data.summary.connected) { $("connection").textContent = "broker unreachable"; $("connection").className = "conn down"; }
    else { $("connection").textContent = "live"; $("connection").className = "conn up"; }
  });
}

let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawDetail, 150); });
renderStrands();
connect();
