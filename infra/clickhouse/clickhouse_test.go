package clickhouse_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"messenger/infra/clickhouse"
)

// The analysts' questions, exactly as README.md shows them
// (TestREADMEShowsTheTestedQueries keeps the two in step).
const (
	qMessagesPerDay = `SELECT day, count() AS messages
FROM messages_final
WHERE kind = 'text'
GROUP BY day
ORDER BY day`

	qDailyActiveSenders = `SELECT day, uniqExact(sender) AS active_senders
FROM messages_final
WHERE kind = 'text'
GROUP BY day
ORDER BY day`

	qBusiestConversations = `SELECT conv, count() AS messages, uniqExact(sender) AS senders
FROM messages_final
WHERE kind = 'text'
GROUP BY conv
ORDER BY messages DESC, conv
LIMIT 10`

	qMedianReplyTime = `SELECT quantileExact(0.5)(gap) / 1000 AS median_reply_seconds, count() AS replies
FROM
(
    SELECT arrayJoin(arrayFilter(
        (g, s, previous_s) -> s != previous_s,
        arrayMap((t, previous_t) -> toInt64(t) - toInt64(previous_t), arrayPopFront(times), arrayPopBack(times)),
        arrayPopFront(senders), arrayPopBack(senders))) AS gap
    FROM
    (
        SELECT conv,
            arraySort((s, q) -> q, groupArray(sender), groupArray(seq)) AS senders,
            arraySort((t, q) -> q, groupArray(ts), groupArray(seq)) AS times
        FROM messages_final
        WHERE kind = 'text' AND recipient != ''
        GROUP BY conv
    )
)`

	qDeliveryDelay = `SELECT quantileExact(0.5)(delivered_ts - sent_ts) / 1000 AS median_seconds,
    quantileExact(0.99)(delivered_ts - sent_ts) / 1000 AS p99_seconds,
    count() AS delivered
FROM
(
    SELECT conv, recipient AS user, seq, toInt64(ts) AS sent_ts
    FROM messages_final
    WHERE kind = 'text' AND recipient != ''
)
ANY INNER JOIN
(
    SELECT conv, user, seq, toInt64(min(ts)) AS delivered_ts
    FROM receipts_final
    WHERE status = 'delivered'
    GROUP BY conv, user, seq
) USING (conv, user, seq)`
)

// Column lists: on 18.16 PrepareBatch fails without them ("expected 0 arguments").
const (
	sqlInsertMessages   = "INSERT INTO messages (conv, seq, ts, sender, id, kind, text, title, user, members, recipient, part, stream_seq)"
	sqlInsertReceipts   = "INSERT INTO receipts (conv, user, seq, status, ts, part, stream_seq)"
	sqlInsertMembership = "INSERT INTO membership (conv, seq, ts, kind, actor, user, members, title, part, stream_seq)"
)

type message struct {
	conv      string
	seq       uint64
	ts        time.Time
	sender    string
	kind      string
	text      string
	title     string
	user      string
	members   []string
	recipient string
	part      uint16
	streamSeq uint64
}

type receipt struct {
	conv      string
	user      string
	seq       uint64
	status    string
	ts        time.Time
	part      uint16
	streamSeq uint64
}

func ms(t time.Time) uint64 { return uint64(t.UnixMilli()) }

// testDB opens a database unique to this test, with the schema applied,
// dropped when the test ends. The test fails when no server answers.
func testDB(t *testing.T) (driver.Conn, string) {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	db := "test_" + hex.EncodeToString(b)
	conn := open(t, db)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
		conn.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := clickhouse.Apply(ctx, conn); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return conn, db
}

