package edge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client"
	"messenger/infra/platformtest"
	"messenger/streams"
	"messenger/subjects"
)

func TestTwoUsersOnTwoEdges(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	alice, arec := dial(t, p, "alice", []int{0}, dialOpts{})
	_, brec := dial(t, p, "bob", []int{1}, dialOpts{auto: true})

	ack := send(t, alice, "bob", "", "hello bob")
	if ack.Seq != 1 || ack.Conv == "" || ack.TS == 0 {
		t.Fatalf("ack = %+v", ack)
	}
	if !ack.Online {
		t.Errorf("bob is connected on another edge: ack.online must be true")
	}
	got := brec.waitMsgs(t, 1)[0]
	if got.Text != "hello bob" || got.From != "alice" || got.Conv != ack.Conv || got.Seq != 1 || got.Kind != "text" || got.Cursor == "" || got.ID != ack.ID {
		t.Fatalf("bob got %+v", got)
	}
	// The sender's own connection gets its message too, after the ack.
	own := arec.waitMsgs(t, 1)[0]
	if own.ID != ack.ID || own.Seq != 1 {
		t.Fatalf("alice's own msg = %+v", own)
	}
	// Bob's client sent delivered; alice learns it, and the watermark shows.
	platformtest.Eventually(t, platformtest.Patience, func() error {
		for _, r := range arec.ofType("receipt") {
			if r.User == "bob" && r.Status == "delivered" && r.Seq == 1 && r.Cursor != "" {
				return nil
			}
		}
		return fmt.Errorf("no delivered receipt from bob yet: %+v", arec.ofType("receipt"))
	})
	var v convView
	if code := api(t, "GET", p.HTTP(1)+"/v1/conversations/"+ack.Conv, p.Token("alice"), nil, &v); code != 200 {
		t.Fatalf("GET conversation: %d", code)
	}
	if v.Kind != "direct" || v.JoinedSeq != 1 || len(v.Members) != 2 {
		t.Fatalf("conversation = %+v", v)
	}
	for _, m := range v.Members {
		if m.User == "bob" && m.DeliveredSeq != 1 {
			t.Fatalf("bob's delivered watermark = %d", m.DeliveredSeq)
		}
	}
	// Bob answers into the same conversation by id.
	back := send(t, mustDialed(t, p, "bob", 1), "", ack.Conv, "hi alice")
	if back.Conv != ack.Conv || back.Seq != 2 {
		t.Fatalf("reply ack = %+v", back)
	}
	if m := arec.waitMsgs(t, 2)[1]; m.Text != "hi alice" || m.Seq != 2 {
		t.Fatalf("alice got %+v", m)
	}
}

func mustDialed(t *testing.T, p *platformtest.Platform, user string, edge int) *client.Client {
	c, _ := dial(t, p, user, []int{edge}, dialOpts{})
	return c
}

func TestMultiDeviceAndReadReceipts(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	phone, prec := dial(t, p, "carol", []int{0}, dialOpts{device: "phone"})
	_, lrec := dial(t, p, "carol", []int{1}, dialOpts{device: "laptop"})
	dave, drec := dial(t, p, "dave", []int{1}, dialOpts{})

	ack := send(t, dave, "carol", "", "one")
	send(t, dave, "carol", "", "two")
	for _, rec := range []*recorder{prec, lrec} {
		ms := rec.waitMsgs(t, 2)
		if ms[0].Text != "one" || ms[1].Text != "two" {
			t.Fatalf("device got %+v", ms)
		}
	}
	// Read on the phone: the laptop and dave get the read receipt.
	if err := phone.Receipt(ack.Conv, 2, "read"); err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]*recorder{"laptop": lrec, "dave": drec} {
		platformtest.Eventually(t, platformtest.Patience, func() error {
			for _, r := range rec.ofType("receipt") {
				if r.User == "carol" && r.Status == "read" && r.Seq == 2 {
					return nil
				}
			}
			return fmt.Errorf("%s has no read receipt", name)
		})
	}
	// Carol's own message reaches her other device as well.
	send(t, phone, "dave", "", "from phone")
	if m := lrec.waitMsgs(t, 3)[2]; m.Text != "from phone" || m.From != "carol" {
		t.Fatalf("laptop got %+v", m)
	}
	// A lower receipt changes nothing.
	if err := phone.Receipt(ack.Conv, 1, "delivered"); err != nil {
		t.Fatal(err)
	}
	var v convView
	platformtest.Eventually(t, platformtest.Patience, func() error {
		api(t, "GET", p.HTTP(0)+"/v1/conversations/"+ack.Conv, p.Token("dave"), nil, &v)
		for _, m := range v.Members {
			if m.User == "carol" && m.ReadSeq == 2 && m.DeliveredSeq == 2 {
				return nil
			}
		}
		return fmt.Errorf("watermarks %+v", v.Members)
	})
}

