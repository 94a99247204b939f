package notifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"messenger/client"
	"messenger/edge"
	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/event"
	"messenger/services/notifier"
	"messenger/services/push"
	"messenger/services/pushreg"
	"messenger/streams"
	"messenger/subjects"
)

// sent is one notification a provider was given.
type sent struct {
	target push.Target
	note   push.Notification
}

// recorder is a push provider that records what it is given and answers
// what answer says (nil: accepted).
type recorder struct {
	platform string
	answer   func(ctx context.Context, t push.Target, n push.Notification) error

	mu   sync.Mutex
	sent []sent
}

func (r *recorder) Platform() string { return r.platform }

func (r *recorder) Send(ctx context.Context, t push.Target, n push.Notification) error {
	r.mu.Lock()
	r.sent = append(r.sent, sent{t, n})
	r.mu.Unlock()
	if r.answer != nil {
		return r.answer(ctx, t, n)
	}
	return nil
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// to is what user was sent.
func (r *recorder) to(user string) []sent {
	var out []sent
	for _, s := range r.all() {
		if s.target.User == user {
			out = append(out, s)
		}
	}
	return out
}

// registry registers devices and mutes through services/pushreg as the
// edge does (the edge's NATS identity); the notifier reads them with its own.
type registry struct {
	t     *testing.T
	store *pushreg.Store
}

func newRegistry(t *testing.T, p *platformtest.Platform) *registry {
	nc := p.RoleConn(natsauth.RoleEdge)
	js, h := openAs(t, p, nc)
	return &registry{t: t, store: pushreg.New(js, nc, h, nil, p.Log, pushreg.Config{})}
}

// add registers a device of user on platform and answers its id.
func (r *registry) add(user, platform string) string {
	r.t.Helper()
	reg := pushreg.Registration{Platform: platform, Token: "token-" + nextID()}
	if platform == push.WebPush {
		reg.Token = ""
		reg.Subscription = json.RawMessage(`{"endpoint":"https://push.example.com/` + nextID() + `","keys":{"p256dh":"BNcR","auth":"tBHI"}}`)
	}
	id, _, err := r.store.Register(context.Background(), user, reg)
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

func (r *registry) mute(user, conv string) {
	r.t.Helper()
	if err := r.store.Mute(context.Background(), user, conv, 0); err != nil {
		r.t.Fatal(err)
	}
}

// ids are user's registrations now.
func (r *registry) ids(user string) []string {
	regs, err := r.store.Registrations(context.Background(), user)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, g := range regs {
		out = append(out, g.ID)
	}
	return out
}

func openAs(t *testing.T, p *platformtest.Platform, nc *nats.Conn) (jetstream.JetStream, *streams.Handles) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := streams.Open(ctx, js, p.Conf)
	if err != nil {
		t.Fatal(err)
	}
	return js, h
}

// running is a notifier started by a test.
type running struct {
	n      *notifier.Notifier
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
	close  func()
}

// start runs a notifier on its own connection as the notifier identity,
// reading the registrations with a pushreg.Store of its own.
func start(t *testing.T, p *platformtest.Platform, cfg notifier.Config, providers ...push.Provider) *running {
	t.Helper()
	nc := p.RoleConn(natsauth.RoleNotifier)
	js, h := openAs(t, p, nc)
	preg := prometheus.NewRegistry()
	n, err := notifier.New(cfg, nc, h, pushreg.New(js, nc, h, nil, p.Log, pushreg.Config{}), providers, p.Log, preg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	r := &running{n: n, reg: preg, cancel: rcancel, done: make(chan struct{}), close: nc.Close}
	go func() {
		defer close(r.done)
		if err := n.Run(rctx); err != nil && rctx.Err() == nil {
			t.Errorf("notifier: %v", err)
		}
	}()
	t.Cleanup(r.stop)
	// The consumers start at the streams' end: wait for them before sending.
	waitFor(t, "the notifier's consumers", func() bool {
		for _, cs := range h.Conv {
			if _, err := cs.Consumer(context.Background(), streams.NotifierDurable); err != nil {
				return false
			}
		}
		return true
	})
	return r
}

// stop stops it cleanly; kill as a crash would (its connection first).
func (r *running) stop() { r.cancel(); <-r.done; r.close() }
func (r *running) kill() { r.close(); r.cancel(); <-r.done }

// decisions is how many pending pushes ended as decision.
func (r *running) decisions(decision string) int {
	return int(r.counter("messenger_notifier_decisions_total", map[string]string{"decision": decision}))
}

func (r *running) counter(name string, labels map[string]string) float64 {
	mfs, _ := r.reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var ids struct {
	mu sync.Mutex
	n  int
}

func nextID() string {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.n++
	return fmt.Sprintf("m%d", ids.n)
}

// sendDirect sends text from user to peer through edge 0.
func sendDirect(t *testing.T, p *platformtest.Platform, from, to, text string) edge.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, cerr := p.Edges[0].Edge.Send(ctx, from, &edge.SendRequest{ID: nextID(), To: to, Text: &text})
	if cerr != nil {
		t.Fatalf("send %s -> %s: %v", from, to, cerr)
	}
	return *ack
}

func sendGroup(t *testing.T, p *platformtest.Platform, from, conv, text string) edge.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, cerr := p.Edges[0].Edge.Send(ctx, from, &edge.SendRequest{ID: nextID(), Conv: conv, Text: &text})
	if cerr != nil {
		t.Fatalf("send %s -> %s: %v", from, conv, cerr)
	}
	return *ack
}

func read(t *testing.T, p *platformtest.Platform, user, conv string, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := int64(seq)
	if cerr := p.Edges[0].Edge.Receipt(ctx, user, &edge.ReceiptRequest{Conv: conv, Seq: &s, Status: "read"}); cerr != nil {
		t.Fatalf("read receipt: %v", cerr)
	}
}

// waitFor waits (generously) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	platformtest.Eventually(t, 45*time.Second, func() error {
		if cond() {
			return nil
		}
		return errors.New(what)
	})
}

