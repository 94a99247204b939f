package client

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

const (
	// wsPath is the WebSocket endpoint of an edge (PROTOCOL.md section 3).
	wsPath = "/v1/ws"
	// writeTimeout bounds one frame write; a server that stops reading for
	// longer loses the connection (and the client reconnects).
	writeTimeout = 10 * time.Second
	// handshakeTimeout bounds the TCP dial plus the HTTP upgrade.
	handshakeTimeout = 10 * time.Second
	// helloTimeout bounds the wait for hello after the upgrade.
	helloTimeout = 10 * time.Second
	// closeWait bounds how long Close waits for the reader to stop.
	closeWait = 2 * time.Second
)

// Keep-alive timing, copied into each Client at Dial; variables only so that
// tests can shorten them.
var (
	// pingInterval: a ping frame goes out after this much silence in either
	// direction, so that no idle timeout closes a quiet connection.
	pingInterval = 20 * time.Second
	// deadAfter: a connection that has received nothing for this long, pings
	// notwithstanding, is dropped and replaced.
	deadAfter = 3 * pingInterval
)

// conn is one WebSocket connection and its gws event handler. Its reader
// (gws's ReadLoop goroutine) parses frames and hands them to the Client.
type conn struct {
	c         *Client
	url       string
	ws        *gws.Conn
	hello     chan struct{} // closed at the first hello
	helloOnce sync.Once
	closed    chan struct{} // closed when the reader has stopped
	closeErr  error         // why; written before closed is closed
	lastRead  atomic.Int64  // unix nanoseconds
	lastWrite atomic.Int64

	dead bool // guarded by c.mu: the reader has stopped

	// Used by the reader goroutine only.
	gotHello bool
	expired  bool // cursor_expired arrived before hello
}

var _ gws.Event = (*conn)(nil)

