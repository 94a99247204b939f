package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/services/push"
	"messenger/streams"
)

// callTimeout bounds each NATS call of a decision.
const callTimeout = 5 * time.Second

// decider decides due pushes until ctx ends.
func (n *Notifier) decider(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-n.decide:
			err := n.decideOne(ctx, p)
			if err != nil && ctx.Err() == nil {
				n.m.decisions.WithLabelValues("error").Inc()
				n.log.Warn("push not decided, its events come back", zap.String("user", p.user), zap.String("conv", p.conv), zap.Error(err))
			}
			p.finish(err != nil)
		}
	}
}

// decideOne decides one due push: skipped (muted, online, over the user's
// rate, no device, pushed already) or claimed and queued to the providers.
// An error means it could not be decided: its events are read again.
func (n *Notifier) decideOne(ctx context.Context, p *pending) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	now := time.Now()
	muted, err := n.reg.Muted(cctx, p.user, p.conv, now)
	if err != nil {
		return fmt.Errorf("mute: %w", err)
	}
	if muted {
		n.m.decisions.WithLabelValues("muted").Inc()
		return nil
	}
	if n.online.online(cctx, p.user, now) {
		n.m.decisions.WithLabelValues("online").Inc()
		return nil
	}
	all, err := n.reg.Devices(cctx, p.user)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	devices := all[:0]
	for _, d := range all {
		if n.send.has(d.Platform) {
			devices = append(devices, d)
		} else {
			n.m.sent.WithLabelValues(d.Platform, "no_provider").Inc()
		}
	}
	if len(devices) == 0 {
		n.m.decisions.WithLabelValues("no_device").Inc()
		return nil
	}
	if !n.users.allow(p.user, now) {
		n.m.decisions.WithLabelValues("user_rate").Inc()
		return nil
	}
	claimed, err := n.claim(cctx, p.user, p.conv, p.last)
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	if !claimed {
		n.m.decisions.WithLabelValues("duplicate").Inc()
		return nil
	}
	n.m.decisions.WithLabelValues("pushed").Inc()
	note := n.render(p)
	deadline := time.UnixMilli(p.ts).Add(n.cfg.TTL)
	for _, d := range devices {
		n.send.enqueue(job{target: d, note: note, deadline: deadline})
	}
	return nil
}

// claim records that user's push of conv up to seq goes out, unless a
// push at or past seq was claimed already (by this notifier before a
// restart, or by another one during a hand-over): a compare-and-set on the
// user's push_sent record, so of two claimants only one wins.
func (n *Notifier) claim(ctx context.Context, user, conv string, seq uint64) (bool, error) {
	key := streams.PushSentKey(user, conv)
	val := []byte(strconv.FormatUint(seq, 10))
	for range 10 {
		e, err := n.h.PushSent.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := n.h.PushSent.Create(ctx, key, val); err == nil {
				return true, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, err
			}
		case err != nil:
			return false, err
		default:
			if last, _ := strconv.ParseUint(string(e.Value()), 10, 64); last >= seq {
				return false, nil
			}
			if _, err := n.h.PushSent.Update(ctx, key, val, e.Revision()); err == nil {
				return true, nil
			} else if !isWrongRevision(err) {
				return false, err
			}
		}
	}
	return false, errors.New("claim: lost 10 races in a row")
}

func isWrongRevision(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// render is the notification of p: who and where; the text only when the
// operator turned it on.
func (n *Notifier) render(p *pending) push.Notification {
	note := push.Notification{Conv: p.conv, From: p.from, Count: max(p.count, 1), Seq: p.last,
		CollapseID: p.conv, TTL: n.cfg.TTL}
	who := p.from
	if len(p.senders) > 1 {
		who = p.from + " and others"
	}
	if p.group {
		note.Title = p.title
	} else {
		note.Title = p.from
	}
	switch {
	case note.Count == 1:
		note.Body = "New message from " + who
	default:
		note.Body = strconv.Itoa(note.Count) + " new messages from " + who
	}
	if n.cfg.Text && p.text != "" {
		text := truncate(p.text, 200)
		if p.group {
			text = p.from + ": " + text
		}
		if note.Count > 1 {
			note.Title += " (" + strconv.Itoa(note.Count) + ")"
		}
		note.Body = text
	}
	return note
}

// truncate cuts s to at most n bytes on a rune boundary, with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
