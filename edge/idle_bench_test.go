package edge_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"messenger/infra/platformtest"
)

// BenchmarkIdleConnection holds b.N idle WebSocket connections (one user
// each) on one edge of an in-process platform (embedded NATS, fan-out,
// presence service) and reports what the process holds for each after a
// GC: Go heap in use, goroutine stacks and goroutines. The clients are bare
// sockets with no goroutine of their own (their net.Conn, about 0.3 KiB of
// heap, is counted in heap-B/conn). After the connects every client sends a
// pong, a ping and two text frames (one of 4 KiB), as a live client would
// now and then, so the figures include what handling frames leaves behind.
//
//	GODEBUG=adaptivestackstart=0 go test -run '^$' -bench IdleConnection -benchtime 5000x ./edge/
//
// (the setting cmd/messenger runs edges with: goroutines start at 2 KiB).
func BenchmarkIdleConnection(b *testing.B) {
	p := platformtest.Start(b, platformtest.Options{Edge: edgeConfig(func(c *edgeCfg) {
		c.PingInterval, c.IdleTimeout = time.Hour, 2*time.Hour
	})})
	addr := strings.TrimPrefix(p.WS(0), "ws://")
	// Warm up: pools, caches and the runtime's starting stack size settle.
	warm := dialIdle(b, p, addr, "w", 200)
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)

	before := settledMem()
	b.ResetTimer()
	conns := dialIdle(b, p, addr, "i", b.N)
	b.StopTimer()
	big := []byte(`{"type":"ping","id":"p2","text":"` + strings.Repeat("x", 4000) + `"}`)
	for _, c := range conns {
		for _, f := range [][]byte{
			maskedFrame(0xA, nil),          // an unsolicited pong
			maskedFrame(0x9, []byte("hi")), // a ping
			maskedFrame(0x1, []byte(`{"type":"ping","id":"p1"}`)),
			maskedFrame(0x1, big),
		} {
			if _, err := c.Write(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second)
	after := settledMem()
	n := float64(b.N)
	b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/conn")
	b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
	b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/n, "B/conn")
	closeAll(conns)
}

type memFigures struct{ heap, stack, goroutines int64 }

func settledMem() memFigures {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return memFigures{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), goroutines: int64(runtime.NumGoroutine())}
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// dialIdle opens n WebSocket connections of users prefix0..prefix<n-1>, each
// read up to its hello, from 32 goroutines that end when done.
func dialIdle(b *testing.B, p *platformtest.Platform, addr, prefix string, n int) []net.Conn {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := dialIdleConn(addr, p.Token(fmt.Sprintf("%s%d", prefix, i)))
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return conns
}

// dialIdleConn upgrades a bare TCP connection and reads the hello frame.
func dialIdleConn(addr, token string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) +
		"\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade: HTTP %d", resp.StatusCode)
	}
	// hello: a short unmasked text frame.
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		c.Close()
		return nil, err
	}
	size := int(h[1] & 0x7f)
	if size == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			c.Close()
			return nil, err
		}
		size = int(binary.BigEndian.Uint16(ext[:]))
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(string(body), `"hello"`) {
		c.Close()
		return nil, fmt.Errorf("first frame is not hello: %s", body)
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("unexpected frame after hello")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// maskedFrame is a client frame (FIN set) with a zero mask key.
func maskedFrame(opcode byte, payload []byte) []byte {
	f := []byte{0x80 | opcode}
	if len(payload) < 126 {
		f = append(f, 0x80|byte(len(payload)))
	} else {
		f = append(f, 0x80|126, byte(len(payload)>>8), byte(len(payload)))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, payload...)
}
