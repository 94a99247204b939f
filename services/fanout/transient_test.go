package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"messenger/infra/natsserver"
	"messenger/services/conversation"
	"messenger/services/event"
	"messenger/streams"
)

// flakyNATS is a real server on disk that a test can take away and bring
// back on the same address and data (a node restarted, or paused for as
// long: the fan-out's requests time out meanwhile).
type flakyNATS struct {
	t    *testing.T
	addr string
	dir  string
	ns   *server.Server
}

func startFlakyNATS(t *testing.T) *flakyNATS {
	t.Helper()
	n := &flakyNATS{t: t, addr: "127.0.0.1:-1", dir: t.TempDir()}
	n.start()
	n.addr = strings.TrimPrefix(n.ns.ClientURL(), "nats://")
	t.Cleanup(n.stop)
	return n
}

func (n *flakyNATS) start() {
	n.t.Helper()
	ns, err := natsserver.Start(natsserver.Config{Listen: n.addr, DataDir: n.dir})
	if err != nil {
		n.t.Fatal(err)
	}
	n.ns = ns
}

func (n *flakyNATS) stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

// connect gives a connection that reconnects for ever, quickly, and the
// streams of one partition.
func (n *flakyNATS) connect(t *testing.T) (*nats.Conn, jetstream.JetStream, *streams.Handles) {
	t.Helper()
	nc, err := nats.Connect("nats://"+n.addr, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conf := streams.Config{Partitions: 1}
	if err := streams.Ensure(ctx, js, conf); err != nil {
		t.Fatal(err)
	}
	h, err := streams.Open(ctx, js, conf)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, h
}

// observed is a logger whose Warn and Error entries a test can look at.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.WarnLevel)
	return zap.New(core), logs
}

