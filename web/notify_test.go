package web_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"messenger/edge"
	"messenger/infra/platformtest"
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

// pushServiceHooks stands in for the browser's push service, which a
// headless Chromium has not (its subscribe never answers): subscribe
// records its options and answers a subscription to an FCM endpoint with
// the keys of window.__pushKeys; getSubscription and unsubscribe keep it.
// Everything after (the registration with the platform, the push delivered
// to the service worker) is the browser's and the platform's own.
const pushServiceHooks = `
window.__subscribed = [];
(() => {
	let current = null;
	const fake = (opts) => {
		const key = new Uint8Array(opts.applicationServerKey).buffer;
		const s = {
			endpoint: 'https://fcm.googleapis.com/fcm/send/test-' + Math.random().toString(36).slice(2),
			expirationTime: null,
			options: { userVisibleOnly: opts.userVisibleOnly, applicationServerKey: key },
			toJSON() { return { endpoint: this.endpoint, expirationTime: null, keys: window.__pushKeys }; },
			unsubscribe() { if (current === s) current = null; return Promise.resolve(true); },
		};
		return s;
	};
	PushManager.prototype.subscribe = function (opts) {
		window.__subscribed.push({ userVisibleOnly: opts.userVisibleOnly });
		current = fake(opts);
		return Promise.resolve(current);
	};
	PushManager.prototype.getSubscription = function () { return Promise.resolve(current); };
})();
`

// withNotifyHooks installs notifyHooks in pg for the documents it loads next.
func (pg *page) withNotifyHooks() {
	pg.t.Helper()
	pg.addScript(notifyHooks)
}

// addScript runs source in each document pg loads next, before its scripts.
func (pg *page) addScript(source string) {
	pg.t.Helper()
	pg.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: source})
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

	// A notification clicked with no tab of the client open opens one at
	// /#conv=<id> (sw.js): that conversation, open.
	alice.do(chromedp.Navigate("about:blank"))
	alice.do(chromedp.Navigate(base + "/#conv=" + conv))
	alice.waitFor("bob's chat open", `document.getElementById('chat-name').textContent === 'bob' && location.hash === ''`)
	alice.waitFor("the bell on after the reload", `document.getElementById('notify').dataset.state === 'on'`)

	// Turned off: nothing more, hidden or not.
	alice.setHidden(false)
	alice.click("#notify")
	alice.waitFor("the bell off", `document.getElementById('notify').dataset.state === 'off'`)
	alice.setHidden(true)
	apiSend(t, p, "bob", map[string]any{"id": "b3", "to": "alice", "text": "after you turned them off"})
	alice.waitFor("the message in the list", `document.querySelector('#conv-list li .conv-preview')?.textContent === 'after you turned them off'`)
	if got := alice.shown(); len(got) != 0 { // counted since the reload
		t.Fatalf("notifications shown: %q, want none after turning off", got)
	}
}

// swRegistration is the id of the page's service worker registration of
// scope, as DevTools knows it (for ServiceWorker.deliverPushMessage).
func (pg *page) swRegistration(scope string) serviceworker.RegistrationID {
	pg.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
		found := make(chan serviceworker.RegistrationID, 1)
		go func() {
			for ev, err := range chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated) {
				if err != nil {
					return
				}
				for _, r := range ev.Registrations {
					if r.ScopeURL == scope && !r.IsDeleted {
						found <- r.RegistrationID
						return
					}
				}
			}
		}()
		// Enabling the domain reports the registrations there are; again
		// after a disable, in case the listener was not listening yet.
		if attempt > 0 {
			chromedp.Call(ctx, serviceworker.Disable, cdp.Empty{})
		}
		_, err := chromedp.Call(ctx, serviceworker.Enable, cdp.Empty{})
		select {
		case id := <-found:
			cancel()
			return id
		case <-ctx.Done():
		}
		cancel()
		if time.Now().After(deadline) {
			pg.fatalf("no service worker registration of scope %s (last enable: %v)", scope, err)
		}
	}
}

// deliverPush delivers a push message with payload to the service worker
// registration reg (as the browser does with what its push service
// brings) and waits until the promise expression shown is truthy. A
// message DevTools delivers while the worker is still starting may be
// lost: after a few seconds without it shown, it is delivered again (a
// push of the same conversation replaces its notification).
func (pg *page) deliverPush(origin string, reg serviceworker.RegistrationID, payload, shown string) {
	pg.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		pg.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{Origin: origin, RegistrationID: reg, Data: payload})
			return chromedp.Void{}, err
		})
		for again := time.Now().Add(5 * time.Second); time.Now().Before(again); {
			if eval[bool](pg, `Promise.resolve(`+shown+`).then((v) => !!v)`, chromedp.EvalAwaitPromise) {
				return
			}
			time.Sleep(100 * time.Millisecond) // polling the page, as waitFor does
		}
		if time.Now().After(deadline) {
			pg.fatalf("waited %v for the push %s to show (%s)", waitTimeout, payload, shown)
		}
		pg.t.Logf("%s: the push %s not shown after 5 s: delivering it again", pg.name, payload)
	}
}

// vapidPublicKey is a fresh P-256 public key as a server's VAPID key is
// given to browsers: the uncompressed point, base64url.
func vapidPublicKey(t *testing.T) string {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes())
}

