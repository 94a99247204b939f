package push

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VAPIDTokenLife is the exp of a VAPID JWT: RFC 8292 allows at most 24
// hours; some push services refuse more than 12.
const VAPIDTokenLife = 12 * time.Hour

// webPushRecordSize is the aes128gcm record size: the whole payload is
// one record, and push services take bodies of 4096 bytes.
const webPushRecordSize = 4096

// webPushHeaderLen is salt (16) + rs (4) + idlen (1) + the server's
// uncompressed P-256 public key (65).
const webPushHeaderLen = 16 + 4 + 1 + 65

// WebPushMaxPayload is the largest plaintext one push carries (a body of
// 4096 bytes: header, the plaintext, its delimiter, the GCM tag).
const WebPushMaxPayload = webPushRecordSize - webPushHeaderLen - 1 - 16

// WebPushProvider delivers per RFC 8030 to a browser's push service: the
// payload encrypted for the subscription (RFC 8291, aes128gcm), the
// request signed with the platform's VAPID key (RFC 8292).
type WebPushProvider struct {
	key     *ecdsa.PrivateKey
	public  string // the key's public half, base64url uncompressed point
	subject string
	client  *http.Client
	now     func() time.Time
}

var _ Provider = (*WebPushProvider)(nil)

// NewWebPush builds the provider; subject is the operator's contact
// (mailto: or https:) that push services see in every VAPID token.
func NewWebPush(key *ecdsa.PrivateKey, subject string, client *http.Client) (*WebPushProvider, error) {
	if !strings.HasPrefix(subject, "mailto:") && !strings.HasPrefix(subject, "https:") {
		return nil, fmt.Errorf("webpush subject %q: must be a mailto: or https: URI (RFC 8292)", subject)
	}
	pub, err := VAPIDPublicKey(key)
	if err != nil {
		return nil, err
	}
	return &WebPushProvider{key: key, public: pub, subject: subject, client: client, now: time.Now}, nil
}

// Platform is WebPush.
func (p *WebPushProvider) Platform() string { return WebPush }

// VAPIDPublicKey is the public key browsers subscribe with
// (applicationServerKey), base64url.
func (p *WebPushProvider) VAPIDPublicKey() string { return p.public }

// WebPushPayload is the plaintext a service worker receives (event.data.json()).
type WebPushPayload struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Conv  string `json:"conv"`
	From  string `json:"from"`
	Seq   uint64 `json:"seq"`
	Count int    `json:"count"`
	// Tag is the collapse id: a notification shown with this tag replaces
	// the conversation's previous one.
	Tag string `json:"tag,omitempty"`
}

