package client_test

import (
	"encoding/json"
	"slices"
	"testing"

	"messenger/client"
)

func ptr[T any](v T) *T { return &v }

// TestEventDecoding decodes one example of every server frame of PROTOCOL.md
// section 3.
func TestEventDecoding(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  client.Event
	}{
		{"hello", `{"type":"hello","proto":1,"user":"u1","cursor":"c0"}`,
			client.Event{Type: "hello", Proto: 1, User: "u1", Cursor: "c0"}},
		{"ack direct", `{"type":"ack","id":"m1","conv":"d1","seq":3,"ts":1700000000000,"online":true}`,
			client.Event{Type: "ack", ID: "m1", Conv: "d1", Seq: 3, TS: 1700000000000, Online: ptr(true)}},
		{"ack direct offline", `{"type":"ack","id":"m1","conv":"d1","seq":3,"ts":5,"online":false}`,
			client.Event{Type: "ack", ID: "m1", Conv: "d1", Seq: 3, TS: 5, Online: ptr(false)}},
		{"ack group", `{"type":"ack","id":"m2","conv":"g1","seq":9,"ts":6}`,
			client.Event{Type: "ack", ID: "m2", Conv: "g1", Seq: 9, TS: 6}},
		{"msg text", `{"type":"msg","conv":"d1","seq":4,"ts":7,"from":"u2","id":"x","kind":"text","text":"héllo \u2603","cursor":"c4"}`,
			client.Event{Type: "msg", Conv: "d1", Seq: 4, TS: 7, From: "u2", ID: "x", Kind: "text", Text: "héllo ☃", Cursor: "c4"}},
		{"msg group_created", `{"type":"msg","conv":"g1","seq":1,"ts":8,"from":"u1","id":"s1","kind":"group_created","title":"Team","members":["u1","u2","u3"],"cursor":"c5"}`,
			client.Event{Type: "msg", Conv: "g1", Seq: 1, TS: 8, From: "u1", ID: "s1", Kind: "group_created", Title: "Team", Members: []string{"u1", "u2", "u3"}, Cursor: "c5"}},
		{"msg member_added", `{"type":"msg","conv":"g1","seq":2,"ts":9,"from":"u1","id":"s2","kind":"member_added","user":"u4","cursor":"c6"}`,
			client.Event{Type: "msg", Conv: "g1", Seq: 2, TS: 9, From: "u1", ID: "s2", Kind: "member_added", User: "u4", Cursor: "c6"}},
		{"msg member_removed", `{"type":"msg","conv":"g1","seq":3,"ts":10,"from":"u4","id":"s3","kind":"member_removed","user":"u4","cursor":"c7"}`,
			client.Event{Type: "msg", Conv: "g1", Seq: 3, TS: 10, From: "u4", ID: "s3", Kind: "member_removed", User: "u4", Cursor: "c7"}},
		{"msg title_changed", `{"type":"msg","conv":"g1","seq":4,"ts":11,"from":"u1","id":"s4","kind":"title_changed","title":"New","cursor":"c8"}`,
			client.Event{Type: "msg", Conv: "g1", Seq: 4, TS: 11, From: "u1", ID: "s4", Kind: "title_changed", Title: "New", Cursor: "c8"}},
		{"receipt stored", `{"type":"receipt","conv":"d1","seq":4,"user":"u2","status":"read","cursor":"c9"}`,
			client.Event{Type: "receipt", Conv: "d1", Seq: 4, User: "u2", Status: "read", Cursor: "c9"}},
		{"receipt live", `{"type":"receipt","conv":"g1","seq":4,"user":"u3","status":"delivered"}`,
			client.Event{Type: "receipt", Conv: "g1", Seq: 4, User: "u3", Status: "delivered"}},
		{"presence online", `{"type":"presence","user":"u2","status":"online"}`,
			client.Event{Type: "presence", User: "u2", Status: "online"}},
		{"presence offline", `{"type":"presence","user":"u2","status":"offline","last_seen":1700000000123}`,
			client.Event{Type: "presence", User: "u2", Status: "offline", LastSeen: 1700000000123}},
		{"typing", `{"type":"typing","conv":"d1","user":"u2"}`,
			client.Event{Type: "typing", Conv: "d1", User: "u2"}},
		{"synced", `{"type":"synced","cursor":"c9"}`,
			client.Event{Type: "synced", Cursor: "c9"}},
		{"error with id", `{"type":"error","id":"m1","code":"forbidden","message":"not a member"}`,
			client.Event{Type: "error", ID: "m1", Code: "forbidden", Message: "not a member"}},
		{"error rate limited", `{"type":"error","id":"m2","code":"rate_limited","message":"slow down","retry_after_ms":250}`,
			client.Event{Type: "error", ID: "m2", Code: "rate_limited", Message: "slow down", RetryAfterMs: 250}},
		{"error without id", `{"type":"error","code":"cursor_expired","message":"cursor too old"}`,
			client.Event{Type: "error", Code: "cursor_expired", Message: "cursor too old"}},
		{"pong", `{"type":"pong"}`, client.Event{Type: "pong"}},
		{"unknown fields and type", `{"type":"future","conv":"d1","extra":{"a":[1,2]},"seq":1}`,
			client.Event{Type: "future", Conv: "d1", Seq: 1}},
		{"members as objects (HTTP API)", `{"conv":"g1","members":[{"user":"u1","role":"admin"},{"user":"u2","role":"member"}]}`,
			client.Event{Conv: "g1", Members: []string{"u1", "u2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got client.Event
			if err := json.Unmarshal([]byte(tt.frame), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if string(got.Raw) != tt.frame {
				t.Errorf("Raw = %s, want the frame", got.Raw)
			}
			got.Raw = nil
			if !eventsEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func eventsEqual(a, b client.Event) bool {
	if (a.Online == nil) != (b.Online == nil) || (a.Online != nil && *a.Online != *b.Online) {
		return false
	}
	if !slices.Equal(a.Members, b.Members) {
		return false
	}
	a.Online, b.Online, a.Members, b.Members = nil, nil, nil, nil
	return a.Type == b.Type && a.Conv == b.Conv && a.From == b.From && a.ID == b.ID &&
		a.Kind == b.Kind && a.Text == b.Text && a.Title == b.Title && a.User == b.User &&
		a.Status == b.Status && a.Cursor == b.Cursor && a.Code == b.Code &&
		a.Message == b.Message && a.Seq == b.Seq && a.TS == b.TS && a.LastSeen == b.LastSeen &&
		a.RetryAfterMs == b.RetryAfterMs && a.Proto == b.Proto
}

func TestEventDecodingErrors(t *testing.T) {
	for _, frame := range []string{`[]`, `"x"`, `{"type":"msg","seq":"one"}`, `{`} {
		var ev client.Event
		if err := json.Unmarshal([]byte(frame), &ev); err == nil {
			t.Errorf("Unmarshal(%s) = nil error, want one", frame)
		}
	}
}

// TestPollEvents decodes the long-polling answer of PROTOCOL.md section 4.
func TestPollEvents(t *testing.T) {
	var page struct {
		Events []client.Event `json:"events"`
		Cursor string         `json:"cursor"`
	}
	body := `{"events":[{"type":"msg","conv":"d1","seq":1,"kind":"text","text":"a","cursor":"c1"},{"type":"receipt","conv":"d1","seq":1,"user":"u2","status":"read","cursor":"c2"}],"cursor":"c2"}`
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].Text != "a" || page.Events[1].Status != "read" || page.Cursor != "c2" {
		t.Fatalf("page = %+v", page)
	}
	if !page.Events[0].Stored() || !page.Events[1].Stored() || (client.Event{Type: "typing"}).Stored() {
		t.Error("Stored() wrong")
	}
}
