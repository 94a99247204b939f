package main_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"messenger/infra/platformtest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsOnTheirOwnListener stops the metrics exposure of issue 12:
// /metrics was public on the API listener. With --metrics-listen it is
// served there only, and the API listener answers 404 for it.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	addr, metrics := freeAddr(t), freeAddr(t)
	start(t, "all", "--http", addr, "--nats-listen", freeAddr(t), "--data", t.TempDir(), "--clickhouse", "", "--metrics-listen", metrics)
	if code, _ := get(t, "http://"+addr+"/metrics"); code != http.StatusNotFound {
		t.Errorf("API listener /metrics: %d, want 404", code)
	}
	if code, body := get(t, "http://"+metrics+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics listener /metrics: %d %.80q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("API listener /healthz: %d", code)
	}
}

// TestDevModeRules: --dev is refused on a listener that is not loopback
// (issue 12: development sign-in mints tokens for anyone who reaches it);
// on loopback it prints the secret once on stdout and never in the log
// (stderr).
func TestDevModeRules(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH")}
	refused := exec.Command(binary, "all", "--dev", "--http", "0.0.0.0:0", "--nats-listen", freeAddr(t), "--data", t.TempDir(), "--clickhouse", "")
	refused.Env = env
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("--dev on 0.0.0.0: %v\n%s", err, out)
	}

	data, addr := t.TempDir(), freeAddr(t)
	cmd := exec.Command(binary, "all", "--dev", "--http", addr, "--nats-listen", freeAddr(t), "--data", data, "--clickhouse", "")
	cmd.Env = env
	var mu sync.Mutex
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, &stdout}, lockedWriter{&mu, &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	platformtest.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	secret, err := os.ReadFile(filepath.Join(data, "dev-secret"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(secret))
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(stdout.String(), s); n != 1 {
		t.Errorf("stdout shows the secret %d times:\n%s", n, stdout.String())
	}
	if strings.Contains(stderr.String(), s) {
		t.Errorf("the log holds the secret:\n%s", stderr.String())
	}
}
