package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"messenger/client/proto"
)

// Error is an error for a client: a code of PROTOCOL.md and a message.
type Error struct {
	Code       string
	Message    string
	RetryAfter time.Duration // rate_limited only
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status is the HTTP status of the code.
func (e *Error) Status() int {
	switch e.Code {
	case proto.CodeBadRequest:
		return http.StatusBadRequest
	case proto.CodeUnauthorized:
		return http.StatusUnauthorized
	case proto.CodeForbidden:
		return http.StatusForbidden
	case proto.CodeNotFound:
		return http.StatusNotFound
	case proto.CodeConflict:
		return http.StatusConflict
	case proto.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case proto.CodeRateLimited:
		return http.StatusTooManyRequests
	case proto.CodeCursorExpired:
		return http.StatusGone
	default:
		return http.StatusServiceUnavailable
	}
}

func errf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

var errForbidden = &Error{Code: proto.CodeForbidden, Message: "not a member of this conversation"}

func errUnavailable(what string, err error) *Error {
	return &Error{Code: proto.CodeUnavailable, Message: what + ": storage unavailable, retry"}
}

// frame is the error frame of the WebSocket protocol. It echoes id only
// when it is a valid id (a client's arbitrary string is not echoed back),
// and quotes as JSON does: strconv's quoting writes \x01 for a control
// character, which is not JSON (found by FuzzDecodeFrame).
func (e *Error) frame(id string) []byte {
	b := []byte(`{"type":"error"`)
	if id != "" && validID(id) {
		b = append(b, `,"id":`...)
		b = strconv.AppendQuote(b, id) // [A-Za-z0-9_-] only: the same in JSON
	}
	b = append(b, `,"code":`...)
	b = appendJSONString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	if e.Code == proto.CodeRateLimited {
		b = append(b, `,"retry_after_ms":`...)
		b = strconv.AppendInt(b, max(e.RetryAfter.Milliseconds(), 1), 10)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
