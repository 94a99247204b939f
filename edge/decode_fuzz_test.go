package edge

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"messenger/client/proto"
)

// The fuzz targets of the edge's pure decoders: frames, JSON bodies, history
// bounds. Their seeds are under testdata/fuzz/<FuzzName>; the HTTP API as a
// whole is fuzzed against a running platform in api_fuzz_test.go.

// idRE is the contract's id grammar (PROTOCOL.md sections 1-3).
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// repaired reports a U+FFFD in a decoded string that the raw JSON did not
// spell (literally or as \ufffd): encoding/json put it there in place of
// invalid UTF-8 or a lone surrogate escape.
func repaired(raw []byte, s string) bool {
	if !strings.ContainsRune(s, utf8.RuneError) {
		return false
	}
	return !bytes.Contains(raw, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`))
}

// jsonStrings is every string of a decoded JSON value, object keys included.
func jsonStrings(v any, out []string) []string {
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []any:
		for _, e := range x {
			out = jsonStrings(e, out)
		}
	case map[string]any:
		for k, e := range x {
			out = jsonStrings(e, append(out, k))
		}
	}
	return out
}

// checkErrorFrame: an error frame is one JSON object of the contract's shape
// whose id, when there is one, is a valid id.
func checkErrorFrame(t *testing.T, frame []byte) {
	t.Helper()
	var ef map[string]any
	if err := json.Unmarshal(frame, &ef); err != nil {
		t.Fatalf("error frame %q is not JSON: %v", frame, err)
	}
	if ef["type"] != "error" || ef["code"] == "" || ef["message"] == nil {
		t.Fatalf("error frame %s lacks type, code or message", frame)
	}
	if id, has := ef["id"]; has {
		if s, _ := id.(string); !idRE.MatchString(s) {
			t.Fatalf("error frame %s echoes an id that is not one", frame)
		}
	}
}

// FuzzDecodeFrame: every WebSocket text frame (valid UTF-8: gws closes
// with 1007 before) decodes to a typed frame or to a bad_request error
// frame that is valid JSON. A frame accepted re-encodes to an equivalent
// one, holds no string that decoding repaired (invalid UTF-8, lone
// surrogates), and, for a send that validation accepts, has ids matching
// the contract's regexp and a text of 1..MaxText bytes of UTF-8; a watch
// accepted has at most MaxWatch valid ids.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"type":"send","id":"c1","to":"bob","text":"hi"}`))
	e := &Edge{cfg: Config{}.withDefaults()}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) {
			return // closed with 1007 by gws (CheckUtf8Enabled)
		}
		fr, cerr := decodeFrame(raw)
		if cerr != nil {
			if fr != nil || cerr.Code != proto.CodeBadRequest {
				t.Fatalf("%q: %v with frame %v", raw, cerr, fr)
			}
			checkErrorFrame(t, cerr.frame(idOf(raw)))
			return
		}
		again, _ := json.Marshal(fr)
		fr2, cerr := decodeFrame(again)
		if cerr != nil || !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("%q decoded to %+v, which re-encodes to %s and decodes to %+v (%v)", raw, fr, again, fr2, cerr)
		}
		strs := []string{fr.Type, fr.ID, fr.To, fr.Conv, fr.Status}
		if fr.Text != nil {
			strs = append(strs, *fr.Text)
		}
		if fr.Cursor != nil {
			strs = append(strs, *fr.Cursor)
		}
		for _, s := range append(strs, fr.Users...) {
			if repaired(raw, s) {
				t.Fatalf("%q: accepted with %q repaired by decoding", raw, s)
			}
		}
		switch fr.Type {
		case "send":
			req := &SendRequest{ID: fr.ID, To: fr.To, Conv: fr.Conv, Text: fr.Text}
			if cerr := e.validateSend("alice", req); cerr != nil {
				checkErrorFrame(t, cerr.frame(fr.ID))
				return
			}
			if !idRE.MatchString(req.ID) || (req.To == "") == (req.Conv == "") ||
				(req.To != "" && (!idRE.MatchString(req.To) || req.To == "alice")) ||
				(req.Conv != "" && !idRE.MatchString(req.Conv)) {
				t.Fatalf("%q: send accepted with id %q, to %q, conv %q", raw, req.ID, req.To, req.Conv)
			}
			if n := len(*req.Text); n < 1 || n > e.cfg.MaxText || !utf8.ValidString(*req.Text) {
				t.Fatalf("%q: send accepted with a text of %d bytes (valid UTF-8: %v)", raw, n, utf8.ValidString(*req.Text))
			}
		case "watch":
			if cerr := e.validUsers(fr.Users); cerr != nil {
				checkErrorFrame(t, cerr.frame(fr.ID))
				return
			}
			if len(fr.Users) > e.cfg.MaxWatch {
				t.Fatalf("watch of %d users accepted", len(fr.Users))
			}
			for _, u := range fr.Users {
				if !idRE.MatchString(u) {
					t.Fatalf("watch of %q accepted", u)
				}
			}
		default:
			checkErrorFrame(t, errf(proto.CodeBadRequest, "unknown frame type %q", fr.Type).frame(fr.ID))
		}
	})
}

