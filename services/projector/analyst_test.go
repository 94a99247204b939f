package projector_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chinfra "messenger/infra/clickhouse"
	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/services/event"
	"messenger/services/projector"
)

// analystTraffic stores, through the streams, two UTC days of traffic whose
// answers are known: direct and group messages, delivered and read
// receipts, a member added and one removed, a group renamed. The first
// half is projected before the second is stored, so that a group's row is
// folded from membership rows of earlier batches.
type analystTraffic struct {
	ab, ac, ed, team, solo string
}

func storeAnalystTraffic(t *testing.T, p *platformtest.Platform, pb *publisher) analystTraffic {
	day1 := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	day2 := day1.AddDate(0, 0, 1)
	at := func(d time.Time, h, m, s, ms int) int64 {
		return d.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(ms)*time.Millisecond).UnixMilli()
	}
	tr := analystTraffic{
		ab: event.DirectConv("alice", "bob"), ac: event.DirectConv("alice", "carol"), ed: event.DirectConv("erin", "dave"),
		team: event.GroupConv("carol", "team"), solo: event.GroupConv("dave", "solo"),
	}
	msg := func(conv string, ts int64, from, kind string, set func(m *event.Msg)) {
		pb.seqs[conv]++
		m := event.Msg{V: 1, Type: event.TypeMsg, Conv: conv, Seq: pb.seqs[conv], TS: ts, From: from, ID: fmt.Sprintf("a%d", len(pb.stored)), Kind: kind}
		set(&m)
		pb.put(pb.h.Layout.ConvEvents(conv), m, m.Kind)
	}
	text := func(conv string, ts int64, from, to string) {
		msg(conv, ts, from, event.KindText, func(m *event.Msg) { m.Text, m.To = "hi", to })
	}
	rcpt := func(conv, user string, seq uint64, status string, ts int64) {
		r := event.Receipt{V: 1, Type: event.TypeReceipt, Conv: conv, Seq: seq, User: user, Status: status, TS: ts}
		pb.put(pb.h.Layout.Receipts(conv), r, "receipt")
	}
	const dl, rd = event.StatusDelivered, event.StatusRead

	// Day 1. Delivery delays (ms) in the comments: the recipient's first
	// delivered-or-read receipt at or above the message's seq.
	msg(tr.team, at(day1, 9, 0, 0, 0), "carol", event.KindGroupCreated, func(m *event.Msg) {
		m.Title, m.Members = "Team", []string{"carol", "alice", "bob"}
	})
	msg(tr.team, at(day1, 10, 0, 0, 0), "carol", event.KindText, func(m *event.Msg) { m.Text = "standup" }) // seq 2
	rcpt(tr.team, "alice", 2, dl, at(day1, 10, 0, 0, 150))                                                  // 150
	rcpt(tr.team, "bob", 2, rd, at(day1, 10, 0, 1, 0))                                                      // 1000 (read only)
	msg(tr.team, at(day1, 11, 0, 0, 0), "carol", event.KindMemberAdded, func(m *event.Msg) { m.User = "dave" })
	msg(tr.team, at(day1, 11, 30, 0, 0), "alice", event.KindText, func(m *event.Msg) { m.Text = "welcome" }) // seq 4
	rcpt(tr.team, "dave", 4, dl, at(day1, 11, 30, 0, 250))                                                   // 250; not for seq 2 (joined at 3)
	rcpt(tr.team, "carol", 4, rd, at(day1, 11, 30, 5, 0))                                                    // 5000; bob never

	text(tr.ab, at(day1, 12, 0, 0, 0), "alice", "bob") // seq 1
	rcpt(tr.ab, "alice", 1, dl, at(day1, 12, 0, 0, 10))
	rcpt(tr.ab, "bob", 1, dl, at(day1, 12, 0, 0, 200))    // 200
	rcpt(tr.ab, "bob", 1, dl, at(day1, 12, 0, 5, 0))      // a later one: not the first
	text(tr.ab, at(day1, 12, 0, 30, 0), "bob", "alice")   // seq 2, reply 30 s; 31000 by the read below
	text(tr.ab, at(day1, 12, 1, 0, 0), "bob", "alice")    // seq 3, same sender; 1000
	rcpt(tr.ab, "alice", 3, rd, at(day1, 12, 1, 1, 0))    // read before delivered: the read counts
	rcpt(tr.ab, "alice", 3, dl, at(day1, 12, 1, 2, 0))    //
	text(tr.ab, at(day1, 12, 3, 0, 0), "alice", "bob")    // seq 4, reply 120 s
	rcpt(tr.ab, "bob", 4, dl, at(day1, 12, 3, 0, 300))    // 300
	text(tr.ac, at(day1, 13, 0, 0, 0), "carol", "alice")  // seq 1
	rcpt(tr.ac, "alice", 1, dl, at(day1, 13, 0, 2, 500))  // 2500
	text(tr.ac, at(day1, 13, 0, 10, 0), "alice", "carol") // seq 2, reply 10 s
	rcpt(tr.ac, "carol", 2, rd, at(day1, 13, 0, 10, 700)) // 700 (read only)
	text(tr.ac, at(day1, 23, 30, 0, 0), "carol", "alice") // seq 3, reply 37790 s, still day 1 in UTC; 2700400
	p.WaitProjected()

	// Day 2.
	text(tr.ac, at(day2, 0, 15, 0, 0), "carol", "alice") // seq 4, same sender; 400
	rcpt(tr.ac, "alice", 4, dl, at(day2, 0, 15, 0, 400))
	msg(tr.team, at(day2, 8, 0, 0, 0), "carol", event.KindMemberRemoved, func(m *event.Msg) { m.User = "bob" })
	msg(tr.team, at(day2, 8, 5, 0, 0), "carol", event.KindTitleChanged, func(m *event.Msg) { m.Title = "Team B" })
	msg(tr.team, at(day2, 9, 0, 0, 0), "dave", event.KindText, func(m *event.Msg) { m.Text = "hello" }) // seq 7
	rcpt(tr.team, "alice", 7, dl, at(day2, 9, 0, 0, 600))                                               // 600; bob removed
	msg(tr.solo, at(day2, 10, 0, 0, 0), "dave", event.KindGroupCreated, func(m *event.Msg) {
		m.Title, m.Members = "Solo", []string{"dave", "erin"}
	})
	text(tr.ab, at(day2, 12, 0, 0, 0), "bob", "alice")  // seq 5, reply 86220 s; never delivered
	text(tr.ed, at(day2, 12, 30, 0, 0), "erin", "dave") // seq 1; never delivered
	p.WaitProjected()
	return tr
}

