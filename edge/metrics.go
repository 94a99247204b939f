package edge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections  prometheus.Gauge
	connects     prometheus.Counter
	sends        *prometheus.CounterVec
	ackLatency   prometheus.Histogram
	delivered    prometheus.Counter
	slowClosed   prometheus.Counter
	replays      prometheus.Counter
	gaps         prometheus.Counter
	conflicts    prometheus.Counter
	onlineProbes prometheus.Counter
	socketWrites prometheus.Counter

	historyPages     *prometheus.CounterVec
	historyLatency   prometheus.Histogram
	projectionErrors prometheus.Counter
	listLatency      prometheus.Histogram

	presenceDelivered prometheus.Counter
	typingDelivered   prometheus.Counter

	// publishes through node faults (infra/jspub)
	publishRetries    *prometheus.CounterVec
	publishReconnects prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "messenger_edge_connections", Help: "Open WebSocket connections."}),
		connects:    prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_connects_total", Help: "WebSocket connections accepted."}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_edge_sends_total", Help: "Sends answered, by result (ack, duplicate, or an error code).",
		}, []string{"result"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "messenger_edge_ack_seconds", Help: "Time from a send's arrival to its ack.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		delivered:    prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_frames_delivered_total", Help: "Stored events queued to connections."}),
		slowClosed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_slow_reader_closes_total", Help: "Connections closed with 4008 for falling behind."}),
		replays:      prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_replays_total", Help: "Catch-ups from a queue position (connects with a cursor, syncs, gap refills)."}),
		gaps:         prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_live_gaps_total", Help: "Live announcements that showed a missed one."}),
		onlineProbes: prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_online_probes_total", Help: "NATS requests asking whether a recipient on another edge is online (the rest answered from this edge or a recent answer)."}),
		socketWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_socket_writes_total", Help: "System-call writes of WebSocket text frames (several frames ready together for one connection make one)."}),
		conflicts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_seq_conflicts_total", Help: "Sends that lost the race for a conversation seq and were retried."}),
		historyPages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_edge_history_pages_total", Help: "History pages served, by source (recent cache or store).",
		}, []string{"source"}),
		historyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "messenger_edge_history_page_seconds", Help: "Time to answer a history page.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		projectionErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_edge_projection_errors_total", Help: "History reads the projection could not answer (served from the stream).",
		}),
		listLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "messenger_edge_conversation_list_seconds", Help: "Time to answer GET /v1/conversations.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		presenceDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_edge_presence_events_delivered_total", Help: "Presence frames queued to connections (snapshots and changes).",
		}),
		typingDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_edge_typing_events_delivered_total", Help: "Typing frames queued to connections.",
		}),
		publishRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_edge_jetstream_retries_total", Help: "JetStream requests (publishes of sends and receipts, queue-head reads of hello) sent again, by reason (timeout, interrupted, no_responders, unavailable).",
		}, []string{"reason"}),
		publishReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_edge_nats_forced_reconnects_total", Help: "NATS connections forced to another server after a JetStream request timed out and the server did not answer a ping.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.presenceDelivered, m.typingDelivered, m.publishRetries, m.publishReconnects)
		reg.MustRegister(m.connections, m.connects, m.sends, m.ackLatency, m.delivered, m.slowClosed, m.replays, m.gaps, m.conflicts, m.onlineProbes, m.socketWrites,
			m.historyPages, m.historyLatency, m.projectionErrors, m.listLatency)
	}
	return m
}
