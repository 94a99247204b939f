package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// pingServer answers hello, counts ping frames and pongs, and otherwise
// stays silent.
type pingServer struct {
	gws.BuiltinEventHandler
	pings, pongs, conns atomic.Int32
	answer              bool // answer ping frames with pong frames
}

func (p *pingServer) OnPong(*gws.Conn, []byte) { p.pongs.Add(1) }

func (p *pingServer) OnMessage(socket *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	if strings.Contains(string(msg.Bytes()), `"ping"`) {
		p.pings.Add(1)
		if p.answer {
			_ = socket.WriteString(`{"type":"pong"}`)
		}
	}
}

func startPingServer(t *testing.T, p *pingServer) string {
	up := gws.NewUpgrader(p, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		p.conns.Add(1)
		_ = socket.WriteString(`{"type":"hello","proto":1,"user":"u1","cursor":"c0"}`)
		_ = socket.WritePing([]byte("hb"))
		go socket.ReadLoop()
	}))
	t.Cleanup(srv.Close)
	return "ws://" + srv.Listener.Addr().String()
}

func TestKeepalive(t *testing.T) {
	oldPing, oldDead := pingInterval, deadAfter
	pingInterval, deadAfter = 40*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { pingInterval, deadAfter = oldPing, oldDead })

	t.Run("pings when silent and answers pings", func(t *testing.T) {
		p := &pingServer{answer: true}
		c, err := Dial(context.Background(), Config{URLs: []string{startPingServer(t, p)}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(300 * time.Millisecond)
		if n := p.pings.Load(); n < 3 {
			t.Errorf("%d ping frames in 300 ms of silence, want several", n)
		}
		if p.pongs.Load() != 1 {
			t.Errorf("WebSocket ping not answered")
		}
		if n := p.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1 (pongs keep it alive)", n)
		}
	})

	t.Run("replaces a dead connection", func(t *testing.T) {
		p := &pingServer{answer: false}
		c, err := Dial(context.Background(), Config{URLs: []string{startPingServer(t, p)}, ReconnectMin: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(30 * time.Second) // generous: the machine may be loaded
		for p.conns.Load() < 2 {
			if time.Now().After(deadline) {
				t.Fatal("a silent connection was not replaced")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
