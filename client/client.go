package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a Client. URLs and Token are required.
type Config struct {
	// URLs are edge base URLs such as "ws://127.0.0.1:8080" (the path /v1/ws
	// is added unless present). Dial tries them in order; each reconnect
	// attempt moves on to the next one.
	URLs []string
	// Token is called at each (re)connect; its result is sent as
	// "Authorization: Bearer <token>". Nil sends no header.
	Token func() (string, error)
	// Device is the optional device id.
	Device string
	// Cursor is the optional starting cursor: stored events after it are
	// replayed. Empty means "from now on" (the hello cursor).
	Cursor string
	// OnEvent receives every msg, receipt, presence, typing, synced and
	// error (without id) frame, in arrival order, from one goroutine. It must
	// not block long: while it runs no further event is handed over, and once
	// the internal queue is full the connection stops reading.
	OnEvent func(Event)
	// OnState, optional, is told Connecting, Connected and Disconnected.
	OnState func(State)
	// AutoDelivered sends a cumulative `delivered` receipt for messages from
	// other users once OnEvent has returned, throttled per conversation: the
	// first at once, then at most one per DeliveredInterval, carrying the
	// highest seq received meanwhile. Receipts still waiting are written by
	// Close. Receipts the application sends itself (Receipt) are not
	// throttled, and one at or above a waiting delivered seq replaces it.
	AutoDelivered bool
	// DeliveredInterval is the shortest gap between two automatic delivered
	// receipts of one conversation; zero means 1 s.
	DeliveredInterval time.Duration
	// Dialer, optional, opens the TCP connections, for instance from a chosen
	// source address (Dialer.LocalAddr). Its context is the one of Dial (or
	// of the client, on reconnects) bounded by the 10 s handshake timeout.
	// Nil uses a plain net.Dialer.
	Dialer *net.Dialer
	// ReconnectMin and ReconnectMax bound the reconnect backoff (with
	// jitter); zero means 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Logf, optional, receives diagnostic lines.
	Logf func(format string, args ...any)
}

// State is the connection state reported to Config.OnState.
type State int

// Connection states.
const (
	Connecting State = iota + 1
	Connected
	Disconnected
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	}
	return "unknown"
}

const (
	defaultReconnectMin = 100 * time.Millisecond
	defaultReconnectMax = 5 * time.Second
	// queueSize bounds the events read but not yet handed to OnEvent.
	queueSize = 4096
)

// Client is a WebSocket connection to the messenger that survives
// disconnects. Its methods are safe for concurrent use.
type Client struct {
	cfg       Config
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	queue     chan item
	delivered *deliveredReceipts // nil unless AutoDelivered

	pingInterval, deadAfter time.Duration

	mu        sync.Mutex
	cur       *conn // the connection whose hello was received, nil between connections
	hello     Event
	resume    string // cursor of the last stored event read: where a reconnect resumes
	cursor    string // cursor of the last stored event handed to OnEvent
	urlIdx    int
	watch     []string // last Watch list, re-sent after each reconnect
	watching  bool
	syncs     int // sync frames not yet answered by synced
	seen      *seenSeqs
	pending   map[string]*pendingSend
	sendOrder uint64

	stateMu sync.Mutex // serialises OnState calls
}

// Dial connects to the first URL that accepts, and returns once its hello has
// been received. Events replayed after Config.Cursor may reach OnEvent before
// Dial returns. An HTTP refusal of the upgrade is an *Error whose message
// holds the status ("HTTP 401 ..." for a bad token).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("client: no URLs")
	}
	if cfg.DeliveredInterval <= 0 {
		cfg.DeliveredInterval = defaultDeliveredInterval
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = defaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = defaultReconnectMax
	}
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectMin)
	cfg.URLs = slices.Clone(cfg.URLs)

	c := &Client{
		cfg:     cfg,
		queue:   make(chan item, queueSize),
		resume:  cfg.Cursor,
		cursor:  cfg.Cursor,
		seen:    newSeenSeqs(maxTrackedConvs),
		pending: make(map[string]*pendingSend),

		pingInterval: pingInterval,
		deadAfter:    deadAfter,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.AutoDelivered {
		c.delivered = newDeliveredReceipts(cfg.DeliveredInterval, func(conv string, seq int64) error {
			return c.writeJSON(receiptFrame{Type: "receipt", Conv: conv, Seq: seq, Status: "delivered"})
		})
	}
	go c.dispatch()

	var err error
	for i, u := range cfg.URLs {
		c.urlIdx = i
		c.setState(Connecting)
		var cn *conn
		cn, err = c.connect(ctx, u)
		if err == nil {
			c.setState(Connected)
			go c.supervise(cn)
			return c, nil
		}
		c.logf("client: dial %s: %v", u, err)
		var e *Error
		if ctx.Err() != nil || (errors.As(err, &e) && (e.Code == CodeUnauthorized || e.Code == CodeForbidden)) {
			break
		}
	}
	c.cancel()
	c.setState(Disconnected)
	return nil, err
}

