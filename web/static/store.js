// What the page knows: the signed-in user's saved state (localStorage, per
// user: token, cursor, unacked sends, open conversation) and the model
// built from the server (conversations, their loaded history, watermarks,
// presence, typing). No network and no DOM here.

import { randomId } from './util.js';

const PREFIX = 'messenger.';

function load(key, fallback) {
  try {
    const v = localStorage.getItem(PREFIX + key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    if (value === undefined) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Storage full or off: the page still works, a reload forgets more.
  }
}

/** The device id of this browser profile, made once. */
export function deviceId() {
  let d = load('device', null);
  if (typeof d !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(d)) {
    d = 'web-' + randomId(16);
    save('device', d);
  }
  return d;
}

/** The signed-in user and its token, or null. */
export function currentSession() {
  const user = load('current', null);
  if (!user) return null;
  const u = load('user.' + user, null);
  if (!u || !u.token) return null;
  return { user, token: u.token };
}

/** Records a sign-in; what was saved for the user (cursor, outbox) stays. */
export function saveSession(user, token) {
  const u = load('user.' + user, {}) || {};
  u.token = token;
  save('user.' + user, u);
  save('current', user);
}

/** Signs out: the token goes; the cursor and unsent messages stay for next time. */
export function clearSession(user) {
  const u = load('user.' + user, null);
  if (u) {
    delete u.token;
    save('user.' + user, u);
  }
  save('current', undefined);
}

/** A saved setting of user in this browser (e.g. notifications on), or fallback. */
export function userSetting(user, key, fallback) {
  const u = load('user.' + user, null);
  return u && u[key] !== undefined ? u[key] : fallback;
}

/** Saves a setting of user (undefined removes it); the rest of what is saved stays. */
export function setUserSetting(user, key, value) {
  const u = load('user.' + user, {}) || {};
  if (value === undefined) delete u[key];
  else u[key] = value;
  save('user.' + user, u);
}

/** One conversation as the page knows it. */
export class Conv {
  constructor(id) {
    this.conv = id;
    this.kind = ''; // 'direct' | 'group' ('' until known)
    this.title = '';
    this.members = [];
    this.last = null; // the newest msg event
    this.unread = 0;
    this.deliveredSeq = 0; // own watermarks, as the server has them
    this.readSeq = 0;
    this.sentDelivered = 0; // own receipts sent, not yet seen back
    this.sentRead = 0;
    // History, loaded when the conversation is opened.
    this.msgs = new Map(); // seq -> msg event
    this.loaded = false;
    this.hasMore = false;
    this.loadingOlder = false;
    this.joinedSeq = 1;
    // Members' watermarks (user -> {d, r}) and roles, from
    // GET /v1/conversations/{conv} and receipt events.
    this.marks = new Map();
    this.roles = new Map();
    this.infoLoaded = false;
    this.left = false; // no longer a member
    this.metaPending = false;
  }

  get lastSeq() { return this.last ? this.last.seq : 0; }
  get ts() { return this.last ? this.last.ts : this.createdTs || 0; }

  /** The other member of a direct conversation. */
  peer(me) {
    if (this.kind !== 'direct') return null;
    return this.members.find((m) => m !== me) || null;
  }

  oldestLoaded() {
    let min = Infinity;
    for (const s of this.msgs.keys()) if (s < min) min = s;
    return min === Infinity ? 0 : min;
  }

  newestLoaded() {
    let max = 0;
    for (const s of this.msgs.keys()) if (s > max) max = s;
    return max;
  }

  mark(user) {
    let m = this.marks.get(user);
    if (!m) {
      m = { d: 0, r: 0 };
      this.marks.set(user, m);
    }
    return m;
  }

  /**
   * The status of an own message at seq: 'sent', 'delivered' or 'read', from
   * the other member's watermarks (direct) or every other member's (group).
   */
  tick(seq, me) {
    const others = this.members.filter((m) => m !== me);
    if (others.length === 0) return 'sent';
    let d = Infinity;
    let r = Infinity;
    for (const u of others) {
      const m = this.marks.get(u) || { d: 0, r: 0 };
      d = Math.min(d, Math.max(m.d, m.r));
      r = Math.min(r, m.r);
    }
    if (r >= seq) return 'read';
    if (d >= seq) return 'delivered';
    return 'sent';
  }
}

export class Store {
  constructor(user, token, device) {
    this.user = user;
    this.token = token;
    this.device = device;
    const saved = load('user.' + user, {}) || {};
    this.cursor = saved.cursor || null;
    this.outbox = Array.isArray(saved.outbox) ? saved.outbox.filter((e) => e && e.id && e.text) : [];
    for (const e of this.outbox) e.state = 'queued';
    this.open = saved.open || null; // a conv id, or 'to:<user>' for a chat not started yet
    this.failed = []; // sends the server refused: {id, conv|to, text, error}
    this.convs = new Map();
    this.presence = new Map(); // user -> {status, last_seen}
    this.typing = new Map(); // conv -> Map(user -> until ms)
    this.conn = 'connecting';
    this.listeners = new Set();
  }

  persist() {
    const u = load('user.' + this.user, {}) || {};
    u.cursor = this.cursor || undefined;
    u.outbox = this.outbox.map(({ id, conv, to, text, created }) => ({ id, conv, to, text, created }));
    u.open = this.open || undefined;
    if (this.token) u.token = this.token;
    save('user.' + this.user, u);
  }

  setCursor(c) {
    if (!c || c === this.cursor) return;
    this.cursor = c;
    this.persist();
  }

  setOpen(key) {
    this.open = key;
    this.persist();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Tells the UI that something changed (batched by the UI). */
  changed(what = {}) {
    for (const fn of this.listeners) fn(what);
  }

  conv(id) {
    let c = this.convs.get(id);
    if (!c) {
      c = new Conv(id);
      c.createdTs = Date.now();
      this.convs.set(id, c);
    }
    return c;
  }

  /** The direct conversation with user, if the page knows one. */
  directWith(user) {
    for (const c of this.convs.values()) {
      if (c.kind === 'direct' && c.members.includes(user) && c.members.includes(this.user)) return c;
    }
    return null;
  }

  /** Conversations, most recent first. */
  sortedConvs() {
    return [...this.convs.values()]
      .filter((c) => c.kind)
      .sort((a, b) => b.ts - a.ts || (a.conv < b.conv ? -1 : 1));
  }

  /** Own messages not acked yet for a conversation (or a chat not started). */
  pendingFor(key) {
    const c = this.convs.get(key);
    const peer = key.startsWith('to:') ? key.slice(3) : c && c.peer(this.user);
    return this.outbox.filter((e) => (e.conv && e.conv === key) || (!e.conv && peer && e.to === peer));
  }

  failedFor(key) {
    const c = this.convs.get(key);
    const peer = key.startsWith('to:') ? key.slice(3) : c && c.peer(this.user);
    return this.failed.filter((e) => (e.conv && e.conv === key) || (!e.conv && peer && e.to === peer));
  }

  typingIn(conv) {
    const m = this.typing.get(conv);
    if (!m) return [];
    const now = Date.now();
    const out = [];
    for (const [u, until] of m) {
      if (until > now) out.push(u);
      else m.delete(u);
    }
    return out;
  }
}
