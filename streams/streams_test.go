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
