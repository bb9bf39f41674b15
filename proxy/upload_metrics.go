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
	busy      prometheus.Counter
	// The memory budget of part buffers.
	buffers prometheus.Gauge
	inUse   prometheus.Gauge
	limit   prometheus.Gauge
	waiting prometheus.Gauge
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
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_uploads_busy_total",
			Help: "One-request uploads refused with 503 uploads_busy: no part buffer came free within uploads.queue_timeout.",
		}),
		buffers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "panopto_sidecar_upload_buffers_in_use",
			Help: "Part buffers held by uploads in progress.",
		}),
		inUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "panopto_sidecar_upload_memory_bytes_in_use",
			Help: "Bytes of uploads.memory_limit taken: part buffers held by uploads and idle ones kept for the next (let go after a minute).",
		}),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "panopto_sidecar_upload_memory_limit_bytes",
			Help: "uploads.memory_limit: the budget of every upload's part buffers.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "panopto_sidecar_uploads_waiting",
			Help: "Uploads waiting for their first part buffer, first come first served.",
		}),
	}
	reg.MustRegister(m.started, m.completed, m.failed, m.bytes, m.busy, m.buffers, m.inUse, m.limit, m.waiting)
	return m
}

// uploadBudget shows the upload memory budget's state (its Observe hook).
func (m *Metrics) uploadBudget(s upload.BudgetStats) {
	u := m.uploads
	u.buffers.Set(float64(s.Buffers))
	u.inUse.Set(float64(s.InUse + s.Idle))
	u.limit.Set(float64(s.Limit))
	u.waiting.Set(float64(s.Waiting))
}

func (m *Metrics) uploadHooks() upload.Hooks {
	u := m.uploads
	return upload.Hooks{
		Started:   u.started.Inc,
		Completed: u.completed.Inc,
		Failed:    func(reason string) { u.failed.WithLabelValues(reason).Inc() },
		Bytes:     func(n int64) { u.bytes.Add(float64(n)) },
		Busy:      u.busy.Inc,
	}
}
