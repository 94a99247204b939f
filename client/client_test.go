package client_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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
