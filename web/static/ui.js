// The page: renders the store and turns clicks and keys into client calls.
// User data is always put in the page as text (textContent, text nodes),
// never parsed as HTML.

import { h, clock, shortTime, hue, randomId, ID_RE, dayKey, dayLabel } from './util.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const MAX_TEXT = 4096;

const CONN_TEXT = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  polling: 'polling',
};

/** A small inline icon: the tick marks and the pending clock. */
function icon(name) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', name === 'double' ? '0 0 22 14' : '0 0 14 14');
  svg.setAttribute('class', 'icon icon-' + name);
  svg.setAttribute('aria-hidden', 'true');
  const path = (d) => {
    const p = document.createElementNS(SVG, 'path');
    p.setAttribute('d', d);
    svg.appendChild(p);
  };
  if (name === 'clock') {
    const c = document.createElementNS(SVG, 'circle');
    c.setAttribute('cx', '7'); c.setAttribute('cy', '7'); c.setAttribute('r', '5.5');
    svg.appendChild(c);
    path('M7 3.8V7l2.2 1.6');
  } else if (name === 'check') {
    path('M2 7.5l3.2 3.2L12 3.8');
  } else if (name === 'bell' || name === 'bell-off') {
    path('M4 10.5V6.8a3 3 0 0 1 6 0v3.7l1 1.2H3z');
    path('M6 12.8a1.1 1.1 0 0 0 2 0');
    if (name === 'bell-off') path('M1.8 1.8l10.4 10.4');
  } else if (name === 'double') {
    path('M2 7.5l3.2 3.2L12 3.8');
    path('M9.5 10.2l0.5 0.5L16.8 3.8');
  }
  return svg;
}

const TICK_LABEL = {
  pending: 'sending',
  sent: 'sent',
  delivered: 'delivered',
  read: 'read',
  failed: 'not sent',
};

function ticks(status) {
  const el = h('span', { className: 'ticks', title: TICK_LABEL[status], attrs: { 'aria-label': TICK_LABEL[status] } });
  if (status === 'pending') el.appendChild(icon('clock'));
  else if (status === 'sent') el.appendChild(icon('check'));
  else if (status === 'delivered' || status === 'read') el.appendChild(icon('double'));
  else if (status === 'failed') el.textContent = '!';
  return el;
}

function avatar(el, name, isGroup) {
  el.textContent = '';
  el.appendChild(document.createTextNode(isGroup ? '#' : (name || '?').slice(0, 1).toUpperCase()));
  el.style.setProperty('--hue', hue(name || '?'));
  el.classList.toggle('group', !!isGroup);
}

/**
 * items with a date separator ({day: true}) above the first item of each
 * local day; an item without a time (none known yet) goes with the one
 * before it.
 */
function withDays(items) {
  const now = new Date();
  const out = [];
  let last = null;
  for (const it of items) {
    const ts = it.system ? it.ts : it.m.ts;
    if (ts) {
      const k = dayKey(ts);
      if (k !== last) {
        const text = dayLabel(ts, now);
        out.push({ key: 'd' + k, sig: 'd' + text, day: true, text });
        last = k;
      }
    }
    out.push(it);
  }
  return out;
}

/** The key of the first message or line of the list (date separators skipped): the scroll anchor. */
function firstKey(list) {
  for (const el of list.children) if (!el.classList.contains('day')) return el.dataset.key;
  return null;
}

export class UI {
  constructor(client, { onSignOut, notifier }) {
    this.client = client;
    this.notifier = notifier;
    this.store = client.store;
    this.onSignOut = onSignOut;
    this.pending = null; // what changed since the last render
    this.shownConv = null;
    this.infoOpen = false;
    this.wire();
    this.unsubscribe = this.store.subscribe((what) => this.schedule(what));
    this.schedule({ all: true });
  }

  destroy() {
    this.unsubscribe();
    for (const [el, type, fn] of this.listeners) el.removeEventListener(type, fn);
  }

