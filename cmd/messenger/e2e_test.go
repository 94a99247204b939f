package main_test

// End-to-end tests: the messenger binary run as separate processes, killed
// for real. They speak only the public protocol.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"messenger/client"
	"messenger/edge/auth"
	chinfra "messenger/infra/clickhouse"
	"messenger/infra/natsauth"
	"messenger/infra/platformtest"
	"messenger/streams"
	"messenger/subjects"
)

const secret = "e2e-secret-0123456789abcdef"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "messenger-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "messenger")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	http string
	out  *bytes.Buffer
	done chan struct{}
	err  error
}

// start runs the binary; for roles with an HTTP listener it waits for /readyz.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{out: &bytes.Buffer{}, done: make(chan struct{})}
	for i, a := range args {
		if a == "--http" {
			p.http = args[i+1]
		}
	}
	if args[0] != "nats" && args[0] != "fanout" && !slices.Contains(args, "--clickhouse-db") {
		// Each test its own ClickHouse database, so runs never mix.
		args = append(args, "--clickhouse-db", testDB(t))
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), "MESSENGER_JWT_SECRET="+secret, "MESSENGER_LOG_LEVEL=warn", "MESSENGER_CLICKHOUSE="+chinfra.TestAddr())
	var mu sync.Mutex
	p.cmd.Stdout = lockedWriter{&mu, p.out}
	p.cmd.Stderr = lockedWriter{&mu, p.out}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		mu.Lock()
		if strings.Contains(p.out.String(), "nats permission violation") {
			// A role did something its NATS identity may not: its
			// permission set (infra/natsauth) misses it.
			t.Errorf("%v: NATS permission violation", args)
		}
		mu.Unlock()
		if t.Failed() {
			mu.Lock()
			t.Logf("%v output:\n%s", args, p.out.String())
			mu.Unlock()
		}
	})
	if p.http != "" {
		platformtest.Eventually(t, 30*time.Second, func() error {
			select {
			case <-p.done:
				t.Fatalf("%v exited: %v\n%s", args, p.err, p.out.String())
			default:
			}
			resp, err := http.Get("http://" + p.http + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("readyz %d", resp.StatusCode)
			}
			return nil
		})
	}
	return p
}

var (
	dbMu sync.Mutex
	dbs  = map[string]string{}
)