func logged(logs *observer.ObservedLogs, substr string) bool {
	for _, e := range logs.All() {
		if strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after total.
func waitFor(t *testing.T, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func storeEvent(t *testing.T, js jetstream.JetStream, h *streams.Handles, m event.Msg) uint64 {
	t.Helper()
	data, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, h.Layout.ConvEvents(m.Conv), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// The chaos run's "skip event ... read metadata of g...: context deadline
// exceeded": a group message read from its stream while NATS goes away
// before the group's members are read. The fan-out must wait for NATS and
// write it to every member's queue, not skip it (an acked message never
// delivered to anyone).
func TestGroupMessageWaitsOutAMetadataReadThatTimesOut(t *testing.T) {
	n := startFlakyNATS(t)
	nc, js, h := n.connect(t)
	log, logs := observed()
	f, err := New(Config{Shards: 1}, nc, js, h, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := event.GroupConv("ann", "g1")
	members := []string{"ann", "bob", "cyd"}
	storeEvent(t, js, h, event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: 1, From: "ann", ID: "c", Kind: event.KindGroupCreated, Members: members})
	text := event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: 2, From: "bob", ID: "t", Kind: event.KindText, Text: "hi"}
	data, _ := json.Marshal(text)
	seq := storeEvent(t, js, h, text)

	// The event is read (dispatch is what the partition reader calls
	// next); NATS is gone when its group's metadata is read.
	n.stop()
	fl := newFloor(seq - 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan bool, 1)
	go func() {
		done <- f.dispatch(ctx, conversation.NewMetaCache(f.convs, 10), 0, seq, h.Layout.ConvEvents(conv), data, fl)
	}()
	waitFor(t, 30*time.Second, "the metadata read failing", func() bool {
		return logged(logs, "retrying") || logged(logs, "skip")
	})
	n.start()

	select {
	case ok := <-done:
		if !ok {
			t.Fatal("dispatch gave up though its context is alive")
		}
	case <-time.After(45 * time.Second):
		t.Fatal("dispatch still waiting 45 s after NATS came back")
	}
	var got []string
	for len(f.shards[0].in) > 0 {
		w := <-f.shards[0].in
		if w.src != seq || w.msg == nil || w.msg.ID != "t" {
			t.Fatalf("queued %+v, want the text event at %d", w, seq)
		}
		got = append(got, w.user)
	}
	if fmt.Sprint(got) != fmt.Sprint(members) {
		t.Fatalf("queue writes for %v, want one per member %v (logs: %v)", got, members, messages(logs))
	}
	if v := fl.value(); v != seq-1 {
		t.Fatalf("checkpoint %d, want %d: the writes are queued, not done", v, seq-1)
	}
	if logged(logs, "skip") {
		t.Fatalf("an event was skipped: %v", messages(logs))
	}
}

// A malformed event is skipped (it would block its partition for ever),
// counted and logged at error level; the partition goes on.
func TestMalformedEventIsSkippedAndCounted(t *testing.T) {
	n := startFlakyNATS(t)
	nc, js, h := n.connect(t)
	log, logs := observed()
	f, err := New(Config{Shards: 1}, nc, js, h, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	fl := newFloor(0)
	if !f.dispatch(context.Background(), conversation.NewMetaCache(f.convs, 10), 0, 1, h.Layout.ConvEvents("gx"), []byte("{not json"), fl) {
		t.Fatal("dispatch of a malformed event reported its context ended")
	}
	if fl.value() != 1 || len(f.shards[0].in) != 0 {
		t.Fatalf("checkpoint %d, %d writes: want the event passed, nothing written", fl.value(), len(f.shards[0].in))
	}
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("skip bad event").Len()
	if errs != 1 || counter(f.m.badEvents) != 1 || counter(f.m.eventRetries) != 0 {
		t.Fatalf("%d error logs, bad %v, retries %v: want 1, 1, 0", errs, counter(f.m.badEvents), counter(f.m.eventRetries))
	}
}

// The chaos run's "load checkpoint 8: context deadline exceeded", exit
// status 2: a fan-out starting (or gaining a partition) while its NATS node
// is paused must wait for it, not exit, and then fan out what is stored.
func TestFanoutStartingWhileNATSIsAwayWaitsAndDelivers(t *testing.T) {
	n := startFlakyNATS(t)
	nc, js, h := n.connect(t)
	log, logs := observed()
	f, err := New(Config{Shards: 2, StopGrace: time.Second}, nc, js, h, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := event.DirectConv("ann", "bob")
	seq := storeEvent(t, js, h, event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: 1, From: "ann", To: "bob", ID: "1", Kind: event.KindText, Text: "hi"})

	n.stop()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.Run(ctx) }()
	exited := false
	defer func() {
		cancel()
		if exited {
			return
		}
		select {
		case <-ran:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
	}()
	waitFor(t, 30*time.Second, "the checkpoint read failing", func() bool {
		select {
		case err := <-ran:
			t.Logf("Run returned %v", err)
			exited = true
			return true
		default:
			return logged(logs, "load checkpoint")
		}
	})
	n.start()
	if exited {
		t.Fatalf("the fan-out exited while NATS was away (logs: %v)", messages(logs))
	}

	waitFor(t, 45*time.Second, "the stored message in bob's queue", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m, err := h.QueueStreamOf("bob").GetLastMsgForSubject(ctx, h.Layout.Queue("bob"))
		return err == nil && event.DecodeSources(m.Header.Get(event.SourceHeader), 1)[0] == seq
	})
	select {
	case err := <-ran:
		exited = true
		t.Fatalf("Run returned %v while its context is alive", err)
	default:
	}
	if counter(f.m.partitionRetries.WithLabelValues("checkpoint")) == 0 {
		t.Fatal("no checkpoint retry counted")
	}
}

func messages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		s := e.Message
		for _, fld := range e.Context {
			if fld.Key == "error" {
				s += ": " + fmt.Sprint(fld.Interface)
			}
		}
		out = append(out, s)
	}
	return out
}

// counter reads a counter's value.
func counter(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
