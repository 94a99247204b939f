// The service worker of the web client (scope /): it shows the
// notifications. A Web Push (RFC 8030; the platform pushes through the
// browser's push service when the person has no connection) wakes it with
// the notifier's payload, JSON:
//
//   {"title": "alice", "body": "3 new messages", "conv": "...", "from": "alice",
//    "seq": 42, "count": 3, "tag": "..."}
//
// (services/push.WebPushPayload). The body names who and where, not the text, unless the operator turned
// text on. The page also asks it to show the notification for a message
// that comes while the tab is hidden (notify.js), since phones allow
// notifications only from a service worker. A click focuses a tab of the
// client and opens the conversation, or opens a new tab on it.
//
// It handles no fetch: the page loads from the network as without it.

'use strict';

const TAG_PREFIX = 'conv:';

/** The notification for a push payload, tolerant of missing fields. */
function fromPayload(d) {
  const count = Number(d.count) || 1;
  const title = typeof d.title === 'string' && d.title ? d.title
    : typeof d.from === 'string' && d.from ? d.from : 'messenger';
  let body = typeof d.body === 'string' ? d.body : '';
  if (!body) body = count > 1 ? `${count} new messages` : 'New message';
  const conv = typeof d.conv === 'string' ? d.conv : '';
  return {
    title,
    options: {
      body,
      // One notification per conversation: a newer one replaces it.
      tag: typeof d.tag === 'string' && d.tag ? d.tag : conv ? TAG_PREFIX + conv : 'messenger',
      renotify: !!conv,
      data: { conv, seq: Number(d.seq) || 0 },
    },
  };
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('push', (e) => {
  let d = {};
  if (e.data) {
    try {
      d = e.data.json() || {};
    } catch {
      d = { body: e.data.text() };
    }
  }
  const n = fromPayload(d);
  // userVisibleOnly: every push shows a notification.
  e.waitUntil(self.registration.showNotification(n.title, n.options));
});

self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const conv = (e.notification.data && e.notification.data.conv) || '';
  e.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const tab = tabs.find((c) => new URL(c.url).origin === self.location.origin);
    if (tab) {
      if (conv) tab.postMessage({ type: 'open', conv });
      return tab.focus();
    }
    return self.clients.openWindow(conv ? '/#conv=' + encodeURIComponent(conv) : '/');
  })());
});

// A subscription the browser renews (pushsubscriptionchange) is registered
// by the page the next time it starts (notify.js): the worker holds no
// token to do it itself.
