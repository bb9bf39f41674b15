package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/internal/upstream"
)

// TransportOptions size the connection pool to the upstream.
type TransportOptions struct {
	RootCAs         *x509.CertPool // nil: system roots
	DialTimeout     time.Duration
	ResponseHeaders time.Duration // time to the upstream's response headers
	MaxIdlePerHost  int
}

// NewTransport returns the transport to the upstream: HTTP/1.1 over TCP or
// TLS >= 1.2, a keep-alive pool sized for a busy OnTrack, and timeouts on
// every phase that does not carry a body. Requests are sent on the
// caller's goroutine (see package proxy/internal/upstream); upgrades go
// through net/http's Transport.
func NewTransport(o TransportOptions) http.RoundTripper {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.ResponseHeaders <= 0 {
		o.ResponseHeaders = 60 * time.Second
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 256
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs}
	return upstream.New(upstream.Options{
		Dialer:                d,
		TLSConfig:             tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.ResponseHeaders,
		IdleConnTimeout:       90 * time.Second,
		MaxIdlePerHost:        o.MaxIdlePerHost,
		Fallback: &http.Transport{
			Proxy:                 nil, // never through an environment proxy: only the upstream is contacted
			DialContext:           d.DialContext,
			TLSClientConfig:       tlsConfig,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: o.ResponseHeaders,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		},
	})
}
