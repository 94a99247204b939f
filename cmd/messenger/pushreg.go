package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsauth"
	"messenger/services/push"
	"messenger/services/pushreg"
	"messenger/streams"
)

// rebuildPush writes KV push and KV mutes again from stream PUSHREG
// (pushreg.Store.Rebuild), as the edge's identity (what writes them);
// edges may keep serving meanwhile.
func rebuildPush(ctx context.Context, cfg *config) error {
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	nc, err := dialNATS(cfg, cfg.NATS, natsauth.RoleEdge, "", nil, log, nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	h, err := streams.Open(ctx, js, cfg.streams())
	if err != nil {
		return err
	}
	rep, err := pushreg.New(js, nc, h, nil, log, pushreg.Config{MaxDevices: cfg.MaxPushTokens}).Rebuild(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("read %d events, adopted %d registrations stored without one: %d registrations written, %d removed, %d mutes written, %d unreadable\n",
		rep.Events, rep.Adopted, rep.Registrations, rep.Removed, rep.Mutes, rep.Unreadable)
	return nil
}

// webPushKey is the VAPID public key an edge gives browsers
// (GET /v1/push/webpush-key), read from the key of --webpush-vapid-key (for
// `all`, the one kept under --data when none is given); "" when Web Push is
// not configured.
func webPushKey(cfg *config, all bool) (string, error) {
	pc, err := cfg.pushConfig(all)
	if err != nil {
		return "", err
	}
	if pc.WebPushVAPIDKey == "" {
		return "", nil
	}
	k, err := push.LoadVAPIDKey(pc.WebPushVAPIDKey)
	if err != nil {
		return "", err
	}
	return push.VAPIDPublicKey(k)
}
