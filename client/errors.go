package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"messenger/client/proto"
)

// Error codes of PROTOCOL.md section 9, as carried by an error frame's `code`.
// They are proto's, repeated here so that callers of the client compare
// Error.Code without a second import.
const (
	CodeBadRequest    = proto.CodeBadRequest
	CodeUnauthorized  = proto.CodeUnauthorized
	CodeForbidden     = proto.CodeForbidden
	CodeNotFound      = proto.CodeNotFound
	CodeTooLarge      = proto.CodeTooLarge
	CodeRateLimited   = proto.CodeRateLimited
	CodeConflict      = proto.CodeConflict
	CodeCursorExpired = proto.CodeCursorExpired
	CodeUnavailable   = proto.CodeUnavailable
)

var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("client: closed")
	// ErrNotConnected is returned by fire-and-forget calls (Receipt, Sync,
	// Typing) while the client is between connections.
	ErrNotConnected = errors.New("client: not connected")
)

// Error is an error answered by the server: an `error` frame, or an HTTP
// status refusing the WebSocket upgrade (Message then starts with "HTTP <status>").
// Use errors.As to get it.
type Error struct {
	Code         string
	Message      string
	RetryAfterMs int64
}

func (e *Error) Error() string {
	s := "messenger: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfterMs > 0 {
		s += fmt.Sprintf(" (retry after %d ms)", e.RetryAfterMs)
	}
	return s
}

// retryable reports whether a send answered with this code stays pending and
// is resent later instead of failing.
func retryable(code string) bool {
	return code == CodeUnavailable || code == CodeRateLimited
}

// httpError turns a refused upgrade into an *Error.
func httpError(resp *http.Response) *Error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	msg := "HTTP " + resp.Status
	if resp.Status == "" {
		msg = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	if json.Unmarshal(b, &body) == nil && body.Error.Message != "" {
		msg += ": " + body.Error.Message
	} else if s := strings.TrimSpace(string(b)); s != "" && len(s) <= 200 {
		msg += ": " + s
	}
	code := body.Error.Code
	if code == "" {
		code = codeForStatus(resp.StatusCode)
	}
	e := &Error{Code: code, Message: msg}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfterMs = int64(s) * 1000
	}
	return e
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusGone:
		return CodeCursorExpired
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusTooManyRequests:
		return CodeRateLimited
	}
	if status >= 500 {
		return CodeUnavailable
	}
	return CodeBadRequest
}
