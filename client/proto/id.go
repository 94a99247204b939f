package proto

// MaxIDLen bounds identifiers so that they stay cheap to store, index and log.
const MaxIDLen = 64

// ValidID reports whether s matches [A-Za-z0-9_-]{1,64}, the grammar shared by
// user ids, device ids, conversation ids and send ids (PROTOCOL.md sections
// 1–3). It is written as a byte loop rather than a regexp because it runs on
// every request.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
