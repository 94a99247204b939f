package auth_test

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"messenger/edge/auth"
)

// signJSON signs a raw JSON claims object with HS256, so that claims of
// any JSON type (a string exp) can be fed to a Verifier.
func signJSON(t *testing.T, secret []byte, payload string) string {
	t.Helper()
	head := b64(`{"alg":"HS256","typ":"JWT"}`) + "." + b64(payload)
	sig, err := jwt.SigningMethodHS256.Sign(head, secret)
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + b64(string(sig))
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// TestTokenRules stops the token attacks of issue 12: exp given as a
// string (accepted before: jwt.NumericDate takes a string holding a number),
// an exp in year 9999 (accepted before: no cap on lifetime), and a token
// for another audience or from another issuer when those are pinned
// (accepted before: aud and iss were not read).
func TestTokenRules(t *testing.T) {
	secret := newKeys(t).secret
	plain, err := auth.NewHS256Verifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := auth.NewHS256Verifier(secret, auth.WithAudience("messenger"), auth.WithIssuer("https://id.example"), auth.WithMaxTTL(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hour := unix(now.Add(time.Hour))
	year9999 := strconv.FormatInt(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Unix(), 10)
	cases := []struct {
		name    string
		v       *auth.Verifier
		payload string
		wantErr string // empty: accepted
	}{
		{"number exp", plain, `{"sub":"alice","exp":` + hour + `}`, ""},
		{"string exp", plain, `{"sub":"alice","exp":"` + hour + `"}`, "must be numbers"},
		{"string iat", plain, `{"sub":"alice","exp":` + hour + `,"iat":"` + unix(now) + `"}`, "must be numbers"},
		{"null exp", plain, `{"sub":"alice","exp":null}`, "missing exp"},
		{"bool exp", plain, `{"sub":"alice","exp":true}`, "must be numbers"},
		{"exp in year 9999", plain, `{"sub":"alice","exp":` + year9999 + `}`, "longest lifetime"},
		{"exp just under the default cap", plain, `{"sub":"alice","exp":` + unix(now.Add(auth.DefaultMaxTTL-time.Minute)) + `}`, ""},
		{"exp a year after an old iat", plain, `{"sub":"alice","iat":` + unix(now.Add(-365*24*time.Hour)) + `,"exp":` + hour + `}`, "after iat"},
		{"aud and iss ignored unless pinned", plain, `{"sub":"alice","exp":` + hour + `,"aud":"other","iss":"x"}`, ""},
		{"pinned: right aud and iss", pinned, `{"sub":"alice","exp":` + hour + `,"aud":"messenger","iss":"https://id.example"}`, ""},
		{"pinned: aud in a list", pinned, `{"sub":"alice","exp":` + hour + `,"aud":["a","messenger"],"iss":"https://id.example"}`, ""},
		{"pinned: no aud", pinned, `{"sub":"alice","exp":` + hour + `,"iss":"https://id.example"}`, "aud"},
		{"pinned: wrong aud", pinned, `{"sub":"alice","exp":` + hour + `,"aud":"billing","iss":"https://id.example"}`, "aud"},
		{"pinned: no iss", pinned, `{"sub":"alice","exp":` + hour + `,"aud":"messenger"}`, "iss"},
		{"pinned: wrong iss", pinned, `{"sub":"alice","exp":` + hour + `,"aud":"messenger","iss":"https://evil.example"}`, "iss"},
		{"pinned: over its max ttl", pinned, `{"sub":"alice","exp":` + unix(now.Add(3*time.Hour)) + `,"aud":"messenger","iss":"https://id.example"}`, "longest lifetime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user, _, err := c.v.Verify(signJSON(t, secret, c.payload))
			if c.wantErr == "" {
				if err != nil || user != "alice" {
					t.Fatalf("Verify = %q, %v; want alice accepted", user, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted %s", c.payload)
			}
			if !errors.Is(err, auth.ErrUnauthorized) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q, want ErrUnauthorized mentioning %q", err, c.wantErr)
			}
		})
	}
}

// TestSignerFollowsPolicy: a Signer built with the Verifier's options mints
// tokens that Verifier accepts (aud and iss set) and refuses a ttl over the
// cap, so `messenger token --ttl 8760h` fails at once instead of minting a
// token nobody accepts.
func TestSignerFollowsPolicy(t *testing.T) {
	secret := newKeys(t).secret
	opts := []auth.Option{auth.WithAudience("messenger"), auth.WithIssuer("ops"), auth.WithMaxTTL(time.Hour)}
	s, err := auth.NewHS256Signer(secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewHS256Verifier(secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if user, _, err := v.Verify(tok); err != nil || user != "alice" {
		t.Fatalf("Verify = %q, %v", user, err)
	}
	if tok, err := s.Token("alice", time.Hour+time.Second); err == nil {
		t.Fatalf("minted %q over the max ttl", tok)
	}
	def, err := auth.NewHS256Signer(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := def.Token("alice", auth.DefaultMaxTTL+time.Hour); err == nil {
		t.Fatal("minted a token over the default max ttl")
	}
}

// TestFromHeaderIgnoresQuery: outside GET /v1/ws the token is read from the
// Authorization header only (issue 12: a token in the query string was
// accepted on every route).
func TestFromHeaderIgnoresQuery(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/poll?access_token=qry", nil)
	if got := auth.FromHeader(r); got != "" {
		t.Fatalf("FromHeader = %q, want none", got)
	}
	if !auth.InQuery(r) {
		t.Fatal("InQuery = false")
	}
	r.Header.Set("Authorization", "Bearer hdr")
	if got := auth.FromHeader(r); got != "hdr" {
		t.Fatalf("FromHeader = %q, want hdr", got)
	}
}
