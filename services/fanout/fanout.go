package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/services/conversation"
	"messenger/services/event"
	"messenger/services/partition"
	"messenger/streams"
	"messenger/subjects"
)

// Config of the fan-out. The zero value is valid.
type Config struct {
	// Shards is the number of queue-writer goroutines. Default 64.
	Shards int
	// ShardQueue is how many writes wait per shard before the stream readers
	// block (back-pressure). Default 1024.
	ShardQueue int
	// CheckpointEvery is how often the checkpoint of each conversation
	// stream is saved, and the changed conversation summaries with it
	// (several events of a conversation within it make one summary write;
	// a reader of the list has a user's summaries stored at once, see
	// subjects.FanoutFlush). Default 5s: a conversation's events within it
	// make one summary write per member, and the watermarks one write per
	// member (docs/BENCHMARKS.md); the shards flush one after the other, so
	// a flush is no burst. A fan-out that crashes replays at most this much.
	CheckpointEvery time.Duration
	// UserCache is how many users' queue positions are kept in memory. Default 200,000.
	UserCache int
	// InboxCache is how many conversation summaries are kept in memory. Default 200,000.
	InboxCache int
	// StopGrace bounds, at stop, the time to finish the writes already read. Default 5s.
	StopGrace time.Duration
	// Ownership: work only the partitions this fan-out owns among the live
	// fan-outs (services/partition), handing them over as fan-outs come and
	// go. Off (the zero value): every partition, whoever else runs.
	Ownership bool
	// WorkerID names this fan-out among the fan-outs (default: host name
	// and process id).
	WorkerID string
}

func (c Config) withDefaults() Config {
	if c.Shards <= 0 {
		c.Shards = 64
	}
	if c.ShardQueue <= 0 {
		c.ShardQueue = 1024
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = 5 * time.Second
	}
	if c.UserCache <= 0 {
		c.UserCache = 200_000
	}
	if c.InboxCache <= 0 {
		c.InboxCache = 200_000
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	return c
}

// Fanout is the fan-out service.
type Fanout struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	h      *streams.Handles
	log    *zap.Logger
	m      *metrics
	shards []*shard
	marks  *watermarks
	convs  *conversation.Store // groups' metadata
	live   liveReceipts
	member *partition.Member // nil: every partition
	// floors are the partitions being worked, by partition; saveMu orders
	// the checkpoint writes of the periodic save and of a hand-over.
	floorsMu sync.Mutex
	floors   map[int]*floor
	saveMu   sync.Mutex
	// flushedFrom (under saveMu): when the last flush of every summary
	// and watermark that succeeded began.
	flushedFrom time.Time
	// stopped: the shards' channels are closed (no more flush requests);
	// flushMu orders a request's queueing before the close.
	stopped atomic.Bool
	flushMu sync.RWMutex
}

// New makes a fan-out over the streams in h.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, h *streams.Handles, log *zap.Logger, reg prometheus.Registerer) (*Fanout, error) {
	if nc == nil || js == nil || h == nil || log == nil {
		return nil, errors.New("fanout: missing dependency")
	}
	cfg = cfg.withDefaults()
	f := &Fanout{cfg: cfg, nc: nc, js: js, h: h, log: log.With(zap.String("component", "fanout")), m: newMetrics(reg), floors: map[int]*floor{}}
	if cfg.Ownership {
		var err error
		f.member, err = partition.New(partition.Config{Kind: partition.KindFanout, ID: cfg.WorkerID, Partitions: len(h.Conv)}, nc, h.Workers, log, reg)
		if err != nil {
			return nil, fmt.Errorf("fanout: %w", err)
		}
	}
	f.marks = newWatermarks(js, h.Watermarks)
	f.convs = conversation.NewStore(nc, h, f.log)
	for i := 0; i < cfg.Shards; i++ {
		f.shards = append(f.shards, &shard{f: f, in: make(chan write, cfg.ShardQueue),
			users: newUserCache(cfg.UserCache / cfg.Shards), inbox: newInboxCache(cfg.InboxCache/cfg.Shards + 16)})
	}
	return f, nil
}

