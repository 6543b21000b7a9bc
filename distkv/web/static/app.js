// The tree browser: each expanded entry runs a `watch` (fetch, depth 1, with its
// chain) so values stay live; edits send the chain seen when editing started, so a
// concurrent change is reported (`error: chain`), never overwritten.
"use strict";

const $ = (id) => document.getElementById(id);
let client = null;
let root = null;

function pathOf(p) { return p instanceof MsgPack.Path ? p.elements : (p || []); }
function keyOf(el) { return (typeof el) + ":" + String(el); }
function elemText(el) {
  if (el === null) return "null";
  if (typeof el === "string") return el;
  if (el instanceof Uint8Array) return "0x" + Array.from(el, (b) => b.toString(16).padStart(2, "0")).join("");
  if (Array.isArray(el)) return "(" + el.map(elemText).join(",") + ")";
  return String(el);
}

// --- YAML-ish rendering ---

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_ ./@-]*$/;
const RESERVED = /^(null|true|false|yes|no|on|off|~)$/i;
function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean" || typeof v === "number" || typeof v === "bigint") return String(v);
  if (typeof v === "string") return (PLAIN.test(v) && !RESERVED.test(v) && !v.endsWith(" ")) ? v : JSON.stringify(v);
  if (v instanceof Uint8Array) return "!!binary " + btoa(String.fromCharCode(...v));
  if (v instanceof MsgPack.Path) return "!P " + v.elements.map(elemText).join(".");
  return null;
}
function toYaml(v, indent = "") {
  const s = scalar(v);
  if (s !== null) return s;
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return v.map((x) => {
      const inner = toYaml(x, indent + "  ");
      return indent + "- " + inner.replace(/^\s+/, "");
    }).join("\n");
  }
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return keys.map((k) => {
    const x = v[k];
    const ks = scalar(k);
    if (scalar(x) !== null || (Array.isArray(x) && !x.length) || (typeof x === "object" && !Object.keys(x).length))
      return indent + ks + ": " + toYaml(x);
    return indent + ks + ":\n" + toYaml(x, indent + "  ");
  }).join("\n");
}
function jsonable(v) {
  if (v === null || ["boolean", "number", "string"].includes(typeof v)) return true;
  if (Array.isArray(v)) return v.every(jsonable);
  if (typeof v === "object" && !(v instanceof Uint8Array) && !(v instanceof MsgPack.Path))
    return Object.values(v).every(jsonable);
  return false;
}
// What the user typed: JSON (which is also YAML flow style), else a plain string.
function parseInput(text) {
  try { return JSON.parse(text); } catch (e) { return text; }
}

// --- tree nodes ---

class TreeNode {
  constructor(path, parentUl) {
    this.path = path;
    this.children = new Map();
    this.hasValue = false;
    this.value = undefined;
    this.chain = undefined;
    this.watch = null;
    this.expanded = false;
    this.live = false;        // the watch's initial dump is done
    if (parentUl === null) { this.ul = $("tree"); return; }
    const li = document.createElement("li");
    li.dataset.path = JSON.stringify(path.map(elemText));
    const row = document.createElement("div");
    row.className = "row";
    this.toggle = document.createElement("button");
    this.toggle.className = "toggle";
    this.toggle.textContent = "▸";
    this.toggle.title = "expand";
    this.toggle.onclick = () => (this.expanded ? this.collapse() : this.expand());
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = elemText(path[path.length - 1]);
    this.valueEl = document.createElement("pre");
    this.valueEl.className = "value";
    this.editBtn = document.createElement("button");
    this.editBtn.className = "edit";
    this.editBtn.textContent = "edit";
    this.editBtn.onclick = () => this.startEdit();
    row.append(this.toggle, name, this.editBtn);
    this.ul = document.createElement("ul");
    this.editor = document.createElement("div");
    this.editor.className = "editor";
    this.editor.hidden = true;
    li.append(row, this.valueEl, this.editor, this.ul);
    this.li = li;
    parentUl.append(li);
    this.render(false);
  }

