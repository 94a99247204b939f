package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// notifyHooks, run in the page before its scripts: the tab's visibility
// under the test's control (a headless tab is always visible), and a record
// of the permission requests and of the notifications shown (each is
// still shown: the record only adds to it).
const notifyHooks = `
window.__hidden = false;
Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get() { return window.__hidden; } });
Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get() { return window.__hidden ? 'hidden' : 'visible'; } });
window.__asked = 0;
if (window.Notification) {
	const ask = Notification.requestPermission.bind(Notification);
	Notification.requestPermission = (...a) => { window.__asked++; return ask(...a); };
}
window.__shown = [];
if (window.ServiceWorkerRegistration) {
	const show = ServiceWorkerRegistration.prototype.showNotification;
	ServiceWorkerRegistration.prototype.showNotification = function (title, opts) {
		window.__shown.push({ title, body: (opts && opts.body) || '', tag: (opts && opts.tag) || '' });
		return show.call(this, title, opts);
	};
}
`

// withNotifyHooks installs notifyHooks in pg for the documents it loads next.
func (pg *page) withNotifyHooks() {
	pg.t.Helper()
	pg.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: notifyHooks})
		return chromedp.Void{}, err
	})
}

// allow sets the browser's answer to the permission names (notifications,
// push) for origin: what the person would click in the browser's prompt.
func (pg *page) allow(origin string, names ...string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, waitTimeout)
	defer cancel()
	for _, name := range names {
		_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name, UserVisibleOnly: name == "push"},
			Setting:    browser.PermissionSettingGranted,
			Origin:     origin,
		})
		if err != nil {
			pg.fatalf("allow %s: %v", name, err)
		}
	}
}

// setHidden hides or shows the tab, as switching tabs would.
func (pg *page) setHidden(hidden bool) {
	pg.t.Helper()
	v := "false"
	if hidden {
		v = "true"
	}
	pg.do(chromedp.Evaluate[chromedp.Void](`window.__hidden = ` + v + `; document.dispatchEvent(new Event('visibilitychange'))`))
}

// waitForAsync is waitFor for an expression that gives a promise: it waits
// until the promise resolves to a truthy value.
func (pg *page) waitForAsync(what, expr string) {
	pg.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`Promise.resolve(`+expr+`).then((v) => !!v)`, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			pg.fatalf("waited %v for %s (%s); last error: %v", waitTimeout, what, expr, lastErr)
		}
		<-tick.C
	}
}

// shown is the bodies of the notifications the page showed.
func (pg *page) shown() []string {
	pg.t.Helper()
	return eval[[]string](pg, `window.__shown.map((n) => n.title + ': ' + n.body)`)
}

// TestNotificationWhileHidden (issue 15): a message from someone else that
// comes while the tab is hidden shows a browser notification, once the
// person turned them on with the bell (the browser's permission asked on
// that click, never on load); none while the tab is visible, none for the
// person's own message from another device, none once turned off.
func TestNotificationWhileHidden(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(0)
	alice := newPage(t, "alice", 1280, 800)
	alice.withNotifyHooks()
	alice.allow(base, "notifications")
	alice.signIn(base, "", p.Token("alice"))
	alice.waitFor("the bell, off", `document.getElementById('notify').dataset.state === 'off' && !document.getElementById('notify').hidden`)
	apiSend(t, p, "bob", map[string]any{"id": "b0", "to": "alice", "text": "before you turned them on"})
	alice.waitFor("bob's chat in the list", `document.querySelector('#conv-list li .conv-name')?.textContent === 'bob'`)
	if n := eval[int](alice, `window.__asked`); n != 0 {
		t.Fatalf("the page asked for the permission %d times before the click", n)
	}

	alice.click("#notify")
	alice.waitFor("the bell on", `document.getElementById('notify').dataset.state === 'on'`)
	if n := eval[int](alice, `window.__asked`); n != 1 {
		t.Fatalf("the permission asked %d times for one click", n)
	}
	// No Web Push on this server (no key): notifications while the page is open.
	alice.waitFor("no Web Push offered", `document.getElementById('notify').dataset.push === 'none'`)

	// Visible: the message shows in the list, no notification.
	apiSend(t, p, "bob", map[string]any{"id": "b1", "to": "alice", "text": "while you look"})
	alice.waitFor("the message in the list", `document.querySelector('#conv-list li .conv-preview')?.textContent === 'while you look'`)

	// Hidden: own message from another device, then bob's.
	alice.setHidden(true)
	apiSend(t, p, "alice", map[string]any{"id": "a1", "to": "bob", "text": "from my phone"})
	alice.waitFor("the own message in the list", `document.querySelector('#conv-list li .conv-preview')?.textContent === 'You: from my phone'`)
	apiSend(t, p, "bob", map[string]any{"id": "b2", "to": "alice", "text": "while you are away"})
	alice.waitFor("a notification", `window.__shown.length > 0`)
	if got := alice.shown(); strings.Join(got, "|") != "bob: while you are away" {
		t.Fatalf("notifications shown: %q, want only bob's message while hidden", got)
	}
	// The browser has it (shown by the service worker, tagged by conversation).
	conv := alice.waitConv("bob")
	alice.waitForAsync("the notification in the browser", `navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.some((n) => n.tag === 'conv:`+conv+`' && n.body === 'while you are away'))`)

	// Turned off: nothing more, hidden or not.
	alice.setHidden(false)
	alice.click("#notify")
	alice.waitFor("the bell off", `document.getElementById('notify').dataset.state === 'off'`)
	alice.setHidden(true)
	apiSend(t, p, "bob", map[string]any{"id": "b3", "to": "alice", "text": "after you turned them off"})
	alice.waitFor("the message in the list", `document.querySelector('#conv-list li .conv-preview')?.textContent === 'after you turned them off'`)
	if got := alice.shown(); len(got) != 1 {
		t.Fatalf("notifications shown: %q, want none after turning off", got)
	}
}
