package clickhouse_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"messenger/infra/clickhouse"
)

// Column lists: on 18.16 PrepareBatch fails without them ("expected 0 arguments").
const (
	sqlInsertMessages   = "INSERT INTO messages (conv, seq, ts, sender, id, kind, text, title, user, members, recipient, part, stream_seq)"
	sqlInsertReceipts   = "INSERT INTO receipts (conv, user, seq, status, ts, part, stream_seq)"
	sqlInsertMembership = "INSERT INTO membership (conv, seq, ts, kind, actor, user, members, title, part, stream_seq)"
	sqlInsertConvs      = "INSERT INTO conversations (conv, kind, title, creator, created_ts, created_seq, members, updated_ts, updated_seq, part, stream_seq)"
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
	if n := count(t, conn, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); n != 8 {
		t.Errorf("%d tables and views after Apply, want 8", n)
	}
	if n := count(t, conn, "SELECT count() FROM messages_final"); n != 0 {
		t.Errorf("messages_final after Drop and Apply = %d rows", n)
	}
}

// Every table is made with 1024-row granules: a history page decodes whole
// granules of each part it touches (schema.sql).
func TestTablesUseSmallGranules(t *testing.T) {
	conn, _ := testDB(t)
	for _, table := range []string{"messages", "receipts", "membership", "conversations"} {
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
	if got := count(t, conn0, "SELECT count() FROM system.tables WHERE database = currentDatabase()"); got != 8 {
		t.Errorf("%d tables and views, want 8", got)
	}
}

func TestOpenRejectsOddDatabaseName(t *testing.T) {
	_, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: clickhouse.TestAddr(), Database: "x`; DROP"})
	if err == nil {
		t.Fatal("Open accepted a database name that is not an identifier")
	}
}

// insertConvs writes the conversations rows of msgs' conversations as the
// projector folds them: a direct one from its first message, a group from
// its group_created and later membership events.
func insertConvs(t *testing.T, conn driver.Conn, msgs []message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, sqlInsertConvs)
	if err != nil {
		t.Fatalf("PrepareBatch conversations: %v", err)
	}
	defer batch.Close()
	for _, m := range msgs {
		switch {
		case m.kind == "text" && m.seq == 1 && m.recipient != "":
			members := []string{m.sender, m.recipient}
			if members[1] < members[0] {
				members[0], members[1] = members[1], members[0]
			}
			err = batch.Append(m.conv, "direct", "", m.sender, ms(m.ts), m.seq, members, ms(m.ts), m.seq, m.part, m.streamSeq)
		case m.kind == "group_created" || m.kind == "member_added":
			members := append([]string{}, m.members...)
			if m.kind == "member_added" {
				members = []string{"u0", "u1", "u2", m.user}
			}
			err = batch.Append(m.conv, "group", "t"+m.conv, "u0", ms(m.ts), m.seq, members, ms(m.ts), m.seq, m.part, m.streamSeq)
		}
		if err != nil {
			t.Fatalf("Append conversation: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send conversations: %v", err)
	}
}

// Every column of every table carries its comment (DESCRIBE shows it), and
// Apply gives a table made before the comments existed (an older
// deployment's) the comments it lacks.
func TestColumnsHaveComments(t *testing.T) {
	conn, _ := testDB(t)
	ctx := context.Background()
	noComment := func() string {
		return strings.TrimSpace(dump(t, conn, "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND comment = '' AND table NOT LIKE '%_final' ORDER BY table, name"))
	}
	if n := count(t, conn, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'conversations'"); n != 12 {
		t.Fatalf("conversations has %d columns, want 12", n)
	}
	if missing := noComment(); missing != "" {
		t.Fatalf("columns without a comment:\n%s", missing)
	}
	if got := dump(t, conn, "SELECT comment FROM system.columns WHERE database = currentDatabase() AND table = 'messages' AND name = 'ts'"); !strings.Contains(got, "UTC") {
		t.Errorf("messages.ts comment %q does not say UTC", got)
	}
	// An older deployment: receipts made without comments.
	if err := conn.Exec(ctx, "DROP TABLE receipts_final"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "DROP TABLE receipts"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, `CREATE TABLE receipts (conv String, user String, seq UInt64, status String, ts UInt64,
		day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000))), part UInt16, stream_seq UInt64)
		ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, user, part, stream_seq)`); err != nil {
		t.Fatal(err)
	}
	if missing := noComment(); !strings.Contains(missing, "receipts\tstatus") {
		t.Fatalf("the old receipts table has comments already: %q", missing)
	}
	if err := clickhouse.Apply(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if missing := noComment(); missing != "" {
		t.Fatalf("after Apply, columns without a comment:\n%s", missing)
	}
}