// Run fans out until ctx ends, then finishes the writes it started, saves
// its checkpoints and returns.
func (f *Fanout) Run(ctx context.Context) error {
	var writers sync.WaitGroup
	// Writers outlive ctx so that what was read is written before stopping.
	wctx, cancelWriters := context.WithCancel(context.Background())
	defer cancelWriters()
	for _, s := range f.shards {
		writers.Add(1)
		go func() { defer writers.Done(); s.run(wctx) }()
	}
	// Summaries asked for by a reader of the conversation list are stored
	// at once, so that the list shows every event the fan-out handled
	// however long the flush interval.
	flushSub, err := f.nc.Subscribe(subjects.FanoutFlush, func(m *nats.Msg) { go f.flushUser(m) })
	if err != nil {
		cancelWriters()
		return fmt.Errorf("fanout: subscribe %s: %w", subjects.FanoutFlush, err)
	}
	stopSaving := make(chan struct{})
	saved := make(chan struct{})
	go func() { defer close(saved); f.saveCheckpoints(stopSaving) }()
	go f.runLiveReceipts(stopSaving, time.Second)

	// What was read gets a bounded time to be written once ctx ends: a write
	// that cannot be stored (NATS gone) is left to the next run, from the
	// checkpoint. The bound starts at ctx's end, not when the partitions
	// return: their hand-over waits on the shards, and a shard retrying a
	// write that cannot succeed would otherwise hold the stop forever.
	stopWriters := context.AfterFunc(ctx, func() { time.AfterFunc(f.cfg.StopGrace, cancelWriters) })
	defer stopWriters()
	work := func(pctx context.Context, p int) error { return f.workPartition(ctx, pctx, p) }
	var runErr error
	if f.member != nil {
		runErr = f.member.Run(ctx, work)
	} else {
		runErr = partition.All(ctx, len(f.h.Conv), work)
	}
	_ = flushSub.Unsubscribe()
	if ctx.Err() == nil { // the partitions ended on an error: the same bound from now
		grace := time.AfterFunc(f.cfg.StopGrace, cancelWriters)
		defer grace.Stop()
	}
	close(stopSaving)
	<-saved
	f.flushMu.Lock() // no flush request is being queued while the shards' channels close
	f.stopped.Store(true)
	f.flushMu.Unlock()
	for _, s := range f.shards {
		close(s.in) // each shard stores its changed summaries as it ends
	}
	writers.Wait()
	for _, s := range f.shards {
		if s.unsaved {
			f.log.Warn("stop: summaries not stored; the checkpoints stay where they were")
			return runErr
		}
	}
	f.saveOnce(map[int]uint64{})
	return runErr
}

// workPartition fans out partition p from its checkpoint until pctx ends.
// Then, with ownership (or when only pctx ended: ctx is the whole run's),
// the partition is handed over: what was read is written, the summaries and
// watermarks stored, then its checkpoint, from which the next owner starts.
// Without ownership, when the whole run ends, Run stores everything at once.
func (f *Fanout) workPartition(ctx, pctx context.Context, p int) error {
	cp, err := f.loadCheckpoint(pctx, p)
	for backoff := retryFirst; err != nil && !permanent(err); backoff = nextBackoff(backoff) {
		// NATS away (a node paused, a leader moving) when the partition
		// starts, or is gained: try again rather than stop the fan-out
		// and its other partitions.
		if pctx.Err() != nil {
			return nil // the partition was lost meanwhile: nothing to retry
		}
		f.m.partitionRetries.WithLabelValues("checkpoint").Inc()
		f.log.Warn("load checkpoint, retrying", zap.Int("partition", p), zap.Duration("in", backoff), zap.Error(err))
		if !sleep(pctx, backoff) {
			return nil
		}
		cp, err = f.loadCheckpoint(pctx, p)
	}
	if err != nil {
		// A stored checkpoint that does not parse: where to start from is
		// the operator's call (ARCHITECTURE.md, "KV fanout lost").
		return err
	}
	if f.member != nil {
		// Another fan-out may have worked p meanwhile: what this one
		// remembers of p's watermarks may be behind the stored ones.
		f.marks.forget(func(conv string) bool { return f.h.Layout.ConvPartition(conv) == p })
	}
	fl := newFloor(cp)
	f.floorsMu.Lock()
	f.floors[p] = fl
	f.floorsMu.Unlock()
	err = f.runPartition(pctx, p, fl)
	if ctx.Err() == nil || f.member != nil {
		// With ownership, a whole stop hands over too, before the lease
		// is deleted and the others take the partition.
		f.handOver(p, fl)
	}
	return err
}

