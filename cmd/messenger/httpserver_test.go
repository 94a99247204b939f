package main

import (
	"bufio"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveTest serves h with the API server as flags configure it.
func serveTest(t *testing.T, h http.Handler, args ...string) string {
	t.Helper()
	var cfg config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(&cfg, h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// waitEOF reads conn until the server closes it, or fails after limit.
func waitEOF(t *testing.T, conn net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	_ = conn.SetReadDeadline(began.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(began)
}

// Attack: the API server had only a header timeout: an idle keep-alive and
// a request whose body never ends (unauthenticated ones too) were held
// for ever. Now --http-idle-timeout closes the one and
// --http-read-timeout cuts the other; --http-max-header-bytes bounds the
// headers.
func TestHTTPServerTimeouts(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	addr := serveTest(t, mux, "--http-idle-timeout", "500ms", "--http-read-timeout", "1s")

	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v %v", resp, err)
		}
		resp.Body.Close()
		waitEOF(t, conn, 20*time.Second)
	})
	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"))
		waitEOF(t, conn, 20*time.Second)
	})
	t.Run("header size", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("b", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("64 KiB of headers: %d, want 431", resp.StatusCode)
		}
	})
}

// The defaults bound every phase, and a long poll (60 s at most) is not
// cut by them: it sets its own deadlines (edge.TestPollOutlivesServerTimeouts).
func TestHTTPServerDefaults(t *testing.T) {
	var cfg config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.flags(fs)
	_ = fs.Parse(nil)
	srv := newHTTPServer(&cfg, http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("an unbounded phase: %+v", srv)
	}
}