// testDB is the ClickHouse database of test t, dropped when it ends.
func testDB(t *testing.T) string {
	dbMu.Lock()
	defer dbMu.Unlock()
	if db, ok := dbs[t.Name()]; ok {
		return db
	}
	db := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
	dbs[t.Name()] = db
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := chinfra.Open(ctx, chinfra.Config{Addr: chinfra.TestAddr()}); err == nil {
			_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	})
	return db
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *proc) kill(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func token(t *testing.T, user string) string {
	s, err := auth.NewHS256Signer([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type inbox struct {
	mu   sync.Mutex
	msgs []client.Event
}

func (b *inbox) on(e client.Event) {
	if e.Type == "msg" {
		b.mu.Lock()
		b.msgs = append(b.msgs, e)
		b.mu.Unlock()
	}
}

func (b *inbox) snapshot() []client.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]client.Event(nil), b.msgs...)
}

func connect(t *testing.T, user, cursor string, addrs ...string) (*client.Client, *inbox) {
	t.Helper()
	b := &inbox{}
	var urls []string
	for _, a := range addrs {
		urls = append(urls, "ws://"+a)
	}
	tok := token(t, user)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URLs: urls, Token: func() (string, error) { return tok, nil }, Cursor: cursor, OnEvent: b.on,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, b
}

// waitCount waits until n messages are in b, as long as they keep coming
// (platformtest.WaitCount), and returns what b holds a moment later.
func waitCount(t *testing.T, b *inbox, n int) []client.Event {
	t.Helper()
	platformtest.WaitCount(t, "messages", n, func() int { return len(b.snapshot()) })
	time.Sleep(300 * time.Millisecond) // a duplicate would show now
	return b.snapshot()
}

// historyPage reads GET /v1/conversations/{conv}/messages?{query} as user
// and returns the body.
func historyPage(t *testing.T, addr, user, conv, query string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/conversations/"+conv+"/messages?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token(t, user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// postMessage sends over HTTP; it returns the HTTP status and the ack or error body.
func postMessage(addr, tok, id, to, text string) (int, map[string]any, error) {
	body, _ := json.Marshal(map[string]string{"id": id, "to": to, "text": text})
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// startAllWithBob runs `messenger all` on fresh data with the send limit
// lifted, and returns bob's starting cursor.
func startAllWithBob(t *testing.T) (p *proc, args []string, addr, cursor string) {
	addr, natsAddr := freeAddr(t), freeAddr(t)
	args = []string{"all", "--http", addr, "--nats-listen", natsAddr, "--data", t.TempDir(), "--send-rate", "10000", "--send-burst", "10000"}
	p = start(t, args...)
	bob, _ := connect(t, "bob", "", addr)
	cursor = bob.Hello().Cursor
	_ = bob.Close()
	return p, args, addr, cursor
}

// The whole process is killed with SIGKILL after acks; restarted on the
// same data, it has lost no acked message.
func TestSIGKILLAfterAcksLosesNothing(t *testing.T) {
	p, args, addr, cursor := startAllWithBob(t)
	tok := token(t, "alice")
	const n = 300
	var conv string
	for i := 0; i < n; i++ {
		code, ack, err := postMessage(addr, tok, fmt.Sprintf("k%d", i), "bob", fmt.Sprintf("kill-%d", i))
		if err != nil || code != 200 {
			t.Fatalf("send %d: %d %v %v", i, code, ack, err)
		}
		conv, _ = ack["conv"].(string)
	}
	// Bob's read receipt is stored; its watermark is then only in the
	// fan-out's memory (stored at the next checkpoint, every 5 s) when the
	// process dies: the restarted fan-out replays the receipt.
	if code, err := apiJSON("POST", addr, "/v1/receipts", token(t, "bob"), map[string]any{"conv": conv, "seq": n, "status": "read"}, nil); err != nil || code != 200 {
		t.Fatalf("receipt: %d %v", code, err)
	}
	p.kill(t)
	start(t, args...)
	_, box := connect(t, "bob", cursor, addr)
	ms := waitCount(t, box, n)
	if len(ms) != n {
		t.Fatalf("after restart bob has %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.Text != fmt.Sprintf("kill-%d", i) || m.Seq != int64(i+1) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	platformtest.Eventually(t, platformtest.Patience, func() error {
		var v struct {
			Members []struct {
				User    string `json:"user"`
				ReadSeq int64  `json:"read_seq"`
			} `json:"members"`
		}
		if code, err := apiJSON("GET", addr, "/v1/conversations/"+conv, tok, nil, &v); err != nil || code != 200 {
			return fmt.Errorf("GET conversation: %d %v", code, err)
		}
		for _, m := range v.Members {
			if m.User == "bob" && m.ReadSeq == n {
				return nil
			}
		}
		return fmt.Errorf("bob's read watermark after the restart: %+v, want %d", v.Members, n)
	})
}

// apiJSON sends body (when not nil) as JSON and decodes the answer into out
// (when not nil).
func apiJSON(method, addr, path, tok string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// Roles as separate processes: NATS, two edges, one fan-out. An edge is
// killed mid-conversation; its client reconnects to the other edge with its
// cursor and gets every message once, in order.
func TestEdgeProcessKilledClientsMoveToAnotherEdge(t *testing.T) {
	data := t.TempDir()
	natsAddr := freeAddr(t)
	nurl := "nats://" + natsAddr
	start(t, "nats", "--http", freeAddr(t), "--nats-listen", natsAddr, "--data", data)
	start(t, "fanout", "--http", freeAddr(t), "--nats", nurl, "--data", data)
	a, b := freeAddr(t), freeAddr(t)
	start(t, "edge", "--http", a, "--nats", nurl, "--data", data)
	eb := start(t, "edge", "--http", b, "--nats", nurl, "--data", data)

	_, box := connect(t, "bob", "", b, a)
	alice, _ := connect(t, "alice", "", a)
	const n = 120
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := alice.Send(ctx, "bob", "", fmt.Sprintf("e-%d", i)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if i == n/2 {
			eb.kill(t)
		}
		if i%20 == 19 {
			time.Sleep(500 * time.Millisecond) // the send rate limit
		}
	}
	ms := waitCount(t, box, n)
	if len(ms) != n {
		t.Fatalf("bob has %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.Text != fmt.Sprintf("e-%d", i) {
			t.Fatalf("message %d: %q", i, m.Text)
		}
	}
}

// SIGTERM under traffic: the process drains within its timeout, and every
// send that was acked is stored (no false ack); the others were answered
// unavailable or cut.
func TestSIGTERMUnderTrafficDrainsWithoutFalseAck(t *testing.T) {
	p, args, addr, cursor := startAllWithBob(t)

	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := token(t, fmt.Sprintf("sender%d", w))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				text := fmt.Sprintf("w%d-%d", w, i)
				code, _, err := postMessage(addr, tok, text, "bob", text)
				if err == nil && code == 200 {
					mu.Lock()
					acked[text] = true
					mu.Unlock()
				}
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	closeCode := make(chan uint16, 1)
	watcher := &closeWatcher{code: closeCode}
	ws, _, err := gws.NewClient(watcher, &gws.ClientOption{Addr: "ws://" + addr + "/v1/ws", RequestHeader: http.Header{"Authorization": []string{"Bearer " + token(t, "watcher")}}})
	if err != nil {
		t.Fatal(err)
	}
	go ws.ReadLoop()
	time.Sleep(700 * time.Millisecond)
	sent := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop within the shutdown timeout")
	}
	close(stop)
	wg.Wait()
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v", p.err)
	}
	t.Logf("drained in %v with %d acked sends", time.Since(sent), len(acked))
	select {
	case code := <-closeCode:
		if code != 1001 {
			t.Errorf("WebSocket closed with %d on SIGTERM, want 1001", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("WebSocket not closed on SIGTERM")
	}
	if len(acked) == 0 {
		t.Fatal("no send was acked before SIGTERM")
	}
	start(t, args...)
	_, box := connect(t, "bob", cursor, addr)
	platformtest.WaitProgress(t, func() (int, error) {
		have := map[string]bool{}
		for _, m := range box.snapshot() {
			have[m.Text] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for text := range acked {
			if !have[text] {
				return len(have), fmt.Errorf("acked %q is missing (%d of %d here)", text, len(have), len(acked))
			}
		}
		return len(have), nil
	})
}

// While NATS cannot store, a send is answered unavailable: never a hang,
// never a false ack; once NATS is back, sends are acked again.
func TestUnavailableWhileNATSIsDown(t *testing.T) {
	data := t.TempDir()
	natsAddr := freeAddr(t)
	nurl := "nats://" + natsAddr
	natsArgs := []string{"nats", "--http", freeAddr(t), "--nats-listen", natsAddr, "--data", data}
	ns := start(t, natsArgs...)
	start(t, "fanout", "--http", freeAddr(t), "--nats", nurl, "--data", data)
	a := freeAddr(t)
	start(t, "edge", "--http", a, "--nats", nurl, "--data", data)
	tok := token(t, "alice")
	if code, ack, err := postMessage(a, tok, "u1", "bob", "before"); err != nil || code != 200 {
		t.Fatalf("send before: %d %v %v", code, ack, err)
	}
	ns.kill(t)
	began := time.Now()
	code, body, err := postMessage(a, tok, "u2", "bob", "during")
	if err != nil {
		t.Fatalf("send during outage: %v", err)
	}
	if code != 503 || !strings.Contains(fmt.Sprint(body), "unavailable") {
		t.Fatalf("send during outage: %d %v, want 503 unavailable", code, body)
	}
	if d := time.Since(began); d > 8*time.Second {
		t.Fatalf("unavailable took %v", d)
	}
	start(t, natsArgs...)
	platformtest.Eventually(t, 30*time.Second, func() error {
		code, body, err := postMessage(a, tok, "u3", "bob", "after")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v %v", code, body, err)
		}
		return nil
	})
}

// closeWatcher reports the close code a server sends.
type closeWatcher struct {
	gws.BuiltinEventHandler
	code chan uint16
}

func (w *closeWatcher) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		w.code <- ce.Code
		return
	}
	w.code <- 0
}

func TestNoSecretRefusesToStartAndDevKeepsOne(t *testing.T) {
	cmd := exec.Command(binary, "all", "--http", freeAddr(t), "--nats-listen", freeAddr(t), "--data", t.TempDir())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no token key") {
		t.Fatalf("started without a secret: %v\n%s", err, out)
	}
	data := t.TempDir()
	tok := exec.Command(binary, "token", "zed", "--dev", "--data", data)
	tok.Env = cmd.Env
	first, err := tok.Output()
	if err != nil {
		t.Fatalf("token --dev: %v", err)
	}
	secretFile, err := os.ReadFile(filepath.Join(data, "dev-secret"))
	if err != nil || len(bytes.TrimSpace(secretFile)) < 32 {
		t.Fatalf("dev secret not kept: %v %q", err, secretFile)
	}
	v, _ := auth.NewHS256Verifier(bytes.TrimSpace(secretFile))
	if user, _, err := v.Verify(string(bytes.TrimSpace(first))); err != nil || user != "zed" {
		t.Fatalf("dev token does not verify with the kept secret: %v %q", err, user)
	}
}

// The binary with ClickHouse: history pages come from the projection,
// rebuild-history, replay-dead-letters and check-history run against a live
// platform.
func TestHistoryCommandsAgainstARunningPlatform(t *testing.T) {
	addr, natsAddr := freeAddr(t), freeAddr(t)
	db := testDB(t)
	data := t.TempDir()
	// No periodic history check: the test makes a hole for check-history.
	start(t, "all", "--http", addr, "--nats-listen", natsAddr, "--data", data, "--clickhouse-db", db, "--history-check-every", "0")
	tok := token(t, "alice")
	var conv string
	for i := 0; i < 30; i++ {
		code, ack, err := postMessage(addr, tok, fmt.Sprintf("h%d", i), "bob", fmt.Sprintf("history %d", i))
		if err != nil || code != 200 {
			t.Fatalf("send: %d %v %v", code, ack, err)
		}
		conv = ack["conv"].(string)
	}
	pageOf := func() string { return historyPage(t, addr, "bob", conv, "before=25&limit=10") }
	first := pageOf()
	if !strings.Contains(first, `"history 23"`) || !strings.Contains(first, `"has_more":true`) {
		t.Fatalf("page: %s", first)
	}
	for _, cmdName := range []string{"rebuild-history", "replay-dead-letters"} {
		cmd := exec.Command(binary, cmdName, "--nats", "nats://"+natsAddr, "--clickhouse-db", db, "--data", data)
		cmd.Env = append(os.Environ(), "MESSENGER_CLICKHOUSE="+chinfra.TestAddr())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmdName, err, out)
		}
		t.Logf("%s: %s", cmdName, bytes.TrimSpace(out))
	}
	if again := pageOf(); again != first {
		t.Fatalf("page changed after rebuild:\n%s\n%s", first, again)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := chinfra.Open(ctx, chinfra.Config{Addr: chinfra.TestAddr(), Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM messages_final WHERE conv = ?", conv).Scan(&n); err != nil || n != 30 {
		t.Fatalf("projection holds %d messages (%v), want 30", n, err)
	}

	// check-history: no hole; then one made by deleting a row: found (exit
	// status 1), repaired with --repair (exit status 0).
	checkHistory := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"check-history", "--nats", "nats://" + natsAddr, "--clickhouse-db", db, "--data", data}, args...)...)
		cmd.Env = append(os.Environ(), "MESSENGER_CLICKHOUSE="+chinfra.TestAddr())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := checkHistory(); err != nil || !strings.Contains(out, ": 0 holes") || !strings.Contains(out, "conversations: 0 rows missing") {
		t.Fatalf("check-history on a whole projection: %v\n%s", err, out)
	}
	if err := conn.Exec(ctx, "ALTER TABLE messages DELETE WHERE conv = ? AND seq = 7", conv); err != nil {
		t.Fatal(err)
	}
	platformtest.Eventually(t, platformtest.Patience, func() error { // a mutation runs in the background
		if err := conn.QueryRow(ctx, "SELECT count() FROM messages WHERE conv = ? AND seq = 7", conv).Scan(&n); err != nil || n != 0 {
			return platformtest.Errorf("row still there: %d %v", n, err)
		}
		return nil
	})
	if out, err := checkHistory(); err == nil || !strings.Contains(out, ": 1 holes") {
		t.Fatalf("check-history with a row deleted: %v\n%s", err, out)
	}
	if out, err := checkHistory("--repair"); err != nil || !strings.Contains(out, "1 holes") || !strings.Contains(out, "1 repaired") {
		t.Fatalf("check-history --repair: %v\n%s", err, out)
	} else {
		t.Logf("check-history --repair: %s", out)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM messages_final WHERE conv = ?", conv).Scan(&n); err != nil || n != 30 {
		t.Fatalf("after the repair the projection holds %d messages (%v), want 30", n, err)
	}
}

