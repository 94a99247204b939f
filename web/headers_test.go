package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"messenger/edge"
	"messenger/web"
)

// TestSecurityHeaders stops the framing and sniffing attacks of issue 12:
// the web client was served with no security headers (any site could frame
// it and overlay its buttons, a script injected anywhere could load code
// from anywhere). Every file now carries a CSP, a frame ban, nosniff and a
// referrer policy.
func TestSecurityHeaders(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	want := map[string]string{
		"Content-Security-Policy": web.ContentSecurityPolicy,
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}
	for _, path := range []string{"/", "/index.html", "/app.js", "/sw.js", "/style.css", "/nope"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// TestServiceWorkerServed: the service worker (notifications, Web Push) is
// served at the root, so that its scope is the whole client, as JavaScript
// (a browser refuses to register a worker of another type), under the same
// CSP, whose script-src 'self' is what allows registering it (worker-src
// falls back to it).
func TestServiceWorkerServed(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/sw.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sw.js: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("/sw.js: Content-Type %q, want text/javascript", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "worker-src") {
		t.Errorf("/sw.js: CSP %q does not allow the worker through script-src 'self'", csp)
	}
}

// TestPageWorksUnderItsCSP: the page signs in (development sign-in: a JSON
// POST from its own origin), connects its WebSocket and chats without the
// browser reporting a single Content-Security-Policy violation.
func TestPageWorksUnderItsCSP(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(p.StartDevEdge(edge.Config{}))
	alice := newPage(t, "alice", 1280, 800)
	alice.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
		})
		return chromedp.Void{}, err
	})
	alice.do(chromedp.Navigate(base + "/"))
	alice.waitFor("the development sign-in form", `!document.getElementById('signin-dev').hidden`)
	alice.typeInto("#signin-user", "alice")
	alice.click("#signin-dev button")
	alice.waitFor("signed in as alice", `document.getElementById('me-name').textContent === 'alice'`)
	alice.waitFor("connected", `document.getElementById('conn').dataset.state === 'connected'`)
	alice.startChat("bob")
	alice.send("under a strict CSP")
	alice.waitStatus("under a strict CSP", "sent")
	apiSend(t, p, "bob", map[string]any{"id": "b1", "to": "alice", "text": "it still works"})
	alice.waitMessage("it still works")
	if v := eval[[]string](alice, `window.__csp`); len(v) != 0 {
		t.Fatalf("CSP violations: %q", v)
	}
}
