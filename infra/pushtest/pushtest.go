// Package pushtest runs local stand-ins for FCM, APNs and a Web Push
// service that check what the real ones check (credentials, signatures,
// headers, the message format, the encrypted payload), record what they
// accept, and can be told to fail the way the real ones fail. They serve
// https on 127.0.0.1 with httptest's certificate: a client trusts them
// through CAFile and reaches them by listing Host in its allow list.
//
// Concurrency: every method of a server is safe to call from any
// goroutine while it serves.
package pushtest

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Fault is how a server answers every send until told otherwise.
type Fault int

const (
	// OK accepts (the default).
	OK Fault = iota
	// Gone answers that the token or subscription is unregistered: FCM 404
	// UNREGISTERED, APNs 410 Unregistered, Web Push 410 Gone.
	Gone
	// TooMany answers 429 with Retry-After (SetRetryAfter).
	TooMany
	// Unavailable answers 503.
	Unavailable
	// Hang holds the request without answering until the client gives up
	// or the server stops.
	Hang
	// TooLarge answers 413 (Web Push only; the others answer 400).
	TooLarge
)

// base is what the three servers share: the TLS server, the fault mode,
// the stop channel a hanging handler waits on.
type base struct {
	srv  *httptest.Server
	done chan struct{}

	// URL is the server's https base URL (no trailing slash).
	URL string
	// Host is the server's host (127.0.0.1), for the client's allow list.
	Host string
	// Addr is host:port.
	Addr string
	// CAFile is a PEM file of the certificate the server presents.
	CAFile     string
	mu         sync.Mutex
	retryAfter int // Retry-After of TooMany answers, seconds
	fault      Fault
	gone       map[string]bool // tokens or endpoint paths answered as Gone
	hung       int             // requests held by Hang so far
}

// start serves h over TLS; http2 also offers HTTP/2 (APNs needs it).
func (b *base) start(t testing.TB, h http.Handler, http2 bool) {
	t.Helper()
	b.done = make(chan struct{})
	b.gone = map[string]bool{}
	b.retryAfter = 7
	b.srv = httptest.NewUnstartedServer(h)
	b.srv.EnableHTTP2 = http2
	b.srv.StartTLS()
	b.URL = b.srv.URL
	b.Addr = b.srv.Listener.Addr().String()
	b.Host, _, _ = net.SplitHostPort(b.Addr)
	b.CAFile = filepath.Join(t.TempDir(), "pushtest-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.srv.Certificate().Raw})
	if err := os.WriteFile(b.CAFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
}

// Close stops the server; held requests end first.
func (b *base) Close() {
	b.mu.Lock()
	select {
	case <-b.done:
		b.mu.Unlock()
		return
	default:
		close(b.done)
	}
	b.mu.Unlock()
	b.srv.CloseClientConnections()
	b.srv.Close()
}

// SetFault makes every following send answer f.
func (b *base) SetFault(f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fault = f
}

// Unregister makes sends to one token (FCM, APNs) or subscription endpoint
// path (Web Push) answer Gone from now on.
func (b *base) Unregister(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gone[token] = true
}

// Hung is how many requests Hang has held so far.
func (b *base) Hung() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hung
}

// faultFor is the fault for one token: Gone when unregistered, else the
// server's mode.
func (b *base) faultFor(token string) Fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone[token] {
		return Gone
	}
	if b.fault == Hang {
		b.hung++
	}
	return b.fault
}

// hang holds a request until its client leaves or the server stops.
func (b *base) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-b.done:
	}
}

// SetRetryAfter sets the Retry-After of TooMany answers (7 s by default).
func (b *base) SetRetryAfter(seconds int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retryAfter = seconds
}

func (b *base) retryAfterHeader() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strconv.Itoa(b.retryAfter)
}