// handOver finishes partition p's writes (for at most StopGrace), stores
// the summaries and watermarks, then p's checkpoint, and forgets p. A flush
// that began once p's writes were finished covers p: partitions lost
// together (a membership change) share one flush instead of one each, one
// after the other (a regained partition waits for its previous hand-over:
// the chaos run's two-minute stall of partition 3).
func (f *Fanout) handOver(p int, fl *floor) {
	deadline := time.Now().Add(f.cfg.StopGrace)
	for !fl.idle() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	finished := time.Now() // what p's finished writes changed is in memory by now
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	f.floorsMu.Lock()
	delete(f.floors, p)
	f.floorsMu.Unlock()
	if !f.flushedFrom.After(finished) && !f.flushAll("hand over", zap.Int("partition", p)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := fl.value()
	if _, err := f.h.Fanout.Put(ctx, streams.FanoutCheckpointKey(p), []byte(strconv.FormatUint(v, 10))); err != nil {
		f.log.Warn("hand over: save checkpoint", zap.Int("partition", p), zap.Error(err))
		return
	}
	f.m.checkpoints.WithLabelValues(strconv.Itoa(p)).Set(float64(v))
	f.log.Info("partition handed over", zap.Int("partition", p), zap.Uint64("checkpoint", v))
}

// Members is how many fan-outs share the partitions as this one sees it (1
// without ownership).
func (f *Fanout) Members() int {
	if f.member == nil {
		return 1
	}
	return f.member.Members()
}

// Owned is the partitions this fan-out works now.
func (f *Fanout) Owned() []int {
	return partition.Owned(f.member, len(f.h.Conv))
}

func (f *Fanout) loadCheckpoint(ctx context.Context, p int) (uint64, error) {
	e, err := f.h.Fanout.Get(ctx, streams.FanoutCheckpointKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fanout: load checkpoint %d: %w", p, err)
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, bad(fmt.Errorf("fanout: checkpoint %d: %q: %w", p, e.Value(), err))
	}
	return n, nil
}

// saveCheckpoints saves, every CheckpointEvery, how far each conversation
// stream is fanned out. The summaries the shards changed are stored first,
// so a checkpoint never passes an event whose effects are only in memory.
func (f *Fanout) saveCheckpoints(stop <-chan struct{}) {
	saved := map[int]uint64{}
	t := time.NewTicker(f.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f.saveOnce(saved)
		}
	}
}

