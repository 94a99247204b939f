package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// With --profile DIR the started platform processes serve Go profiles
// (messenger --pprof) and the bench saves them under DIR while it measures:
// a CPU profile of every platform process over the sending (direct) or the
// reconnect storm, and heap profiles at the end of the idle hold; each
// worker (the load generator) saves a CPU profile of its whole life
// (<run>-worker-<i>-cpu.pprof). Read them
// with `go tool pprof -top DIR/<file>`.

var profileClient = &http.Client{Timeout: 5 * time.Minute}

// profileCPU starts fetching a CPU profile of secs seconds from every
// platform process; the returned function waits for them and lists the files.
func (b *bench) profileCPU(ctx context.Context, pl *platform, scenario string, secs int) func() []string {
	if b.opt.Profile == "" || pl.mode == "none" || secs <= 0 {
		return func() []string { return nil }
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var files []string
	for _, p := range pl.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(b.opt.Profile, fmt.Sprintf("%s-%s-%s-cpu.pprof", scenario, b.runID, p.name))
			if err := fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.http, secs), path); err != nil {
				b.logf("profile %s: %v", p.name, err)
				return
			}
			mu.Lock()
			files = append(files, path)
			mu.Unlock()
		}()
	}
	return func() []string { wg.Wait(); return files }
}

// profileHeap saves the heap profile (in use and allocated since start) of
// every platform process.
func (b *bench) profileHeap(ctx context.Context, pl *platform, scenario string) []string {
	if b.opt.Profile == "" || pl.mode == "none" {
		return nil
	}
	var files []string
	for _, p := range pl.procs {
		path := filepath.Join(b.opt.Profile, fmt.Sprintf("%s-%s-%s-heap.pprof", scenario, b.runID, p.name))
		if err := fetchTo(ctx, "http://"+p.http+"/debug/pprof/heap", path); err != nil {
			b.logf("profile %s: %v", p.name, err)
			continue
		}
		files = append(files, path)
	}
	return files
}

func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := profileClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d (is the platform started with --pprof?)", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