  child(el) {
    const k = keyOf(el);
    let c = this.children.get(k);
    if (!c) { c = new TreeNode([...this.path, el], this.ul); this.children.set(k, c); }
    return c;
  }

  setValue(msg, highlight) {
    this.hasValue = Object.prototype.hasOwnProperty.call(msg, "value");
    this.value = msg.value;
    this.chain = msg.chain;
    this.conflict = !!msg.conflict;
    this.render(highlight);
  }

  render(highlight) {
    if (!this.valueEl) return;
    // touch only what changes: every DOM write invalidates style (100 updates/s)
    const text = this.hasValue ? toYaml(this.value) : "";
    if (this.valueEl.textContent !== text) this.valueEl.textContent = text;
    if (this.valueEl.classList.contains("novalue") === this.hasValue) this.valueEl.classList.toggle("novalue", !this.hasValue);
    if (this.valueEl.classList.contains("conflict") !== !!this.conflict) this.valueEl.classList.toggle("conflict", !!this.conflict);
    const hide = this.hasValue && !jsonable(this.value);
    if (this.editBtn.hidden !== hide) this.editBtn.hidden = hide;
    const label = this.hasValue ? "edit" : "set";
    if (this.editBtn.textContent !== label) this.editBtn.textContent = label;
    if (highlight) {
      // no forced reflow to restart a fade (it costs a layout of the whole list per
      // update): a row changed again while still yellow just stays yellow longer
      this.li.classList.add("changed");
      clearTimeout(this.hlTimer);
      this.hlTimer = setTimeout(() => this.li.classList.remove("changed"), 2000);
    }
  }

  async expand() {
    this.expanded = true;
    if (this.toggle) { this.toggle.textContent = "▾"; this.toggle.title = "collapse"; }
    try {
      const res = await client.request("list", { path: new MsgPack.Path(this.path) });
      // children travel as a path (ext 2), so that tuple names stay tuples
      const kids = res.children instanceof MsgPack.Path ? res.children.elements : res.children;
      for (const el of kids || []) this.child(el);
    } catch (e) { showError(e); return; }
    if (!this.expanded) return;
    this.live = false;
    this.watch = client.stream(
      "watch",
      { path: new MsgPack.Path(this.path), fetch: true, max_depth: 1, nchain: 1 },
      (msg) => this.onWatch(msg),
      (err) => { if (err) showError(err); },
    );
  }

  onWatch(msg) {
    if (msg.state === "uptodate") { this.live = true; return; }
    if (msg.state !== undefined) return;
    const rel = pathOf(msg.path);
    if (rel.length === 0) this.setValue(msg, this.live);
    else if (rel.length === 1) {
      this.child(rel[0]).setValue(msg, this.live);
      // bench/web.py sets window.DistKVTrace = [] to time write -> DOM update
      if (window.DistKVTrace && this.live) window.DistKVTrace.push([performance.timeOrigin + performance.now(), msg.value]);
    }
  }

  collapse() {
    this.expanded = false;
    if (this.toggle) { this.toggle.textContent = "▸"; this.toggle.title = "expand"; }
    if (this.watch !== null) { client.stop(this.watch); this.watch = null; }
    for (const c of this.children.values()) c.destroy();
    this.children.clear();
    this.ul.replaceChildren();
  }

  destroy() {
    if (this.watch !== null) { client.stop(this.watch); this.watch = null; }
    for (const c of this.children.values()) c.destroy();
  }

