// The web view's script (see gossip_registry/api/ui/__init__.py for the design).
// Everything the API returns came from peers and clients: it is rendered as text
// (textContent), never as markup. The token lives in sessionStorage and is only
// ever put in an Authorization header.
"use strict";

const TOKEN_KEY = "gossip-registry-token";
const POLL_MS = 5000; // re-read even without events: a dropped stream, ages that tick
const MAX_EVENTS = 200;
const RETRY_MS = 2000;
const EVENT_DELAY_MS = 200; // after an event, read again this soon, or later on a slow node:
const SLOWDOWN = 4; // never more often than every SLOWDOWN x the last read's duration

const state = {
  service: null, // the service shown in detail, from the URL's #service=NAME
  fetchedAt: null, // Date.now() of the last successful overview
  dataAge: null, // seconds since this node's last push-pull, as of fetchedAt
  pending: null, // timer of a scheduled refresh
  lastDuration: 0, // milliseconds the last refresh took
  running: false, // a refresh is under way (two never overlap)
  again: null, // delay of a refresh asked for while one was under way
  needToken: false,
};

const $ = (id) => document.getElementById(id);
// The API relative to the page (served at <root>/ui/), so a proxy may mount both under a prefix.
const apiUrl = (path) => new URL(`../${path}`, document.baseURI);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class AuthError extends Error {}

