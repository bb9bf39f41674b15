package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
)

// IdentityClaimRequired says why accounts.mode login needs
// accounts.identity_claim, in the words check and serve print.
const IdentityClaimRequired = "required with accounts.mode: login: the claim of Panopto's id_token " +
	"(sub, preferred_username, email or upn) that must name the account a login link is for. Without it, " +
	"whoever signs in to Panopto on a link connects that account: a student could send their own link to a " +
	"classmate who is signed in to Panopto, and then act in Panopto as that classmate. " +
	"identity_claim: none turns the check off knowingly (warned at start and at every login)"

// validateConnect checks the keys of per-student connection: public_listen,
// accounts.return_to, ticket_ttl, identity_claim and identity_template, and
// oauth.issuer.
func (c *Config) validateConnect(v *validator, listenHost string) {
	if c.OAuth.Issuer != "" {
		if msg := urlProblem(c.OAuth.Issuer); msg != "" {
			v.problemf("oauth.issuer", "%s; got %q", msg, c.OAuth.Issuer)
		}
	}
	a := c.Accounts
	for i, p := range a.ReturnTo {
		path := fmt.Sprintf("accounts.return_to[%d]", i)
		if msg := urlProblem(p); msg != "" {
			v.problemf(path, "%s; got %q", msg, p)
			continue
		}
		if u, _ := url.Parse(p); u.User != nil || u.Fragment != "" || strings.ContainsAny(p, "#\\ ") {
			v.problemf(path, "must be a URL prefix without user info, fragment, spaces or backslashes; got %q", p)
		}
	}
	if a.TicketTTL < Duration(10*time.Second) || a.TicketTTL > Duration(24*time.Hour) {
		v.problemf("accounts.ticket_ttl", "must be within 10s-24h; got %s", time.Duration(a.TicketTTL))
	}
	if err := login.CheckIdentityClaim(a.IdentityClaim); err != nil {
		v.problemf("accounts.identity_claim", "%v", err)
	} else if a.Mode == AccountsLogin && a.IdentityClaim == "" {
		v.problemf("accounts.identity_claim", "%s", IdentityClaimRequired)
	}
	if !strings.Contains(a.IdentityTemplate, "{account}") {
		v.problemf("accounts.identity_template", "must contain {account}; got %q", a.IdentityTemplate)
	}

	if c.PublicMaxConns < 1 || c.PublicMaxConns > 1<<20 {
		v.problemf("public_max_conns", "must be within 1-1048576; got %d", c.PublicMaxConns)
	}
	if c.PublicListen == "" {
		return
	}
	if c.RewriteUploadTarget {
		v.problemf("rewrite_upload_target", "cannot be used with public_listen: the rewritten UploadTarget would name public_url, "+
			"which reaches the login-only public listener (404 for uploads); set rewrite_upload_target: false and upload with POST /-/uploads, "+
			"which needs no UploadTarget, or drop public_listen")
	}
	_, p, err := net.SplitHostPort(c.PublicListen)
	switch {
	case err != nil || !validPort(p, 0):
		v.problemf("public_listen", "must be host:port, e.g. 0.0.0.0:9128; got %q", c.PublicListen)
		return
	case c.PublicListen == c.Listen:
		v.problemf("public_listen", "must differ from listen (%s)", c.Listen)
	}
	if a.Mode != "login" {
		v.problemf("public_listen", "serves only the students' login pages: it needs accounts.mode: login")
	}
	if _, explicit := v.lines["public_url"]; !explicit {
		v.problemf("public_url", "required with public_listen: the address browsers reach public_listen at (its /redirect is the redirect URI registered in Panopto)")
	} else if u, err := url.Parse(c.PublicURL); err == nil && u.Host == c.Listen && !isLoopbackHost(listenHost) {
		v.problemf("public_url", "names listen (%s), but browsers must reach public_listen (%s)", c.Listen, c.PublicListen)
	}
}
