package partition

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	owned, members    prometheus.Gauge
	handovers, errors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, kind string) *metrics {
	labels := prometheus.Labels{"kind": kind}
	m := &metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "messenger_partitions_owned", Help: "Conversation-stream partitions this worker works now.", ConstLabels: labels,
		}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "messenger_partition_members", Help: "Live workers of this kind as this worker last read them.", ConstLabels: labels,
		}),
		handovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_partition_moves_total", Help: "Partitions this worker gained or lost.", ConstLabels: labels,
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "messenger_partition_lease_errors_total", Help: "Heartbeats whose lease renewal or membership read failed.", ConstLabels: labels,
		}),
	}
	if reg != nil {
		reg.MustRegister(m.owned, m.members, m.handovers, m.errors)
	}
	return m
}
