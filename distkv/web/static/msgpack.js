// A minimal msgpack codec: only what the DistKV protocol needs (docs/protocol.md):
// nil, bool, int (64-bit values beyond 2^53 decode as BigInt), float, str, bin,
// array, map and ext type 2 (a path: its payload is a msgpack array of elements).
"use strict";

const MsgPack = (() => {
  class Path {
    constructor(elements) { this.elements = elements; }
    toString() { return this.elements.map(String).join("."); }
  }

  const utf8enc = new TextEncoder();
  const utf8dec = new TextDecoder();

  class Writer {
    constructor() { this.buf = new Uint8Array(256); this.view = new DataView(this.buf.buffer); this.pos = 0; }
    ensure(n) {
      if (this.pos + n <= this.buf.length) return;
      let size = this.buf.length * 2;
      while (size < this.pos + n) size *= 2;
      const nb = new Uint8Array(size);
      nb.set(this.buf.subarray(0, this.pos));
      this.buf = nb; this.view = new DataView(nb.buffer);
    }
    u8(x) { this.ensure(1); this.buf[this.pos++] = x; }
    u16(x) { this.ensure(2); this.view.setUint16(this.pos, x); this.pos += 2; }
    u32(x) { this.ensure(4); this.view.setUint32(this.pos, x); this.pos += 4; }
    bytes(b) { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; }
    result() { return this.buf.slice(0, this.pos); }
  }

  function encodeInt(w, x) {
    if (x >= 0) {
      if (x < 128) w.u8(x);
      else if (x < 256) { w.u8(0xcc); w.u8(x); }
      else if (x < 65536) { w.u8(0xcd); w.u16(x); }
      else if (x < 4294967296) { w.u8(0xce); w.u32(x); }
      else { w.u8(0xcf); w.ensure(8); w.view.setBigUint64(w.pos, BigInt(x)); w.pos += 8; }
    } else {
      if (x >= -32) w.u8(x & 0xff);
      else if (x >= -128) { w.u8(0xd0); w.ensure(1); w.view.setInt8(w.pos++, x); }
      else if (x >= -32768) { w.u8(0xd1); w.ensure(2); w.view.setInt16(w.pos, x); w.pos += 2; }
      else if (x >= -2147483648) { w.u8(0xd2); w.ensure(4); w.view.setInt32(w.pos, x); w.pos += 4; }
      else { w.u8(0xd3); w.ensure(8); w.view.setBigInt64(w.pos, BigInt(x)); w.pos += 8; }
    }
  }

  function encodeStr(w, s) {
    const b = utf8enc.encode(s);
    const n = b.length;
    if (n < 32) w.u8(0xa0 | n);
    else if (n < 256) { w.u8(0xd9); w.u8(n); }
    else if (n < 65536) { w.u8(0xda); w.u16(n); }
    else { w.u8(0xdb); w.u32(n); }
    w.bytes(b);
  }

  function encodeLen(w, n, fix, c16, c32) {
    if (n < 16) w.u8(fix | n);
    else if (n < 65536) { w.u8(c16); w.u16(n); }
    else { w.u8(c32); w.u32(n); }
  }

  function enc(w, x) {
    if (x === null || x === undefined) w.u8(0xc0);
    else if (x === false) w.u8(0xc2);
    else if (x === true) w.u8(0xc3);
    else if (typeof x === "number") {
      if (Number.isSafeInteger(x)) encodeInt(w, x);
      else { w.u8(0xcb); w.ensure(8); w.view.setFloat64(w.pos, x); w.pos += 8; }
    } else if (typeof x === "bigint") {
      if (x >= 0n) { w.u8(0xcf); w.ensure(8); w.view.setBigUint64(w.pos, x); w.pos += 8; }
      else { w.u8(0xd3); w.ensure(8); w.view.setBigInt64(w.pos, x); w.pos += 8; }
    } else if (typeof x === "string") encodeStr(w, x);
    else if (x instanceof Uint8Array) {
      const n = x.length;
      if (n < 256) { w.u8(0xc4); w.u8(n); }
      else if (n < 65536) { w.u8(0xc5); w.u16(n); }
      else { w.u8(0xc6); w.u32(n); }
      w.bytes(x);
    } else if (x instanceof Path) {
      const inner = encode(x.elements);
      const n = inner.length;
      if (n === 1) w.u8(0xd4); else if (n === 2) w.u8(0xd5); else if (n === 4) w.u8(0xd6);
      else if (n === 8) w.u8(0xd7); else if (n === 16) w.u8(0xd8);
      else if (n < 256) { w.u8(0xc7); w.u8(n); }
      else if (n < 65536) { w.u8(0xc8); w.u16(n); }
      else { w.u8(0xc9); w.u32(n); }
      w.u8(2);
      w.bytes(inner);
    } else if (Array.isArray(x)) {
      encodeLen(w, x.length, 0x90, 0xdc, 0xdd);
      for (const v of x) enc(w, v);
    } else if (x instanceof Map) {
      encodeLen(w, x.size, 0x80, 0xde, 0xdf);
      for (const [k, v] of x) { enc(w, k); enc(w, v); }
    } else if (typeof x === "object") {
      const keys = Object.keys(x).filter((k) => x[k] !== undefined);
      encodeLen(w, keys.length, 0x80, 0xde, 0xdf);
      for (const k of keys) { encodeStr(w, k); enc(w, x[k]); }
    } else throw new TypeError("cannot encode " + typeof x);
  }

  /** One value to bytes (Uint8Array). */
  function encode(x) { const w = new Writer(); enc(w, x); return w.result(); }

  const INCOMPLETE = Symbol("incomplete");

  class Reader {
    constructor(buf) { this.buf = buf; this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength); this.pos = 0; }
    need(n) { if (this.pos + n > this.buf.length) throw INCOMPLETE; }
    u8() { this.need(1); return this.buf[this.pos++]; }
    u16() { this.need(2); const x = this.view.getUint16(this.pos); this.pos += 2; return x; }
    u32() { this.need(4); const x = this.view.getUint32(this.pos); this.pos += 4; return x; }
    bytes(n) { this.need(n); const b = this.buf.slice(this.pos, this.pos + n); this.pos += n; return b; }
    str(n) { this.need(n); const s = utf8dec.decode(this.buf.subarray(this.pos, this.pos + n)); this.pos += n; return s; }
    big(signed) {
      this.need(8);
      const x = signed ? this.view.getBigInt64(this.pos) : this.view.getBigUint64(this.pos);
      this.pos += 8;
      return (x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER)) ? Number(x) : x;
    }
    array(n) { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = this.value(); return a; }
    map(n) {
      const m = {};
      for (let i = 0; i < n; i++) { const k = this.value(); m[typeof k === "string" ? k : String(k)] = this.value(); }
      return m;
    }
    ext(n) {
      const type = this.u8();
      const data = this.bytes(n);
      if (type === 2) return new Path(new Reader(data).value());
      return { ext: type, data };
    }
    value() {
      const c = this.u8();
      if (c < 0x80) return c;
      if (c < 0x90) return this.map(c & 0x0f);
      if (c < 0xa0) return this.array(c & 0x0f);
      if (c < 0xc0) return this.str(c & 0x1f);
      if (c >= 0xe0) return c - 256;
      switch (c) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return this.bytes(this.u8());
        case 0xc5: return this.bytes(this.u16());
        case 0xc6: return this.bytes(this.u32());
        case 0xc7: return this.ext(this.u8());
        case 0xc8: return this.ext(this.u16());
        case 0xc9: return this.ext(this.u32());
        case 0xca: { this.need(4); const x = this.view.getFloat32(this.pos); this.pos += 4; return x; }
        case 0xcb: { this.need(8); const x = this.view.getFloat64(this.pos); this.pos += 8; return x; }
        case 0xcc: return this.u8();
        case 0xcd: return this.u16();
        case 0xce: return this.u32();
        case 0xcf: return this.big(false);
        case 0xd0: { this.need(1); return this.view.getInt8(this.pos++); }
        case 0xd1: { this.need(2); const x = this.view.getInt16(this.pos); this.pos += 2; return x; }
        case 0xd2: { this.need(4); const x = this.view.getInt32(this.pos); this.pos += 4; return x; }
        case 0xd3: return this.big(true);
        case 0xd4: return this.ext(1);
        case 0xd5: return this.ext(2);
        case 0xd6: return this.ext(4);
        case 0xd7: return this.ext(8);
        case 0xd8: return this.ext(16);
        case 0xd9: return this.str(this.u8());
        case 0xda: return this.str(this.u16());
        case 0xdb: return this.str(this.u32());
        case 0xdc: return this.array(this.u16());
        case 0xdd: return this.array(this.u32());
        case 0xde: return this.map(this.u16());
        case 0xdf: return this.map(this.u32());
      }
      throw new Error("msgpack: bad type byte 0x" + c.toString(16));
    }
  }

  /** A stream decoder: feed() bytes as they arrive, get back the complete values
   * (msgpack is self-delimiting; a value may span several WebSocket messages). */
  class Decoder {
    constructor() { this.pending = new Uint8Array(0); }
    feed(chunk) {
      let buf = chunk;
      if (this.pending.length) {
        buf = new Uint8Array(this.pending.length + chunk.length);
        buf.set(this.pending); buf.set(chunk, this.pending.length);
      }
      const out = [];
      const r = new Reader(buf);
      for (;;) {
        const start = r.pos;
        if (start >= buf.length) { this.pending = new Uint8Array(0); break; }
        try { out.push(r.value()); } catch (e) {
          if (e !== INCOMPLETE) throw e;
          this.pending = buf.slice(start);
          break;
        }
      }
      return out;
    }
  }

  return { encode, Decoder, Path };
})();