  startEdit() {
    // the chain of the value the user is looking at: the write only goes through
    // if nobody changed it meanwhile
    const chain = this.hasValue ? (this.chain || null) : null;
    const ta = document.createElement("textarea");
    ta.value = this.hasValue ? JSON.stringify(this.value, null, 1) : "";
    ta.rows = Math.min(10, ta.value.split("\n").length + 1);
    const save = document.createElement("button");
    save.textContent = "save";
    save.className = "save";
    const cancel = document.createElement("button");
    cancel.textContent = "cancel";
    const msg = document.createElement("p");
    msg.className = "error";
    cancel.onclick = () => { this.editor.hidden = true; this.editor.replaceChildren(); };
    save.onclick = async () => {
      msg.textContent = "";
      try {
        await client.request("set_value", { path: new MsgPack.Path(this.path), value: parseInput(ta.value), chain });
        this.editor.hidden = true;
        this.editor.replaceChildren();
      } catch (e) {
        if (e.code === "chain") {
          msg.textContent = "Not saved: someone changed this value meanwhile. Current value: "
            + (this.hasValue ? toYaml(this.value) : "(none)") + ". Cancel and edit again to overwrite it.";
          this.editor.classList.add("conflict");
        } else msg.textContent = e.message;
      }
    };
    this.editor.classList.remove("conflict");
    this.editor.replaceChildren(ta, save, cancel, msg);
    this.editor.hidden = false;
    ta.focus();
  }
}

function showError(e) {
  const s = $("status");
  s.textContent = "error: " + (e.message || e);
  s.classList.add("bad");
}

// --- connection and login ---

// The subtree shown: the page's #fragment, dotted string elements ("#pub.house");
// a user whose ACL does not cover the top level opens a subtree they may read.
function startPath() {
  const h = decodeURIComponent(location.hash.replace(/^#/, ""));
  return h ? h.split(".") : [];
}

// The other pages (pages.js) live at "#!NAME"; anything else is a tree path.
let page = null;
function pageName() {
  const m = /^#!([a-z]+)/.exec(location.hash);
  return m ? m[1] : null;
}

function stopPage() {
  if (page !== null) { page.stop(); page = null; }
  $("page").replaceChildren();
}

function route() {
  const name = pageName();
  for (const a of document.querySelectorAll("#nav a"))
    a.classList.toggle("current", a.dataset.page === (name || "tree"));
  stopPage();
  if (name !== null && window.Pages && window.Pages[name]) {
    if (root !== null) { root.destroy(); root = null; }
    $("tree").replaceChildren();
    $("browser").hidden = true;
    $("page").hidden = false;
    const s = $("status");
    s.textContent = "node " + client.greeting.node;
    s.classList.remove("bad");
    page = new window.Pages[name]($("page"), client);
    return;
  }
  $("page").hidden = true;
  $("browser").hidden = false;
  showTree();
}

function showTree() {
  const s = $("status");
  s.textContent = "node " + client.greeting.node;
  s.classList.remove("bad");
  if (root !== null) root.destroy();
  $("tree").replaceChildren();
  const path = startPath();
  $("goto-path").value = path.join(".");
  root = new TreeNode(path, null);
  root.expand();
}

function startBrowser(greeting) {
  $("login").hidden = true;
  $("nav").hidden = false;
  route();
}

$("goto").onsubmit = (ev) => {
  ev.preventDefault();
  location.hash = $("goto-path").value;
};
window.addEventListener("hashchange", () => { if (!$("nav").hidden) route(); });

function showLogin(greeting) {
  $("browser").hidden = true;
  $("nav").hidden = true;
  stopPage();
  $("page").hidden = true;
  const form = $("login");
  form.hidden = false;
  $("login-method").textContent = "Login method: " + greeting.auth;
  $("login-pw-label").hidden = greeting.auth !== "password";
  $("status").textContent = "node " + greeting.node + ": please log in";
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    const args = { method: greeting.auth, name: $("login-name").value };
    if (greeting.auth === "password") args.password = $("login-password").value;
    try {
      await client.request("auth", args);
      $("login-password").value = "";
      startBrowser(greeting);
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  };
}

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  client = new DistKVClient(url, {
    onGreeting: (g) => (g.auth ? showLogin(g) : startBrowser(g)),
    onClose: () => {
      stopPage();
      const s = $("status");
      s.textContent = "disconnected, reconnecting…";
      s.classList.add("bad");
      setTimeout(connect, 1000);
    },
  });
}

connect();
