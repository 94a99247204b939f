package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"messenger/client"
	"messenger/infra/platformtest"
	"messenger/services/projector"
)

type page struct {
	Messages []client.Event `json:"messages"`
	HasMore  bool           `json:"has_more"`
}

func getPage(t *testing.T, p *platformtest.Platform, edge int, user, conv, query string) (int, page) {
	t.Helper()
	var pg page
	code := api(t, "GET", p.HTTP(edge)+"/v1/conversations/"+conv+"/messages?"+query, p.Token(user), nil, &pg)
	return code, pg
}

func seqs(pg page) []int64 {
	out := []int64{}
	for _, m := range pg.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func span(a, b int64) []int64 {
	out := []int64{}
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

// sendN sends n messages from c to `to` and returns the conversation.
func sendN(t *testing.T, c *client.Client, to string, n int, prefix string) string {
	t.Helper()
	var conv string
	for i := 0; i < n; i++ {
		conv = send(t, c, to, "", fmt.Sprintf("%s%d", prefix, i)).Conv
	}
	return conv
}

var historyEdge = edgeConfig(func(c *edgeCfg) { c.SendRate, c.SendBurst, c.HistoryRate, c.HistoryBurst = 1e5, 1e5, 1e5, 1e5 })

func TestHistoryPages(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Edge: historyEdge})
	alice, _ := dial(t, p, "alice", []int{0}, dialOpts{})
	conv := sendN(t, alice, "bob", 120, "m")
	p.WaitProjected()

	for _, tc := range []struct {
		query   string
		want    []int64
		hasMore bool
	}{
		{"", span(71, 120), true},
		{"limit=100", span(21, 120), true},
		{"limit=500", span(21, 120), true}, // capped at 100
		{"limit=1", span(120, 120), true},
		{"before=21&limit=100", span(1, 20), false},
		{"before=51", span(1, 50), false}, // exactly one page
		{"before=1", span(1, 0), false},   // before the first seq
		{"before=0", span(1, 0), false},
		{"after=120", span(1, 0), false}, // after the last seq
		{"after=500", span(1, 0), false},
		{"after=0", span(1, 50), true},
		{"after=100", span(101, 120), false},
		{"after=50&before=60", span(51, 59), false},
		{"after=10&before=200&limit=5", span(11, 15), true},
	} {
		code, pg := getPage(t, p, 0, "bob", conv, tc.query)
		if code != 200 || !slices.Equal(seqs(pg), tc.want) || pg.HasMore != tc.hasMore {
			t.Errorf("?%s: %d seqs %v has_more %v; want %v %v", tc.query, code, seqs(pg), pg.HasMore, tc.want, tc.hasMore)
		}
	}
	// Pages are msg events with every field.
	_, pg := getPage(t, p, 0, "alice", conv, "limit=1")
	m := pg.Messages[0]
	if m.Type != "msg" || m.Conv != conv || m.From != "alice" || m.Text != "m119" || m.Kind != "text" || m.ID == "" || m.TS == 0 {
		t.Fatalf("page event %+v", m)
	}
	for _, bad := range []string{"before=-1", "before=abc", "after=1.5", "limit=0", "limit=x"} {
		var e apiError
		if code := api(t, "GET", p.HTTP(0)+"/v1/conversations/"+conv+"/messages?"+bad, p.Token("bob"), nil, &e); code != 400 || e.Error.Code != "bad_request" {
			t.Errorf("?%s: %d %+v", bad, code, e)
		}
	}
	// Non-members get the same 403 whether the conversation exists or not.
	var e1, e2 apiError
	c1 := api(t, "GET", p.HTTP(0)+"/v1/conversations/"+conv+"/messages", p.Token("eve"), nil, &e1)
	c2 := api(t, "GET", p.HTTP(0)+"/v1/conversations/dNoSuchConversation/messages", p.Token("eve"), nil, &e2)
	if c1 != 403 || c2 != 403 || e1 != e2 {
		t.Fatalf("non-member: %d %+v vs %d %+v", c1, e1, c2, e2)
	}
}

// With the projector stopped, an acked message is in every member's
// history at once, through any edge; a page mixing ClickHouse and the
// stream shows no seam.
func TestHistoryReadYourWritesWithProjectorStopped(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Edges: 2, Edge: historyEdge})
	carol, _ := dial(t, p, "carol", []int{0}, dialOpts{})
	conv := sendN(t, carol, "dan", 20, "old")
	p.WaitProjected()
	p.StopProjector()
	for i := 0; i < 10; i++ {
		ack := send(t, carol, "dan", "", fmt.Sprintf("new%d", i))
		// At once, on the other edge, for the other member.
		_, pg := getPage(t, p, 1, "dan", conv, "limit=1")
		if len(pg.Messages) != 1 || pg.Messages[0].Seq != ack.Seq || pg.Messages[0].Text != fmt.Sprintf("new%d", i) {
			t.Fatalf("acked seq %d not in dan's history: %+v", ack.Seq, pg.Messages)
		}
	}
	_, pg := getPage(t, p, 1, "dan", conv, "limit=25")
	if !slices.Equal(seqs(pg), span(6, 30)) || pg.Messages[14].Text != "old19" || pg.Messages[15].Text != "new0" {
		t.Fatalf("mixed page: %v", seqs(pg))
	}
	var n uint64
	if err := p.CH.QueryRow(context.Background(), "SELECT count() FROM messages_final WHERE conv = ?", conv).Scan(&n); err != nil || n != 20 {
		t.Fatalf("ClickHouse has %d rows (%v): the newest must have come from the stream", n, err)
	}
}

