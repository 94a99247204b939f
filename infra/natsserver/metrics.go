package natsserver

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the embedded server's own counters, read at each scrape:
// how many messages it received and sent (every hop through NATS, JetStream's
// internal traffic included) and how many messages JetStream ever stored.
// The bench divides them by the messages it delivered.
type collector struct {
	s                   *server.Server
	inMsgs, outMsgs     *prometheus.Desc
	stored, streamCount *prometheus.Desc
}

// NewCollector returns a Prometheus collector of s's message counters:
//
//	messenger_nats_in_msgs_total            messages received (Varz.InMsgs)
//	messenger_nats_out_msgs_total           messages sent (Varz.OutMsgs)
//	messenger_jetstream_stored_msgs_total   every message ever stored: the sum over
//	                                        all streams (KV buckets included) of their
//	                                        last sequence, so removals and purges do
//	                                        not lower it (a deleted stream does)
//	messenger_jetstream_streams             streams, KV buckets included
//
// A scrape costs one Varz and one Jsz with stream states (no consumers, no
// configs): a few microseconds per stream.
func NewCollector(s *server.Server) prometheus.Collector {
	return &collector{
		s:           s,
		inMsgs:      prometheus.NewDesc("messenger_nats_in_msgs_total", "Messages the embedded NATS server received (clients, JetStream's internal ones included).", nil, nil),
		outMsgs:     prometheus.NewDesc("messenger_nats_out_msgs_total", "Messages the embedded NATS server sent.", nil, nil),
		stored:      prometheus.NewDesc("messenger_jetstream_stored_msgs_total", "Messages ever stored by JetStream: the sum of every stream's last sequence, KV buckets included.", nil, nil),
		streamCount: prometheus.NewDesc("messenger_jetstream_streams", "JetStream streams, KV buckets included.", nil, nil),
	}
}

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inMsgs
	ch <- c.outMsgs
	ch <- c.stored
	ch <- c.streamCount
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if v, err := c.s.Varz(nil); err == nil {
		ch <- prometheus.MustNewConstMetric(c.inMsgs, prometheus.CounterValue, float64(v.InMsgs))
		ch <- prometheus.MustNewConstMetric(c.outMsgs, prometheus.CounterValue, float64(v.OutMsgs))
	}
	jsz, err := c.s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil || jsz.Disabled {
		return
	}
	var stored uint64
	var streams int
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			stored += st.State.LastSeq
			streams++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.stored, prometheus.CounterValue, float64(stored))
	ch <- prometheus.MustNewConstMetric(c.streamCount, prometheus.GaugeValue, float64(streams))
}
