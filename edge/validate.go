package edge

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"messenger/client/proto"
)

// validID is the id rule shared by users, devices, conversations and client ids.
func validID(s string) bool { return proto.ValidID(s) }

// hasLoneSurrogate reports a \uD800–\uDFFF escape in raw JSON that is not
// part of a high-low pair. encoding/json would silently turn it into U+FFFD;
// PROTOCOL.md makes it bad_request.
func hasLoneSurrogate(raw []byte) bool {
	for i := 0; i+6 <= len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // skip the escaped character (may be a backslash)
			continue
		}
		r, ok := hex4(raw[i+2 : i+6])
		if !ok {
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if lo, ok := hex4(raw[i+8 : i+12]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 11
					continue
				}
			}
			return true
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		}
		i += 5
	}
	return false
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}

// checkJSONText rejects bodies that JSON decoding would silently repair.
func checkJSONText(raw []byte) *Error {
	if !utf8.Valid(raw) {
		return errf(proto.CodeBadRequest, "body is not valid UTF-8")
	}
	if bytes.Contains(raw, []byte(`\u`)) && hasLoneSurrogate(raw) {
		return errf(proto.CodeBadRequest, "lone surrogate escape in a string")
	}
	return nil
}

// decodeFrame turns a client text frame into an inFrame, or into the error
// its error frame carries. gws has already closed the connection on invalid
// UTF-8 (1007) and on a frame over the limit (1009).
func decodeFrame(raw []byte) (*inFrame, *Error) {
	var f inFrame
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, errf(proto.CodeBadRequest, "frame is not a valid JSON object: %v", err)
	}
	if hasLoneSurrogate(raw) {
		return nil, errf(proto.CodeBadRequest, "lone surrogate escape in a string")
	}
	return &f, nil
}