func TestOnlineRecipientGetsNoPushAwayOneDoes(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	reg.add("bob", push.FCM)
	reg.add("carol", push.FCM)
	fcm := &recorder{platform: push.FCM}
	n := start(t, p, notifier.Config{Coalesce: 300 * time.Millisecond}, fcm)

	// bob is connected (a WebSocket on the edge); carol is not.
	bob, _ := dialRecording(t, p, "bob")
	defer bob.Close()
	sendDirect(t, p, "alice", "bob", "hi bob")
	sendDirect(t, p, "alice", "carol", "hi carol")
	waitFor(t, "a push to carol", func() bool { return len(fcm.to("carol")) == 1 })
	waitFor(t, "bob skipped as online", func() bool { return n.decisions("online") == 1 })
	if got := fcm.to("bob"); len(got) != 0 {
		t.Fatalf("bob is connected and got %d pushes: %+v", len(got), got)
	}
	// Private by default: who and where, not the text.
	note := fcm.to("carol")[0].note
	if note.Title != "alice" || note.Body != "New message from alice" || strings.Contains(note.Body, "hi carol") {
		t.Fatalf("notification %+v: want title alice, body naming alice, no text", note)
	}
	if note.Conv == "" || note.CollapseID != note.Conv || note.Count != 1 {
		t.Fatalf("notification %+v", note)
	}
	// bob leaves: within the offline grace he still gets nothing.
	gone := make(chan struct{}, 1)
	sub, err := p.Conn().Subscribe(subjects.PresenceEventsAll, func(m *nats.Msg) {
		var r event.PresenceReport
		if json.Unmarshal(m.Data, &r) == nil && r.User == "bob" && !r.On {
			gone <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = bob.Close()
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("no report that bob left")
	}
	sendDirect(t, p, "alice", "bob", "are you there?")
	waitFor(t, "bob skipped within the grace", func() bool { return n.decisions("online") == 2 })
	if got := fcm.to("bob"); len(got) != 0 {
		t.Fatalf("bob left just now and got %d pushes", len(got))
	}
}

func TestCoalescingAndCancellationByARead(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	reg.add("bob", push.APNs)
	apns := &recorder{platform: push.APNs}
	n := start(t, p, notifier.Config{Coalesce: 3 * time.Second, Text: true}, apns)

	// Three messages within the window: one push.
	var last edge.Ack
	for i := range 3 {
		last = sendDirect(t, p, "alice", "bob", fmt.Sprintf("part %d", i+1))
	}
	waitFor(t, "one push for three messages", func() bool { return len(apns.to("bob")) == 1 })
	note := apns.to("bob")[0].note
	if note.Count != 3 || note.Seq != last.Seq || note.Body != "part 3" || note.Title != "alice (3)" {
		t.Fatalf("coalesced push %+v: want 3 messages up to seq %d, the last text (--push-text)", note, last.Seq)
	}
	// Two more, read on another device before the window ends: nothing.
	sendDirect(t, p, "alice", "bob", "part 4")
	ack := sendDirect(t, p, "alice", "bob", "part 5")
	read(t, p, "bob", ack.Conv, ack.Seq)
	waitFor(t, "the pending push cancelled by the read", func() bool { return n.decisions("read") == 1 })
	// A later message is pushed on its own: the cancelled ones never were.
	ack = sendDirect(t, p, "alice", "bob", "part 6")
	waitFor(t, "a push for the next message", func() bool { return len(apns.to("bob")) == 2 })
	if note := apns.to("bob")[1].note; note.Count != 1 || note.Seq != ack.Seq {
		t.Fatalf("push after the read %+v: want only seq %d", note, ack.Seq)
	}
	// A read of only part of what is pending leaves the rest.
	first := sendDirect(t, p, "alice", "bob", "part 7")
	sendDirect(t, p, "alice", "bob", "part 8")
	read(t, p, "bob", first.Conv, first.Seq)
	waitFor(t, "a push for what was not read", func() bool { return len(apns.to("bob")) == 3 })
	if note := apns.to("bob")[2].note; note.Count != 1 || note.Body != "part 8" {
		t.Fatalf("push after a partial read %+v: want the one unread message", note)
	}
}

func TestGroupPushNamesTheGroupSkipsSenderAndMuted(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		reg.add(u, push.WebPush)
	}
	wp := &recorder{platform: push.WebPush}
	n := start(t, p, notifier.Config{Coalesce: 500 * time.Millisecond}, wp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	view, _, cerr := p.Edges[0].Edge.CreateGroup(ctx, "alice", &edge.CreateGroupRequest{ID: "g1", Title: "climbing", Members: []string{"bob", "carol", "dave"}})
	if cerr != nil {
		t.Fatal(cerr)
	}
	reg.mute("dave", view.Conv)
	sendGroup(t, p, "alice", view.Conv, "rope?")
	waitFor(t, "pushes to bob and carol", func() bool { return len(wp.all()) == 2 })
	waitFor(t, "dave muted", func() bool { return n.decisions("muted") == 1 })
	for _, s := range wp.all() {
		if s.target.User == "alice" || s.target.User == "dave" {
			t.Fatalf("pushed to %s (the sender, or muted)", s.target.User)
		}
		if s.note.Title != "climbing" || s.note.Body != "New message from alice" {
			t.Fatalf("group push %+v: want the group's title and the sender", s.note)
		}
	}
}

func TestGoneTokenRemoved(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	old := reg.add("bob", push.FCM)
	kept := reg.add("bob", push.APNs)
	fcm := &recorder{platform: push.FCM, answer: func(context.Context, push.Target, push.Notification) error {
		return fmt.Errorf("fcm: UNREGISTERED: %w", push.ErrGone)
	}}
	apns := &recorder{platform: push.APNs}
	n := start(t, p, notifier.Config{Coalesce: 200 * time.Millisecond}, fcm, apns)
	sendDirect(t, p, "alice", "bob", "hi")
	waitFor(t, "the gone registration removed", func() bool { return slices.Equal(reg.ids("bob"), []string{kept}) })
	if fcm.to("bob")[0].target.ID != old {
		t.Fatalf("FCM was given %+v", fcm.to("bob")[0].target)
	}
	if len(apns.to("bob")) != 1 {
		waitFor(t, "the other device pushed", func() bool { return len(apns.to("bob")) == 1 })
	}
	if got := n.counter("messenger_push_sent_total", map[string]string{"provider": push.FCM, "outcome": "gone"}); got != 1 {
		t.Fatalf("gone outcomes: %v", got)
	}
	sendDirect(t, p, "alice", "bob", "again")
	waitFor(t, "the next push to the remaining device only", func() bool { return len(apns.to("bob")) == 2 })
	if got := len(fcm.to("bob")); got != 1 {
		t.Fatalf("the removed token was tried %d times", got)
	}
}

func TestRetryHonoursRetryAfterUntilAccepted(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	reg.add("bob", push.FCM)
	var mu sync.Mutex
	var times []time.Time
	fcm := &recorder{platform: push.FCM, answer: func(context.Context, push.Target, push.Notification) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) < 3 {
			return &push.RetryError{After: 700 * time.Millisecond, Err: errors.New("429 quota")}
		}
		return nil
	}}
	n := start(t, p, notifier.Config{Coalesce: 100 * time.Millisecond}, fcm)
	sendDirect(t, p, "alice", "bob", "hi")
	waitFor(t, "accepted on the third try", func() bool {
		return n.counter("messenger_push_sent_total", map[string]string{"outcome": "ok"}) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 700*time.Millisecond {
			t.Fatalf("retry %d after %s: sooner than Retry-After", i, gap)
		}
	}
	if got := n.counter("messenger_push_retries_total", nil); got != 2 {
		t.Fatalf("retries: %v, want 2", got)
	}
}

func TestHangingProviderDelaysNeitherOthersNorDelivery(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	reg := newRegistry(t, p)
	const users = 20
	release := make(chan struct{})
	defer close(release)
	hang := &recorder{platform: push.FCM, answer: func(ctx context.Context, _ push.Target, _ push.Notification) error {
		select { // hangs until the test ends (the send timeout is longer)
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}
	apns := &recorder{platform: push.APNs}
	for i := range users {
		u := fmt.Sprintf("away%d", i)
		reg.add(u, push.FCM)
		reg.add(u, push.APNs)
	}
	start(t, p, notifier.Config{Coalesce: 100 * time.Millisecond, Workers: 2, QueueSize: 8, SendTimeout: time.Hour}, hang, apns)

	// carol is connected and hears every message alice sends her while the
	// FCM provider hangs and its queue overflows.
	carol, events := dialRecording(t, p, "carol")
	defer carol.Close()
	for i := range users {
		sendDirect(t, p, "alice", fmt.Sprintf("away%d", i), "hi")
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := range 10 {
		sendDirect(t, p, "alice", "carol", fmt.Sprintf("to carol %d", i))
	}
	for events() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("carol got %d of 10 messages within 20 s while a provider hangs", events())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every away user's iPhone is pushed though every Android send hangs.
	waitFor(t, "APNs pushes every user", func() bool { return len(apns.all()) == users })
}

func TestRestartedNotifierSendsNothingTwice(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Partitions: 2})
	reg := newRegistry(t, p)
	const convs = 12
	for i := range convs {
		reg.add(fmt.Sprintf("u%d", i), push.FCM)
	}
	fcm := &recorder{platform: push.FCM}
	cfg := notifier.Config{Coalesce: 300 * time.Millisecond, AckWait: time.Second}

	// A notifier that claimed a push and died before acking its events:
	// made by hand (the consumer exists, the events are stored, the claim
	// is recorded, nothing acked). The next notifier reads them again and
	// sends nothing for them.
	start(t, p, cfg, fcm).stop()
	var ack edge.Ack
	for range 3 {
		ack = sendDirect(t, p, "alice", "u0", "claimed before the crash")
	}
	nc, h := p.Handles()
	defer nc.Close()
	if _, err := h.PushSent.Put(context.Background(), streams.PushSentKey("u0", ack.Conv), []byte(fmt.Sprint(ack.Seq))); err != nil {
		t.Fatal(err)
	}
	again := start(t, p, cfg, fcm)
	waitFor(t, "the claimed push recognised", func() bool { return again.decisions("duplicate") == 1 })
	again.stop()
	if got := fcm.all(); len(got) != 0 {
		t.Fatalf("a claimed push was sent again: %+v", got)
	}

	first := start(t, p, cfg, fcm)

	// Messages to 12 users, in rounds, while the first notifier is killed
	// in the middle of them: some pushes decided and acked, some claimed
	// and not acked, some pending.
	last := map[string]uint64{}
	var mu sync.Mutex
	sendRound := func(round int) {
		for i := range convs {
			ack := sendDirect(t, p, "alice", fmt.Sprintf("u%d", i), fmt.Sprintf("round %d", round))
			mu.Lock()
			last[fmt.Sprintf("u%d", i)] = ack.Seq
			mu.Unlock()
		}
	}
	sendRound(1)
	waitFor(t, "first pushes", func() bool { return len(fcm.all()) >= 1 })
	sendRound(2)
	first.kill()
	sendRound(3)
	second := start(t, p, cfg, fcm)
	sendRound(4)

	// Every user ends up pushed up to its last message, each seq at most once.
	waitFor(t, "pushes up to every user's last message", func() bool {
		top := map[string]uint64{}
		for _, s := range fcm.all() {
			top[s.target.User] = max(top[s.target.User], s.note.Seq)
		}
		mu.Lock()
		defer mu.Unlock()
		for u, seq := range last {
			if top[u] != seq {
				return false
			}
		}
		return true
	})
	// A push covers the messages up to its seq: claims only go up, so no
	// user may be pushed the same seq twice.
	seen := map[string]bool{}
	for _, s := range fcm.all() {
		k := fmt.Sprintf("%s/%d", s.target.User, s.note.Seq)
		if seen[k] {
			t.Fatalf("pushed twice: %s %+v", k, s.note)
		}
		seen[k] = true
	}
	t.Logf("%d pushes for %d messages; the restarted notifier found %d pushes claimed already", len(seen), 4*convs, second.decisions("duplicate"))
}

// dialRecording connects user over WebSocket to edge 0; the func counts
// the messages it received.
func dialRecording(t *testing.T, p *platformtest.Platform, user string) (*client.Client, func() int) {
	t.Helper()
	var n atomic.Int32
	tok := p.Token(user)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URLs: []string{p.WS(0)}, Token: func() (string, error) { return tok, nil },
		OnEvent: func(e client.Event) {
			if e.Type == "msg" {
				n.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, func() int { return int(n.Load()) }
}
