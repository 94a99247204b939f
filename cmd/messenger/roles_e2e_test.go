package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	chinfra "messenger/infra/clickhouse"
	"messenger/infra/platformtest"
)

// readyz is the status and body of addr's /readyz.
func readyz(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// An edge only reads ClickHouse: started before any projector it makes
// neither the database nor the tables, says so in /readyz and serves
// history from the streams; once a projector has made the schema the edge
// uses it. The projector's own /readyz never speaks of history reads.
func TestEdgeLeavesTheSchemaToTheProjector(t *testing.T) {
	natsAddr, e, pr := freeAddr(t), freeAddr(t), freeAddr(t)
	data := t.TempDir()
	db := testDB(t)
	start(t, "nats", "--http", freeAddr(t), "--nats-listen", natsAddr, "--data", data)
	start(t, "edge", "--http", e, "--nats", "nats://"+natsAddr, "--data", data, "--clickhouse-db", db)

	platformtest.Eventually(t, 30*time.Second, func() error {
		code, body, err := readyz(e)
		if err != nil || code != 200 || !strings.Contains(body, "no projection in clickhouse yet: history is read from the streams") {
			return fmt.Errorf("edge readyz %d %q %v", code, body, err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boot, err := chinfra.Open(ctx, chinfra.Config{Addr: chinfra.TestAddr(), Database: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	var n uint64
	if err := boot.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the edge made database %s (%d, %v)", db, n, err)
	}

	tok := token(t, "alice")
	code, ack, err := postMessage(e, tok, "s1", "bob", "before the projector")
	if err != nil || code != 200 {
		t.Fatalf("send: %d %v %v", code, ack, err)
	}
	conv := ack["conv"].(string)
	page := func() string { return historyPage(t, e, "bob", conv, "limit=10") }
	if p := page(); !strings.Contains(p, `"before the projector"`) {
		t.Fatalf("history from the streams: %s", p)
	}

	start(t, "projector", "--http", pr, "--nats", "nats://"+natsAddr, "--data", data, "--clickhouse-db", db)
	platformtest.Eventually(t, 60*time.Second, func() error {
		code, body, err := readyz(e)
		if err != nil || code != 200 || body != "ready\n" {
			return fmt.Errorf("edge readyz %d %q %v", code, body, err)
		}
		return nil
	})
	if code, body, err := readyz(pr); err != nil || code != 200 || body != "ready\n" {
		t.Fatalf("projector readyz %d %q %v", code, body, err)
	}
	// A projector whose ClickHouse does not answer says what that means
	// for it, not the edge's words.
	dead := start(t, "projector", "--http", freeAddr(t), "--nats", "nats://"+natsAddr, "--data", data, "--clickhouse-db", db, "--clickhouse", freeAddr(t))
	if code, body, err := readyz(dead.http); err != nil || code != 200 || !strings.Contains(body, "projecting resumes when it answers") || strings.Contains(body, "history") {
		t.Fatalf("projector without clickhouse: readyz %d %q %v", code, body, err)
	}
	if p := page(); !strings.Contains(p, `"before the projector"`) {
		t.Fatalf("history once the projection exists: %s", p)
	}
}