// wantAnswers are the answers of README.md's queries to analystTraffic,
// by the name of the query's marker: rows a line, columns tab-separated.
func (tr analystTraffic) wantAnswers() map[string]string {
	return map[string]string{
		"messages-per-day":     "2024-03-10\t9\n2024-03-11\t4\n",
		"daily-active-senders": "2024-03-10\t3\n2024-03-11\t4\n",
		"busiest-conversations": tr.ab + "\tdirect\t\t5\t2\n" + tr.ac + "\tdirect\t\t4\t2\n" +
			tr.team + "\tgroup\tTeam B\t3\t3\n" + tr.ed + "\tdirect\t\t1\t1\n",
		// Replies (s): 30, 120, 86220 (alice-bob); 10, 37790 (alice-carol).
		"median-reply-time": "120\t5\n",
		// Delays (ms): 150 200 250 300 400 600 700 1000 1000 2500 5000 31000 2700400.
		"delivery-delay":               "0.7\t2700.4\t13\n",
		"conversations-by-kind":        "direct\t3\t6\t2\ngroup\t2\t5\t3\n",
		"active-conversations-by-kind": "2024-03-10\tdirect\t2\n2024-03-10\tgroup\t1\n2024-03-11\tdirect\t3\n2024-03-11\tgroup\t1\n",
		"messages-per-group-per-day":   "2024-03-10\t" + tr.team + "\tTeam B\t3\t2\n2024-03-11\t" + tr.team + "\tTeam B\t3\t1\n",
	}
}

// answer runs query and prints its rows, one a line, columns tab-separated
// (dates as 2006-01-02).
func answer(t *testing.T, conn driver.Conn, query string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), platformtest.Patience)
	defer cancel()
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out strings.Builder
	types := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		for i, v := range vals {
			if i > 0 {
				out.WriteByte('\t')
			}
			v = reflect.ValueOf(v).Elem().Interface()
			if d, ok := v.(time.Time); ok {
				v = d.Format(time.DateOnly)
			}
			fmt.Fprint(&out, v)
		}
		out.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out.String()
}