// FuzzJSONBody: checkJSONText, the guard of every HTTP body, refuses
// exactly what JSON decoding would silently repair. For a body that is
// JSON: accepted, no decoded string (keys included) holds a U+FFFD the body
// did not spell; refused for a lone surrogate, decoding did repair one.
// Refused for invalid UTF-8 exactly when the body is not UTF-8.
func FuzzJSONBody(f *testing.F) {
	f.Add([]byte(`{"id":"c1","to":"bob","text":"hi"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cerr := checkJSONText(raw)
		if !utf8.Valid(raw) {
			if cerr == nil {
				t.Fatalf("%q: invalid UTF-8 accepted", raw)
			}
			return
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return // readBody answers bad_request
		}
		fixed := false
		for _, s := range jsonStrings(v, nil) {
			fixed = fixed || repaired(raw, s)
		}
		switch {
		case cerr == nil && fixed:
			t.Fatalf("%q: accepted, but decoding repaired a string", raw)
		case cerr != nil && !fixed && !bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`)) && !bytes.Contains(raw, []byte("\uFFFD")):
			t.Fatalf("%q: refused (%v), but decoding repairs nothing", raw, cerr)
		}
		if cerr != nil && cerr.Code != proto.CodeBadRequest {
			t.Fatalf("%q: %v", raw, cerr)
		}
	})
}

// FuzzPageBounds: a history page (GET .../messages?before=&after=&limit=)
// holds only seqs the member may see (joined..last), strictly between the
// bounds, at most limit of them, the newest such for before or no bound
// and the oldest for after; has_more tells whether more lie beyond the
// page in the direction of paging.
func FuzzPageBounds(f *testing.F) {
	f.Add(uint64(1), uint64(10), true, uint64(5), false, uint64(0), uint64(3))
	f.Fuzz(func(t *testing.T, joined, last uint64, hasBefore bool, before uint64, hasAfter bool, after, limit uint64) {
		if joined == 0 || limit == 0 || limit > 1000 {
			return // joined is 1 or more; History caps the limit at MaxHistoryPage
		}
		var req PageRequest
		if hasBefore {
			req.Before = &before
		}
		if hasAfter {
			req.After = &after
		}
		lo, hi, more := pageBounds(joined, last, req, limit)
		in := func(s uint64) bool {
			return s >= joined && s <= last && (!hasBefore || s < before) && (!hasAfter || s > after)
		}
		if lo <= hi {
			if !in(lo) || !in(hi) || hi-lo+1 > limit {
				t.Fatalf("joined %d last %d before %v:%d after %v:%d limit %d: page %d..%d", joined, last, hasBefore, before, hasAfter, after, limit, lo, hi)
			}
		}
		// The seqs eligible beyond the page in the direction of paging.
		var beyond bool
		switch {
		case lo > hi:
			// An empty page: nothing eligible at all (else it would hold it).
			first := joined // the oldest eligible seq, if any
			if hasAfter && after != math.MaxUint64 {
				first = max(first, after+1)
			}
			if in(first) {
				t.Fatalf("joined %d last %d before %v:%d after %v:%d limit %d: empty page, but seqs are eligible", joined, last, hasBefore, before, hasAfter, after, limit)
			}
		case hasAfter:
			beyond = hi < last && in(hi+1)
		default:
			beyond = lo > 0 && in(lo-1)
		}
		if lo <= hi && more != beyond {
			t.Fatalf("joined %d last %d before %v:%d after %v:%d limit %d: page %d..%d has_more %v, want %v", joined, last, hasBefore, before, hasAfter, after, limit, lo, hi, more, beyond)
		}
	})
}
