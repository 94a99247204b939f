// The client: turns what the transport brings into the store, and what the
// person does into protocol calls. Sends get a client id and wait in the
// outbox (saved) until acked; receipts say delivered and read; the
// conversation list and history come from the HTTP API.

import { Api, ApiError, seg } from './api.js';
import { Transport } from './transport.js';
import { Store, saveSession } from './store.js';
import { randomId, ID_RE } from './util.js';

const TYPING_SHOWN = 3000; // a typing event shows this long
const TYPING_EVERY = 2000; // at most one typing event sent per this
const PRESENCE_EVERY = 30000; // presence pulled this often in poll mode
const MAX_WATCH = 500;

export class Client {
  constructor({ user, token, device, forcePoll, dev, onSignedOut }) {
    this.store = new Store(user, token, device);
    this.dev = dev;
    this.onSignedOut = onSignedOut;
    this.api = new Api(() => this.store.token, () => this.unauthorized());
    this.pageSize = window.innerWidth >= 768 ? 50 : 20;
    this.receiptQueue = new Map(); // conv -> {delivered, read}
    this.lastTyping = new Map(); // conv -> ms
    this.listLoadedOnce = false;
    this.transport = new Transport({
      api: this.api,
      token: () => this.store.token,
      device,
      getCursor: () => this.store.cursor,
      forcePoll,
      handlers: {
        state: (s) => { this.store.conn = s; this.store.changed({ conn: true }); },
        connected: (info) => this.onConnected(info),
        event: (ev) => this.onEvent(ev),
        caughtUp: () => this.flush(),
        ack: (a) => this.settle(a.id, a),
        sendFailed: (id, err) => this.onSendFailed(id, err),
        disconnected: () => {
          for (const e of this.store.outbox) if (e.state === 'inflight') e.state = 'queued';
          this.watchKey = null;
        },
        cursorExpired: (c) => this.onCursorExpired(c),
        unauthorized: () => this.unauthorized(),
      },
    });
    this.onVisible = () => this.markOpenRead();
    this.notifier = null; // set by the app: told of each new message (notify.js)
  }

  get user() { return this.store.user; }

  start() {
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
    this.transport.start();
    if (this.store.open && !this.store.open.startsWith('to:')) this.openConversation(this.store.open);
    this.presenceTimer = setInterval(() => this.everyHalfMinute(), PRESENCE_EVERY);
  }

  stop() {
    this.stopped = true;
    this.transport.stop();
    clearInterval(this.presenceTimer);
    for (const t of [this.rewatchTimer, this.listTimer, this.flushTimer, this.receiptTimer]) clearTimeout(t);
    document.removeEventListener('visibilitychange', this.onVisible);
    window.removeEventListener('focus', this.onVisible);
  }

  // ---- connection ----

  onConnected({ cursor }) {
    if (cursor && !this.store.cursor) this.store.setCursor(cursor);
    this.watchKey = null;
    this.loadConversations();
  }

  onCursorExpired(cursor) {
    // The saved cursor is too old or unknown: what it would have replayed is
    // gone. Reload the list and the open history, go on from the newest.
    this.store.cursor = cursor || null;
    this.store.persist();
    for (const c of this.store.convs.values()) {
      c.loaded = false;
      c.msgs.clear();
      c.hasMore = false;
    }
    if (cursor) this.loadConversations(); // poll mode reloads once the fresh poll is up
    const open = this.openConv();
    if (open) this.loadNewest(open);
    this.store.changed({ list: true, msgs: true });
  }

  async unauthorized() {
    if (this.reauth || this.stopped) return;
    this.reauth = true;
    try {
      if (this.dev && Date.now() - (this.lastMint || 0) > 30000) {
        // Development sign-in: a fresh token for the same user.
        this.lastMint = Date.now();
        const r = await this.api.post('/v1/dev/token', { user: this.user }, { auth: false });
        this.store.token = r.token;
        saveSession(this.user, r.token);
        this.transport.restart();
        return;
      }
    } catch {
      // fall through to signing out
    } finally {
      this.reauth = false;
    }
    if (!this.stopped) this.onSignedOut('The server refused the token (expired?): sign in again.');
  }

