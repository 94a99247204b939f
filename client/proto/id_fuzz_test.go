package proto_test

import (
	"regexp"
	"testing"

	"messenger/client/proto"
)

// idRE is the contract's id grammar (PROTOCOL.md sections 1-3), the
// reference ValidID's byte loop must agree with.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// FuzzValidID: an id is accepted exactly when it matches the contract's
// regexp, so nothing else (dots, wildcards, NUL, non-ASCII) ever reaches a
// NATS subject or a storage key. Seeds: testdata/fuzz/FuzzValidID.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"a", "Az09_-", "u1", "", "a.b", "a*", ">", "a b", "é", "\xff", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := proto.ValidID(s), idRE.MatchString(s); got != want {
			t.Fatalf("ValidID(%q) = %v, the contract's regexp says %v", s, got, want)
		}
	})
}
