package readapi

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "convsync_api_request_duration_seconds",
			Help:    "Read API request time by route and status code.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"route", "code"}),
	}
	reg.MustRegister(m.requests)
	return m
}
