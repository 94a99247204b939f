package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"messenger/infra/natsauth"
	"messenger/services/notifier"
	"messenger/services/push"
	"messenger/services/pushreg"
	"messenger/streams"
)

// pushProviders builds the configured providers (cfg.pushConfig), sorted
// by platform.
func pushProviders(cfg *config, all bool, log *zap.Logger) ([]push.Provider, error) {
	pc, err := cfg.pushConfig(all)
	if err != nil {
		return nil, err
	}
	m, err := push.New(pc, log)
	if err != nil {
		return nil, err
	}
	var out []push.Provider
	for _, pr := range m {
		out = append(out, pr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Platform() < out[j].Platform() })
	return out, nil
}

// buildNotifier makes the notifier of `notifier` and `all`: on its own
// NATS identity, reading registrations and mutes through pushreg. `all`
// without any provider configured runs none (nil).
func (a *app) buildNotifier(cmd string, roleConn func(string, ...nats.Option) (*nats.Conn, jetstream.JetStream, *streams.Handles, error), preg prometheus.Registerer) (*notifier.Notifier, error) {
	providers, err := pushProviders(a.cfg, cmd == "all", a.log)
	if err != nil {
		return nil, err
	}
	if len(providers) == 0 {
		if cmd == "notifier" {
			return nil, errors.New("the notifier needs a push provider: --fcm-credentials, --apns-key or --webpush-vapid-key (README, Push notifications)")
		}
		a.log.Info("no push provider configured: no push notifications")
		return nil, nil
	}
	nc, js, h, err := roleConn(natsauth.RoleNotifier)
	if err != nil {
		return nil, err
	}
	reg := pushreg.New(js, nc, h, nil, a.log, pushreg.Config{MaxDevices: a.cfg.MaxPushTokens})
	return notifier.New(a.cfg.notifier(), nc, h, reg, providers, a.log, preg)
}

// pushTest is `messenger push test <user>`: a test notification to each of
// the user's registered devices, through its provider, and each answer.
// It connects as the notifier's identity; a device a provider calls gone is
// removed, as the notifier would.
func pushTest(ctx context.Context, cfg *config, user string, out io.Writer) error {
	if user == "" {
		return errors.New("usage: messenger push test <user>")
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	providers, err := pushProviders(cfg, false, log)
	if err != nil {
		return err
	}
	nc, err := dialNATS(cfg, cfg.NATS, natsauth.RoleNotifier, "", nil, log, nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := streams.Open(octx, js, cfg.streams())
	if err != nil {
		return err
	}
	reg := pushreg.New(js, nc, h, nil, log, pushreg.Config{MaxDevices: cfg.MaxPushTokens})
	devices, err := reg.Devices(octx, user)
	if err != nil {
		return err
	}
	if len(devices) == 0 {
		fmt.Fprintf(out, "%s has no registered device\n", user)
		return nil
	}
	byPlatform := map[string]push.Provider{}
	for _, p := range providers {
		byPlatform[p.Platform()] = p
	}
	note := push.Notification{Title: "messenger", Body: "Test notification for " + user, Count: 1,
		CollapseID: "push-test", TTL: time.Minute}
	failed := 0
	for _, d := range devices {
		p := byPlatform[d.Platform]
		answer := "ok"
		switch {
		case p == nil:
			answer, failed = "error: no "+d.Platform+" provider configured", failed+1
		default:
			sctx, cancel := context.WithTimeout(ctx, cfg.Push.Timeout+5*time.Second)
			err := p.Send(sctx, d, note)
			cancel()
			var retry *push.RetryError
			switch {
			case err == nil:
			case errors.Is(err, push.ErrGone):
				answer, failed = "gone (registration removed): "+err.Error(), failed+1
				if rerr := reg.Remove(ctx, user, d.ID, pushreg.ReasonGone); rerr != nil && !errors.Is(rerr, pushreg.ErrNotFound) {
					answer += "; removing it failed: " + rerr.Error()
				}
			case errors.As(err, &retry):
				answer, failed = "error (transient", failed+1
				if retry.After > 0 {
					answer += ", retry after " + retry.After.String()
				}
				answer += "): " + err.Error()
			default:
				answer, failed = "error: "+err.Error(), failed+1
			}
		}
		fmt.Fprintf(out, "%-8s %s  %s\n", d.Platform, d.ID, answer)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d devices not reached", failed, len(devices))
	}
	return nil
}
