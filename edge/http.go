package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"messenger/client/proto"
	"messenger/docs"
	"messenger/edge/auth"
	"messenger/services/event"
	"messenger/streams"
)

// maxBody bounds an HTTP request body.
const maxBody = 64 << 10

// Mux is what Routes registers on: an *http.ServeMux, or a test's
// recorder that checks every route against docs/openapi.json.
type Mux interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Routes registers the edge's endpoints on mux. Every route is described
// in docs/openapi.json (TestOpenAPIDescribesEveryRoute fails otherwise).
func (e *Edge) Routes(mux Mux) {
	mux.HandleFunc("GET /v1/ws", e.ServeWS)
	mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	e.webRoutes(mux)
	mux.HandleFunc("POST /v1/messages", e.authed(e.postMessage))
	mux.HandleFunc("POST /v1/receipts", e.authed(e.postReceipt))
	mux.HandleFunc("GET /v1/conversations/{conv}", e.authed(e.getConversation))
	mux.HandleFunc("GET /v1/conversations/{conv}/messages", e.authed(e.getMessages))
	mux.HandleFunc("GET /v1/conversations", e.authed(e.getConversations))
	mux.HandleFunc("GET /v1/presence", e.authed(e.getPresence))
	mux.HandleFunc("GET /v1/poll", e.authed(e.getPoll))
	mux.HandleFunc("POST /v1/push/tokens", e.authed(e.postPushToken))
	mux.HandleFunc("DELETE /v1/push/tokens/{id}", e.authed(e.deletePushToken))
	mux.HandleFunc("GET /v1/push/tokens", e.authed(e.getPushTokens))
	mux.HandleFunc("GET /v1/push/webpush-key", e.authed(e.getWebPushKey))
	mux.HandleFunc("PUT /v1/conversations/{conv}/mute", e.authed(e.putMute))
	mux.HandleFunc("DELETE /v1/conversations/{conv}/mute", e.authed(e.deleteMute))
	mux.HandleFunc("/v1/", notFound)
	mux.HandleFunc("POST /v1/conversations", e.authed(e.postConversation))
	mux.HandleFunc("POST /v1/conversations/{conv}/members", e.authed(e.postMember))
	mux.HandleFunc("DELETE /v1/conversations/{conv}/members/{user}", e.authed(e.deleteMember))
	mux.HandleFunc("PATCH /v1/conversations/{conv}", e.authed(e.patchConversation))
	mux.HandleFunc("POST /v1/typing", e.authed(e.postTyping))
}

type authedHandler func(w http.ResponseWriter, r *http.Request, user string)

func (e *Edge) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The query-string token is for GET /v1/ws only (PROTOCOL.md
		// section 1): a URL ends up in logs, history and Referer headers.
		tok := auth.FromHeader(r)
		if tok == "" && auth.InQuery(r) {
			writeError(w, errf(proto.CodeUnauthorized, "the access_token query parameter is accepted on GET /v1/ws only: send Authorization: Bearer"))
			return
		}
		user, _, err := e.verifier.Verify(tok)
		if err != nil {
			writeError(w, errf(proto.CodeUnauthorized, "%v", err))
			return
		}
		h(w, r, user)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.Code == proto.CodeRateLimited {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(max(time.Second, e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, e.Status(), map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

// readBody decodes a JSON object body into v, refusing what decoding would
// repair silently.
func readBody(w http.ResponseWriter, r *http.Request, v any) *Error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errf(proto.CodeTooLarge, "body over %d bytes", maxBody)
		}
		return errf(proto.CodeBadRequest, "cannot read body: %v", err)
	}
	if cerr := checkJSONText(raw); cerr != nil {
		return cerr
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errf(proto.CodeBadRequest, "body is not a valid JSON object: %v", err)
	}
	return nil
}

func (e *Edge) postMessage(w http.ResponseWriter, r *http.Request, user string) {
	var req SendRequest
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	ack, cerr := e.Send(r.Context(), user, &req)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	ack.Type = ""
	writeJSON(w, http.StatusOK, ack)
}

func (e *Edge) postReceipt(w http.ResponseWriter, r *http.Request, user string) {
	var req ReceiptRequest
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if cerr := e.Receipt(r.Context(), user, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// MemberView is a member in GET /v1/conversations/{conv}.
type MemberView struct {
	User         string `json:"user"`
	Role         string `json:"role"`
	DeliveredSeq uint64 `json:"delivered_seq"`
	ReadSeq      uint64 `json:"read_seq"`
}

// ConversationView is GET /v1/conversations/{conv}.
type ConversationView struct {
	Conv      string       `json:"conv"`
	Kind      string       `json:"kind"`
	Title     string       `json:"title"`
	JoinedSeq uint64       `json:"joined_seq"`
	Members   []MemberView `json:"members"`
}

func (e *Edge) getConversation(w http.ResponseWriter, r *http.Request, user string) {
	conv := r.PathValue("conv")
	if !validID(conv) {
		writeError(w, errForbidden) // the same answer whether it exists or not
		return
	}
	v, cerr := e.Conversation(r.Context(), user, conv)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// Conversation is a conversation's members and their watermarks, for a member.
func (e *Edge) Conversation(ctx context.Context, user, conv string) (*ConversationView, *Error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	m, _, err := e.convs.Fresh(ctx, conv)
	if err != nil {
		return nil, errUnavailable("conversation", err)
	}
	if m == nil || !m.Has(user) {
		return nil, errForbidden
	}
	v := &ConversationView{Conv: conv, Kind: m.Kind, Title: m.Title, JoinedSeq: m.JoinedSeq(user), Members: []MemberView{}}
	// The fan-out stores watermarks every --fanout-flush; asked, at once.
	e.flushFanout(user)
	for _, u := range m.Members {
		mv := MemberView{User: u, Role: "member"}
		if m.IsAdmin(u) {
			mv.Role = "admin"
		}
		entry, err := e.h.Watermarks.Get(ctx, streams.WatermarkKey(conv, u))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, errUnavailable("conversation", err)
		default:
			var wm event.Watermark
			if json.Unmarshal(entry.Value(), &wm) == nil {
				mv.DeliveredSeq, mv.ReadSeq = wm.Delivered, wm.Read
			}
		}
		v.Members = append(v.Members, mv)
	}
	return v, nil
}

// serveOpenAPI answers the API description; like the web client it needs
// no token (it is public, and tools fetch it without one).
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(docs.OpenAPI)
}