  everyHalfMinute() {
    if (this.transport.mode === 'ws') {
      // Peers the server did not follow (shown offline with no last seen):
      // maybe they share a conversation by now.
      const unknown = this.watchList().some((u) => {
        const p = this.store.presence.get(u);
        return !p || (p.status === 'offline' && !p.last_seen);
      });
      if (unknown && (this.rewatches = (this.rewatches || 0) + 1) <= 10) this.updateWatch(true);
    } else {
      // No live events in poll mode: pull presence, refresh the open group's watermarks.
      this.pullPresence(this.watchList());
      const c = this.openConv();
      if (c && c.kind === 'group' && !c.left) this.fetchInfo(c);
    }
  }

  // ---- events ----

  onEvent(ev) {
    switch (ev.type) {
      case 'msg':
        this.onMsg(ev);
        break;
      case 'receipt':
        this.onReceipt(ev);
        break;
      case 'presence':
        this.store.presence.set(ev.user, { status: ev.status, last_seen: ev.last_seen });
        this.store.changed({ presence: true });
        break;
      case 'typing':
        if (ev.user !== this.user) {
          let m = this.store.typing.get(ev.conv);
          if (!m) this.store.typing.set(ev.conv, (m = new Map()));
          m.set(ev.user, Date.now() + TYPING_SHOWN);
          this.store.changed({ typing: true });
          setTimeout(() => this.store.changed({ typing: true }), TYPING_SHOWN + 50);
        }
        break;
      default: // unknown types are ignored (PROTOCOL.md section 3)
    }
    // The cursor moves only once the event is processed.
    if (ev.cursor) this.store.setCursor(ev.cursor);
  }

  onMsg(ev) {
    const me = this.user;
    if (ev.from === me && ev.kind === 'text') this.settle(ev.id, ev);
    const c = this.store.conv(ev.conv);
    this.store.typing.get(ev.conv)?.delete(ev.from); // what was being typed has come
    if (ev.seq > c.lastSeq) {
      c.last = ev;
      switch (ev.kind) {
        case 'group_created':
          c.kind = 'group';
          c.title = ev.title || '';
          c.members = [...new Set([ev.from, ...(ev.members || [])])];
          break;
        case 'member_added':
          if (!c.members.includes(ev.user)) c.members = [...c.members, ev.user];
          if (ev.user === me) c.left = false;
          break;
        case 'member_removed':
          c.members = c.members.filter((u) => u !== ev.user);
          if (ev.user === me) c.left = true;
          break;
        case 'title_changed':
          c.title = ev.title || '';
          break;
        default:
      }
      if (ev.kind !== 'text' && c.infoLoaded && !c.left) this.fetchInfo(c);
      if (ev.kind === 'text' && ev.from !== me) {
        if (this.notifier) this.notifier.message(ev, c.kind === 'group' ? c.title || 'a group' : '');
        if (this.isOpenAndVisible(c)) this.markOpenRead();
        else {
          c.unread++;
          this.queueReceipt(c, 'delivered', ev.seq);
        }
      }
    }
    if (!c.kind) this.needMeta(c);
    this.insertMsg(c, ev);
    this.store.changed({ list: true, msgs: c.conv });
  }

  /** Puts an event in a conversation's loaded history, fetching a gap before it. */
  insertMsg(c, m) {
    if (!(c.loaded || c.loadingNewest) || c.left) return;
    const prev = c.msgs.get(m.seq);
    if (prev && !prev.local) return; // nothing twice
    const newest = c.newestLoaded();
    const oldest = c.oldestLoaded();
    if (c.msgs.size && m.seq < oldest && c.hasMore) return; // comes with older pages
    c.msgs.set(m.seq, m);
    if (c.loaded && newest && m.seq > newest + 1) this.fillGap(c, newest, m.seq);
  }

