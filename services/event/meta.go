package event

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
)

// Meta is what the convs bucket holds for a conversation: its kind, title
// and members, folded from the conversation's events (a projection: Fold
// over the stream gives it again).
type Meta struct {
	Kind    string   `json:"kind"`
	Title   string   `json:"title,omitempty"`
	Members []string `json:"members"` // current members, in joining order
	// Roster (groups): every membership stint, so that the members at any
	// seq are known — the fan-out needs them as of each event, not as of now.
	Roster []Stint `json:"roster,omitempty"`
	// Applied is the seq of the last event folded in, AppliedStream its
	// sequence in the conversation stream (where to read on from).
	Applied       uint64 `json:"applied,omitempty"`
	AppliedStream uint64 `json:"applied_stream,omitempty"`
}

// Stint is one membership of a user in a group: from the seq at which it
// joined to the seq of its removal (0 while it is a member).
type Stint struct {
	User   string `json:"user"`
	Joined uint64 `json:"joined"`
	Left   uint64 `json:"left,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
}

// Has tells whether user is a member now.
func (m *Meta) Has(user string) bool { return slices.Contains(m.Members, user) }

// Current is user's current stint in a group, or nil.
func (m *Meta) Current(user string) *Stint {
	for i := len(m.Roster) - 1; i >= 0; i-- {
		if s := &m.Roster[i]; s.User == user && s.Left == 0 {
			return s
		}
	}
	return nil
}

// IsAdmin tells whether user administers the group now.
func (m *Meta) IsAdmin(user string) bool {
	s := m.Current(user)
	return s != nil && s.Admin
}

// JoinedSeq is the first seq user may see: 1 in a direct conversation.
func (m *Meta) JoinedSeq(user string) uint64 {
	if s := m.Current(user); s != nil {
		return s.Joined
	}
	return 1
}

// MembersAt is the group's members just after the event at seq, in joining
// order (from the roster, so right for any seq the fold has applied).
func (m *Meta) MembersAt(seq uint64) []string {
	if m.Kind != ConvGroup {
		return slices.Clone(m.Members)
	}
	var out []string
	for _, s := range m.Roster {
		if s.Joined <= seq && (s.Left == 0 || seq < s.Left) && !slices.Contains(out, s.User) {
			out = append(out, s.User)
		}
	}
	return out
}

// Recipients are the users an event at seq of the given kind goes to: the
// members at that seq, and for a removal also the removed user, who gets
// its own member_removed event.
func (m *Meta) Recipients(seq uint64, kind, subject string) []string {
	if m.Kind != ConvGroup {
		return m.Members
	}
	var out []string
	for _, s := range m.Roster {
		if s.Joined <= seq && (s.Left == 0 || seq < s.Left || (seq == s.Left && kind == KindMemberRemoved && s.User == subject)) {
			if !slices.Contains(out, s.User) {
				out = append(out, s.User)
			}
		}
	}
	return out
}

// Fold applies one stored event of the conversation; events at or below
// Applied change nothing, so folding twice is harmless.
func (m *Meta) Fold(ev *Msg, streamSeq uint64) {
	if ev.Seq <= m.Applied {
		return
	}
	m.Applied, m.AppliedStream = ev.Seq, streamSeq
	switch ev.Kind {
	case KindGroupCreated:
		m.Kind, m.Title, m.Roster, m.Members = ConvGroup, ev.Title, nil, nil
		for _, u := range ev.Members {
			m.Roster = append(m.Roster, Stint{User: u, Joined: ev.Seq, Admin: u == ev.From})
		}
	case KindMemberAdded:
		// Only User counts: an event stored before 2026-12-05 also carries
		// the group's title and members as they were, which the roster
		// already has.
		if m.Current(ev.User) == nil {
			m.Roster = append(m.Roster, Stint{User: ev.User, Joined: ev.Seq})
		}
	case KindMemberRemoved:
		if s := m.Current(ev.User); s != nil {
			s.Left, s.Admin = ev.Seq, false
			m.promote()
		}
	case KindTitleChanged:
		m.Title = ev.Title
	default:
		if m.Kind == "" && ev.To != "" { // the first message of a direct conversation
			m.Kind, m.Members = ConvDirect, []string{ev.From, ev.To}
			slices.Sort(m.Members)
		}
		return
	}
	m.Members = m.Members[:0]
	for _, s := range m.Roster {
		if s.Left == 0 {
			m.Members = append(m.Members, s.User)
		}
	}
}

// promote makes the longest-standing member admin when no admin is left: a
// rule of the fold, so every reader of the stream agrees without an event.
func (m *Meta) promote() {
	var oldest *Stint
	for i := range m.Roster {
		s := &m.Roster[i]
		if s.Left != 0 {
			continue
		}
		if s.Admin {
			return
		}
		if oldest == nil || s.Joined < oldest.Joined {
			oldest = s
		}
	}
	if oldest != nil {
		oldest.Admin = true
	}
}

// GroupConv is the id of the group creator makes with client id: a retried
// create lands on the same group.
func GroupConv(creator, id string) string {
	h := sha256.Sum256([]byte(creator + "\x00" + id))
	return "g" + base64.RawURLEncoding.EncodeToString(h[:24])
}

// Clone is a deep copy.
func (m *Meta) Clone() *Meta {
	c := *m
	c.Members = slices.Clone(m.Members)
	c.Roster = slices.Clone(m.Roster)
	return &c
}
