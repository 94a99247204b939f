package pushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The identity of the app NewAPNs serves.
const (
	APNsKeyID  = "PUSHTEST01"
	APNsTeamID = "TEAMTEST01"
	APNsTopic  = "com.example.messenger"
)

// APNsNotification is a notification APNs accepted.
type APNsNotification struct {
	Token      string
	Topic      string
	PushType   string
	Priority   string
	CollapseID string
	Expiration int64
	// ProviderToken is the JWT it came with.
	ProviderToken string
	// Payload is the body: aps and the app's own keys.
	Payload struct {
		APS struct {
			Alert struct {
				Title string `json:"title"`
				Body  string `json:"body"`
			} `json:"alert"`
			ThreadID string `json:"thread-id"`
			Badge    *int   `json:"badge"`
			Sound    string `json:"sound"`
		} `json:"aps"`
		Conv  string `json:"conv"`
		From  string `json:"from"`
		Seq   uint64 `json:"seq"`
		Count int    `json:"count"`
	}
}

// APNs is a local APNs provider API: HTTP/2 only (an HTTP/1.1 request is
// refused), token authentication (an ES256 JWT whose kid, iss and iat it
// checks, and its signature with the .p8 key's public half), the apns-*
// headers, the device token in the path, the payload.
type APNs struct {
	base
	// KeyP8 is the token-signing key in the .p8 form; KeyFile holds it.
	KeyP8   []byte
	KeyFile string
	pub     *ecdsa.PublicKey

	expired       map[string]bool // provider tokens answered ExpiredProviderToken
	tokens        map[string]bool // provider tokens seen
	http1Refused  int
	notifications []APNsNotification
}

// NewAPNs starts a local APNs with a new signing key.
func NewAPNs(t testing.TB) *APNs {
	t.Helper()
	a := &APNs{expired: map[string]bool{}, tokens: map[string]bool{}}
	var key *ecdsa.PrivateKey
	a.KeyP8, key = P8Key(t)
	a.pub = &key.PublicKey
	a.KeyFile = filepath.Join(t.TempDir(), "AuthKey_"+APNsKeyID+".p8")
	if err := os.WriteFile(a.KeyFile, a.KeyP8, 0o600); err != nil {
		t.Fatal(err)
	}
	a.start(t, http.HandlerFunc(a.serve), true)
	return a
}

// P8Key makes an APNs token-signing key: a P-256 key as PKCS#8 PEM, the
// form of the .p8 file Apple's developer site gives.
func P8Key(t testing.TB) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), key
}

// Notifications are the notifications accepted so far, in order.
func (a *APNs) Notifications() []APNsNotification {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]APNsNotification(nil), a.notifications...)
}

// ProviderTokens is how many different provider tokens (JWTs) came.
func (a *APNs) ProviderTokens() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tokens)
}

// HTTP1Refused is how many HTTP/1.x requests were refused.
func (a *APNs) HTTP1Refused() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.http1Refused
}

// ExpireProviderTokens makes every provider token seen so far answer 403
// ExpiredProviderToken.
func (a *APNs) ExpireProviderTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t := range a.tokens {
		a.expired[t] = true
	}
}

func apnsAnswer(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	body := map[string]any{"reason": reason}
	if code == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	json.NewEncoder(w).Encode(body)
}

func (a *APNs) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		a.mu.Lock()
		a.http1Refused++
		a.mu.Unlock()
		w.Header().Set("Connection", "close")
		http.Error(w, "APNs speaks HTTP/2 only", http.StatusHTTPVersionNotSupported)
		return
	}
	w.Header().Set("apns-id", newAPNsID())
	if r.Method != http.MethodPost {
		apnsAnswer(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		apnsAnswer(w, http.StatusNotFound, "BadPath")
		return
	}
	if _, err := hex.DecodeString(token); err != nil || len(token) != 64 {
		apnsAnswer(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	if !ok {
		apnsAnswer(w, http.StatusForbidden, "MissingProviderToken")
		return
	}
	if reason := a.checkProviderToken(bearer); reason != "" {
		apnsAnswer(w, http.StatusForbidden, reason)
		return
	}
	n := APNsNotification{Token: token, ProviderToken: bearer, Topic: r.Header.Get("apns-topic"),
		PushType: r.Header.Get("apns-push-type"), Priority: r.Header.Get("apns-priority"), CollapseID: r.Header.Get("apns-collapse-id")}
	switch {
	case n.Topic == "":
		apnsAnswer(w, http.StatusBadRequest, "MissingTopic")
		return
	case n.Topic != APNsTopic:
		apnsAnswer(w, http.StatusBadRequest, "DeviceTokenNotForTopic")
		return
	case n.PushType != "alert" && n.PushType != "background":
		apnsAnswer(w, http.StatusBadRequest, "InvalidPushType")
		return
	case n.Priority != "" && n.Priority != "5" && n.Priority != "10" && n.Priority != "1":
		apnsAnswer(w, http.StatusBadRequest, "BadPriority")
		return
	case len(n.CollapseID) > 64:
		apnsAnswer(w, http.StatusBadRequest, "BadCollapseId")
		return
	}
	if e := r.Header.Get("apns-expiration"); e != "" {
		v, err := strconv.ParseInt(e, 10, 64)
		if err != nil || v < 0 {
			apnsAnswer(w, http.StatusBadRequest, "BadExpirationDate")
			return
		}
		n.Expiration = v
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil {
		apnsAnswer(w, http.StatusBadRequest, "BadMessageId")
		return
	}
	if len(body) > 4096 {
		apnsAnswer(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	}
	var aps struct {
		APS map[string]json.RawMessage `json:"aps"`
	}
	if len(body) == 0 {
		apnsAnswer(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	if err := json.Unmarshal(body, &aps); err != nil || aps.APS == nil || json.Unmarshal(body, &n.Payload) != nil {
		apnsAnswer(w, http.StatusBadRequest, "BadPayload")
		return
	}
	if n.PushType == "alert" && aps.APS["alert"] == nil {
		apnsAnswer(w, http.StatusBadRequest, "BadPayload")
		return
	}
	switch a.faultFor(token) {
	case Gone:
		apnsAnswer(w, http.StatusGone, "Unregistered")
		return
	case TooMany:
		w.Header().Set("Retry-After", a.retryAfterHeader())
		apnsAnswer(w, http.StatusTooManyRequests, "TooManyRequests")
		return
	case Unavailable:
		apnsAnswer(w, http.StatusServiceUnavailable, "ServiceUnavailable")
		return
	case Hang:
		a.hang(r)
		return
	case TooLarge:
		apnsAnswer(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	}
	a.mu.Lock()
	a.notifications = append(a.notifications, n)
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// checkProviderToken checks the JWT as APNs does; "" when good, else the
// reason.
func (a *APNs) checkProviderToken(s string) string {
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(s, &claims, func(*jwt.Token) (any, error) { return a.pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(APNsTeamID), jwt.WithIssuedAt())
	if err != nil || tok.Header["kid"] != APNsKeyID || claims.IssuedAt == nil {
		return "InvalidProviderToken"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[s] = true
	if a.expired[s] || time.Since(claims.IssuedAt.Time) > time.Hour {
		return "ExpiredProviderToken"
	}
	return ""
}

func newAPNsID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// DeviceToken makes a random APNs device token (64 hex characters).
func DeviceToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
