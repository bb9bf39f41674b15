package config

import "time"

// validateKeepAlive checks accounts.keep_alive and keep_alive_rate. A
// keep_alive of seconds is allowed (tests, trials): the rate bounds the load
// on Panopto whatever the value.
func (c *Config) validateKeepAlive(v *validator) {
	a := c.Accounts
	switch {
	case a.KeepAlive < 0:
		v.problemf("accounts.keep_alive", "must be >= 0 (0: off)")
	case a.KeepAlive > 0 && a.KeepAlive < Duration(time.Second):
		v.problemf("accounts.keep_alive", "must be 0 (off) or at least 1s; got %s", time.Duration(a.KeepAlive))
	case a.KeepAlive > 0 && a.KeepAlive <= c.OAuth.RefreshBefore:
		v.problemf("accounts.keep_alive", "must exceed oauth.refresh_before (%s); got %s", time.Duration(c.OAuth.RefreshBefore), time.Duration(a.KeepAlive))
	case a.KeepAlive > 0 && c.Accounts.Mode == AccountsOff:
		v.problemf("accounts.keep_alive", "keeps accounts' grants alive: it needs accounts.mode idp or login")
	}
	if !(a.KeepAliveRate > 0 && a.KeepAliveRate <= 1000) {
		v.problemf("accounts.keep_alive_rate", "must be within (0, 1000] refreshes per second; got %g", a.KeepAliveRate)
	}
}
