package proto_test

import (
	"strings"
	"testing"

	"messenger/client/proto"
)

func TestValidID(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"Az09_-", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"a b", false},
		{"a.b", false},
		{"a/b", false},
		{"é", false},
		{"a\x00", false},
	}
	for _, c := range cases {
		if got := proto.ValidID(c.in); got != c.want {
			t.Errorf("ValidID(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}
