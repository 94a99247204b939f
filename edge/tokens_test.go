package edge_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"messenger/edge"
	"messenger/infra/platformtest"
)

// do sends a request with the given Host (empty: the URL's) and headers
// and returns the status.
func do(t *testing.T, method, url, host, body string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestQueryTokenOnlyOnWebSocket stops the token-in-the-URL attack of issue
// 12: a token in the query string was accepted on every route (URLs end up
// in proxy logs, browser history and Referer headers). PROTOCOL.md section
// 1: any route but GET /v1/ws given a token that way and no header answers
// unauthorized; the WebSocket still takes it.
func TestQueryTokenOnlyOnWebSocket(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	tok := p.Token("alice")
	for _, route := range []struct{ method, path, body string }{
		{"GET", "/v1/conversations", ""},
		{"GET", "/v1/poll?timeout=0", ""},
		{"GET", "/v1/presence?users=bob", ""},
		{"POST", "/v1/messages", `{"id":"q1","to":"bob","text":"hi"}`},
	} {
		sep := "?"
		if strings.Contains(route.path, "?") {
			sep = "&"
		}
		var e apiError
		code := api(t, route.method, p.HTTP(0)+route.path+sep+"access_token="+tok, "", route.body, &e)
		if code != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
			t.Errorf("%s %s with a query token: %d %+v, want 401 unauthorized", route.method, route.path, code, e)
		}
		// The header still works, the query parameter then ignored.
		if code := api(t, route.method, p.HTTP(0)+route.path+sep+"access_token=x", tok, strings.Replace(route.body, "q1", "q2", 1), nil); code != http.StatusOK {
			t.Errorf("%s %s with the header: %d, want 200", route.method, route.path, code)
		}
	}
	r, _, err := dialRaw(t, p.WS(0)+"/v1/ws?access_token="+tok, nil)
	if err != nil {
		t.Fatalf("WebSocket with a query token: %v", err)
	}
	r.waitFrame(t, "hello", 0)
}

// wsUpgrade is the header of a WebSocket handshake.
func wsUpgrade(tok, origin string) map[string]string {
	return map[string]string{
		"Authorization":         "Bearer " + tok,
		"Connection":            "Upgrade",
		"Upgrade":               "websocket",
		"Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"Origin":                origin,
	}
}

// TestOriginDNSRebinding stops the DNS-rebinding attack of issue 12: a page
// on http://evil.example:8080 whose name then resolves to the edge sends
// Origin http://evil.example:8080 and Host evil.example:8080; the same-host
// rule trusted it (101) and the page could act with the user's token kept
// by the real web client... or drive a --dev edge. Now a same-host origin is
// trusted only for localhost or an IP address; configured origins still are.
func TestOriginDNSRebinding(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	tok := p.Token("alice")
	ws := p.HTTP(0) + "/v1/ws"
	u, err := url.Parse(p.HTTP(0))
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	cases := []struct {
		name, host, origin string
		want               int
	}{
		{"rebinding name", "evil.example:" + port, "http://evil.example:" + port, http.StatusForbidden},
		{"rebinding name, https", "evil.example:" + port, "https://evil.example:" + port, http.StatusForbidden},
		{"foreign origin", "", "https://evil.example", http.StatusForbidden},
		{"own page on 127.0.0.1", "", "http://127.0.0.1:" + port, http.StatusSwitchingProtocols},
		{"own page on localhost", "localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
		{"own page on an IPv6 literal", "[::1]:" + port, "http://[::1]:" + port, http.StatusSwitchingProtocols},
		{"no origin (not a browser)", "evil.example:" + port, "", http.StatusSwitchingProtocols},
	}
	for _, c := range cases {
		if got := do(t, "GET", ws, c.host, "", wsUpgrade(tok, c.origin)); got != c.want {
			t.Errorf("%s: Host %q Origin %q: %d, want %d", c.name, c.host, c.origin, got, c.want)
		}
	}
	// A configured origin is trusted whatever its name.
	i := p.StartEdge(edge.Config{AllowedOrigins: []string{"https://chat.example"}})
	if got := do(t, "GET", p.HTTP(i)+"/v1/ws", "chat.example", "", wsUpgrade(tok, "https://chat.example")); got != http.StatusSwitchingProtocols {
		t.Errorf("configured origin: %d, want 101", got)
	}
}

// TestDevTokenRefusesCrossOrigin stops the sign-in CSRF of issue 12: a page
// on another origin posted text/plain (a "simple" request: no CORS
// preflight) to /v1/dev/token and got 200 with a token. Now the Origin must
// be allowed and the body application/json; the web client's own sign-in
// (same origin, JSON) still works.
func TestDevTokenRefusesCrossOrigin(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	base := p.HTTP(p.StartDevEdge(edge.Config{}))
	target := base + "/v1/dev/token"
	own := base
	body := `{"user":"mallory"}`
	cases := []struct {
		name, host string
		header     map[string]string
		want       int
	}{
		{"cross-origin text/plain", "", map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}, http.StatusForbidden},
		{"cross-origin JSON", "", map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json"}, http.StatusForbidden},
		{"DNS rebinding", "evil.example", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, http.StatusForbidden},
		{"same origin text/plain", "", map[string]string{"Origin": own, "Content-Type": "text/plain"}, http.StatusBadRequest},
		{"no content type", "", map[string]string{"Origin": own}, http.StatusBadRequest},
		{"same origin JSON (the web client)", "", map[string]string{"Origin": own, "Content-Type": "application/json"}, http.StatusOK},
		{"JSON with charset, no origin (curl)", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, http.StatusOK},
	}
	for _, c := range cases {
		if got := do(t, "POST", target, c.host, body, c.header); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
