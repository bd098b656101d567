// Baton trace view: one trace as a waterfall (GET /api/traces/{id}).
// Rows are indented by parent, bars sit on a shared time axis, spans of other
// traces that link here (publish RPC, ack/nack/modack) are stitched in right
// under the span they link to, and the time a message waited in the queue is
// drawn as a hatched segment. Subtrees collapse and expand (the toggle on
// a row, or Left/Right on a focused row); the critical path (the chain of
// spans that sets the end-to-end duration) is highlighted and summed up as
// publish / queue / handler / downstream time. While the trace is young or
// still growing, the page polls the API every second and redraws in place.
// All data goes into the DOM via textContent.
"use strict";
(function () {
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#86bcb6", "#8cd17d"];
  const statusEl = document.getElementById("status");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function nanos(v) {
    try { return BigInt(v === undefined || v === null || v === "" ? 0 : v); } catch (_) { return 0n; }
  }

  function fmtDur(ns) {
    if (!isFinite(ns) || ns < 0) ns = 0;
    if (ns < 1e3) return ns.toFixed(0) + " ns";
    if (ns < 1e6) return (ns / 1e3).toFixed(1) + " µs";
    if (ns < 1e9) return (ns / 1e6).toFixed(ns < 1e7 ? 2 : 1) + " ms";
    return (ns / 1e9).toFixed(2) + " s";
  }

  function showValue(v) {
    if (typeof v === "string") return v;
    try { return JSON.stringify(v); } catch (_) { return String(v); }
  }

  function isError(s) { return !!(s.status && s.status.code === "ERROR"); }
  function isQueueSpan(s) { return / (re)?deliver$/.test(String(s.name || "")); }
  function isConsumer(s) { return s.kind === "CONSUMER" || / subscribe$/.test(String(s.name || "")); }
  function key(s) { return String(s.traceId || "") + "/" + String(s.spanId || ""); }

  // Orders spans into rows: depth-first by parent, children by start time;
  // linked spans right under their target, one level deeper.
  function buildModel(detail) {
    const spans = (Array.isArray(detail.spans) ? detail.spans : []).map((s) => ({ s, linked: false }));
    const linked = (Array.isArray(detail.linkedSpans) ? detail.linkedSpans : []).map((s) => ({ s, linked: true }));
    for (const n of spans.concat(linked)) {
      n.start = nanos(n.s.startUnixNano);
      n.end = nanos(n.s.endUnixNano);
      if (n.end < n.start) n.end = n.start;
    }
    const byId = new Map(spans.map((n) => [String(n.s.spanId), n]));
    const linkedById = new Map(linked.map((n) => [String(n.s.spanId), n]));
    const children = new Map();
    const push = (m, k, v) => { if (!m.has(k)) m.set(k, []); m.get(k).push(v); };
    const roots = [];
    for (const n of spans) {
      const p = String(n.s.parentSpanId || "");
      if (p && byId.has(p) && p !== String(n.s.spanId)) push(children, p, n); else roots.push(n);
    }
    const linkedTo = new Map();
    const linkedChildren = new Map();
    const strays = [];
    for (const n of linked) {
      const links = Array.isArray(n.s.links) ? n.s.links : [];
      const target = links.find((l) => byId.has(String(l.spanId)));
      const p = String(n.s.parentSpanId || "");
      if (target) { n.target = byId.get(String(target.spanId)); push(linkedTo, String(target.spanId), n); }
      else if (p && linkedById.has(p)) push(linkedChildren, p, n);
      else strays.push(n);
    }
    const byStart = (a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);
    const rows = [];
    const seen = new Set();
    function visit(n, depth) {
      if (seen.has(key(n.s))) return;
      seen.add(key(n.s));
      n.depth = depth;
      rows.push(n);
      const id = String(n.s.spanId);
      if (!n.linked) for (const l of (linkedTo.get(id) || []).sort(byStart)) visit(l, depth + 1);
      const kids = n.linked ? linkedChildren.get(id) : children.get(id);
      for (const c of (kids || []).slice().sort(byStart)) visit(c, depth + 1);
    }
    for (const r of roots.sort(byStart)) visit(r, 0);
    for (const r of strays.sort(byStart)) visit(r, 0);

    let t0 = null, t1 = null;
    for (const n of rows) {
      if (t0 === null || n.start < t0) t0 = n.start;
      if (t1 === null || n.end > t1) t1 = n.end;
    }
    if (t0 === null) { t0 = 0n; t1 = 0n; }

    // Queue gaps: a consumer span waited from the end of whatever made the
    // message available (its create span, the publish RPC linked to it, or an
    // earlier delivery attempt that ended before it) until it started.
    for (const n of rows) {
      if (n.linked || !isConsumer(n.s)) continue;
      let anchor = byId.get(String(n.s.parentSpanId || ""));
      if (!anchor) {
        const l = (Array.isArray(n.s.links) ? n.s.links : []).find((x) => byId.has(String(x.spanId)));
        if (l) anchor = byId.get(String(l.spanId));
      }
      if (!anchor) continue;
      let from = anchor.end <= n.start ? anchor.end : null;
      let cause = "published";
      for (const l of linkedTo.get(String(anchor.s.spanId)) || []) {
        if (l.end <= n.start && (from === null || l.end > from)) { from = l.end; cause = "published"; }
      }
      for (const sib of children.get(String(anchor.s.spanId)) || []) {
        if (sib !== n && isConsumer(sib.s) && sib.end <= n.start && (from === null || sib.end > from)) {
          from = sib.end; cause = "redelivery";
        }
      }
      if (from !== null && n.start > from) n.gap = { from, to: n.start, cause };
    }

    const services = [];
    for (const n of rows) {
      const svc = String(n.s.service || "unknown");
      if (!services.includes(svc)) services.push(svc);
    }
    const colors = new Map(services.map((s, i) => [s, PALETTE[i % PALETTE.length]]));
    // Rows under each row (its subtree), for collapsing.
    for (let i = 0; i < rows.length; i++) {
      let j = i + 1;
      while (j < rows.length && rows[j].depth > rows[i].depth) j++;
      rows[i].descendants = j - i - 1;
    }
    const model = { rows, t0, t1, services, colors, byId, children };
    const critical = criticalPath(model);
    model.critical = critical.path;
    model.criticalPieces = critical.pieces;
    return model;
  }

  function isProcess(s) { return / process$/.test(String(s.name || "")); }
  function isCreate(s) { return s.kind === "PRODUCER" || / create$/.test(String(s.name || "")); }

  // The critical path: from the root whose subtree ends last, walking back
  // in time, the child that finishes last before the current point (its
  // subtree's end, so a message's consumer, which outlives its create span,
  // counts), then the one before that child started, and so on into each
  // chosen child. Spans of other traces (linked) are not on it. The walk
  // also cuts the path's time into pieces that do not overlap, each
  // attributed to the span it was spent in (see `category`), so the strip's
  // figures add up to the end-to-end duration.
  function criticalPath(model) {
    const path = new Set();
    const pieces = [];
    const own = model.rows.filter((n) => !n.linked);
    const subEnd = new Map();
    const kidsOf = (n) => model.children.get(String(n.s.spanId)) || [];
    const endOf = (n) => {
      if (subEnd.has(n)) return subEnd.get(n);
      subEnd.set(n, n.end);
      let e = n.end;
      for (const k of kidsOf(n)) { const ke = endOf(k); if (ke > e) e = ke; }
      subEnd.set(n, e);
      return e;
    };
    const roots = own.filter((n) => n.depth === 0);
    if (roots.length === 0) return { path, pieces };
    let root = roots[0];
    for (const r of roots) if (endOf(r) > endOf(root)) root = r;
    const min = (a, b) => (a < b ? a : b);
    // Time of `n` itself from `from` to `to`: up to its end in its own
    // category, after its end (a message outliving its create span) in the
    // queue.
    const own_ = (n, from, to, downstream) => {
      if (to <= from) return;
      const cut = min(to, n.end > from ? n.end : from);
      if (cut > from) pieces.push({ from, to: cut, cat: category(n, downstream) });
      if (to > cut) pieces.push({ from: cut, to, cat: "queue" });
    };
    const walk = (n, bound, downstream) => {
      path.add(n);
      const below = downstream || isProcess(n.s);
      let t = bound;
      const kids = kidsOf(n).slice();
      for (let guard = 0; guard <= kids.length; guard++) {
        let best = null;
        for (const k of kids) {
          if (path.has(k) || k.start >= t) continue;
          if (best === null || min(endOf(k), t) > min(endOf(best), t)) best = k;
        }
        if (best === null) break;
        const end = min(endOf(best), t);
        own_(n, end, t, downstream);
        walk(best, end, below);
        if (best.start <= n.start) { t = n.start; break; }
        t = best.start;
      }
      own_(n, n.start, t, downstream);
    };
    walk(root, endOf(root), false);
    return { path, pieces };
  }

  // What a span on the critical path spends its time on.
  function category(n, downstream) {
    const name = String(n.s.name || "");
    if (downstream) return "downstream";
    if (isProcess(n.s)) return "handler";
    if (isCreate(n.s) || /^publisher /.test(name) || / (publish|receive)$/.test(name)) return "publish";
    if (isQueueSpan(n.s) || / dead-letter$/.test(name)) return "queue";
    if (isConsumer(n.s) || /^subscriber /.test(name)) return "subscriber";
    return "caller";
  }

  // The critical path's time by category, and its delivery attempts.
  function criticalSegments(model) {
    const seg = { total: 0, caller: 0, publish: 0, queue: 0, subscriber: 0, handler: 0, downstream: 0, attempts: 0 };
    for (const p of model.criticalPieces) {
      seg[p.cat] += Number(p.to - p.from);
      seg.total += Number(p.to - p.from);
    }
    for (const n of model.critical) if (isConsumer(n.s)) seg.attempts += 1;
    return seg;
  }

  function pct(model, t) {
    const total = Number(model.t1 - model.t0) || 1;
    return (Number(t - model.t0) / total) * 100;
  }

  function renderSummary(detail, model) {
    const box = document.getElementById("summary");
    box.replaceChildren();
    const root = model.rows.find((n) => !n.linked);
    box.append(el("span", "root", root ? (root.s.service || "?") + ": " + (root.s.name || "") : "(no spans)"));
    const add = (k, v) => { const s = el("span"); s.append(el("span", "k", k), document.createTextNode(v)); box.append(s); };
    add("duration", fmtDur(Number(model.t1 - model.t0)));
    add("spans", String(model.rows.filter((n) => !n.linked).length));
    add("linked", String(model.rows.filter((n) => n.linked).length));
    const errors = model.rows.filter((n) => isError(n.s)).length;
    const e = el("span");
    e.append(el("span", "k", "errors"));
    e.append(errors ? el("span", "badge err", String(errors)) : el("span", "badge ok", "0"));
    box.append(e);
    add("trace", String(detail.traceId || ""));
    // The batch RPC traces linked in (publish, ack, modack, nack): one
    // click away.
    const linkedTraces = new Map();
    for (const n of model.rows) {
      if (n.linked && !linkedTraces.has(String(n.s.traceId))) linkedTraces.set(String(n.s.traceId), n.s);
    }
    if (linkedTraces.size) {
      const span = el("span", "linked-traces");
      span.append(el("span", "k", "linked traces"));
      for (const [id, s] of linkedTraces) {
        const a = el("a", "linked-trace", String(s.name || id.slice(0, 8)));
        a.href = "/ui/trace/" + encodeURIComponent(id);
        a.title = "open trace " + id;
        span.append(a);
      }
      box.append(span);
    }
    box.hidden = false;
    document.getElementById("trace-title").textContent = String(detail.traceId || "");
    document.title = "Baton trace " + (root ? root.s.name : "");
  }

  function renderCritical(model) {
    const box = document.getElementById("critical");
    box.replaceChildren();
    const seg = criticalSegments(model);
    const total = seg.total || 1;
    const parts = [
      ["caller", seg.caller, "in the caller, around the publish"],
      ["publish", seg.publish, "publishing: create span, batching, the broker storing it"],
      ["queue", seg.queue, "waiting in the queue: the broker's backlog, backoff, the gap before delivery"],
      ["subscriber", seg.subscriber, "in the subscriber client outside the handler: flow control, scheduling, the ack or nack round trip"],
      ["handler", seg.handler, "in the handler (process spans), not counting its calls"],
      ["downstream", seg.downstream, "in calls the handler made"],
    ].filter((p) => p[1] > 0);
    // A trace without Pub/Sub spans: the path is all "caller"; say how many
    // spans it has instead.
    if (parts.every((p) => p[0] === "caller")) parts.length = 0;
    box.dataset.totalNs = String(Math.round(seg.total));
    for (const [name, ns] of parts) box.dataset[name + "Ns"] = String(Math.round(ns));
    const head = el("span", "crit-title");
    head.append(el("span", "swatch critical"), el("strong", null, "critical path"), document.createTextNode(" " + fmtDur(seg.total)));
    box.append(head);
    const bar = el("div", "crit-bar");
    for (const [name, ns, what] of parts) {
      const piece = el("span", "crit-seg seg-" + name);
      piece.style.width = Math.max((ns / total) * 100, 0.5) + "%";
      piece.title = name + " " + fmtDur(ns) + ": " + what;
      bar.append(piece);
    }
    box.append(bar);
    const text = el("span", "crit-text");
    parts.forEach(([name, ns, what], i) => {
      if (i) text.append(document.createTextNode(" \u00b7 "));
      const item = el("span", "crit-item");
      item.dataset.segment = name;
      item.title = what;
      item.append(el("span", "crit-dot seg-" + name), document.createTextNode(name + " " + fmtDur(ns)));
      text.append(item);
    });
    if (seg.attempts > 1) text.append(document.createTextNode(" \u00b7 " + seg.attempts + " delivery attempts on the path"));
    if (parts.length === 0) text.append(document.createTextNode(model.critical.size + " spans on the path"));
    box.append(text);
    box.hidden = false;
  }

  function renderLegend(model) {
    const box = document.getElementById("legend");
    box.replaceChildren();
    for (const svc of model.services) {
      const item = el("span", "item legend-service");
      const sw = el("span", "swatch");
      sw.style.background = model.colors.get(svc);
      item.append(sw, el("span", null, svc));
      box.append(item);
    }
    const extra = [["queue", "waiting in queue"], ["critical", "critical path"], ["error", "error"], ["linked", "linked span (other trace)"]];
    for (const [cls, text] of extra) {
      const item = el("span", "item");
      item.append(el("span", "swatch " + cls), el("span", null, text));
      box.append(item);
    }
    box.hidden = false;
  }

  function niceStep(total) {
    const raw = total / 8;
    const pow = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow;
    return 10 * pow;
  }

  function ticks(model) {
    const total = Number(model.t1 - model.t0);
    if (!(total > 0)) return [0];
    const step = niceStep(total);
    const out = [];
    for (let t = 0; t <= total + 1e-9; t += step) out.push(t);
    return out;
  }

  function renderAxis(model) {
    const axis = document.getElementById("axis");
    axis.replaceChildren();
    axis.append(el("div", "cell", "span"), el("div", "cell", "service"), el("div", "cell dur", "duration"));
    const tl = el("div", "timeline");
    const total = Number(model.t1 - model.t0) || 1;
    for (const t of ticks(model)) {
      const tick = el("div", "tick");
      tick.style.left = (t / total) * 100 + "%";
      if (t / total < 0.97) tick.append(el("span", "tick-label", t === 0 ? "0" : fmtDur(t)));
      tl.append(tick);
    }
    axis.append(tl);
  }

  function renderRows(model, onSelect, view) {
    const box = document.getElementById("rows");
    const out = [];
    const total = Number(model.t1 - model.t0) || 1;
    const tickList = ticks(model);
    for (const n of model.rows) {
      const s = n.s;
      const cls = ["row", "span-row"];
      if (isError(s)) cls.push("error");
      if (n.linked) cls.push("linked");
      if (isQueueSpan(s)) cls.push("queue-span");
      const onPath = model.critical.has(n);
      if (onPath) cls.push("critical");
      const row = el("div", cls.join(" "));
      if (onPath) row.dataset.critical = "true";
      row.dataset.spanId = String(s.spanId || "");
      row.dataset.traceId = String(s.traceId || "");
      row.dataset.depth = String(n.depth);
      if (n.linked) row.dataset.linked = "true";
      row.tabIndex = 0;
      row.setAttribute("role", "button");

      const name = el("div", "cell name");
      name.style.paddingLeft = 8 + n.depth * 16 + "px";
      if (n.descendants > 0) {
        const toggle = el("button", "toggle", "\u25be");
        toggle.type = "button";
        toggle.title = "collapse or expand the " + n.descendants + " spans under this one";
        toggle.setAttribute("aria-expanded", "true");
        toggle.addEventListener("click", (ev) => { ev.stopPropagation(); view.toggle(key(n.s)); });
        name.append(toggle);
        row.dataset.children = String(n.descendants);
      } else {
        name.append(el("span", "toggle-space"));
      }
      const dot = el("span", "dot");
      dot.style.background = model.colors.get(String(s.service || "unknown"));
      name.append(dot);
      if (n.linked) name.append(el("span", "badge linked", "↪ linked"));
      if (isError(s)) name.append(el("span", "err-mark", "⚠"));
      const label = el("span", "label", s.name || "(unnamed)");
      label.title = String(s.name || "");
      name.append(label);
      row.append(name);
      row.append(el("div", "cell service", s.service || "?"));
      row.append(el("div", "cell dur", fmtDur(Number(n.end - n.start))));

      const tl = el("div", "timeline");
      for (const t of tickList) {
        const tick = el("div", "tick");
        tick.style.left = (t / total) * 100 + "%";
        tl.append(tick);
      }
      if (n.gap) {
        const left = pct(model, n.gap.from);
        const width = Math.max(pct(model, n.gap.to) - left, 0.2);
        const gap = el("div", "gap");
        gap.style.left = left + "%";
        gap.style.width = width + "%";
        gap.title = "waiting in queue " + fmtDur(Number(n.gap.to - n.gap.from));
        tl.append(gap);
        const text = (n.gap.cause === "redelivery" ? "waiting for redelivery " : "waiting in queue ") + fmtDur(Number(n.gap.to - n.gap.from));
        const gl = el("span", "gap-label", text);
        // Label inside the hatched segment when it fits, else to its left.
        if (width > 22) { gl.style.left = "calc(" + left + "% + 4px)"; }
        else { gl.style.right = "calc(" + (100 - left) + "% + 4px)"; }
        tl.append(gl);
      }
      const left = pct(model, n.start);
      const width = Math.max(pct(model, n.end) - left, 0.25);
      const bar = el("div", "bar" + (isQueueSpan(s) ? " queue" : "") + (isError(s) ? " error" : "") + (n.linked ? " linked" : "") + (onPath ? " critical" : ""));
      bar.style.left = left + "%";
      bar.style.width = width + "%";
      if (!isQueueSpan(s)) bar.style.background = isError(s) ? "#e5534b" : model.colors.get(String(s.service || "unknown"));
      if (n.linked) bar.style.background = "repeating-linear-gradient(90deg, " + model.colors.get(String(s.service || "unknown")) + " 0 6px, #fff 6px 8px)";
      tl.append(bar);
      for (const ev of Array.isArray(s.events) ? s.events : []) {
        const mark = el("div", "event" + (/nack|expired|exception|dead/.test(String(ev.name)) ? " bad" : ""));
        mark.style.left = pct(model, nanos(ev.timeUnixNano)) + "%";
        mark.title = String(ev.name || "event");
        tl.append(mark);
      }
      const blText = isQueueSpan(s) ? "in queue " + fmtDur(Number(n.end - n.start)) : fmtDur(Number(n.end - n.start));
      const bl = el("span", "bar-label", blText);
      const endPct = left + width;
      if (endPct < 86) bl.style.left = "calc(" + endPct + "% + 5px)";
      else bl.style.right = "calc(" + (100 - left) + "% + 5px)";
      if (!(n.gap && endPct >= 86)) tl.append(bl);
      row.append(tl);

      row.addEventListener("click", () => onSelect(n));
      row.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect(n); }
        if (n.descendants > 0 && ((ev.key === "ArrowLeft") !== view.collapsed.has(key(n.s))) && (ev.key === "ArrowLeft" || ev.key === "ArrowRight")) {
          ev.preventDefault();
          view.toggle(key(n.s));
        }
      });
      n.row = row;
      out.push(row);
    }
    // One swap: a redraw while polling does not flicker.
    box.replaceChildren(...out);
    applyCollapsed(model, view.collapsed);
  }

  // Hides the rows under collapsed rows; marks the collapsed rows.
  function applyCollapsed(model, collapsed) {
    let hideDeeper = Infinity;
    for (const n of model.rows) {
      if (!n.row) continue;
      const hidden = n.depth > hideDeeper;
      if (!hidden) hideDeeper = Infinity;
      n.row.hidden = hidden;
      const isCollapsed = n.descendants > 0 && collapsed.has(key(n.s));
      n.row.classList.toggle("collapsed", isCollapsed);
      const toggle = n.row.querySelector("button.toggle");
      if (toggle) {
        toggle.textContent = isCollapsed ? "\u25b8" : "\u25be";
        toggle.setAttribute("aria-expanded", isCollapsed ? "false" : "true");
      }
      const badge = n.row.querySelector(".hidden-count");
      if (badge) badge.remove();
      if (isCollapsed) {
        const label = n.row.querySelector(".label");
        if (label) label.after(el("span", "hidden-count", "+" + n.descendants));
      }
      if (!hidden && isCollapsed) hideDeeper = n.depth;
    }
  }

  function kvTable(obj, keepOrder) {
    const t = el("table", "kv");
    const entries = obj && typeof obj === "object" ? Object.entries(obj) : [];
    if (entries.length === 0) {
      const tr = el("tr");
      tr.append(el("td", "k muted", "none"));
      t.append(tr);
    }
    if (!keepOrder) entries.sort((a, b) => a[0].localeCompare(b[0]));
    for (const [k, v] of entries) {
      const tr = el("tr");
      tr.append(el("td", "k", k), el("td", "v", showValue(v)));
      t.append(tr);
    }
    return t;
  }

  function renderDetails(model, n, onSelect) {
    const box = document.getElementById("details");
    box.replaceChildren();
    const s = n.s;
    const h = el("h2");
    if (n.linked) h.append(el("span", "badge linked", "↪ linked"), document.createTextNode(" "));
    h.append(document.createTextNode(String(s.name || "(unnamed)")));
    box.append(h);
    if (n.linked) {
      const p = el("p", "muted");
      p.append(document.createTextNode("A span of another trace that links to "));
      p.append(el("strong", null, n.target ? n.target.s.name : "this trace"));
      p.append(document.createTextNode(". "));
      const a = el("a", null, "Open its trace");
      a.href = "/ui/trace/" + encodeURIComponent(String(s.traceId || ""));
      p.append(a);
      box.append(p);
    }
    const cols = el("div", "cols");
    const left = el("div");
    left.append(el("h3", null, "span"));
    const status = s.status || {};
    const info = {
      service: s.service || "",
      kind: s.kind || "",
      status: (status.code || "UNSET") + (status.message ? ": " + status.message : ""),
      start: "+" + fmtDur(Number(n.start - model.t0)),
      duration: fmtDur(Number(n.end - n.start)),
      spanId: s.spanId || "",
      parentSpanId: s.parentSpanId || "",
      traceId: s.traceId || "",
    };
    if (n.gap) info["waiting in queue"] = fmtDur(Number(n.gap.to - n.gap.from));
    const infoTable = kvTable(info, true);
    if (isError(s)) infoTable.classList.add("has-error");
    left.append(infoTable);
    left.append(el("h3", null, "attributes"));
    left.append(kvTable(s.attributes));
    const right = el("div");
    right.append(el("h3", null, "events"));
    const events = Array.isArray(s.events) ? s.events : [];
    if (events.length === 0) right.append(el("p", "muted", "none"));
    for (const ev of events) {
      const head = el("div");
      head.append(el("strong", null, ev.name || "(event)"), el("span", "muted", "  +" + fmtDur(Number(nanos(ev.timeUnixNano) - model.t0))));
      right.append(head);
      if (ev.attributes && Object.keys(ev.attributes).length) right.append(kvTable(ev.attributes));
    }
    right.append(el("h3", null, "links"));
    const links = Array.isArray(s.links) ? s.links : [];
    if (links.length === 0) right.append(el("p", "muted", "none"));
    const ul = el("ul");
    for (const l of links) {
      const li = el("li");
      const target = model.byId.get(String(l.spanId));
      if (target) {
        const a = el("a", null, target.s.name + " (" + l.spanId + ")");
        a.href = "#span=" + encodeURIComponent(String(l.spanId));
        a.addEventListener("click", (ev) => { ev.preventDefault(); onSelect(target); });
        li.append(a);
      } else {
        const a = el("a", null, String(l.traceId || "") + " / " + String(l.spanId || ""));
        a.href = "/ui/trace/" + encodeURIComponent(String(l.traceId || ""));
        li.append(a);
      }
      if (l.attributes && Object.keys(l.attributes).length) li.append(kvTable(l.attributes));
      ul.append(li);
    }
    right.append(ul);
    const linkers = model.rows.filter((m) => m.linked && m.target === n);
    if (linkers.length) {
      right.append(el("h3", null, "linked from"));
      const ul2 = el("ul");
      for (const m of linkers) {
        const li = el("li");
        const a = el("a", null, m.s.name + " (" + m.s.service + ")");
        a.href = "#span=" + encodeURIComponent(String(m.s.spanId));
        a.addEventListener("click", (ev) => { ev.preventDefault(); onSelect(m); });
        li.append(a);
        ul2.append(li);
      }
      right.append(ul2);
    }
    // Where the span comes from: the emitting resource (service, host,
    // SDK...) and the instrumentation scope (library) that recorded it.
    const resourceHead = el("h3", null, "resource");
    const resourceTable = kvTable(s.resource);
    resourceTable.dataset.section = "resource";
    right.append(resourceHead, resourceTable);
    const scope = s.scope && typeof s.scope === "object" ? s.scope : {};
    right.append(el("h3", null, "scope"));
    const scopeInfo = { name: scope.name || "", version: scope.version || "" };
    const scopeTable = kvTable(scopeInfo, true);
    scopeTable.dataset.section = "scope";
    right.append(scopeTable);
    if (scope.attributes && Object.keys(scope.attributes).length) {
      const scopeAttrs = kvTable(scope.attributes);
      scopeAttrs.dataset.section = "scope-attributes";
      right.append(scopeAttrs);
    }
    cols.append(left, right);
    box.append(cols);
    box.hidden = false;
  }

  // What survives a redraw: collapsed subtrees and the selected span.
  const view = {
    collapsed: new Set(),
    selectedKey: null,
    model: null,
    renders: 0,
    hashRead: false,
    toggle(k) {
      if (this.collapsed.has(k)) this.collapsed.delete(k); else this.collapsed.add(k);
      if (this.model) applyCollapsed(this.model, this.collapsed);
      writeHash();
    },
  };

  // The view's state in the URL's fragment, so it can be shared:
  // `#span=<selected span id>&collapse=<span id>,<span id>`.
  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    return {
      span: params.get("span"),
      collapse: (params.get("collapse") || "").split(",").filter(Boolean),
    };
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (view.selectedKey) params.set("span", view.selectedKey.split("/")[1] || "");
    const ids = [...view.collapsed].map((k) => k.split("/")[1]).filter(Boolean);
    if (ids.length) params.set("collapse", ids.join(","));
    const text = params.toString().replace(/%2C/g, ",");
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }

  function render(detail) {
    const model = buildModel(detail);
    if (model.rows.length === 0) {
      statusEl.className = "status";
      statusEl.textContent = "This trace has no spans.";
      return;
    }
    statusEl.hidden = true;
    view.model = model;
    let selected = null;
    const onSelect = (n) => {
      if (selected && selected.row) selected.row.classList.remove("selected");
      selected = n;
      view.selectedKey = key(n.s);
      if (n.row) n.row.classList.add("selected");
      writeHash();
      renderDetails(model, n, onSelect);
    };
    const hash = view.hashRead ? null : readHash();
    if (hash) {
      view.hashRead = true;
      for (const id of hash.collapse) {
        for (const n of model.rows) if (String(n.s.spanId) === id && n.descendants > 0) view.collapsed.add(key(n.s));
      }
    }
    renderSummary(detail, model);
    renderCritical(model);
    renderLegend(model);
    renderAxis(model);
    renderRows(model, onSelect, view);
    document.getElementById("waterfall").hidden = false;
    view.renders += 1;
    document.body.dataset.renders = String(view.renders);
    document.body.dataset.spans = String(model.rows.length);
    let initial = null;
    if (view.selectedKey) initial = model.rows.find((n) => key(n.s) === view.selectedKey) || null;
    if (!initial && hash && hash.span) {
      initial = model.rows.find((n) => String(n.s.spanId) === hash.span) || null;
    }
    if (initial) onSelect(initial);
  }

  // ---- live updates ----
  // Poll every second while the trace is young (its newest span ended
  // less than LIVE_WINDOW_MS ago) or changed within IDLE_STOP_MS; stop
  // after that (a "refresh" link starts again).
  const POLL_MS = 1000;
  const LIVE_WINDOW_MS = 60000;
  const IDLE_STOP_MS = 10000;
  const liveEl = document.getElementById("live");
  const live = { url: null, signature: null, lastChange: 0, timer: null };

  function signature(detail) {
    const parts = [];
    for (const list of [detail.spans, detail.linkedSpans]) {
      for (const s of Array.isArray(list) ? list : []) parts.push(String(s.spanId) + ":" + String(s.endUnixNano) + ":" + String(s.status && s.status.code));
    }
    return parts.sort().join(",");
  }

  function newestEndMs(detail) {
    let max = 0n;
    for (const list of [detail.spans, detail.linkedSpans]) {
      for (const s of Array.isArray(list) ? list : []) { const e = nanos(s.endUnixNano); if (e > max) max = e; }
    }
    return Number(max / 1000000n);
  }

  function showLive(state, text) {
    liveEl.replaceChildren();
    liveEl.dataset.state = state;
    liveEl.append(el("span", "live-dot"), document.createTextNode(" " + text));
    if (state !== "live") {
      const again = el("a", null, "refresh");
      again.href = "#";
      again.addEventListener("click", (ev) => { ev.preventDefault(); live.lastChange = Date.now(); poll(); });
      liveEl.append(document.createTextNode(" \u00b7 "), again);
    }
    liveEl.hidden = false;
  }

  function schedule(detail) {
    clearTimeout(live.timer);
    const now = Date.now();
    const young = now - newestEndMs(detail) < LIVE_WINDOW_MS;
    const changing = now - live.lastChange < IDLE_STOP_MS;
    if (young || changing) {
      showLive("live", "live: checking for new spans every second");
      live.timer = setTimeout(poll, POLL_MS);
    } else {
      showLive("idle", "not updating (no new spans)");
    }
  }

  async function poll() {
    if (document.hidden) { clearTimeout(live.timer); live.timer = setTimeout(poll, POLL_MS); return; }
    try {
      const resp = await fetch(live.url, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const detail = await resp.json();
      const sig = signature(detail);
      if (sig !== live.signature) {
        live.signature = sig;
        live.lastChange = Date.now();
        render(detail);
      }
      schedule(detail);
    } catch (err) {
      showLive("idle", "updates stopped: " + err.message);
    }
  }

  async function load() {
    const parts = location.pathname.split("/").filter(Boolean);
    const id = decodeURIComponent(parts[parts.length - 1] || "last");
    const url = id === "last" || id === "trace" ? "/api/traces/last" : "/api/traces/" + encodeURIComponent(id);
    try {
      const resp = await fetch(url, { headers: { Accept: "application/json" } });
      if (!resp.ok) {
        let msg = "HTTP " + resp.status;
        try { const body = await resp.json(); if (body && body.error) msg += ": " + showValue(body.error); } catch (_) { /* not JSON */ }
        throw new Error(msg);
      }
      const detail = await resp.json();
      // `last` resolves once: the page keeps following this trace.
      live.url = "/api/traces/" + encodeURIComponent(String(detail.traceId || id));
      live.signature = signature(detail);
      // An old trace that does not change is not polled at all.
      live.lastChange = 0;
      render(detail);
      schedule(detail);
    } catch (err) {
      statusEl.className = "status error";
      statusEl.textContent = "Cannot load trace " + id + ": " + err.message;
    }
  }

  load();
})();