async function api(path) {
  const response = await fetch(apiUrl(path), { headers: headers(), cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new AuthError();
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${message}`);
  }
  return response.json();
}

function showError(error) {
  if (error instanceof AuthError) {
    askForToken();
    return;
  }
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

function askForToken() {
  state.needToken = true;
  $("token-form").hidden = false;
  $("token").focus();
}

// --- Rendering ---------------------------------------------------------------

function renderCluster(view) {
  $("node-name").textContent = `— ${view.node.name} (${view.node.cluster})`;
  document.title = `gossip-registry ${view.node.name}`;
  const peers = view.members.filter((m) => !m.self && m.sync);
  const agreeing = peers.filter((m) => m.sync.agreed).length;
  $("digest").textContent =
    `This node's table digest ${view.node.digest} over ${view.node.entries} ` +
    `${view.node.entries === 1 ? "entry" : "entries"}; ` +
    `${agreeing} of ${peers.length} peers held the same versions at their last push-pull.`;
  const rows = view.members.map((m) => {
    const tr = el("tr");
    tr.dataset.member = m.name;
    tr.dataset.state = m.state;
    tr.append(
      el("td", m.self ? `${m.name} (this node)` : m.name),
      el("td", m.state, `state ${m.state}`),
      el("td", `${m.address}:${m.port}`, "mono"),
      el("td", m.incarnation),
      el("td", m.changed_ago === null ? "none since this node started" : ago(m.changed_ago)),
      el("td", m.self ? "" : m.sync === null ? "none yet"
        : `${ago(m.sync.ago)}: ${m.sync.agreed ? "same versions" : "differed, repaired"}`),
    );
    return tr;
  });
  $("members").replaceChildren(...rows);
}

function tagBadges(tags, more) {
  const td = el("td");
  for (const tag of tags) td.append(el("span", tag, "badge"));
  if (more > 0) td.append(el("span", `+${more} more`, "muted"));
  return td;
}

function renderServices(view) {
  const names = Object.keys(view.services);
  const rows = names.map((name) => {
    const s = view.services[name];
    const tr = el("tr");
    tr.dataset.service = name;
    const link = el("a", name);
    link.href = `#service=${encodeURIComponent(name)}`;
    const cell = el("td");
    cell.append(link);
    tr.append(
      cell,
      el("td", s.passing, s.passing ? "passing" : ""),
      el("td", s.warning, s.warning ? "warning" : ""),
      el("td", s.critical, s.critical ? "critical" : ""),
      el("td", s.stale, s.stale ? "stale" : ""),
      tagBadges(s.tags, s.more_tags),
    );
    return tr;
  });
  $("services").replaceChildren(...rows);
  $("no-services").hidden = names.length > 0;
}

function renderHeader(view) {
  const sp = view.self_preservation;
  $("preservation").hidden = !sp.active;
  if (sp.active) {
    const since = new Date(sp.since * 1000).toLocaleTimeString();
    $("preservation").textContent =
      `Self-preservation since ${since}: ${sp.dead_in_window} members died within ` +
      `${sp.window} s, so their instances are still served, flagged stale, as last seen.`;
  }
  $("joining").hidden = !view.joining;
}

function renderFreshness() {
  if (state.fetchedAt === null) return;
  const page = (Date.now() - state.fetchedAt) / 1000;
  const sync = state.dataAge === null ? "has not completed a push-pull with any peer yet"
    : `last completed a push-pull with a peer ${ago(state.dataAge + page)}`;
  $("freshness").textContent =
    `Read from this node ${ago(page)}; this node ${sync} (gossip brings changes in between).`;
}

// When each check's status or output last changed, as seen by this page: first seen
// unchanged, a check has changed at most when its instance was last written.
const checkSeen = new Map();

function checkChanged(instance, check) {
  const key = `${instance.node}/${instance.id}/${check.id}`;
  const seen = checkSeen.get(key);
  const now = Date.now();
  if (!seen) {
    checkSeen.set(key, { status: check.status, output: check.output, at: null });
    return null;
  }
  if (seen.status !== check.status || seen.output !== check.output) {
    checkSeen.set(key, { status: check.status, output: check.output, at: now });
    return now;
  }
  return seen.at;
}

function checkList(instance) {
  const td = el("td");
  for (const check of instance.checks) {
    const line = el("div", null, "check");
    line.append(el("span", check.status, `status ${check.status}`), ` ${check.id} (${check.kind})`);
    if (check.output) line.append(el("div", check.output, "muted mono"));
    const changed = checkChanged(instance, check);
    const when = changed !== null ? `changed ${ago((Date.now() - changed) / 1000)}`
      : `last changed ${ago(Date.now() / 1000 - instance.written)} or earlier`;
    line.append(el("div", when, "muted"));
    td.append(line);
  }
  if (!instance.checks.length) td.textContent = "none";
  return td;
}

function renderService(name, instances) {
  $("service-section").hidden = false;
  $("service-name").textContent = name;
  const rows = instances.map((i) => {
    const tr = el("tr", null, i.stale ? "stale" : "");
    tr.dataset.instance = i.id;
    tr.dataset.status = i.status;
    tr.dataset.stale = String(i.stale);
    const status = el("td", i.status, `status ${i.status}`);
    if (i.stale) status.append(el("div", "stale: its node is dead", "muted"));
    const meta = el("td");
    for (const [k, v] of Object.entries(i.meta)) meta.append(el("div", `${k}=${v}`, "mono"));
    tr.append(
      el("td", i.id),
      status,
      el("td", `${i.address}:${i.port}`, "mono"),
      tagBadges(i.tags, 0),
      meta,
      el("td", i.weight),
      el("td", i.node),
      checkList(i),
      el("td", ago(Date.now() / 1000 - i.written)),
    );
    return tr;
  });
  $("instances").replaceChildren(...rows);
  $("no-instances").hidden = instances.length > 0;
}

// --- Reading ------------------------------------------------------------------

async function refresh() {
  state.pending = null;
  state.running = true;
  const started = Date.now();
  try {
    const view = await api("v1/ui/overview");
    state.fetchedAt = Date.now();
    state.dataAge = view.data_age;
    renderHeader(view);
    renderCluster(view);
    renderServices(view);
    renderFreshness();
    if (state.service !== null) {
      const name = state.service;
      const instances = await api(`v1/ui/services/${encodeURIComponent(name)}`);
      if (state.service === name) renderService(name, instances);
    } else {
      $("service-section").hidden = true;
    }
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    state.lastDuration = Date.now() - started;
    state.running = false;
    if (state.again !== null) {
      const delay = state.again;
      state.again = null;
      scheduleRefresh(delay); // something changed while this read was under way
    }
  }
}

function scheduleRefresh(delay) {
  if (state.running) { // its answer may predate the change: read again once it is done
    state.again = state.again === null ? delay : Math.min(state.again, delay);
  } else if (state.pending === null) {
    state.pending = setTimeout(refresh, delay);
  } // else a read is already scheduled; it will see the change
}

function describe(event) {
  const time = new Date(event.time * 1000).toLocaleTimeString();
  if (event.kind === "member") {
    return `${time} member ${event.name} ${event.event} (${event.address}:${event.port}, incarnation ${event.incarnation})`;
  }
  if (event.kind === "entry" || event.kind === "check") {
    const what = event.kind === "check" ? `check ${event.previous} → ${event.event}` : event.event;
    const output = event.output ? `: ${event.output}` : "";
    return `${time} ${event.service}/${event.id} ${what} on ${event.node} (${event.status})${output}`;
  }
  if (event.kind === "dropped") return `${time} ${event.count} events dropped (this page fell behind)`;
  return `${time} ${event.kind} ${event.event}`;
}

function addEvent(event) {
  if (event.kind === "stream") return;
  const item = el("li", describe(event), event.kind === "member" ? `state ${event.event}` : "");
  item.dataset.kind = event.kind;
  $("events").prepend(item);
  while ($("events").children.length > MAX_EVENTS) $("events").lastChild.remove();
}

async function followEvents() {
  for (;;) {
    try {
      const response = await fetch(apiUrl("v1/events"), { headers: headers(), cache: "no-store" });
      if (response.status === 401 || response.status === 403) throw new AuthError();
      if (!response.ok) throw new Error(`v1/events: ${response.status}`);
      $("stream-state").textContent = "(live)";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (!line.trim()) continue;
          const event = JSON.parse(line);
          addEvent(event);
          const delay = Math.max(EVENT_DELAY_MS, SLOWDOWN * state.lastDuration);
          scheduleRefresh(event.kind === "stream" ? 0 : delay);
        }
      }
      $("stream-state").textContent = "(stream ended; reconnecting)";
    } catch (error) {
      if (error instanceof AuthError) {
        $("stream-state").textContent = "(needs a token)";
        askForToken();
        await new Promise((resolve) => { state.resumeStream = resolve; });
        continue;
      }
      $("stream-state").textContent = "(stream lost; reconnecting)";
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

function readHash() {
  const match = /^#service=(.+)$/.exec(location.hash);
  state.service = match ? decodeURIComponent(match[1]) : null;
  if (state.service === null) $("service-section").hidden = true;
  $("instances").replaceChildren();
  scheduleRefresh(0);
}

function start() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = ""; // never left on screen or in the DOM
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    state.needToken = false;
    if (state.resumeStream) { state.resumeStream(); state.resumeStream = null; }
    scheduleRefresh(0);
  });
  $("close-service").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", readHash);
  readHash();
  followEvents();
  setInterval(() => scheduleRefresh(0), POLL_MS);
  setInterval(renderFreshness, 1000);
}

start();
