package main

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

const reloadDebounce = 200 * time.Millisecond

// reloader holds the config in force and the record of reloading it: the
// generation (1 at start, +1 per applied reload), the last reload's time
// and error, and the reload metrics. One reload runs at a time.
type reloader struct {
	path   string
	env    func(string) string
	logger *slog.Logger

	mu         sync.Mutex // one reload at a time
	cfg        atomic.Pointer[config.Config]
	generation atomic.Int64
	lastErr    atomic.Pointer[string]
	lastAt     atomic.Pointer[time.Time]
	reloads    *prometheus.CounterVec

	// secretTried is the digest of the secret files' content last seen
	// differ from the config in force; see secretsChanged.
	secretTried [sha256.Size]byte
}

// applyFunc makes next the live config, or fails and changes nothing.
type applyFunc func(ctx context.Context, cur, next *config.Config) error

func newReloader(path string, getenv func(string) string, cfg *config.Config, logger *slog.Logger) *reloader {
	r := &reloader{
		path:   path,
		env:    getenv,
		logger: logger,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_config_reloads_total",
			Help: "Config reloads by result (ok, invalid, unchanged).",
		}, []string{"result"}),
	}
	r.cfg.Store(cfg)
	r.generation.Store(1)
	return r
}

// register adds the reload metrics to reg.
func (r *reloader) register(reg prometheus.Registerer) {
	reg.MustRegister(r.reloads)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "panopto_sidecar_config_generation",
		Help: "Generation of the config in force (1 at start, +1 per applied reload).",
	}, func() float64 { return float64(r.generation.Load()) }))
}

// status is the config part of /-/status; last_reload_at is left out until
// a reload has been tried.
func (r *reloader) status() map[string]any {
	var msg string
	if p := r.lastErr.Load(); p != nil {
		msg = *p
	}
	out := map[string]any{
		"path":              r.path,
		"generation":        r.generation.Load(),
		"last_reload_error": msg,
	}
	if p := r.lastAt.Load(); p != nil {
		out["last_reload_at"] = *p
	}
	return out
}

// failed records a reload that left the config in force as it was.
func (r *reloader) failed(err error) {
	msg := err.Error()
	r.lastErr.Store(&msg)
	r.reloads.WithLabelValues("invalid").Inc()
}

// watch puts in place the watches that reload the config: on a change to
// its directory (editors rename files; Kubernetes ConfigMaps swap a ..data
// symlink, so the file itself is never written), to a file holding a
// secret, or on SIGHUP. The watches are in place when it returns, so a
// change made once the sidecar answers is seen (and a SIGHUP does not kill
// it). The returned run reloads until ctx ends, then releases the watches;
// the caller must call it, and owns the goroutine it runs in.
func (r *reloader) watch(apply applyFunc) (run func(ctx context.Context)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.logger.Warn("config watch unavailable; reload with SIGHUP", "err", err)
	} else {
		dir := filepath.Dir(r.path)
		if err := w.Add(dir); err != nil {
			r.logger.Warn("config watch unavailable; reload with SIGHUP", "err", err, "dir", dir)
		} else {
			events, errs = w.Events, w.Errors
		}
	}
	return func(ctx context.Context) {
		defer signal.Stop(hup)
		if w != nil {
			defer w.Close()
		}
		r.loop(ctx, apply, hup, events, errs)
	}
}

func (r *reloader) loop(ctx context.Context, apply applyFunc, hup <-chan os.Signal, events <-chan fsnotify.Event, errs <-chan error) {
	secrets := time.NewTicker(secretPoll)
	defer secrets.Stop()
	var debounce *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.logger.Info("SIGHUP: reloading config")
			r.reload(ctx, apply)
		case <-secrets.C:
			if r.secretsChanged() {
				r.logger.Info("a file holding a secret changed: reloading config")
				r.reload(ctx, apply)
			}
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !r.relevant(ev) {
				continue
			}
			if debounce == nil {
				debounce = time.NewTimer(reloadDebounce)
			} else {
				debounce.Reset(reloadDebounce)
			}
			fire = debounce.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.logger.Warn("config watch error", "err", err)
		case <-fire:
			fire = nil
			r.reload(ctx, apply)
		}
	}
}

// relevant reports whether a directory event may have changed the config:
// the file itself, or a Kubernetes-style ..data / timestamped directory swap.
func (r *reloader) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return base == filepath.Base(r.path) || strings.HasPrefix(base, "..")
}

// reload reads, validates and applies the config file. An invalid file is
// logged with every problem and the config in force stays.
func (r *reloader) reload(ctx context.Context, apply applyFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.lastAt.Store(&now)
	next, err := config.Load(r.path, r.env)
	if err != nil {
		r.failed(err)
		r.logger.Error("config reload rejected; the previous config stays in force", "err", err,
			"generation", r.generation.Load())
		return
	}
	cur := r.cfg.Load()
	eff, restart := config.KeepRestartOnly(cur, next)
	if reflect.DeepEqual(cur, eff) {
		r.lastErr.Store(nil)
		r.reloads.WithLabelValues("unchanged").Inc()
		if len(restart) > 0 {
			r.logger.Warn("config unchanged but for settings that take effect only after a restart", "keys", strings.Join(restart, ", "))
		}
		return
	}
	if err := apply(ctx, cur, eff); err != nil {
		r.failed(err)
		r.logger.Error("config reload could not be applied; the previous config stays in force", "err", err)
		return
	}
	r.cfg.Store(eff)
	gen := r.generation.Add(1)
	r.lastErr.Store(nil)
	r.reloads.WithLabelValues("ok").Inc()
	// Key names only: a value never reaches the log, whatever the key holds.
	r.logger.Info("config reloaded", "generation", gen, "changed", config.Changed(cur, eff), "dur", time.Since(now))
	if len(restart) > 0 {
		r.logger.Warn("some changed settings take effect only after a restart; they were not applied", "keys", strings.Join(restart, ", "))
	}
}

// apply makes next the live config: credentials first (they can fail), then
// the token endpoints, the proxy options and the log level.
func (s *sidecar) apply(ctx context.Context, cur, next *config.Config) error {
	vaultChanged := !reflect.DeepEqual(cur.Vault, next.Vault)
	if vaultChanged || !reflect.DeepEqual(cur.Credentials, next.Credentials) {
		// A changed vault: section gets a new Vault client; the one in
		// force stays when the new one cannot be built.
		src, err := s.credentialSource(ctx, next, vaultChanged)
		if err != nil {
			return err
		}
		s.creds.Swap(src)
	}
	s.accounts.Update(poolSettings(next))
	if s.keepalive != nil {
		s.keepalive.Update(keepAliveSettings(next))
	}
	s.handler.Update(s.proxyOptions(next))
	setSender(s.watcher, s.webhookSender(next))
	s.level.Set(parseLevel(next.Log.Level))
	return nil
}
