package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultMaxTTL is the longest token lifetime accepted when none is
// configured. A token is a bearer credential that cannot be revoked: the cap
// bounds how long a leaked one stays useful. A week is far above what
// anything here mints (`messenger token` and the web sign-in 24 h, tests an
// hour) and still leaves room for a bot restarted weekly; an identity
// provider usually issues hour-scale access tokens anyway.
const DefaultMaxTTL = 7 * 24 * time.Hour

// Option is a token rule beyond the signature, shared by Verifier and
// Signer so that both are built from the same settings: a Signer puts aud
// and iss in what it mints and refuses a ttl the Verifier would reject.
type Option func(*policy)

// WithAudience pins the audience: a token must carry aud (a string or a
// list containing it). Empty: aud is not checked.
func WithAudience(aud string) Option { return func(p *policy) { p.audience = aud } }

// WithIssuer pins the issuer: a token must carry iss equal to it. Empty: iss
// is not checked.
func WithIssuer(iss string) Option { return func(p *policy) { p.issuer = iss } }

// WithMaxTTL caps a token's lifetime: its exp may be at most d after now and
// at most d after its iat. Zero or less: DefaultMaxTTL.
func WithMaxTTL(d time.Duration) Option { return func(p *policy) { p.maxTTL = d } }

type policy struct {
	audience, issuer string
	maxTTL           time.Duration
}

func newPolicy(opts []Option) policy {
	var p policy
	for _, o := range opts {
		o(&p)
	}
	if p.maxTTL <= 0 {
		p.maxTTL = DefaultMaxTTL
	}
	return p
}

// check is what the parser does not: aud and iss when pinned (checked here
// rather than with the parser's options, whose error for a missing aud or
// iss cannot be told from a missing exp), and exp no further than maxTTL
// from now, nor from iat when there is one.
func (p policy) check(c *claims, now time.Time) error {
	if p.audience != "" && !slices.Contains(c.Aud, p.audience) {
		return fmt.Errorf("%w: wrong or missing aud", ErrUnauthorized)
	}
	if p.issuer != "" && c.Iss != p.issuer {
		return fmt.Errorf("%w: wrong or missing iss", ErrUnauthorized)
	}
	exp := c.Exp.Time
	if exp.Sub(now) > p.maxTTL {
		return fmt.Errorf("%w: exp is more than %v away (the longest lifetime accepted)", ErrUnauthorized, p.maxTTL)
	}
	if c.Iat != nil && exp.Sub(c.Iat.Time) > p.maxTTL {
		return fmt.Errorf("%w: exp is more than %v after iat (the longest lifetime accepted)", ErrUnauthorized, p.maxTTL)
	}
	return nil
}

// errNotNumber: a NumericDate given as anything but a JSON number.
var errNotNumber = errors.New("a date claim is not a number")

// numericDate is a jwt.NumericDate that must be a JSON number (RFC 7519
// section 2, PROTOCOL.md section 1). jwt.NumericDate alone also takes a
// string holding a number ("exp":"9999999999").
type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	// encoding/json hands over the value's bytes without surrounding space;
	// null never reaches here (the fields are pointers).
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errNotNumber
	}
	return d.NumericDate.UnmarshalJSON(b)
}

// claims are the registered claims the rules read, with strict dates. They
// implement jwt.Claims, so that the parser's validator checks exp and nbf.
type claims struct {
	Sub string           `json:"sub"`
	Iss string           `json:"iss"`
	Aud jwt.ClaimStrings `json:"aud"`
	Exp *numericDate     `json:"exp"`
	Nbf *numericDate     `json:"nbf"`
	Iat *numericDate     `json:"iat"`
}

func date(d *numericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return date(c.Exp), nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return date(c.Nbf), nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return date(c.Iat), nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Iss, nil }
func (c *claims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Aud, nil }