func open(t *testing.T, db string) driver.Conn {
	t.Helper()
	addr := clickhouse.TestAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(ctx, clickhouse.Config{Addr: addr, Database: db, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("ClickHouse is not reachable at %s (MESSENGER_CLICKHOUSE): %v\n"+
			"start it with: bash scripts/clickhouse.sh start", addr, err)
	}
	return conn
}

func insertMsgs(t *testing.T, conn driver.Conn, msgs ...message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, sqlInsertMessages)
	if err != nil {
		t.Fatalf("PrepareBatch messages: %v", err)
	}
	defer batch.Close()
	for _, m := range msgs {
		members := m.members
		if members == nil {
			members = []string{}
		}
		id := m.conv + "-" + strconv.FormatUint(m.seq, 10)
		if err := batch.Append(m.conv, m.seq, ms(m.ts), m.sender, id, m.kind, m.text, m.title, m.user,
			members, m.recipient, m.part, m.streamSeq); err != nil {
			t.Fatalf("Append message: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send messages: %v", err)
	}
}

func insertReceipts(t *testing.T, conn driver.Conn, rs ...receipt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, sqlInsertReceipts)
	if err != nil {
		t.Fatalf("PrepareBatch receipts: %v", err)
	}
	defer batch.Close()
	for _, r := range rs {
		if err := batch.Append(r.conv, r.user, r.seq, r.status, ms(r.ts), r.part, r.streamSeq); err != nil {
			t.Fatalf("Append receipt: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send receipts: %v", err)
	}
}

func insertMembershipRows(t *testing.T, conn driver.Conn, msgs ...message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, sqlInsertMembership)
	if err != nil {
		t.Fatalf("PrepareBatch membership: %v", err)
	}
	defer batch.Close()
	for _, m := range msgs {
		members := m.members
		if members == nil {
			members = []string{}
		}
		if err := batch.Append(m.conv, m.seq, ms(m.ts), m.kind, m.sender, m.user, members, m.title,
			m.part, m.streamSeq); err != nil {
			t.Fatalf("Append membership: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send membership: %v", err)
	}
}

func count(t *testing.T, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestApplyTwiceAndDuplicatesReadOnce(t *testing.T) {
	conn, _ := testDB(t)
	ctx := context.Background()
	if err := clickhouse.Apply(ctx, conn); err != nil { // the second run
		t.Fatalf("second Apply: %v", err)
	}

	at := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	m := message{conv: "dAB", seq: 1, ts: at, sender: "alice", kind: "text", text: "hello",
		recipient: "bob", part: 3, streamSeq: 42}
	// The same event projected twice (a redelivery): two inserts, two parts.
	insertMsgs(t, conn, m)
	insertMsgs(t, conn, m)
	g := message{conv: "gT", seq: 1, ts: at, sender: "carol", kind: "group_created", title: "Team",
		members: []string{"alice", "bob", "carol"}, part: 1, streamSeq: 7}
	insertMembershipRows(t, conn, g)
	insertMembershipRows(t, conn, g)
	r := receipt{conv: "dAB", user: "bob", seq: 1, status: "delivered", ts: at.Add(time.Second), part: 3, streamSeq: 43}
	insertReceipts(t, conn, r)
	insertReceipts(t, conn, r)

	if raw := count(t, conn, "SELECT count() FROM messages"); raw < 1 || raw > 2 {
		t.Fatalf("raw messages rows = %d, want 1 or 2 (2 until a merge)", raw)
	}
	for _, q := range []string{
		"SELECT count() FROM messages_final",
		"SELECT count() FROM messages FINAL",
		"SELECT count() FROM receipts_final",
		"SELECT count() FROM receipts FINAL",
		"SELECT count() FROM membership_final",
		"SELECT count() FROM membership FINAL",
	} {
		if n := count(t, conn, q); n != 1 {
			t.Errorf("%s = %d, want 1", q, n)
		}
	}

	for _, from := range []string{"messages_final", "messages FINAL"} {
		rows, err := conn.Query(ctx, "SELECT conv, seq, ts, day, sender, id, kind, text, title, user, members, recipient, part, stream_seq FROM "+from)
		if err != nil {
			t.Fatalf("select from %s: %v", from, err)
		}
		n := 0
		for rows.Next() {
			n++
			var (
				conv, sender, id, kind, text, title, user, recipient string
				seq, ts, streamSeq                                   uint64
				day                                                  time.Time
				members                                              []string
				part                                                 uint16
			)
			if err := rows.Scan(&conv, &seq, &ts, &day, &sender, &id, &kind, &text, &title, &user, &members, &recipient, &part, &streamSeq); err != nil {
				t.Fatalf("scan %s: %v", from, err)
			}
			if conv != "dAB" || seq != 1 || ts != ms(at) || day.Format(time.DateOnly) != "2024-03-10" ||
				sender != "alice" || kind != "text" || text != "hello" || recipient != "bob" ||
				len(members) != 0 || part != 3 || streamSeq != 42 {
				t.Errorf("%s row = %q %d %d %s %q %q %q %v %q %d %d", from, conv, seq, ts, day, sender, kind, text, members, recipient, part, streamSeq)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if n != 1 {
			t.Errorf("%s: %d rows, want 1", from, n)
		}
	}

	var members []string
	if err := conn.QueryRow(ctx, "SELECT members FROM membership_final WHERE conv = ?", "gT").Scan(&members); err != nil {
		t.Fatal(err)
	}
	if strings.Join(members, ",") != "alice,bob,carol" {
		t.Errorf("membership members = %v", members)
	}

	// Drop removes every table and view; Apply brings them back, empty.
	if err := clickhouse.Drop(ctx, conn); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); n != 0 {
		t.Errorf("%d tables left after Drop", n)
	}
	if err := clickhouse.Drop(ctx, conn); err != nil {
		t.Fatalf("second Drop: %v", err)
	}
	if err := clickhouse.Apply(ctx, conn); err != nil {
		t.Fatalf("Apply after Drop: %v", err)
	}
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); n != 6 {
		t.Errorf("%d tables and views after Apply, want 6", n)
	}
	if n := count(t, conn, "SELECT count() FROM messages_final"); n != 0 {
		t.Errorf("messages_final after Drop and Apply = %d rows", n)
	}
}

// Every table is made with 1024-row granules: a history page decodes whole
// granules of each part it touches (schema.sql).
func TestTablesUseSmallGranules(t *testing.T) {
	conn, _ := testDB(t)
	for _, table := range []string{"messages", "receipts", "membership"} {
		var engine string
		if err := conn.QueryRow(context.Background(), "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&engine); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(engine, "index_granularity = 1024") {
			t.Errorf("%s: %s", table, engine)
		}
	}
}

// Several processes start at once on an empty database: Open and Apply
// concurrently must all succeed.
func TestApplyConcurrently(t *testing.T) {
	_, db := testDB(t)
	conn0 := open(t, db)
	defer conn0.Close()
	if err := clickhouse.Drop(context.Background(), conn0); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := clickhouse.Open(ctx, clickhouse.Config{Addr: clickhouse.TestAddr(), Database: db})
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			errs <- clickhouse.Apply(ctx, conn)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open/Apply: %v", err)
		}
	}
	if got := count(t, conn0, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); got != 6 {
		t.Errorf("%d tables and views, want 6", got)
	}
}

