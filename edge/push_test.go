package edge_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/infra/platformtest"
	"messenger/services/pushreg"
	"messenger/streams"
	"messenger/subjects"
)

// pushEvents are the stored push registration and mute events of subject
// (a filter), oldest first.
func pushEvents(t *testing.T, p *platformtest.Platform, subject string) []pushreg.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, _, err := streams.ReadAfter(ctx, p.Conn(), streams.PushRegStream, subject, 0, 256)
	if err != nil {
		t.Fatal(err)
	}
	var out []pushreg.Event
	for _, m := range msgs {
		var ev pushreg.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func TestPushRegistration(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	url := p.HTTP(0) + "/v1/push/tokens"
	tok := p.Token("rae")
	var reg map[string]string
	if code := api(t, "POST", url, tok, map[string]any{"platform": "fcm", "token": "abc"}, &reg); code != 200 || reg["id"] == "" {
		t.Fatalf("fcm: %d %v", code, reg)
	}
	var wp map[string]string
	sub := map[string]any{"endpoint": "https://push.example/x", "keys": map[string]string{"p256dh": "k", "auth": "a"}}
	if code := api(t, "POST", url, tok, map[string]any{"platform": "webpush", "subscription": sub}, &wp); code != 200 || wp["id"] == "" {
		t.Fatalf("webpush: %d %v", code, wp)
	}
	var e apiError
	for _, bad := range []map[string]any{{"platform": "sms", "token": "x"}, {"platform": "apns"}, {"platform": "webpush", "token": "x"},
		{"platform": "webpush", "subscription": "https://push.example/x"}, {"platform": "fcm", "token": strings.Repeat("t", 4097)}} {
		if code := api(t, "POST", url, tok, bad, &e); code != 400 || e.Error.Code != "bad_request" || strings.Contains(e.Error.Message, "pushreg") {
			t.Fatalf("%v: %d %+v", bad, code, e)
		}
	}
	if evs := pushEvents(t, p, subjects.PushRegAll); len(evs) != 2 {
		t.Fatalf("bad input stored events: %+v", evs)
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], p.Token("someone"), nil, &e); code != 404 {
		t.Fatalf("another user's registration: %d", code)
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], tok, nil, &e); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if evs := pushEvents(t, p, subjects.PushRegDevice("rae", reg["id"])); len(evs) != 2 || evs[1].Type != "unregister" || evs[1].Reason != "user" {
		t.Fatalf("unregister event: %+v", evs)
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], tok, nil, &e); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/nothing-here", tok, nil, &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("unknown endpoint: %d %+v", code, e)
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/push/webpush-key", tok, nil, &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("webpush key without web push: %d %+v", code, e)
	}
}

