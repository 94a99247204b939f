package edge

import (
	"mime"
	"net/http"
	"time"

	"messenger/client/proto"
	"messenger/web"
)

// devTokenTTL is the lifetime of a development sign-in token.
const devTokenTTL = 24 * time.Hour

// getDev tells the web client whether development sign-in is on.
func (e *Edge) getDev(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"dev": e.devSigner != nil})
}

// postDevToken is the development sign-in: a token for any user id, minted
// with the configured key. Off unless the platform runs with --dev.
func (e *Edge) postDevToken(w http.ResponseWriter, r *http.Request) {
	if e.devSigner == nil {
		writeError(w, errf(proto.CodeNotFound, "development sign-in is off (start with --dev)"))
		return
	}
	// A page on another origin must not sign its visitor in (login CSRF)
	// nor read a token: a browser sends a cross-origin "simple" POST
	// (text/plain, no preflight) without asking, so the Origin is checked,
	// and only application/json is taken, which a cross-origin page cannot
	// send without a CORS preflight this edge never answers.
	if !e.originAllowed(r) {
		writeError(w, errf(proto.CodeForbidden, "origin not allowed"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, errf(proto.CodeBadRequest, "Content-Type must be application/json"))
		return
	}
	var req struct {
		User string `json:"user"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if !validID(req.User) {
		writeError(w, errf(proto.CodeBadRequest, "user must be 1-64 characters of [A-Za-z0-9_-]"))
		return
	}
	ttl := min(devTokenTTL, e.devSigner.MaxTTL())
	tok, err := e.devSigner.Token(req.User, ttl)
	if err != nil {
		writeError(w, errf(proto.CodeBadRequest, "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "user": req.User, "expires_in": int(ttl.Seconds())})
}

// webRoutes serves the web client and the development sign-in.
func (e *Edge) webRoutes(mux Mux) {
	files := web.Handler()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			notFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /v1/dev", e.getDev)
	mux.HandleFunc("POST /v1/dev/token", e.postDevToken)
}
