package notifier

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"messenger/services/push"
)

// job is one notification to one device.
type job struct {
	target   push.Target
	note     push.Notification
	deadline time.Time // given up after it
	attempt  int
}

// providerQueue is one provider's bounded queue and workers: a provider
// that hangs or is down fills only its own queue.
type providerQueue struct {
	name     string
	prov     push.Provider
	q        chan job
	lim      *rate.Limiter
	retrying atomic.Int64 // retries waiting for their backoff
}

// sender sends jobs through the providers.
type sender struct {
	cfg    Config
	reg    Registry
	log    *zap.Logger
	m      *metrics
	queues map[string]*providerQueue
}

func newSender(cfg Config, providers []push.Provider, reg Registry, log *zap.Logger, m *metrics) *sender {
	s := &sender{cfg: cfg, reg: reg, log: log, m: m, queues: map[string]*providerQueue{}}
	for _, p := range providers {
		if p == nil {
			continue
		}
		s.queues[p.Platform()] = &providerQueue{name: p.Platform(), prov: p, q: make(chan job, cfg.QueueSize),
			lim: rate.NewLimiter(rate.Limit(cfg.ProviderRate), max(1, int(cfg.ProviderRate/10)))}
	}
	return s
}

// has tells whether platform has a provider.
func (s *sender) has(platform string) bool { return s.queues[platform] != nil }

// enqueue queues j for its device's provider; it never blocks.
func (s *sender) enqueue(j job) {
	pq := s.queues[j.target.Platform]
	if pq == nil {
		s.m.sent.WithLabelValues(j.target.Platform, "no_provider").Inc()
		return
	}
	select {
	case pq.q <- j:
		s.m.queue.WithLabelValues(pq.name).Inc()
	default:
		s.m.sent.WithLabelValues(pq.name, "dropped").Inc()
		s.log.Warn("push queue full, dropped", zap.String("provider", pq.name), zap.String("user", j.target.User))
	}
}

// run works every provider's queue until ctx ends; what is queued then is
// dropped.
func (s *sender) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, pq := range s.queues {
		for range s.cfg.Workers {
			wg.Add(1)
			go func() { defer wg.Done(); s.work(ctx, pq) }()
		}
	}
	wg.Wait()
}

func (s *sender) work(ctx context.Context, pq *providerQueue) {
	for {
		var j job
		select {
		case <-ctx.Done():
			return
		case j = <-pq.q:
			s.m.queue.WithLabelValues(pq.name).Dec()
		}
		if err := pq.lim.Wait(ctx); err != nil {
			return
		}
		s.sendOne(ctx, pq, j)
	}
}

// sendOne sends j once and deals with the answer.
func (s *sender) sendOne(ctx context.Context, pq *providerQueue, j job) {
	now := time.Now()
	if !now.Before(j.deadline) {
		s.m.sent.WithLabelValues(pq.name, "expired").Inc()
		return
	}
	j.note.TTL = j.deadline.Sub(now)
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	err := pq.prov.Send(sctx, j.target, j.note)
	cancel()
	s.m.latency.WithLabelValues(pq.name).Observe(time.Since(now).Seconds())
	var retry *push.RetryError
	switch {
	case err == nil:
		s.m.sent.WithLabelValues(pq.name, "ok").Inc()
	case errors.Is(err, push.ErrGone):
		s.m.sent.WithLabelValues(pq.name, "gone").Inc()
		s.log.Info("push token gone, registration removed", zap.String("provider", pq.name), zap.String("user", j.target.User), zap.String("device", j.target.ID))
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		if err := s.reg.Remove(rctx, j.target.User, j.target.ID, "gone: "+err.Error()); err != nil {
			s.log.Warn("remove gone registration", zap.String("user", j.target.User), zap.String("device", j.target.ID), zap.Error(err))
		}
		cancel()
	case errors.As(err, &retry) || ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		s.retry(ctx, pq, j, retry)
	default:
		s.m.sent.WithLabelValues(pq.name, "error").Inc()
		s.log.Warn("push refused", zap.String("provider", pq.name), zap.String("user", j.target.User), zap.String("device", j.target.ID), zap.Error(err))
	}
}

// retry sends j again after an exponential backoff (1 s, 2 s, 4 s, ...
// capped at MaxBackoff, with jitter), or after the provider's Retry-After
// when it is longer, unless that passes the deadline.
func (s *sender) retry(ctx context.Context, pq *providerQueue, j job, re *push.RetryError) {
	backoff := time.Second << min(j.attempt, 20)
	backoff = min(backoff, s.cfg.MaxBackoff)
	backoff = backoff/2 + rand.N(backoff/2+1)
	if re != nil && re.After > backoff {
		backoff = re.After
	}
	if time.Now().Add(backoff).After(j.deadline) {
		s.m.sent.WithLabelValues(pq.name, "expired").Inc()
		s.log.Info("push given up at its TTL", zap.String("provider", pq.name), zap.String("user", j.target.User), zap.String("device", j.target.ID))
		return
	}
	if pq.retrying.Load()+int64(len(pq.q)) >= int64(s.cfg.QueueSize) {
		s.m.sent.WithLabelValues(pq.name, "dropped").Inc()
		return
	}
	s.m.sent.WithLabelValues(pq.name, "retry").Inc()
	s.m.retries.WithLabelValues(pq.name).Inc()
	j.attempt++
	pq.retrying.Add(1)
	s.m.queue.WithLabelValues(pq.name).Inc()
	time.AfterFunc(backoff, func() {
		pq.retrying.Add(-1)
		s.m.queue.WithLabelValues(pq.name).Dec()
		if ctx.Err() == nil {
			s.enqueue(j)
		}
	})
}

// reasonGone is the reason of a registration removed because its provider
// called it gone (pushreg.ReasonGone).
const reasonGone = "gone"