// Send encrypts n for the subscription and posts it to its endpoint.
func (p *WebPushProvider) Send(ctx context.Context, t Target, n Notification) error {
	s := t.Subscription
	if s == nil {
		return fmt.Errorf("webpush: registration %s has no subscription: %w", t.ID, ErrGone)
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("webpush: registration %s: endpoint is not a URL: %w", t.ID, ErrGone)
	}
	uaPublic, err1 := decodeB64URL(s.Keys.P256dh)
	auth, err2 := decodeB64URL(s.Keys.Auth)
	if err1 != nil || err2 != nil || len(auth) != 16 {
		return fmt.Errorf("webpush: registration %s: keys unreadable: %w", t.ID, ErrGone)
	}
	plain, err := json.Marshal(WebPushPayload{Title: n.Title, Body: n.Body, Conv: n.Conv, From: n.From, Seq: n.Seq, Count: n.Count, Tag: n.CollapseID})
	if err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	if len(plain) > WebPushMaxPayload {
		return fmt.Errorf("webpush: payload of %d bytes is over %d", len(plain), WebPushMaxPayload)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	// Padded to a multiple of 64 bytes: the length tells less about the
	// names in it.
	body, err := encryptAES128GCM(uaPublic, auth, plain, eph, salt, padTo(len(plain), 64))
	if err != nil {
		return fmt.Errorf("webpush: registration %s: %v: %w", t.ID, err, ErrGone)
	}
	vapid, err := p.vapid(u)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	h := req.Header
	h.Set("Authorization", vapid)
	h.Set("Content-Encoding", "aes128gcm")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("TTL", strconv.FormatInt(int64(n.TTL/time.Second), 10))
	h.Set("Urgency", "high")
	if n.CollapseID != "" {
		h.Set("Topic", webPushTopic(n.CollapseID))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return transportError("webpush send", err)
	}
	answer := readAnswer(resp)
	return webPushResult(resp, answer)
}

// vapid is the Authorization header for the endpoint's origin (RFC 8292
// section 3: aud is the origin, exp within 24 hours, sub a contact).
func (p *WebPushProvider) vapid(u *url.URL) (string, error) {
	now := p.now()
	claims := jwt.MapClaims{
		"aud": u.Scheme + "://" + u.Host,
		"exp": now.Add(VAPIDTokenLife).Unix(),
		"sub": p.subject,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("webpush: sign vapid token: %w", err)
	}
	return "vapid t=" + tok + ", k=" + p.public, nil
}

func webPushResult(resp *http.Response, answer []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 { // 201 Created, some services 200 or 202
		return nil
	}
	text := strings.TrimSpace(string(answer))
	if len(text) > 200 {
		text = text[:200]
	}
	err := fmt.Errorf("webpush: %d %s", code, text)
	switch {
	case code == http.StatusNotFound || code == http.StatusGone:
		return fmt.Errorf("%w (%v)", ErrGone, err)
	case code == http.StatusTooManyRequests || code >= 500:
		return &RetryError{After: retryAfter(resp.Header, time.Now()), Err: err}
	}
	return err // 400, 401/403 (VAPID refused), 413 (too large): not this one again
}

// webPushTopic makes a Topic header (RFC 8030 5.4: at most 32 characters
// of the URL-safe base64 alphabet) from a collapse id: the id itself when
// it fits, else the start of its hash, the same for the same id.
func webPushTopic(id string) string {
	if len(id) <= 32 && strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == "" {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:32]
}

// padTo is the padding that brings n plus the delimiter to a multiple of
// block, within WebPushMaxPayload.
func padTo(n, block int) int {
	total := (n + 1 + block - 1) / block * block
	if total-1 > WebPushMaxPayload {
		total = WebPushMaxPayload + 1
	}
	return total - 1 - n
}

// encryptAES128GCM encrypts plaintext for a user agent per RFC 8291 (one
// aes128gcm record of RFC 8188, rs 4096): as is the server's ephemeral key,
// salt 16 random bytes, pad zero bytes after the 0x02 delimiter.
func encryptAES128GCM(uaPublic, authSecret, plaintext []byte, as *ecdh.PrivateKey, salt []byte, pad int) ([]byte, error) {
	ua, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("p256dh is not a P-256 point: %w", err)
	}
	if len(salt) != 16 {
		return nil, errors.New("salt must be 16 bytes")
	}
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, err
	}
	asPublic := as.PublicKey().Bytes()
	cek, nonce, err := webPushKeys(secret, authSecret, uaPublic, asPublic, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, webPushHeaderLen+len(plaintext)+1+pad+gcm.Overhead())
	out = append(out, salt...)
	out = binary.BigEndian.AppendUint32(out, webPushRecordSize)
	out = append(out, byte(len(asPublic)))
	out = append(out, asPublic...)
	record := make([]byte, 0, len(plaintext)+1+pad)
	record = append(record, plaintext...)
	record = append(record, 0x02) // the last (only) record
	record = append(record, make([]byte, pad)...)
	return gcm.Seal(out, nonce, record, nil), nil
}

// webPushKeys derives the content-encryption key and nonce (RFC 8291
// section 3.4, RFC 8188 section 2.2) from the ECDH secret.
func webPushKeys(ecdhSecret, authSecret, uaPublic, asPublic, salt []byte) (cek, nonce []byte, err error) {
	keyInfo := "WebPush: info\x00" + string(uaPublic) + string(asPublic)
	ikm, err := hkdfKey(ecdhSecret, authSecret, keyInfo, 32)
	if err != nil {
		return nil, nil, err
	}
	if cek, err = hkdfKey(ikm, salt, "Content-Encoding: aes128gcm\x00", 16); err != nil {
		return nil, nil, err
	}
	if nonce, err = hkdfKey(ikm, salt, "Content-Encoding: nonce\x00", 12); err != nil {
		return nil, nil, err
	}
	return cek, nonce, nil
}

// decodeB64URL reads base64url with or without padding (browsers give it
// without; some libraries store standard base64).
func decodeB64URL(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
