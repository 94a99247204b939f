package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrTooManyGroups is returned by Memberships.Join when a user is in as
// many groups as allowed.
var ErrTooManyGroups = errors.New("conversation: too many groups")

// IsMember tells whether user is a member of group conv now; Memberships
// asks it about the groups a user at the bound is recorded in.
type IsMember func(ctx context.Context, conv, user string) (bool, error)

// Memberships keeps per user the groups it is a member of (KV user_groups),
// so that a create or an add that would put a user in more than Max groups
// is refused before anything is stored. The edges record a user in a group
// before they store the event that makes it a member, and strike it out
// after a removal: a crash or a lost answer in between leaves a group
// recorded that the user is not in (never the reverse), which only counts
// against the user until the list is next found at the bound and checked
// against the groups themselves.
type Memberships struct {
	kv       jetstream.KeyValue
	max      int
	isMember IsMember
	// RecheckEvery bounds how often a list found at the bound is checked
	// against the groups (isMember for each). Default a minute.
	RecheckEvery time.Duration
}

// NewMemberships keeps the lists in kv and allows max groups per user.
func NewMemberships(kv jetstream.KeyValue, max int, isMember IsMember) *Memberships {
	return &Memberships{kv: kv, max: max, isMember: isMember, RecheckEvery: time.Minute}
}

// userGroups is a user's entry in the bucket.
type userGroups struct {
	Groups []string `json:"groups"`
	// Checked is when (ms) the groups were last checked against their
	// metadata: at most once a minute, when the list is at the bound.
	Checked int64 `json:"checked,omitempty"`
}

// Join records conv among the groups of each of users. If one of them is
// in Max groups already, nobody's list changes and the error wraps
// ErrTooManyGroups and names the user. added are the users whose list
// gained conv (not those that had it already): what Leave undoes when the
// event is then refused.
func (ms *Memberships) Join(ctx context.Context, conv string, users []string) (added []string, err error) {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			did, err := ms.join(ctx, conv, u)
			mu.Lock()
			defer mu.Unlock()
			if did {
				added = append(added, u)
			}
			if err != nil && (firstErr == nil || errors.Is(err, ErrTooManyGroups)) {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		ms.Leave(context.WithoutCancel(ctx), conv, added...)
		return nil, firstErr
	}
	return added, nil
}

// join records conv for user: a compare-and-set, retried on a race.
func (ms *Memberships) join(ctx context.Context, conv, user string) (bool, error) {
	for range 20 {
		g, rev, err := ms.read(ctx, user)
		if err != nil {
			return false, err
		}
		if slices.Contains(g.Groups, conv) {
			return false, nil
		}
		if len(g.Groups) >= ms.max && time.Since(time.UnixMilli(g.Checked)) >= ms.RecheckEvery {
			if g.Groups, err = ms.recheck(ctx, user, g.Groups); err != nil {
				return false, err
			}
			g.Checked = time.Now().UnixMilli()
			if len(g.Groups) >= ms.max {
				// Nothing to drop: said so, so that the next attempts
				// within RecheckEvery do not check again.
				_, _ = ms.write(ctx, user, g, rev)
			}
		}
		if len(g.Groups) >= ms.max {
			return false, fmt.Errorf("%w: %s is in %d groups", ErrTooManyGroups, user, ms.max)
		}
		g.Groups = append(g.Groups, conv)
		ok, err := ms.write(ctx, user, g, rev)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, fmt.Errorf("conversation: groups of %s: too many concurrent changes", user)
}

// Leave strikes conv out of each user's groups. Failures are not
// returned: a group left recorded only counts against the user until its
// list is checked (see Memberships).
func (ms *Memberships) Leave(ctx context.Context, conv string, users ...string) {
	for _, u := range users {
		for range 20 {
			g, rev, err := ms.read(ctx, u)
			if err != nil || !slices.Contains(g.Groups, conv) {
				break
			}
			g.Groups = slices.DeleteFunc(g.Groups, func(c string) bool { return c == conv })
			if ok, err := ms.write(ctx, u, g, rev); ok || err != nil {
				break
			}
		}
	}
}

// Count is how many groups user is recorded in.
func (ms *Memberships) Count(ctx context.Context, user string) (int, error) {
	g, _, err := ms.read(ctx, user)
	return len(g.Groups), err
}

// recheck keeps of groups those user is a member of now.
func (ms *Memberships) recheck(ctx context.Context, user string, groups []string) ([]string, error) {
	var kept []string
	for _, conv := range groups {
		in, err := ms.isMember(ctx, conv, user)
		if err != nil {
			return nil, err
		}
		if in {
			kept = append(kept, conv)
		}
	}
	return kept, nil
}

func (ms *Memberships) read(ctx context.Context, user string) (userGroups, uint64, error) {
	var g userGroups
	entry, err := ms.kv.Get(ctx, user)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return g, 0, nil
	}
	if err != nil {
		return g, 0, fmt.Errorf("conversation: groups of %s: %w", user, err)
	}
	if err := json.Unmarshal(entry.Value(), &g); err != nil {
		return g, 0, fmt.Errorf("conversation: groups of %s: %w", user, err)
	}
	return g, entry.Revision(), nil
}

// write stores g over revision rev (0: creates the key); false when
// another writer changed the list first.
func (ms *Memberships) write(ctx context.Context, user string, g userGroups, rev uint64) (bool, error) {
	val, _ := json.Marshal(g)
	var err error
	if rev == 0 {
		_, err = ms.kv.Create(ctx, user, val)
	} else {
		_, err = ms.kv.Update(ctx, user, val, rev)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil
	default:
		return false, fmt.Errorf("conversation: store groups of %s: %w", user, err)
	}
}
