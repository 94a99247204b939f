package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/services/conversation"
	"messenger/services/event"
	"messenger/services/partition"
	"messenger/services/push"
	"messenger/streams"
	"messenger/subjects"
)

// Registry is what the notifier needs of the push registrations
// (services/pushreg): a user's devices, removing one a provider calls
// gone, and whether a conversation is muted for a user.
type Registry interface {
	Devices(ctx context.Context, user string) ([]push.Target, error)
	Remove(ctx context.Context, user, id, reason string) error
	Muted(ctx context.Context, user, conv string, now time.Time) (bool, error)
}

// Config of the notifier. The zero value is valid: see each field.
type Config struct {
	// Coalesce is how long a pending push waits from its first message for
	// more of the same conversation. Default 2s.
	Coalesce time.Duration
	// TTL bounds how long a notification is tried (retries of transient
	// failures stop then) and is the TTL given to the providers; a message
	// older than it when read is not pushed at all. Default 1h.
	TTL time.Duration
	// UserRate is pushes per second per user (bursts of UserBurst); one
	// over it is dropped. Default 1/s, bursts of 10.
	UserRate  float64
	UserBurst int
	// ProviderRate is sends per second per provider: sends over it wait in
	// the provider's queue. Default 500/s.
	ProviderRate float64
	// QueueSize bounds each provider's queue (and its pending retries);
	// what does not fit is dropped and counted. Default 10000.
	QueueSize int
	// Workers sends at once per provider. Default 8.
	Workers int
	// SendTimeout bounds one send. Default 10s.
	SendTimeout time.Duration
	// MaxBackoff caps the wait between retries (a longer Retry-After is
	// honoured). Default 5m.
	MaxBackoff time.Duration
	// OfflineGrace: a user whose last connection on an edge ended less than
	// this ago gets no push (it may be reconnecting). Default 10s, the
	// presence service's offline delay.
	OfflineGrace time.Duration
	// ProbeTimeout bounds the online probe. Default 250ms.
	ProbeTimeout time.Duration
	// Text puts the message text in the push; off by default (who and
	// where only).
	Text bool
	// Deciders decide due pushes at once (each a few NATS round trips).
	// Default 16.
	Deciders int
	// Ownership: work only the partitions this notifier owns among the live
	// notifiers (services/partition). Off: every partition.
	Ownership bool
	// WorkerID names this notifier among the notifiers (default: host name
	// and process id).
	WorkerID string
	// AckWait is the consumer's: how long the unacked events of a notifier
	// that died wait before another notifier reads them. Default
	// streams.NotifierAckWait (30s); at least 3 coalescing windows.
	AckWait time.Duration
}

