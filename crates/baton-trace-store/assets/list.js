// Baton trace view: the trace list and its search (GET /api/traces?filters).
// The search lives in the page's URL (/ui/?service=..&message=..), so a
// search can be shared and bookmarked, and back/forward replay it.
// Everything from the API goes into the DOM through textContent only.
"use strict";
(function () {
  const REFRESH_MS = 3000;
  const PAGE = 100;
  // The parameters of the search form (and of GET /api/traces).
  const FIELDS = ["service", "span", "topic", "subscription", "message", "ordering_key",
    "min_duration", "max_duration", "since", "until", "error", "kind"];
  const statusEl = document.getElementById("status");
  const table = document.getElementById("traces");
  const body = document.getElementById("trace-rows");
  const auto = document.getElementById("auto-refresh");
  const forwardingEl = document.getElementById("forwarding");
  const form = document.getElementById("search");
  const attrsEl = document.getElementById("attrs");
  const moreBtn = document.getElementById("more");
  let nextCursor = null;
  let shown = 0;
  let total = 0;
  let pagedFurther = false;
  let loading = 0;
  let rendered = false;

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
    const today = new Date();
    const time = d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
    return d.toDateString() === today.toDateString() ? time : d.toLocaleDateString() + " " + time;
  }

  // ---- the search in the URL and in the form ----

  // The search parameters of the page's URL, in a canonical order.
  function urlSearch() {
    const from = new URLSearchParams(location.search);
    const out = new URLSearchParams();
    for (const name of FIELDS.concat(["attr", "limit"])) {
      for (const v of from.getAll(name)) if (v.trim() !== "") out.append(name, v.trim());
    }
    return out;
  }

  function addAttrInput(value) {
    const input = el("input");
    input.name = "attr";
    input.className = "attr";
    input.placeholder = "attribute key=value";
    input.value = value || "";
    const label = el("label");
    label.append(document.createTextNode("attribute "), input);
    attrsEl.append(label);
    return input;
  }

  function fillForm(params) {
    for (const name of FIELDS) {
      const input = form.elements.namedItem(name);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = params.get(name) === "true";
      else input.value = params.get(name) || "";
    }
    attrsEl.replaceChildren();
    const attrs = params.getAll("attr");
    if (attrs.length === 0) addAttrInput("");
    for (const a of attrs) addAttrInput(a);
  }

  function formSearch() {
    const out = new URLSearchParams();
    const data = new FormData(form);
    for (const name of FIELDS.concat(["attr"])) {
      for (const v of data.getAll(name)) if (String(v).trim() !== "") out.append(name, String(v).trim());
    }
    const limit = urlSearch().get("limit");
    if (limit) out.set("limit", limit);
    return out;
  }

  function describe(params) {
    const parts = [];
    for (const [k, v] of params) if (k !== "limit" && k !== "kind") parts.push(k + " " + v);
    return parts.join(", ");
  }

  // ---- rendering ----

  // A link that searches for one more condition (keeps the current search).
  function filterLink(name, value, text, cls) {
    const params = urlSearch();
    params.set(name, value);
    const a = el("a", "filter-link" + (cls ? " " + cls : ""), text);
    a.href = "/ui/?" + params.toString();
    a.title = "search " + name + " = " + value;
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      ev.stopPropagation();
      navigate(params);
    });
    return a;
  }

  function row(t) {
    const id = String(t.traceId || "");
    const href = "/ui/trace/" + encodeURIComponent(id);
    const tr = el("tr", "trace-row" + (t.error ? " has-error" : "") + " kind-" + String(t.kind || "other"));
    tr.dataset.traceId = id;
    tr.dataset.kind = String(t.kind || "");
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
    const kind = String(t.kind || "other");
    tr.append(el("td", "kind", null));
    tr.lastChild.append(el("span", "badge kind-" + kind, kind === "rpc" ? "batch RPC" : kind === "message" ? "message" : "other"));
    const terms = el("td", "terms");
    for (const m of Array.isArray(t.messageIds) ? t.messageIds.slice(0, 3) : []) terms.append(filterLink("message", m, "msg " + m, "term msg"));
    for (const tp of Array.isArray(t.topics) ? t.topics : []) terms.append(filterLink("topic", tp, tp, "term topic"));
    for (const s of Array.isArray(t.subscriptions) ? t.subscriptions : []) terms.append(filterLink("subscription", s, s, "term sub"));
    tr.append(terms);
    tr.append(el("td", "num", fmtDur(Number(nanos(t.durationNanos)))));
    tr.append(el("td", "num", t.spanCount === undefined ? "" : t.spanCount));
    const svcs = el("td", "services");
    for (const s of Array.isArray(t.services) ? t.services : []) svcs.append(filterLink("service", s, s, "badge svc"));
    tr.append(svcs);
    const st = el("td");
    st.append(t.error ? el("span", "badge err", "error") : el("span", "badge ok", "ok"));
    tr.append(st);
    return tr;
  }

  function renderStatus(params) {
    statusEl.className = "status";
    const what = describe(params);
    const kind = params.get("kind");
    const noun = kind === "rpc" ? "batch RPC traces" : kind === "all" ? "traces" : kind === "message" ? "message flows" : "traces";
    if (shown === 0) {
      statusEl.textContent = what
        ? "No " + noun + " match " + what + "."
        : (kind ? "No " + noun + " stored." : "No traces yet. Send spans over OTLP (4317 gRPC, 4318 HTTP) or publish through Baton.");
      return;
    }
    statusEl.textContent = (shown < total ? shown + " of " : "") + total + " " + (total === 1 ? noun.replace(/s$/, "") : noun) +
      (what ? " matching " + what : "") + ", newest first" +
      (kind ? "" : " (batch RPC traces hidden: show \u2192 all traces)");
  }

  function render(page, params, append) {
    const traces = Array.isArray(page.traces) ? page.traces : [];
    const rows = traces.map(row);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    shown = append ? shown + traces.length : traces.length;
    total = page.total === undefined ? shown : Number(page.total);
    nextCursor = page.more && page.nextCursor ? String(page.nextCursor) : null;
    moreBtn.hidden = !nextCursor;
    table.hidden = shown === 0;
    renderStatus(params);
    if (!rendered) {
      rendered = true;
      // How long the first render took from navigation (read by
      // `baton-bench --trace-search`).
      document.body.dataset.renderMs = String(Math.round(performance.now()));
    }
    document.body.dataset.shown = String(shown);
    document.body.dataset.total = String(total);
  }

  // ---- loading ----

  async function load(append) {
    const params = urlSearch();
    const api = new URLSearchParams(params);
    if (!api.get("limit")) api.set("limit", String(PAGE));
    if (append && nextCursor) api.set("cursor", nextCursor);
    const ticket = ++loading;
    try {
      const resp = await fetch("/api/traces?" + api.toString(), { headers: { Accept: "application/json" } });
      let data = null;
      try { data = await resp.json(); } catch (_) { /* not JSON */ }
      if (ticket !== loading) return; // a newer search is under way
      if (!resp.ok) throw new Error((data && data.error) ? String(data.error) : "HTTP " + resp.status);
      render(data || {}, params, append);
      if (append) pagedFurther = true;
    } catch (err) {
      if (ticket !== loading) return;
      statusEl.className = "status error";
      statusEl.textContent = "Search failed: " + err.message;
      if (!append) { body.replaceChildren(); table.hidden = true; moreBtn.hidden = true; shown = 0; }
    }
  }

  function navigate(params) {
    const qs = params.toString();
    const url = "/ui/" + (qs ? "?" + qs : "");
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    fillForm(urlSearch());
    pagedFurther = false;
    load(false);
  }

  async function loadFacets() {
    try {
      const resp = await fetch("/api/traces/facets", { headers: { Accept: "application/json" } });
      if (!resp.ok) return;
      const facets = await resp.json();
      for (const name of ["services", "topics", "subscriptions"]) {
        const list = document.getElementById(name);
        list.replaceChildren(...(Array.isArray(facets[name]) ? facets[name] : []).map((v) => { const o = el("option"); o.value = String(v); return o; }));
      }
    } catch (_) { /* suggestions are optional */ }
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

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    navigate(formSearch());
  });
  document.getElementById("clear").addEventListener("click", (ev) => {
    ev.preventDefault();
    navigate(new URLSearchParams());
  });
  document.getElementById("add-attr").addEventListener("click", () => addAttrInput("").focus());
  moreBtn.addEventListener("click", () => load(true));
  window.addEventListener("popstate", () => {
    fillForm(urlSearch());
    pagedFurther = false;
    load(false);
  });

  fillForm(urlSearch());
  refreshForwarding();
  loadFacets();
  load(false);
  // Auto-refresh the first page (not once more pages were loaded).
  setInterval(() => {
    if (auto.checked && !document.hidden && !pagedFurther) {
      refreshForwarding();
      load(false);
    }
  }, REFRESH_MS);
  setInterval(() => { if (auto.checked && !document.hidden) loadFacets(); }, REFRESH_MS * 5);
})();
