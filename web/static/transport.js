// The connection to the platform: a WebSocket (PROTOCOL.md section 3), or
// long polling (section 4) when the WebSocket cannot connect or the page
// asks for it (?transport=poll). Both give the client the same calls:
//
//   h.state(s)             'connecting' | 'connected' | 'reconnecting' | 'polling'
//   h.connected({cursor})  a connection (or the first poll) is up; cursor is
//                          the newest stored event's (hello), when known
//   h.event(ev)            a msg, receipt, presence or typing event, in order
//   h.caughtUp()           every stored event after the saved cursor is in:
//                          time to resend what was not acked
//   h.ack(ack)             a send was stored
//   h.sendFailed(id, err)  a send was refused ({code, message, retryAfterMs})
//   h.disconnected()       sends in flight will get no answer
//   h.cursorExpired(c)     the saved cursor is unknown: continue from c (WS)
//                          or from the newest (poll, c null)
//   h.unauthorized()       the token was refused or expired
//
// The saved cursor is the client's: getCursor() reads it each time a
// connection or a poll starts, so it resumes exactly after the last event
// the client processed.

import { ApiError } from './api.js';

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 5000;
const PING_EVERY = 20000; // a ping when the socket is quiet this long
const PONG_WAIT = 10000; // no frame this long after a ping: the link is dead
const POLL_TIMEOUT = 25; // seconds the server holds a poll
const CATCHUP_WAIT = 5000; // at most this long for the replay after hello