func TestOfflineUserCatchesUpFromCursor(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	erin, _ := dial(t, p, "erin", []int{0}, dialOpts{})
	cursor := erin.Hello().Cursor
	if cursor == "" {
		t.Fatal("hello has no cursor")
	}
	_ = erin.Close()

	frank, _ := dial(t, p, "frank", []int{1}, dialOpts{})
	for i := 0; i < 30; i++ {
		send(t, frank, "erin", "", fmt.Sprintf("m%02d", i))
	}
	_, rec := dial(t, p, "erin", []int{1}, dialOpts{cursor: cursor})
	ms := rec.waitMsgs(t, 30)
	time.Sleep(200 * time.Millisecond) // nothing more may come: check no duplicate arrives
	ms = rec.msgs()
	if len(ms) != 30 {
		t.Fatalf("got %d messages, want 30", len(ms))
	}
	for i, m := range ms {
		if m.Text != fmt.Sprintf("m%02d", i) || m.Seq != int64(i+1) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
}

func TestResendIsDeduplicated(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	gina, _ := dial(t, p, "gina", []int{0}, dialOpts{})
	_, hrec := dial(t, p, "hank", []int{0}, dialOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a1, err := gina.SendID(ctx, "same-id", "hank", "", "first")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := gina.SendID(ctx, "same-id", "hank", "", "different text")
	if err != nil {
		t.Fatal(err)
	}
	if a1.Conv != a2.Conv || a1.Seq != a2.Seq || a1.TS != a2.TS {
		t.Fatalf("resend ack %+v differs from first %+v", a2, a1)
	}
	// Over HTTP too.
	var ack map[string]any
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("gina"), map[string]any{"id": "same-id", "to": "hank", "text": "third"}, &ack); code != 200 || ack["seq"].(float64) != float64(a1.Seq) {
		t.Fatalf("HTTP resend: %d %v", code, ack)
	}
	send(t, gina, "hank", "", "next")
	ms := hrec.waitMsgs(t, 2)
	if len(ms) != 2 || ms[0].Text != "first" || ms[1].Text != "next" || ms[1].Seq != 2 {
		t.Fatalf("hank got %+v", ms)
	}
}

// Both sides send at once through different edges, from the very first
// message: one conversation, one gapless order, the same for both.
func TestConcurrentSendsKeepOneOrder(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2, Edge: fastSends})
	ivy, irec := dial(t, p, "ivy", []int{0}, dialOpts{})
	jack, jrec := dial(t, p, "jack", []int{1}, dialOpts{})
	const each = 60
	var wg sync.WaitGroup
	convs := make(chan string, 2*each)
	for _, side := range []struct {
		c  *client.Client
		to string
	}{{ivy, "jack"}, {jack, "ivy"}} {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each/4; i++ {
					ack := send(t, side.c, side.to, "", fmt.Sprintf("%s-%d-%d", side.to, w, i))
					convs <- ack.Conv
				}
			}()
		}
	}
	wg.Wait()
	close(convs)
	var conv string
	for c := range convs {
		if conv == "" {
			conv = c
		}
		if c != conv {
			t.Fatalf("two conversations: %s and %s", conv, c)
		}
	}
	a := irec.waitMsgs(t, 2*each)
	b := jrec.waitMsgs(t, 2*each)
	for i := 0; i < 2*each; i++ {
		if a[i].Seq != int64(i+1) || b[i].Seq != int64(i+1) || a[i].ID != b[i].ID || a[i].Text != b[i].Text {
			t.Fatalf("position %d: ivy %+v, jack %+v", i, a[i], b[i])
		}
	}
}

// A reply sent through another edge after the message it answers was
// delivered starts from the right expected sequence: the edge learned the
// conversation's last event from the announcement to its user, so the
// compare-and-set of the send does not fail first (no read, no retry).
func TestRepliesThroughAnotherEdgeDoNotConflict(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	alice, arec := dial(t, p, "alice", []int{0}, dialOpts{})
	bob, brec := dial(t, p, "bob", []int{1}, dialOpts{})
	first := send(t, alice, "bob", "", "first")
	brec.waitMsgs(t, 1)
	send(t, bob, "alice", "", "warm bob's edge") // bob's edge reads the conversation once
	arec.waitMsgs(t, 2)
	before := p.Edges[0].Counter("messenger_edge_seq_conflicts_total") + p.Edges[1].Counter("messenger_edge_seq_conflicts_total")
	const rounds = 10
	for i := 0; i < rounds; i++ {
		a := send(t, alice, "", first.Conv, fmt.Sprintf("a%d", i))
		brec.waitMsgs(t, 2+2*i+1)
		b := send(t, bob, "", first.Conv, fmt.Sprintf("b%d", i))
		if b.Seq != a.Seq+1 {
			t.Fatalf("round %d: seqs %d then %d", i, a.Seq, b.Seq)
		}
		arec.waitMsgs(t, 2+2*i+2)
	}
	after := p.Edges[0].Counter("messenger_edge_seq_conflicts_total") + p.Edges[1].Counter("messenger_edge_seq_conflicts_total")
	if after != before {
		t.Fatalf("%v seq conflicts in %d alternating sends through two edges, want 0", after-before, 2*rounds)
	}
}

