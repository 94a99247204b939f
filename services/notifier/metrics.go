package notifier

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	// sent counts provider sends by provider and outcome: ok, gone, error
	// (a permanent refusal), retry (a transient failure, tried again),
	// expired (given up at the TTL), dropped (the provider's queue full),
	// no_provider (a device of a platform not configured).
	sent      *prometheus.CounterVec
	retries   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	queue     *prometheus.GaugeVec
	decisions *prometheus.CounterVec
	pending   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_push_sent_total", Help: "Push sends by provider and outcome (ok, gone, error, retry, expired, dropped, no_provider).",
		}, []string{"provider", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_push_retries_total", Help: "Push sends tried again after a transient failure.",
		}, []string{"provider"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "messenger_push_send_seconds", Help: "Time of one send to a push provider.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "messenger_push_queue_depth", Help: "Sends waiting in a provider's queue (retries waiting their turn included).",
		}, []string{"provider"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messenger_notifier_decisions_total", Help: "Pending pushes by what became of them (pushed, online, muted, read, no_device, user_rate, duplicate, too_old, error).",
		}, []string{"decision"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "messenger_notifier_pending", Help: "Pushes waiting for their coalescing window to end.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.retries, m.latency, m.queue, m.decisions, m.pending)
	}
	return m
}
