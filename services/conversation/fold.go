package conversation

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"messenger/services/event"
	"messenger/streams"
)

// FoldStream folds into meta the events of conv stored after
// meta.AppliedStream, up to seq upTo, read from the conversation stream:
// how any reader rebuilds the lookup.
func FoldStream(ctx context.Context, nc *nats.Conn, h *streams.Handles, conv string, meta *event.Meta, upTo uint64) error {
	stream := streams.ConvStream(h.Layout.ConvPartition(conv))
	subject := h.Layout.ConvEvents(conv)
	after := meta.AppliedStream
	for meta.Applied < upTo {
		msgs, more, err := streams.ReadAfter(ctx, nc, stream, subject, after, 256)
		if err != nil {
			return fmt.Errorf("conversation: fold %s: %w", conv, err)
		}
		for _, m := range msgs {
			after = m.Seq
			var ev event.Msg
			if json.Unmarshal(m.Data, &ev) == nil {
				meta.Fold(&ev, m.Seq)
			}
		}
		if !more || len(msgs) == 0 {
			break
		}
	}
	return nil
}
