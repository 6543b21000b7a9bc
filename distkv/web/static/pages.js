// The status pages (#!nodes, #!runners, #!errors, #!gateways). Each reads what it
// shows through the client protocol, like any client: `get_state` for the nodes,
// watches on the `.distkv` subtrees for runners, jobs and errors, a watch on a
// subtree for gateway entities. So the user's ACL decides what a page shows; a part
// the ACL hides says so instead of showing anything.
"use strict";

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

function fmtTime(t) {
  if (typeof t !== "number") return "–";
  const ago = Date.now() / 1000 - t;
  const d = new Date(t * 1000);
  const hhmmss = d.toTimeString().slice(0, 8);
  if (ago < 0) return hhmmss + " (in " + Math.round(-ago) + " s)";
  if (ago < 120) return hhmmss + " (" + Math.round(ago) + " s ago)";
  if (ago < 7200) return hhmmss + " (" + Math.round(ago / 60) + " min ago)";
  return d.toISOString().slice(0, 16).replace("T", " ");
}

function dottedPath(p) { return pathOf(p).map(elemText).join("."); }

/** A card: title, then `rows` [[label, text], ...] (text null: left out). */
function card(title, rows, cls = "") {
  const dl = el("dl");
  for (const [k, v] of rows) {
    if (v === null || v === undefined) continue;
    dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  }
  return el("div", { class: ("card " + cls).trim() }, el("div", { class: "title", text: title }), dl);
}

/** A live copy of the subtree at `path`: a watch with fetch; `onChange()` runs at most
 * once per animation frame after changes. `entries`: key -> {rel, value}. */
class SubtreeWatch {
  constructor(client, path, onChange, onError) {
    this.entries = new Map();
    this.live = false;
    this.error = null;
    this.onChange = onChange;
    this.pending = false;
    this.seq = client.stream(
      "watch", { path: new MsgPack.Path(path), fetch: true },
      (msg) => this.onItem(msg),
      (err) => { if (err) { this.error = err; this.seq = null; onError(err); } },
    );
    this.client = client;
  }

  onItem(msg) {
    if (msg.state === "uptodate") { this.live = true; this.schedule(); return; }
    if (msg.state !== undefined) return;
    const rel = pathOf(msg.path);
    const key = JSON.stringify(rel.map(keyOf));
    if (Object.prototype.hasOwnProperty.call(msg, "value")) this.entries.set(key, { rel, value: msg.value });
    else this.entries.delete(key);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.onChange(); });
  }

  get(rel) { return this.entries.get(JSON.stringify(rel.map(keyOf))); }

  stop() { if (this.seq !== null) { this.client.stop(this.seq); this.seq = null; } }
}

// --- nodes

class NodesPage {
  constructor(root, client) {
    this.root = root;
    this.client = client;
    this.body = el("div", { class: "cards", id: "nodes" });
    root.append(el("h2", { text: "Nodes" }),
      el("p", { class: "note", text: "as this node sees the network (get_state), every 2 s" }), this.body);
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 2000);
  }

  async refresh() {
    let st;
    try { st = await this.client.request("get_state"); } catch (e) {
      this.body.replaceChildren(el("p", { class: "denied", text: e.message }));
      return;
    }
    if (this.timer === null) return;
    const rep = st.replication || null;
    const ticks = (rep && rep.ticks) || {};
    const missing = (name) => ((ticks[name] && ticks[name].missing) || []).reduce((n, g) => n + g[1] - g[0] + 1, 0);
    const cards = [];
    const me = [
      ["state", rep ? (rep.ready ? "ready" : "not ready") + (rep.syncing ? ", syncing" : "") : "ready (a lone node)"],
      ["status", rep ? rep.status : null],
      ["tick / tock", st.tick + " / " + st.tock],
      ["entries", st.entries],
      ["clients", st.clients],
      ["conflicts", st.conflicts],
      ["missing ticks", rep ? missing(st.node) : null],
      ["bus", rep && rep.bus ? (rep.bus.connected ? "connected" : "DISCONNECTED") + " (lost " + rep.bus.disconnects + " times)" : null],
    ];
    cards.push(card(st.node + " (this node)", me, rep && !rep.ready ? "bad" : ""));
    const peers = (rep && rep.peers) || {};
    for (const [name, p] of Object.entries(peers)) {
      if (name === st.node) continue;
      const m = missing(name);
      const rows = [
        ["state", (p.live ? "live" : "DOWN") + (p.ready ? ", ready" : ", not ready") + (p.syncing ? ", syncing" : "")],
        ["last heartbeat", p.last_seen_s === null || p.last_seen_s === undefined ? "never" : p.last_seen_s + " s ago"],
        ["tick", p.tick],
        ["missing ticks", m],
        ["address", Array.isArray(p.addr) ? p.addr.join(":") : p.addr ? elemText(p.addr) : null],
      ];
      const c = card(name, rows, !p.live ? "bad" : m ? "warn" : "");
      c.dataset.node = name;
      cards.push(c);
    }
    this.body.replaceChildren(...cards);
  }

  stop() { clearInterval(this.timer); this.timer = null; }
}

