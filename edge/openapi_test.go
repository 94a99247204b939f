package edge_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"messenger/docs"
	"messenger/edge"
	"messenger/infra/platformtest"
)

// appRoutes are described in docs/openapi.json but served by every role
// (cmd/messenger), not by edge.Routes.
var appRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// routeRecorder records the patterns edge.Routes registers.
type routeRecorder struct{ patterns []string }

func (r *routeRecorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	r.patterns = append(r.patterns, pattern)
}

var _ edge.Mux = (*routeRecorder)(nil)

type openAPI struct {
	Paths map[string]map[string]json.RawMessage `json:"paths"`
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	var doc openAPI
	if err := json.Unmarshal(docs.OpenAPI, &doc); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	return doc
}

// documented is every "METHOD /path" of the description.
func (d openAPI) documented() map[string]bool {
	out := map[string]bool{}
	for path, ops := range d.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			out[strings.ToUpper(m)+" "+path] = true
		}
	}
	return out
}

// TestOpenAPIDescribesEveryRoute: every route the edge's mux serves is in
// docs/openapi.json, and every route described there is served (by the
// edge, or by every role for /healthz, /readyz, /metrics). A route added
// without its description fails here.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	var rec routeRecorder
	p.Edges[0].Edge.Routes(&rec)
	doc := loadOpenAPI(t).documented()
	served := map[string]bool{}
	for _, pat := range rec.patterns {
		switch pat {
		case "/v1/": // the catch-all: not_found for any other /v1 path
			continue
		case "/": // the web client: GET (and HEAD) of its files
			pat = "GET /"
		}
		served[pat] = true
		if !doc[pat] {
			t.Errorf("route %q is served but not described in docs/openapi.json", pat)
		}
	}
	for r := range doc {
		if !served[r] && !appRoutes[r] {
			t.Errorf("docs/openapi.json describes %q, which no mux serves", r)
		}
	}
}

// apiChecker calls the edge and checks each answer against the
// description: a status the operation lists, and a body valid against
// that response's schema (error bodies included).
type apiChecker struct {
	t      *testing.T
	base   string
	raw    map[string]any
	c      *jsonschema.Compiler
	called map[string]bool
}

