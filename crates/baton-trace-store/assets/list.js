// Baton trace view: the list of recent traces (GET /api/traces).
// Everything from the API goes into the DOM through textContent only.
"use strict";
(function () {
  const REFRESH_MS = 3000;
  const statusEl = document.getElementById("status");
  const table = document.getElementById("traces");
  const body = document.getElementById("trace-rows");
  const auto = document.getElementById("auto-refresh");
  const forwardingEl = document.getElementById("forwarding");

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

  function fmtTime(v) {
    const ms = Number(nanos(v) / 1000000n);
    if (!ms) return "";
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function render(traces) {
    body.replaceChildren();
    if (traces.length === 0) {
      table.hidden = true;
      statusEl.className = "status";
      statusEl.textContent = "No traces yet. Send spans over OTLP (4317 gRPC, 4318 HTTP) or publish through Baton.";
      return;
    }
    statusEl.className = "status";
    statusEl.textContent = traces.length + (traces.length === 1 ? " trace" : " traces") + ", newest first";
    for (const t of traces) {
      const id = String(t.traceId || "");
      const href = "/ui/trace/" + encodeURIComponent(id);
      const tr = el("tr", "trace-row" + (t.error ? " has-error" : ""));
      tr.dataset.traceId = id;
      tr.addEventListener("click", (ev) => {
        if (ev.target instanceof HTMLAnchorElement) return;
        window.location.href = href;
      });
      tr.append(el("td", "time", fmtTime(t.startUnixNano)));
      tr.append(el("td", "service", t.rootService || "?"));
      const root = el("td", "root");
      const a = el("a", null, t.rootName || "(unnamed)");
      a.href = href;
      root.append(a);
      tr.append(root);
      tr.append(el("td", "num", fmtDur(Number(nanos(t.durationNanos)))));
      tr.append(el("td", "num", t.spanCount === undefined ? "" : t.spanCount));
      const svcs = el("td", "services");
      for (const s of Array.isArray(t.services) ? t.services : []) svcs.append(el("span", "badge svc", s));
      tr.append(svcs);
      const st = el("td");
      st.append(t.error ? el("span", "badge err", "error") : el("span", "badge ok", "ok"));
      tr.append(st);
      body.append(tr);
    }
    table.hidden = false;
  }

  // Forwarding to an upstream OTLP endpoint (GET /api/forwarding): where
  // each signal goes, the upstream's state, and what was forwarded and lost.
  function renderForwarding(status) {
    forwardingEl.replaceChildren();
    const lanes = [];
    for (const signal of ["traces", "logs", "metrics"]) {
      if (status && status[signal]) lanes.push([signal, status[signal]]);
    }
    if (lanes.length === 0) {
      forwardingEl.append(el("span", "muted", "Not forwarding to an upstream (set OTEL_EXPORTER_OTLP_ENDPOINT or --forward-otlp)."));
      forwardingEl.hidden = false;
      return;
    }
    for (const [signal, lane] of lanes) {
      const state = String(lane.state || "unknown");
      const item = el("span", "lane");
      item.dataset.signal = signal;
      item.dataset.state = state;
      item.append(el("span", "badge fwd-" + state, state.replace("_", " ")));
      item.append(el("span", null, " " + signal + " \u2192 " + String(lane.endpoint || "") +
        " (" + String(lane.protocol || "") + "): " +
        Number(lane.forwarded || 0).toLocaleString() + " forwarded, " +
        Number(lane.dropped || 0).toLocaleString() + " dropped"));
      if (lane.lastError && state !== "up") item.append(el("span", "muted", " \u2014 " + lane.lastError));
      forwardingEl.append(item);
    }
    forwardingEl.hidden = false;
  }

  async function refreshForwarding() {
    try {
      const resp = await fetch("/api/forwarding", { headers: { Accept: "application/json" } });
      if (!resp.ok) { forwardingEl.hidden = true; return; }
      renderForwarding(await resp.json());
    } catch (_) {
      forwardingEl.hidden = true;
    }
  }

  async function refresh() {
    refreshForwarding();
    try {
      const resp = await fetch("/api/traces?limit=100", { headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      render(Array.isArray(data.traces) ? data.traces : []);
    } catch (err) {
      statusEl.className = "status error";
      statusEl.textContent = "Cannot load traces from /api/traces: " + err.message;
    }
  }

  refresh();
  setInterval(() => { if (auto.checked && !document.hidden) refresh(); }, REFRESH_MS);
})();
