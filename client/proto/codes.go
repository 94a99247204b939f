package proto

// Error codes of PROTOCOL.md section 9, as carried by an error frame's `code`
// and by the `error.code` of an HTTP error body.
const (
	CodeBadRequest    = "bad_request"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeNotFound      = "not_found"
	CodeTooLarge      = "too_large"
	CodeRateLimited   = "rate_limited"
	CodeConflict      = "conflict"
	CodeCursorExpired = "cursor_expired"
	CodeUnavailable   = "unavailable"
)
