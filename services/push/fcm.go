package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// FCMScope is the OAuth2 scope of the FCM HTTP v1 API.
const FCMScope = "https://www.googleapis.com/auth/firebase.messaging"

// DefaultFCMEndpoint is the FCM HTTP v1 API.
const DefaultFCMEndpoint = "https://fcm.googleapis.com"

// FCMProvider sends through the FCM HTTP v1 API: POST
// {endpoint}/v1/projects/{project}/messages:send with a bearer access
// token that Google's token endpoint (the key's token_uri) issues for an
// RS256 JWT assertion signed with the service account's key. Tokens are
// reused until shortly before they expire; a 401 or 403 fetches a new one
// and tries once more.
type FCMProvider struct {
	project  string
	sendURL  string
	client   *http.Client
	newToken func() oauth2.TokenSource

	mu     sync.Mutex
	tokens oauth2.TokenSource // caching; replaced to force a new token
}

var _ Provider = (*FCMProvider)(nil)

// NewFCM reads a service-account key (the JSON file Firebase's console
// gives: type service_account, project_id, private_key, client_email,
// token_uri). endpoint "" is DefaultFCMEndpoint. client makes every
// request, the token requests included.
func NewFCM(credentialsJSON []byte, endpoint string, client *http.Client) (*FCMProvider, error) {
	var key struct {
		Type      string `json:"type"`
		ProjectID string `json:"project_id"`
	}
	if err := json.Unmarshal(credentialsJSON, &key); err != nil {
		return nil, fmt.Errorf("fcm credentials: %w", err)
	}
	if key.Type != "service_account" || key.ProjectID == "" {
		return nil, errors.New("fcm credentials: not a service-account key with a project_id")
	}
	jc, err := google.JWTConfigFromJSON(credentialsJSON, FCMScope)
	if err != nil {
		return nil, fmt.Errorf("fcm credentials: %w", err)
	}
	if endpoint == "" {
		endpoint = DefaultFCMEndpoint
	}
	// The token source reads its HTTP client from this context for every
	// token request (bounded by the client's timeout, not by a Send's ctx).
	tctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	p := &FCMProvider{
		project:  key.ProjectID,
		sendURL:  strings.TrimRight(endpoint, "/") + "/v1/projects/" + url.PathEscape(key.ProjectID) + "/messages:send",
		client:   client,
		newToken: func() oauth2.TokenSource { return jc.TokenSource(tctx) },
	}
	p.tokens = p.newToken()
	return p, nil
}

// Platform is FCM.
func (p *FCMProvider) Platform() string { return FCM }

// Project is the Firebase project the key belongs to.
func (p *FCMProvider) Project() string { return p.project }

// FCMMessage is the body of messages:send (the fields we set).
type FCMMessage struct {
	Message struct {
		Token        string            `json:"token"`
		Notification *FCMNotification  `json:"notification,omitempty"`
		Data         map[string]string `json:"data,omitempty"`
		Android      *FCMAndroid       `json:"android,omitempty"`
	} `json:"message"`
}

// FCMNotification is the message's notification block.
type FCMNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// FCMAndroid is the message's android block.
type FCMAndroid struct {
	CollapseKey string `json:"collapse_key,omitempty"`
	TTL         string `json:"ttl,omitempty"` // seconds with an "s": "3600s"
	Priority    string `json:"priority,omitempty"`
}

func fcmMessage(t Target, n Notification) FCMMessage {
	var m FCMMessage
	m.Message.Token = t.Token
	m.Message.Notification = &FCMNotification{Title: n.Title, Body: n.Body}
	// FCM data values are strings, and "from" is one of its reserved keys
	// (refused with INVALID_ARGUMENT): the writer goes as "sender".
	m.Message.Data = map[string]string{
		"conv":   n.Conv,
		"sender": n.From,
		"seq":    strconv.FormatUint(n.Seq, 10),
		"count":  strconv.Itoa(n.Count),
	}
	a := &FCMAndroid{CollapseKey: n.CollapseID, Priority: "HIGH"}
	if n.TTL > 0 {
		a.TTL = strconv.FormatInt(int64(n.TTL/time.Second), 10) + "s"
	}
	m.Message.Android = a
	return m
}

