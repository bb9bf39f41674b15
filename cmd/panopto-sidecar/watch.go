package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

// newWatcher builds the upload watch over the token store, asking Panopto
// as each upload's account through the same transport as the proxy.
func (s *sidecar) newWatcher(cfg *config.Config, tr http.RoundTripper, tune func(*watch.Options)) (*watch.Watcher, error) {
	st, ok := s.store.(watch.Store)
	if !ok {
		return nil, errors.New("token_store: the store cannot keep upload watches (it cannot list or delete keys)")
	}
	o := watch.Options{
		Store:     st,
		Panopto:   proxy.WatchPanopto(s.accounts, tr, s.upstreamNow, s.log.With("component", "upload")),
		Holder:    s.holder,
		WatchFor:  cfg.Uploads.WatchFor.D(),
		Retention: cfg.Uploads.Retention.D(),
		Log:       s.log,
	}
	if tune != nil {
		tune(&o)
	}
	w := watch.New(o)
	setSender(w, s.webhookSender(cfg))
	registerWatchMetrics(s.metrics.Registry, w)
	return w, nil
}

func (s *sidecar) upstreamNow() *url.URL { return s.cfg.Load().UpstreamURL() }

// webhookSender is the sender of uploads.webhook_url; nil without one.
func (s *sidecar) webhookSender(cfg *config.Config) *webhook.Sender {
	if cfg.Uploads.WebhookURL == "" {
		return nil
	}
	return &webhook.Sender{URL: cfg.Uploads.WebhookURL, Secret: s.webhookSecret, Log: s.log.With("component", "webhook")}
}

// setSender turns w's webhooks on with snd, or off when snd is nil.
func setSender(w *watch.Watcher, snd *webhook.Sender) {
	if snd == nil {
		w.SetSender(nil) // not a nil *webhook.Sender in the interface
		return
	}
	w.SetSender(snd)
}

// webhookSecrets is a credential source that also holds the webhook
// signing secret (*vault.Credentials).
type webhookSecrets interface {
	WebhookSecret(ctx context.Context) (token.Secret, error)
}

// webhookSecret is the signing secret in force, read at every attempt:
// from the Vault credentials (a rotated secret signs the next attempt), or
// $PANOPTO_SIDECAR_WEBHOOK_SECRET with env credentials.
func (s *sidecar) webhookSecret(ctx context.Context) (token.Secret, error) {
	if ws, ok := s.creds.Source().(webhookSecrets); ok {
		return ws.WebhookSecret(ctx)
	}
	v := s.getenv(webhook.SecretEnv)
	if err := webhook.CheckSecret(v); err != nil {
		return "", fmt.Errorf("$%s: %w", webhook.SecretEnv, err)
	}
	return token.Secret(v), nil
}

// registerWatchMetrics exposes the watch's counts.
func registerWatchMetrics(reg prometheus.Registerer, w *watch.Watcher) {
	for _, c := range []struct {
		name, help string
		get        func(watch.Stats) int64
	}{
		{"panopto_sidecar_upload_watch_polls_total", "sessionUpload reads by the upload watch.", func(s watch.Stats) int64 { return s.Polls }},
		{"panopto_sidecar_upload_watch_poll_errors_total", "sessionUpload reads by the upload watch that failed.", func(s watch.Stats) int64 { return s.PollErrors }},
		{"panopto_sidecar_upload_watch_completed_total", "Watched uploads seen reach Complete.", func(s watch.Stats) int64 { return s.Completed }},
		{"panopto_sidecar_upload_watch_failed_total", "Watched uploads seen end in another final state.", func(s watch.Stats) int64 { return s.Failed }},
		{"panopto_sidecar_upload_watch_ran_out_total", "Upload watches ended by uploads.watch_for before a final state.", func(s watch.Stats) int64 { return s.RanOut }},
		{"panopto_sidecar_upload_watch_swept_total", "Finished uploads and idempotency keys deleted past their time.", func(s watch.Stats) int64 { return s.Swept }},
		{"panopto_sidecar_webhooks_delivered_total", "Webhook messages delivered (2xx).", func(s watch.Stats) int64 { return s.Delivered }},
		{"panopto_sidecar_webhook_attempts_failed_total", "Webhook delivery attempts that failed (retried later).", func(s watch.Stats) int64 { return s.FailedAttempts }},
		{"panopto_sidecar_webhooks_given_up_total", "Webhook messages dropped, not delivered in 24 hours.", func(s watch.Stats) int64 { return s.GivenUp }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.get(w.Stats())) }))
	}
}

// watchStatus is the uploads part of /-/status: the watch's counts since
// the start and whether webhooks are on (the URL is left out).
func (s *sidecar) watchStatus(cfg *config.Config) map[string]any {
	st := s.watcher.Stats()
	return map[string]any{
		"webhooks": cfg.Uploads.WebhookURL != "",
		"polls":    st.Polls, "poll_errors": st.PollErrors,
		"completed": st.Completed, "failed": st.Failed, "ran_out": st.RanOut,
		"webhooks_delivered": st.Delivered, "webhook_attempts_failed": st.FailedAttempts, "webhooks_given_up": st.GivenUp,
	}
}
