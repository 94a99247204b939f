package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Subscription is a browser's side of a Web Push subscription: what it
// hands the application (Endpoint, P256dh, Auth) and the private key it
// keeps to decrypt.
type Subscription struct {
	Endpoint string
	P256dh   string // base64url uncompressed P-256 point
	Auth     string // base64url 16-byte secret
	private  *ecdh.PrivateKey
	auth     []byte
	appKey   string // the applicationServerKey it was made with ("" any)
}

// JSON is the subscription as PushSubscription.toJSON() gives it.
func (s *Subscription) JSON() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"endpoint": s.Endpoint, "expirationTime": nil,
		"keys": map[string]string{"p256dh": s.P256dh, "auth": s.Auth}})
	return b
}

// WebPushMessage is a push the service accepted, decrypted.
type WebPushMessage struct {
	Endpoint  string
	TTL       int
	Urgency   string
	Topic     string
	Subject   string // the VAPID token's sub
	Plaintext []byte
}

// WebPush is a local push service (RFC 8030): it verifies the VAPID
// token (RFC 8292: the signature with k, aud = its origin, exp within 24
// hours, sub), the headers, and decrypts the aes128gcm payload (RFC 8291)
// with the subscription's private key before accepting it.
type WebPush struct {
	base
	subs     map[string]*Subscription // by endpoint path
	messages []WebPushMessage
}

// NewWebPush starts a local push service.
func NewWebPush(t testing.TB) *WebPush {
	t.Helper()
	w := &WebPush{subs: map[string]*Subscription{}}
	w.start(t, http.HandlerFunc(w.serve), true)
	return w
}

// Subscribe makes a browser subscription on this service for the
// application server key appKey (base64url; "" accepts any key).
func (w *WebPush) Subscribe(t testing.TB, appKey string) *Subscription {
	t.Helper()
	s := NewSubscription(t, "")
	id := make([]byte, 12)
	rand.Read(id)
	path := "/wpush/v2/" + hex.EncodeToString(id)
	s.Endpoint = w.URL + path
	s.appKey = appKey
	w.mu.Lock()
	w.subs[path] = s
	w.mu.Unlock()
	return s
}

// NewSubscription makes a browser's keys (P-256 key pair, auth secret)
// for endpoint.
func NewSubscription(t testing.TB, endpoint string) *Subscription {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &Subscription{Endpoint: endpoint, private: k, auth: auth,
		P256dh: base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Auth:   base64.RawURLEncoding.EncodeToString(auth)}
}

// Decrypt reads a push body encrypted for s (RFC 8291).
func (s *Subscription) Decrypt(body []byte) ([]byte, error) {
	return Decrypt(body, s.private, s.auth)
}

// Messages are the pushes accepted so far, in order.
func (w *WebPush) Messages() []WebPushMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebPushMessage(nil), w.messages...)
}

var topicRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (w *WebPush) serve(rw http.ResponseWriter, r *http.Request) {
	fail := func(code int, msg string) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(code)
		json.NewEncoder(rw).Encode(map[string]any{"code": code, "errno": 0, "error": http.StatusText(code), "message": msg})
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "POST only")
		return
	}
	w.mu.Lock()
	s := w.subs[r.URL.Path]
	w.mu.Unlock()
	if s == nil {
		fail(http.StatusNotFound, "no such subscription")
		return
	}
	sub, reason := w.checkVAPID(r.Header.Get("Authorization"), s.appKey)
	if reason != "" {
		fail(http.StatusUnauthorized, reason)
		return
	}
	m := WebPushMessage{Endpoint: s.Endpoint, Subject: sub, Urgency: r.Header.Get("Urgency"), Topic: r.Header.Get("Topic")}
	ttl, err := strconv.Atoi(r.Header.Get("TTL"))
	if err != nil || ttl < 0 {
		fail(http.StatusBadRequest, "TTL header missing or not a number")
		return
	}
	m.TTL = ttl
	switch m.Urgency {
	case "", "very-low", "low", "normal", "high":
	default:
		fail(http.StatusBadRequest, "bad Urgency")
		return
	}
	if m.Topic != "" && !topicRE.MatchString(m.Topic) {
		fail(http.StatusBadRequest, "Topic: at most 32 base64url characters")
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		fail(http.StatusBadRequest, "Content-Encoding "+ce+", want aes128gcm")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	if len(body) > 4096 {
		fail(http.StatusRequestEntityTooLarge, "body over 4096 bytes")
		return
	}
	if m.Plaintext, err = s.Decrypt(body); err != nil {
		fail(http.StatusBadRequest, "decrypt: "+err.Error())
		return
	}
	switch w.faultFor(r.URL.Path) {
	case Gone:
		fail(http.StatusGone, "subscription expired")
		return
	case TooMany:
		rw.Header().Set("Retry-After", w.retryAfterHeader())
		fail(http.StatusTooManyRequests, "slow down")
		return
	case Unavailable:
		fail(http.StatusServiceUnavailable, "unavailable")
		return
	case Hang:
		w.hang(r)
		return
	case TooLarge:
		fail(http.StatusRequestEntityTooLarge, "too large")
		return
	}
	w.mu.Lock()
	w.messages = append(w.messages, m)
	w.mu.Unlock()
	rw.Header().Set("Location", s.Endpoint+"/m/"+strconv.Itoa(len(w.messages)))
	rw.WriteHeader(http.StatusCreated)
}

