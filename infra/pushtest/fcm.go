package pushtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FCMProject is the project of the service account NewFCM makes.
const FCMProject = "pushtest-project"

// fcmScope is the scope the assertion must ask for.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// FCMMessage is a message FCM accepted, as sent (the v1 Message fields a
// sender may set; an unknown field is refused as FCM refuses it).
type FCMMessage struct {
	Token        string `json:"token"`
	Topic        string `json:"topic"`
	Condition    string `json:"condition"`
	Name         string `json:"name"`
	Notification *struct {
		Title string `json:"title"`
		Body  string `json:"body"`
		Image string `json:"image"`
	} `json:"notification"`
	Data    map[string]string `json:"data"` // values must be strings
	Android *struct {
		CollapseKey           string          `json:"collapse_key"`
		Priority              string          `json:"priority"`
		TTL                   string          `json:"ttl"`
		RestrictedPackageName string          `json:"restricted_package_name"`
		Data                  json.RawMessage `json:"data"`
		Notification          json.RawMessage `json:"notification"`
		DirectBootOk          bool            `json:"direct_boot_ok"`
	} `json:"android"`
	Webpush    json.RawMessage `json:"webpush"`
	APNs       json.RawMessage `json:"apns"`
	FCMOptions json.RawMessage `json:"fcm_options"`
}

// FCM is a local FCM HTTP v1 API with its OAuth2 token endpoint. The
// token endpoint verifies the RS256 JWT assertion with the service
// account's public key (iss, aud = token_uri, scope, iat, exp) and issues
// an access token; messages:send checks that bearer token, the project in
// the path, and the message JSON.
type FCM struct {
	base
	// CredentialsJSON is a service-account key whose token_uri is this
	// server's token endpoint; CredentialsFile holds it.
	CredentialsJSON []byte
	CredentialsFile string
	email           string
	key             *rsa.PrivateKey

	tokensIssued int
	tokenFault   Fault
	access       map[string]bool // access tokens issued and not expired by ExpireAccessTokens
	invalid      map[string]bool
	messages     []FCMMessage
}

// NewFCM starts a local FCM with a new service account.
func NewFCM(t testing.TB) *FCM {
	t.Helper()
	f := &FCM{access: map[string]bool{}, invalid: map[string]bool{}, email: "sender@" + FCMProject + ".iam.gserviceaccount.com"}
	var err error
	if f.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", f.send)
	f.start(t, mux, true)
	f.CredentialsJSON = ServiceAccountKey(t, f.key, FCMProject, f.email, f.URL+"/token")
	f.CredentialsFile = filepath.Join(t.TempDir(), "fcm-service-account.json")
	if err := os.WriteFile(f.CredentialsFile, f.CredentialsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// ServiceAccountKey makes the JSON of a service-account key as Google's
// console gives it, with key and tokenURI.
func ServiceAccountKey(t testing.TB, key *rsa.PrivateKey, project, email, tokenURI string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 20)
	rand.Read(id)
	b, err := json.Marshal(map[string]string{
		"type":                        "service_account",
		"project_id":                  project,
		"private_key_id":              hex.EncodeToString(id),
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "100000000000000000001",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages are the messages accepted so far, in order.
func (f *FCM) Messages() []FCMMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FCMMessage(nil), f.messages...)
}

// TokensIssued is how many access tokens the token endpoint issued.
func (f *FCM) TokensIssued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokensIssued
}

// ExpireAccessTokens makes every access token issued so far answer 401.
func (f *FCM) ExpireAccessTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access = map[string]bool{}
}

// Invalid makes sends to token answer 400 INVALID_ARGUMENT on the
// message.token field (a malformed registration token).
func (f *FCM) Invalid(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalid[token] = true
}

// SetTokenFault makes the token endpoint answer f: Hang holds the
// request, Unavailable and TooMany answer 503 and 429, OK issues tokens.
func (f *FCM) SetTokenFault(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenFault = fault
}

