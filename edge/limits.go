package edge

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"messenger/client/proto"
	"messenger/subjects"
)

// Every client write is rate-limited per user (PROTOCOL.md section 9).
// The limits are per edge and need no shared state: a user connected to n
// edges at once may write n times as fast (and hold n times
// MaxConnsPerUser connections), a bound that grows with the edges a client
// can reach, not with its connections.

// writeLimits are the per-user limiters of the writes other than sends.
type writeLimits struct {
	receipt, group, watch, sync, typing, push *limiters
}

func newWriteLimits(r Rates) writeLimits {
	return writeLimits{
		receipt: newLimiters(r.Receipt.PerSecond, r.Receipt.Burst),
		group:   newLimiters(r.Group.PerSecond, r.Group.Burst),
		watch:   newLimiters(r.Watch.PerSecond, r.Watch.Burst),
		sync:    newLimiters(r.Sync.PerSecond, r.Sync.Burst),
		typing:  newLimiters(r.Typing.PerSecond, r.Typing.Burst),
		push:    newLimiters(r.Push.PerSecond, r.Push.Burst),
	}
}

func (w writeLimits) sweep(now time.Time) {
	for _, l := range []*limiters{w.receipt, w.group, w.watch, w.sync, w.typing, w.push} {
		l.sweep(now)
	}
}

// check takes a token of user from l, or answers rate_limited naming what.
func (l *limiters) check(user, what string) *Error {
	if wait, ok := l.allow(user); !ok {
		return &Error{Code: proto.CodeRateLimited, Message: "too many " + what + ": slow down", RetryAfter: wait}
	}
	return nil
}

// connLimit counts each user's connections (and held long polls) on this
// edge, up to max.
type connLimit struct {
	max    int
	shards [32]struct {
		mu sync.Mutex
		n  map[string]int
	}
}

// connRetry is the Retry-After of a connection refused over the cap: a
// connection of the user has to close first.
const connRetry = 10 * time.Second

func newConnLimit(max int) *connLimit {
	c := &connLimit{max: max}
	for i := range c.shards {
		c.shards[i].n = make(map[string]int)
	}
	return c
}

// acquire counts one more connection of user, or answers rate_limited if
// it holds max already.
func (c *connLimit) acquire(user string) *Error {
	s := &c.shards[subjects.Partition(user, len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[user] >= c.max {
		return &Error{Code: proto.CodeRateLimited, RetryAfter: connRetry,
			Message: "too many connections of this user on this edge: close one first"}
	}
	s.n[user]++
	return nil
}

func (c *connLimit) release(user string) {
	s := &c.shards[subjects.Partition(user, len(c.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[user] <= 1 {
		delete(s.n, user)
	} else {
		s.n[user]--
	}
}

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
