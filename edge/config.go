package edge

import (
	"fmt"
	"time"
)

// Config of an edge. The zero value gets the defaults of PROTOCOL.md
// section 9 from withDefaults.
type Config struct {
	// MaxText is the largest text in bytes. Default 4096.
	MaxText int
	// MaxFrame is the largest client frame in bytes (1009 beyond). Default 32 KiB.
	MaxFrame int
	// SendRate and SendBurst bound each user's sends per second on this edge.
	// Defaults 20 and 50.
	SendRate  float64
	SendBurst int
	// QueueFrames and QueueBytes bound what waits to be written to one
	// connection; a reader that falls further behind is closed with 4008.
	// Defaults 1024 frames and 4 MiB.
	QueueFrames int
	QueueBytes  int
	// PingInterval is how often the server pings an idle connection; a
	// connection that sends nothing (not even a pong) for IdleTimeout is
	// closed. Defaults 20s and 60s.
	PingInterval time.Duration
	IdleTimeout  time.Duration
	// AllowedOrigins lists the Origin values a browser WebSocket may come
	// (and POST /v1/dev/token be called from); "*" allows any. Requests with
	// no Origin (non-browser clients) are always allowed, same-host origins
	// when the host is localhost or an IP address (not DNS rebinding).
	AllowedOrigins []string
	// PublishTimeout bounds a store in JetStream before a send is answered
	// unavailable. Default 5s.
	PublishTimeout time.Duration
	// PublishAttempt bounds one attempt within PublishTimeout: an ack not
	// back by then, the NATS server is pinged (moved off when silent) and
	// the same message sent again. Default 1.5s (infra/jspub).
	PublishAttempt time.Duration
	// ReplayBatch is how many queue entries one read brings back. Default 256.
	ReplayBatch int
	// MaxReplays bounds the replays (catch-ups from a cursor) reading the
	// queue at once; a replay waiting for its reader holds no slot.
	// Default 256.
	MaxReplays int
	// ConvCache bounds the conversations whose state is kept. Default 100,000.
	ConvCache int
	// HistoryRate and HistoryBurst bound each user's history and
	// conversation-list reads per second on this edge. Defaults 20 and 40.
	HistoryRate  float64
	HistoryBurst int
	// RecentConvs conversations keep their RecentMessages newest events in
	// memory, so that opening a recent chat reads no store. Defaults 50,000
	// and 15 (the newest page of a phone).
	RecentConvs    int
	RecentMessages int
	// HistoryPage is the default page size, MaxHistoryPage the cap.
	// Defaults 50 and 100.
	HistoryPage    int
	MaxHistoryPage int
	// PresenceHeartbeat is how often the edge tells the presence service it
	// is alive; PresenceSync how often it sends its full list of users.
	// Defaults 5s and 30s.
	PresenceHeartbeat time.Duration
	PresenceSync      time.Duration
	// MaxWatch bounds a watch list and a presence pull. Default 500.
	MaxWatch int
	// MaxGroup bounds a group's members. Default 256.
	MaxGroup int
	// MaxGroupsPerUser bounds the groups a user is a member of: a create or
	// an add that would pass it is refused. Default 1000.
	MaxGroupsPerUser int
	// ReadBuffer is each WebSocket connection's read buffer in bytes, held
	// for the connection's life. Larger frames are still read whole, in one
	// more system call. Default 256: most client frames (a receipt, a send
	// of a short text) in one read.
	ReadBuffer int
	// TypingEvery: at most one typing event per user and conversation per
	// this interval. Default 2s.
	TypingEvery time.Duration
	// Per-user rates of the other client writes on this edge (PROTOCOL.md
	// section 9); a zero field gets its default (DefaultRates).
	Rates Rates
	// MaxConnsPerUser bounds one user's WebSocket connections and long polls
	// held at once on this edge. Default 16.
	MaxConnsPerUser int
	// MaxPushRegs bounds one user's push registrations: a new one beyond it
	// replaces the oldest. Default 20.
	MaxPushRegs int
	// WebPushKey is the VAPID public key (base64url, uncompressed P-256)
	// that GET /v1/push/webpush-key gives browsers; empty: Web Push is not
	// configured and it answers not_found.
	WebPushKey string
}

// Rate is a per-user token bucket: PerSecond on average, Burst at once.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Rates are the per-user limits of every client write but sends (which
// have SendRate and SendBurst).
type Rates struct {
	Receipt Rate // receipts (WebSocket and POST /v1/receipts)
	Group   Rate // group creation, member add and remove, title change
	Watch   Rate // watch frames
	Sync    Rate // sync frames
	Typing  Rate // typing events that go out (coalesced ones are free)
	Push    Rate // push registrations and unregistrations
}

// DefaultRates: generous for real clients (a delivered receipt for every
// message at the send rate of 20 per second of each of several senders; a
// group's members added one by one), tight for floods.
var DefaultRates = Rates{
	Receipt: Rate{50, 100},
	Group:   Rate{5, 30},
	Watch:   Rate{2, 10},
	Sync:    Rate{5, 20},
	Typing:  Rate{2, 10},
	Push:    Rate{1, 10},
}

func (r *Rate) withDefault(d Rate) {
	if r.PerSecond <= 0 {
		r.PerSecond = d.PerSecond
	}
	if r.Burst <= 0 {
		r.Burst = d.Burst
	}
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxText, 4096)
	def(&c.MaxFrame, 32<<10)
	def(&c.SendBurst, 50)
	def(&c.QueueFrames, 1024)
	def(&c.QueueBytes, 4<<20)
	def(&c.ReplayBatch, 256)
	def(&c.MaxReplays, 256)
	def(&c.ConvCache, 100_000)
	def(&c.HistoryBurst, 40)
	def(&c.RecentConvs, 50_000)
	def(&c.RecentMessages, 15)
	def(&c.HistoryPage, 50)
	def(&c.MaxHistoryPage, 100)
	def(&c.MaxWatch, 500)
	def(&c.MaxGroup, 256)
	def(&c.MaxGroupsPerUser, 1000)
	def(&c.ReadBuffer, 256)
	def(&c.MaxConnsPerUser, 16)
	def(&c.MaxPushRegs, 20)
	c.Rates.Receipt.withDefault(DefaultRates.Receipt)
	c.Rates.Group.withDefault(DefaultRates.Group)
	c.Rates.Watch.withDefault(DefaultRates.Watch)
	c.Rates.Sync.withDefault(DefaultRates.Sync)
	c.Rates.Typing.withDefault(DefaultRates.Typing)
	c.Rates.Push.withDefault(DefaultRates.Push)
	if c.PresenceHeartbeat <= 0 {
		c.PresenceHeartbeat = 5 * time.Second
	}
	if c.PresenceSync <= 0 {
		c.PresenceSync = 30 * time.Second
	}
	if c.TypingEvery <= 0 {
		c.TypingEvery = 2 * time.Second
	}
	if c.HistoryRate <= 0 {
		c.HistoryRate = 20
	}
	if c.SendRate <= 0 {
		c.SendRate = 20
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.MaxFrame < c.MaxText+256 {
		return fmt.Errorf("edge: frame limit %d is too small for texts of %d bytes", c.MaxFrame, c.MaxText)
	}
	if c.IdleTimeout <= c.PingInterval {
		return fmt.Errorf("edge: idle timeout %s must exceed the ping interval %s", c.IdleTimeout, c.PingInterval)
	}
	return nil
}
