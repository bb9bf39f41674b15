package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the sidecar's Prometheus metrics, on their own registry so
// several sidecars can live in one process (tests).
type Metrics struct {
	Registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	refreshes   *prometheus.CounterVec
	expiry      prometheus.Gauge
	retries     *prometheus.CounterVec
	throttled   prometheus.Counter
	unretryable prometheus.Counter
	uploads     *uploadMetrics

	// Children looked up once per route and code: WithLabelValues hashes
	// its labels on every call.
	counters   sync.Map // routeCode -> prometheus.Counter
	histograms sync.Map // route -> prometheus.Observer
}

type routeCode struct {
	route string
	code  int
}

func (m *Metrics) child(route string, code int) prometheus.Counter {
	k := routeCode{route, code}
	if c, ok := m.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.counters.LoadOrStore(k, m.requests.WithLabelValues(route, strconv.Itoa(code)))
	return c.(prometheus.Counter)
}

func (m *Metrics) histogram(route string) prometheus.Observer {
	if h, ok := m.histograms.Load(route); ok {
		return h.(prometheus.Observer)
	}
	h, _ := m.histograms.LoadOrStore(route, m.duration.WithLabelValues(route))
	return h.(prometheus.Observer)
}

// NewMetrics registers the proxy's metrics and the Go runtime's.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_requests_total",
			Help: "Requests handled, by route prefix (or endpoint) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "panopto_sidecar_request_duration_seconds",
			Help:    "Time to answer a proxied request, by route prefix.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_token_refreshes_total",
			Help: "Token refresh attempts by result (ok, adopted, transient, invalid_grant, invalid_client, store_error).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "panopto_sidecar_token_expiry_timestamp_seconds",
			Help: "Unix time at which the held access token expires (0: none held).",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_upstream_auth_retries_total",
			Help: "Requests retried after the upstream refused the bearer, by outcome.",
		}, []string{"outcome"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_upstream_throttled_total",
			Help: "Upstream 429 answers passed through.",
		}),
		unretryable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "panopto_sidecar_upstream_auth_unretryable_total",
			Help: "Upstream 401/403 answers to a request whose body could not be replayed, passed through.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.refreshes, m.expiry, m.retries, m.throttled, m.unretryable,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.uploads = newUploadMetrics(reg)
	return m
}

// RefreshResult counts one refresh attempt (a Manager hook).
func (m *Metrics) RefreshResult(result string) { m.refreshes.WithLabelValues(result).Inc() }

// TokenExpiry records the held token's expiry (a Manager hook).
func (m *Metrics) TokenExpiry(t time.Time) {
	if t.IsZero() {
		m.expiry.Set(0)
		return
	}
	m.expiry.Set(float64(t.UnixNano()) / 1e9)
}

// observe counts one answered request by route and status, and its
// duration by route.
func (m *Metrics) observe(route string, code int, d time.Duration) {
	m.child(route, code).Inc()
	m.histogram(route).Observe(d.Seconds())
}
