package edge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"time"

	"messenger/client/proto"
	"messenger/services/conversation"
	"messenger/services/event"
)

// maxTitle bounds a group title in bytes.
const maxTitle = 256

var errExists = &Error{Code: proto.CodeConflict, Message: "the group exists"}

// serverID makes the client id of an event the server makes.
func serverID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "s" + base64.RawURLEncoding.EncodeToString(b[:])
}

// CreateGroupRequest is POST /v1/conversations.
type CreateGroupRequest struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Members []string `json:"members"`
}

// CreateGroup makes a group whose creator is its admin; the same client id
// again gives the same group (created reports which).
func (e *Edge) CreateGroup(ctx context.Context, user string, r *CreateGroupRequest) (view *ConversationView, created bool, cerr *Error) {
	if cerr := e.writes.group.check(user, "group changes"); cerr != nil {
		return nil, false, cerr
	}
	if r.ID == "" {
		r.ID = serverID()
	} else if !validID(r.ID) {
		return nil, false, errf(proto.CodeBadRequest, "id must be 1-64 characters of [A-Za-z0-9_-]")
	}
	if len(r.Title) > maxTitle {
		return nil, false, errf(proto.CodeBadRequest, "title is over %d bytes", maxTitle)
	}
	members := []string{user}
	for _, u := range r.Members {
		if !validID(u) {
			return nil, false, errf(proto.CodeBadRequest, "%q is not a valid user id", u)
		}
		if !slices.Contains(members, u) {
			members = append(members, u)
		}
	}
	if len(members) > e.cfg.MaxGroup {
		return nil, false, errf(proto.CodeConflict, "a group has at most %d members", e.cfg.MaxGroup)
	}
	if !e.inflight.enter() {
		return nil, false, errf(proto.CodeUnavailable, "server is draining, retry")
	}
	defer e.inflight.leave()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	conv := event.GroupConv(user, r.ID)
	joined, cerr := e.joinGroups(ctx, conv, members)
	if cerr != nil {
		return nil, false, cerr
	}
	st := e.convs.Get(conv)
	_, cerr = e.commit(ctx, st, conv, user+":"+r.ID, func(m *event.Meta) *Error {
		if m != nil && m.Applied > 0 {
			return errExists
		}
		return nil
	}, func(ev *event.Msg) {
		ev.From, ev.ID, ev.Kind, ev.Title, ev.Members = user, r.ID, event.KindGroupCreated, r.Title, members
	})
	e.undoJoin(conv, joined, cerr)
	switch {
	case cerr == errExists:
	case cerr != nil:
		return nil, false, cerr
	default:
		created = true
	}
	view, cerr = e.Conversation(ctx, user, conv)
	return view, created, cerr
}

// changeGroup commits a membership or title event made by actor, after
// check approves it against the group as of its last event.
func (e *Edge) changeGroup(ctx context.Context, actor, conv string, check func(*event.Meta) *Error, build func(*event.Msg)) *Error {
	if cerr := e.writes.group.check(actor, "group changes"); cerr != nil {
		return cerr
	}
	if !validID(conv) {
		return errForbidden
	}
	if !e.inflight.enter() {
		return errf(proto.CodeUnavailable, "server is draining, retry")
	}
	defer e.inflight.leave()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	m, st, err := e.convs.Meta(ctx, conv)
	if err != nil {
		return errUnavailable("group", err)
	}
	if m == nil {
		return errForbidden
	}
	_, cerr := e.commit(ctx, st, conv, "", func(m *event.Meta) *Error {
		switch {
		case m == nil || !m.Has(actor):
			return errForbidden
		case m.Kind != event.ConvGroup:
			return errf(proto.CodeBadRequest, "a direct conversation has no member operations")
		}
		return check(m)
	}, func(ev *event.Msg) {
		ev.From, ev.ID = actor, serverID()
		build(ev)
	})
	return cerr
}

// AddMember adds user to a group; admins only.
func (e *Edge) AddMember(ctx context.Context, actor, conv, user string) *Error {
	if !validID(user) {
		return errf(proto.CodeBadRequest, "user is not a valid user id")
	}
	if !validID(conv) {
		return errForbidden
	}
	joined, cerr := e.joinGroups(ctx, conv, []string{user})
	if cerr != nil {
		return cerr
	}
	cerr = e.changeGroup(ctx, actor, conv, func(m *event.Meta) *Error {
		switch {
		case !m.IsAdmin(actor):
			return errf(proto.CodeForbidden, "only admins add members")
		case m.Has(user):
			return errf(proto.CodeConflict, "%s is a member already", user)
		case len(m.Members) >= e.cfg.MaxGroup:
			return errf(proto.CodeConflict, "the group is full (%d members)", e.cfg.MaxGroup)
		}
		return nil
	}, func(ev *event.Msg) {
		// Only who joined: the new member reads the group's title and
		// members with GET /v1/conversations/{conv} (and its list has
		// them); copying them into every add made each add as big as the
		// group, stored once per member.
		ev.Kind, ev.User = event.KindMemberAdded, user
	})
	e.undoJoin(conv, joined, cerr)
	return cerr
}

