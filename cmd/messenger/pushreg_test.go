package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/platformtest"
	"messenger/streams"
)

// messenger rebuild-push, against a running platform whose push buckets
// were lost, brings the registrations back from the events.
func TestRebuildPushCommand(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	tok := p.Token("rita")
	call := func(method, path string, body any, out any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, p.HTTP(0)+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	for _, token := range []string{"device-one-token", "device-two-token"} {
		if code := call("POST", "/v1/push/tokens", map[string]string{"platform": "apns", "token": token}, nil); code != 200 {
			t.Fatalf("register: %d", code)
		}
	}
	type list struct{ Tokens []struct{ ID string } }
	var before list
	call("GET", "/v1/push/tokens", nil, &before)
	if len(before.Tokens) != 2 {
		t.Fatalf("before: %+v", before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := jetstream.New(p.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteKeyValue(ctx, streams.BucketPush); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, admin, p.Conf); err != nil {
		t.Fatal(err)
	}
	var wiped list
	if call("GET", "/v1/push/tokens", nil, &wiped); len(wiped.Tokens) != 0 {
		t.Fatalf("not wiped: %+v", wiped)
	}

	var cfg config
	fs := flag.NewFlagSet("rebuild-push", flag.ContinueOnError)
	cfg.flags(fs)
	if err := parse(fs, []string{"--nats", p.URL(), "--nats-creds", p.Creds(), "--partitions", strconv.Itoa(p.Conf.WithDefaults().Partitions), "--log-level", "error"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := rebuildPush(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	var after list
	call("GET", "/v1/push/tokens", nil, &after)
	if len(after.Tokens) != 2 || after.Tokens[0].ID != before.Tokens[0].ID || after.Tokens[1].ID != before.Tokens[1].ID {
		t.Fatalf("after rebuild-push: %+v, want %+v", after, before)
	}
}

// The edge's Web Push key is the public half of the VAPID key: none without
// Web Push, the kept one's for `all`, the configured one's for an edge.
func TestWebPushKeyForTheEdge(t *testing.T) {
	data := t.TempDir()
	if k, err := webPushKey(testConfig(t, "--data", data), false); err != nil || k != "" {
		t.Fatalf("an edge without web push: %q %v", k, err)
	}
	k, err := webPushKey(testConfig(t, "--data", data), true)
	raw, derr := base64.RawURLEncoding.DecodeString(k)
	if err != nil || derr != nil || len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("all: %q %v %v", k, err, derr)
	}
	again, err := webPushKey(testConfig(t, "--data", data, "--webpush-vapid-key", filepath.Join(data, "vapid.pem"), "--webpush-subject", "mailto:ops@example.com"), false)
	if err != nil || again != k {
		t.Fatalf("an edge with the same key file: %q %v, want %q", again, err, k)
	}
}
