// Package web holds the web client, embedded in the binary and served by
// the edge at /. It speaks only the public protocol (PROTOCOL.md), like any
// other client.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is what the page may load and run: its own scripts
// (ES modules, no inline script), its own stylesheet (no inline style
// attributes; styles set from script through the CSSOM are not restricted),
// the data: favicon, fetch and WebSocket to its own origin ('self' matches
// ws: and wss: of the same host in CSP 3), and nothing else. A script
// injected into a message could then neither load code from elsewhere nor
// send a token elsewhere; frame-ancestors stops clickjacking. The service
// worker (/sw.js, scope /) is registered under script-src 'self' (there is
// no worker-src, which falls back to it).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the web client's files with the security headers.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP 2
		h.Set("X-Content-Type-Options", "nosniff")
		// The page's URL carries no secret (the token is kept in storage),
		// but nothing of it needs to reach another site either.
		h.Set("Referrer-Policy", "no-referrer")
		files.ServeHTTP(w, r)
	})
}
