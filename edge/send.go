package edge

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.uber.org/zap"

	"messenger/client/proto"
	"messenger/infra/jspub"
	"messenger/services/conversation"
	"messenger/services/event"
)

// SendRequest is a send frame or POST /v1/messages body.
type SendRequest struct {
	ID   string  `json:"id"`
	To   string  `json:"to"`
	Conv string  `json:"conv"`
	Text *string `json:"text"`
}

// Ack answers a stored send.
type Ack struct {
	Type   string `json:"type,omitempty"`
	ID     string `json:"id"`
	Conv   string `json:"conv"`
	Seq    uint64 `json:"seq"`
	TS     int64  `json:"ts"`
	Online *bool  `json:"online,omitempty"`
}

func (e *Edge) validateSend(user string, r *SendRequest) *Error {
	if !validID(r.ID) {
		return errf(proto.CodeBadRequest, "id must be 1-64 characters of [A-Za-z0-9_-]")
	}
	if (r.To == "") == (r.Conv == "") {
		return errf(proto.CodeBadRequest, "exactly one of to and conv is required")
	}
	if r.To != "" {
		if !validID(r.To) {
			return errf(proto.CodeBadRequest, "to is not a valid user id")
		}
		if r.To == user {
			return errf(proto.CodeBadRequest, "cannot send to oneself")
		}
	}
	if r.Conv != "" && !validID(r.Conv) {
		return errf(proto.CodeBadRequest, "conv is not a valid conversation id")
	}
	if r.Text == nil || *r.Text == "" {
		return errf(proto.CodeBadRequest, "text is required")
	}
	if len(*r.Text) > e.cfg.MaxText {
		return errf(proto.CodeTooLarge, "text is over %d bytes", e.cfg.MaxText)
	}
	return nil
}

// Send stores a text message and answers its ack: only once JetStream has
// stored it. raw is the client's JSON, checked for what decoding hides.
func (e *Edge) Send(ctx context.Context, user string, r *SendRequest) (*Ack, *Error) {
	start := time.Now()
	ack, cerr := e.send(ctx, user, r)
	result := "ack"
	if cerr != nil {
		result = cerr.Code
	} else {
		e.m.ackLatency.Observe(time.Since(start).Seconds())
	}
	e.m.sends.WithLabelValues(result).Inc()
	return ack, cerr
}

func (e *Edge) send(ctx context.Context, user string, r *SendRequest) (*Ack, *Error) {
	if cerr := e.validateSend(user, r); cerr != nil {
		return nil, cerr
	}
	if wait, ok := e.limits.allow(user); !ok {
		return nil, &Error{Code: proto.CodeRateLimited, Message: "too many sends", RetryAfter: wait}
	}
	if !e.inflight.enter() {
		return nil, errf(proto.CodeUnavailable, "server is draining, reconnect")
	}
	defer e.inflight.leave()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()

	var st *conversation.State
	conv := r.Conv
	if r.To != "" {
		conv = event.DirectConv(user, r.To)
		st = e.convs.Direct(conv, user, r.To)
	} else {
		m, s, err := e.convs.Meta(ctx, conv)
		if err != nil {
			return nil, errUnavailable("send", err)
		}
		if m == nil || (m.Kind == event.ConvDirect && !m.Has(user)) {
			return nil, errForbidden
		}
		st = s
		if m.Kind == event.ConvDirect {
			for _, u := range m.Members {
				if u != user {
					r.To = u
				}
			}
		}
	}
	var onlineCh chan bool
	if r.To != "" {
		// Asked while the message is stored, so it costs no latency.
		onlineCh = make(chan bool, 1)
		go func(to string) { onlineCh <- e.online(to) }(r.To)
	}
	text, to := *r.Text, r.To
	ack, cerr := e.commit(ctx, st, conv, user+":"+r.ID, func(m *event.Meta) *Error {
		if m == nil || !m.Has(user) {
			return errForbidden // a group member removed meanwhile
		}
		return nil
	}, func(ev *event.Msg) {
		ev.From, ev.ID, ev.Kind, ev.Text, ev.To = user, r.ID, event.KindText, text, to
	})
	if cerr != nil {
		if cerr.Code == proto.CodeUnavailable {
			e.log.Warn("store message", zap.String("conv", conv), zap.String("error", cerr.Message))
		}
		return nil, cerr
	}
	ack.ID = r.ID
	if onlineCh != nil {
		online := <-onlineCh
		ack.Online = &online
	}
	return ack, nil
}

