package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chinfra "messenger/infra/clickhouse"
)

// The binary with a sharded ClickHouse (--clickhouse-shards, the servers of
// scripts/clickhouse.sh start-shards): `all` creates the schema on every
// shard and projects through the Distributed tables, pages read through
// them, and rebuild-history --drop (the projector stopped, as documented)
// drops and rebuilds every shard's tables.
func TestShardedHistoryAndRebuild(t *testing.T) {
	shards := chinfra.TestShards()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	db := fmt.Sprintf("e2e_shard_%d", time.Now().UnixNano())
	var each []driver.Conn
	for _, a := range shards {
		c, err := chinfra.Open(ctx, chinfra.Config{Addr: a, Database: "default", DialTimeout: 3 * time.Second})
		if err != nil {
			t.Skipf("the ClickHouse shards do not answer at %v (MESSENGER_TEST_CLICKHOUSE_SHARDS): %v; "+
				"start them with: bash scripts/clickhouse.sh start-shards", shards, err)
		}
		each = append(each, c)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range each {
			_ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			c.Close()
		}
	})
	chFlags := []string{"--clickhouse", shards[len(shards)-1], "--clickhouse-shards", strings.Join(shards, ","), "--clickhouse-db", db}
	addr, natsAddr := freeAddr(t), freeAddr(t)
	nurl := "nats://" + natsAddr
	data := t.TempDir()
	start(t, "nats", "--http", freeAddr(t), "--nats-listen", natsAddr, "--data", data)
	start(t, "fanout", "--http", freeAddr(t), "--nats", nurl, "--data", data)
	start(t, append([]string{"edge", "--http", addr, "--nats", nurl, "--data", data}, chFlags...)...)
	proj := start(t, append([]string{"projector", "--http", freeAddr(t), "--nats", nurl, "--data", data}, chFlags...)...)
	var convs []string
	for u := 0; u < 6; u++ {
		tok := token(t, fmt.Sprintf("sa%d", u))
		for i := 0; i < 12; i++ {
			code, ack, err := postMessage(addr, tok, fmt.Sprintf("s%d-%d", u, i), fmt.Sprintf("sb%d", u), fmt.Sprintf("sharded %d", i))
			if err != nil || code != 200 {
				t.Fatalf("send: %d %v %v", code, ack, err)
			}
			if i == 0 {
				convs = append(convs, ack["conv"].(string))
			}
		}
	}
	// rows counts the rows of messages_final (through the Distributed
	// table of the first shard) and of each shard's messages_local.
	rows := func() (all uint64, local []uint64) {
		t.Helper()
		for i, c := range each {
			var n uint64
			if i == 0 {
				if err := c.QueryRow(ctx, "SELECT count() FROM "+db+".messages_final").Scan(&all); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.QueryRow(ctx, "SELECT count() FROM "+db+".messages_local").Scan(&n); err != nil {
				t.Fatal(err)
			}
			local = append(local, n)
		}
		return all, local
	}
	var all uint64
	var local []uint64
	deadline := time.Now().Add(60 * time.Second)
	for all, local = rows(); all < 72; all, local = rows() {
		if time.Now().After(deadline) {
			t.Fatalf("projected %d of 72 messages (shards %v)", all, local)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, n := range local {
		if n == 0 {
			t.Fatalf("shard %s holds none of 6 conversations (%v)", shards[i], local)
		}
	}
	pageOf := func(conv, user string) string { return historyPage(t, addr, user, conv, "before=10&limit=5") }
	first := pageOf(convs[0], "sb0")
	if !strings.Contains(first, `"sharded 8"`) || !strings.Contains(first, `"has_more":true`) {
		t.Fatalf("page: %s", first)
	}
	_ = proj.cmd.Process.Kill()
	<-proj.done
	cmd := exec.Command(binary, append([]string{"rebuild-history", "--drop", "--nats", nurl, "--data", data}, chFlags...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rebuild-history --drop: %v\n%s", err, out)
	}
	t.Logf("rebuild-history --drop: %s", bytes.TrimSpace(out))
	if again, local2 := rows(); again != 72 || fmt.Sprint(local2) != fmt.Sprint(local) {
		t.Fatalf("after rebuild-history --drop: %d rows, shards %v; before 72, %v", again, local2, local)
	}
	if again := pageOf(convs[0], "sb0"); again != first {
		t.Fatalf("page changed after rebuild:\n%s\n%s", first, again)
	}
}
