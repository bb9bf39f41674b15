package main

import (
	"errors"
	"fmt"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

var _ proxy.Accounts = (*token.Pool)(nil)

// poolOptions turns the config into the token managers' pool options.
func (s *sidecar) poolOptions(cfg *config.Config) (token.PoolOptions, error) {
	var grant token.GrantType
	var mode token.AccountsMode
	if err := errors.Join(grant.UnmarshalText([]byte(cfg.OAuth.Grant)), mode.UnmarshalText([]byte(cfg.Accounts.Mode))); err != nil {
		return token.PoolOptions{}, fmt.Errorf("config: %w", err)
	}
	return token.PoolOptions{
		Store:        s.store,
		Holder:       s.holder,
		Credentials:  s.creds,
		HTTPClient:   s.tokenHTTP,
		Logger:       s.log.With("component", "oauth"),
		Hooks:        token.Hooks{Refresh: s.metrics.RefreshResult, Expiry: s.metrics.TokenExpiry},
		Grant:        grant,
		Mode:         mode,
		Timing:       s.timing,
		PoolSettings: poolSettings(cfg),
	}, nil
}

// poolSettings is the part of the pool options a reload may change.
func poolSettings(cfg *config.Config) token.PoolSettings {
	return token.PoolSettings{
		Endpoint:  endpointFrom(cfg),
		Provider:  cfg.Accounts.Provider,
		MaxCached: cfg.Accounts.MaxCache,
		IdleEvict: cfg.Accounts.IdleEvict.D(),
	}
}

// accountsMode is the config's accounts.mode; config validation has
// refused any other value, so an unknown one cannot reach here.
func accountsMode(cfg *config.Config) token.AccountsMode {
	var mode token.AccountsMode
	_ = mode.UnmarshalText([]byte(cfg.Accounts.Mode))
	return mode
}
