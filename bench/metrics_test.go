package bench

import (
	"math"
	"net/http"
	"sort"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families is one scrape of a process's /metrics.
type families map[string]*dto.MetricFamily

// scrape reads a process's /metrics.
func scrape(b *testing.B, base string) families {
	b.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatalf("GET %s/metrics: %v", base, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("parse %s/metrics: %v", base, err)
	}
	return mf
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// counter sums name's counter series matching labels (nil: all of them).
func counter(mf families, name string, labels map[string]string) float64 {
	s := 0.0
	if f := mf[name]; f != nil {
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				s += m.GetCounter().GetValue()
			}
		}
	}
	return s
}

// buckets sums the cumulative bucket counts (upper bound → count) of name's series
// matching labels, and their sample count.
func buckets(mf families, name string, labels map[string]string) (map[float64]float64, float64) {
	out, n := map[float64]float64{}, 0.0
	if f := mf[name]; f != nil {
		for _, m := range f.GetMetric() {
			if !matches(m, labels) {
				continue
			}
			h := m.GetHistogram()
			n += float64(h.GetSampleCount())
			for _, bk := range h.GetBucket() {
				out[bk.GetUpperBound()] += float64(bk.GetCumulativeCount())
			}
		}
	}
	return out, n
}

func histCount(mf families, name string, labels map[string]string) float64 {
	_, n := buckets(mf, name, labels)
	return n
}

// quantile is histogram_quantile over the bucket deltas between two scrapes: linear
// within the bucket holding the rank; past the last finite bound it is that bound.
func quantile(before, after families, name string, labels map[string]string, q float64) float64 {
	b0, n0 := buckets(before, name, labels)
	b1, n1 := buckets(after, name, labels)
	total := n1 - n0
	if total <= 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(b1))
	for ub := range b1 {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	rank := q * total
	lower, prev := 0.0, 0.0
	for _, ub := range bounds {
		c := b1[ub] - b0[ub]
		if c >= rank {
			if c == prev {
				return ub
			}
			return lower + (ub-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = ub, c
	}
	return lower // in the +Inf bucket
}