// An edge process killed with SIGKILL takes its users offline, with nobody
// cleaning up after it (the presence service's edge timeout).
func TestPresenceEdgeProcessKilled(t *testing.T) {
	natsAddr, a, b := freeAddr(t), freeAddr(t), freeAddr(t)
	data := t.TempDir()
	start(t, "all", "--http", a, "--nats-listen", natsAddr, "--data", data,
		"--online-delay", "300ms", "--offline-delay", "1s", "--edge-timeout", "3s", "--edge-heartbeat", "500ms")
	eb := start(t, "edge", "--http", b, "--nats", "nats://"+natsAddr, "--edge-heartbeat", "500ms", "--data", data)
	if code, ack, err := postMessage(a, token(t, "wes"), "p1", "uma", "hello"); err != nil || code != 200 {
		t.Fatalf("%d %v %v", code, ack, err)
	}
	// uma answers: only users who wrote in a shared conversation are visible.
	if code, ack, err := postMessage(a, token(t, "uma"), "p2", "wes", "hi"); err != nil || code != 200 {
		t.Fatalf("%d %v %v", code, ack, err)
	}
	var mu sync.Mutex
	var events []client.Event
	tok := token(t, "wes")
	w, err := client.Dial(t.Context(), client.Config{URLs: []string{"ws://" + a}, Token: func() (string, error) { return tok, nil },
		OnEvent: func(e client.Event) {
			if e.Type == "presence" && e.User == "uma" {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wait := func(status string, n int) {
		platformtest.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(events) < n || events[n-1].Status != status {
				return fmt.Errorf("presence of uma: %+v", events)
			}
			return nil
		})
	}
	// The summaries that make wes and uma contacts are written within 200 ms.
	platformtest.Eventually(t, platformtest.Patience, func() error {
		req, _ := http.NewRequest("GET", "http://"+a+"/v1/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `"uma"`) {
			return fmt.Errorf("list: %s", body)
		}
		return nil
	})
	_ = w.Watch([]string{"uma"})
	wait("offline", 1)
	connect(t, "uma", "", b)
	wait("online", 2)
	killed := time.Now()
	eb.kill(t)
	wait("offline", 3)
	t.Logf("uma told offline %v after her edge was killed", time.Since(killed))
}

// Attack: `messenger all` took any NATS client on its port with no
// credentials; one listed every stream and forged a message "from bob" on
// conv.<p>.<conv>. Now a client without a seed is refused, and the
// read-only seed made under --data (what `nats --nkey` uses) reads the
// streams but cannot forge an event.
func TestAllRefusesNATSClientsWithoutCredentials(t *testing.T) {
	addr, natsAddr, data := freeAddr(t), freeAddr(t), t.TempDir()
	start(t, "all", "--http", addr, "--nats-listen", natsAddr, "--data", data)
	if code, ack, err := postMessage(addr, token(t, "alice"), "n1", "bob", "hello"); err != nil || code != 200 {
		t.Fatalf("send: %d %v %v", code, ack, err)
	}
	if nc, err := nats.Connect("nats://" + natsAddr); err == nil {
		nc.Close()
		t.Fatal("a NATS client without credentials was accepted")
	}
	for _, role := range natsauth.Roles {
		st, err := os.Stat(natsauth.SeedFile(filepath.Join(data, "nats"), role))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("seed of %s: %v %v", role, st, err)
		}
	}
	opt, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(filepath.Join(data, "nats"), natsauth.RoleReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	denied := make(chan error, 10)
	nc, err := nats.Connect("nats://"+natsAddr, opt, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { denied <- err }))
	if err != nil {
		t.Fatalf("read-only seed refused: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stored uint64
	for p := 0; p < 4; p++ {
		s, err := js.Stream(ctx, streams.ConvStream(p))
		if err != nil {
			t.Fatalf("read-only stream info: %v", err)
		}
		stored += s.CachedInfo().State.Msgs
	}
	if stored != 1 {
		t.Fatalf("the read-only identity sees %d stored events, want 1", stored)
	}
	conv := subjects.Layout{Partitions: 4}.ConvEvents("dforged")
	_ = nc.Publish(conv, []byte(`{"type":"msg","from":"bob","text":"forged"}`))
	select {
	case err := <-denied:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("want a permission violation, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a forged publish by the read-only identity was not refused")
	}
}