// pushTokens lists user's push registrations (GET /v1/push/tokens) as
// "id platform endpoint_host".
func pushTokens(t *testing.T, p *platformtest.Platform, user string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.HTTP(0)+"/v1/push/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+p.Token(user))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ans struct {
		Tokens []struct {
			ID           string `json:"id"`
			Platform     string `json:"platform"`
			EndpointHost string `json:"endpoint_host"`
		} `json:"tokens"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/push/tokens: %d %v", res.StatusCode, err)
	}
	out := []string{}
	for _, tk := range ans.Tokens {
		out = append(out, tk.ID+" "+tk.Platform+" "+tk.EndpointHost)
	}
	return out
}

// TestWebPushOptIn (issue 14): on a server with Web Push, the bell asks the
// permission on the click, subscribes with the server's VAPID key
// (userVisibleOnly) and registers the subscription; a push delivered to the
// service worker shows the payload's notification, one per conversation;
// the bell turned off unsubscribes and removes the registration.
func TestWebPushOptIn(t *testing.T) {
	needBrowser(t)
	key := vapidPublicKey(t)
	p := platformtest.Start(t, platformtest.Options{Edges: 1, Edge: edge.Config{WebPushKey: key}})
	base := p.HTTP(0)
	alice := newPage(t, "alice", 1280, 800)
	alice.withNotifyHooks()
	clientKey, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := json.Marshal(map[string]string{
		"p256dh": base64.RawURLEncoding.EncodeToString(clientKey.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(make([]byte, 16)),
	})
	alice.addScript(`window.__pushKeys = ` + string(keys) + `;` + pushServiceHooks)
	alice.allow(base, "notifications", "push")
	alice.signIn(base, "", p.Token("alice"))
	alice.waitFor("the bell, off, with Web Push offered", `document.getElementById('notify').dataset.state === 'off' && document.getElementById('notify').dataset.push === 'off'`)
	if n := eval[int](alice, `window.__asked`); n != 0 {
		t.Fatalf("the page asked for the permission %d times before the click", n)
	}
	if regs := pushTokens(t, p, "alice"); len(regs) != 0 {
		t.Fatalf("registrations before the click: %q", regs)
	}

	alice.click("#notify")
	alice.waitFor("the bell on, subscribed", `document.getElementById('notify').dataset.state === 'on' && document.getElementById('notify').dataset.push === 'on'`)
	// Subscribed with the server's key, visible only, and registered under the id the page keeps.
	sub := eval[struct {
		Key      string `json:"key"`
		Endpoint string `json:"endpoint"`
	}](alice, `navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription()).then((s) => ({
		key: btoa(String.fromCharCode(...new Uint8Array(s.options.applicationServerKey))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''),
		endpoint: s.endpoint,
	}))`, chromedp.EvalAwaitPromise)
	if sub.Key != key {
		t.Fatalf("subscribed with key %q, the server's is %q", sub.Key, key)
	}
	if s := eval[string](alice, `JSON.stringify(window.__subscribed)`); s != `[{"userVisibleOnly":true}]` {
		t.Fatalf("subscribe calls %s, want one with userVisibleOnly", s)
	}
	id := eval[string](alice, `JSON.parse(localStorage.getItem('messenger.user.alice')).pushId`)
	u, err := url.Parse(sub.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if regs := pushTokens(t, p, "alice"); strings.Join(regs, "|") != id+" webpush "+u.Host {
		t.Fatalf("registrations %q, want the one of id %s to %s", regs, id, u.Host)
	}

	// A push as the notifier sends it (services/push.WebPushPayload), to
	// the worker: its notification, by conversation.
	reg := alice.swRegistration(base + "/")
	for i, body := range []string{"1 new message", "2 new messages"} {
		payload := fmt.Sprintf(`{"title":"bob","body":%q,"conv":"c-bob","from":"bob","seq":%d,"count":%d}`, body, i+1, i+1)
		alice.deliverPush(base, reg, payload, `navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.some((n) => n.title === 'bob' && n.body === `+js(body)+` && n.tag === 'conv:c-bob' && n.data.conv === 'c-bob'))`)
	}
	if n := eval[int](alice, `navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.length)`, chromedp.EvalAwaitPromise); n != 1 {
		t.Fatalf("%d notifications for two pushes of one conversation, want 1 (the newer replaces the older)", n)
	}

	alice.click("#notify")
	alice.waitFor("the bell off", `document.getElementById('notify').dataset.state === 'off' && document.getElementById('notify').dataset.push === 'off'`)
	if regs := pushTokens(t, p, "alice"); len(regs) != 0 {
		t.Fatalf("registrations after turning off: %q", regs)
	}
	if has := eval[bool](alice, `navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription()).then((s) => !!s)`, chromedp.EvalAwaitPromise); has {
		t.Fatal("still subscribed after turning off")
	}

	// On again, then signing out: this browser gets no more pushes for alice.
	alice.click("#notify")
	alice.waitFor("the bell on, subscribed", `document.getElementById('notify').dataset.state === 'on' && document.getElementById('notify').dataset.push === 'on'`)
	if regs := pushTokens(t, p, "alice"); len(regs) != 1 {
		t.Fatalf("registrations after turning on again: %q", regs)
	}
	alice.click("#signout")
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden`)
	platformtest.Eventually(t, waitTimeout, func() error {
		if regs := pushTokens(t, p, "alice"); len(regs) != 0 {
			return fmt.Errorf("registrations after signing out: %q", regs)
		}
		return nil
	})
}