func (f *FCM) token(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fault := f.tokenFault
	if fault == Hang {
		f.hung++
	}
	f.mu.Unlock()
	switch fault {
	case Hang:
		f.hang(r)
		return
	case Unavailable:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case TooMany:
		w.Header().Set("Retry-After", f.retryAfterHeader())
		oauthError(w, "rate_limit_exceeded", "slow down")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", gt)
		return
	}
	var claims struct {
		jwt.RegisteredClaims
		Scope string `json:"scope"`
	}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(f.email), jwt.WithAudience(f.URL+"/token"),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	if err != nil {
		oauthError(w, "invalid_grant", "assertion: "+err.Error())
		return
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > time.Hour {
		oauthError(w, "invalid_grant", "assertion lives longer than an hour")
		return
	}
	if !strings.Contains(" "+claims.Scope+" ", " "+fcmScope+" ") {
		oauthError(w, "invalid_scope", claims.Scope)
		return
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := "ya29.pushtest-" + hex.EncodeToString(b)
	f.mu.Lock()
	f.access[tok] = true
	f.tokensIssued++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3599})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

var fcmTTL = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)

func (f *FCM) send(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	authorized := ok && f.access[bearer]
	f.mu.Unlock()
	if !authorized {
		fcmAnswer(w, http.StatusUnauthorized, "UNAUTHENTICATED", "", "Request had invalid authentication credentials.", "")
		return
	}
	if p := r.PathValue("project"); p != FCMProject {
		fcmAnswer(w, http.StatusForbidden, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "Permission denied on project "+p, "")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		fcmAnswer(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "content type "+ct, "")
		return
	}
	var body struct {
		ValidateOnly bool       `json:"validate_only"`
		Message      FCMMessage `json:"message"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		fcmAnswer(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error(), "")
		return
	}
	m := body.Message
	if msg := checkFCMMessage(m); msg != "" {
		fcmAnswer(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", msg, "")
		return
	}
	f.mu.Lock()
	invalid := f.invalid[m.Token]
	f.mu.Unlock()
	if invalid {
		fcmAnswer(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "message.token")
		return
	}
	switch f.faultFor(m.Token) {
	case Gone:
		fcmAnswer(w, http.StatusNotFound, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.", "")
		return
	case TooMany:
		w.Header().Set("Retry-After", f.retryAfterHeader())
		fcmAnswer(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded.", "")
		return
	case Unavailable:
		fcmAnswer(w, http.StatusServiceUnavailable, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.", "")
		return
	case Hang:
		f.hang(r)
		return
	case TooLarge:
		fcmAnswer(w, http.StatusBadRequest, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Message is too big", "")
		return
	}
	f.mu.Lock()
	f.messages = append(f.messages, m)
	n := len(f.messages)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"name":"projects/%s/messages/0:%d%%pushtest"}`, FCMProject, n)
}

// checkFCMMessage checks what FCM checks of the fields we know.
func checkFCMMessage(m FCMMessage) string {
	targets := 0
	for _, s := range []string{m.Token, m.Topic, m.Condition} {
		if s != "" {
			targets++
		}
	}
	if targets != 1 {
		return "exactly one of token, topic or condition"
	}
	for k := range m.Data {
		// FCM's reserved words: "from", "notification", "message_type",
		// and anything starting with "google" or "gcm".
		if k == "from" || k == "notification" || k == "message_type" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm") {
			return "Invalid data payload key: " + k
		}
	}
	if a := m.Android; a != nil {
		if a.Priority != "" && a.Priority != "NORMAL" && a.Priority != "HIGH" {
			return "android.priority " + a.Priority
		}
		if a.TTL != "" && !fcmTTL.MatchString(a.TTL) {
			return "android.ttl " + a.TTL + " is not a duration"
		}
	}
	return ""
}

// fcmAnswer writes a google.rpc.Status error as FCM does.
func fcmAnswer(w http.ResponseWriter, code int, status, errorCode, message, field string) {
	var details []any
	if errorCode != "" {
		details = append(details, map[string]string{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": errorCode})
	}
	if field != "" {
		details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": field, "description": message}}})
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": message, "status": status, "details": details}})
}
