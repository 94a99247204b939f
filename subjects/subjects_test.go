package subjects_test

import (
	"errors"
	"testing"

	"messenger/subjects"
)

func TestBuildAndParse(t *testing.T) {
	l := subjects.Layout{Partitions: 4}
	for _, tc := range []struct {
		subject, prefix, id string
	}{
		{l.ConvEvents("dAbc"), subjects.ConvPrefix, "dAbc"},
		{l.Receipts("dAbc"), subjects.ReceiptPrefix, "dAbc"},
		{l.Queue("alice"), subjects.QueuePrefix, "alice"},
		{l.Live("alice"), subjects.LivePrefix, "alice"},
	} {
		p, err := subjects.Parse(tc.subject)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.subject, err)
		}
		if p.Prefix != tc.prefix || p.ID != tc.id || p.Partition != subjects.Partition(tc.id, 4) {
			t.Fatalf("parse %q = %+v", tc.subject, p)
		}
	}
	for _, bad := range []string{"", "conv", "conv.x.a", "nope.1.a", "conv.1.", "conv.1.a.b"} {
		if _, err := subjects.Parse(bad); !errors.Is(err, subjects.ErrBadSubject) {
			t.Fatalf("parse %q: want ErrBadSubject, got %v", bad, err)
		}
	}
}

// The partition must equal the NATS server's partition() mapping (fnv32a mod n),
// so that operators may move the computation into server-side subject mapping.
func TestPartitionIsFNV32a(t *testing.T) {
	// fnv32a("alice") = 0x0ff2a80c... computed independently below.
	var h uint32 = 2166136261
	for _, c := range []byte("alice") {
		h ^= uint32(c)
		h *= 16777619
	}
	if got, want := subjects.Partition("alice", 7), int(h%7); got != want {
		t.Fatalf("Partition = %d, want %d", got, want)
	}
	if subjects.Partition("alice", 1) != 0 {
		t.Fatal("one partition must be 0")
	}
}

func TestPresenceSubjects(t *testing.T) {
	l := subjects.Layout{Partitions: 4}
	for subject, prefix := range map[string]string{
		l.PresenceEvents("zoe"):  subjects.PresenceEventsPrefix,
		l.PresenceChanges("zoe"): subjects.PresenceChangesPrefix,
	} {
		p, err := subjects.Parse(subject)
		if err != nil || p.Prefix != prefix || p.ID != "zoe" || p.Partition != subjects.Partition("zoe", 4) {
			t.Fatalf("%s: %+v %v", subject, p, err)
		}
	}
}
