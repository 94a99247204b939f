package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"messenger/infra/pushtest"
	"messenger/services/push"
)

// The push flags: all makes a VAPID key under --data; the other roles
// build only what is configured; a half-configured provider stops the
// start.
func TestPushFlags(t *testing.T) {
	data := t.TempDir()
	cfg := testConfig(t, "--data", data, "--push-allow-hosts", " 127.0.0.1, push.test:8443 ", "--push-timeout", "3s")
	pc, err := cfg.pushConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	if pc.WebPushVAPIDKey != filepath.Join(data, "vapid.pem") || pc.WebPushSubject == "" || pc.Timeout.Seconds() != 3 ||
		len(pc.AllowHosts) != 2 || pc.AllowHosts[1] != "push.test:8443" {
		t.Fatalf("all: %+v", pc)
	}
	if _, err := os.Stat(pc.WebPushVAPIDKey); err != nil {
		t.Fatalf("vapid key not made: %v", err)
	}
	ps, err := push.New(pc, zap.NewNop())
	if err != nil || len(ps) != 1 || ps[push.WebPush] == nil {
		t.Fatalf("all without setup: %v %v, want Web Push only", ps, err)
	}
	key, err := webPushKey(cfg, true)
	if err != nil || key == "" || key != ps[push.WebPush].(*push.WebPushProvider).VAPIDPublicKey() {
		t.Fatalf("edge's key %q (%v), want the provider's", key, err)
	}
	if key, err := webPushKey(testConfig(t, "--data", data), false); err != nil || key != "" {
		t.Fatalf("no Web Push: key %q, %v", key, err)
	}

	pc, err = testConfig(t, "--data", data).pushConfig(false)
	if err != nil || pc.WebPushVAPIDKey != "" {
		t.Fatalf("notifier role: %+v %v, want no Web Push", pc, err)
	}
	if ps, err := push.New(pc, zap.NewNop()); err != nil || len(ps) != 0 {
		t.Fatalf("nothing configured: %v %v", ps, err)
	}

	a, f := pushtest.NewAPNs(t), pushtest.NewFCM(t)
	pc, err = testConfig(t, "--data", data, "--fcm-credentials", f.CredentialsFile, "--fcm-endpoint", f.URL,
		"--apns-key", a.KeyFile, "--apns-key-id", pushtest.APNsKeyID, "--apns-team-id", pushtest.APNsTeamID,
		"--apns-topic", pushtest.APNsTopic, "--apns-endpoint", a.URL).pushConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := push.New(pc, zap.NewNop()); err != nil || len(ps) != 3 {
		t.Fatalf("three configured: %v %v", ps, err)
	}

	_, err = testConfig(t, "--data", data, "--apns-key", a.KeyFile, "--apns-topic", pushtest.APNsTopic).pushConfig(false)
	if !errors.Is(err, push.ErrHalfConfigured) {
		t.Fatalf("apns without key id and team: %v, want ErrHalfConfigured", err)
	}
	_, err = testConfig(t, "--data", data, "--webpush-subject", "mailto:a@example.com").pushConfig(false)
	if !errors.Is(err, push.ErrHalfConfigured) {
		t.Fatalf("a subject without a key: %v, want ErrHalfConfigured", err)
	}
}
