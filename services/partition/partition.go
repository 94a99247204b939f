package partition

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/streams"
	"messenger/subjects"
)

// Kinds of workers.
const (
	KindFanout    = "fanout"
	KindProjector = "projector"
	KindNotifier  = "notifier"
)

// maxMembers bounds the members of one kind read per heartbeat.
const maxMembers = 1024

// Work works partition p until ctx ends, then returns once p is handed
// over (what it read is finished and its checkpoint stored). An error other
// than ctx's stops the whole worker.
type Work func(ctx context.Context, p int) error

// Config of a member. Kind and Partitions are required.
type Config struct {
	// Kind is the kind of worker (KindFanout, KindProjector, KindNotifier): members of one
	// kind share the partitions.
	Kind string
	// ID names this worker among its kind; made a subject token by
	// SanitizeID. Default DefaultID().
	ID string
	// Partitions is the number of partitions to share.
	Partitions int
	// Heartbeat is how often the lease is renewed and the members read.
	// Default 1s; at most a third of streams.WorkersTTL.
	Heartbeat time.Duration
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Kind == "" || strings.ContainsAny(c.Kind, ".*> ") {
		return fmt.Errorf("partition: bad kind %q", c.Kind)
	}
	if c.Partitions <= 0 {
		return fmt.Errorf("partition: %d partitions", c.Partitions)
	}
	if c.Heartbeat > streams.WorkersTTL/3 {
		return fmt.Errorf("partition: heartbeat %s: at most a third of the lease (%s)", c.Heartbeat, streams.WorkersTTL)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID = DefaultID()
	}
	c.ID = SanitizeID(c.ID)
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	return c
}

// DefaultID is the host name and the process id: unique per process.
func DefaultID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// SanitizeID makes id one subject token: characters other than letters,
// digits, '-' and '_' become '_'.
func SanitizeID(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, id)
}

// Member is one worker's membership of its kind and the partitions it owns.
type Member struct {
	cfg Config
	nc  *nats.Conn
	kv  jetstream.KeyValue
	log *zap.Logger
	m   *metrics

	mu      sync.Mutex
	members []string // live members as last read, sorted
	owned   []int
}

// New makes a member; nc and kv (streams.Handles.Workers) carry the lease.
func New(cfg Config, nc *nats.Conn, kv jetstream.KeyValue, log *zap.Logger, reg prometheus.Registerer) (*Member, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil || kv == nil || log == nil {
		return nil, errors.New("partition: missing dependency")
	}
	return &Member{cfg: cfg, nc: nc, kv: kv, log: log.With(zap.String("component", "partition"), zap.String("kind", cfg.Kind), zap.String("worker", cfg.ID)),
		m: newMetrics(reg, cfg.Kind)}, nil
}

// ID is the member's sanitized id.
func (m *Member) ID() string { return m.cfg.ID }

// Members is how many live members of its kind the member saw last (at
// least 1 once it runs: itself).
func (m *Member) Members() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(len(m.members), 1)
}

// Owned is the partitions the member works now, ascending.
func (m *Member) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// Owned is the partitions m works now, or, with ownership off (m nil),
// every one of n partitions.
func Owned(m *Member, n int) []int {
	if m == nil {
		all := make([]int, n)
		for p := range all {
			all[p] = p
		}
		return all
	}
	return m.Owned()
}

