package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// CreateGroup creates a group through the HTTP API (`POST /v1/conversations`)
// as the holder of token and returns its conversation id. base is the edge's
// HTTP base URL (HTTPBase). id is the client's id for the group, so a retry
// creates nothing twice: a busy or failing edge (429, 5xx) is tried again,
// after its Retry-After or 300 ms, up to 20 times or until ctx ends. hc nil
// means a client with a 30 s timeout.
func CreateGroup(ctx context.Context, hc *http.Client, base, token, id, title string, members []string) (string, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	body, err := json.Marshal(map[string]any{"id": id, "title": title, "members": members})
	if err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/conversations", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return "", fmt.Errorf("POST /v1/conversations: %w", err)
		}
		if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			var v struct {
				Conv string `json:"conv"`
			}
			if err := json.Unmarshal(b, &v); err != nil || v.Conv == "" {
				return "", fmt.Errorf("POST /v1/conversations: no conv in %.200s", b)
			}
			return v.Conv, nil
		}
		e := httpError(resp)
		if (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500) || attempt >= 20 {
			return "", fmt.Errorf("POST /v1/conversations: %w", e)
		}
		wait := 300 * time.Millisecond
		if e.RetryAfterMs > 0 {
			wait = time.Duration(e.RetryAfterMs) * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}