// ClickHouse stops while messages flow, then starts: every message is
// projected exactly once, and history never missed one meanwhile.
func TestClickHouseDownWhileMessagesFlow(t *testing.T) {
	ch := platformtest.StartPrivateClickHouse(t)
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, ClickHouseAddr: ch.Addr, Edge: historyEdge,
		Projector: projector.Config{MaxBackoff: 300 * time.Millisecond}})
	erin, _ := dial(t, p, "erin", []int{0}, dialOpts{})
	conv := sendN(t, erin, "finn", 40, "a")
	ch.Stop()
	sendN(t, erin, "finn", 40, "b")
	if _, pg := getPage(t, p, 0, "finn", conv, "limit=100"); !slices.Equal(seqs(pg), span(1, 80)) {
		t.Fatalf("history while ClickHouse is down: %v", seqs(pg))
	}
	ch.Start()
	sendN(t, erin, "finn", 20, "c")
	p.WaitProjected()
	var total, distinct uint64
	platformtest.WaitProgress(t, func() (int, error) {
		err := p.CH.QueryRow(context.Background(), "SELECT count(), uniqExact(seq) FROM messages_final WHERE conv = ?", conv).Scan(&total, &distinct)
		if err != nil || total != 100 || distinct != 100 {
			return int(distinct), fmt.Errorf("clickhouse: %d rows, %d seqs, %v", total, distinct, err)
		}
		return int(distinct), nil
	})
	var dead uint64
	_ = p.CH.QueryRow(context.Background(), "SELECT count() FROM messages_final WHERE conv = ? AND text = ''", conv).Scan(&dead)
	if dead != 0 {
		t.Fatalf("%d empty rows", dead)
	}
}

// An event ClickHouse rejects for good becomes a dead letter with its
// reason; once the cause is fixed, replay-dead-letters projects it. An
// event that does not decode stays a dead letter.
func TestDeadLettersAndReplay(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Edge: historyEdge,
		Projector: projector.Config{MaxTries: 2, MaxBackoff: 100 * time.Millisecond}})
	gus, _ := dial(t, p, "gus", []int{0}, dialOpts{})
	conv := sendN(t, gus, "hal", 3, "x")
	p.WaitProjected()
	ctx := context.Background()
	// Receipts cannot be projected while their table is away.
	if err := p.CH.Exec(ctx, "RENAME TABLE receipts TO receipts_away"); err != nil {
		t.Fatal(err)
	}
	var e apiError
	if code := api(t, "POST", p.HTTP(0)+"/v1/receipts", p.Token("hal"), map[string]any{"conv": conv, "seq": 3, "status": "read"}, &e); code != 200 {
		t.Fatalf("receipt: %d %+v", code, e)
	}
	// And a poisoned event, written straight into the stream.
	nc := p.Conn()
	if err := nc.Publish(p.Conf.Layout().ConvEvents("dPoison"), []byte(`{"v":1,"type":"msg","conv":"dPoison","seq":"one"}`)); err != nil {
		t.Fatal(err)
	}
	pr, pnc, h := p.Projector()
	platformtest.Eventually(t, 30*time.Second, func() error {
		info, err := h.Dead.Info(ctx)
		if err != nil || info.State.Msgs < 2 {
			return fmt.Errorf("dead letters: %v %v", info, err)
		}
		return nil
	})
	p.WaitProjected() // the batch went on: nothing is stuck behind them
	if err := p.CH.Exec(ctx, "RENAME TABLE receipts_away TO receipts"); err != nil {
		t.Fatal(err)
	}
	rep, err := pr.ReplayDeadLetters(ctx, pnc)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 1 || rep.Failed != 1 {
		t.Fatalf("replay: %+v", rep)
	}
	var n uint64
	if err := p.CH.QueryRow(ctx, "SELECT count() FROM receipts_final WHERE conv = ? AND user = 'hal' AND seq = 3", conv).Scan(&n); err != nil || n != 1 {
		t.Fatalf("replayed receipt rows: %d %v", n, err)
	}
	info, _ := h.Dead.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d dead letters left, want the undecodable one", info.State.Msgs)
	}
}

// Rebuilding the projection from the streams gives the same answers.
func TestRebuildGivesTheSameAnswers(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, Edge: historyEdge})
	ida, _ := dial(t, p, "ida", []int{0}, dialOpts{})
	conv1 := sendN(t, ida, "jon", 60, "r")
	conv2 := sendN(t, ida, "kim", 7, "s")
	p.WaitProjected()
	queries := []string{"", "before=30&limit=10", "after=5&limit=3", "limit=100"}
	answers := func() string {
		var all []page
		for _, c := range []string{conv1, conv2} {
			for _, q := range queries {
				_, pg := getPage(t, p, 0, "ida", c, q)
				all = append(all, pg)
			}
		}
		b, _ := json.Marshal(all)
		return string(b)
	}
	before := answers()
	ctx := context.Background()
	p.StopProjector()
	_, _, h := p.Projector()
	if err := projector.ResetConsumers(ctx, h); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"messages", "receipts", "membership"} {
		if err := p.CH.Exec(ctx, "TRUNCATE TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	p.StartProjector()
	time.Sleep(300 * time.Millisecond)
	p.WaitProjected()
	var n uint64
	_ = p.CH.QueryRow(ctx, "SELECT count() FROM messages_final").Scan(&n)
	if n != 67 {
		t.Fatalf("rebuilt projection has %d messages, want 67", n)
	}
	if after := answers(); after != before {
		t.Fatalf("answers differ after the rebuild:\n%s\n%s", before, after)
	}
}
