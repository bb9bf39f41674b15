package vault

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"github.com/hashicorp/vault/api"
)

// The login loop: log in, keep the token alive (renew it, follow token_file,
// notice when Vault refuses it), log in again when it can no longer be used.

const (
	// verifyEvery rate-limits token checks triggered by denied calls.
	verifyEvery = 5 * time.Second
	// tokenFilePoll is how often token_file is checked for a new token.
	tokenFilePoll = time.Second
)

func (c *Client) setAuthenticated(ok bool, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Authenticated = ok
	c.st.TokenExpiresAt = expires
}

// run logs in, holds the token while it is good, and logs in again when it
// is not, with exponential backoff and jitter between failed attempts.
func (c *Client) run(ctx context.Context) {
	failures := 0 // consecutive failed logins
	for ctx.Err() == nil {
		sec, err := c.doLogin(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := backoff.Delay(failures, time.Second, time.Minute)
			failures++
			c.logger.Warn("vault login failed; retrying", "err", err, "method", c.method, "retry_in", d.Round(time.Millisecond))
			if !c.sleep(ctx, d) {
				return
			}
			continue
		}
		failures = 0
		reason := c.hold(ctx, sec)
		if ctx.Err() != nil {
			return
		}
		c.logger.Info("vault token needs replacing; logging in again", "reason", reason)
	}
}

// doLogin performs one login and records it.
func (c *Client) doLogin(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// login makes Vault's errors safe itself; file errors are local.
	sec, err := c.auth.login(ctx, c)
	c.observe(err)
	if err != nil {
		c.setAuthenticated(false, time.Time{})
		return nil, err
	}
	c.api.SetToken(sec.Auth.ClientToken)
	var exp time.Time
	if sec.Auth.LeaseDuration > 0 {
		exp = time.Now().Add(time.Duration(sec.Auth.LeaseDuration) * time.Second)
	}
	c.mu.Lock()
	c.st.Logins++
	c.st.Authenticated = true
	c.st.TokenExpiresAt = exp
	n := c.st.Logins
	c.mu.Unlock()
	c.logger.Info("vault login", "method", c.method, "renewable", sec.Auth.Renewable,
		"ttl", time.Duration(sec.Auth.LeaseDuration)*time.Second, "logins", n)
	return sec, nil
}

// hold keeps the token alive until it can no longer be used, and says why.
func (c *Client) hold(ctx context.Context, sec *api.Secret) string {
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	_, isToken := c.auth.(*tokenAuth)
	var (
		doneCh  <-chan error
		renewCh <-chan *api.RenewOutput
		// expiry fires when the token has expired (token method) or is about
		// to (login methods, which can get a new one).
		expiry = time.NewTimer(time.Hour)
	)
	expiry.Stop()
	defer expiry.Stop()
	// expireAt arms expiry for a token valid for lease from now.
	expireAt := func(lease time.Duration) {
		if !isToken {
			lease -= max(lease/10, 300*time.Millisecond)
		}
		expiry.Reset(max(lease, 0))
	}
	switch {
	case ttl <= 0:
		// A token that does not expire (root, or a periodic token with no TTL).
	case sec.Auth.Renewable:
		w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
		if err != nil {
			return "lifetime watcher: " + err.Error()
		}
		// Stopped when leaving, without waiting: a renewal in flight must not
		// hold up the next login. Close waits for it (run holds a count in
		// c.wg while it runs, so adding to it here is safe).
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			w.Start()
		}()
		defer w.Stop()
		doneCh, renewCh = w.DoneCh(), w.RenewCh()
		expireAt(ttl)
	case isToken:
		expireAt(ttl)
	default:
		// Not renewable: log in again when two thirds of the TTL have passed.
		expiry.Reset(ttl * 2 / 3)
	}
	for {
		select {
		case <-ctx.Done():
			return "closing"
		case err := <-doneCh:
			if err != nil {
				err = safeError(err)
				c.observe(err)
			}
			if !isToken {
				if err != nil {
					return "token renewal stopped: " + err.Error()
				}
				return "token reached its maximum TTL"
			}
			// A configured token cannot be replaced from here: use it until
			// it expires.
			doneCh, renewCh = nil, nil
			c.logger.Warn("vault token can no longer be renewed; it will expire", "expires_at", c.Status().TokenExpiresAt, "err", err)
		case r := <-renewCh:
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				lease := time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
				c.mu.Lock()
				c.st.Renewals++
				c.st.Authenticated = true
				c.st.TokenExpiresAt = r.RenewedAt.Add(lease)
				c.mu.Unlock()
				expiry.Stop()
				expireAt(lease - time.Since(r.RenewedAt))
			}
		case <-expiry.C:
			if isToken {
				c.setAuthenticated(false, time.Time{})
				c.logger.Error("vault token expired; write a new token to token_file or restart with a new VAULT_TOKEN")
				if !c.sleep(ctx, 0) {
					return "closing"
				}
				return "token expired"
			}
			return "token near expiry"
		case <-c.tokenChanged:
			return "token_file changed"
		case <-c.denied:
			if c.tokenRejected(ctx) {
				return "vault rejected the token"
			}
		}
	}
}

// tokenRejected looks the current token up (at most every verifyEvery) and
// reports whether Vault refused it.
func (c *Client) tokenRejected(ctx context.Context) bool {
	c.mu.Lock()
	if time.Since(c.lastVerify) < verifyEvery {
		c.mu.Unlock()
		return false
	}
	c.lastVerify = time.Now()
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
	err = safeError(err)
	c.observe(err)
	var ve *Error
	if errors.As(err, &ve) && ve.StatusCode == http.StatusForbidden {
		c.setAuthenticated(false, time.Time{})
		return true
	}
	return false
}

// sleep waits d (forever when d is 0) or until token_file changes; it
// reports false when ctx ended.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-timer:
	case <-c.tokenChanged:
	}
	return true
}

func (c *Client) pollTokenFile(ctx context.Context) {
	t := time.NewTicker(tokenFilePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.checkTokenFile()
		}
	}
}

// checkTokenFile puts a changed token_file into effect at once and tells the
// auth loop to look the new token up.
func (c *Client) checkTokenFile() {
	tok, ok := c.auth.(*tokenAuth)
	if !ok || tok.file == "" {
		return
	}
	s, changed, err := tok.reload()
	if err != nil {
		c.logger.Warn("vault token_file unreadable; keeping the current token", "err", err)
		return
	}
	if !changed {
		return
	}
	c.api.SetToken(s.Reveal())
	c.logger.Info("vault token_file changed; using the new token")
	select {
	case c.tokenChanged <- struct{}{}:
	default:
	}
}
