package edge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections prometheus.Gauge
	connects    prometheus.Counter
	sends       *prometheus.CounterVec
	ackLatency  prometheus.Histogram
	delivered   prometheus.Counter
	slowClosed  prometheus.Counter
	replays     prometheus.Counter
	gaps        prometheus.Counter
	conflicts   prometheus.Counter
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
		delivered:  prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_frames_delivered_total", Help: "Stored events queued to connections."}),
		slowClosed: prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_slow_reader_closes_total", Help: "Connections closed with 4008 for falling behind."}),
		replays:    prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_replays_total", Help: "Catch-ups from a queue position (connects with a cursor, syncs, gap refills)."}),
		gaps:       prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_live_gaps_total", Help: "Live announcements that showed a missed one."}),
		conflicts:  prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_edge_seq_conflicts_total", Help: "Sends that lost the race for a conversation seq and were retried."}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.connects, m.sends, m.ackLatency, m.delivered, m.slowClosed, m.replays, m.gaps, m.conflicts)
	}
	return m
}
