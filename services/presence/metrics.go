package presence

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	seen *prometheus.CounterVec
	told *prometheus.CounterVec
	deaf prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		seen: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "messenger_presence_changes_seen_total", Help: "Connection reports from edges (first connection or last disconnection of a user on an edge)."}, []string{}),
		told: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "messenger_presence_changes_broadcast_total", Help: "Presence changes told to watchers, by status."}, []string{"status"}),
		deaf: prometheus.NewCounter(prometheus.CounterOpts{Name: "messenger_presence_deaf_total", Help: "Times the service's own NATS connection could not hear the edges (down, or its server answering no ping): their silence meanwhile is not held against them."}),
	}
	if reg != nil {
		reg.MustRegister(m.seen, m.told, m.deaf)
	}
	return m
}