// TestAnalystQueries runs every query README.md shows (by its
// analyst-query marker) on projected traffic and checks the answers, then
// again after rebuild-history --drop; on one server, and on the two shards
// of MESSENGER_TEST_CLICKHOUSE_SHARDS when it is set.
func TestAnalystQueries(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := chinfra.AnalystQueries(string(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("single", func(t *testing.T) { analystQueries(t, queries, nil) })
	t.Run("sharded", func(t *testing.T) {
		if os.Getenv("MESSENGER_TEST_CLICKHOUSE_SHARDS") == "" {
			t.Skip("MESSENGER_TEST_CLICKHOUSE_SHARDS is not set (scripts/test.sh sets it)")
		}
		analystQueries(t, queries, chinfra.TestShards())
	})
}

func analystQueries(t *testing.T, queries []chinfra.AnalystQuery, shards []string) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, ClickHouseShards: shards, Partitions: 2, NoFanout: true})
	pb := newPublisher(t, p)
	tr := storeAnalystTraffic(t, p, pb)
	want := tr.wantAnswers()
	if len(queries) != len(want) {
		t.Errorf("README.md shows %d analyst queries, this test knows the answers of %d", len(queries), len(want))
	}
	check := func(when string) {
		t.Helper()
		for _, q := range queries {
			w, ok := want[q.Name]
			if !ok {
				t.Errorf("README query %s: no answer known to the test", q.Name)
				continue
			}
			if got := answer(t, p.CH, q.SQL); got != w {
				t.Errorf("%s: README query %s answers\n%s\nwant\n%s", when, q.Name, got, w)
			}
		}
		const row = "SELECT kind, title, creator, created_ts, created_seq, created_day, members, updated_ts, updated_seq FROM conversations_final WHERE conv = ?"
		if got, w := answer(t, p.CH, row, tr.team), "group\tTeam B\tcarol\t1710061200000\t1\t2024-03-10\t[carol alice dave]\t1710144300000\t6\n"; got != w {
			t.Errorf("%s: conversations row of the group: %s, want %s", when, got, w)
		}
		if got, w := answer(t, p.CH, row, tr.ed), "direct\t\terin\t1710160200000\t1\t2024-03-11\t[dave erin]\t1710160200000\t1\n"; got != w {
			t.Errorf("%s: conversations row of a direct conversation: %s, want %s", when, got, w)
		}
	}
	check("projected")

	// rebuild-history --drop: the tables made again, every stream projected
	// again from its first event.
	p.StopProjector()
	cfg := chinfra.Config{Addr: chinfra.TestAddr(), Database: p.CHDB, Shards: shards}
	if len(shards) > 0 {
		cfg.Addr = shards[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*platformtest.Patience)
	defer cancel()
	if err := chinfra.DropAll(ctx, p.CH, cfg); err != nil {
		t.Fatal(err)
	}
	if err := chinfra.ApplyAll(ctx, p.CH, cfg); err != nil {
		t.Fatal(err)
	}
	_, h := p.RoleHandles(natsauth.RoleProjector)
	if err := projector.ResetConsumers(ctx, h); err != nil {
		t.Fatal(err)
	}
	p.StartProjector()
	p.WaitProjected()
	check("rebuilt")
}

// A deployment projected before the conversations table existed (here: the
// table emptied): the history check finds every conversation without its
// row, the repair writes the rows the projector would have, and the next
// check finds nothing.
func TestHistoryCheckWritesMissingConversations(t *testing.T) {
	t.Run("single", func(t *testing.T) { checkWritesMissingConversations(t, nil) })
	t.Run("sharded", func(t *testing.T) {
		if os.Getenv("MESSENGER_TEST_CLICKHOUSE_SHARDS") == "" {
			t.Skip("MESSENGER_TEST_CLICKHOUSE_SHARDS is not set (scripts/test.sh sets it)")
		}
		checkWritesMissingConversations(t, chinfra.TestShards())
	})
}

func checkWritesMissingConversations(t *testing.T, shards []string) {
	p := platformtest.Start(t, platformtest.Options{ClickHouse: true, ClickHouseShards: shards, Partitions: 2, NoFanout: true})
	pb := newPublisher(t, p)
	storeAnalystTraffic(t, p, pb)
	const all = "SELECT * FROM conversations_final ORDER BY conv"
	before := answer(t, p.CH, all)
	if n := strings.Count(before, "\n"); n != 5 {
		t.Fatalf("%d conversations rows, want 5:\n%s", n, before)
	}
	pr, _, _ := p.Projector()
	ctx, cancel := context.WithTimeout(context.Background(), 2*platformtest.Patience)
	defer cancel()
	if rep, err := pr.CheckHistory(ctx, nil, false); err != nil || rep.Conversations != 0 || rep.Missing() != 0 {
		t.Fatalf("check of a whole projection: %+v %v", rep, err)
	}
	if len(shards) == 0 {
		if err := p.CH.Exec(ctx, "TRUNCATE TABLE conversations"); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range shards {
		conn, err := chinfra.Open(ctx, chinfra.Config{Addr: a, Database: p.CHDB})
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Exec(ctx, "TRUNCATE TABLE conversations"+chinfra.LocalSuffix)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := pr.CheckHistory(ctx, nil, false); err != nil || rep.Conversations != 5 || rep.ConversationsRepaired != 0 {
		t.Fatalf("check without the rows: %+v %v, want 5 conversations found", rep, err)
	}
	if answer(t, p.CH, all) != "" {
		t.Fatal("a check without repair wrote rows")
	}
	if rep, err := pr.CheckHistory(ctx, nil, true); err != nil || rep.Conversations != 5 || rep.ConversationsRepaired != 5 {
		t.Fatalf("repair: %+v %v, want 5 conversations written", rep, err)
	}
	if after := answer(t, p.CH, all); after != before {
		t.Fatalf("after the repair:\n%s\nthe projector wrote:\n%s", after, before)
	}
	if rep, err := pr.CheckHistory(ctx, nil, false); err != nil || rep.Conversations != 0 {
		t.Fatalf("after the repair: %+v %v", rep, err)
	}
}