export class Transport {
  constructor({ api, token, device, getCursor, forcePoll, handlers }) {
    this.api = api;
    this.token = token;
    this.device = device;
    this.getCursor = getCursor;
    this.h = handlers;
    this.mode = forcePoll ? 'poll' : 'ws';
    this.forced = forcePoll;
    this.stopped = true;
    this.ws = null;
    this.backoff = BACKOFF_MIN;
    this.failures = 0; // WebSocket connects that failed while HTTP worked
    this.ready = false; // connected and caught up: sends may go
    this.gen = 0; // bumped to end a poll loop or forget a socket
    this.timer = null;
    this.onOnline = () => this.retryNow();
    this.onOffline = () => { if (this.ws) this.dropSocket('offline'); };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.setState('connecting');
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.gen++;
    this.ready = false;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000);
    }
    this.abort?.abort();
  }

  /** Connects again at once, e.g. when the browser says it is online again. */
  retryNow() {
    if (this.stopped || this.state === 'connected' || this.state === 'polling') return;
    clearTimeout(this.timer);
    this.backoff = BACKOFF_MIN;
    this.connect();
  }

  /** After a new token: a fresh connection with it. */
  restart() {
    this.stop();
    this.start();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.h.state(s);
  }

  connect() {
    if (this.stopped) return;
    if (this.mode === 'ws') this.connectSocket();
    else this.pollLoop(++this.gen);
  }

  scheduleReconnect() {
    if (this.stopped) return;
    this.setState('reconnecting');
    const delay = this.backoff * (0.8 + Math.random() * 0.4);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  markCaughtUp() {
    if (this.ready) return;
    clearTimeout(this.catchupTimer);
    this.ready = true;
    this.h.caughtUp();
  }

  lost() {
    const was = this.ready;
    this.ready = false;
    clearTimeout(this.catchupTimer);
    this.h.disconnected(was);
  }

  // ---- WebSocket ----

  connectSocket() {
    const gen = ++this.gen;
    const url = new URL('/v1/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.hash = '';
    url.search = '';
    url.searchParams.set('access_token', this.token());
    url.searchParams.set('device', this.device);
    const cursor = this.getCursor();
    if (cursor) url.searchParams.set('cursor', cursor);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.socketFailed(false, 1006);
      return;
    }
    this.ws = ws;
    this.hello = false;
    this.sentCursor = cursor;
    ws.onmessage = (m) => {
      if (gen !== this.gen) return;
      this.lastFrame = Date.now();
      let f;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      if (f && typeof f === 'object') this.onFrame(f);
    };
    ws.onclose = (ev) => {
      if (gen !== this.gen || this.ws !== ws) return;
      this.ws = null;
      this.socketFailed(this.hello, ev.code);
    };
  }

  /** Closes a socket that seems dead and goes on as if it had closed. */
  dropSocket(why) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onclose = ws.onmessage = null;
    try { ws.close(4000, why); } catch { /* closed already */ }
    this.socketFailed(this.hello, 1006);
  }

  socketFailed(hadHello, code) {
    clearInterval(this.pingTimer);
    this.lost();
    if (this.stopped) return;
    if (code === 4001) { // the token expired
      this.setState('reconnecting');
      this.h.unauthorized();
      return;
    }
    if (hadHello) {
      this.scheduleReconnect();
      return;
    }
    // It did not connect. Was it the token, the network, or the WebSocket
    // alone (a proxy that blocks upgrades)? Ask over plain HTTP.
    this.setState('reconnecting');
    const gen = this.gen;
    this.api.get('/v1/poll?timeout=0').then(
      () => {
        if (gen !== this.gen || this.stopped) return;
        this.failures++;
        if (this.failures >= 2) {
          console.info('messenger: the WebSocket does not connect; long polling instead');
          this.mode = 'poll';
          this.backoff = BACKOFF_MIN;
          this.connect();
        } else {
          this.scheduleReconnect();
        }
      },
      (err) => {
        if (gen !== this.gen || this.stopped) return;
        if (err instanceof ApiError && err.status === 401) return; // unauthorized() was told
        this.scheduleReconnect();
      },
    );
  }

  onFrame(f) {
    switch (f.type) {
      case 'hello':
        this.hello = true;
        this.failures = 0;
        this.backoff = BACKOFF_MIN;
        this.helloCursor = f.cursor;
        this.setState('connected');
        this.startPings();
        this.h.connected({ cursor: f.cursor });
        if (!this.sentCursor || this.sentCursor === f.cursor) this.markCaughtUp();
        else this.catchupTimer = setTimeout(() => this.markCaughtUp(), CATCHUP_WAIT);
        break;
      case 'msg':
      case 'receipt':
        this.h.event(f);
        if (!this.ready && f.cursor && f.cursor === this.helloCursor) this.markCaughtUp();
        break;
      case 'presence':
      case 'typing':
        this.h.event(f);
        break;
      case 'ack':
        this.h.ack(f);
        break;
      case 'error':
        if (f.code === 'cursor_expired') {
          this.h.cursorExpired(this.helloCursor);
          this.markCaughtUp();
        } else if (f.id) {
          this.h.sendFailed(f.id, { code: f.code, message: f.message, retryAfterMs: f.retry_after_ms });
        } else {
          console.warn('messenger: server error', f.code, f.message);
        }
        break;
      default: // pong, synced, and what a later version adds
    }
  }

  startPings() {
    clearInterval(this.pingTimer);
    this.lastFrame = Date.now();
    this.pingTimer = setInterval(() => {
      const quiet = Date.now() - this.lastFrame;
      if (quiet > PING_EVERY + PONG_WAIT) this.dropSocket('no answer to ping');
      else if (quiet > PING_EVERY) this.frame({ type: 'ping' });
    }, 5000);
  }

  frame(f) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(f));
    return true;
  }

  // ---- long polling ----

  async pollLoop(gen) {
    let timeout = 0; // catching up: answers at once until there is nothing left
    let up = false;
    while (gen === this.gen && !this.stopped) {
      const cursor = this.getCursor();
      const ctl = new AbortController();
      this.abort = ctl;
      const wait = (cursor ? timeout : 0) + 15;
      const timer = setTimeout(() => ctl.abort(), wait * 1000);
      try {
        const path = cursor
          ? `/v1/poll?cursor=${encodeURIComponent(cursor)}&timeout=${timeout}`
          : '/v1/poll';
        const ans = await this.api.get(path, { signal: ctl.signal });
        clearTimeout(timer);
        if (gen !== this.gen) return;
        this.backoff = BACKOFF_MIN;
        if (!up) {
          up = true;
          this.setState('polling');
          this.h.connected({ cursor: cursor ? null : ans.cursor });
        }
        for (const ev of ans.events) {
          if (gen !== this.gen) return;
          this.h.event(ev);
        }
        if (!this.ready && ans.events.length === 0) {
          timeout = POLL_TIMEOUT;
          this.markCaughtUp();
        }
      } catch (err) {
        clearTimeout(timer);
        if (gen !== this.gen || this.stopped) return;
        if (err instanceof ApiError && err.status === 410) {
          this.h.cursorExpired(null); // the client forgets its cursor: the next poll starts afresh
          timeout = 0;
          up = false;
          continue;
        }
        if (err instanceof ApiError && err.status === 401) {
          this.lost();
          this.setState('reconnecting');
          return; // unauthorized() was told; restart() follows a new token
        }
        up = false;
        timeout = 0;
        this.lost();
        this.setState('reconnecting');
        const delay = this.backoff * (0.8 + Math.random() * 0.4);
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
        await new Promise((r) => { this.timer = setTimeout(r, delay); });
      }
    }
  }

  // ---- what the client sends ----

  /**
   * Sends a message; the answer comes to h.ack or h.sendFailed. False when
   * it could not go out (no open socket): it stays queued.
   */
  send(entry) {
    const body = { id: entry.id, text: entry.text };
    if (entry.conv) body.conv = entry.conv;
    else body.to = entry.to;
    if (this.mode === 'ws') return this.frame({ type: 'send', ...body });
    this.api.post('/v1/messages', body).then(
      (ack) => this.h.ack(ack),
      (err) => {
        if (err.code === 'network' || err.status === 0 || err.status >= 500) {
          this.h.sendFailed(entry.id, { code: 'unavailable', message: err.message, retryAfterMs: 2000 });
        } else {
          this.h.sendFailed(entry.id, { code: err.code, message: err.message, retryAfterMs: err.retryAfterMs });
        }
      },
    );
    return true;
  }

  /** A receipt; resolves true when it went out (best effort). */
  async receipt(conv, seq, status) {
    if (this.mode === 'ws') return this.frame({ type: 'receipt', conv, seq, status });
    try {
      await this.api.post('/v1/receipts', { conv, seq, status });
      return true;
    } catch {
      return false;
    }
  }

  typing(conv) {
    if (this.mode === 'ws') this.frame({ type: 'typing', conv });
    else this.api.post('/v1/typing', { conv }).catch(() => {});
  }

  /** The WebSocket watch list; false in poll mode (the client pulls presence). */
  watch(users) {
    if (this.mode !== 'ws') return false;
    return this.frame({ type: 'watch', users });
  }
}
