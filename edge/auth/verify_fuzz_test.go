package auth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"messenger/client/proto"
	"messenger/edge/auth"
)

// The fuzz targets' fixed keys, and the keys of an attacker who does not
// hold them.
var (
	fzSecret      = []byte("fuzz-secret-0123456789abcdef")
	fzOtherSecret = []byte("not-the-secret-0123456789abc")
	fzPriv        = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	fzOtherPriv   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
)

func fzVerifiers(t testing.TB) (hs, ed *auth.Verifier) {
	t.Helper()
	hs, err := auth.NewHS256Verifier(fzSecret)
	if err != nil {
		t.Fatal(err)
	}
	ed, err = auth.NewEdDSAVerifier(fzPriv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return hs, ed
}

func fzB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// fzSign makes a compact JWS of any header and payload: how picks the key,
// the right one or an attacker's, of either algorithm.
func fzSign(header, payload []byte, how byte) string {
	input := fzB64(header) + "." + fzB64(payload)
	var sig []byte
	switch how % 5 {
	case 0:
		m := hmac.New(sha256.New, fzSecret)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case 1:
		m := hmac.New(sha256.New, fzOtherSecret)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case 2:
		sig = ed25519.Sign(fzPriv, []byte(input))
	case 3:
		sig = ed25519.Sign(fzOtherPriv, []byte(input))
	case 4: // unsigned, as alg "none" would be
	}
	return input + "." + fzB64(sig)
}

// checkAccepted holds for every token a verifier accepts: it is a
// three-part JWS whose header names the verifier's algorithm and whose
// signature the verifier's key made (checked here without the JWT
// library), and whose payload has a sub that is a valid user id (the one
// returned) and an exp that is a JSON number in the future, the one
// returned (PROTOCOL.md section 1).
func checkAccepted(t *testing.T, token, alg, user string, exp time.Time) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted %q: %d parts", token, len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("accepted %q: signature is not base64url: %v", token, err)
	}
	input := []byte(parts[0] + "." + parts[1])
	switch alg {
	case "HS256":
		m := hmac.New(sha256.New, fzSecret)
		m.Write(input)
		if !hmac.Equal(m.Sum(nil), sig) {
			t.Fatalf("accepted %q: not signed with the secret", token)
		}
	case "EdDSA":
		if !ed25519.Verify(fzPriv.Public().(ed25519.PublicKey), input, sig) {
			t.Fatalf("accepted %q: not signed with the key", token)
		}
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if raw, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || json.Unmarshal(raw, &header) != nil || header.Alg != alg {
		t.Fatalf("accepted %q: header alg %q, want %q", token, header.Alg, alg)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("accepted %q: payload is not base64url: %v", token, err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var claims map[string]any
	if err := d.Decode(&claims); err != nil {
		t.Fatalf("accepted %q: payload %q: %v", token, raw, err)
	}
	if sub, _ := claims["sub"].(string); sub != user || !proto.ValidID(user) {
		t.Fatalf("accepted %q: user %q, sub %v", token, user, claims["sub"])
	}
	n, ok := claims["exp"].(json.Number)
	if !ok {
		t.Fatalf("accepted %q: exp %#v is not a number", token, claims["exp"])
	}
	if !exp.After(time.Now()) {
		t.Fatalf("accepted %q: expired at %v", token, exp)
	}
	if f, err := n.Float64(); err != nil || f < float64(exp.Unix()) || f >= float64(exp.Unix()+1) {
		t.Fatalf("accepted %q: exp %s, returned %v", token, n, exp)
	}
}

// FuzzVerify: any string presented as a token (Authorization header or
// access_token) never panics a verifier, and what is accepted was signed
// with the verifier's own key and algorithm, for an unexpired valid user.
// Seeds: testdata/fuzz/FuzzVerify (alg none, alg confusion, truncated and
// padded parts, exp as a string, huge and NaN-like exps, a sub that is not
// an id, duplicate keys).
func FuzzVerify(f *testing.F) {
	f.Add(fzSign([]byte(`{"alg":"HS256","typ":"JWT"}`), []byte(`{"sub":"u1","exp":9999999999}`), 0))
	hs, ed := fzVerifiers(f)
	f.Fuzz(func(t *testing.T, token string) {
		if user, exp, err := hs.Verify(token); err == nil {
			checkAccepted(t, token, "HS256", user, exp)
		}
		if user, exp, err := ed.Verify(token); err == nil {
			checkAccepted(t, token, "EdDSA", user, exp)
		}
	})
}

// FuzzVerifySigned: a token of any header and payload, signed by the right
// key, an attacker's key or none. Only the right key's tokens are accepted,
// and only with a valid sub and a numeric exp in the future. Seeds:
// testdata/fuzz/FuzzVerifySigned.
func FuzzVerifySigned(f *testing.F) {
	f.Add([]byte(`{"alg":"HS256"}`), []byte(`{"sub":"u1","exp":9999999999}`), byte(0))
	f.Add([]byte(`{"alg":"EdDSA"}`), []byte(`{"sub":"u1","exp":9999999999}`), byte(2))
	hs, ed := fzVerifiers(f)
	f.Fuzz(func(t *testing.T, header, payload []byte, how byte) {
		token := fzSign(header, payload, how)
		if user, exp, err := hs.Verify(token); err == nil {
			if how%5 != 0 {
				t.Fatalf("HS256 verifier accepted a token signed by way %d: %q", how%5, token)
			}
			checkAccepted(t, token, "HS256", user, exp)
		}
		if user, exp, err := ed.Verify(token); err == nil {
			if how%5 != 2 {
				t.Fatalf("EdDSA verifier accepted a token signed by way %d: %q", how%5, token)
			}
			checkAccepted(t, token, "EdDSA", user, exp)
		}
	})
}