// The ack's online is answered from the other edge's recent answer, and
// turns false as soon as that edge reports the recipient gone (well before
// the answer's 5 s would run out), and true again when it is back.
func TestAckOnlineFollowsTheRecipientAcrossEdges(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	alice, _ := dial(t, p, "alice", []int{0}, dialOpts{})
	bob, _ := dial(t, p, "bob", []int{1}, dialOpts{})
	for i := 0; i < 3; i++ {
		if ack := send(t, alice, "bob", "", fmt.Sprintf("m%d", i)); !ack.Online {
			t.Fatalf("send %d: bob is connected on edge 1, ack.online = false", i)
		}
	}
	_ = bob.Close()
	gone := time.Now()
	i := 0
	platformtest.Eventually(t, platformtest.Patience, func() error {
		i++
		if send(t, alice, "bob", "", fmt.Sprintf("after-%d", i)).Online {
			time.Sleep(50 * time.Millisecond)
			return fmt.Errorf("bob closed %v ago: still online", time.Since(gone))
		}
		return nil
	})
	if waited := time.Since(gone); waited > 3*time.Second {
		t.Errorf("online turned false %v after bob left: the leave report was not heeded (the answer lasts 5 s)", waited)
	}
	dial(t, p, "bob", []int{1}, dialOpts{})
	platformtest.Eventually(t, platformtest.Patience, func() error {
		i++
		if !send(t, alice, "bob", "", fmt.Sprintf("back-%d", i)).Online {
			time.Sleep(50 * time.Millisecond)
			return fmt.Errorf("bob is back: still offline")
		}
		return nil
	})
}

// A burst of receipts in one conversation is stored as a few watermark
// writes (at the fan-out's checkpoints), not one each; the sender still
// learns each change that reached it and the conversation shows the last.
func TestReceiptBurstCoalescesWatermarkWrites(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edges: 2})
	alice, arec := dial(t, p, "alice", []int{0}, dialOpts{})
	bob, brec := dial(t, p, "bob", []int{1}, dialOpts{})
	const n = 50
	var conv string
	for i := 0; i < n; i++ {
		conv = send(t, alice, "bob", "", fmt.Sprintf("m%d", i)).Conv
	}
	brec.waitMsgs(t, n)
	js, err := jetstream.New(p.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.Stream(ctx, subjects.KVStream(streams.BucketWatermarks))
	if err != nil {
		t.Fatal(err)
	}
	info, err := kv.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := info.State.LastSeq
	for seq := int64(1); seq <= n; seq++ {
		if err := bob.Receipt(conv, seq, "read"); err != nil {
			t.Fatal(err)
		}
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		for _, r := range arec.ofType("receipt") {
			if r.User == "bob" && r.Status == "read" && r.Seq == n {
				return nil
			}
		}
		return fmt.Errorf("alice has not learnt bob read %d", n)
	})
	var v convView
	if code := api(t, "GET", p.HTTP(0)+"/v1/conversations/"+conv, p.Token("alice"), nil, &v); code != 200 {
		t.Fatalf("GET conversation: %d", code)
	}
	for _, m := range v.Members {
		if m.User == "bob" && (m.ReadSeq != n || m.DeliveredSeq != n) {
			t.Fatalf("bob's watermarks = %+v, want read and delivered %d", m, n)
		}
	}
	if info, err = kv.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if writes := info.State.LastSeq - before; writes == 0 || writes > n/2 {
		t.Fatalf("%d receipts made %d watermark writes: want at least 1 and at most %d", n, writes, n/2)
	}
}

// A catch-up's frames go out in a few socket writes, not one each.
func TestCatchUpFramesShareSocketWrites(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{Edge: fastSends})
	sam, srec := dial(t, p, "sam", []int{0}, dialOpts{})
	const n = 200
	for i := 0; i < n; i++ {
		send(t, sam, "rita", "", fmt.Sprint(i))
	}
	srec.waitMsgs(t, n) // sam's own copies: its connection is quiet from here
	before := p.Edges[0].Counter("messenger_edge_socket_writes_total")
	_, rrec := dial(t, p, "rita", []int{0}, dialOpts{cursor: "0"})
	ms := rrec.waitMsgs(t, n)
	for i, m := range ms {
		if m.Seq != int64(i+1) || m.Text != fmt.Sprint(i) {
			t.Fatalf("position %d: seq %d text %q", i, m.Seq, m.Text)
		}
	}
	writes := p.Edges[0].Counter("messenger_edge_socket_writes_total") - before
	t.Logf("%d frames, %v socket writes", n+1, writes)
	if writes == 0 || writes > n/4 {
		t.Fatalf("%d frames of a catch-up took %v socket writes: want at least 1 and at most %d", n+1, writes, n/4)
	}
}
