package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"messenger/client/proto"
)

// ErrUnauthorized is wrapped by every error Verify returns, so that callers
// can answer 401 with errors.Is without depending on the reason text.
var ErrUnauthorized = errors.New("unauthorized")

// minSecretLen rejects secrets too short to resist offline brute force of an
// HS256 signature.
const minSecretLen = 16

// Verifier checks tokens; safe for concurrent use.
type Verifier struct {
	alg    string
	key    any
	parser *jwt.Parser
	policy policy
}

// NewHS256Verifier returns a Verifier that only accepts HS256 tokens signed
// with secret, under the rules of opts (aud, iss, lifetime). The secret is
// copied so later mutation by the caller cannot change which tokens are
// accepted.
func NewHS256Verifier(secret []byte, opts ...Option) (*Verifier, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("auth: HS256 verifier: secret is %d bytes, need at least %d", len(secret), minSecretLen)
	}
	return newVerifier(jwt.SigningMethodHS256.Alg(), append([]byte(nil), secret...), opts), nil
}

// NewEdDSAVerifier returns a Verifier that only accepts EdDSA tokens signed
// by the private half of pub, under the rules of opts.
func NewEdDSAVerifier(pub ed25519.PublicKey, opts ...Option) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("auth: EdDSA verifier: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return newVerifier(jwt.SigningMethodEdDSA.Alg(), append(ed25519.PublicKey(nil), pub...), opts), nil
}

func newVerifier(alg string, key any, opts []Option) *Verifier {
	p := newPolicy(opts)
	return &Verifier{
		alg:    alg,
		key:    key,
		policy: p,
		// The parser is built once: it holds only configuration, and
		// rebuilding it per call would allocate on the hot path.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{alg}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(0),
		),
	}
}

// keyFunc repeats the algorithm check that WithValidMethods already makes,
// and also checks the method's concrete type, so that a change to parser
// options can never hand an HMAC secret to a different method (the classic
// alg-confusion attack).
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	if t.Method == nil || t.Method.Alg() != v.alg {
		return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
	}
	var ok bool
	switch v.alg {
	case jwt.SigningMethodHS256.Alg():
		_, ok = t.Method.(*jwt.SigningMethodHMAC)
	case jwt.SigningMethodEdDSA.Alg():
		_, ok = t.Method.(*jwt.SigningMethodEd25519)
	}
	if !ok {
		return nil, fmt.Errorf("unexpected signing method type %T", t.Method)
	}
	return v.key, nil
}

// Verify returns the user id and the expiry of a valid token, or an error wrapping ErrUnauthorized with a short reason.
func (v *Verifier) Verify(token string) (user string, exp time.Time, err error) {
	if token == "" {
		return "", time.Time{}, fmt.Errorf("%w: missing token", ErrUnauthorized)
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyFunc); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %s", ErrUnauthorized, reason(err))
	}
	// The parser enforces exp, but a nil check keeps this safe should the
	// options ever change.
	if c.Exp == nil {
		return "", time.Time{}, fmt.Errorf("%w: missing exp", ErrUnauthorized)
	}
	if err := v.policy.check(&c, time.Now()); err != nil {
		return "", time.Time{}, err
	}
	if !proto.ValidID(c.Sub) {
		return "", time.Time{}, fmt.Errorf("%w: invalid sub", ErrUnauthorized)
	}
	return c.Sub, c.Exp.Time, nil
}

// reason turns a jwt error into a short, stable phrase. The library's own
// messages are long and may echo attacker-controlled header values, so they
// are not passed through to clients.
func reason(err error) string {
	switch {
	case errors.Is(err, errNotNumber):
		return "exp, nbf and iat must be numbers"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unexpected signing method"
	case errors.Is(err, jwt.ErrSignatureInvalid), errors.Is(err, jwt.ErrEd25519Verification):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// WithValidMethods reports a disallowed alg as ErrTokenSignatureInvalid
		// with no underlying verification error; a real signature mismatch
		// is caught by the case above.
		return "algorithm not allowed"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing exp"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not yet valid"
	default:
		return "invalid token"
	}
}

// Signer mints tokens with the same key material.
type Signer struct {
	method jwt.SigningMethod
	key    any
	policy policy
}

// NewHS256Signer returns a Signer for HS256. The same minimum length as the
// verifier applies, so a Signer never mints tokens no Verifier would accept;
// given the Verifier's opts, it sets aud and iss and keeps to its lifetime.
func NewHS256Signer(secret []byte, opts ...Option) (*Signer, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("auth: HS256 signer: secret is %d bytes, need at least %d", len(secret), minSecretLen)
	}
	return &Signer{method: jwt.SigningMethodHS256, key: append([]byte(nil), secret...), policy: newPolicy(opts)}, nil
}

// NewEdDSASigner returns a Signer for EdDSA, under the rules of opts.
func NewEdDSASigner(priv ed25519.PrivateKey, opts ...Option) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("auth: EdDSA signer: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return &Signer{method: jwt.SigningMethodEdDSA, key: append(ed25519.PrivateKey(nil), priv...), policy: newPolicy(opts)}, nil
}

// MaxTTL is the longest ttl Token accepts.
func (s *Signer) MaxTTL() time.Duration { return s.policy.maxTTL }

// Token returns a token for user valid for ttl. It refuses inputs that Verify
// would reject, so a bad token fails at issue time rather than at first use.
func (s *Signer) Token(user string, ttl time.Duration) (string, error) {
	if !proto.ValidID(user) {
		return "", fmt.Errorf("auth: sign token: invalid user id %q", user)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: sign token: ttl must be positive, got %v", ttl)
	}
	if ttl > s.policy.maxTTL {
		return "", fmt.Errorf("auth: sign token: ttl %v is over the longest lifetime accepted, %v", ttl, s.policy.maxTTL)
	}
	// Whole seconds are what NumericDate encodes by default; truncating here
	// keeps iat and exp consistent with each other.
	now := time.Now().Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    s.policy.issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if s.policy.audience != "" {
		claims.Audience = jwt.ClaimStrings{s.policy.audience}
	}
	tok, err := jwt.NewWithClaims(s.method, claims).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign token for %q: %w", user, err)
	}
	return tok, nil
}

// FromRequest extracts the token of a WebSocket upgrade (GET /v1/ws): the
// Authorization: Bearer header wins; else the access_token query parameter.
// Returns "" if none. The query fallback exists for browser WebSockets,
// which cannot set headers; every other route uses FromHeader (PROTOCOL.md
// section 1), since a URL ends up in proxy and access logs, browser history
// and Referer headers.
func FromRequest(r *http.Request) string {
	if tok := FromHeader(r); tok != "" || r == nil || r.URL == nil {
		return tok
	}
	return r.URL.Query().Get("access_token")
}

// FromHeader extracts the token of the Authorization: Bearer header, or "".
func FromHeader(r *http.Request) string {
	if r == nil {
		return ""
	}
	return bearer(r.Header.Get("Authorization"))
}

// InQuery tells whether r carries a token in its query string, so that a
// route that does not take it there can say so.
func InQuery(r *http.Request) bool {
	return r != nil && r.URL != nil && r.URL.Query().Has("access_token")
}

// bearer returns the credentials of a Bearer authorization value. The scheme
// is matched case-insensitively, as RFC 7235 requires.
func bearer(h string) string {
	const scheme = "bearer"
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) || h[len(scheme)] != ' ' {
		return ""
	}
	return strings.TrimSpace(h[len(scheme)+1:])
}
