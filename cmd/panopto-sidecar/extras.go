package main

import (
	"github.com/prometheus/client_golang/prometheus"
)

// extras are the sidecar-level parts that are not the proxy's: Vault, and
// the reload metrics.
type extras struct {
	vault   vaultState
	reloads *prometheus.CounterVec
}

func newExtras() *extras {
	return &extras{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "panopto_sidecar_config_reloads_total",
			Help: "Config reloads by result (ok, invalid, unchanged).",
		}, []string{"result"}),
	}
}

func (e *extras) registerMetrics(s *sidecar) {
	reg := s.metrics.Registry
	reg.MustRegister(e.reloads)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "panopto_sidecar_config_generation",
		Help: "Generation of the config in force (1 at start, +1 per applied reload).",
	}, func() float64 { return float64(s.generation.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "panopto_sidecar_vault_up",
		Help: "1 when the Vault client is authenticated and Vault answered its last call, 0 when not, -1 when Vault is not used.",
	}, func() float64 {
		e.vault.mu.Lock()
		c := e.vault.client
		e.vault.mu.Unlock()
		if c == nil {
			return -1
		}
		st := c.Status()
		if st.Authenticated && st.Reachable && !st.Sealed {
			return 1
		}
		return 0
	}))
}

func (e *extras) status() map[string]any {
	out := map[string]any{}
	if v := e.vault.status(); v != nil {
		out["vault"] = v
	}
	return out
}

func (e *extras) close() { e.vault.close() }

// detachVault takes the current Vault client out, so a new one can be built.
func (e *extras) detachVault() *vaultState {
	v := &e.vault
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client == nil {
		return nil
	}
	old := &vaultState{cfg: v.cfg, client: v.client, creds: v.creds, cancel: v.cancel}
	v.client, v.creds, v.cancel = nil, nil, nil
	return old
}

// restoreVault puts a detached client back after a failed rebuild.
func (e *extras) restoreVault(old *vaultState) {
	v := &e.vault
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cancel != nil {
		v.cancel()
	}
	if v.client != nil && v.client != old.client {
		v.client.Close()
	}
	v.cfg, v.client, v.creds, v.cancel = old.cfg, old.client, old.creds, old.cancel
}