// endpoint builds the WebSocket URL of an edge base URL.
func endpoint(base, device, cursor string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("client: bad URL %q: %w", base, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, wsPath) {
		p += wsPath
	}
	u.Path, u.RawPath = p, ""
	q := u.Query()
	if device != "" {
		q.Set("device", device)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ctxDialer adapts a *net.Dialer (nil: the zero one) to gws's Dialer,
// which has no context: the dial stops when ctx ends.
type ctxDialer struct {
	d   *net.Dialer
	ctx context.Context
}

func (d ctxDialer) Dial(network, addr string) (net.Conn, error) {
	if d.d == nil {
		var zero net.Dialer
		return zero.DialContext(d.ctx, network, addr)
	}
	return d.d.DialContext(d.ctx, network, addr)
}

// connect opens a connection to base, resuming from the saved cursor, waits
// for its hello and makes it the current one (resending what is pending).
func (c *Client) connect(ctx context.Context, base string) (*conn, error) {
	header := http.Header{}
	if c.cfg.Token != nil {
		tok, err := c.cfg.Token()
		if err != nil {
			return nil, fmt.Errorf("client: token: %w", err)
		}
		header.Set("Authorization", "Bearer "+tok)
	}
	c.mu.Lock()
	resume := c.resume
	c.mu.Unlock()
	addr, err := endpoint(base, c.cfg.Device, resume)
	if err != nil {
		return nil, err
	}

	cn := &conn{c: c, url: base, hello: make(chan struct{}), closed: make(chan struct{})}
	now := time.Now().UnixNano()
	cn.lastRead.Store(now)
	cn.lastWrite.Store(now)

	type result struct {
		ws   *gws.Conn
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	dialCtx, cancelDial := context.WithTimeout(ctx, handshakeTimeout)
	go func() {
		defer cancelDial()
		ws, resp, err := gws.NewClient(cn, &gws.ClientOption{
			Addr:             addr,
			RequestHeader:    header,
			HandshakeTimeout: handshakeTimeout,
			NewDialer:        func() (gws.Dialer, error) { return ctxDialer{c.cfg.Dialer, dialCtx}, nil },
		})
		done <- result{ws, resp, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.ws != nil {
				_ = r.ws.NetConn().Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		if r.resp == nil || r.resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("client: connect %s: %w", base, r.err)
		}
		herr := httpError(r.resp)
		if herr.Code == CodeCursorExpired && resume != "" {
			// Refused before the upgrade: report it and start over from the hello cursor.
			c.expireCursor(nil, herr.Message)
			return c.connect(ctx, base)
		}
		return nil, herr
	}

	cn.ws = r.ws
	go r.ws.ReadLoop()
	timer := time.NewTimer(helloTimeout)
	defer timer.Stop()
	select {
	case <-cn.hello:
	case <-cn.closed:
		select {
		case <-cn.hello:
		default:
			return nil, fmt.Errorf("client: %s closed before hello: %w", base, cn.closeErr)
		}
	case <-ctx.Done():
		cn.close()
		return nil, ctx.Err()
	case <-timer.C:
		cn.close()
		return nil, fmt.Errorf("client: no hello from %s within %v", base, helloTimeout)
	}
	if err := c.activate(cn); err != nil {
		return nil, err
	}
	return cn, nil
}

// activate makes cn the current connection and resends, in this order, the
// pending sends, the watch list and the unsent delivered receipts. Setting
// cur and listing the pending sends happen under one lock, so a concurrent
// Send either sees cur or is in the list.
func (c *Client) activate(cn *conn) error {
	c.mu.Lock()
	if c.ctx.Err() != nil || cn.dead {
		c.mu.Unlock()
		cn.close()
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("client: %s closed right after hello: %w", cn.url, cn.closeErr)
	}
	c.cur = cn
	frames := c.pendingFrames()
	watch, watching := c.watch, c.watching
	c.mu.Unlock()

	for _, f := range frames {
		if c.writeTo(cn, f) != nil {
			return nil // the connection is gone; the next one resends
		}
	}
	if watching {
		if b, err := json.Marshal(watchFrame{Type: "watch", Users: watch}); err == nil {
			_ = c.writeTo(cn, b)
		}
	}
	if c.delivered != nil {
		c.delivered.flush()
	}
	return nil
}

// supervise keeps the client connected until Close: it pings the current
// connection and, when it drops, reconnects with backoff.
func (c *Client) supervise(cn *conn) {
	for {
		c.keepalive(cn)
		if c.ctx.Err() != nil {
			c.setState(Disconnected)
			return
		}
		c.logf("client: disconnected from %s: %v", cn.url, cn.closeErr)
		c.setState(Disconnected)
		if cn = c.reconnect(); cn == nil {
			c.setState(Disconnected)
			return
		}
	}
}

// keepalive returns when cn has stopped or the client is closed.
func (c *Client) keepalive(cn *conn) {
	t := time.NewTimer(c.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-cn.closed:
			return
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		sinceRead := now.Sub(time.Unix(0, cn.lastRead.Load()))
		sinceWrite := now.Sub(time.Unix(0, cn.lastWrite.Load()))
		if sinceRead >= c.deadAfter {
			c.logf("client: nothing from %s for %v, reconnecting", cn.url, sinceRead.Round(time.Second))
			_ = cn.ws.NetConn().Close()
			t.Reset(closeWait)
			continue
		}
		wait := c.pingInterval - max(sinceRead, sinceWrite)
		if wait <= 0 {
			_ = c.writeTo(cn, pingFrame)
			wait = c.pingInterval
		}
		t.Reset(wait)
	}
}

// reconnect dials the next URLs in turn, with backoff, until one answers
// hello; it returns nil once the client is closed.
func (c *Client) reconnect() *conn {
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		c.mu.Lock()
		c.urlIdx = (c.urlIdx + 1) % len(c.cfg.URLs)
		u := c.cfg.URLs[c.urlIdx]
		c.mu.Unlock()
		c.setState(Connecting)
		cn, err := c.connect(c.ctx, u)
		if err == nil {
			c.setState(Connected)
			c.logf("client: connected to %s", u)
			return cn
		}
		if c.ctx.Err() != nil {
			return nil
		}
		c.logf("client: reconnect to %s: %v", u, err)
	}
}

// backoff is the wait before reconnect attempt n: ReconnectMin doubled n
// times, capped at ReconnectMax, with jitter in [d/2, d].
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.ReconnectMin
	for i := 0; i < n && d < c.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.ReconnectMax)
	return d/2 + rand.N(d/2+1)
}

// writeTo writes one text frame on cn. gws serialises writers; the deadline
// keeps a server that stops reading from blocking callers for ever.
func (c *Client) writeTo(cn *conn, b []byte) error {
	_ = cn.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := cn.ws.WriteMessage(gws.OpcodeText, b); err != nil {
		return err
	}
	cn.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// close sends a normal close frame (best effort) and closes the socket.
func (cn *conn) close() {
	if cn.ws == nil {
		return
	}
	_ = cn.ws.SetWriteDeadline(time.Now().Add(time.Second))
	_ = cn.ws.WriteClose(1000, nil)
	_ = cn.ws.NetConn().Close()
}

// OnOpen implements gws.Event.
func (cn *conn) OnOpen(*gws.Conn) {}

// OnClose implements gws.Event; it runs on the reader goroutine, last.
func (cn *conn) OnClose(_ *gws.Conn, err error) {
	c := cn.c
	c.mu.Lock()
	cn.closeErr = err
	cn.dead = true
	if c.cur == cn {
		c.cur = nil
		c.syncs = 0
	}
	c.mu.Unlock()
	close(cn.closed)
}

// OnPing implements gws.Event: answer with a pong.
func (cn *conn) OnPing(socket *gws.Conn, payload []byte) {
	cn.lastRead.Store(time.Now().UnixNano())
	_ = socket.SetWriteDeadline(time.Now().Add(writeTimeout))
	_ = socket.WritePong(payload)
}

// OnPong implements gws.Event.
func (cn *conn) OnPong(*gws.Conn, []byte) {
	cn.lastRead.Store(time.Now().UnixNano())
}

// OnMessage implements gws.Event: one server frame.
func (cn *conn) OnMessage(_ *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	cn.lastRead.Store(time.Now().UnixNano())
	if msg.Opcode != gws.OpcodeText {
		cn.c.logf("client: ignoring a non-text frame from %s", cn.url)
		return
	}
	var ev Event
	if err := json.Unmarshal(msg.Bytes(), &ev); err != nil {
		cn.c.logf("client: bad frame from %s: %v", cn.url, err)
		return
	}
	cn.handle(&ev)
}
