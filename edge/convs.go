package edge

import (
	"context"

	"messenger/services/conversation"
	"messenger/services/event"
)

// convCache is this edge's conversation states and commits
// (conversation.Cache); hint is the name the hub tells it announced
// messages by.
type convCache struct{ *conversation.Cache }

// hint records a stored text message heard of in an announcement.
func (c *convCache) hint(conv string, seq, streamSeq uint64, ts int64) {
	c.Hint(conv, seq, streamSeq, ts)
}

// meta is the conversation's metadata, read when not yet known
// (conversation.Cache.Meta); nil, nil for a conversation that does not
// exist.
func (e *Edge) meta(ctx context.Context, conv string) (*event.Meta, *conversation.State, error) {
	return e.convs.Meta(ctx, conv)
}

// freshMeta is the conversation's metadata as of its last stored event,
// read now, and that event's seq: what reads of a group check membership
// against (conversation.Cache.Fresh).
func (e *Edge) freshMeta(ctx context.Context, conv string) (*event.Meta, uint64, error) {
	return e.convs.Fresh(ctx, conv)
}
