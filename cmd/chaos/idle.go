package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"messenger/client"
	"messenger/edge/auth"
)

// idleMain is `chaos idle`: a process of its own holding --n idle clients
// (at most 20,000 open files per process here) from --src, on the first of
// --urls while it lives. /count answers how many are connected, /readyz
// answers 200 once all are.
func idleMain(args []string) error {
	fs := flag.NewFlagSet("chaos idle", flag.ContinueOnError)
	urls := fs.String("urls", "", "edge WebSocket base URLs, comma-separated, the preferred first")
	n := fs.Int("n", 2000, "idle clients")
	src := fs.String("src", "127.0.0.2", "source address of the connections")
	prefix := fs.String("prefix", "idle", "user id prefix")
	listen := fs.String("http", "127.0.0.1:0", "address of /count and /readyz")
	if err := fs.Parse(args); err != nil {
		return err
	}
	signer, err := auth.NewHS256Signer([]byte(os.Getenv("MESSENGER_JWT_SECRET")))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var connected atomic.Int64
	http.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, connected.Load())
	})
	http.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if connected.Load() < int64(*n) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "%d/%d connected\n", connected.Load(), *n)
	})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go http.Serve(l, nil) //nolint:errcheck // ends with the process

	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var clients sync.Map
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		user := *prefix + "-" + strconv.Itoa(i)
		var up atomic.Bool
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for attempt := 0; ctx.Err() == nil; attempt++ {
				c, err := client.Dial(ctx, client.Config{
					URLs:         strings.Split(*urls, ","),
					Token:        func() (string, error) { return signer.Token(user, 6*time.Hour) },
					ReconnectMax: 2 * time.Second,
					Dialer:       dialer,
					OnEvent:      func(client.Event) {},
					OnState: func(s client.State) {
						switch s {
						case client.Connected:
							if !up.Swap(true) {
								connected.Add(1)
							}
						case client.Disconnected, client.Connecting:
							if up.Swap(false) {
								connected.Add(-1)
							}
						}
					},
				})
				if err == nil {
					if !up.Swap(true) {
						connected.Add(1)
					}
					clients.Store(user, c)
					return
				}
				_ = sleep(ctx, 200*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("idle: %d clients from %s\n", connected.Load(), *src)
	<-ctx.Done()
	clients.Range(func(_, v any) bool { _ = v.(*client.Client).Close(); return true })
	return nil
}

// idleCount reads the idle process's /count.
func idleCount(addr string) (int, error) {
	resp, err := readyClient.Get("http://" + addr + "/count")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int
	_, err = fmt.Fscan(resp.Body, &n)
	return n, err
}
