package clickhouse_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"messenger/infra/clickhouse"
)

// shardedDB opens a database of its own sharded over clickhouse.TestShards()
// (scripts/clickhouse.sh start-shards), schema applied, dropped on every
// shard when the test ends. It returns the connection the platform would
// use (to the first shard), a connection to each shard, and the config.
func shardedDB(t *testing.T) (driver.Conn, []driver.Conn, clickhouse.Config) {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	shards := clickhouse.TestShards()
	cfg := clickhouse.Config{Addr: shards[0], Database: "test_" + hex.EncodeToString(b), Shards: shards, DialTimeout: 3 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var each []driver.Conn
	for _, a := range shards {
		c := cfg
		c.Addr = a
		conn, err := clickhouse.Open(ctx, c)
		if err != nil {
			t.Skipf("the ClickHouse shards do not answer at %v (MESSENGER_TEST_CLICKHOUSE_SHARDS): %v; "+
				"start them with: bash scripts/clickhouse.sh start-shards", shards, err)
		}
		each = append(each, conn)
	}
	conn, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn.Close()
		for i, c := range each {
			if err := c.Exec(ctx, "DROP DATABASE IF EXISTS `"+cfg.Database+"`"); err != nil {
				t.Errorf("shard %s: drop database: %v", shards[i], err)
			}
			c.Close()
		}
	})
	if err := clickhouse.ApplyAll(ctx, conn, cfg); err != nil {
		t.Fatalf("ApplyAll: %v", err)
	}
	return conn, each, cfg
}

// dump runs query and prints every row, one a line: two answers compare as
// strings.
func dump(t *testing.T, conn driver.Conn, query string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query, args...)
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
			fmt.Fprint(&out, reflect.ValueOf(v).Elem().Interface())
		}
		out.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out.String()
}

// history is 60 conversations over two days: direct ones with receipts and
// groups with membership changes, with copies of events (a redelivery) and a
// later version of some.
func history() ([]message, []receipt, []message) {
	day := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	var msgs, members []message
	var rs []receipt
	var ss uint64
	for c := 0; c < 60; c++ {
		part := uint16(c % 4)
		if c%5 == 0 {
			conv := fmt.Sprintf("g%02d", c)
			ss++
			created := message{conv: conv, seq: 1, ts: day.Add(time.Duration(c) * time.Minute), sender: "u0", kind: "group_created",
				title: "t" + conv, members: []string{"u0", "u1", "u2"}, part: part, streamSeq: ss}
			ss++
			added := message{conv: conv, seq: 2, ts: created.ts.Add(time.Second), sender: "u0", kind: "member_added", user: "u3", part: part, streamSeq: ss}
			msgs = append(msgs, created, added)
			members = append(members, created, added, added) // a copy
			for s := uint64(3); s < 10; s++ {
				ss++
				msgs = append(msgs, message{conv: conv, seq: s, ts: added.ts.Add(time.Duration(s) * time.Hour * 3), sender: fmt.Sprintf("u%d", s%4),
					kind: "text", text: fmt.Sprintf("%s-%d", conv, s), part: part, streamSeq: ss})
			}
			continue
		}
		conv := fmt.Sprintf("d%02d", c)
		a, b := fmt.Sprintf("u%d", c), fmt.Sprintf("u%d", c+1)
		for s := uint64(1); s <= uint64(3+c%7); s++ {
			from, to := a, b
			if s%3 == 0 {
				from, to = b, a
			}
			ss++
			ts := day.Add(time.Duration(c)*time.Minute + time.Duration(s)*time.Duration(c+1)*time.Hour/2)
			m := message{conv: conv, seq: s, ts: ts, sender: from, kind: "text", text: fmt.Sprintf("%s-%d", conv, s), recipient: to, part: part, streamSeq: ss}
			msgs = append(msgs, m)
			if s%2 == 0 {
				msgs = append(msgs, m) // a redelivered copy
			}
			if s == 2 {
				later := m
				later.text += "-later"
				later.streamSeq += 100000 // the version a merge keeps
				msgs = append(msgs, later)
			}
			ss++
			rs = append(rs, receipt{conv: conv, user: to, seq: s, status: "delivered", ts: ts.Add(time.Duration(s) * 300 * time.Millisecond), part: part, streamSeq: ss})
			if s%2 == 1 {
				rs = append(rs, rs[len(rs)-1]) // a copy
			}
		}
	}
	return msgs, rs, members
}