  async fillGap(c, after, before) {
    try {
      let from = after;
      for (let i = 0; i < 20; i++) {
        const r = await this.api.get(`/v1/conversations/${seg(c.conv)}/messages?after=${from}&before=${before}&limit=100`);
        for (const m of r.messages) if (!c.msgs.has(m.seq) || c.msgs.get(m.seq).local) c.msgs.set(m.seq, m);
        this.store.changed({ msgs: c.conv });
        if (!r.has_more || r.messages.length === 0) break;
        from = r.messages[r.messages.length - 1].seq;
      }
    } catch (e) {
      console.warn('messenger: gap', e);
    }
  }

  onReceipt(ev) {
    const c = this.store.convs.get(ev.conv);
    if (!c) return;
    const mk = c.mark(ev.user);
    mk.d = Math.max(mk.d, ev.seq);
    if (ev.status === 'read') mk.r = Math.max(mk.r, ev.seq);
    if (ev.user === this.user) {
      // Another device of ours.
      c.deliveredSeq = Math.max(c.deliveredSeq, ev.seq);
      if (ev.status === 'read') {
        c.readSeq = Math.max(c.readSeq, ev.seq);
        if (ev.seq >= c.lastSeq) c.unread = 0;
        else if (c.unread) this.reloadListSoon();
      }
    }
    this.store.changed({ list: true, msgs: c.conv });
  }

  // ---- conversation list ----

  async loadConversations() {
    if (this.listLoading) {
      this.listAgain = true;
      return;
    }
    this.listLoading = true;
    try {
      const r = await this.api.get('/v1/conversations?limit=200');
      for (const it of r.conversations) this.applySummary(it);
      this.listLoadedOnce = true;
      for (const c of this.store.convs.values()) {
        if (!c.kind) this.needMeta(c);
        const fromOthers = c.last && c.last.from !== this.user;
        if ((fromOthers || c.unread > 0) && c.lastSeq > c.deliveredSeq && !this.isOpenAndVisible(c)) {
          this.queueReceipt(c, 'delivered', c.lastSeq);
        }
      }
      this.updateWatch();
      this.markOpenRead();
      this.store.changed({ list: true });
    } catch (e) {
      if (!(e instanceof ApiError) || e.status === 401) return;
      // Retried on the next reconnect; and once soon.
      setTimeout(() => this.loadConversations(), 3000);
    } finally {
      this.listLoading = false;
      if (this.listAgain) {
        this.listAgain = false;
        this.loadConversations();
      }
    }
  }

  reloadListSoon() {
    clearTimeout(this.listTimer);
    this.listTimer = setTimeout(() => this.loadConversations(), 500);
  }

  applySummary(it) {
    const c = this.store.conv(it.conv);
    c.kind = it.kind;
    // The list is a snapshot: what events told since is newer.
    if (!c.last || (it.last && it.last.seq >= c.last.seq)) {
      c.title = it.title || '';
      c.members = it.members || [];
      if (it.last) c.last = it.last;
      c.unread = it.unread || 0;
      if (it.kind === 'group' && c.members.length) c.left = !c.members.includes(this.user);
    }
    c.deliveredSeq = it.delivered_seq || 0;
    c.readSeq = it.read_seq || 0;
    c.sentDelivered = c.deliveredSeq;
    c.sentRead = c.readSeq;
  }

  /** Metadata of a conversation known only from an event. */
  needMeta(c) {
    if (this.listLoading || !this.listLoadedOnce) return; // the list load will tell
    this.fetchInfo(c);
  }

  async fetchInfo(c) {
    if (c.infoPending) return c.infoPending;
    c.infoPending = (async () => {
      try {
        const v = await this.api.get(`/v1/conversations/${seg(c.conv)}`);
        this.applyInfo(c, v);
      } catch (e) {
        if (e instanceof ApiError && e.status === 403) {
          c.left = true;
          if (!c.kind) c.kind = 'group';
        }
        c.infoError = e.message;
      } finally {
        c.infoPending = null;
        this.store.changed({ list: true, info: c.conv, msgs: c.conv });
      }
    })();
    return c.infoPending;
  }