// running is the Work of one partition.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Run renews the lease, follows the membership and runs work on the
// partitions the member owns until ctx ends or a Work fails; then every
// partition is handed over and the lease deleted, so the others take them
// at once.
func (m *Member) Run(ctx context.Context, work Work) error {
	wctx, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	runs := make([]*running, m.cfg.Partitions) // the last Work started per partition
	errc := make(chan error, m.cfg.Partitions)
	start := func(p int, delay time.Duration) {
		prev := runs[p]
		pctx, cancel := context.WithCancel(wctx)
		r := &running{cancel: cancel, done: make(chan struct{})}
		runs[p] = r
		go func() {
			defer close(r.done)
			if prev != nil {
				<-prev.done // never two Works of one partition in this process
			}
			if delay > 0 {
				t := time.NewTimer(delay)
				defer t.Stop()
				select {
				case <-t.C:
				case <-pctx.Done():
				}
			}
			if pctx.Err() != nil {
				return
			}
			if err := work(pctx, p); err != nil && pctx.Err() == nil {
				errc <- fmt.Errorf("partition %d: %w", p, err)
			}
		}()
	}
	owned := make([]bool, m.cfg.Partitions)
	var prevMembers []string // nil before the first view
	apply := func(next []bool, members []string) {
		if prevMembers == nil {
			prevMembers = slices.DeleteFunc(slices.Clone(members), func(id string) bool { return id == m.cfg.ID })
		}
		var gained, lost []int
		for p := range next {
			switch {
			case next[p] && !owned[p]:
				gained = append(gained, p)
				// Taken from a live member: it hands the partition over
				// at its next heartbeat; starting after it has (two
				// heartbeats) avoids working the partition twice and
				// starts from the checkpoint it stores. From a dead
				// member, or nobody: at once.
				var delay time.Duration
				if was := Owner(prevMembers, p); was != "" && was != m.cfg.ID && slices.Contains(members, was) {
					delay = 2 * m.cfg.Heartbeat
				}
				start(p, delay)
			case !next[p] && owned[p]:
				lost = append(lost, p)
				runs[p].cancel()
			}
		}
		prevMembers = members
		if len(gained)+len(lost) == 0 {
			return
		}
		owned = next
		m.mu.Lock()
		m.owned = m.owned[:0]
		for p, o := range owned {
			if o {
				m.owned = append(m.owned, p)
			}
		}
		n := len(m.owned)
		m.mu.Unlock()
		m.m.owned.Set(float64(n))
		m.m.handovers.Add(float64(len(gained) + len(lost)))
		m.log.Info("partitions moved", zap.Ints("gained", gained), zap.Ints("lost", lost), zap.Int("owned", n), zap.Strings("members", members))
	}

	t := time.NewTicker(m.cfg.Heartbeat)
	defer t.Stop()
	var err error
loop:
	for {
		if next, members, ok := m.beat(ctx); ok {
			apply(next, members)
		}
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-t.C:
		}
	}
	// Hand every partition over, then leave: the others see the key gone
	// at their next heartbeat and start from the stored checkpoints.
	cancelAll()
	for _, r := range runs {
		if r != nil {
			<-r.done
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if derr := m.kv.Delete(dctx, streams.WorkerKey(m.cfg.Kind, m.cfg.ID)); derr != nil {
		m.log.Warn("leave: delete lease (it expires by itself)", zap.Error(derr))
	}
	m.m.owned.Set(0)
	return err
}

// beat renews the lease and reads the members; ok is false when the
// members could not be read (the assignment stays as it is).
func (m *Member) beat(ctx context.Context) (owned []bool, members []string, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	if _, err := m.kv.Put(ctx, streams.WorkerKey(m.cfg.Kind, m.cfg.ID), []byte(m.cfg.ID)); err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			m.log.Warn("renew lease", zap.Error(err))
		}
		m.m.errors.Inc()
	}
	members, err := ReadMembers(ctx, m.nc, m.cfg.Kind)
	if err != nil {
		m.log.Warn("read members", zap.Error(err))
		m.m.errors.Inc()
		return nil, nil, false
	}
	if !slices.Contains(members, m.cfg.ID) {
		// Our own lease is not there (not renewed while the bucket's
		// leader moved, and expired; or a replica behind): the view is
		// not one this member can act on. Dropping everything now (the
		// chaos run saw the bucket empty after a leader kill) only to
		// take it all back a beat later stalls the partitions behind
		// their hand-overs; keep what it owns until it sees itself.
		m.log.Warn("read members: this worker is not among them yet; keeping its partitions", zap.Strings("members", members))
		m.m.errors.Inc()
		return nil, nil, false
	}
	m.mu.Lock()
	m.members = members
	m.mu.Unlock()
	m.m.members.Set(float64(len(members)))
	owned = make([]bool, m.cfg.Partitions)
	for p := range owned {
		owned[p] = Owner(members, p) == m.cfg.ID
	}
	return owned, members, true
}

// ReadMembers reads the ids of the live workers of kind, sorted: the keys
// of streams.BucketWorkers the TTL has not removed (a deleted key reads
// empty and is left out).
func ReadMembers(ctx context.Context, nc *nats.Conn, kind string) ([]string, error) {
	last, err := streams.ReadLastMatching(ctx, nc, subjects.KVStream(streams.BucketWorkers), streams.WorkersFilter(kind), maxMembers)
	if err != nil {
		return nil, fmt.Errorf("partition: members of %s: %w", kind, err)
	}
	prefix := subjects.KVKey(streams.BucketWorkers, kind+".")
	members := make([]string, 0, len(last))
	for subject, data := range last {
		if len(data) == 0 {
			continue // deleted: the worker left
		}
		members = append(members, strings.TrimPrefix(subject, prefix))
	}
	slices.Sort(members)
	return members, nil
}

// Owner is the member owning partition p (rendezvous hashing: the highest
// score), "" when there are none.
func Owner(members []string, p int) string {
	best, bestScore := "", uint64(0)
	for _, id := range members {
		if s := score(id, p); best == "" || s > bestScore || (s == bestScore && id > best) {
			best, bestScore = id, s
		}
	}
	return best
}

// score mixes a member's id with a partition (FNV-1a, then the splitmix64
// finalizer so that near ids and partitions spread).
func score(id string, p int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	x := h.Sum64() ^ (uint64(p)+1)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// All runs work on every partition until ctx ends (ownership off: every
// worker works every partition, as one worker alone does).
func All(ctx context.Context, partitions int, work Work) error {
	var wg sync.WaitGroup
	errc := make(chan error, partitions)
	for p := 0; p < partitions; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(ctx, p); err != nil {
				errc <- fmt.Errorf("partition %d: %w", p, err)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
