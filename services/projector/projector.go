package projector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/services/partition"
	"messenger/streams"
	"messenger/subjects"
)

// Config of the projector. The zero value is valid.
type Config struct {
	// BatchSize bounds the events of one insert. Default 5000.
	BatchSize int
	// BatchWait bounds how long a batch waits to fill. Default 5s: every
	// insert makes a ClickHouse part, so fewer, larger inserts cost it far
	// less CPU (a quarter at 1,000 msg/s against 1s, docs/BENCHMARKS.md);
	// history pages do not wait for the projection (they read what
	// ClickHouse lacks from the stream).
	BatchWait time.Duration
	// MaxTries is how many times an event ClickHouse rejects is tried on its
	// own before it becomes a dead letter. Default 5.
	MaxTries int
	// MaxBackoff caps the wait between retries while ClickHouse is away. Default 5s.
	MaxBackoff time.Duration
	// Ownership: project only the partitions this projector owns among the
	// live projectors (services/partition), handing them over as projectors
	// come and go. Off (the zero value): every partition.
	Ownership bool
	// WorkerID names this projector among the projectors (default: host
	// name and process id).
	WorkerID string
	// HistoryCheckEvery is how often the projector checks its partitions
	// for events missing from ClickHouse and repairs them (check.go); the
	// first check is at most 30s after the start. Zero: never.
	HistoryCheckEvery time.Duration
}

func (c Config) withDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 5 * time.Second
	}
	if c.MaxTries <= 0 {
		c.MaxTries = 5
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	return c
}

// Projector is the ClickHouse projection service.
type Projector struct {
	cfg Config
	js  jetstream.JetStream
	h   *streams.Handles
	ch  driver.Conn
	log *zap.Logger
	m   *metrics
	// member is this projector's share of the partitions; nil: all.
	member *partition.Member
}

// New makes a projector writing to ch.
func New(cfg Config, js jetstream.JetStream, h *streams.Handles, ch driver.Conn, log *zap.Logger, reg prometheus.Registerer) (*Projector, error) {
	if js == nil || h == nil || ch == nil || log == nil {
		return nil, errors.New("projector: missing dependency")
	}
	p := &Projector{cfg: cfg.withDefaults(), js: js, h: h, ch: ch, log: log.With(zap.String("component", "projector")), m: newMetrics(reg)}
	if cfg.Ownership {
		var err error
		p.member, err = partition.New(partition.Config{Kind: partition.KindProjector, ID: cfg.WorkerID, Partitions: len(h.Conv)}, js.Conn(), h.Workers, log, reg)
		if err != nil {
			return nil, fmt.Errorf("projector: %w", err)
		}
	}
	return p, nil
}

// Owned is the partitions this projector works now.
func (p *Projector) Owned() []int {
	return partition.Owned(p.member, len(p.h.Conv))
}

// Run projects until ctx ends; a batch being inserted then is finished and
// acked (or left unacked, for the next run, if ClickHouse is away).
func (p *Projector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.watchLag(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); p.watchHoles(ctx, p.Owned) }()
	defer wg.Wait()
	if p.member != nil {
		return p.member.Run(ctx, p.runPartition)
	}
	return partition.All(ctx, len(p.h.Conv), p.runPartition)
}

func (p *Projector) consumer(ctx context.Context, part int) (jetstream.Consumer, error) {
	for {
		c, err := p.h.Conv[part].CreateOrUpdateConsumer(ctx, streams.ProjectorConsumerConfig(part))
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.log.Warn("create consumer", zap.Int("partition", part), zap.Error(err))
		sleep(ctx, time.Second)
	}
}

func (p *Projector) runPartition(ctx context.Context, part int) error {
	cons, err := p.consumer(ctx, part)
	if err != nil {
		return nil
	}
	// next is the first stream sequence not known to be in ClickHouse: every
	// batch is inserted together with whatever lies between next and it
	// (gap.go), so that its AckAll never covers an event nobody inserted.
	next := cons.CachedInfo().AckFloor.Stream + 1
	for ctx.Err() == nil {
		batch, err := cons.Fetch(p.cfg.BatchSize, jetstream.FetchMaxWait(p.cfg.BatchWait))
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				// Deleted under us (a rebuild resets it): make it again, from the start.
				if cons, err = p.consumer(ctx, part); err != nil {
					return nil
				}
				next = cons.CachedInfo().AckFloor.Stream + 1
				continue
			}
			p.log.Warn("fetch", zap.Int("partition", part), zap.Error(err))
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				if cons, err = p.consumer(ctx, part); err != nil {
					return nil
				}
				next = cons.CachedInfo().AckFloor.Stream + 1
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		b, err := p.closeGaps(ctx, part, cons, next, msgs)
		if err != nil {
			return nil // ctx ended with the batch unacked: it is redelivered next run
		}
		if err := p.project(ctx, part, b.events); err != nil {
			return nil
		}
		if err := b.last.DoubleAck(ctx); err != nil {
			p.log.Warn("ack batch", zap.Int("partition", part), zap.Error(err))
		}
		next = max(next, b.hi+1)
		if meta, err := b.last.Metadata(); err == nil {
			p.m.projected.WithLabelValues(strconv.Itoa(part)).Set(float64(meta.Sequence.Stream))
			p.m.lastTime.WithLabelValues(strconv.Itoa(part)).Set(float64(meta.Timestamp.UnixNano()) / 1e9)
		}
	}
	return nil
}

