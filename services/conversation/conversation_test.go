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

	"messenger/infra/natsserver"
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