// --- runners and jobs

const RUN = [".distkv", "run"], STATE = [".distkv", "state"], RUNNER = [".distkv", "runner"];

/** (set label, job name) of a path below `.distkv run` (or state). */
function jobSet(rel) {
  if (rel[0] === "any") return ["any", rel.slice(1)];
  return [rel[0] + " " + elemText(rel[1]), rel.slice(2)];
}

class RunnersPage {
  constructor(root, client) {
    this.runners = el("div", { class: "cards", id: "runners" });
    this.jobs = el("div", { class: "cards", id: "jobs" });
    root.append(el("h2", { text: "Runners" }), this.runners, el("h2", { text: "Jobs" }), this.jobs);
    const render = () => this.render();
    this.denied = {};
    const denied = (what) => (e) => { this.denied[what] = e.message; this.render(); };
    this.w = {
      run: new SubtreeWatch(client, RUN, render, denied("run")),
      state: new SubtreeWatch(client, STATE, render, denied("state")),
      runner: new SubtreeWatch(client, RUNNER, render, denied("runner")),
    };
    this.timer = setInterval(render, 5000);  // "N s ago" grows
  }

  render() {
    const rs = [];
    if (this.denied.runner) rs.push(el("p", { class: "denied", text: this.denied.runner }));
    for (const { rel, value } of this.w.runner.entries.values()) {
      const seen = value && value.seen;
      const stale = typeof seen !== "number" || Date.now() / 1000 - seen > 30;
      const c = card(rel.map(elemText).join(" "), [["last heartbeat", fmtTime(seen)]], stale ? "bad" : "");
      c.dataset.runner = rel.map(elemText).join(" ");
      rs.push(c);
    }
    if (!rs.length) rs.push(el("p", { class: "note", text: "no runner heartbeats" }));
    this.runners.replaceChildren(...rs);

    const js = [];
    for (const what of ["run", "state"])
      if (this.denied[what]) js.push(el("p", { class: "denied", text: this.denied[what] }));
    for (const { rel, value } of this.w.run.entries.values()) {
      const [set, name] = jobSet(rel);
      const job = value || {};
      const st = this.w.state.get(rel);
      const states = st ? [st.value] : [];
      // jobs with all: true keep one state per runner, below "every RUNNER"
      for (const { rel: srel, value: sv } of this.w.state.entries.values())
        if (srel[0] === "every" && JSON.stringify(srel.slice(2).map(keyOf)) === JSON.stringify(rel.map(keyOf))) states.push(sv);
      const rows = [
        ["code", Array.isArray(job.code) ? job.code.map(elemText).join(".") : toYaml(job.code)],
        ["when", job.repeat ? "every " + job.repeat + " s" : job.target ? fmtTime(job.target) : "not scheduled"],
      ];
      let bad = false;
      if (!states.length) rows.push(["runs on", set.startsWith("node ") ? set.slice(5) + " (not run yet)" : "not run yet"]);
      for (const s of states) {
        if (!s || typeof s !== "object") continue;
        rows.push(["runs on", s.runner + (s.stopped === null ? " (running)" : "")]);
        rows.push(["last run", fmtTime(s.started)]);
        if (s.error !== undefined) { rows.push(["error", s.error]); bad = true; }
        else if (s.stopped !== null) rows.push(["result", toYaml(s.result)]);
      }
      const c = card(set + ": " + name.map(elemText).join("."), rows, bad ? "bad" : "");
      c.dataset.job = rel.map(elemText).join(".");
      js.push(c);
    }
    if (!js.length) js.push(el("p", { class: "note", text: "no jobs" }));
    this.jobs.replaceChildren(...js);
  }

  stop() { clearInterval(this.timer); for (const w of Object.values(this.w)) w.stop(); }
}

// --- errors

class ErrorsPage {
  constructor(root, client) {
    this.errors = el("div", { class: "cards", id: "errors" });
    this.conflicts = el("div", { class: "cards", id: "conflicts" });
    root.append(el("h2", { text: "Errors" }), this.errors, el("h2", { text: "Replication conflicts" }), this.conflicts);
    this.denied = {};
    const render = () => this.render();
    const denied = (what) => (e) => { this.denied[what] = e.message; this.render(); };
    this.w = {
      error: new SubtreeWatch(client, [".distkv", "error"], render, denied("error")),
      conflict: new SubtreeWatch(client, [".distkv", "conflict"], render, denied("conflict")),
    };
  }

