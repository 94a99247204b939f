package edge

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"messenger/subjects"
)

// limiters holds a token bucket per user that sent recently on this edge.
// The limit is per edge: a user spread over n edges may send n times as
// fast, which keeps the check free of any shared state.
type limiters struct {
	rate   rate.Limit
	burst  int
	shards [32]struct {
		mu sync.Mutex
		m  map[string]*userLimiter
	}
}

type userLimiter struct {
	l    *rate.Limiter
	used time.Time
}

func newLimiters(perSecond float64, burst int) *limiters {
	l := &limiters{rate: rate.Limit(perSecond), burst: burst}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*userLimiter)
	}
	return l
}

// allow takes a token for user, or says how long to wait for one.
func (l *limiters) allow(user string) (time.Duration, bool) {
	s := &l.shards[subjects.Partition(user, len(l.shards))]
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ul := s.m[user]
	if ul == nil {
		ul = &userLimiter{l: rate.NewLimiter(l.rate, l.burst)}
		s.m[user] = ul
	}
	ul.used = now
	r := ul.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep forgets users idle for longer than it takes to refill a bucket.
func (l *limiters) sweep(now time.Time) {
	idle := time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)) + time.Second
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for u, ul := range s.m {
			if now.Sub(ul.used) > idle {
				delete(s.m, u)
			}
		}
		s.mu.Unlock()
	}
}

// inflight counts requests that store something, so that a drain can wait
// for them; once closed it admits none.
type inflight struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inflight) leave() { f.wg.Done() }

// close admits no more requests and waits for those inside, up to timeout.
func (f *inflight) close(timeout time.Duration) bool {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