// checkVAPID verifies "vapid t=<jwt>, k=<key>" (RFC 8292 section 3); it
// answers the token's sub, or a reason to refuse.
func (w *WebPush) checkVAPID(h, appKey string) (sub, reason string) {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return "", "Authorization is not vapid"
	}
	var t, k string
	for _, p := range strings.Split(rest, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch name {
		case "t":
			t = val
		case "k":
			k = val
		}
	}
	if t == "" || k == "" {
		return "", "vapid needs t and k"
	}
	if appKey != "" && k != appKey {
		return "", "k is not the key the subscription was made with"
	}
	raw, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return "", "k is not base64url"
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return "", "k is not a P-256 point"
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(t, &claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(w.URL), jwt.WithExpirationRequired())
	if err != nil {
		return "", "vapid token: " + err.Error()
	}
	if claims.ExpiresAt.After(time.Now().Add(24 * time.Hour)) {
		return "", "vapid token: exp more than 24 hours away"
	}
	if !strings.HasPrefix(claims.Subject, "mailto:") && !strings.HasPrefix(claims.Subject, "https:") {
		return "", "vapid token: sub must be mailto: or https:"
	}
	return claims.Subject, ""
}

// Decrypt reads an aes128gcm body (RFC 8188) whose key the sender derived
// per RFC 8291 for the user agent key ua and authSecret. Several records
// are read; the last must end with 0x02, the others with 0x01.
func Decrypt(body []byte, ua *ecdh.PrivateKey, authSecret []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("shorter than the header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if rs < 18 || len(body) < 21+idlen {
		return nil, errors.New("bad header")
	}
	asPublic := body[21 : 21+idlen]
	as, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("keyid is not the sender's P-256 key: %w", err)
	}
	secret, err := ua.ECDH(as)
	if err != nil {
		return nil, err
	}
	info := "WebPush: info\x00" + string(ua.PublicKey().Bytes()) + string(asPublic)
	ikm, err := hkdf.Key(sha256.New, secret, authSecret, info, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	var out []byte
	rest := body[21+idlen:]
	for seq := uint64(0); len(rest) > 0; seq++ {
		n := min(int(rs), len(rest))
		rec := rest[:n]
		rest = rest[n:]
		iv := append([]byte(nil), nonce...)
		for i := 0; i < 8; i++ {
			iv[11-i] ^= byte(seq >> (8 * i))
		}
		plain, err := gcm.Open(nil, iv, rec, nil)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", seq, err)
		}
		end := len(plain) - 1
		for end >= 0 && plain[end] == 0 {
			end--
		}
		if end < 0 {
			return nil, fmt.Errorf("record %d has no delimiter", seq)
		}
		last := len(rest) == 0
		if (last && plain[end] != 2) || (!last && plain[end] != 1) {
			return nil, fmt.Errorf("record %d: delimiter %d", seq, plain[end])
		}
		out = append(out, plain[:end]...)
	}
	return out, nil
}
