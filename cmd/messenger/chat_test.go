package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"messenger/infra/platformtest"
	"messenger/services/event"
)

// TestChatHelpListsOnlyChatFlags: `messenger chat -h` shows chat's usage
// line, its own flags and the key flags it signs with, not every server flag.
func TestChatHelpListsOnlyChatFlags(t *testing.T) {
	var out bytes.Buffer
	err := chatCommand([]string{"-h"}, strings.NewReader(""), &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("chat -h: %v, want flag.ErrHelp", err)
	}
	help := out.String()
	if !strings.HasPrefix(help, chatUsage) {
		t.Errorf("help does not start with the usage line:\n%s", help)
	}
	for _, want := range append([]string{"to", "url"}, chatKeyFlags...) {
		if !strings.Contains(help, "  -"+want+" ") && !strings.Contains(help, "  -"+want+"\n") {
			t.Errorf("help lacks -%s:\n%s", want, help)
		}
	}
	for _, server := range []string{"partitions", "clickhouse", "nats", "http", "send-rate", "fanout-flush"} {
		if strings.Contains(help, "  -"+server+" ") || strings.Contains(help, "  -"+server+"\n") {
			t.Errorf("help lists the server flag -%s:\n%s", server, help)
		}
	}
}

// TestChatRefusesBadUsers: no user, or a --to that is not a user id, is
// told at once with the usage, before any connection.
func TestChatRefusesBadUsers(t *testing.T) {
	for _, args := range [][]string{
		{"--jwt-secret", platformtest.Secret},
		{"alice", "--to", "bob smith", "--jwt-secret", platformtest.Secret},
		{"al ice", "--jwt-secret", platformtest.Secret},
	} {
		var out bytes.Buffer
		err := chatCommand(args, strings.NewReader(""), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "user") {
			t.Errorf("chat %q: %v, want an error naming the user", args, err)
		}
	}
}

// syncBuffer is written by chat's event callback and its input loop at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestChatWithoutPeer: without --to, chat says there is nobody to write to
// and how to choose one, sends nothing until /to names a valid user, and
// then sends.
func TestChatWithoutPeer(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	in := strings.NewReader("hello\n/to\n/to bob smith\n/to bob\nhi bob\n")
	var out syncBuffer
	err := chatCommand([]string{"alice", "--url", p.WS(0), "--jwt-secret", platformtest.Secret, "--data", t.TempDir()}, in, &out, &out)
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"No peer yet (no --to): type /to <user>",
		"not sent: nobody to write to yet; type /to <user> first",
		"usage: /to <user>",
		"now writing to bob",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "usage: /to <user>") != 2 {
		t.Errorf("want /to and /to with a bad id both answered with the usage:\n%s", got)
	}
	if strings.Contains(got, `""`) || strings.Contains(got, "not sent: ") && !strings.Contains(got, "not sent: nobody") {
		t.Errorf("a send to nobody, or a failed send:\n%s", got)
	}
	// The one message sent is bob's: his only conversation holds it alone.
	platformtest.Eventually(t, 30*time.Second, func() error {
		req, _ := http.NewRequest("GET", p.HTTP(0)+"/v1/conversations/"+event.DirectConv("alice", "bob")+"/messages", nil)
		req.Header.Set("Authorization", "Bearer "+p.Token("bob"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var page struct {
			Messages []struct {
				Text string `json:"text"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			return err
		}
		if len(page.Messages) != 1 || page.Messages[0].Text != "hi bob" {
			return fmt.Errorf("bob's conversation with alice holds %+v, want only hi bob", page.Messages)
		}
		return nil
	})
}