// storedEvent is one event of a conversation stream, fetched by the
// consumer or read from the stream itself.
type storedEvent struct {
	subject   string
	data      []byte
	streamSeq uint64
}

// project inserts events; it returns only when every event is in
// ClickHouse or in the dead letters, or when ctx ends.
func (p *Projector) project(ctx context.Context, part int, events []storedEvent) error {
	byTable := map[string][]row{}
	for _, e := range events {
		rows, err := toRows(e.subject, e.data, part, e.streamSeq)
		if err != nil {
			if derr := p.deadLetter(ctx, e.subject, e.data, part, e.streamSeq, err.Error()); derr != nil {
				return derr
			}
			continue
		}
		for _, r := range rows {
			byTable[r.table] = append(byTable[r.table], r)
		}
	}
	for _, table := range []string{"messages", "membership", "conversations", "receipts"} {
		rows := byTable[table]
		if table == "conversations" {
			// The groups whose membership changed, folded from the
			// membership rows just inserted (conversations.go).
			groups, err := p.changedGroups(ctx, part, byTable["membership"])
			if err != nil {
				return err
			}
			rows = append(rows, groups...)
		}
		if len(rows) > 0 {
			if err := p.insertRows(ctx, part, table, rows); err != nil {
				return err
			}
		}
	}
	p.m.events.Add(float64(len(events)))
	return nil
}

// insertRows inserts rows into table, retrying while ClickHouse is away;
// if ClickHouse keeps rejecting the batch, rows are tried one by one and
// those it rejects MaxTries times become dead letters.
func (p *Projector) insertRows(ctx context.Context, part int, table string, rows []row) error {
	backoff := 100 * time.Millisecond
	rejected := 0
	for {
		err := p.insert(ctx, table, rows)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.m.insertErrors.Inc()
		if isRejection(err) {
			if rejected++; rejected >= p.cfg.MaxTries {
				return p.oneByOne(ctx, part, table, rows)
			}
		} else {
			p.log.Warn("clickhouse unavailable, retrying", zap.String("table", table), zap.Int("rows", len(rows)), zap.Error(err))
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, p.cfg.MaxBackoff)
	}
}

func (p *Projector) oneByOne(ctx context.Context, part int, table string, rows []row) error {
	for _, r := range rows {
		tries := 0
		for {
			err := p.insert(ctx, table, []row{r})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isRejection(err) {
				if tries++; tries >= p.cfg.MaxTries {
					if derr := p.deadLetter(ctx, r.subject, r.data, part, r.streamSeq, table+": "+err.Error()); derr != nil {
						return derr
					}
					break
				}
			}
			if !sleep(ctx, 50*time.Millisecond*time.Duration(tries+1)) {
				return ctx.Err()
			}
		}
	}
	return nil
}

func (p *Projector) insert(ctx context.Context, table string, rows []row) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := p.ch.PrepareBatch(ctx, inserts[table])
	if err != nil {
		return fmt.Errorf("prepare %s: %w", table, err)
	}
	for _, r := range rows {
		if err := b.Append(r.values...); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append %s: %w", table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %s: %w", table, err)
	}
	return nil
}

// isRejection tells a ClickHouse server exception (the server said no) from
// a network error (the server was not there).
func isRejection(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex)
}

// deadLetter stores an event the projector gives up on, with the reason.
func (p *Projector) deadLetter(ctx context.Context, subject string, data []byte, part int, streamSeq uint64, reason string) error {
	msg := &nats.Msg{Subject: subjects.DeadLetters("projector"), Data: data, Header: nats.Header{}}
	msg.Header.Set(streams.DeadSubjectHeader, subject)
	msg.Header.Set(streams.DeadStreamHeader, streams.ConvStream(part))
	msg.Header.Set(streams.DeadSequenceHeader, strconv.FormatUint(streamSeq, 10))
	msg.Header.Set(streams.DeadReasonHeader, reason)
	msg.Header.Set(streams.DeadComponentHeader, "projector")
	msg.Header.Set(jetstream.MsgIDHeader, "projector:"+streams.ConvStream(part)+":"+strconv.FormatUint(streamSeq, 10))
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			p.m.deadLetters.Inc()
			p.log.Error("dead letter", zap.String("subject", subject), zap.Uint64("stream_seq", streamSeq), zap.String("reason", reason))
			return nil
		}
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
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