  applyInfo(c, v) {
    if (!v || !v.conv) {
      // The answer to a change once one is no longer a member.
      c.left = true;
      c.roles.clear();
      return;
    }
    const wasKnown = !!c.kind;
    c.kind = v.kind;
    c.title = v.title || '';
    c.joinedSeq = v.joined_seq || 1;
    c.members = v.members.map((m) => m.user);
    c.roles = new Map(v.members.map((m) => [m.user, m.role]));
    for (const m of v.members) {
      const mk = c.mark(m.user);
      mk.d = Math.max(mk.d, m.delivered_seq || 0, m.read_seq || 0);
      mk.r = Math.max(mk.r, m.read_seq || 0);
    }
    c.infoLoaded = true;
    c.infoError = null;
    c.left = !c.members.includes(this.user);
    if (!wasKnown) this.updateWatch();
  }

  // ---- presence ----

  watchList() {
    const peers = [];
    for (const c of this.store.sortedConvs()) {
      const p = c.peer(this.user);
      if (p && !peers.includes(p)) peers.push(p);
      if (peers.length === MAX_WATCH) break;
    }
    return peers;
  }

  updateWatch(force = false) {
    const peers = this.watchList();
    const key = peers.join(',');
    if (key === this.watchKey && !force) return;
    const added = peers.some((p) => !(this.watched || new Set()).has(p));
    if (added) this.rewatches = 0;
    this.watched = new Set(peers);
    if (this.transport.mode === 'ws') {
      if (this.transport.watch(peers)) this.watchKey = key;
    } else {
      this.watchKey = key;
      this.pullPresence(peers);
    }
    if (added && !force) {
      // The server follows only users one shares a conversation with, as
      // its conversation summaries say; a chat just started may not be in
      // them yet. Ask again a little later.
      clearTimeout(this.rewatchTimer);
      this.rewatchTimer = setTimeout(() => this.updateWatch(true), 2000);
    }
  }

  async pullPresence(users) {
    if (users.length === 0) return;
    try {
      const r = await this.api.get('/v1/presence?users=' + users.map(encodeURIComponent).join(','));
      for (const p of r.users) this.store.presence.set(p.user, { status: p.status, last_seen: p.last_seen });
      this.store.changed({ presence: true });
    } catch {
      // next time
    }
  }

  // ---- receipts ----

  isOpenAndVisible(c) {
    return this.store.open === c.conv && document.visibilityState === 'visible';
  }

  openConv() {
    const k = this.store.open;
    return k && !k.startsWith('to:') ? this.store.convs.get(k) || null : null;
  }

  /** The open conversation, seen: read up to its newest event. */
  markOpenRead() {
    const c = this.openConv();
    if (!c || !this.isOpenAndVisible(c) || c.left) return;
    const newest = Math.max(c.lastSeq, c.newestLoaded());
    let fromOthers = c.last && c.last.from !== this.user ? c.lastSeq : 0;
    for (const m of c.msgs.values()) if (m.from !== this.user && m.seq > fromOthers) fromOthers = m.seq;
    if (fromOthers > Math.max(c.readSeq, c.sentRead)) this.queueReceipt(c, 'read', newest);
    if (c.unread) {
      c.unread = 0;
      this.store.changed({ list: true });
    }
  }

  queueReceipt(c, status, seq) {
    if (status === 'read') {
      if (seq <= Math.max(c.readSeq, c.sentRead)) return;
      c.sentRead = seq;
    } else {
      if (seq <= Math.max(c.deliveredSeq, c.sentDelivered, c.readSeq, c.sentRead)) return;
      c.sentDelivered = seq;
    }
    const q = this.receiptQueue.get(c.conv) || {};
    q[status] = Math.max(q[status] || 0, seq);
    this.receiptQueue.set(c.conv, q);
    if (!this.receiptTimer) this.receiptTimer = setTimeout(() => this.flushReceipts(), 100);
  }