// GET /v1/push/tokens lists the caller's registrations without their
// secrets: a token's last 8 characters, a Web Push endpoint's host.
func TestPushTokensListed(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true})
	url := p.HTTP(0) + "/v1/push/tokens"
	tok := p.Token("lee")
	token := "fcm-token-0123456789-abcdefgh"
	var fcm, web struct{ ID string }
	api(t, "POST", url, tok, map[string]any{"platform": "fcm", "token": token}, &fcm)
	sub := map[string]any{"endpoint": "https://updates.push.services.mozilla.com/wpush/v2/secret-path", "keys": map[string]string{"p256dh": "k", "auth": "a"}}
	api(t, "POST", url, tok, map[string]any{"platform": "webpush", "subscription": sub}, &web)
	type list struct {
		Tokens []struct {
			ID, Platform, TokenEnd, EndpointHost string
			Created                              int64
		}
	}
	var got list
	var raw json.RawMessage
	if code := api(t, "GET", url, tok, nil, &raw); code != 200 {
		t.Fatalf("list: %d %s", code, raw)
	}
	if strings.Contains(string(raw), token) || strings.Contains(string(raw), "secret-path") {
		t.Fatalf("the list shows a whole token or endpoint: %s", raw)
	}
	var views struct {
		Tokens []struct {
			ID           string `json:"id"`
			Platform     string `json:"platform"`
			Created      int64  `json:"created"`
			TokenEnd     string `json:"token_end"`
			EndpointHost string `json:"endpoint_host"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &views); err != nil {
		t.Fatal(err)
	}
	v := views.Tokens
	if len(v) != 2 || v[0].ID != fcm.ID || v[0].Platform != "fcm" || v[0].TokenEnd != "abcdefgh" || v[0].Created == 0 ||
		v[1].ID != web.ID || v[1].Platform != "webpush" || v[1].EndpointHost != "updates.push.services.mozilla.com" || v[1].TokenEnd != "" {
		t.Fatalf("list: %s", raw)
	}
	if code := api(t, "GET", url, p.Token("other"), nil, &got); code != 200 || len(got.Tokens) != 0 {
		t.Fatalf("another user's list: %d %+v", code, got)
	}
	api(t, "DELETE", url+"/"+fcm.ID, tok, nil, nil)
	if code := api(t, "GET", url, tok, nil, &got); code != 200 || len(got.Tokens) != 1 || got.Tokens[0].ID != web.ID {
		t.Fatalf("after delete: %d %+v", code, got)
	}
}

// Mute: only a member may mute or unmute a conversation; the change is an
// event and the mutes bucket holds it; bad input is bad_request and
// changes nothing. Also the Web Push key, configured.
func TestMuteConversation(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{NoFanout: true, Edge: edgeConfig(func(c *edgeCfg) { c.WebPushKey = "BPublicKey_base64url" })})
	var ack struct{ Conv string }
	if code := api(t, "POST", p.HTTP(0)+"/v1/messages", p.Token("mo"), map[string]any{"id": "m1", "to": "ny", "text": "hi"}, &ack); code != 200 || ack.Conv == "" {
		t.Fatalf("send: %d %+v", code, ack)
	}
	url := p.HTTP(0) + "/v1/conversations/" + ack.Conv + "/mute"
	admin, err := jetstream.New(p.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := admin.KeyValue(context.Background(), streams.BucketMutes)
	if err != nil {
		t.Fatal(err)
	}
	mute := func(user string) (m pushreg.MuteState, found bool) {
		t.Helper()
		e, err := kv.Get(context.Background(), streams.MuteKey(user, ack.Conv))
		if err != nil {
			return m, false
		}
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			t.Fatal(err)
		}
		return m, true
	}
	var e apiError
	until := time.Now().Add(time.Hour).UnixMilli()
	if code := api(t, "PUT", url, p.Token("ny"), map[string]any{"until": until}, &e); code != 200 {
		t.Fatalf("mute: %d %+v", code, e)
	}
	if m, ok := mute("ny"); !ok || !m.Muted || m.Until != until || !m.Active(time.Now()) {
		t.Fatalf("mute stored: %+v %v", m, ok)
	}
	if evs := pushEvents(t, p, subjects.PushRegMute("ny", ack.Conv)); len(evs) != 1 || evs[0].Type != "mute" || evs[0].Until != until || evs[0].Conv != ack.Conv {
		t.Fatalf("mute event: %+v", evs)
	}
	for _, c := range []struct {
		user, url string
		body      any
		code      int
		err       string
	}{
		{"intruder", url, map[string]any{"until": 0}, 403, "forbidden"},
		{"ny", p.HTTP(0) + "/v1/conversations/no-such-conv/mute", map[string]any{"until": 0}, 403, "forbidden"},
		{"ny", url, map[string]any{"until": -1}, 400, "bad_request"},
		{"ny", url, map[string]any{"until": "soon"}, 400, "bad_request"},
		{"ny", url, map[string]any{}, 400, "bad_request"},
		{"ny", url, map[string]any{"until": time.Now().Add(-time.Minute).UnixMilli()}, 400, "bad_request"},
		{"ny", url, "not json", 400, "bad_request"},
	} {
		if code := api(t, "PUT", c.url, p.Token(c.user), c.body, &e); code != c.code || e.Error.Code != c.err {
			t.Errorf("%s PUT %v: %d %+v, want %d %s", c.user, c.body, code, e, c.code, c.err)
		}
	}
	if code := api(t, "DELETE", url, p.Token("intruder"), nil, &e); code != 403 || e.Error.Code != "forbidden" {
		t.Errorf("unmute by a non-member: %d %+v", code, e)
	}
	if m, ok := mute("ny"); !ok || m.Until != until {
		t.Fatalf("refused changes changed the mute: %+v", m)
	}
	if _, ok := mute("intruder"); ok {
		t.Fatal("a non-member's mute was stored")
	}
	if evs := pushEvents(t, p, "pushreg.mute.>"); len(evs) != 1 {
		t.Fatalf("refused changes stored events: %+v", evs)
	}
	if code := api(t, "DELETE", url, p.Token("ny"), nil, &e); code != 200 {
		t.Fatalf("unmute: %d %+v", code, e)
	}
	if m, ok := mute("ny"); !ok || m.Muted || m.Active(time.Now()) {
		t.Fatalf("after unmute: %+v", m)
	}
	if code := api(t, "PUT", url, p.Token("mo"), map[string]any{"until": 0}, &e); code != 200 {
		t.Fatalf("mute for ever: %d %+v", code, e)
	}
	if m, _ := mute("mo"); !m.Active(time.Now().Add(10000 * time.Hour)) {
		t.Fatalf("a mute for ever: %+v", m)
	}
	var key map[string]string
	if code := api(t, "GET", p.HTTP(0)+"/v1/push/webpush-key", p.Token("mo"), nil, &key); code != 200 || key["key"] != "BPublicKey_base64url" {
		t.Fatalf("webpush key: %d %v", code, key)
	}
}
