// The DistKV client protocol over a WebSocket (docs/protocol.md): the same msgpack
// messages a TCP client exchanges; only the framing differs (binary messages).
"use strict";

class DistKVError extends Error {
  constructor(msg) { super(msg.message || msg.error); this.code = msg.error; this.info = msg.info; }
}

class DistKVClient {
  /** Connect; `onGreeting(greeting)` runs once the server has spoken first. */
  constructor(url, { onGreeting, onClose } = {}) {
    this.seq = 0;
    this.pending = new Map();   // seq -> {resolve, reject}
    this.streams = new Map();   // seq -> stream state
    this.decoder = new MsgPack.Decoder();
    this.onGreeting = onGreeting;
    this.onClose = onClose;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (ev) => {
      if (!(ev.data instanceof ArrayBuffer)) return;
      for (const msg of this.decoder.feed(new Uint8Array(ev.data))) this.dispatch(msg);
    };
    this.ws.onclose = () => {
      for (const p of this.pending.values()) p.reject(new DistKVError({ error: "closed", message: "connection closed" }));
      this.pending.clear();
      for (const s of this.streams.values()) if (s.onEnd) s.onEnd(new DistKVError({ error: "closed", message: "connection closed" }));
      this.streams.clear();
      if (this.onClose) this.onClose();
    };
  }

  send(msg) { this.ws.send(MsgPack.encode(msg)); }

  dispatch(msg) {
    if (msg.seq === 0 && this.greeting === undefined) {
      this.greeting = msg;
      if (this.onGreeting) this.onGreeting(msg);
      return;
    }
    const st = this.streams.get(msg.seq);
    if (st) { this.streamMessage(st, msg); return; }
    const p = this.pending.get(msg.seq);
    if (!p) return;
    this.pending.delete(msg.seq);
    if (msg.error !== undefined) p.reject(new DistKVError(msg)); else p.resolve(msg);
  }

  /** One request, one reply (a Promise; an error reply rejects with DistKVError). */
  request(action, args = {}) {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.send({ seq, action, ...args });
    });
  }

  /** A stream request (watch, get_tree) paced by credit: `onItem(msg)` per item
   * (including `state: "uptodate"`), `onEnd(error|null)` once. Credit is granted
   * back by half the window as items are handled. Returns the stream's seq. */
  stream(action, args, onItem, onEnd, credit = 256) {
    const seq = ++this.seq;
    this.streams.set(seq, { seq, onItem, onEnd, credit, used: 0 });
    this.send({ seq, action, credit, ...args });
    return seq;
  }

  streamMessage(st, msg) {
    if (msg.state === "start") return;
    if (msg.state === "end" || msg.error !== undefined) {
      this.streams.delete(st.seq);
      if (st.onEnd) st.onEnd(msg.error !== undefined ? new DistKVError(msg) : null);
      return;
    }
    try { st.onItem(msg); } finally {
      st.used += 1;
      if (st.used >= st.credit / 2) {
        this.send({ action: "credit", task: st.seq, n: st.used });
        st.used = 0;
      }
    }
  }

  stop(seq) {
    if (!this.streams.has(seq)) return;
    const st = this.streams.get(seq);
    st.onItem = () => {};
    st.onEnd = null;
    this.request("stop", { task: seq }).catch(() => {});
  }
}
