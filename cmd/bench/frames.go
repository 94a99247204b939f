package main

import (
	"bytes"
	"strconv"
)

// The raw users build their frames by appending to a byte buffer and read
// the server's frames by finding the few fields they need, without
// encoding/json: the load generator must cost far less per message than the
// platform it measures. The frames are PROTOCOL.md's, and everything a raw
// user writes is made of characters that need no JSON escaping (ids, user
// and conversation ids, and texts from appendText).

// Keys looked up in server frames, with their quotes and colon.
var (
	keyType   = []byte(`"type":`)
	keyID     = []byte(`"id":`)
	keyConv   = []byte(`"conv":`)
	keySeq    = []byte(`"seq":`)
	keyFrom   = []byte(`"from":`)
	keyText   = []byte(`"text":`)
	keyCursor = []byte(`"cursor":`)
	keyCode   = []byte(`"code":`)
)

// field returns the value of key in a server frame: a string's bytes between
// its quotes (escapes left as they are), or a number's or literal's text; nil
// when the key is absent. It finds the first occurrence: a key inside a
// string value cannot match (its quotes would be escaped), and the frames the
// bench reads have no nested objects with these keys.
func field(frame, key []byte) []byte {
	i := bytes.Index(frame, key)
	if i < 0 {
		return nil
	}
	v := frame[i+len(key):]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == '\n' || v[0] == '\r') {
		v = v[1:]
	}
	if len(v) == 0 {
		return nil
	}
	if v[0] == '"' {
		for j := 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				j++
			case '"':
				return v[1:j]
			}
		}
		return nil
	}
	end := bytes.IndexAny(v, ",} \t\r\n")
	if end < 0 {
		return v
	}
	return v[:end]
}

// atoi parses a non-negative decimal number of at most 19 digits (a unix
// time in ns has 19); ok is false for anything else.
func atoi[T ~string | ~[]byte](b T) (n int64, ok bool) {
	if len(b) == 0 || len(b) > 19 || len(b) == 19 && string(b[:1]) > "8" {
		return 0, false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// appendText appends a message text: tag, due time (unix ns), padding up to
// size bytes. The recipient measures from the due time (parseText).
func appendText(b []byte, tag string, due int64, size int) []byte {
	start := len(b)
	b = append(b, tag...)
	b = append(b, ':')
	b = strconv.AppendInt(b, due, 10)
	b = append(b, ':')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// makeText is appendText as a string (for the Go client).
func makeText(tag string, due int64, size int) string {
	return string(appendText(nil, tag, due, size))
}

// parseText reads a text made by appendText.
func parseText[T ~string | ~[]byte](t T) (tag T, due int64, ok bool) {
	i := indexByte(t, ':')
	if i < 0 {
		return tag, 0, false
	}
	rest := t[i+1:]
	if j := indexByte(rest, ':'); j >= 0 {
		rest = rest[:j]
	}
	due, ok = atoi(rest)
	return t[:i], due, ok
}

func indexByte[T ~string | ~[]byte](s T, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// appendSendID appends a send's client id: <tag>-<worker>-<k>-<due>. The ack
// and error frames echo it, so the sender learns the tag and the due time of
// the send they answer without keeping anything per send (parseSendID).
func appendSendID(b []byte, tag string, worker, k int, due int64) []byte {
	b = append(b, tag...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(worker), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, '-')
	return strconv.AppendInt(b, due, 10)
}

// parseSendID reads the tag and due time of an id made by appendSendID.
func parseSendID(id []byte) (tag []byte, due int64, ok bool) {
	i := bytes.IndexByte(id, '-')
	j := bytes.LastIndexByte(id, '-')
	if i < 0 {
		return nil, 0, false
	}
	due, ok = atoi(id[j+1:])
	return id[:i], due, ok
}

// appendSend appends a `send` frame to user or conversation to (toConv).
func appendSend(b []byte, id []byte, to string, toConv bool, text []byte) []byte {
	b = append(b, `{"type":"send","id":"`...)
	b = append(b, id...)
	if toConv {
		b = append(b, `","conv":"`...)
	} else {
		b = append(b, `","to":"`...)
	}
	b = append(b, to...)
	b = append(b, `","text":"`...)
	b = append(b, text...)
	return append(b, `"}`...)
}

// appendReceipt appends a `delivered` receipt frame.
func appendReceipt[T ~string | ~[]byte](b []byte, conv T, seq int64) []byte {
	b = append(b, `{"type":"receipt","conv":"`...)
	b = append(b, conv...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, `,"status":"delivered"}`...)
}
