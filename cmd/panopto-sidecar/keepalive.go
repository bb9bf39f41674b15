package main

import (
	"context"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/prometheus/client_golang/prometheus"
)

// keepAlive builds the accounts' keep-alive (accounts.keep_alive) when
// accounts are on and the store can list them, and registers its counter.
// It runs whatever keep_alive says at the start, so a reload may turn it on
// or off.
func (s *sidecar) keepAlive(cfg *config.Config) *token.KeepAlive {
	l, ok := s.store.(token.Lister)
	if !ok || accountsMode(cfg) == token.AccountsOff {
		return nil
	}
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "panopto_sidecar_keepalive_refreshes_total",
		Help: "Keep-alive refreshes of idle accounts' grants, by result (ok, skipped: refreshed elsewhere meanwhile, refused: the account must connect again, error: retried at the next sweep).",
	}, []string{"result"})
	for _, r := range []string{token.KeepAliveOK, token.KeepAliveSkipped, token.KeepAliveRefused, token.KeepAliveError} {
		refreshes.WithLabelValues(r)
	}
	s.metrics.Registry.MustRegister(refreshes)
	return token.NewKeepAlive(s.accounts, l, keepAliveSettings(cfg), func(r string) { refreshes.WithLabelValues(r).Inc() },
		s.log.With("component", "keepalive"))
}

func keepAliveSettings(cfg *config.Config) token.KeepAliveSettings {
	return token.KeepAliveSettings{After: cfg.Accounts.KeepAlive.D(), Rate: cfg.Accounts.KeepAliveRate}
}

// disconnected lists the accounts that must connect again, or is nil when
// the store cannot list its accounts.
func (s *sidecar) disconnected() func(ctx context.Context, after string, limit int) ([]string, string, error) {
	l, ok := s.store.(token.Lister)
	if !ok {
		return nil
	}
	return func(ctx context.Context, after string, limit int) ([]string, string, error) {
		return token.Disconnected(ctx, s.store, l, after, limit)
	}
}
