package conversation_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"messenger/infra/jspub"
	"messenger/infra/natsserver"
	"messenger/infra/platformtest"
	"messenger/services/conversation"
	"messenger/services/event"
	"messenger/streams"
)

// setup starts a server with the streams and buckets, and returns a
// connection and the handles.
func setup(t *testing.T) (*nats.Conn, jetstream.JetStream, *streams.Handles) {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf := streams.Config{}
	if err := streams.Ensure(ctx, js, conf); err != nil {
		t.Fatal(err)
	}
	h, err := streams.Open(ctx, js, conf)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, h
}

func newCache(t *testing.T, nc *nats.Conn, js jetstream.JetStream, h *streams.Handles, conflicts *int) *conversation.Cache {
	t.Helper()
	c, err := conversation.NewCache(100, conversation.Deps{
		JS: js, Handles: h, Store: conversation.NewStore(nc, h, zap.NewNop()),
		OnConflict: func() { *conflicts++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func allow(*event.Meta) error { return nil }

func text(from, id string) func(*event.Msg) {
	return func(ev *event.Msg) { ev.From, ev.ID, ev.Kind, ev.Text = from, id, event.KindText, "hi" }
}

func TestCommitRetriesAfterAnotherWriterAndAnswersResends(t *testing.T) {
	nc, js, h := setup(t)
	ctx := context.Background()
	var conflictsA, conflictsB int
	a, b := newCache(t, nc, js, h, &conflictsA), newCache(t, nc, js, h, &conflictsB)
	conv := event.DirectConv("ann", "bob")

	first, err := a.Commit(ctx, a.Direct(conv, "ann", "bob"), conv, conversation.Op{DedupID: "ann:1", Check: allow, Build: text("ann", "1")})
	if err != nil || first.Seq != 1 || first.Duplicate {
		t.Fatalf("first commit: %+v, %v", first, err)
	}
	second, err := b.Commit(ctx, b.Direct(conv, "ann", "bob"), conv, conversation.Op{DedupID: "bob:1", Check: allow, Build: text("bob", "1")})
	if err != nil || second.Seq != 2 {
		t.Fatalf("second commit, through another cache: %+v, %v", second, err)
	}
	third, err := a.Commit(ctx, a.Get(conv), conv, conversation.Op{DedupID: "ann:2", Check: allow, Build: text("ann", "2")})
	if err != nil || third.Seq != 3 || conflictsA != 1 {
		t.Fatalf("third commit: %+v, %v, %d conflicts (want 1)", third, err, conflictsA)
	}
	again, err := b.Commit(ctx, b.Get(conv), conv, conversation.Op{DedupID: "ann:1", Check: allow, Build: text("ann", "1b")})
	if err != nil || !again.Duplicate || again.Seq != 1 || again.TS != first.TS || again.ID != first.ID {
		t.Fatalf("resend: %+v, %v; want the first event %+v", again, err, first)
	}
	refused := errors.New("refused")
	if _, err := a.Commit(ctx, a.Get(conv), conv, conversation.Op{Check: func(*event.Meta) error { return refused }, Build: text("ann", "3")}); err != refused {
		t.Fatalf("a refusal comes back as it is, got %v", err)
	}
}

func TestStoreRebuildsAndWritesBackTheFold(t *testing.T) {
	nc, js, h := setup(t)
	ctx := context.Background()
	var conflicts int
	c := newCache(t, nc, js, h, &conflicts)
	conv := event.GroupConv("ann", "g1")
	for _, build := range []func(*event.Msg){
		func(ev *event.Msg) {
			ev.From, ev.ID, ev.Kind, ev.Members = "ann", "g1", event.KindGroupCreated, []string{"ann", "bob"}
		},
		text("bob", "1"),
		func(ev *event.Msg) { ev.From, ev.ID, ev.Kind, ev.User = "ann", "x", event.KindMemberAdded, "cy" },
	} {
		if _, err := c.Commit(ctx, c.Get(conv), conv, conversation.Op{Check: allow, Build: build}); err != nil {
			t.Fatal(err)
		}
	}
	store := conversation.NewStore(nc, h, zap.NewNop())
	stored, err := store.Read(ctx, conv)
	if err != nil || stored.Meta == nil || stored.Meta.Applied != 3 || stored.Rev == 0 {
		t.Fatalf("the cache stores the fold after each membership event: %+v, %v", stored, err)
	}
	if err := h.Convs.Purge(ctx, conv); err != nil {
		t.Fatal(err)
	}
	if stored, err = store.Read(ctx, conv); err != nil || stored.Meta != nil || stored.Rev != 0 {
		t.Fatalf("after a purge: %+v, %v", stored, err)
	}
	folded, err := store.CatchUp(ctx, conv, stored, 3)
	if err != nil || folded.Meta.Applied != 3 || !slices.Equal(folded.Meta.Members, []string{"ann", "bob", "cy"}) || folded.Rev == 0 {
		t.Fatalf("rebuilt: %+v, %v", folded, err)
	}
	if back, err := store.Read(ctx, conv); err != nil || back.Rev != folded.Rev || back.Meta.Applied != 3 {
		t.Fatalf("written back: %+v, %v", back, err)
	}
	// A second reader that read before the write back loses the race.
	late, err := store.CatchUp(ctx, conv, conversation.Stored{}, 3)
	if err != nil || late.Rev != 0 || late.Meta.Applied != 3 {
		t.Fatalf("a lost write back: %+v, %v", late, err)
	}
	// Up to date: nothing read, nothing written.
	if same, err := store.CatchUp(ctx, conv, folded, 2); err != nil || same != folded {
		t.Fatalf("up to date: %+v, %v", same, err)
	}
}

// The groups per user: a join past the bound changes nobody's list; a
// group recorded for a user that is not a member (a crash between the
// record and the event) is dropped when the list is found at the bound.
func TestMembershipsBoundAndRecheck(t *testing.T) {
	_, _, h := setup(t)
	ctx := t.Context()
	notIn := map[string]bool{}
	ms := conversation.NewMemberships(h.UserGroups, 2, func(_ context.Context, conv, user string) (bool, error) {
		return !notIn[conv+"/"+user], nil
	})
	ms.RecheckEvery = 0
	count := func(u string) int {
		n, err := ms.Count(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if added, err := ms.Join(ctx, "g1", []string{"a", "b"}); err != nil || len(added) != 2 {
		t.Fatalf("join g1: %v %v", added, err)
	}
	if added, err := ms.Join(ctx, "g1", []string{"a"}); err != nil || len(added) != 0 {
		t.Fatalf("join g1 again: %v %v", added, err)
	}
	if _, err := ms.Join(ctx, "g2", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Join(ctx, "g3", []string{"b", "a"}); !errors.Is(err, conversation.ErrTooManyGroups) {
		t.Fatalf("past the bound: %v", err)
	}
	if count("a") != 2 || count("b") != 1 {
		t.Fatalf("a refused join changed the lists: a %d b %d", count("a"), count("b"))
	}
	notIn["g1/a"] = true // recorded, never stored
	if _, err := ms.Join(ctx, "g3", []string{"b", "a"}); err != nil {
		t.Fatalf("after the recheck: %v", err)
	}
	if count("a") != 2 || count("b") != 2 {
		t.Fatalf("a %d b %d", count("a"), count("b"))
	}
	ms.Leave(ctx, "g3", "a", "b")
	if count("a") != 1 || count("b") != 1 {
		t.Fatalf("after leave: a %d b %d", count("a"), count("b"))
	}
}

// A commit whose answer is lost (the server stored it, then went silent):
// the attempt times out, the connection moves to another server and the
// same compare-and-set is sent again. Answered "wrong last sequence" (no
// message id to deduplicate it), the commit finds its own event stored
// next and answers it: stored once, acked with its seq, nothing retried
// under another seq. With a message id the retry is a duplicate of its own
// attempt: answered as stored, not as a client's resend.
func TestCommitWhoseAnswerWasLostIsStoredOnce(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	for _, dedup := range []string{"", "ann:2"} {
		t.Run("dedup="+dedup, func(t *testing.T) {
			px := platformtest.StartProxy(t, ns.ClientURL())
			// The proxy first, the server itself second: where the
			// connection moves.
			nc, err := nats.Connect(px.URL()+","+ns.ClientURL(), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
				t.Fatal(err)
			}
			h, err := streams.Open(ctx, js, streams.Config{})
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			c, err := conversation.NewCache(100, conversation.Deps{
				JS: js, Handles: h, Store: conversation.NewStore(nc, h, zap.NewNop()),
				Publish: jspub.Config{AttemptTimeout: 500 * time.Millisecond, OnRetry: func(r string) { reasons = append(reasons, r) }},
			})
			if err != nil {
				t.Fatal(err)
			}
			conv := event.DirectConv("ann", "bob"+dedup)
			st := c.Direct(conv, "ann", "bob"+dedup)
			if _, err := c.Commit(ctx, st, conv, conversation.Op{DedupID: "ann:1", Check: allow, Build: text("ann", "1")}); err != nil {
				t.Fatal(err)
			}
			px.HoldReplies()
			got, err := c.Commit(ctx, st, conv, conversation.Op{DedupID: dedup, Check: allow, Build: text("ann", "2")})
			if err != nil {
				t.Fatalf("commit through a lost answer: %v", err)
			}
			if got.Seq != 2 || got.Duplicate || got.ID != "2" {
				t.Fatalf("answered %+v, want seq 2, not a duplicate", got)
			}
			if len(reasons) == 0 || reasons[0] != "timeout" {
				t.Fatalf("retries %v, want a timeout first", reasons)
			}
			if nc.ConnectedUrl() != ns.ClientURL() {
				t.Fatalf("connection on %s, want moved to %s", nc.ConnectedUrl(), ns.ClientURL())
			}
			info, err := h.ConvStreamOf(conv).Info(ctx, jetstream.WithSubjectFilter(h.Layout.ConvEvents(conv)))
			if err != nil {
				t.Fatal(err)
			}
			if n := info.State.Subjects[h.Layout.ConvEvents(conv)]; n != 2 {
				t.Fatalf("%d events stored, want 2", n)
			}
			// The next commit follows on at once (the state is the stored one).
			third, err := c.Commit(ctx, st, conv, conversation.Op{Check: allow, Build: text("ann", "3")})
			if err != nil || third.Seq != 3 {
				t.Fatalf("next commit: %+v, %v", third, err)
			}
		})
	}
}

// A reader passing a group's events in order folds each into its cached
// metadata without a read (here the context is cancelled, so any read
// fails); an event that is not the next one is read as before.
func TestMetaCacheFoldsTheNextEventWithoutReading(t *testing.T) {
	nc, js, h := setup(t)
	ctx := context.Background()
	var conflicts int
	c := newCache(t, nc, js, h, &conflicts)
	conv := event.GroupConv("ann", "g1")
	create := func(ev *event.Msg) {
		ev.From, ev.ID, ev.Kind, ev.Members = "ann", "g1", event.KindGroupCreated, []string{"ann", "bob"}
	}
	if _, err := c.Commit(ctx, c.Get(conv), conv, conversation.Op{Check: allow, Build: create}); err != nil {
		t.Fatal(err)
	}
	mc := conversation.NewMetaCache(conversation.NewStore(nc, h, zap.NewNop()), 10)
	if meta, err := mc.At(ctx, conv, 1); err != nil || meta.Applied != 1 {
		t.Fatalf("first meeting: %+v, %v", meta, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	meta, err := mc.Next(cancelled, &event.Msg{Conv: conv, Seq: 2, Kind: event.KindText, From: "bob"}, 2)
	if err != nil || meta.Applied != 2 {
		t.Fatalf("the next text message: %+v, %v", meta, err)
	}
	before := meta
	meta, err = mc.Next(cancelled, &event.Msg{Conv: conv, Seq: 3, Kind: event.KindMemberAdded, From: "ann", User: "cy"}, 3)
	if err != nil || meta.Applied != 3 || !slices.Equal(meta.MembersAt(3), []string{"ann", "bob", "cy"}) {
		t.Fatalf("the next membership event: %+v, %v", meta, err)
	}
	if before.Applied != 2 || slices.Contains(before.Members, "cy") {
		t.Fatalf("a fold returned earlier changed: %+v", before)
	}
	if _, err := mc.Next(cancelled, &event.Msg{Conv: conv, Seq: 5, Kind: event.KindText, From: "bob"}, 5); err == nil {
		t.Fatal("an event past the next one was folded without reading the stream")
	}
}