// The sharded projection answers every analyst query, every view and the
// history page exactly as one server does with the same rows; all rows of a
// conversation (its messages, receipts, membership) are on one shard, and
// the conversations are spread over both.
func TestShardedAnswersAsSingleNode(t *testing.T) {
	sharded, shards, cfg := shardedDB(t)
	single, _ := testDB(t)
	msgs, rs, members := history()
	for _, conn := range []driver.Conn{single, sharded} {
		// Two inserts of each kind: the copies in separate parts, as a
		// redelivery makes them.
		insertMsgs(t, conn, msgs[:len(msgs)/2]...)
		insertMsgs(t, conn, msgs[len(msgs)/2:]...)
		insertReceipts(t, conn, rs[:len(rs)/2]...)
		insertReceipts(t, conn, rs[len(rs)/2:]...)
		insertMembershipRows(t, conn, members...)
		insertConvs(t, conn, msgs)
	}
	// insert_distributed_sync: the rows are on the shards when the insert
	// returns, nothing queued.
	if got, want := count(t, sharded, "SELECT count() FROM messages"), uint64(len(msgs)); got != want {
		t.Fatalf("sharded messages right after the insert: %d rows, want %d", got, want)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	analyst, err := clickhouse.AnalystQueries(string(readme))
	if err != nil || len(analyst) == 0 {
		t.Fatalf("README's analyst queries: %d, %v", len(analyst), err)
	}
	queries := map[string]string{
		"conversations_final":      "SELECT * FROM conversations_final ORDER BY conv",
		"messages_final":           "SELECT * FROM messages_final ORDER BY conv, seq",
		"receipts_final":           "SELECT * FROM receipts_final ORDER BY conv, user, part, stream_seq",
		"membership_final":         "SELECT * FROM membership_final ORDER BY conv, seq",
		"messages FINAL":           "SELECT conv, seq, stream_seq, text FROM messages FINAL ORDER BY conv, seq",
		"all rows with the copies": "SELECT conv, seq, stream_seq FROM messages ORDER BY conv, seq, stream_seq",
	}
	for _, q := range analyst {
		queries[q.Name] = q.SQL
	}
	for name, q := range queries {
		want, got := dump(t, single, q), dump(t, sharded, q)
		if want == "" {
			t.Fatalf("%s: no rows on the single server", name)
		}
		if got != want {
			t.Errorf("%s: sharded answer differs:\n%s\nsingle server:\n%s", name, got, want)
		}
	}
	// The history page of services/history (LIMIT 1 BY seq over the copies,
	// the row of the highest stream_seq), for every conversation.
	const page = `SELECT seq, ts, sender, id, kind, text, title, user, members, recipient, stream_seq
	FROM messages WHERE conv = ? AND seq >= ? AND seq <= ?
	ORDER BY seq, stream_seq DESC LIMIT 1 BY seq`
	for c := 0; c < 60; c++ {
		conv := fmt.Sprintf("d%02d", c)
		if c%5 == 0 {
			conv = fmt.Sprintf("g%02d", c)
		}
		want, got := dump(t, single, page, conv, uint64(2), uint64(8)), dump(t, sharded, page, conv, uint64(2), uint64(8))
		if want == "" || got != want {
			t.Fatalf("page of %s: sharded\n%s\nsingle server\n%s", conv, got, want)
		}
		if conv == "d01" && !strings.Contains(got, "d01-2-later") {
			t.Fatalf("page of d01 without the later version of seq 2:\n%s", got)
		}
	}

	// Locality and spread: where each conversation's rows are.
	where := map[string]int{}
	for i, sc := range shards {
		n := 0
		for _, table := range []string{"messages_local", "receipts_local", "membership_local", "conversations_local"} {
			for _, conv := range strings.Fields(dump(t, sc, "SELECT DISTINCT conv FROM "+table)) {
				if j, ok := where[conv]; ok && j != i {
					t.Errorf("conversation %s has rows on shard %d and shard %d (%s)", conv, j, i, table)
				}
				where[conv] = i
				n++
			}
		}
		if n == 0 {
			t.Errorf("shard %s holds no conversation", cfg.Shards[i])
		}
	}
	if len(where) != 60 {
		t.Errorf("%d conversations on the shards, want 60", len(where))
	}
	var local uint64
	for _, sc := range shards {
		local += count(t, sc, "SELECT count() FROM messages_local")
	}
	if local != uint64(len(msgs)) {
		t.Errorf("the shards' messages_local hold %d rows in all, want %d", local, len(msgs))
	}
	t.Logf("conversations per shard: %v", perShard(where, len(shards)))
}

func perShard(where map[string]int, n int) []int {
	out := make([]int, n)
	for _, i := range where {
		out[i]++
	}
	return out
}

// DropAll removes every shard's tables and ApplyAll makes them again
// (rebuild-history --drop); ApplyAll refuses shards that do not match the
// servers' cluster.
func TestShardedDropApplyAndClusterCheck(t *testing.T) {
	conn, shards, cfg := shardedDB(t)
	msgs, _, _ := history()
	insertMsgs(t, conn, msgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := clickhouse.DropAll(ctx, conn, cfg); err != nil {
		t.Fatalf("DropAll: %v", err)
	}
	for i, sc := range shards {
		for _, table := range []string{"messages", "messages_local", "receipts_local", "membership", "messages_final"} {
			if n := count(t, sc, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", cfg.Database, table); n != 0 {
				t.Errorf("shard %s: %s still there after DropAll", cfg.Shards[i], table)
			}
		}
	}
	if err := clickhouse.ApplyAll(ctx, conn, cfg); err != nil {
		t.Fatalf("ApplyAll after DropAll: %v", err)
	}
	if n := count(t, conn, "SELECT count() FROM messages_final"); n != 0 {
		t.Fatalf("%d rows after DropAll and ApplyAll", n)
	}
	insertMsgs(t, conn, msgs[:10]...)
	if n := count(t, shards[len(shards)-1], "SELECT count() FROM messages"); n != 10 {
		t.Fatalf("through the last shard's Distributed table: %d rows, want 10", n)
	}

	reversed := cfg
	reversed.Shards = []string{cfg.Shards[1], cfg.Shards[0]}
	if err := clickhouse.ApplyAll(ctx, conn, reversed); err == nil || !strings.Contains(err.Error(), "order must match") {
		t.Errorf("ApplyAll with the shards in another order: %v, want the cluster check's error", err)
	}
	other := cfg
	other.Cluster = "no_such_cluster"
	if err := clickhouse.ApplyAll(ctx, conn, other); err == nil {
		t.Error("ApplyAll with a cluster the servers do not know: no error")
	}
}