// RemoveMember removes user from a group: an admin removes anyone, a
// member removes itself (leaves).
func (e *Edge) RemoveMember(ctx context.Context, actor, conv, user string) *Error {
	if !validID(user) {
		return errf(proto.CodeBadRequest, "user is not a valid user id")
	}
	cerr := e.changeGroup(ctx, actor, conv, func(m *event.Meta) *Error {
		switch {
		case user != actor && !m.IsAdmin(actor):
			return errf(proto.CodeForbidden, "only admins remove other members")
		case !m.Has(user):
			return errf(proto.CodeNotFound, "%s is not a member", user)
		}
		return nil
	}, func(ev *event.Msg) { ev.Kind, ev.User = event.KindMemberRemoved, user })
	if cerr == nil {
		e.groupsOf.Leave(context.WithoutCancel(ctx), conv, user)
	}
	return cerr
}

// joinGroups records conv among the groups of users before the event that
// makes them members is stored: conflict when one is in as many groups as
// allowed (--max-groups-per-user). It returns whom it recorded anew.
func (e *Edge) joinGroups(ctx context.Context, conv string, users []string) ([]string, *Error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	added, err := e.groupsOf.Join(ctx, conv, users)
	switch {
	case errors.Is(err, conversation.ErrTooManyGroups):
		return nil, errf(proto.CodeConflict, "a user may be in at most %d groups: %v", e.cfg.MaxGroupsPerUser, err)
	case err != nil:
		return nil, errUnavailable("group", err)
	}
	return added, nil
}

// undoJoin strikes conv out of the groups joinGroups recorded when the
// event was refused. After unavailable it may have been stored: the record
// stays (it counts against the users until their list is rechecked).
func (e *Edge) undoJoin(conv string, joined []string, cerr *Error) {
	if cerr != nil && cerr.Code != proto.CodeUnavailable && len(joined) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.PublishTimeout)
		defer cancel()
		e.groupsOf.Leave(ctx, conv, joined...)
	}
}

// isMember tells whether user is a member of group conv now, for the
// recheck of a list at the bound.
func (e *Edge) isMember(ctx context.Context, conv, user string) (bool, error) {
	m, _, err := e.convs.Meta(ctx, conv)
	if err != nil {
		return false, err
	}
	return m != nil && m.Has(user), nil
}

// Rename changes a group's title; admins only.
func (e *Edge) Rename(ctx context.Context, actor, conv, title string) *Error {
	if len(title) > maxTitle {
		return errf(proto.CodeBadRequest, "title is over %d bytes", maxTitle)
	}
	return e.changeGroup(ctx, actor, conv, func(m *event.Meta) *Error {
		if !m.IsAdmin(actor) {
			return errf(proto.CodeForbidden, "only admins rename")
		}
		return nil
	}, func(ev *event.Msg) { ev.Kind, ev.Title = event.KindTitleChanged, title })
}

func (e *Edge) postConversation(w http.ResponseWriter, r *http.Request, user string) {
	var req CreateGroupRequest
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	view, created, cerr := e.CreateGroup(r.Context(), user, &req)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, view)
}

// answerChange answers a group change with the group as the actor sees it
// now (an empty object once it has left).
func (e *Edge) answerChange(w http.ResponseWriter, r *http.Request, user, conv string, cerr *Error) {
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	view, verr := e.Conversation(ctx, user, conv)
	if verr != nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, view)
}

func (e *Edge) postMember(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		User string `json:"user"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	conv := r.PathValue("conv")
	e.answerChange(w, r, user, conv, e.AddMember(r.Context(), user, conv, req.User))
}

func (e *Edge) deleteMember(w http.ResponseWriter, r *http.Request, user string) {
	conv := r.PathValue("conv")
	e.answerChange(w, r, user, conv, e.RemoveMember(r.Context(), user, conv, r.PathValue("user")))
}

func (e *Edge) patchConversation(w http.ResponseWriter, r *http.Request, user string) {
	var req struct {
		Title *string `json:"title"`
	}
	if cerr := readBody(w, r, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if req.Title == nil {
		writeError(w, errf(proto.CodeBadRequest, "title is required"))
		return
	}
	conv := r.PathValue("conv")
	e.answerChange(w, r, user, conv, e.Rename(r.Context(), user, conv, *req.Title))
}