// Send posts one message.
func (p *FCMProvider) Send(ctx context.Context, t Target, n Notification) error {
	if t.Token == "" {
		return fmt.Errorf("fcm: registration %s has no token: %w", t.ID, ErrGone)
	}
	body, err := json.Marshal(fcmMessage(t, n))
	if err != nil {
		return fmt.Errorf("fcm: %w", err)
	}
	for attempt := 0; ; attempt++ {
		ts := p.tokenSource()
		tok, err := fetchToken(ctx, ts)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.sendURL, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("fcm: %w", err)
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := p.client.Do(req)
		if err != nil {
			return transportError("fcm send", err)
		}
		answer := readAnswer(resp)
		if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && attempt == 0 {
			p.dropToken(ts) // expired or revoked early: a fresh token, once
			continue
		}
		return fcmResult(resp, answer)
	}
}

// fetchToken waits for a token no longer than ctx: x/oauth2 fetches with
// the client's timeout and no context of the caller's, so a slow token
// endpoint is left to finish (or time out) on its own.
func fetchToken(ctx context.Context, ts oauth2.TokenSource) (*oauth2.Token, error) {
	type answer struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		tok, err := ts.Token()
		ch <- answer{tok, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil {
			return nil, tokenError(a.err)
		}
		return a.tok, nil
	case <-ctx.Done():
		return nil, &RetryError{Err: fmt.Errorf("fcm access token: %w", ctx.Err())}
	}
}

func (p *FCMProvider) tokenSource() oauth2.TokenSource {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens
}

// dropToken replaces the token source that gave a refused token (unless
// another Send did so already), so the next Token call fetches a new one.
func (p *FCMProvider) dropToken(used oauth2.TokenSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens == used {
		p.tokens = p.newToken()
	}
}

// fcmError is the body of an FCM error answer (google.rpc.Status).
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field       string `json:"field"`
				Description string `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// fcmResult classifies an answer of messages:send.
func fcmResult(resp *http.Response, answer []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	var e fcmError
	_ = json.Unmarshal(answer, &e)
	errorCode, tokenField := e.Error.Status, false
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			errorCode = d.ErrorCode
		}
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				tokenField = true
			}
		}
	}
	err := fmt.Errorf("fcm: %d %s: %s", code, errorCode, e.Error.Message)
	switch {
	case code == http.StatusNotFound && errorCode == "UNREGISTERED",
		code == http.StatusBadRequest && errorCode == "INVALID_ARGUMENT" && tokenField:
		return fmt.Errorf("%w (%v)", ErrGone, err)
	case code == http.StatusTooManyRequests || code >= 500:
		return &RetryError{After: retryAfter(resp.Header, time.Now()), Err: err}
	}
	return err
}

// tokenError classifies a failed access-token fetch: the token endpoint
// refusing the key (4xx) will refuse it again; its 429 and 5xx and the
// network are transient. x/oauth2/jwt formats transport errors with %v,
// so a refused address is recognised by its text.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		code := re.Response.StatusCode
		if code == http.StatusTooManyRequests || code >= 500 {
			return &RetryError{After: retryAfter(re.Response.Header, time.Now()), Err: fmt.Errorf("fcm access token: %w", err)}
		}
		return fmt.Errorf("fcm access token: %w", err)
	}
	for _, perm := range []error{ErrForbiddenAddress, ErrNotHTTPS} {
		if strings.Contains(err.Error(), perm.Error()) {
			return fmt.Errorf("fcm access token: %w (%v)", perm, err)
		}
	}
	return transportError("fcm access token", err)
}
