package edge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client/proto"
)

// Push registration (PROTOCOL.md section 5): devices register where to be
// pushed. The registrations are kept in the push bucket, one key per user
// and registration; sending through FCM, APNs and Web Push is a later
// service that reads them.

// PushRegistration is one registered device.
type PushRegistration struct {
	ID           string          `json:"id"`
	Platform     string          `json:"platform"`
	Token        string          `json:"token,omitempty"`
	Subscription json.RawMessage `json:"subscription,omitempty"`
	Created      int64           `json:"created"`
}

const maxPushToken = 4096

func (e *Edge) postPushToken(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Platform     string `json:"platform"`
		Token        string `json:"token"`
		Subscription *struct {
			Endpoint string `json:"endpoint"`
			Keys     struct {
				P256dh string `json:"p256dh"`
				Auth   string `json:"auth"`
			} `json:"keys"`
		} `json:"subscription"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	reg := PushRegistration{ID: serverID(), Platform: req.Platform, Created: time.Now().UnixMilli()}
	switch req.Platform {
	case "fcm", "apns":
		if req.Token == "" || len(req.Token) > maxPushToken {
			writeError(w, errf(proto.CodeBadRequest, "%s needs a token of 1-%d bytes", req.Platform, maxPushToken))
			return
		}
		reg.Token = req.Token
	case "webpush":
		s := req.Subscription
		if s == nil || !strings.HasPrefix(s.Endpoint, "https://") || s.Keys.P256dh == "" || s.Keys.Auth == "" || len(s.Endpoint) > maxPushToken {
			writeError(w, errf(proto.CodeBadRequest, "webpush needs a subscription {endpoint (https), keys {p256dh, auth}}"))
			return
		}
		reg.Subscription, _ = json.Marshal(s)
	default:
		writeError(w, errf(proto.CodeBadRequest, "platform must be fcm, apns or webpush"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	val, _ := json.Marshal(reg)
	if _, err := e.h.Push.Put(ctx, user+"."+reg.ID, val); err != nil {
		writeError(w, errUnavailable("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": reg.ID})
}

func (e *Edge) deletePushToken(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if !validID(id) {
		writeError(w, errf(proto.CodeNotFound, "no such registration"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	key := user + "." + id
	if _, err := e.h.Push.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			writeError(w, errf(proto.CodeNotFound, "no such registration"))
			return
		}
		writeError(w, errUnavailable("push registration", err))
		return
	}
	if err := e.h.Push.Purge(ctx, key); err != nil {
		writeError(w, errUnavailable("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// notFound answers unknown API paths in the API's error format.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, errf(proto.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
}