  on(el, type, fn) {
    el.addEventListener(type, fn);
    this.listeners.push([el, type, fn]);
  }

  schedule(what) {
    if (!this.pending) {
      this.pending = {};
      setTimeout(() => {
        const w = this.pending;
        this.pending = null;
        this.render(w);
      }, 0);
    }
    for (const [k, v] of Object.entries(what)) {
      if (k === 'scroll' || k === 'sent' || k === 'older' || k === 'all') this.pending[k] = this.pending[k] || v;
      else this.pending[k] = true;
    }
  }

  // ---- events from the person ----

  wire() {
    this.listeners = [];
    const c = this.client;
    this.on($('signout'), 'click', (e) => {
      e.preventDefault();
      this.onSignOut();
    });
    this.on($('new-chat'), 'submit', (e) => {
      e.preventDefault();
      const input = $('new-chat-user');
      const user = input.value.trim();
      if (!user) return;
      try {
        c.chatWith(user);
        input.value = '';
        $('new-chat-error').textContent = '';
        this.focusComposer();
      } catch (err) {
        $('new-chat-error').textContent = err.message;
      }
    });
    this.on($('new-group-form'), 'submit', (e) => this.createGroup(e));
    // The browser's permission is asked here, on the person's click only.
    this.on($('notify'), 'click', () => this.notifier.toggle());
    this.on($('conv-list'), 'click', (e) => {
      const li = e.target.closest('li[data-conv]');
      if (!li) return;
      this.infoOpen = false;
      c.openConversation(li.dataset.conv);
      this.focusComposer();
    });
    this.on($('back'), 'click', () => {
      this.infoOpen = false;
      c.closeConversation();
    });
    this.on($('composer'), 'submit', (e) => {
      e.preventDefault();
      this.sendComposer();
    });
    const input = $('composer-input');
    this.on(input, 'keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendComposer();
      }
    });
    this.on(input, 'input', () => {
      this.autoGrow();
      if (input.value) c.typing();
    });
    this.on($('messages'), 'scroll', () => this.maybeLoadOlder());
    this.on($('info-toggle'), 'click', () => {
      this.infoOpen = !this.infoOpen;
      $('info-error').textContent = '';
      const conv = this.client.openConv();
      if (this.infoOpen && conv) {
        $('rename-title').value = conv.title;
        c.fetchInfo(conv);
      }
      this.schedule({ info: true });
    });
    this.on($('info-close'), 'click', () => {
      this.infoOpen = false;
      this.schedule({ info: true });
    });
    this.on($('rename-form'), 'submit', (e) => {
      e.preventDefault();
      const conv = this.client.openConv();
      if (conv) this.groupOp(() => c.rename(conv.conv, $('rename-title').value.trim()));
    });
    this.on($('add-member-form'), 'submit', (e) => {
      e.preventDefault();
      const conv = this.client.openConv();
      const user = $('add-member-user').value.trim();
      if (!conv || !user) return;
      if (!ID_RE.test(user)) {
        $('info-error').textContent = 'a user id is 1-64 characters of A-Z a-z 0-9 _ -';
        return;
      }
      this.groupOp(() => c.addMember(conv.conv, user)).then((ok) => { if (ok) $('add-member-user').value = ''; });
    });
    this.on($('members'), 'click', (e) => {
      const b = e.target.closest('button[data-remove]');
      const conv = this.client.openConv();
      if (b && conv) this.groupOp(() => c.removeMember(conv.conv, b.dataset.remove));
    });
    this.on($('leave'), 'click', () => {
      const conv = this.client.openConv();
      if (conv) this.groupOp(() => c.removeMember(conv.conv, this.store.user)).then((ok) => { if (ok) this.infoOpen = false; });
    });
    this.on(window, 'resize', () => this.schedule({ msgs: true }));
  }

  async groupOp(fn) {
    $('info-error').textContent = '';
    try {
      await fn();
      return true;
    } catch (err) {
      $('info-error').textContent = err.message || String(err);
      return false;
    }
  }

  async createGroup(e) {
    e.preventDefault();
    const form = $('new-group-form');
    const err = $('new-group-error');
    err.textContent = '';
    const title = $('new-group-title').value.trim();
    const members = $('new-group-members').value.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = members.find((m) => !ID_RE.test(m));
    if (bad) {
      err.textContent = `“${bad}” is not a user id (1-64 characters of A-Z a-z 0-9 _ -)`;
      return;
    }
    // One id per group being made, so that a retry makes no second group.
    form.dataset.id = form.dataset.id || randomId();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      await this.client.createGroup(form.dataset.id, title, members);
      delete form.dataset.id;
      form.reset();
      $('new-group').open = false;
      this.focusComposer();
    } catch (x) {
      err.textContent = x.message || String(x);
    } finally {
      button.disabled = false;
    }
  }

  sendComposer() {
    const input = $('composer-input');
    const text = input.value.replace(/\s+$/, '');
    if (!text.trim()) return;
    if (new TextEncoder().encode(text).length > MAX_TEXT) {
      this.note(`A message is at most ${MAX_TEXT} bytes.`);
      return;
    }
    if (this.client.send(text)) {
      input.value = '';
      this.autoGrow();
      this.note('');
    }
  }

  note(text) {
    const n = $('composer-note');
    n.textContent = text;
    n.hidden = !text;
  }

  autoGrow() {
    const input = $('composer-input');
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight, 160) + 'px';
  }

  focusComposer() {
    if (window.innerWidth >= 768) setTimeout(() => $('composer-input').focus(), 0);
  }

  /** Infinite scroll: the page before, when scrolled up near the top. */
  maybeLoadOlder(fill = false) {
    const box = $('messages');
    const up = box.scrollTop < (this.lastScrollTop ?? Infinity);
    this.lastScrollTop = box.scrollTop;
    const c = this.client.openConv();
    if (!c || !c.loaded || !c.hasMore || c.loadingOlder) return;
    if ((up && box.scrollTop < 300) || (fill && box.scrollHeight <= box.clientHeight + 1)) this.client.loadOlder(c);
  }

  // ---- rendering ----

  title(c) {
    if (!c) return '';
    if (c.kind === 'direct') return c.peer(this.store.user) || c.members[0] || '';
    return c.title || c.members.join(', ') || 'group';
  }

  who(u) { return u === this.store.user ? 'you' : u; }

  systemText(m) {
    // "alice added bob"; "You added bob" when it is one's own doing.
    const actor = m.from === this.store.user ? 'You' : m.from;
    switch (m.kind) {
      case 'group_created': return `${actor} created the group “${m.title || ''}”`;
      case 'member_added': return `${actor} added ${this.who(m.user)}`;
      case 'member_removed':
        return m.from === m.user ? `${actor} left` : `${actor} removed ${this.who(m.user)}`;
      case 'title_changed': return `${actor} changed the title to “${m.title || ''}”`;
      default: return '';
    }
  }

  preview(c) {
    const typing = this.store.typingIn(c.conv);
    if (typing.length) return { text: typing.length === 1 && c.kind === 'direct' ? 'typing…' : `${typing.join(', ')} typing…`, typing: true };
    const m = c.last;
    if (!m) return { text: '' };
    if (m.kind === 'text') {
      const who = m.from === this.store.user ? 'You: ' : c.kind === 'group' ? m.from + ': ' : '';
      return { text: who + m.text };
    }
    return { text: this.systemText(m) || '' };
  }

  presenceOf(user) {
    return this.store.presence.get(user) || null;
  }

  render(what) {
    const s = this.store;
    $('me-name').textContent = s.user;
    avatar($('me-avatar'), s.user, false);
    const conn = $('conn');
    conn.textContent = CONN_TEXT[s.conn] || s.conn;
    conn.dataset.state = s.conn;
    this.renderNotify();
    const key = s.open;
    $('app').dataset.view = key ? 'chat' : 'list';
    this.renderList();
    const switched = key !== this.shownConv;
    this.shownConv = key;
    if (!key) {
      $('chat').hidden = true;
      $('placeholder').hidden = false;
      return;
    }
    $('chat').hidden = false;
    $('placeholder').hidden = true;
    const c = key.startsWith('to:') ? null : s.convs.get(key) || null;
    if (switched) {
      $('composer-input').value = '';
      this.note('');
      $('info-error').textContent = '';
      if (c) $('rename-title').value = c.title;
    }
    this.renderHeader(key, c);
    this.renderMessages(key, c, { ...what, scroll: switched ? 'bottom' : what.scroll });
    this.renderTyping(c);
    this.renderInfo(c);
    const left = !!(c && c.left);
    $('composer-input').disabled = left;
    $('send').disabled = left;
    if (left) this.note('You are not a member of this group any more.');
    else if ($('composer-note').textContent.startsWith('You are not a member')) this.note('');
  }

  /** The notifications button: a bell, crossed out when off. */
  renderNotify() {
    const n = this.notifier;
    const b = $('notify');
    const state = n.state;
    b.hidden = state === 'unsupported';
    b.disabled = n.busy || state === 'blocked';
    b.dataset.state = state;
    b.dataset.push = n.push;
    const label = state === 'on'
      ? (n.push === 'on' ? 'Notifications on, also when this page is closed: turn off' : 'Notifications on while this page is open: turn off')
      : state === 'blocked' ? 'Notifications are blocked in the browser’s settings' : 'Turn notifications on';
    b.title = label;
    b.setAttribute('aria-label', label);
    b.setAttribute('aria-pressed', String(state === 'on'));
    if (b.dataset.icon !== state) {
      b.dataset.icon = state;
      b.replaceChildren(icon(state === 'on' ? 'bell' : 'bell-off'));
    }
    $('notify-error').textContent = n.error;
  }

  renderList() {
    const s = this.store;
    const list = $('conv-list');
    const items = [];
    if (s.open && s.open.startsWith('to:')) {
      const peer = s.open.slice(3);
      const av = h('span', { className: 'avatar' });
      avatar(av, peer, false);
      items.push(h('li', { className: 'conv active', dataset: { conv: s.open }, attrs: { 'aria-current': 'true' } },
        av,
        h('div', { className: 'conv-main' },
          h('div', { className: 'conv-top' }, h('span', { className: 'conv-name' }, peer)),
          h('div', { className: 'conv-bottom' }, h('span', { className: 'conv-preview muted' }, 'new chat')))));
    }
    for (const c of s.sortedConvs()) {
      const name = this.title(c);
      const av = h('span', { className: 'avatar' });
      avatar(av, name, c.kind === 'group');
      const peer = c.peer(s.user);
      if (peer) {
        const p = this.presenceOf(peer);
        av.appendChild(h('span', { className: 'dot', dataset: { status: p ? p.status : 'unknown' }, title: p ? p.status : '' }));
      }
      const pv = this.preview(c);
      const active = s.open === c.conv;
      items.push(h('li', {
        className: 'conv' + (active ? ' active' : '') + (c.unread ? ' unread' : ''),
        dataset: { conv: c.conv, kind: c.kind, unread: String(c.unread) },
        attrs: active ? { 'aria-current': 'true' } : undefined,
      },
      av,
      h('div', { className: 'conv-main' },
        h('div', { className: 'conv-top' },
          h('span', { className: 'conv-name' }, name),
          h('time', { className: 'conv-time muted' }, shortTime(c.last && c.last.ts))),
        h('div', { className: 'conv-bottom' },
          h('span', { className: 'conv-preview' + (pv.typing ? ' typing-text' : ' muted') }, pv.text),
          c.unread ? h('span', { className: 'badge', attrs: { 'aria-label': c.unread + ' unread' } }, String(c.unread)) : null))));
    }
    list.replaceChildren(...items);
    $('conv-empty').hidden = items.length > 0;
  }

  renderHeader(key, c) {
    const s = this.store;
    const name = c ? this.title(c) : key.slice(3);
    $('chat-name').textContent = name;
    const av = $('chat-avatar');
    avatar(av, name, c && c.kind === 'group');
    let sub = '';
    const peer = c ? c.peer(s.user) : key.slice(3);
    if (c && c.kind === 'group') {
      sub = c.left ? 'you are not a member' : `${c.members.length} members`;
    } else if (peer) {
      const p = this.presenceOf(peer);
      if (p && p.status === 'online') sub = 'online';
      else if (p && p.last_seen) sub = 'last seen ' + shortTime(p.last_seen);
      else if (!c) sub = 'new chat: your first message starts it';
      if (p) av.appendChild(h('span', { className: 'dot', dataset: { status: p.status } }));
    }
    $('chat-sub').textContent = sub;
    $('info-toggle').hidden = !(c && c.kind === 'group');
  }

  renderTyping(c) {
    const el = $('typing');
    const users = c ? this.store.typingIn(c.conv) : [];
    el.textContent = users.length === 0 ? ''
      : users.length === 1 ? `${users[0]} is typing…`
        : `${users.slice(0, -1).join(', ')} and ${users[users.length - 1]} are typing…`;
  }

  /** The items of the message list, oldest first. */
  messageItems(key, c) {
    const s = this.store;
    const me = s.user;
    const out = [];
    if (c) {
      const msgs = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
      let prevFrom = null;
      for (const m of msgs) {
        if (m.kind !== 'text') {
          const text = this.systemText(m);
          if (text) out.push({ key: 's' + m.seq, sig: 's' + text, system: true, seq: m.seq, ts: m.ts, text });
          prevFrom = null;
          continue;
        }
        const mine = m.from === me;
        const status = mine ? c.tick(m.seq, me) : '';
        const showFrom = !mine && c.kind === 'group' && prevFrom !== m.from;
        prevFrom = m.from;
        out.push({ key: 'm' + m.seq, sig: `${status}|${showFrom}|${m.seq}`, m, mine, status, showFrom });
      }
    }
    for (const e of s.pendingFor(key)) {
      out.push({ key: 'p' + e.id, sig: 'pending', m: { id: e.id, text: e.text, ts: e.created, from: me }, mine: true, status: 'pending' });
    }
    for (const e of s.failedFor(key)) {
      out.push({ key: 'f' + e.id, sig: 'failed', m: { id: e.id, text: e.text, ts: e.created, from: me }, mine: true, status: 'failed', error: e.error });
    }
    return withDays(out);
  }

  buildItem(it) {
    if (it.day) {
      return h('li', { className: 'day', dataset: { key: it.key }, attrs: { role: 'separator' } }, h('span', null, it.text));
    }
    if (it.system) {
      return h('li', { className: 'system', dataset: { key: it.key, seq: String(it.seq) } }, h('span', null, it.text));
    }
    const m = it.m;
    const data = { key: it.key, id: m.id || '' };
    if (m.seq) data.seq = String(m.seq);
    if (it.status) data.status = it.status;
    const meta = h('span', { className: 'meta' },
      h('time', { title: m.ts ? new Date(m.ts).toLocaleString() : '' }, clock(m.ts)),
      it.mine ? ticks(it.status) : null);
    const li = h('li', { className: 'msg ' + (it.mine ? 'mine' : 'theirs') + (it.status ? ' ' + it.status : ''), dataset: data },
      h('div', { className: 'bubble' },
        it.showFrom ? h('div', { className: 'from', attrs: { style: `--hue:${hue(m.from)}` } }, m.from) : null,
        h('span', { className: 'text' }, m.text),
        meta),
      it.error ? h('div', { className: 'failed-note' }, `Not sent: ${it.error} `,
        h('button', { type: 'button', className: 'link', onclick: () => this.client.dismissFailed(m.id) }, 'dismiss')) : null);
    return li;
  }

  renderMessages(key, c, what) {
    const box = $('messages');
    const list = $('msg-list');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const prevHeight = box.scrollHeight;
    const prevTop = box.scrollTop;
    const prevFirst = firstKey(list);

    const items = this.messageItems(key, c);
    const existing = new Map();
    for (const el of list.children) existing.set(el.dataset.key, el);
    const wanted = new Set(items.map((it) => it.key));
    for (const [k, el] of existing) if (!wanted.has(k)) el.remove();
    let at = list.firstElementChild;
    for (const it of items) {
      let el = existing.get(it.key);
      if (el && el._sig !== it.sig) {
        const fresh = this.buildItem(it);
        el.replaceWith(fresh);
        if (at === el) at = fresh;
        el = fresh;
      } else if (!el) {
        el = this.buildItem(it);
      }
      el._sig = it.sig;
      if (el !== at) list.insertBefore(el, at);
      else at = at.nextElementSibling;
    }

    const status = $('history-status');
    if (!c) status.textContent = '';
    else if (c.left && c.msgs.size === 0) status.textContent = 'You cannot see this conversation any more.';
    else if (!c.loaded) status.textContent = c.loadError ? 'Cannot load the messages: ' + c.loadError : 'Loading…';
    else if (c.loadingOlder) status.textContent = 'Loading older messages…';
    else if (c.hasMore) status.textContent = '';
    else status.textContent = c.msgs.size ? 'The beginning of the conversation' : 'No messages yet';
    status.dataset.state = !c ? 'new' : c.loadingOlder ? 'loading' : c.hasMore ? 'more' : c.loaded ? 'start' : 'loading';

    const first = firstKey(list);
    const topBefore = box.scrollTop;
    if (what.scroll === 'bottom' || what.sent) {
      box.scrollTop = box.scrollHeight;
    } else if (prevFirst && first !== prevFirst && existing.has(prevFirst) && wanted.has(prevFirst)) {
      // Older messages went on top: keep what was on the screen in place.
      box.scrollTop = prevTop + (box.scrollHeight - prevHeight);
    } else if (atBottom) {
      box.scrollTop = box.scrollHeight;
    }
    // Only a move made here is not the reader's: a render between the
    // reader's scroll and its event must not hide that it went up.
    if (box.scrollTop !== topBefore) this.lastScrollTop = box.scrollTop;
    // A first page that does not fill the screen: load more at once.
    if (c && c.loaded && c.hasMore && !c.loadingOlder && box.scrollHeight <= box.clientHeight + 1) {
      setTimeout(() => this.maybeLoadOlder(true), 0);
    }
  }

  renderInfo(c) {
    const panel = $('info');
    const show = this.infoOpen && c && c.kind === 'group';
    panel.hidden = !show;
    if (!show) return;
    const me = this.store.user;
    const admin = c.roles.get(me) === 'admin' && !c.left;
    for (const f of panel.querySelectorAll('.admin-only')) f.hidden = !admin;
    $('leave').hidden = c.left;
    $('members-head').textContent = `Members (${c.members.length})`;
    const items = c.members.map((u) => {
      const role = c.roles.get(u) || 'member';
      const av = h('span', { className: 'avatar small' });
      avatar(av, u, false);
      return h('li', { dataset: { user: u, role } },
        av,
        h('span', { className: 'member-name' }, u === me ? `${u} (you)` : u),
        h('span', { className: 'role role-' + role }, role),
        admin && u !== me ? h('button', { type: 'button', className: 'link danger', dataset: { remove: u } }, 'Remove') : null);
    });
    $('members').replaceChildren(...items);
  }
}
