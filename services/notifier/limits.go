package notifier

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// userLimits is a token bucket per user, for the pushes it gets; idle
// buckets are forgotten.
type userLimits struct {
	r     rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newUserLimits(perSecond float64, burst int) *userLimits {
	return &userLimits{r: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

func (u *userLimits) allow(user string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.m[user]
	if l == nil {
		l = rate.NewLimiter(u.r, u.burst)
		u.m[user] = l
	}
	return l.AllowN(now, 1)
}

// forget drops the buckets that are full again: they would allow as much
// as a new one.
func (u *userLimits) forget(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, l := range u.m {
		if l.TokensAt(now) >= float64(u.burst) {
			delete(u.m, k)
		}
	}
}