func newAPIChecker(t *testing.T, base string) *apiChecker {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(docs.OpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("file:///openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal(docs.OpenAPI, &raw)
	return &apiChecker{t: t, base: base, raw: raw, c: c, called: map[string]bool{}}
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// call does method on url (a concrete path), described under path, and
// checks the answer; it returns the decoded body.
func (a *apiChecker) call(method, path, url, token string, body any, header map[string]string) (int, map[string]any) {
	t := a.t
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a.called[method+" "+path] = true
	op, _ := a.raw["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if op == nil {
		t.Fatalf("%s %s is not described", method, path)
	}
	status := strconv.Itoa(resp.StatusCode)
	r, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		t.Fatalf("%s %s answered %s, not a status the description lists: %s", method, url, status, data)
	}
	pointer := "#/paths/" + pointerEscape(path) + "/" + strings.ToLower(method) + "/responses/" + status
	if ref, ok := r["$ref"].(string); ok {
		pointer = ref
		name := ref[strings.LastIndex(ref, "/")+1:]
		r = a.raw["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
	}
	var out map[string]any
	if _, ok := r["content"]; !ok {
		return resp.StatusCode, nil
	}
	sch, err := a.c.Compile("file:///openapi.json" + pointer + "/content/application~1json/schema")
	if err != nil {
		t.Fatalf("schema of %s %s %s: %v", method, path, status, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s %s answered %s with a body that is not JSON: %s", method, url, status, data)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("%s %s answered %s with a body not as described: %v\n%s", method, url, status, err, data)
	}
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func (a *apiChecker) want(got, want int, what string) {
	a.t.Helper()
	if got != want {
		a.t.Fatalf("%s: %d, want %d", what, got, want)
	}
}

// TestOpenAPIAnswersAsDescribed calls every route of the edge, with
// successes and errors, and checks each status and body against
// docs/openapi.json; at the end every described edge route was called.
func TestOpenAPIAnswersAsDescribed(t *testing.T) {
	p := platformtest.Start(t, platformtest.Options{})
	dev := p.StartDevEdge(edge.Config{})
	a := newAPIChecker(t, p.HTTP(dev))
	alice, bob, dave := p.Token("alice"), p.Token("bob"), p.Token("dave")

	code, _ := a.call("GET", "/v1/openapi.json", "/v1/openapi.json", "", nil, nil)
	a.want(code, 200, "openapi")
	code, _ = a.call("GET", "/v1/dev", "/v1/dev", "", nil, nil)
	a.want(code, 200, "dev")
	code, _ = a.call("POST", "/v1/dev/token", "/v1/dev/token", "", map[string]any{"user": "erin"}, nil)
	a.want(code, 200, "dev token")
	code, _ = a.call("GET", "/", "/", "", nil, nil)
	a.want(code, 200, "web client")
	code, _ = a.call("GET", "/v1/ws", "/v1/ws", "", nil, nil)
	a.want(code, 401, "ws without a token")

	code, ack := a.call("POST", "/v1/messages", "/v1/messages", alice, map[string]any{"id": "m1", "to": "bob", "text": "hi"}, nil)
	a.want(code, 200, "send")
	dc := ack["conv"].(string)
	code, _ = a.call("POST", "/v1/messages", "/v1/messages", alice, map[string]any{"id": "m2"}, nil)
	a.want(code, 400, "send without text")
	code, _ = a.call("POST", "/v1/messages", "/v1/messages", "", map[string]any{"id": "m3", "to": "bob", "text": "x"}, nil)
	a.want(code, 401, "send without a token")
	code, _ = a.call("POST", "/v1/receipts", "/v1/receipts", bob, map[string]any{"conv": dc, "seq": 1, "status": "read"}, nil)
	a.want(code, 200, "receipt")
	code, _ = a.call("POST", "/v1/typing", "/v1/typing", bob, map[string]any{"conv": dc}, nil)
	a.want(code, 200, "typing")
	code, _ = a.call("GET", "/v1/conversations", "/v1/conversations", alice, nil, nil)
	a.want(code, 200, "list")

	create := map[string]any{"id": "g1", "title": "team", "members": []string{"bob"}}
	code, g := a.call("POST", "/v1/conversations", "/v1/conversations", alice, create, nil)
	a.want(code, 201, "create group")
	gc := g["conv"].(string)
	code, _ = a.call("POST", "/v1/conversations", "/v1/conversations", alice, create, nil)
	a.want(code, 200, "create group again")
	const conv = "/v1/conversations/{conv}"
	code, _ = a.call("GET", conv, "/v1/conversations/"+gc, alice, nil, nil)
	a.want(code, 200, "get group")
	code, _ = a.call("GET", conv, "/v1/conversations/"+gc, dave, nil, nil)
	a.want(code, 403, "get group as a non-member")
	code, _ = a.call("PATCH", conv, "/v1/conversations/"+gc, alice, map[string]any{"title": "team 2"}, nil)
	a.want(code, 200, "rename")
	code, _ = a.call("POST", conv+"/members", "/v1/conversations/"+gc+"/members", alice, map[string]any{"user": "dave"}, nil)
	a.want(code, 200, "add")
	code, _ = a.call("POST", conv+"/members", "/v1/conversations/"+gc+"/members", alice, map[string]any{"user": "dave"}, nil)
	a.want(code, 409, "add again")
	code, _ = a.call("DELETE", conv+"/members/{user}", "/v1/conversations/"+gc+"/members/dave", dave, nil, nil)
	a.want(code, 200, "leave")
	code, _ = a.call("GET", conv+"/messages", "/v1/conversations/"+gc+"/messages?limit=10", alice, nil, nil)
	a.want(code, 200, "history")
	code, _ = a.call("GET", conv+"/messages", "/v1/conversations/"+gc+"/messages?before=x", alice, nil, nil)
	a.want(code, 400, "history with a bad bound")
	code, _ = a.call("PUT", conv+"/mute", "/v1/conversations/"+gc+"/mute", bob, map[string]any{"until": 0}, nil)
	a.want(code, 200, "mute")
	code, _ = a.call("DELETE", conv+"/mute", "/v1/conversations/"+gc+"/mute", bob, nil, nil)
	a.want(code, 200, "unmute")

	code, _ = a.call("GET", "/v1/presence", "/v1/presence?users=bob,alice", alice, nil, nil)
	a.want(code, 200, "presence")
	code, _ = a.call("GET", "/v1/poll", "/v1/poll", alice, nil, nil)
	a.want(code, 200, "poll without a cursor")
	code, _ = a.call("GET", "/v1/poll", "/v1/poll?cursor=1&timeout=0", alice, nil, nil)
	a.want(code, 200, "poll")
	code, _ = a.call("GET", "/v1/poll", "/v1/poll?cursor=99999999&timeout=0", alice, nil, nil)
	a.want(code, 410, "poll with an unknown cursor")

	code, reg := a.call("POST", "/v1/push/tokens", "/v1/push/tokens", bob, map[string]any{"platform": "fcm", "token": "fcm-token-123456789"}, nil)
	a.want(code, 200, "register")
	code, _ = a.call("GET", "/v1/push/tokens", "/v1/push/tokens", bob, nil, nil)
	a.want(code, 200, "registrations")
	code, _ = a.call("DELETE", "/v1/push/tokens/{id}", "/v1/push/tokens/"+reg["id"].(string), bob, nil, nil)
	a.want(code, 200, "unregister")
	a.call("GET", "/v1/push/webpush-key", "/v1/push/webpush-key", bob, nil, nil) // 200 or 404, both described

	var missing []string
	for r := range loadOpenAPI(t).documented() {
		if !a.called[r] && !appRoutes[r] {
			missing = append(missing, r)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("described routes this test never called: %v", missing)
	}
}
