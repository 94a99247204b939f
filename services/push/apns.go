package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultAPNsEndpoint is APNs' production server (the sandbox is
// https://api.sandbox.push.apple.com).
const DefaultAPNsEndpoint = "https://api.push.apple.com"

// APNsTokenLife is how long one provider token (JWT) is used. Apple
// refuses a new token more often than every 20 minutes
// (TooManyProviderTokenUpdates) and one older than an hour
// (ExpiredProviderToken).
const APNsTokenLife = 40 * time.Minute

// APNsProvider sends through APNs over HTTP/2 with token-based
// authentication: POST {endpoint}/3/device/<token> with an ES256 JWT
// (kid = key id, iss = team id, iat) signed with the .p8 key, reused for
// APNsTokenLife.
type APNsProvider struct {
	key      *ecdsa.PrivateKey
	keyID    string
	teamID   string
	topic    string
	endpoint string
	client   *http.Client
	now      func() time.Time

	mu    sync.Mutex
	jwt   string
	jwtAt time.Time
}

var _ Provider = (*APNsProvider)(nil)

// APNsConfig is what an APNs provider needs.
type APNsConfig struct {
	Key      []byte // the .p8 file: a PKCS#8 PEM P-256 key
	KeyID    string // the key's id (10 characters, from the developer account)
	TeamID   string // the team id
	Topic    string // the app's bundle id
	Endpoint string // "": DefaultAPNsEndpoint
}

// NewAPNs checks the key and builds the provider; client must speak
// HTTP/2 (HTTPClient's does).
func NewAPNs(c APNsConfig, client *http.Client) (*APNsProvider, error) {
	key, err := ParseAPNsKey(c.Key)
	if err != nil {
		return nil, err
	}
	if c.KeyID == "" || c.TeamID == "" || c.Topic == "" {
		return nil, errors.New("apns: key id, team id and topic are all needed")
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultAPNsEndpoint
	}
	return &APNsProvider{key: key, keyID: c.KeyID, teamID: c.TeamID, topic: c.Topic,
		endpoint: strings.TrimRight(c.Endpoint, "/"), client: client, now: time.Now}, nil
}

// ParseAPNsKey reads a .p8 key: PKCS#8 PEM of a P-256 ECDSA key.
func ParseAPNsKey(p8 []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(p8)
	if block == nil {
		return nil, errors.New("apns key: no PEM block (a .p8 file is PEM)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apns key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("apns key: not a P-256 ECDSA key")
	}
	return ek, nil
}

// Platform is APNs.
func (p *APNsProvider) Platform() string { return APNs }

// providerToken is the JWT in use, a new one when it is older than
// APNsTokenLife or when refused is the one in use (Apple called it
// expired).
func (p *APNsProvider) providerToken(refused string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.jwt != "" && now.Sub(p.jwtAt) < APNsTokenLife && (refused == "" || refused != p.jwt) {
		return p.jwt, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": p.teamID, "iat": now.Unix()})
	t.Header["kid"] = p.keyID
	s, err := t.SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("apns: sign provider token: %w", err)
	}
	p.jwt, p.jwtAt = s, now
	return s, nil
}

// apnsPayload is the body: the aps dictionary and our own keys.
type apnsPayload struct {
	APS struct {
		Alert struct {
			Title string `json:"title,omitempty"`
			Body  string `json:"body,omitempty"`
		} `json:"alert"`
		ThreadID string `json:"thread-id,omitempty"`
		Badge    *int   `json:"badge,omitempty"`
		Sound    string `json:"sound,omitempty"`
	} `json:"aps"`
	Conv   string `json:"conv"`
	Sender string `json:"from"`
	Seq    uint64 `json:"seq"`
	Count  int    `json:"count"`
}

// apnsMaxPayload is APNs' limit for an alert's body.
const apnsMaxPayload = 4096

// Send posts one notification.
func (p *APNsProvider) Send(ctx context.Context, t Target, n Notification) error {
	if !validDeviceToken(t.Token) {
		return fmt.Errorf("apns: registration %s: device token is not hex: %w", t.ID, ErrGone)
	}
	var pl apnsPayload
	pl.APS.Alert.Title, pl.APS.Alert.Body = n.Title, n.Body
	pl.APS.ThreadID = n.Conv
	pl.APS.Sound = "default"
	if n.Badge > 0 {
		b := n.Badge
		pl.APS.Badge = &b
	}
	pl.Conv, pl.Sender, pl.Seq, pl.Count = n.Conv, n.From, n.Seq, n.Count
	body, err := json.Marshal(pl)
	if err != nil {
		return fmt.Errorf("apns: %w", err)
	}
	if len(body) > apnsMaxPayload {
		return fmt.Errorf("apns: payload of %d bytes is over %d", len(body), apnsMaxPayload)
	}
	refused := ""
	for attempt := 0; ; attempt++ {
		bearer, err := p.providerToken(refused)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint+"/3/device/"+t.Token, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("apns: %w", err)
		}
		h := req.Header
		h.Set("authorization", "bearer "+bearer)
		h.Set("apns-topic", p.topic)
		h.Set("apns-push-type", "alert")
		h.Set("apns-priority", "10")
		if id := apnsCollapseID(n.CollapseID); id != "" {
			h.Set("apns-collapse-id", id)
		}
		exp := int64(0) // 0: try once, do not store
		if n.TTL > 0 {
			exp = p.now().Add(n.TTL).Unix()
		}
		h.Set("apns-expiration", strconv.FormatInt(exp, 10))
		h.Set("content-type", "application/json")
		resp, err := p.client.Do(req)
		if err != nil {
			return transportError("apns send", err)
		}
		answer := readAnswer(resp)
		var e struct {
			Reason    string `json:"reason"`
			Timestamp int64  `json:"timestamp"`
		}
		_ = json.Unmarshal(answer, &e)
		if resp.StatusCode == http.StatusForbidden && e.Reason == "ExpiredProviderToken" && attempt == 0 {
			refused = bearer
			continue
		}
		return apnsResult(resp, e.Reason, resp.Header.Get("apns-id"))
	}
}

// apnsResult classifies an APNs answer.
func apnsResult(resp *http.Response, reason, id string) error {
	code := resp.StatusCode
	if code == http.StatusOK {
		return nil
	}
	err := fmt.Errorf("apns: %d %s (apns-id %s)", code, reason, id)
	switch {
	case code == http.StatusGone, // Unregistered, ExpiredToken
		// Not DeviceTokenNotForTopic: a wrong --apns-topic would have every
		// registration removed.
		code == http.StatusBadRequest && (reason == "BadDeviceToken" || reason == "Unregistered"):
		return fmt.Errorf("%w (%v)", ErrGone, err)
	case code == http.StatusTooManyRequests || code >= 500:
		return &RetryError{After: retryAfter(resp.Header, time.Now()), Err: err}
	}
	return err
}

// apnsCollapseID keeps a collapse id within APNs' 64 bytes: a longer one
// is replaced by its hash, the same for the same id.
func apnsCollapseID(id string) string {
	if len(id) <= 64 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:]) // 64 hex characters
}

// validDeviceToken: APNs device tokens are hex (64 characters today; Apple
// says not to rely on the length).
func validDeviceToken(s string) bool {
	if len(s) < 8 || len(s) > 200 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
