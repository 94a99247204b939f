// Notifications, on only when the person turns them on with the button
// (the browser's permission is asked on that click, never on load):
//  - a browser notification for a message from someone else that comes
//    while the tab is hidden (document.hidden);
//  - Web Push, when the server has it (GET /v1/push/webpush-key answers its
//    VAPID public key; not_found: it has none, and only the first kind is
//    offered): the browser subscribes with that key (userVisibleOnly) and
//    the subscription is registered with POST /v1/push/tokens, so the
//    platform pushes through the browser's push service when the person has
//    no connection. The service worker (sw.js) shows both kinds.
// Turning them off, or signing out, unsubscribes and removes the
// registration (DELETE /v1/push/tokens/{id}).

import { ApiError, seg } from './api.js';
import { userSetting, setUserSetting } from './store.js';

const SW_URL = '/sw.js';
// A message older than this (a catch-up after the computer slept) is not
// announced: a Web Push covered it if it was due.
const MAX_AGE = 5 * 60 * 1000;
const PREVIEW = 140; // characters of the text in a notification
const SUBSCRIBE_WAIT = 20000; // ms for the browser's push service to answer a subscribe

function b64urlBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export class Notifier {
  /**
   * api: the signed-in Api; user: the person; onChange(): the state shown
   * changed; onOpen(conv): a notification was clicked.
   */
  constructor({ api, user, onChange, onOpen }) {
    this.api = api;
    this.user = user;
    this.onChange = onChange;
    this.onOpen = onOpen;
    this.key = null; // the server's VAPID public key (base64url); '' when it has no Web Push
    this.busy = false;
    this.error = '';
    this.onMessage = (e) => {
      if (e.data && e.data.type === 'open' && typeof e.data.conv === 'string') this.onOpen(e.data.conv);
    };
  }

  get supported() { return typeof Notification !== 'undefined'; }

  get pushSupported() {
    return 'serviceWorker' in navigator && typeof PushManager !== 'undefined' && window.isSecureContext;
  }

  /** Whether the person turned notifications on (in this browser). */
  get wanted() { return !!userSetting(this.user, 'notify', false); }

  /** 'unsupported' | 'blocked' | 'on' | 'off' */
  get state() {
    if (!this.supported) return 'unsupported';
    if (Notification.permission === 'denied') return 'blocked';
    return this.wanted && Notification.permission === 'granted' ? 'on' : 'off';
  }

  /** 'on' (registered) | 'off' | 'none' (the server or the browser has no Web Push) */
  get push() {
    if (!this.pushSupported || this.key === '') return 'none';
    return userSetting(this.user, 'pushId', '') ? 'on' : 'off';
  }

  async start() {
    if ('serviceWorker' in navigator) navigator.serviceWorker.addEventListener('message', this.onMessage);
    if (this.pushSupported) await this.fetchKey();
    if (this.state === 'on') {
      // Keep what was turned on in place: the worker, and the subscription
      // (the browser may have renewed it, the server may have a new key).
      try {
        await this.worker();
        if (this.key) await this.subscribe();
      } catch (e) {
        this.error = e.message || String(e);
      }
    }
    this.onChange();
  }

  stop() {
    if ('serviceWorker' in navigator) navigator.serviceWorker.removeEventListener('message', this.onMessage);
  }

  async fetchKey() {
    try {
      const r = await this.api.get('/v1/push/webpush-key');
      this.key = r && typeof r.key === 'string' && r.key ? r.key : '';
    } catch (e) {
      // not_found: no Web Push on this server. Anything else: unknown for now.
      this.key = e instanceof ApiError && e.code === 'not_found' ? '' : null;
    }
  }

  /** The button: on asks the permission (this click) and subscribes; off undoes it. */
  async toggle() {
    if (this.busy || !this.supported) return;
    this.busy = true;
    this.error = '';
    this.onChange();
    try {
      if (this.state === 'on') {
        setUserSetting(this.user, 'notify', false);
        await this.unsubscribe();
      } else {
        const p = await Notification.requestPermission();
        if (p !== 'granted') {
          this.error = p === 'denied' ? 'Notifications are blocked in the browser’s settings.' : '';
          return;
        }
        setUserSetting(this.user, 'notify', true);
        await this.worker();
        if (this.key === null && this.pushSupported) await this.fetchKey();
        if (this.key) await this.subscribe();
      }
    } catch (e) {
      this.error = e.message || String(e);
    } finally {
      this.busy = false;
      this.onChange();
    }
  }

  /** The service worker's registration, registered if need be. */
  async worker() {
    if (!('serviceWorker' in navigator)) return null;
    await navigator.serviceWorker.register(SW_URL, { scope: '/' });
    return navigator.serviceWorker.ready;
  }

  /** Subscribes with the server's key and registers the subscription (again: the server answers the same id). */
  async subscribe() {
    const reg = await this.worker();
    const key = b64urlBytes(this.key);
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameBytes(sub.options && sub.options.applicationServerKey, key)) {
      await sub.unsubscribe(); // made with another key: the server cannot push to it
      sub = null;
    }
    if (!sub) {
      // A browser without a reachable push service (e.g. a Chromium built
      // without Google's keys) may never answer: the bell must not spin forever.
      sub = await Promise.race([
        reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        new Promise((_, reject) => setTimeout(() => reject(new Error('the browser’s push service does not answer: notifications only while this page is open')), SUBSCRIBE_WAIT)),
      ]);
    }
    const j = sub.toJSON();
    const r = await this.api.post('/v1/push/tokens', {
      platform: 'webpush',
      subscription: { endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } },
    });
    const old = userSetting(this.user, 'pushId', '');
    if (old && old !== r.id) await this.unregister(old);
    setUserSetting(this.user, 'pushId', r.id);
  }

  /**
   * Removes the registration and the browser's subscription, each even when
   * the other fails: a subscription left registered on the server alone is
   * one the push service calls gone, and the notifier then removes it.
   */
  async unsubscribe() {
    let err = null;
    const id = userSetting(this.user, 'pushId', '');
    if (id) {
      try {
        await this.unregister(id);
      } catch (e) {
        err = e;
      }
    }
    if (this.pushSupported) {
      const reg = await navigator.serviceWorker.getRegistration('/');
      const sub = reg && (await reg.pushManager.getSubscription());
      if (sub) await sub.unsubscribe();
    }
    if (err) throw err;
  }

  async unregister(id) {
    try {
      await this.api.del('/v1/push/tokens/' + seg(id));
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== 'not_found') throw e;
    }
    setUserSetting(this.user, 'pushId', undefined);
  }

  /** Signing out: this browser gets no more pushes for the person. */
  async signOut() {
    this.stop();
    try {
      await this.unsubscribe();
    } catch {
      // The server is away: the registration stays until the push service
      // calls it gone or the user's cap evicts it.
    }
  }

  /**
   * A message event came: a notification when the tab is hidden, the person
   * turned them on, and someone else wrote it. title names the conversation.
   */
  async message(ev, title) {
    if (ev.kind !== 'text' || ev.from === this.user || !document.hidden || this.state !== 'on') return;
    if (ev.ts && Date.now() - ev.ts > MAX_AGE) return;
    const text = ev.text.length > PREVIEW ? ev.text.slice(0, PREVIEW - 1) + '…' : ev.text;
    const head = title && title !== ev.from ? `${ev.from} in ${title}` : ev.from;
    const opts = { body: text, tag: 'conv:' + ev.conv, renotify: true, data: { conv: ev.conv, seq: ev.seq } };
    try {
      const reg = 'serviceWorker' in navigator ? await navigator.serviceWorker.getRegistration('/') : null;
      if (reg) {
        await reg.showNotification(head, opts);
        return;
      }
      const n = new Notification(head, opts);
      n.onclick = () => {
        window.focus();
        this.onOpen(ev.conv);
        n.close();
      };
    } catch {
      // The browser refused (a phone without the worker): nothing to show.
    }
  }
}
