package projector

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"messenger/streams"
)

type metrics struct {
	events       prometheus.Counter
	insertErrors prometheus.Counter
	deadLetters  prometheus.Counter
	projected    *prometheus.GaugeVec
	lastTime     *prometheus.GaugeVec
	lagEvents    *prometheus.GaugeVec
	lagSeconds   *prometheus.GaugeVec
	// gaps and holes (gap.go, check.go)
	gapEvents     prometheus.Counter
	holes         *prometheus.GaugeVec
	holesFound    *prometheus.CounterVec
	holesRepaired *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events:        prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projector_events_total", Help: "Conversation-stream events projected into ClickHouse (or dead-lettered)."}),
		insertErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projector_insert_errors_total", Help: "Failed ClickHouse inserts (retried)."}),
		deadLetters:   prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projector_dead_letters_total", Help: "Events given up on and stored as dead letters."}),
		projected:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "messenger_projector_stream_seq", Help: "Last conversation-stream sequence projected, per partition."}, []string{"partition"}),
		lastTime:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "messenger_projector_event_time_seconds", Help: "Stream time of the last event projected, per partition."}, []string{"partition"}),
		lagEvents:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "messenger_projector_lag_events", Help: "Events stored but not yet projected, per partition."}, []string{"partition"}),
		lagSeconds:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "messenger_projector_lag_seconds", Help: "Age of the oldest event not yet projected, per partition (0 when none)."}, []string{"partition"}),
		gapEvents:     prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_projector_gap_events_total", Help: "Events fetched by no running projector (killed mid-batch, fetch reply lost), read from the stream and inserted before the batch that followed them."}),
		holes:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "messenger_projector_holes", Help: "Events below the projector's ack floor missing from ClickHouse and from the dead letters, as the last history check left them (after its repair), per partition."}, []string{"partition"}),
		holesFound:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "messenger_projector_holes_found_total", Help: "Events the history checks found missing from ClickHouse below the ack floor, per partition (any increase is a lost event)."}, []string{"partition"}),
		holesRepaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "messenger_projector_holes_repaired_total", Help: "Missing events the history checks projected again from the stream, per partition."}, []string{"partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.insertErrors, m.deadLetters, m.projected, m.lastTime, m.lagEvents, m.lagSeconds, m.gapEvents, m.holes, m.holesFound, m.holesRepaired)
	}
	return m
}

// watchLag refreshes the lag gauges every few seconds from the consumers.
func (p *Projector) watchLag(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for part := range p.h.Conv {
			lag, age, err := p.Lag(ctx, part)
			if err != nil {
				continue
			}
			label := strconv.Itoa(part)
			p.m.lagEvents.WithLabelValues(label).Set(float64(lag))
			p.m.lagSeconds.WithLabelValues(label).Set(age.Seconds())
		}
	}
}

// Lag is how many events of conversation stream part are not projected yet,
// and how old the oldest of them is.
func (p *Projector) Lag(ctx context.Context, part int) (uint64, time.Duration, error) {
	return Lag(ctx, p.h, part)
}

// Lag reads the projector consumer's position on conversation stream part.
func Lag(ctx context.Context, h *streams.Handles, part int) (uint64, time.Duration, error) {
	c, err := h.Conv[part].Consumer(ctx, streams.ProjectorDurable)
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	lag := info.NumPending + uint64(info.NumAckPending)
	if lag == 0 {
		return 0, 0, nil
	}
	oldest, err := h.Conv[part].GetMsg(ctx, info.AckFloor.Stream+1)
	if err != nil {
		return lag, 0, nil
	}
	return lag, time.Since(oldest.Time), nil
}
