package client_test

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"messenger/client"
)

func TestNewID(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
	seen := make(map[string]bool)
	for range 10000 {
		id := client.NewID()
		if !valid.MatchString(id) {
			t.Fatalf("NewID() = %q, want 22 characters of [A-Za-z0-9_-]", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestHTTPBase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ws://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"ws://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"wss://chat.example.com", "https://chat.example.com"},
		{"wss://chat.example.com:8443/v1/ws", "https://chat.example.com:8443"},
		{"ws://localhost:9000/v1/ws?cursor=abc", "http://localhost:9000"},
		{"ws://host:1/prefix/v1/ws", "http://host:1/prefix"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
	}
	for _, tt := range tests {
		if got := client.HTTPBase(tt.in); got != tt.want {
			t.Errorf("HTTPBase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestError(t *testing.T) {
	var err error = fmt.Errorf("send: %w", &client.Error{Code: client.CodeRateLimited, Message: "slow down", RetryAfterMs: 300})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "rate_limited" || e.RetryAfterMs != 300 {
		t.Fatalf("errors.As: %v, %+v", err, e)
	}
	for _, part := range []string{"rate_limited", "slow down", "300"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("%q does not contain %q", err.Error(), part)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[client.State]string{client.Connecting: "connecting", client.Connected: "connected", client.Disconnected: "disconnected"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// TestDialer: connections, the first and the reconnects, are dialed with
// Config.Dialer, from its source address.
func TestDialer(t *testing.T) {
	s := newFakeServer(t)
	var dials atomic.Int32
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		Control:   func(string, string, syscall.RawConn) error { dials.Add(1); return nil },
	}
	c := dial(t, client.Config{URLs: []string{s.listen()}, Dialer: d})
	s.closeAll(1001)
	waitFor(t, patience, func() error {
		if c.Hello().User == "" || dials.Load() < 2 {
			return fmt.Errorf("%d dials", dials.Load())
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.remotes) < 2 {
			return fmt.Errorf("%d connections", len(s.remotes))
		}
		for _, r := range s.remotes {
			if host, _, _ := net.SplitHostPort(r); host != "127.0.0.2" {
				return fmt.Errorf("a connection from %s, want 127.0.0.2", r)
			}
		}
		return nil
	})
}
