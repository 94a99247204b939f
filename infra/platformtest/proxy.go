package platformtest

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of a NATS server that can turn silent on
// demand: it stops forwarding in both directions and keeps every socket
// open, new ones too, as a paused (SIGSTOPped) server looks to its clients.
// Bytes read while silent are held and forwarded on Resume.
type Proxy struct {
	ln     net.Listener
	target string

	mu   sync.Mutex
	cond *sync.Cond
	// held directions: up is client to server, down server to client.
	holdUp, holdDown bool
	closed           bool
	conns            []net.Conn
}

// StartProxy proxies loopback connections to target (host:port or
// nats://host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if u := hostPort(target); u != "" {
		target = u
	}
	p := &Proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func hostPort(url string) string {
	if rest, ok := strings.CutPrefix(url, "nats://"); ok {
		return rest
	}
	return ""
}

// URL is the proxy's NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Silence stops all forwarding; sockets stay open.
func (p *Proxy) Silence() {
	p.mu.Lock()
	p.holdUp, p.holdDown = true, true
	p.mu.Unlock()
}

// HoldReplies stops forwarding from the server only: what clients send
// arrives (and is done), their answers do not come back.
func (p *Proxy) HoldReplies() {
	p.mu.Lock()
	p.holdDown = true
	p.mu.Unlock()
}

// Resume forwards again, what was held first.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.holdUp, p.holdDown = false, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close closes the listener and every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	go p.pipe(server, client, &p.holdUp)
	p.pipe(client, server, &p.holdDown)
}

// pipe copies from src to dst, holding each chunk while its direction is
// held. An end on either side closes both (after the silence: a paused
// server does not see a client leave either).
func (p *Proxy) pipe(dst, src net.Conn, hold *bool) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !p.wait(hold) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF included
		}
	}
}

// wait blocks while the direction is held; false once closed.
func (p *Proxy) wait(hold *bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for *hold && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}
