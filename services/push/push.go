// Package push sends notifications to devices through their providers: FCM
// (HTTP v1), APNs (HTTP/2, token auth) and Web Push (RFC 8030, 8291, 8292).
// The notifier (services/notifier) decides who gets what and when; a
// Provider only delivers one Notification to one Target and classifies the
// provider's answer.
//
// Concurrency: a Provider is safe for concurrent use; Send blocks for at
// most the caller's ctx and the client's timeout (HTTPClient). Every
// provider of New shares one HTTPClient: https only, internal addresses
// refused when connecting unless their host is allowed. The library
// choices are in docs/adr/0005-push-provider-libraries.md.
package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Platforms, as registered by clients (PROTOCOL.md section 5).
const (
	FCM     = "fcm"
	APNs    = "apns"
	WebPush = "webpush"
)

// Target is one registered device of a user.
type Target struct {
	User     string
	ID       string // the registration's id
	Platform string // FCM, APNs or WebPush
	// Token is the FCM registration token or the APNs device token.
	Token string
	// Subscription is a Web Push subscription.
	Subscription *Subscription
}

// Subscription is a browser's PushSubscription as JSON (endpoint and keys).
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"` // the client's P-256 public key, base64url
		Auth   string `json:"auth"`   // the 16-byte auth secret, base64url
	} `json:"keys"`
}

// ParseSubscription reads a stored subscription.
func ParseSubscription(raw json.RawMessage) (*Subscription, error) {
	var s Subscription
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("push subscription: %w", err)
	}
	return &s, nil
}

// Notification is what one push says.
type Notification struct {
	Conv  string // the conversation
	From  string // who wrote (the last sender when several messages are coalesced)
	Count int    // how many messages this push stands for
	Seq   uint64 // the conversation's last seq it covers
	// Title and Body are the rendered text. Body carries the message text only
	// when the operator turned text on; by default it names who and where.
	Title string
	Body  string
	// CollapseID is the same for every push of one conversation, so a newer
	// push replaces an older one on the device.
	CollapseID string
	// TTL is how long the provider may keep it for an unreachable device.
	TTL time.Duration
	// Badge is the number on the app's icon (APNs); 0 leaves it as it is.
	Badge int
}

// Provider delivers notifications through one push service.
type Provider interface {
	// Platform is FCM, APNs or WebPush.
	Platform() string
	// Send delivers n to t. It returns nil when the provider accepted it,
	// ErrGone (wrapped) when the provider says the token or subscription is
	// unregistered or gone (the registration is then removed), a *RetryError
	// for a transient failure (5xx, 429, a timeout), and any other error for
	// a permanent refusal of this one notification.
	Send(ctx context.Context, t Target, n Notification) error
}

// ErrGone is a token or subscription the provider no longer knows.
var ErrGone = errors.New("push: token unregistered or gone")

// RetryError is a transient failure; After is the provider's Retry-After (0:
// back off as usual).
type RetryError struct {
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("push: transient: %v", e.Err) }
func (e *RetryError) Unwrap() error { return e.Err }
