// Package jspub publishes to (and reads from) JetStream through node
// faults.
//
// A publish whose ack does not come within a short per-attempt timeout is
// sent again, the same message each time (same Nats-Msg-Id, same
// expected-last-sequence headers: a retry is exactly as idempotent as the
// message itself). Before the retry the connection is probed with a PING:
// a server that does not answer it within the probe timeout is silent
// (paused, cut off), and the connection is forced over to another server
// of its pool (nats.Conn.ForceReconnect) instead of waiting for the ping
// timer to notice. No responders (a stream leader being elected, the
// connection between two servers) is retried after a short wait. All of it
// within the caller's context: its deadline is the client-facing budget.
//
// A Publisher is safe for concurrent use. One probe runs at a time per
// Publisher: concurrent publishes that time out together reconnect once.
package jspub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config's zero values.
const (
	DefaultAttemptTimeout = 1500 * time.Millisecond
	DefaultProbeTimeout   = 500 * time.Millisecond
	DefaultRetryWait      = 200 * time.Millisecond
)

// Config tunes a Publisher; zero values take the defaults above.
type Config struct {
	// AttemptTimeout bounds one attempt: its ack not back by then, the
	// connection is probed and the message sent again.
	AttemptTimeout time.Duration
	// ProbeTimeout bounds the PING round trip that tells a silent server.
	ProbeTimeout time.Duration
	// RetryWait is the pause before sending again after no responders.
	RetryWait time.Duration
	// OnRetry, if set, is told of each retry with its reason: "timeout",
	// "interrupted" (a reconnect dropped the request), "no_responders" or
	// "unavailable".
	OnRetry func(reason string)
	// OnReconnect, if set, is told when a probe failed and the connection
	// was forced to another server.
	OnReconnect func()
}

// Result tells what happened besides the ack.
type Result struct {
	// Attempts is how many times the message was sent.
	Attempts int
	// Uncertain: an earlier attempt got no answer, so it may have been
	// stored. A duplicate or a wrong-last-sequence answer may then be the
	// earlier attempt's own doing: the caller checks the stream.
	Uncertain bool
}

// Publisher sends JetStream publishes with retries.
type Publisher struct {
	js    jetstream.JetStream
	cfg   Config
	probe sync.Mutex
}

// New makes a Publisher on js (its connection is the one moved).
func New(js jetstream.JetStream, cfg Config) *Publisher {
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	if cfg.OnRetry == nil {
		cfg.OnRetry = func(string) {}
	}
	if cfg.OnReconnect == nil {
		cfg.OnReconnect = func() {}
	}
	return &Publisher{js: js, cfg: cfg}
}

// PublishMsg stores msg, retrying as the package says until ctx ends. The
// error is the last attempt's (ctx's own when it ended first).
func (p *Publisher) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, Result, error) {
	// No responders is retried here, not by the library (its own wait does
	// not stop at our attempt timeout).
	opts = append(opts, jetstream.WithRetryAttempts(0))
	var pa *jetstream.PubAck
	res, err := p.Do(ctx, func(actx context.Context) error {
		var err error
		pa, err = p.js.PublishMsg(actx, msg, opts...)
		return err
	})
	return pa, res, err
}

// Do runs the JetStream request f (a publish, a stream read) as PublishMsg
// sends a message: each attempt within the attempt timeout, again after a
// timeout (the server probed, left when silent), no responders or an
// unavailable JetStream, until ctx ends. f must be safe to run again.
func (p *Publisher) Do(ctx context.Context, f func(context.Context) error) (Result, error) {
	var res Result
	for {
		res.Attempts++
		actx, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
		err := f(actx)
		cancel()
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return res, err
		}
		reason := retryable(err)
		if reason == "interrupted" && p.js.Conn().IsClosed() {
			reason = ""
		}
		if reason == "" {
			return res, err
		}
		p.cfg.OnRetry(reason)
		switch reason {
		case "timeout":
			res.Uncertain = true
			p.moveIfSilent()
		case "interrupted":
			res.Uncertain = true // sent again at once: buffered until reconnected
		default:
			select {
			case <-ctx.Done():
				return res, err
			case <-time.After(p.cfg.RetryWait):
			}
		}
	}
}

// Publish stores data on subject as PublishMsg does.
func (p *Publisher) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, Result, error) {
	return p.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, opts...)
}

// moveIfSilent pings the server; no pong within the probe timeout: the
// connection is forced to another server. A probe already running (other
// publishes timed out with this one) is waited for instead.
func (p *Publisher) moveIfSilent() {
	if !p.probe.TryLock() {
		p.probe.Lock() // the running probe decides for all
		p.probe.Unlock()
		return
	}
	defer p.probe.Unlock()
	nc := p.js.Conn()
	if nc.Status() != nats.CONNECTED {
		return // reconnecting already: the retry is buffered until then
	}
	if err := nc.FlushTimeout(p.cfg.ProbeTimeout); err == nil {
		return // the server answers: the stream was slow, not the server
	}
	if nc.Status() == nats.CONNECTED && nc.ForceReconnect() == nil {
		p.cfg.OnReconnect()
	}
}

// retryable names why err is worth another attempt, "" when it is not: an
// answer of the stream (wrong last sequence, too large...) is final.
func retryable(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "timeout"
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return "no_responders"
	case errors.Is(err, nats.ErrConnectionClosed):
		return "interrupted" // a reconnect dropped the pending request
	case errors.Is(err, nats.ErrConnectionReconnecting):
		return "unavailable"
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled) {
		return "unavailable" // JetStream not ready on that server (yet)
	}
	return ""
}
