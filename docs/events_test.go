package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"messenger/client"
	"messenger/docs"
	"messenger/edge"
	"messenger/infra/platformtest"
	"messenger/services/presence"
	"messenger/streams"
)

// schemaSet is every schema of docs/schemas, compiled, and the top-level
// properties each documents (a $ref followed).
type schemaSet struct {
	compiled map[string]*jsonschema.Schema
	props    map[string]map[string]bool
}

func loadSchemas(t *testing.T) *schemaSet {
	t.Helper()
	const base = "file:///docs/schemas/"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	raw := map[string]map[string]any{}
	entries, err := fs.ReadDir(docs.Schemas, "schemas")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := fs.ReadFile(docs.Schemas, "schemas/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if err := c.AddResource(base+e.Name(), doc); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		raw[e.Name()] = m
	}
	s := &schemaSet{compiled: map[string]*jsonschema.Schema{}, props: map[string]map[string]bool{}}
	for name, m := range raw {
		sch, err := c.Compile(base + name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.compiled[name] = sch
		for ref, ok := m["$ref"].(string); ok; ref, ok = m["$ref"].(string) {
			m = raw[ref]
		}
		s.props[name] = map[string]bool{}
		for p := range m["properties"].(map[string]any) {
			s.props[name][p] = true
		}
		req, _ := m["required"].([]any)
		if !contains(req, "v") {
			t.Errorf("%s: v is not required", name)
		}
	}
	return s
}

func contains(list []any, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// check validates doc against schema name and that every field it carries
// is documented there.
func (s *schemaSet) check(t *testing.T, name, where string, doc []byte) {
	t.Helper()
	sch := s.compiled[name]
	if sch == nil {
		t.Fatalf("no schema %s (for %s)", name, where)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: not JSON: %v: %s", where, err, doc)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("%s does not match %s: %v\n%s", where, name, err, doc)
	}
	for k := range inst.(map[string]any) {
		if !s.props[name][k] {
			t.Fatalf("%s: field %q is not documented in %s: %s", where, k, name, doc)
		}
	}
}

// TestStoredEventsMatchTheSchemas runs a platform, makes every kind of
// event (direct and group messages, every membership event, receipts
// delivered and read, queue entries, presence reports and changes, push
// registrations and mutes), reads them back from the streams with
// consumers (and the core presence subjects with a subscription), and
// validates each against its schema in docs/schemas.
func TestStoredEventsMatchTheSchemas(t *testing.T) {
	schemas := loadSchemas(t)
	p := platformtest.Start(t, platformtest.Options{
		Partitions: 2,
		Edge:       edge.Config{PresenceHeartbeat: 200 * time.Millisecond, PresenceSync: 300 * time.Millisecond},
		Presence:   presence.Config{OnlineDelay: 100 * time.Millisecond, OfflineDelay: 100 * time.Millisecond},
	})
	admin := p.Conn()
	var presMu sync.Mutex
	var pres []*nats.Msg
	// pres.* are core NATS subjects, never stored: a subscription is the
	// way to read them (unlike a stream's subjects).
	if _, err := admin.Subscribe("pres.>", func(m *nats.Msg) {
		presMu.Lock()
		pres = append(pres, m)
		presMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	call := func(method, path, user string, body any, want int) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, p.HTTP(0)+path, rd)
		req.Header.Set("Authorization", "Bearer "+p.Token(user))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, want)
		}
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		return out
	}

	// A connection and its end: connection reports, heartbeats, syncs, changes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URLs: []string{p.WS(0)}, Token: func() (string, error) { return p.Token("alice"), nil }})
	if err != nil {
		t.Fatal(err)
	}

	ack := call("POST", "/v1/messages", "alice", map[string]any{"id": "m1", "to": "bob", "text": "hi bob"}, 200)
	dc := ack["conv"].(string)
	call("POST", "/v1/receipts", "bob", map[string]any{"conv": dc, "seq": 1, "status": "delivered"}, 200)
	call("POST", "/v1/receipts", "bob", map[string]any{"conv": dc, "seq": 1, "status": "read"}, 200)
	g := call("POST", "/v1/conversations", "alice", map[string]any{"id": "g1", "title": "team", "members": []string{"bob", "carol"}}, 201)["conv"].(string)
	call("POST", "/v1/conversations/"+g+"/members", "alice", map[string]any{"user": "dave"}, 200)
	call("DELETE", "/v1/conversations/"+g+"/members/carol", "alice", nil, 200)
	call("PATCH", "/v1/conversations/"+g, "alice", map[string]any{"title": "team 2"}, 200)
	gack := call("POST", "/v1/messages", "bob", map[string]any{"id": "m2", "conv": g, "text": "hello team"}, 200)
	call("POST", "/v1/receipts", "dave", map[string]any{"conv": g, "seq": gack["seq"], "status": "read"}, 200)
	id := call("POST", "/v1/push/tokens", "bob", map[string]any{"platform": "fcm", "token": "fcm-token-1"}, 200)["id"].(string)
	call("DELETE", "/v1/push/tokens/"+id, "bob", nil, 200)
	call("PUT", "/v1/conversations/"+g+"/mute", "bob", map[string]any{"until": 0}, 200)
	call("DELETE", "/v1/conversations/"+g+"/mute", "bob", nil, 200)

	// alice goes online (after the delay), then offline.
	platformtest.Eventually(t, 30*time.Second, func() error { return seenPresence(&presMu, &pres, "online") })
	c.Close()
	platformtest.Eventually(t, 30*time.Second, func() error { return seenPresence(&presMu, &pres, "offline") })

	js, _ := jetstream.New(admin)
	var streamNames []string
	for i := 0; i < 2; i++ {
		streamNames = append(streamNames, streams.ConvStream(i), streams.QueueStream(i))
	}
	streamNames = append(streamNames, streams.PushRegStream)
	want := []string{
		"conv-msg text direct", "conv-msg text group", "conv-msg group_created", "conv-msg member_added",
		"conv-msg member_removed", "conv-msg title_changed", "conv-receipt delivered", "conv-receipt read",
		"uq-msg text", "uq-msg group_created", "uq-msg member_removed", "uq-receipt delivered", "uq-receipt read",
		"pushreg register", "pushreg unregister", "pushreg mute", "pushreg unmute",
		"pres-evt", "pres-hb", "pres-sync", "pres-chg online", "pres-chg offline",
	}
	platformtest.Eventually(t, 60*time.Second, func() error {
		seen := map[string]int{}
		for _, name := range streamNames {
			for _, m := range readStream(t, js, name) {
				kind := classify(t, schemas, m.Subject(), m.Data())
				seen[kind]++
			}
		}
		presMu.Lock()
		msgs := append([]*nats.Msg(nil), pres...)
		presMu.Unlock()
		for _, m := range msgs {
			if m.Subject == "pres.resync" {
				continue // no body
			}
			seen[classify(t, schemas, m.Subject, m.Data)]++
		}
		var missing []string
		for _, w := range want {
			if seen[w] == 0 {
				missing = append(missing, w)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not seen yet: %v (seen %v)", missing, keys(seen))
		}
		return nil
	})
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func seenPresence(mu *sync.Mutex, pres *[]*nats.Msg, status string) error {
	mu.Lock()
	defer mu.Unlock()
	for _, m := range *pres {
		if strings.HasPrefix(m.Subject, "pres.chg.") && strings.Contains(string(m.Data), `"status":"`+status+`"`) {
			return nil
		}
	}
	return fmt.Errorf("no pres.chg %s yet", status)
}

// classify validates one document by its subject and names what it is.
func classify(t *testing.T, s *schemaSet, subject string, data []byte) string {
	t.Helper()
	var d struct{ Type, Kind, Status, To string }
	_ = json.Unmarshal(data, &d)
	where := subject
	switch first, _, _ := strings.Cut(subject, "."); first {
	case "conv":
		s.check(t, "conv-msg.schema.json", where, data)
		if d.Kind == "text" {
			if d.To != "" {
				return "conv-msg text direct"
			}
			return "conv-msg text group"
		}
		return "conv-msg " + d.Kind
	case "rcpt":
		s.check(t, "conv-receipt.schema.json", where, data)
		return "conv-receipt " + d.Status
	case "uq":
		if d.Type == "receipt" {
			s.check(t, "uq-receipt.schema.json", where, data)
			return "uq-receipt " + d.Status
		}
		s.check(t, "uq-msg.schema.json", where, data)
		return "uq-msg " + d.Kind
	case "pushreg":
		s.check(t, "pushreg.schema.json", where, data)
		return "pushreg " + d.Type
	case "pres":
		parts := strings.Split(subject, ".")
		name := "pres-" + parts[1]
		s.check(t, name+".schema.json", where, data)
		if parts[1] == "chg" {
			return name + " " + d.Status
		}
		return name
	}
	t.Fatalf("a subject EVENTS.md does not describe: %s", subject)
	return ""
}

// readStream reads every message of a stream with an ordered consumer.
func readStream(t *testing.T, js jetstream.JetStream, name string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < total && ctx.Err() == nil {
		batch, err := cons.Fetch(total-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
	}
	return out
}
