package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/natsserver"
	"messenger/streams"
)

func TestEnsureIsIdempotentAndKeepsThePartitionCount(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := streams.Config{Partitions: 3}
	for i := 0; i < 2; i++ {
		if err := streams.Ensure(ctx, js, c); err != nil {
			t.Fatalf("ensure #%d: %v", i, err)
		}
	}
	h, err := streams.Open(ctx, js, c)
	if err != nil || len(h.Conv) != 3 || len(h.Queue) != 3 {
		t.Fatalf("open: %v", err)
	}
	err = streams.Ensure(ctx, js, streams.Config{Partitions: 5})
	if !errors.Is(err, streams.ErrPartitionsChanged) {
		t.Fatalf("changed partition count: %v", err)
	}
	if _, err := js.Stream(ctx, streams.ConvStream(4)); err == nil {
		t.Fatal("a refused count created a stream")
	}
	// A role that only opens the streams (its NATS identity may not make
	// them) refuses another count too, more or fewer.
	for _, n := range []int{2, 5} {
		if _, err := streams.Open(ctx, js, streams.Config{Partitions: n}); !errors.Is(err, streams.ErrPartitionsChanged) {
			t.Fatalf("open with %d partitions: %v", n, err)
		}
	}
	if err := (streams.Config{DedupWindow: time.Minute}).Validate(); err == nil {
		t.Fatal("a dedup window under 10 minutes must be refused")
	}
}

// A push bucket made before purge markers expired (no per-message TTLs) is
// updated by Ensure to allow them.
func TestEnsureTurnsOnPurgeMarkerTTLsOfAnOlderPushBucket(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: streams.BucketPush, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "u.r1", []byte(`{"id":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, streams.BucketPush)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL() != streams.PushPurgeTTL {
		t.Fatalf("status: %+v %v", st, err)
	}
	if e, err := kv.Get(ctx, "u.r1"); err != nil || string(e.Value()) != `{"id":"r1"}` {
		t.Fatalf("the old key: %v", err)
	}
	if err := kv.Purge(ctx, "u.r1", jetstream.PurgeTTL(streams.PushPurgeTTL)); err != nil {
		t.Fatalf("purge with a TTL: %v", err)
	}
}
