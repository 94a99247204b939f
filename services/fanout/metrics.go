package fanout

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events      *prometheus.CounterVec
	writes      prometheus.Counter
	skipped     prometheus.Counter
	conflicts   prometheus.Counter
	retries     prometheus.Counter
	writeTime   prometheus.Histogram
	checkpoints *prometheus.GaugeVec
	summaries   prometheus.Counter
	// Transient failures retried, and what no retry can cure.
	eventRetries     prometheus.Counter
	badEvents        prometheus.Counter
	partitionRetries *prometheus.CounterVec
	summaryRetries   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_fanout_events_total", Help: "Conversation-stream events read by the fan-out, by type.",
		}, []string{"type"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_queue_writes_total", Help: "Entries written to user queues.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_queue_writes_skipped_total", Help: "Queue writes skipped because the entry was already written (replay).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_queue_conflicts_total", Help: "Queue writes that lost a compare-and-set to another writer and were retried.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_queue_retries_total", Help: "Queue writes retried after an error.",
		}),
		writeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "messenger_fanout_queue_write_seconds", Help: "Time to store one queue entry.",
			Buckets: prometheus.ExponentialBuckets(0.00002, 2, 14),
		}),
		checkpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "messenger_fanout_checkpoint", Help: "Conversation-stream sequence fanned out completely, per partition.",
		}, []string{"partition"}),
		summaries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_summary_writes_total", Help: "Conversation-list summaries stored (coalesced per checkpoint interval).",
		}),
		eventRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_event_retries_total", Help: "Events whose recipients could not be read yet (a transient NATS error), tried again; the partition waits meanwhile.",
		}),
		badEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_bad_events_total", Help: "Events skipped for good: malformed, or naming a conversation that has no metadata (logged at error level).",
		}),
		partitionRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_fanout_partition_retries_total", Help: "A partition's start (checkpoint read, consumer creation) or read failed on a transient error and was tried again, by step.",
		}, []string{"step"}),
		summaryRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_fanout_summary_retries_total", Help: "Conversation summaries whose read or store failed on a transient error and were tried again (a checkpoint waits for them).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.writes, m.skipped, m.conflicts, m.retries, m.writeTime, m.checkpoints, m.summaries,
			m.eventRetries, m.badEvents, m.partitionRetries, m.summaryRetries)
	}
	return m
}
