package edge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"messenger/client/proto"
	"messenger/services/push"
	"messenger/services/pushreg"
)

// Push registrations and mutes (PROTOCOL.md section 5, ARCHITECTURE 3.8 and
// 3.9): the rules and the storage (events, then KV push and KV mutes) are
// services/pushreg's; these handlers only parse, check membership and map
// errors.

func (e *Edge) postPushToken(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Platform     string          `json:"platform"`
		Token        string          `json:"token"`
		Subscription json.RawMessage `json:"subscription"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if cerr := e.writes.push.check(user, "push registrations"); cerr != nil {
		writeError(w, cerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	id, _, err := e.pushreg.Register(ctx, user, pushreg.Registration{Platform: req.Platform, Token: req.Token, Subscription: req.Subscription})
	if err != nil {
		writeError(w, pushError("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

func (e *Edge) deletePushToken(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	if cerr := e.writes.push.check(user, "push registrations"); cerr != nil {
		writeError(w, cerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	if err := e.pushreg.Remove(ctx, user, id, pushreg.ReasonUser); err != nil {
		writeError(w, pushError("push registration", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// PushTokenView is one registration in GET /v1/push/tokens: never the
// whole token or subscription (a token lets anyone push to the device).
type PushTokenView struct {
	ID       string `json:"id"`
	Platform string `json:"platform"`
	Created  int64  `json:"created"`
	// TokenEnd is the last 8 characters of an FCM or APNs token.
	TokenEnd string `json:"token_end,omitempty"`
	// EndpointHost is the host of a Web Push endpoint.
	EndpointHost string `json:"endpoint_host,omitempty"`
}

func (e *Edge) getPushTokens(w http.ResponseWriter, r *http.Request, user string) {
	if cerr := e.historyLimits.check(user, "reads"); cerr != nil {
		writeError(w, cerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	regs, err := e.pushreg.Registrations(ctx, user)
	if err != nil {
		writeError(w, errUnavailable("push registrations", err))
		return
	}
	out := make([]PushTokenView, 0, len(regs))
	for _, reg := range regs {
		v := PushTokenView{ID: reg.ID, Platform: reg.Platform, Created: reg.Created}
		if reg.Platform == push.WebPush {
			if s, err := push.ParseSubscription(reg.Subscription); err == nil {
				if u, err := url.Parse(s.Endpoint); err == nil {
					v.EndpointHost = u.Host
				}
			}
		} else {
			v.TokenEnd = reg.Token[max(0, len(reg.Token)-8):]
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

// putMute: PUT /v1/conversations/{conv}/mute {"until": <unix ms>|0}: no
// push for conv until then (0: until unmuted). Members only.
func (e *Edge) putMute(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Until *int64 `json:"until"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if req.Until == nil {
		writeError(w, errf(proto.CodeBadRequest, "until is required: unix milliseconds, or 0 for ever"))
		return
	}
	e.setMute(w, r, user, func(ctx context.Context, conv string) error {
		return e.pushreg.Mute(ctx, user, conv, *req.Until)
	})
}

// deleteMute: DELETE /v1/conversations/{conv}/mute. Members only.
func (e *Edge) deleteMute(w http.ResponseWriter, r *http.Request, user string) {
	e.setMute(w, r, user, func(ctx context.Context, conv string) error {
		return e.pushreg.Unmute(ctx, user, conv)
	})
}

func (e *Edge) setMute(w http.ResponseWriter, r *http.Request, user string, change func(context.Context, string) error) {
	conv := r.PathValue("conv")
	if !validID(conv) {
		writeError(w, errForbidden) // the same answer whether it exists or not
		return
	}
	if cerr := e.writes.push.check(user, "mutes"); cerr != nil {
		writeError(w, cerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.PublishTimeout)
	defer cancel()
	m, _, err := e.convs.Fresh(ctx, conv)
	if err != nil {
		writeError(w, errUnavailable("mute", err))
		return
	}
	if m == nil || !m.Has(user) {
		writeError(w, errForbidden)
		return
	}
	if err := change(ctx, conv); err != nil {
		writeError(w, pushError("mute", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// getWebPushKey: the VAPID public key the browsers subscribe with
// (applicationServerKey), not_found when Web Push is not configured.
func (e *Edge) getWebPushKey(w http.ResponseWriter, _ *http.Request, _ string) {
	if e.cfg.WebPushKey == "" {
		writeError(w, errf(proto.CodeNotFound, "web push is not configured"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"key": e.cfg.WebPushKey})
}

// pushError maps a services/pushreg error to the client's.
func pushError(what string, err error) *Error {
	switch {
	case errors.Is(err, pushreg.ErrInvalid):
		return errf(proto.CodeBadRequest, "%s", strings.TrimPrefix(err.Error(), pushreg.ErrInvalid.Error()+": "))
	case errors.Is(err, pushreg.ErrNotFound):
		return errf(proto.CodeNotFound, "no such registration")
	}
	return errUnavailable(what, err)
}

// notFound answers unknown API paths in the API's error format.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, errf(proto.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
}