func TestOpenRejectsOddDatabaseName(t *testing.T) {
	_, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: clickhouse.TestAddr(), Database: "x`; DROP"})
	if err == nil {
		t.Fatal("Open accepted a database name that is not an identifier")
	}
}

// seed: two direct conversations (alice-bob, alice-carol) with replies
// across two days, a group, delivered and read receipts, and a duplicate
// copy of a message and of a receipt.
func seed(t *testing.T, conn driver.Conn) {
	day1 := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC) // noon: the same date in any time zone within ±11h
	day2 := day1.AddDate(0, 0, 1)
	var ss uint64
	next := func() uint64 { ss++; return ss }
	text := func(conv string, seq uint64, ts time.Time, from, to string) message {
		return message{conv: conv, seq: seq, ts: ts, sender: from, kind: "text", text: "m", recipient: to, part: 2, streamSeq: next()}
	}
	ab, ac, g := "dAliceBob", "dAliceCarol", "gTeam"
	msgs := []message{
		text(ab, 1, day1, "alice", "bob"),
		text(ab, 2, day1.Add(30*time.Second), "bob", "alice"),  // reply 30 s
		text(ab, 3, day1.Add(60*time.Second), "bob", "alice"),  // same sender: no reply
		text(ab, 4, day1.Add(180*time.Second), "alice", "bob"), // reply 120 s
		text(ab, 5, day2, "bob", "alice"),                      // reply 86220 s, next day
		text(ac, 1, day1.Add(time.Hour), "carol", "alice"),
		text(ac, 2, day1.Add(time.Hour+10*time.Second), "alice", "carol"),      // reply 10 s
		text(ac, 3, day2.Add(30*time.Minute), "carol", "alice"),                // reply 84590 s
		text(ac, 4, day2.Add(30*time.Minute+45*time.Second), "carol", "alice"), // same sender
		{conv: g, seq: 1, ts: day1.Add(-3 * time.Hour), sender: "carol", kind: "group_created", title: "Team",
			members: []string{"alice", "bob", "carol"}, part: 1, streamSeq: next()},
		{conv: g, seq: 2, ts: day2.Add(2 * time.Hour), sender: "carol", kind: "text", text: "hi team", part: 1, streamSeq: next()},
	}
	// The messages in reverse order (the queries must not rely on insertion
	// order), then a re-projected copy of one of them.
	reversed := make([]message, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		reversed = append(reversed, msgs[i])
	}
	insertMsgs(t, conn, reversed...)
	insertMsgs(t, conn, msgs[1])
	insertMembershipRows(t, conn, msgs[9])

	rc := func(conv, user string, seq uint64, status string, ts time.Time) receipt {
		return receipt{conv: conv, user: user, seq: seq, status: status, ts: ts, part: 2, streamSeq: next()}
	}
	milli := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	rs := []receipt{
		rc(ab, "alice", 1, "delivered", day1.Add(milli(10))),                  // the sender's own device: not a delivery
		rc(ab, "bob", 1, "delivered", day1.Add(milli(200))),                   // 200 ms
		rc(ab, "bob", 1, "delivered", day1.Add(milli(5000))),                  // a later one for the same seq: not the first
		rc(ab, "alice", 2, "delivered", day1.Add(30*time.Second+milli(1000))), // 1000 ms
		rc(ab, "alice", 2, "read", day1.Add(40*time.Second)),
		rc(ab, "bob", 4, "delivered", day1.Add(180*time.Second+milli(300))),       // 300 ms
		rc(ac, "alice", 1, "delivered", day1.Add(time.Hour+milli(2500))),          // 2500 ms
		rc(ac, "carol", 2, "read", day1.Add(time.Hour+10*time.Second+milli(700))), // read only: no delivery
		rc(ac, "alice", 3, "delivered", day2.Add(30*time.Minute+milli(400))),      // 400 ms
	}
	insertReceipts(t, conn, rs...)
	insertReceipts(t, conn, rs[1], rs[6]) // re-projected copies
}

