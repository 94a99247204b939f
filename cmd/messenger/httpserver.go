package main

import (
	"net/http"
	"time"
)

// newHTTPServer is the API listener's server. Every phase of a request is
// bounded, so that a client (authenticated or not) cannot hold a
// connection by sending slowly or not at all: headers within 10 s, the
// whole request within --http-read-timeout, the answer within
// --http-write-timeout, an idle keep-alive for --http-idle-timeout.
// Requests that are held longer on purpose set their own deadlines: a long
// poll (edge/poll.go, up to 60 s) and the opt-in profiles of --pprof.
// WebSockets are not affected: a hijacked connection has its deadlines
// cleared, and the edge sets its own read deadline (--idle-timeout).
func newHTTPServer(cfg *config, h http.Handler) *http.Server {
	header := 10 * time.Second
	if cfg.HTTPReadTimeout > 0 {
		header = min(header, cfg.HTTPReadTimeout)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: header,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    cfg.HTTPMaxHeaderBytes,
	}
}

// noWriteDeadline lifts the server's write timeout for a handler that
// answers slowly on purpose (a CPU profile of --pprof runs for its seconds).
func noWriteDeadline(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h(w, r)
	}
}