  flushReceipts() {
    this.receiptTimer = null;
    const q = this.receiptQueue;
    this.receiptQueue = new Map();
    for (const [conv, r] of q) {
      const c = this.store.convs.get(conv);
      if (r.read) {
        this.transport.receipt(conv, r.read, 'read').then((ok) => {
          if (ok && c) { c.readSeq = Math.max(c.readSeq, r.read); c.deliveredSeq = Math.max(c.deliveredSeq, r.read); }
          else if (c) c.sentRead = Math.min(c.sentRead, c.readSeq); // again after the next reconnect
        });
      }
      if (r.delivered && !(r.read >= r.delivered)) {
        this.transport.receipt(conv, r.delivered, 'delivered').then((ok) => {
          if (ok && c) c.deliveredSeq = Math.max(c.deliveredSeq, r.delivered);
          else if (c) c.sentDelivered = Math.min(c.sentDelivered, c.deliveredSeq);
        });
      }
    }
  }

  // ---- sending ----

  /** Queues a message for the open conversation; false when nothing to send. */
  send(text) {
    const key = this.store.open;
    if (!key || !text.trim()) return false;
    const e = { id: randomId(), text, created: Date.now(), state: 'queued' };
    if (key.startsWith('to:')) e.to = key.slice(3);
    else e.conv = key;
    this.store.outbox.push(e);
    this.store.persist();
    this.store.changed({ msgs: key, sent: true });
    this.flush();
    return true;
  }

  /** Sends what waits, when the transport is caught up. */
  flush() {
    clearTimeout(this.flushTimer);
    if (!this.transport.ready) return;
    const now = Date.now();
    let next = Infinity;
    for (const e of this.store.outbox) {
      if (e.state !== 'queued') continue;
      if (e.retryAt > now) {
        next = Math.min(next, e.retryAt);
        continue;
      }
      if (this.transport.send(e)) e.state = 'inflight';
    }
    if (next < Infinity) this.flushTimer = setTimeout(() => this.flush(), next - now + 10);
  }

  /** An ack, or the own msg event that carries the same id: the send is done. */
  settle(id, { conv, seq, ts }) {
    const i = this.store.outbox.findIndex((e) => e.id === id);
    if (i < 0) return;
    const e = this.store.outbox[i];
    this.store.outbox.splice(i, 1);
    this.store.persist();
    const c = this.store.conv(conv);
    if (!c.kind && e.to) {
      c.kind = 'direct';
      c.members = [this.user, e.to];
      this.updateWatch();
    }
    if (!c.kind) this.needMeta(c);
    const msg = { type: 'msg', conv, seq, ts, from: this.user, id, kind: 'text', text: e.text, local: true };
    if (seq > c.lastSeq) c.last = msg;
    this.insertMsg(c, msg);
    if (e.to && this.store.open === 'to:' + e.to) this.openConversation(conv);
    this.store.changed({ list: true, msgs: conv });
  }

  onSendFailed(id, err) {
    const e = this.store.outbox.find((x) => x.id === id);
    if (!e) return;
    if (err.code === 'rate_limited' || err.code === 'unavailable') {
      const wait = err.retryAfterMs || 1000;
      e.state = 'queued';
      e.retryAt = Date.now() + wait;
      clearTimeout(this.flushTimer);
      this.flushTimer = setTimeout(() => this.flush(), wait + 10);
      return;
    }
    this.store.outbox = this.store.outbox.filter((x) => x !== e);
    this.store.persist();
    this.store.failed.push({ ...e, error: err.message || err.code });
    this.store.changed({ msgs: e.conv || 'to:' + e.to });
  }

  dismissFailed(id) {
    this.store.failed = this.store.failed.filter((e) => e.id !== id);
    this.store.changed({ msgs: true });
  }

  typing() {
    const key = this.store.open;
    if (!key || key.startsWith('to:') || !this.transport.ready) return;
    const now = Date.now();
    if (now - (this.lastTyping.get(key) || 0) < TYPING_EVERY) return;
    this.lastTyping.set(key, now);
    this.transport.typing(key);
  }

  // ---- conversations and history ----

