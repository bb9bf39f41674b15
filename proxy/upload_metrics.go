package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/upload"
)

// uploadMetrics count one-request uploads (POST /-/uploads).
type uploadMetrics struct {
	started   prometheus.Counter
	completed prometheus.Counter
	failed    *prometheus.CounterVec
	bytes     prometheus.Counter
}

func newUploadMetrics(reg prometheus.Registerer) *uploadMetrics {
	m := &uploadMetrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_uploads_started_total",
			Help: "One-request uploads that began sending to Panopto.",
		}),
		completed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_uploads_completed_total",
			Help: "One-request uploads handed to Panopto for processing (State=1).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_uploads_failed_total",
			Help: "One-request uploads that failed after they began, by reason; each was aborted and cancelled at Panopto.",
		}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_upload_bytes_total",
			Help: "Bytes of one-request uploads accepted by Panopto's upload target.",
		}),
	}
	reg.MustRegister(m.started, m.completed, m.failed, m.bytes)
	return m
}

func (m *Metrics) uploadHooks() upload.Hooks {
	u := m.uploads
	return upload.Hooks{
		Started:   u.started.Inc,
		Completed: u.completed.Inc,
		Failed:    func(reason string) { u.failed.WithLabelValues(reason).Inc() },
		Bytes:     func(n int64) { u.bytes.Add(float64(n)) },
	}
}
