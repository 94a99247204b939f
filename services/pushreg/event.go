package pushreg

import (
	"encoding/json"
	"fmt"
)

// Event types.
const (
	TypeRegister   = "register"
	TypeUnregister = "unregister"
	TypeMute       = "mute"
	TypeUnmute     = "unmute"
)

// EventVersion is the schema version of Event.
const EventVersion = 1

// Reasons of an unregister event.
const (
	ReasonUser    = "user"    // the owner unregistered it (DELETE /v1/push/tokens/{id})
	ReasonEvicted = "evicted" // replaced as the oldest by a registration beyond the cap
	ReasonGone    = "gone"    // the provider said the token or subscription is gone
)

// Event is one stored change of a registration or a mute (schema v1), in
// stream PUSHREG.
type Event struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	User string `json:"user"`
	// register, unregister
	ID           string          `json:"id,omitempty"`
	Platform     string          `json:"platform,omitempty"`     // register
	Token        string          `json:"token,omitempty"`        // register, fcm and apns
	Subscription json.RawMessage `json:"subscription,omitempty"` // register, webpush
	Reason       string          `json:"reason,omitempty"`       // unregister
	// mute, unmute
	Conv  string `json:"conv,omitempty"`
	Until int64  `json:"until,omitempty"` // mute: unix ms; absent or 0: for ever
	// TS is when the server accepted the change, unix ms.
	TS int64 `json:"ts"`
}

func parseEvent(data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("pushreg: event: %w", err)
	}
	if ev.V != EventVersion || ev.User == "" {
		return ev, fmt.Errorf("pushreg: event: version %d, user %q", ev.V, ev.User)
	}
	return ev, nil
}