  render() {
    const es = [];
    if (this.denied.error) es.push(el("p", { class: "denied", text: this.denied.error }));
    const errs = [...this.w.error.entries.values()].sort((a, b) => ((b.value || {}).time || 0) - ((a.value || {}).time || 0));
    for (const { rel, value } of errs) {
      const v = value || {};
      const c = card(v.path !== undefined ? dottedPath(v.path) : rel.map(elemText).join("."), [
        ["message", v.message !== undefined ? v.message : toYaml(value)],
        ["reported by", elemText(rel[0])],
        ["when", fmtTime(v.time)],
        ["count", v.count],
      ], "bad");
      c.dataset.error = rel.map(elemText).join(".");
      es.push(c);
    }
    if (!es.length) es.push(el("p", { class: "note", text: "no errors" }));
    this.errors.replaceChildren(...es);
    const cs = [];
    if (this.denied.conflict) cs.push(el("p", { class: "denied", text: this.denied.conflict }));
    for (const { rel, value } of this.w.conflict.entries.values())
      cs.push(card(rel.map(elemText).join(" "), [["record", toYaml(value)]], "warn"));
    if (!cs.length) cs.push(el("p", { class: "note", text: "no conflicts recorded" }));
    this.conflicts.replaceChildren(...cs);
  }

  stop() { for (const w of Object.values(this.w)) w.stop(); }
}

// --- gateways

const ENTITY_PARTS = ["state", "desired", "online"];

class GatewaysPage {
  constructor(root, client) {
    this.client = client;
    this.root = root;
    this.input = el("input", { id: "gw-path", placeholder: "below path, e.g. home", "aria-label": "entities below" });
    const go = el("button", { type: "submit", text: "show" });
    const form = el("form", { class: "goto" }, this.input, go);
    form.onsubmit = (ev) => { ev.preventDefault(); this.watch(this.input.value ? this.input.value.split(".") : []); };
    this.gateways = el("div", { class: "cards", id: "gateways" });
    this.body = el("div", { class: "cards", id: "entities" });
    root.append(el("h2", { text: "Gateways" }), this.gateways, el("h2", { text: "Entities" }),
      el("p", { class: "note", text: "every entry with state, desired or online below the path" }), form, this.body);
    this.w = null;
    this.loadConfig();
    this.watch([]);
  }

  async loadConfig() {
    let cfg;
    try {
      cfg = (await this.client.request("get_value", { path: new MsgPack.Path([".distkv", "config", "gateways"]) })).value;
    } catch (e) { cfg = undefined; this.gateways.replaceChildren(el("p", { class: "denied", text: e.message })); return; }
    const cs = [];
    for (const [name, g] of Object.entries(cfg && typeof cfg === "object" ? cfg : {})) {
      const ents = (g && g.entities) || {};
      cs.push(card(name, [["broker", g && g.uri], ["entities", Object.keys(ents).length]]));
    }
    if (!cs.length) cs.push(el("p", { class: "note", text: "no gateway settings in .distkv config gateways (a gateway may still use its file)" }));
    this.gateways.replaceChildren(...cs);
  }

  watch(path) {
    if (this.w !== null) this.w.stop();
    this.path = path;
    this.input.value = path.map(elemText).join(".");
    this.body.replaceChildren();
    this.w = new SubtreeWatch(this.client, path, () => this.render(),
      (e) => this.body.replaceChildren(el("p", { class: "denied", text: e.message })));
  }

  render() {
    const ents = new Map();
    for (const { rel, value } of this.w.entries.values()) {
      const last = rel[rel.length - 1];
      if (rel.length < 1 || !ENTITY_PARTS.includes(last)) continue;
      const base = rel.slice(0, -1);
      const k = JSON.stringify(base.map(keyOf));
      if (!ents.has(k)) ents.set(k, { base, parts: {} });
      ents.get(k).parts[last] = value;
    }
    const cs = [];
    for (const { base, parts } of ents.values()) {
      const full = [...this.path, ...base].map(elemText).join(".");
      const has = (p) => Object.prototype.hasOwnProperty.call(parts, p);
      const differs = has("desired") && has("state") && JSON.stringify(parts.desired) !== JSON.stringify(parts.state);
      const c = card(full, [
        ["state", has("state") ? toYaml(parts.state) : "–"],
        ["desired", has("desired") ? toYaml(parts.desired) + (differs ? " (not reached)" : "") : "–"],
        ["online", has("online") ? (parts.online ? "online" : "OFFLINE") : "–"],
      ], has("online") && !parts.online ? "bad" : differs ? "warn" : "");
      c.dataset.entity = full;
      cs.push(c);
    }
    if (!cs.length) cs.push(el("p", { class: "note", text: "no entities here" }));
    this.body.replaceChildren(...cs);
  }

  stop() { if (this.w !== null) this.w.stop(); }
}

window.Pages = { nodes: NodesPage, runners: RunnersPage, errors: ErrorsPage, gateways: GatewaysPage };