func TestAnalystQueries(t *testing.T) {
	conn, _ := testDB(t)
	seed(t, conn)
	ctx := context.Background()

	type perDay struct {
		day string
		n   uint64
	}
	byDay := func(q string) []perDay {
		t.Helper()
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []perDay
		for rows.Next() {
			var d time.Time
			var n uint64
			if err := rows.Scan(&d, &n); err != nil {
				t.Fatal(err)
			}
			out = append(out, perDay{d.Format(time.DateOnly), n})
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(name string, got, want any) {
		t.Helper()
		if gs, ws := fmt.Sprintf("%v", got), fmt.Sprintf("%v", want); gs != ws {
			t.Errorf("%s = %s, want %s", name, gs, ws)
		}
	}

	check("messages per day", byDay(qMessagesPerDay), []perDay{{"2024-03-10", 6}, {"2024-03-11", 4}})
	check("daily active senders", byDay(qDailyActiveSenders), []perDay{{"2024-03-10", 3}, {"2024-03-11", 2}})

	type busy struct {
		conv        string
		msgs, users uint64
	}
	rows, err := conn.Query(ctx, qBusiestConversations)
	if err != nil {
		t.Fatalf("busiest conversations: %v", err)
	}
	var got []busy
	for rows.Next() {
		var b busy
		if err := rows.Scan(&b.conv, &b.msgs, &b.users); err != nil {
			t.Fatal(err)
		}
		got = append(got, b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	check("busiest conversations", got, []busy{{"dAliceBob", 5, 2}, {"dAliceCarol", 4, 2}, {"gTeam", 1, 1}})

	// Replies (s): 30, 120, 86220 (alice-bob); 10, 84590 (alice-carol).
	var median float64
	var replies uint64
	if err := conn.QueryRow(ctx, qMedianReplyTime).Scan(&median, &replies); err != nil {
		t.Fatalf("median reply time: %v", err)
	}
	check("median reply time", []any{median, replies}, []any{120.0, uint64(5)})

	// First delivered receipt of the recipient (ms): 200, 1000, 300, 2500, 400.
	var p50, p99 float64
	var delivered uint64
	if err := conn.QueryRow(ctx, qDeliveryDelay).Scan(&p50, &p99, &delivered); err != nil {
		t.Fatalf("delivery delay: %v", err)
	}
	check("delivery delay", []any{p50, p99, delivered}, []any{0.4, 2.5, uint64(5)})
}

// The README shows every query exactly as this file runs it.
func TestREADMEShowsTheTestedQueries(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for name, q := range map[string]string{
		"messages per day":      qMessagesPerDay,
		"daily active senders":  qDailyActiveSenders,
		"busiest conversations": qBusiestConversations,
		"median reply time":     qMedianReplyTime,
		"delivery delay":        qDeliveryDelay,
	} {
		if !strings.Contains(readme, q+";") {
			t.Errorf("README.md does not show the %s query as tested:\n%s;", name, q)
		}
	}
}