func (c Config) withDefaults() Config {
	if c.Coalesce <= 0 {
		c.Coalesce = 2 * time.Second
	}
	if c.TTL <= 0 {
		c.TTL = time.Hour
	}
	if c.UserRate <= 0 {
		c.UserRate = 1
	}
	if c.UserBurst <= 0 {
		c.UserBurst = 10
	}
	if c.ProviderRate <= 0 {
		c.ProviderRate = 500
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 10_000
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.OfflineGrace <= 0 {
		c.OfflineGrace = 10 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 250 * time.Millisecond
	}
	if c.Deciders <= 0 {
		c.Deciders = 16
	}
	if c.AckWait <= 0 {
		c.AckWait = streams.NotifierAckWait
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Coalesce > time.Minute/2 {
		return fmt.Errorf("notifier: coalescing window %s: at most 30s (events wait unacked meanwhile)", c.Coalesce)
	}
	if c.AckWait < 3*c.Coalesce {
		return fmt.Errorf("notifier: ack wait %s: at least 3 coalescing windows (%s)", c.AckWait, 3*c.Coalesce)
	}
	if c.TTL < time.Minute {
		return fmt.Errorf("notifier: push TTL %s: at least 1m", c.TTL)
	}
	return nil
}

// Notifier is the push notification service.
type Notifier struct {
	cfg    Config
	nc     *nats.Conn
	h      *streams.Handles
	store  *conversation.Store
	reg    Registry
	log    *zap.Logger
	m      *metrics
	online *onlineCheck
	send   *sender
	users  *userLimits
	member *partition.Member // nil: every partition
	decide chan *pending
}

// New makes a notifier; providers are keyed by platform (push.FCM, ...).
// A device of a platform without a provider is counted and skipped.
func New(cfg Config, nc *nats.Conn, h *streams.Handles, reg Registry, providers []push.Provider, log *zap.Logger, preg prometheus.Registerer) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if nc == nil || h == nil || reg == nil || log == nil {
		return nil, errors.New("notifier: missing dependency")
	}
	log = log.With(zap.String("component", "notifier"))
	m := newMetrics(preg)
	n := &Notifier{cfg: cfg, nc: nc, h: h, store: conversation.NewStore(nc, h, log), reg: reg, log: log, m: m,
		online: newOnlineCheck(nc, h.Layout, cfg.OfflineGrace, cfg.ProbeTimeout),
		users:  newUserLimits(cfg.UserRate, cfg.UserBurst),
		decide: make(chan *pending, 1024)}
	n.send = newSender(cfg, providers, reg, log, m)
	if cfg.Ownership {
		var err error
		n.member, err = partition.New(partition.Config{Kind: partition.KindNotifier, ID: cfg.WorkerID, Partitions: len(h.Conv)}, nc, h.Workers, log, preg)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
	}
	return n, nil
}

// Owned is the partitions this notifier works now.
func (n *Notifier) Owned() []int {
	return partition.Owned(n.member, len(n.h.Conv))
}

// Run works until ctx ends. Pushes still pending then are handed back
// unacked (negative acks), to be coalesced again by whichever notifier
// reads them next; pushes queued to providers are dropped.
func (n *Notifier) Run(ctx context.Context) error {
	sub, err := n.nc.Subscribe(subjects.PresenceEventsAll, n.online.onReport)
	if err != nil {
		return fmt.Errorf("notifier: subscribe to connection reports: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var wg sync.WaitGroup
	workCtx, stopWork := context.WithCancel(context.Background())
	defer func() {
		stopWork()
		wg.Wait()
		// Due pushes no decider took: handed back like the pending ones.
		for {
			select {
			case p := <-n.decide:
				p.finish(true)
			default:
				return
			}
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); n.send.run(workCtx) }()
	for range n.cfg.Deciders {
		wg.Add(1)
		go func() { defer wg.Done(); n.decider(workCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.sweep(workCtx) }()
	if n.member != nil {
		err = n.member.Run(ctx, n.runPartition)
	} else {
		err = partition.All(ctx, len(n.h.Conv), n.runPartition)
	}
	return err
}

// sweep forgets what only matters for a while: old reports of users
// leaving, idle per-user limits.
func (n *Notifier) sweep(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n.online.forget(now)
			n.users.forget(now)
		}
	}
}

// consumer makes or updates the partition's durable consumer: made the
// first time a minute back (what was sent while the platform started is
// pushed), keeping its start when it exists (a start cannot be updated).
func (n *Notifier) consumer(ctx context.Context, part int) (jetstream.Consumer, error) {
	for {
		since := time.Now().Add(-time.Minute)
		if c, err := n.h.Conv[part].Consumer(ctx, streams.NotifierDurable); err == nil {
			if st := c.CachedInfo().Config.OptStartTime; st != nil {
				since = *st
			}
		}
		c, err := n.h.Conv[part].CreateOrUpdateConsumer(ctx, streams.NotifierConsumerConfig(part, n.cfg.AckWait, since))
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n.log.Warn("create consumer", zap.Int("partition", part), zap.Error(err))
		if !sleep(ctx, time.Second) {
			return nil, ctx.Err()
		}
	}
}

// runPartition reads one conversation stream until ctx ends, then hands
// back what is still pending there.
func (n *Notifier) runPartition(ctx context.Context, part int) error {
	cons, err := n.consumer(ctx, part)
	if err != nil {
		return nil
	}
	co := newCoalescer(n.cfg.Coalesce, n.m)
	done := make(chan struct{})
	go func() { defer close(done); co.run(ctx, n.decide) }()
	defer func() {
		<-done
		co.handBack()
	}()
	mc := conversation.NewMetaCache(n.store, 10_000)
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(256), jetstream.PullHeartbeat(5*time.Second))
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				if cons, err = n.consumer(ctx, part); err != nil {
					return nil
				}
				continue
			}
			n.log.Warn("consume", zap.Int("partition", part), zap.Error(err))
			sleep(ctx, time.Second)
			continue
		}
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			msg, err := it.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					break
				}
				if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
					it.Stop()
					if cons, err = n.consumer(ctx, part); err != nil {
						stop()
						return nil
					}
					break
				}
				n.log.Debug("read conversation stream", zap.Int("partition", part), zap.Error(err))
				continue
			}
			n.handle(ctx, mc, co, msg)
		}
		stop()
	}
	return nil
}

// handle takes one stored event: a text message adds a pending push for
// each recipient, a read receipt cancels what it covers.
func (n *Notifier) handle(ctx context.Context, mc *conversation.MetaCache, co *coalescer, msg jetstream.Msg) {
	sp, err := subjects.Parse(msg.Subject())
	if err != nil {
		_ = msg.Term()
		return
	}
	switch sp.Prefix {
	case subjects.ReceiptPrefix:
		var r event.Receipt
		if json.Unmarshal(msg.Data(), &r) == nil && r.Status == event.StatusRead && r.User != "" {
			co.read(r.User, r.Conv, r.Seq)
		}
		_ = msg.Ack()
	case subjects.ConvPrefix:
		var m event.Msg
		if err := json.Unmarshal(msg.Data(), &m); err != nil {
			n.log.Error("skip undecodable event", zap.String("subject", msg.Subject()), zap.Error(err))
			_ = msg.Term()
			return
		}
		// The sender is active in the conversation: what was pending for it
		// there is moot.
		co.read(m.From, m.Conv, m.Seq)
		if m.Kind != event.KindText {
			_ = msg.Ack()
			return
		}
		if age := time.Since(time.UnixMilli(m.TS)); age > n.cfg.TTL {
			n.m.decisions.WithLabelValues("too_old").Inc()
			_ = msg.Ack()
			return
		}
		var recipients []string
		title := ""
		if m.To != "" {
			recipients = []string{m.To}
		} else {
			var streamSeq uint64
			if md, err := msg.Metadata(); err == nil {
				streamSeq = md.Sequence.Stream
			}
			meta, err := mc.Next(ctx, &m, streamSeq)
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("group members", zap.String("conv", m.Conv), zap.Uint64("seq", m.Seq), zap.Error(err))
					_ = msg.NakWithDelay(time.Second)
				}
				return
			}
			recipients, title = meta.MembersAt(m.Seq), meta.Title
			if title == "" {
				title = "group"
			}
		}
		h := newHeld(msg)
		for _, u := range recipients {
			if u != m.From && u != "" {
				co.add(u, &m, title, h)
			}
		}
		h.release(false)
	default:
		_ = msg.Ack()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