// Close writes the automatic delivered receipts still throttled (when
// connected), stops reconnecting, fails the pending sends with ErrClosed and
// closes the socket. It does not wait for OnEvent or OnState to return.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.delivered != nil {
			c.delivered.close()
		}
		c.mu.Lock()
		c.cancel()
		cn := c.cur
		c.mu.Unlock()
		if cn != nil {
			cn.close()
		}
	})
	return nil
}

// Cursor is the cursor of the last stored event handed to OnEvent, else the
// starting cursor, else the hello cursor.
func (c *Client) Cursor() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cursor == "" {
		return c.hello.Cursor
	}
	return c.cursor
}

// User is the user id of the latest hello.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello.User
}

// Hello is the latest hello frame.
func (c *Client) Hello() Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// Receipt sends a cumulative receipt; status is "delivered" or "read". It
// is written at once; with AutoDelivered, it also stands for the automatic
// delivered receipts of conv up to seq (read implies delivered).
func (c *Client) Receipt(conv string, seq int64, status string) error {
	err := c.writeJSON(receiptFrame{Type: "receipt", Conv: conv, Seq: seq, Status: status})
	if err == nil && c.delivered != nil && (status == "delivered" || status == "read") {
		c.delivered.covered(conv, seq)
	}
	return err
}

// Sync asks for the stored events after cursor; they arrive through OnEvent,
// followed by a synced event. While a sync is outstanding, replayed messages
// are not filtered by the duplicate guard (the caller asked for them).
func (c *Client) Sync(cursor string) error {
	c.mu.Lock()
	c.syncs++
	c.mu.Unlock()
	err := c.writeJSON(syncFrame{Type: "sync", Cursor: cursor})
	if err != nil {
		c.mu.Lock()
		c.syncs = max(0, c.syncs-1)
		c.mu.Unlock()
	}
	return err
}

// Watch replaces the list of users whose presence is reported. The list is
// remembered and sent again after each reconnect, so Watch never returns
// ErrNotConnected.
func (c *Client) Watch(users []string) error {
	users = append(make([]string, 0, len(users)), users...) // never null on the wire
	c.mu.Lock()
	c.watch, c.watching = users, true
	cn := c.cur
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	if cn == nil {
		return nil
	}
	b, err := json.Marshal(watchFrame{Type: "watch", Users: users})
	if err != nil {
		return err
	}
	return c.writeTo(cn, b)
}

// Typing tells the other members of conv that the user is typing.
func (c *Client) Typing(conv string) error {
	return c.writeJSON(typingFrame{Type: "typing", Conv: conv})
}

// writeJSON writes a frame on the current connection.
func (c *Client) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return ErrNotConnected
	}
	return c.writeTo(cn, b)
}

func (c *Client) setState(s State) {
	if c.cfg.OnState == nil {
		return
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.cfg.OnState(s)
}

func (c *Client) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// HTTPBase turns an edge WebSocket URL (ws://host:port, wss://host:port,
// optionally ending in /v1/ws) into the base URL of its HTTP API
// (http://host:port, https://host:port), without a trailing slash.
func HTTPBase(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil || u.Host == "" {
		s := strings.Replace(wsURL, "wss://", "https://", 1)
		s = strings.Replace(s, "ws://", "http://", 1)
		return strings.TrimRight(s, "/")
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), wsPath)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}
