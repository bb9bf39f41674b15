package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/fsnotify/fsnotify"
)

const reloadDebounce = 200 * time.Millisecond

// watch reloads the config when its directory changes (editors rename files;
// Kubernetes ConfigMaps swap a ..data symlink, so the file itself is never
// written) or on SIGHUP, until ctx ends.
func (s *sidecar) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("config watch unavailable; reload with SIGHUP", "err", err)
	} else {
		defer w.Close()
		dir := filepath.Dir(s.path)
		if err := w.Add(dir); err != nil {
			s.log.Warn("config watch unavailable; reload with SIGHUP", "err", err, "dir", dir)
		} else {
			events, errs = w.Events, w.Errors
		}
	}
	var debounce *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.log.Info("SIGHUP: reloading config")
			s.reload(ctx)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !s.relevant(ev) {
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
			s.log.Warn("config watch error", "err", err)
		case <-fire:
			fire = nil
			s.reload(ctx)
		}
	}
}

// relevant reports whether a directory event may have changed the config:
// the file itself, or a Kubernetes-style ..data / timestamped directory swap.
func (s *sidecar) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return base == filepath.Base(s.path) || strings.HasPrefix(base, "..")
}

// reload reads, validates and applies the config file. An invalid file is
// logged with every problem and the config in force stays.
func (s *sidecar) reload(ctx context.Context) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := time.Now()
	s.reloadAt.Store(&now)
	next, err := config.Load(s.path, s.getenv)
	if err != nil {
		msg := err.Error()
		s.reloadErr.Store(&msg)
		s.extras.reloads.WithLabelValues("invalid").Inc()
		s.log.Error("config reload rejected; the previous config stays in force", "err", err,
			"generation", s.generation.Load())
		return
	}
	cur := s.cfg.Load()
	eff, restart := s.keepRestartOnly(cur, next)
	if reflect.DeepEqual(cur, eff) {
		s.reloadErr.Store(nil)
		s.extras.reloads.WithLabelValues("unchanged").Inc()
		if len(restart) > 0 {
			s.log.Warn("config unchanged but for settings that take effect only after a restart", "keys", strings.Join(restart, ", "))
		}
		return
	}
	if err := s.apply(ctx, cur, eff); err != nil {
		msg := err.Error()
		s.reloadErr.Store(&msg)
		s.extras.reloads.WithLabelValues("invalid").Inc()
		s.log.Error("config reload could not be applied; the previous config stays in force", "err", err)
		return
	}
	s.cfg.Store(eff)
	gen := s.generation.Add(1)
	s.reloadErr.Store(nil)
	s.extras.reloads.WithLabelValues("ok").Inc()
	s.log.Info("config reloaded", "generation", gen, "took", time.Since(now))
	if len(restart) > 0 {
		s.log.Warn("some changed settings take effect only after a restart; they were not applied", "keys", strings.Join(restart, ", "))
	}
}

// keepRestartOnly returns next with the settings that need a restart kept
// as they are now, so nothing is half-applied, and the keys it kept back.
func (s *sidecar) keepRestartOnly(cur, next *config.Config) (*config.Config, []string) {
	eff := *next
	var kept []string
	keep := func(key string, changed bool, restore func()) {
		if changed {
			kept = append(kept, key)
			restore()
		}
	}
	keep("listen", eff.Listen != cur.Listen, func() { eff.Listen = cur.Listen })
	keep("tls", !reflect.DeepEqual(eff.TLS, cur.TLS), func() { eff.TLS = cur.TLS })
	keep("inbound.client_ca_file", eff.Inbound.ClientCAFile != cur.Inbound.ClientCAFile, func() { eff.Inbound.ClientCAFile = cur.Inbound.ClientCAFile })
	keep("timeouts", !reflect.DeepEqual(eff.Timeouts, cur.Timeouts), func() { eff.Timeouts = cur.Timeouts })
	keep("upstream_ca_file", eff.UpstreamCAFile != cur.UpstreamCAFile, func() { eff.UpstreamCAFile = cur.UpstreamCAFile })
	keep("token_store", eff.TokenStore != cur.TokenStore, func() { eff.TokenStore = cur.TokenStore })
	keep("accounts.mode", eff.Accounts.Mode != cur.Accounts.Mode, func() { eff.Accounts.Mode = cur.Accounts.Mode })
	keep("log.format", eff.Log.Format != cur.Log.Format, func() { eff.Log.Format = cur.Log.Format })
	if cur.TokenStore.Type == "vault" {
		// The token store holds its Vault connection for the process's life.
		keep("vault (used by the token store)", !reflect.DeepEqual(eff.Vault, cur.Vault), func() { eff.Vault = cur.Vault })
	}
	return &eff, kept
}

// apply makes next the live config: credentials first (they can fail), then
// the token endpoints, the proxy options and the log level.
func (s *sidecar) apply(ctx context.Context, cur, next *config.Config) error {
	vaultChanged := !reflect.DeepEqual(cur.Vault, next.Vault)
	if !reflect.DeepEqual(cur.Credentials, next.Credentials) || vaultChanged {
		var old *vaultState
		if vaultChanged {
			// Build a new Vault client for the credentials; the old one
			// is closed once the new source is in place.
			old = s.extras.detachVault()
		}
		src, err := s.credentialSource(ctx, next)
		if err != nil {
			if old != nil {
				s.extras.restoreVault(old)
			}
			return err
		}
		s.creds.Store(&credentialsHolder{src})
		if old != nil {
			old.close()
		}
	}
	s.accounts.Update(poolSettings(next))
	s.handler.Update(s.proxyOptions(next))
	s.level.Set(parseLevel(next.Log.Level))
	return nil
}
