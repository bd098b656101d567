// Baton Pub/Sub console: draws the pages from /api/console/... (same
// origin). Plain JavaScript, no build step. Every piece of data goes into
// the page as text (textContent), never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "baton-console-token";
  const PAGE_SIZE = 50;
  const statusEl = document.getElementById("status");

  function setStatus(text, error) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", !!error);
    statusEl.hidden = !text;
  }

  // el("td", {class: "num", title: "x"}, "text", child...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function short(name) {
    if (!name) return "";
    const parts = name.split("/");
    return parts[parts.length - 1];
  }
  function projectOf(name) {
    const parts = (name || "").split("/");
    return parts[0] === "projects" ? parts[1] : "";
  }
  // A name shown short, the full name on hover.
  function nameEl(name, href) {
    if (!href) return el("span", { class: "name", title: name }, short(name));
    return el("a", { class: "name", title: name, href: href }, short(name));
  }
  function subHref(name) {
    return "/ui/subscriptions/" + encodeURIComponent(projectOf(name)) + "/" + encodeURIComponent(short(name));
  }
  function topicHref(name) {
    if (!name || name === "_deleted-topic_") return null;
    return "/ui/topics/" + encodeURIComponent(projectOf(name)) + "/" + encodeURIComponent(short(name));
  }
  function messageHref(topic, id) {
    return "/ui/messages/" + encodeURIComponent(projectOf(topic)) + "/" + encodeURIComponent(short(topic)) + "/" + encodeURIComponent(id);
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) {
      const s = ms / 1000;
      return (Number.isInteger(Math.round(s * 10) / 10) ? Math.round(s) : s.toFixed(1)) + " s";
    }
    if (ms < 3600000) return Math.floor(ms / 60000) + " min " + Math.floor((ms % 60000) / 1000) + " s";
    if (ms < 86400000) return Math.floor(ms / 3600000) + " h " + Math.floor((ms % 3600000) / 60000) + " min";
    return Math.floor(ms / 86400000) + " d " + Math.floor((ms % 86400000) / 3600000) + " h";
  }
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");
  }
  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(2) + " GiB";
  }
  function fmtNum(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }
  function protoDuration(d) {
    if (d === null || d === undefined) return null;
    if (typeof d === "string") {
      const seconds = parseFloat(d);
      return isNaN(seconds) ? d : fmtDuration(seconds * 1000);
    }
    return String(d);
  }

  // fetch with the tab's token; a 401 shows the token form.
  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    if (opts.body && typeof opts.body !== "string") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) {
      document.getElementById("auth").hidden = false;
    }
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : response.statusText;
      const error = new Error(response.status + ": " + message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  document.getElementById("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("auth-token").value.trim());
    location.reload();
  });

  function pathParts() {
    return location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  }
  function query() {
    return new URLSearchParams(location.search);
  }

  function card(label, value, id, title) {
    return el("div", { class: "card" },
      el("div", { class: "card-label" }, label),
      el("div", { class: "card-value", id: id, title: title }, value));
  }
  function kv(dl, key, value, id) {
    dl.append(el("dt", {}, key), el("dd", { id: id }, value === null || value === undefined || value === "" ? "–" : value));
  }

  // ---- lists ----
  function pager(nextToken) {
    const q = query();
    const first = document.getElementById("first-page");
    const next = document.getElementById("next-page");
    if (first && q.get("page_token")) {
      const fq = new URLSearchParams(q); fq.delete("page_token");
      first.href = "?" + fq.toString();
      first.hidden = false;
    }
    if (nextToken) {
      const nq = new URLSearchParams(q); nq.set("page_token", nextToken);
      next.href = "?" + nq.toString();
      next.hidden = false;
    }
  }
  function listQuery() {
    const q = query();
    const params = new URLSearchParams();
    params.set("page_size", q.get("page_size") || PAGE_SIZE);
    if (q.get("page_token")) params.set("page_token", q.get("page_token"));
    if (q.get("project")) params.set("project", q.get("project"));
    document.getElementById("project").value = q.get("project") || "";
    return params.toString();
  }

  async function topicsPage() {
    const data = await api("/api/console/topics?" + listQuery());
    const rows = document.getElementById("rows");
    for (const t of data.topics) {
      rows.append(el("tr", { class: "topic-row", "data-name": t.name },
        el("td", {}, nameEl(t.name, topicHref(t.name))),
        el("td", {}, projectOf(t.name)),
        el("td", { class: "num" }, fmtNum(t.subscriptions)),
        el("td", { class: "num" }, fmtNum(t.counters.messages_published)),
        el("td", { class: "num" }, fmtNum(t.counters.publish_operations)),
        el("td", { class: "num" }, fmtBytes(t.counters.bytes_published)),
        el("td", { class: "num" }, fmtNum(t.retained_messages)),
        el("td", {}, fmtTime(t.last_publish_time_ms)),
        el("td", { title: t.schema ? t.schema.schema : "" }, t.schema ? short(t.schema.schema) : "–")));
    }
    setStatus(data.topics.length ? "" : "No topics on this page.");
    pager(data.next_page_token);
  }

  function subscriptionType(s) {
    if (s.detached) return "detached";
    return s.push ? "push" : "pull";
  }
  function pushHealth(s) {
    if (!s.push) return "–";
    return el("span", { class: s.push.healthy ? "ok" : "bad" }, s.push.healthy ? "healthy" : "failing (" + s.push.consecutive_failures + ")");
  }

  async function subscriptionsPage() {
    const data = await api("/api/console/subscriptions?" + listQuery());
    const rows = document.getElementById("rows");
    for (const s of data.subscriptions) {
      rows.append(el("tr", { class: "subscription-row", "data-name": s.name },
        el("td", {}, nameEl(s.name, subHref(s.name))),
        el("td", {}, nameEl(s.topic, topicHref(s.topic))),
        el("td", {}, subscriptionType(s)),
        el("td", { class: "num backlog" }, fmtNum(s.backlog_messages)),
        el("td", { class: "num" }, fmtBytes(s.backlog_bytes)),
        el("td", { class: "num" }, fmtDuration(s.oldest_unacked_age_ms)),
        el("td", { class: "num" }, fmtNum(s.leases_outstanding)),
        el("td", { class: "num" }, fmtNum(s.open_streams)),
        el("td", { class: "num" }, fmtNum(s.counters.acked)),
        el("td", { class: "num" }, fmtNum(s.counters.dead_lettered)),
        el("td", {}, pushHealth(s))));
    }
    setStatus(data.subscriptions.length ? "" : "No subscriptions on this page.");
    pager(data.next_page_token);
  }

  // ---- topic ----
  function attributeRow(key, value) {
    const row = el("div", { class: "attribute" },
      el("input", { class: "attr-key", placeholder: "key", size: 20, value: key || "" }),
      " = ",
      el("input", { class: "attr-value", placeholder: "value", size: 30, value: value || "" }));
    const remove = el("button", { type: "button", class: "remove" }, "×");
    remove.addEventListener("click", () => row.remove());
    row.append(" ", remove);
    document.getElementById("attributes").append(row);
  }

  async function topicPage() {
    const [, , project, topic] = pathParts();
    const base = "/api/console/topics/" + encodeURIComponent(project) + "/" + encodeURIComponent(topic);
    const q = query();
    const data = await api(base + (q.get("page_token") ? "?page_token=" + encodeURIComponent(q.get("page_token")) : ""));
    const t = data.topic;
    document.title = "Baton topic " + short(t.name);
    const name = document.getElementById("name");
    name.textContent = short(t.name);
    name.title = t.name;
    document.getElementById("crumb").textContent = t.name;
    const stats = document.getElementById("stats");
    stats.append(
      card("subscriptions", fmtNum(t.subscriptions), "subscription-count"),
      card("messages published", fmtNum(t.counters.messages_published), "messages-published"),
      card("publish requests", fmtNum(t.counters.publish_operations), "publish-operations"),
      card("refused publishes", fmtNum(t.counters.publish_errors), "publish-errors"),
      card("bytes published", fmtBytes(t.counters.bytes_published), "bytes-published"),
      card("retained messages", fmtNum(t.retained_messages), "retained"),
      card("last publish", fmtTime(t.last_publish_time_ms), "last-publish"));
    const settings = document.getElementById("settings");
    kv(settings, "full name", t.name);
    kv(settings, "message retention", protoDuration(t.message_retention_duration) || "none (not kept after delivery)");
    kv(settings, "schema", t.schema ? t.schema.schema + " (" + (t.schema.encoding || "encoding unspecified") + ")" : "none");
    const labels = Object.entries(t.labels || {}).map(([k, v]) => k + "=" + v).join(", ");
    kv(settings, "labels", labels);
    const rows = document.getElementById("sub-rows");
    for (const s of data.subscriptions) {
      rows.append(el("tr", { class: "subscription-row", "data-name": s.name },
        el("td", {}, nameEl(s.name, subHref(s.name))),
        el("td", {}, subscriptionType(s)),
        el("td", { class: "num backlog" }, fmtNum(s.backlog_messages)),
        el("td", { class: "num" }, fmtDuration(s.oldest_unacked_age_ms)),
        el("td", { class: "num" }, fmtNum(s.leases_outstanding)),
        el("td", { class: "num" }, fmtNum(s.open_streams)),
        el("td", { class: "num" }, fmtNum(s.counters.dead_lettered)),
        el("td", { class: "mono" }, s.filter || "")));
    }
    if (data.next_page_token) {
      const next = document.getElementById("next-page");
      next.href = "?page_token=" + encodeURIComponent(data.next_page_token);
      next.hidden = false;
    }
    document.getElementById("add-attribute").addEventListener("click", () => attributeRow());
    document.getElementById("publish").addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = document.getElementById("publish-result");
      const attributes = {};
      for (const row of document.querySelectorAll("#attributes .attribute")) {
        const key = row.querySelector(".attr-key").value;
        if (key) attributes[key] = row.querySelector(".attr-value").value;
      }
      const body = {
        data: document.getElementById("publish-data").value,
        attributes: attributes,
        ordering_key: document.getElementById("publish-ordering-key").value,
      };
      result.textContent = "Publishing…";
      result.className = "result";
      try {
        const answer = await api(base + "/publish", { method: "POST", body: body });
        const id = answer.message_ids[0];
        result.textContent = "Published message ";
        result.append(el("a", { id: "published-id", href: messageHref(t.name, id) }, id));
        result.className = "result ok";
      } catch (error) {
        result.textContent = "Publish failed: " + error.message;
        result.className = "result bad";
      }
    });
  }

  // ---- subscription ----
  function dataCell(message) {
    const text = message.data_text !== null && message.data_text !== undefined ? message.data_text : "base64:" + message.data_base64;
    const shown = text.length > 120 ? text.slice(0, 120) + "…" : text;
    return el("td", { class: "mono data", title: text }, shown);
  }
  function attributesText(attributes) {
    return Object.entries(attributes || {}).map(([k, v]) => k + "=" + v).join(", ");
  }

  function policyText(config) {
    const out = [];
    const dl = config.deadLetterPolicy;
    out.push(["dead letter policy", dl ? "after " + (dl.maxDeliveryAttempts || 5) + " attempts to " + dl.deadLetterTopic : "none"]);
    const retry = config.retryPolicy;
    out.push(["retry policy", retry ? "backoff " + (protoDuration(retry.minimumBackoff) || "10 s") + " to " + (protoDuration(retry.maximumBackoff) || "600 s") : "none (redeliver at once)"]);
    const expiration = config.expirationPolicy;
    out.push(["expiration", expiration ? (expiration.ttl ? "after " + protoDuration(expiration.ttl) + " of inactivity" : "never") : "default (31 days of inactivity)"]);
    return out;
  }

  async function subscriptionPage() {
    const [, , project, subscription] = pathParts();
    const base = "/api/console/subscriptions/" + encodeURIComponent(project) + "/" + encodeURIComponent(subscription);
    const data = await api(base);
    const s = data.subscription;
    const config = data.config || {};
    document.title = "Baton subscription " + short(s.name);
    const name = document.getElementById("name");
    name.textContent = short(s.name);
    name.title = s.name;
    document.getElementById("crumb").textContent = s.name;
    const topicLine = document.getElementById("topic-line");
    topicLine.append("of topic ", nameEl(s.topic, topicHref(s.topic)), " · " + subscriptionType(s));
    document.getElementById("stats").append(
      card("backlog", fmtNum(s.backlog_messages), "backlog", "undelivered + unacked (num_undelivered_messages)"),
      card("backlog bytes", fmtBytes(s.backlog_bytes), "backlog-bytes"),
      card("ready", fmtNum(s.ready_messages), "ready"),
      card("leases outstanding", fmtNum(s.leases_outstanding), "leases"),
      card("in retry backoff", fmtNum(s.backoff_messages), "backoff"),
      card("oldest unacked", fmtDuration(s.oldest_unacked_age_ms), "oldest-age", s.oldest_unacked_publish_time_ms ? "published " + fmtTime(s.oldest_unacked_publish_time_ms) : ""),
      card("open streams", fmtNum(s.open_streams), "streams"),
      card("delivery attempts", fmtNum(s.counters.delivery_attempts), "delivery-attempts"),
      card("acked", fmtNum(s.counters.acked), "acked"),
      card("nacked", fmtNum(s.counters.nacked), "nacked"),
      card("lease expiries", fmtNum(s.counters.expired), "expired"),
      card("dead-lettered", fmtNum(s.counters.dead_lettered), "dead-lettered"),
      card("retained acked", fmtNum(s.retained_acked_messages), "retained"));
    const settings = document.getElementById("settings");
    kv(settings, "filter", s.filter ? el("code", {}, s.filter) : "none (every message)", "filter");
    kv(settings, "ack deadline", s.ack_deadline_seconds + " s");
    kv(settings, "message retention", protoDuration(config.messageRetentionDuration));
    kv(settings, "retain acked messages", config.retainAckedMessages ? "yes" : "no");
    kv(settings, "message ordering", s.ordering ? "on" : "off");
    kv(settings, "exactly-once delivery", s.exactly_once ? "on" : "off");
    for (const [key, value] of policyText(config)) kv(settings, key, value);
    if (s.push) {
      document.getElementById("push-section").hidden = false;
      const push = document.getElementById("push");
      kv(push, "endpoint", s.push.endpoint, "push-endpoint");
      kv(push, "health", pushHealth(s), "push-health");
      kv(push, "requests", Object.entries(s.push.counts).map(([k, v]) => k + ": " + v).join(", "), "push-counts");
      kv(push, "last acknowledged", fmtTime(s.push.last_ack_ms));
      if (s.push.last) {
        const last = s.push.last;
        kv(push, "last request", fmtTime(last.at_ms) + " · " + last.class + (last.status ? " (HTTP " + last.status + ")" : "") + (last.detail ? " · " + last.detail : ""));
      }
    }
    // Dead letters.
    if (data.dead_letters.length) {
      document.getElementById("no-dead-letters").hidden = true;
      document.getElementById("dead-letters").hidden = false;
      const rows = document.getElementById("dead-letter-rows");
      for (const d of data.dead_letters) {
        rows.append(el("tr", { class: "dead-letter-row" },
          el("td", {}, el("a", { href: messageHref(s.topic, d.message.message_id) }, d.message.message_id)),
          el("td", {}, fmtTime(d.at_ms)),
          el("td", { class: "reason" }, d.reason_text),
          el("td", {}, nameEl(d.dead_letter_topic, topicHref(d.dead_letter_topic))),
          dataCell(d.message)));
      }
    }
    // Peek.
    document.getElementById("peek-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const max = document.getElementById("peek-max").value || 10;
      const table = document.getElementById("peeked");
      const rows = document.getElementById("peek-rows");
      try {
        const peeked = await api(base + "/peek?max=" + encodeURIComponent(max));
        rows.replaceChildren();
        for (const p of peeked.messages) {
          let state = p.state.kind;
          if (p.state.kind === "leased") state = "leased until " + fmtTime(p.state.deadline_ms) + (p.state.stream ? " (stream " + p.state.stream + ")" : "");
          if (p.state.kind === "backoff") state = "backing off until " + fmtTime(p.state.until_ms);
          rows.append(el("tr", { class: "peeked-row" },
            el("td", {}, el("a", { href: messageHref(s.topic, p.message.message_id) }, p.message.message_id)),
            el("td", {}, fmtTime(p.message.publish_time_ms)),
            el("td", {}, state),
            el("td", { class: "num" }, p.attempts),
            el("td", {}, p.message.ordering_key || ""),
            el("td", { class: "mono" }, attributesText(p.message.attributes)),
            dataCell(p.message)));
        }
        table.hidden = false;
        setStatus(peeked.messages.length ? "" : "The backlog is empty.");
      } catch (error) {
        setStatus("Peek failed: " + error.message, true);
      }
    });
    // Seek.
    const select = document.getElementById("seek-snapshot");
    for (const snapshot of data.snapshots) select.append(el("option", { value: snapshot, title: snapshot }, short(snapshot)));
    if (!data.snapshots.length) select.append(el("option", { value: "" }, "(no snapshots of this topic)"));
    document.getElementById("seek-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = document.getElementById("seek-result");
      const kind = document.querySelector("input[name=seek-kind]:checked").value;
      let body;
      if (kind === "time") {
        const value = document.getElementById("seek-time").value;
        if (!value) { result.textContent = "Pick a time."; return; }
        body = { time: new Date(value).toISOString() };
      } else {
        if (!select.value) { result.textContent = "Pick a snapshot."; return; }
        body = { snapshot: select.value };
      }
      try {
        const answer = await api(base + "/seek", { method: "POST", body: body });
        result.textContent = "Seeked: the backlog is now " + fmtNum(answer.subscription.backlog_messages) + " messages.";
        result.className = "result ok";
        document.getElementById("backlog").textContent = fmtNum(answer.subscription.backlog_messages);
      } catch (error) {
        result.textContent = "Seek failed: " + error.message;
        result.className = "result bad";
      }
    });
  }

  // ---- message ----
  function describeEvent(e) {
    const via = e.via === "streaming_pull" && e.stream ? "stream " + e.stream : e.via;
    switch (e.kind) {
      case "delivered": return "attempt " + e.attempt + " delivered by " + via + ", lease until " + fmtTime(e.lease_deadline_ms);
      case "modack": return "attempt " + e.attempt + " deadline moved to " + fmtTime(e.deadline_ms);
      case "nack": return "attempt " + e.attempt + " nacked" + (e.available_at_ms > e.at_ms ? ", retry backoff until " + fmtTime(e.available_at_ms) : "");
      case "expired": return "attempt " + e.attempt + " lease expired" + (e.available_at_ms > e.at_ms ? ", retry backoff until " + fmtTime(e.available_at_ms) : "");
      case "ack": return "attempt " + e.attempt + " acked";
      case "dead_lettered": return "attempt " + e.attempt + " " + (e.reason === "nack" ? "nacked" : "lease expired") + ": max delivery attempts reached, dead-lettered to " + short(e.dead_letter_topic);
      case "dead_letter_copy": return "copy stored on " + short(e.topic) + " as message " + e.message_id;
      default: return e.kind;
    }
  }

  async function messagePage() {
    const [, , project, topic, messageId] = pathParts();
    const data = await api("/api/console/messages/" + encodeURIComponent(project) + "/" + encodeURIComponent(topic) + "/" + encodeURIComponent(messageId));
    const topicName = "projects/" + project + "/topics/" + topic;
    document.title = "Baton message " + messageId;
    document.getElementById("name").textContent = "message " + messageId;
    document.getElementById("crumb").textContent = topicName;
    const published = document.getElementById("published");
    kv(published, "topic", nameEl(topicName, topicHref(topicName)));
    const p = data.published;
    if (p) {
      kv(published, "published", fmtTime(p.at_ms), "published-at");
      kv(published, "ordering key", p.ordering_key);
      kv(published, "size", fmtBytes(p.size));
      kv(published, "attributes", String(p.attributes));
      kv(published, "trace context", p.traceparent);
    } else {
      kv(published, "published", "not recorded (before this server started, or the journal was full)");
    }
    const explain = document.getElementById("explain");
    for (const line of data.explain) explain.append(el("li", { class: "explain-line" }, line));
    if (!data.explain.length) explain.append(el("li", {}, "Not delivered to any subscription yet."));
    const start = p ? p.at_ms : (data.events.length ? data.events[0].at_ms : 0);
    const timeline = document.getElementById("timeline");
    if (p) {
      timeline.append(el("li", { class: "msg-event published" },
        el("span", { class: "when" }, "+0 ms"), " ",
        el("span", { class: "what" }, "published on " + short(p.topic)), " ",
        el("span", { class: "at muted" }, fmtTime(p.at_ms))));
    }
    for (const e of data.events) {
      timeline.append(el("li", { class: "msg-event " + e.kind, "data-kind": e.kind, "data-attempt": e.attempt },
        el("span", { class: "when" }, "+" + fmtDuration(e.at_ms - start)), " ",
        nameEl(e.subscription, subHref(e.subscription)), " ",
        el("span", { class: "what" }, describeEvent(e)), " ",
        e.kind === "dead_letter_copy" ? el("a", { href: messageHref(e.topic, e.message_id) }, "follow the copy →") : null,
        el("span", { class: "at muted" }, fmtTime(e.at_ms))));
    }
    if (data.events_dropped) {
      const dropped = document.getElementById("dropped");
      dropped.textContent = data.events_dropped + " later events were not kept.";
      dropped.hidden = false;
    }
    if (data.trace_id) {
      document.getElementById("trace-section").hidden = false;
      const link = document.getElementById("trace-link");
      link.href = "/ui/trace/" + data.trace_id;
      link.textContent = "open trace " + data.trace_id + " →";
      try {
        const response = await fetch("/api/traces/" + data.trace_id);
        if (response.ok) {
          const trace = await response.json();
          const rows = document.getElementById("span-rows");
          const t0 = trace.spans.length ? Math.min(...trace.spans.map((s) => s.startUnixNano)) : 0;
          for (const span of trace.spans) {
            rows.append(el("tr", { class: "span-row" },
              el("td", {}, span.name),
              el("td", {}, span.service),
              el("td", { class: "num" }, "+" + fmtDuration((span.startUnixNano - t0) / 1e6)),
              el("td", { class: "num" }, fmtDuration((span.endUnixNano - span.startUnixNano) / 1e6)),
              el("td", {}, span.status && span.status.code ? String(span.status.code) : "")));
          }
        }
      } catch (e) { /* the trace link stays */ }
    }
  }

  const pages = {
    topics: topicsPage,
    subscriptions: subscriptionsPage,
    topic: topicPage,
    subscription: subscriptionPage,
    message: messagePage,
  };
  const run = pages[document.body.dataset.page];
  if (run) {
    setStatus("Loading…");
    run().then(() => {
      if (statusEl.textContent === "Loading…") setStatus("");
      document.getElementById("content").hidden = false;
    }).catch((error) => {
      setStatus(error.status === 401 ? "Authentication required." : "Could not load: " + error.message, true);
    });
  }
})();