// commit stores the next event of conv through the conversation cache
// (conversation.Cache.Commit) and answers its ack: check may refuse the
// event with a client error, any other failure is unavailable. dedupID,
// when set, makes a resend answer the first ack.
func (e *Edge) commit(ctx context.Context, st *conversation.State, conv, dedupID string, check func(*event.Meta) *Error, build func(*event.Msg)) (*Ack, *Error) {
	c, err := e.convs.Commit(ctx, st, conv, conversation.Op{
		DedupID: dedupID,
		Check: func(m *event.Meta) error {
			if cerr := check(m); cerr != nil {
				return cerr
			}
			return nil // not a nil *Error in an error
		},
		Build: build,
	})
	if err != nil {
		var cerr *Error
		if errors.As(err, &cerr) { // check refused it
			return nil, cerr
		}
		return nil, errUnavailable("store", err)
	}
	if c.Duplicate {
		e.m.sends.WithLabelValues("duplicate").Inc()
	}
	return &Ack{Type: "ack", ID: c.ID, Conv: c.Conv, Seq: c.Seq, TS: c.TS}, nil
}

// ReceiptRequest is a receipt frame or POST /v1/receipts body.
type ReceiptRequest struct {
	Conv   string `json:"conv"`
	Seq    *int64 `json:"seq"`
	Status string `json:"status"`
}

// Receipt stores a delivered or read watermark of user in a conversation.
func (e *Edge) Receipt(ctx context.Context, user string, r *ReceiptRequest) *Error {
	if !validID(r.Conv) {
		return errf(proto.CodeBadRequest, "conv is not a valid conversation id")
	}
	if r.Seq == nil || *r.Seq < 1 {
		return errf(proto.CodeBadRequest, "seq must be a positive integer")
	}
	if r.Status != event.StatusDelivered && r.Status != event.StatusRead {
		return errf(proto.CodeBadRequest, "status must be delivered or read")
	}
	if cerr := e.writes.receipt.check(user, "receipts"); cerr != nil {
		return cerr
	}
	if !e.inflight.enter() {
		return errf(proto.CodeUnavailable, "server is draining, reconnect")
	}
	defer e.inflight.leave()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PublishTimeout)
	defer cancel()
	seq := uint64(*r.Seq)
	m, last, err := e.convs.AtLeast(ctx, r.Conv, seq)
	if err != nil {
		return errUnavailable("receipt", err)
	}
	if m == nil || !m.Has(user) {
		return errForbidden
	}
	if seq > last {
		return errf(proto.CodeBadRequest, "seq %d is beyond the last event %d of the conversation", seq, last)
	}
	rc := event.Receipt{
		V: event.Version, Type: event.TypeReceipt, Conv: r.Conv, Seq: seq,
		User: user, Status: r.Status, TS: time.Now().UnixMilli(),
	}
	if m.Kind == event.ConvDirect {
		for _, u := range m.Members {
			if u != user {
				rc.Peer = u
			}
		}
	}
	data, _ := json.Marshal(rc)
	// A receipt is a watermark: sent twice by a retry, it moves nothing more.
	if _, _, err := e.pub.Publish(ctx, e.h.Layout.Receipts(r.Conv), data); err != nil {
		e.log.Warn("store receipt", zap.Error(err))
		return errUnavailable("receipt", err)
	}
	return nil
}

// publishConfig is the retry setting of every JetStream publish of the edge
// (sends, receipts): counted in its metrics.
func (e *Edge) publishConfig() jspub.Config {
	return jspub.Config{
		AttemptTimeout: e.cfg.PublishAttempt,
		OnRetry:        func(reason string) { e.m.publishRetries.WithLabelValues(reason).Inc() },
		OnReconnect:    e.m.publishReconnects.Inc,
	}
}
