// Small helpers shared by the modules of the web client.

/** A user id, device id or client id: PROTOCOL.md section 1. */
export const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** A random id of n characters of [A-Za-z0-9_-]. */
export function randomId(n = 20) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = '';
  for (const b of bytes) s += ALPHABET[b & 63];
  return s;
}

/**
 * h builds an element. props: className, dataset, text, attrs (set as
 * attributes), on* handlers, any other key is set as a property. Children
 * are nodes or strings (always added as text, never parsed as HTML).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'className') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'attrs') for (const [a, av] of Object.entries(v)) el.setAttribute(a, av);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el[k] = v;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** "14:05" for today, "Mon 14:05" this week, else "12 Mar". */
export function shortTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return hm;
  if (now - d < 6 * 864e5) return d.toLocaleDateString([], { weekday: 'short' }) + ' ' + hm;
  return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

/** The local calendar day of ts, as "2026-12-05": messages of one day share it. */
export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/**
 * The separator above the messages of ts's day, in the person's locale:
 * "Today", "Yesterday" (Intl.RelativeTimeFormat's words, capitalised), else
 * the date with its weekday ("Wednesday, December 3"), the year added when
 * it is not this year's.
 */
export function dayLabel(ts, now = new Date()) {
  const d = new Date(ts);
  const midnight = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  // Rounded: a day with a daylight-saving change is 23 or 25 hours long.
  const days = Math.round((midnight(now) - midnight(d)) / 864e5);
  if (days === 0 || days === 1) {
    const word = new Intl.RelativeTimeFormat([], { numeric: 'auto' }).format(-days, 'day');
    return word.charAt(0).toLocaleUpperCase() + word.slice(1);
  }
  const opts = { weekday: 'long', day: 'numeric', month: 'long' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

export function clock(ts) {
  return ts ? new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

/** The claims of a JWT, read without checking it (the server checks). */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A stable hue for a name, for avatars. */
export function hue(name) {
  let x = 0;
  for (const ch of name) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}
