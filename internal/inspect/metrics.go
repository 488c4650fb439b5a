package inspect

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the invalidator's sampled check's counters, all prefixed
// sessionguard_invalidator_inspect_. Registered at start, they read 0
// until a check counts. A nil *Metrics records nothing.
type Metrics struct {
	checked       prometheus.Counter
	disagreements *prometheus.CounterVec
	errors        prometheus.Counter
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "sessionguard_invalidator", "inspect"
	m := &Metrics{
		checked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "checked_total",
			Help: "Cache entries the sampled check compared with their Postgres rows."}),
		disagreements: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "disagreements_total",
			Help: "Cache entries that still disagreed with Postgres after the grace (INSPECT_GRACE plus 0.5s) under a watermark past their first sighting, by kind (negative: a valid session refused; the others: an answer Postgres would not give)."}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Sampled checks that could not read Redis or Postgres."}),
	}
	for _, k := range Kinds() {
		m.disagreements.WithLabelValues(string(k))
	}
	reg.MustRegister(m.checked, m.disagreements, m.errors)
	return m
}

func (m *Metrics) round(r Report) {
	if m != nil {
		m.checked.Add(float64(r.Checked))
	}
}

func (m *Metrics) disagreement(k Kind) {
	if m != nil {
		m.disagreements.WithLabelValues(string(k)).Inc()
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.errors.Inc()
	}
}