// saveOnce flushes the shards (when they run) and saves the checkpoints of
// the partitions worked that moved; saved holds what was saved last (a
// partition absent from it: nothing yet).
func (f *Fanout) saveOnce(saved map[int]uint64) {
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	values := map[int]uint64{}
	moved := false
	f.floorsMu.Lock()
	for p, fl := range f.floors {
		values[p] = fl.value()
		prev, ok := saved[p]
		moved = moved || !ok || values[p] != prev
	}
	f.floorsMu.Unlock()
	if !moved {
		return
	}
	if !f.flushAll("save checkpoints") {
		return
	}
	for p, v := range values {
		if prev, ok := saved[p]; ok && v == prev {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := f.h.Fanout.Put(ctx, streams.FanoutCheckpointKey(p), []byte(strconv.FormatUint(v, 10)))
		cancel()
		if err != nil {
			f.log.Warn("save checkpoint", zap.Int("partition", p), zap.Error(err))
			continue
		}
		saved[p] = v
		f.m.checkpoints.WithLabelValues(strconv.Itoa(p)).Set(float64(v))
	}
}

// flushUser answers a FanoutFlush request: the user's changed summaries
// are stored (by the user's shard, after the writes queued before), and
// every changed watermark, then the answer goes. No answer once the shards have stopped.
func (f *Fanout) flushUser(m *nats.Msg) {
	user := string(m.Data)
	if user == "" || f.stopped.Load() {
		return
	}
	done := make(chan struct{})
	f.flushMu.RLock()
	if f.stopped.Load() {
		f.flushMu.RUnlock()
		return
	}
	f.shardOf(user).in <- write{flush: done, user: user}
	f.flushMu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.marks.flush(ctx)
	cancel()
	<-done
	// The answer is how many fan-outs share the partitions: the reader
	// waits for that many answers (each holds some users' summaries).
	_ = m.Respond([]byte(strconv.Itoa(f.Members())))
}

// flushAll stores the changed summaries (unless the shards have stopped:
// Run checks what they left) and the changed watermarks; it reports whether
// all were stored, logging why not. Called with saveMu held.
func (f *Fanout) flushAll(what string, fields ...zap.Field) bool {
	began := time.Now()
	if !f.stopped.Load() && !f.flushShards() {
		f.log.Warn(what+": summaries not stored; the checkpoints stay where they were", fields...)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !f.marks.flush(ctx) {
		f.log.Warn(what+": watermarks not stored; the checkpoints stay where they were", fields...)
		return false
	}
	if !f.stopped.Load() {
		f.flushedFrom = began
	}
	return true
}

// flushShards asks every shard to store its changed summaries and waits;
// it reports whether every one was stored (false as well once the shards
// have stopped: Run checks what they left). The shards flush one after the
// other: each flush is a pipelined burst of writes, and all of them at once
// would make the queue writes behind them wait (the tail of delivery
// latency); one at a time, the other shards go on writing.
func (f *Fanout) flushShards() bool {
	var unsaved atomic.Bool
	for _, s := range f.shards {
		if f.stopped.Load() {
			return false
		}
		done := make(chan struct{})
		s.in <- write{flush: done, unsaved: &unsaved}
		<-done
	}
	return !unsaved.Load()
}

// orderedHeartbeat is the idle heartbeat asked of a partition's ordered
// consumer: two missed (its server or the consumer gone, the connection
// moved) and the library re-creates the consumer from the last sequence
// read. The library's default (5s) let a dead node stall the partition
// about 11s; this costs one small message a second per idle partition.
const orderedHeartbeat = time.Second

// runPartition reads conversation stream p in order from its checkpoint
// until ctx ends, whatever NATS does meanwhile.
func (f *Fanout) runPartition(ctx context.Context, p int, fl *floor) error {
	next := fl.value() + 1 // the first sequence not dispatched yet
	backoff := retryFirst
	for {
		step, err := f.readPartition(ctx, p, fl, &next, &backoff)
		if ctx.Err() != nil {
			return nil
		}
		// A consumer that cannot be made now (NATS away) or a reader
		// that stopped: a new one from the next sequence, never a stop
		// of the fan-out nor a partition left unread.
		f.m.partitionRetries.WithLabelValues(step).Inc()
		f.log.Warn("read conversation stream, starting again", zap.Int("partition", p), zap.String("step", step),
			zap.Uint64("from", next), zap.Duration("in", backoff), zap.Error(err))
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = nextBackoff(backoff)
	}
}

// readPartition reads conversation stream p from *next with an ordered
// consumer until ctx ends or the reader fails, advancing *next past each
// event dispatched (and resetting *backoff once events flow). It returns
// the step that failed and why.
func (f *Fanout) readPartition(ctx context.Context, p int, fl *floor, next *uint64, backoff *time.Duration) (string, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if *next > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = *next
	}
	cons, err := f.h.Conv[p].OrderedConsumer(ctx, cfg)
	if err != nil {
		return "consumer", fmt.Errorf("fanout: consumer on %s: %w", streams.ConvStream(p), err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512), jetstream.PullHeartbeat(orderedHeartbeat))
	if err != nil {
		return "consumer", fmt.Errorf("fanout: messages of %s: %w", streams.ConvStream(p), err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	mc := conversation.NewMetaCache(f.convs, 10_000)
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return "read", ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				// Closed under us (the library gave up on its consumer).
				return "read", fmt.Errorf("fanout: read %s: %w", streams.ConvStream(p), err)
			}
			f.log.Warn("read conversation stream", zap.Int("partition", p), zap.Error(err))
			if !sleep(ctx, retryFirst) {
				return "read", ctx.Err()
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			f.log.Error("message without metadata", zap.Error(err))
			continue
		}
		seq := meta.Sequence.Stream
		if seq < *next {
			continue // read already, before the consumer was made again
		}
		if !f.dispatch(ctx, mc, p, seq, msg.Subject(), msg.Data(), fl) {
			return "read", ctx.Err()
		}
		*next, *backoff = seq+1, retryFirst
	}
}

// dispatch turns one source event into queue writes. It returns false when
// ctx ended before the event was handled: the event is then left for the
// next run (the checkpoint does not pass it). A transient failure (a
// metadata read timing out while a node is paused) is retried with a
// backoff until the event is handled or ctx ends: the partition waits, it
// never skips an acked event. Only an event no retry can handle
// (permanent) is skipped, counted and logged at error level.
func (f *Fanout) dispatch(ctx context.Context, mc *metaCache, p int, seq uint64, subject string, data []byte, fl *floor) bool {
	sp, err := subjects.Parse(subject)
	if err != nil {
		f.skipEvent(subject, seq, bad(err))
		fl.start(seq, 0)
		return true
	}
	var recipients []string
	var w write
	backoff := retryFirst
	for attempt := 0; ; attempt++ {
		w = write{doc: data, part: p, src: seq, fl: fl}
		recipients, err = f.recipients(ctx, mc, sp.Prefix, seq, data, &w, attempt == 0)
		if ctx.Err() != nil {
			return false
		}
		if err == nil || permanent(err) {
			break
		}
		f.m.eventRetries.Inc()
		if attempt%10 == 0 {
			f.log.Warn("event not handled yet, retrying", zap.Int("partition", p), zap.String("subject", subject),
				zap.Uint64("seq", seq), zap.Int("attempt", attempt+1), zap.Error(err))
		}
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = nextBackoff(backoff)
	}
	if err != nil {
		f.skipEvent(subject, seq, err)
		recipients = nil
	}
	fl.start(seq, len(recipients))
	for _, u := range recipients {
		w.user = u
		f.shardOf(u).in <- w
	}
	return true
}

// recipients decodes one event into w and returns who gets it; count: the
// first attempt at this event (the events metric counts each once).
func (f *Fanout) recipients(ctx context.Context, mc *metaCache, prefix string, seq uint64, data []byte, w *write, count bool) ([]string, error) {
	var recipients []string
	var err error
	switch prefix {
	case subjects.ConvPrefix:
		if count {
			f.m.events.WithLabelValues(event.TypeMsg).Inc()
		}
		w.msg = new(event.Msg)
		recipients, w.group, err = f.msgRecipients(ctx, mc, seq, data, w.msg)
	case subjects.ReceiptPrefix:
		if count {
			f.m.events.WithLabelValues(event.TypeReceipt).Inc()
		}
		w.rcpt = new(receiptDoc)
		recipients, w.doc, err = f.receipt(ctx, mc, seq, data, w.rcpt)
	}
	return recipients, err
}

// skipEvent records an event skipped for good: a malformed one would
// otherwise block its partition forever.
func (f *Fanout) skipEvent(subject string, seq uint64, err error) {
	f.m.badEvents.Inc()
	f.log.Error("skip bad event", zap.String("subject", subject), zap.Uint64("seq", seq), zap.Error(err))
}

// msgRecipients: for a direct message its two members; for a group event
// the members as of its seq (and a removed member gets its own removal).
// The event is decoded into m, once for all its recipients; a group's
// metadata, folded at least up to the event (at stream sequence
// streamSeq), is returned with them.
func (f *Fanout) msgRecipients(ctx context.Context, mc *metaCache, streamSeq uint64, data []byte, m *event.Msg) ([]string, *event.Meta, error) {
	if err := json.Unmarshal(data, m); err != nil {
		return nil, nil, bad(fmt.Errorf("decode msg: %w", err))
	}
	if m.To != "" {
		return []string{m.From, m.To}, nil, nil
	}
	meta, err := mc.Next(ctx, m, streamSeq)
	if err != nil {
		return nil, nil, err
	}
	return meta.Recipients(m.Seq, m.Kind, m.User), meta, nil
}

func (f *Fanout) shardOf(user string) *shard {
	return f.shards[subjects.Partition(user, len(f.shards))]
}
