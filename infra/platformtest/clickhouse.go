package platformtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// PrivateClickHouse is a ClickHouse server of one test's own (its own data
// directory and port, started with scripts/clickhouse.sh), for tests that
// stop and start it: the shared server stays up for the other tests.
type PrivateClickHouse struct {
	t    testing.TB
	Addr string
	env  []string
}

// StartPrivateClickHouse starts a private server, stopped with the test.
func StartPrivateClickHouse(t testing.TB) *PrivateClickHouse {
	t.Helper()
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	c := &PrivateClickHouse{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), env: append(os.Environ(),
		"CLICKHOUSE_DIR="+t.TempDir(),
		fmt.Sprintf("CLICKHOUSE_TCP_PORT=%d", ports[0]),
		fmt.Sprintf("CLICKHOUSE_HTTP_PORT=%d", ports[1]),
	)}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

func (c *PrivateClickHouse) run(verb string) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "clickhouse.sh")
	cmd := exec.Command("bash", script, verb)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("clickhouse.sh %s: %v\n%s", verb, err, out)
	}
}

// Start starts (again) the server and waits until it answers.
func (c *PrivateClickHouse) Start() { c.run("start") }

// Stop stops the server.
func (c *PrivateClickHouse) Stop() { c.run("stop") }
