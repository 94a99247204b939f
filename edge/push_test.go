package edge_test

import (
	"testing"

	"messenger/infra/platformtest"
)

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
	for _, bad := range []map[string]any{{"platform": "sms", "token": "x"}, {"platform": "apns"}, {"platform": "webpush", "token": "x"}} {
		if code := api(t, "POST", url, tok, bad, &e); code != 400 || e.Error.Code != "bad_request" {
			t.Fatalf("%v: %d %+v", bad, code, e)
		}
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], p.Token("someone"), nil, &e); code != 404 {
		t.Fatalf("another user's registration: %d", code)
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], tok, nil, &e); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code := api(t, "DELETE", url+"/"+reg["id"], tok, nil, &e); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}
	if code := api(t, "GET", p.HTTP(0)+"/v1/nothing-here", tok, nil, &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("unknown endpoint: %d %+v", code, e)
	}
}