  openConversation(key) {
    this.store.setOpen(key);
    this.store.changed({ open: true, scroll: 'bottom' });
    if (!key || key.startsWith('to:')) return;
    const c = this.store.conv(key);
    if (!c.loaded) this.loadNewest(c);
    this.fetchInfo(c);
    this.markOpenRead();
  }

  /** Opens the direct chat with user (started by the first send). */
  chatWith(user) {
    if (!ID_RE.test(user)) throw new Error('a user id is 1-64 characters of A-Z a-z 0-9 _ -');
    if (user === this.user) throw new Error('that is you: pick someone else');
    const c = this.store.directWith(user);
    this.openConversation(c ? c.conv : 'to:' + user);
  }

  closeConversation() {
    this.store.setOpen(null);
    this.store.changed({ open: true });
  }

  async loadNewest(c) {
    if (c.loadingNewest) return;
    c.loadingNewest = true;
    c.loadError = null;
    try {
      const r = await this.api.get(`/v1/conversations/${seg(c.conv)}/messages?limit=${this.pageSize}`);
      for (const m of r.messages) if (!c.msgs.has(m.seq) || c.msgs.get(m.seq).local) c.msgs.set(m.seq, m);
      c.hasMore = r.has_more;
      c.loaded = true;
      const newest = r.messages[r.messages.length - 1];
      if (newest && newest.seq > c.lastSeq) c.last = newest;
      // Events that came while loading may have left a hole above the page.
      const seqs = [...c.msgs.keys()].sort((a, b) => a - b);
      for (let i = 1; i < seqs.length; i++) {
        if (seqs[i] > seqs[i - 1] + 1) {
          this.fillGap(c, seqs[i - 1], seqs[i]);
          break;
        }
      }
      this.store.changed({ msgs: c.conv, scroll: 'bottom', list: true });
      this.markOpenRead();
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        c.left = true;
        c.loaded = true;
        c.msgs.clear();
      } else {
        c.loadError = e.message;
        if (e instanceof ApiError && e.status !== 401) setTimeout(() => { if (this.store.open === c.conv) this.loadNewest(c); }, 3000);
      }
      this.store.changed({ msgs: c.conv });
    } finally {
      c.loadingNewest = false;
    }
  }

  /** The page before the oldest loaded event (infinite scroll up). */
  async loadOlder(c) {
    if (!c.loaded || !c.hasMore || c.loadingOlder) return;
    c.loadingOlder = true;
    this.store.changed({ msgs: c.conv });
    try {
      const before = c.oldestLoaded();
      const r = await this.api.get(`/v1/conversations/${seg(c.conv)}/messages?before=${before}&limit=${this.pageSize}`);
      for (const m of r.messages) if (!c.msgs.has(m.seq)) c.msgs.set(m.seq, m);
      c.hasMore = r.has_more && r.messages.length > 0;
    } catch (e) {
      c.loadError = e.message;
    } finally {
      c.loadingOlder = false;
      this.store.changed({ msgs: c.conv, older: true });
    }
  }

  // ---- groups (HTTP API, PROTOCOL.md section 5) ----

  async createGroup(id, title, members) {
    const v = await this.api.post('/v1/conversations', { id, title, members });
    const c = this.store.conv(v.conv);
    this.applyInfo(c, v);
    this.openConversation(v.conv);
    return c;
  }

  async addMember(conv, user) {
    const v = await this.api.post(`/v1/conversations/${seg(conv)}/members`, { user });
    this.applyInfo(this.store.conv(conv), v);
    this.store.changed({ info: conv, list: true });
  }

  async removeMember(conv, user) {
    const v = await this.api.del(`/v1/conversations/${seg(conv)}/members/${seg(user)}`);
    this.applyInfo(this.store.conv(conv), v);
    this.store.changed({ info: conv, list: true, msgs: conv });
  }

  async rename(conv, title) {
    const v = await this.api.patch(`/v1/conversations/${seg(conv)}`, { title });
    this.applyInfo(this.store.conv(conv), v);
    this.store.changed({ info: conv, list: true });
  }
}
