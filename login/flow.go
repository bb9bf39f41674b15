package login

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// LoginFlow holds the pending authorization-code logins: each has a
// single-use state that expires, a PKCE S256 verifier, a nonce, and a
// browser binding (a value the browser carries in a cookie).
type LoginFlow struct {
	ttl time.Duration
	now func() time.Time
	max int

	mu      sync.Mutex
	pending map[string]pendingLogin
	seq     uint64 // numbers logins in the order they began
}

type pendingLogin struct {
	verifier string
	nonce    string
	account  string
	returnTo string   // where the browser goes when the login ends; "" for the sidecar's page
	binding  [32]byte // sha256 of the browser's cookie value
	expires  time.Time
	seq      uint64
}

// MaxPendingPerAccount bounds the logins of one account waiting for their
// callback; a newer login evicts the account's oldest.
const MaxPendingPerAccount = 3

// Login is one started login.
type Login struct {
	URL     string // where to send the browser
	State   string
	Binding string // cookie value tying the callback to this browser
}

// Errors the callback can end with.
var (
	ErrBadState     = errors.New("unknown, used or expired login state")
	ErrWrongBrowser = errors.New("login was started in another browser")
)

// NewLoginFlow returns a flow whose states live for ttl (10 minutes when 0).
func NewLoginFlow(ttl time.Duration, now func() time.Time) *LoginFlow {
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &LoginFlow{ttl: ttl, now: now, max: 10000, pending: make(map[string]pendingLogin)}
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// BeginReturning starts a login for account ("" is the default grant)
// against ep, with the given client id, and keeps returnTo (checked by the
// caller; "" for the sidecar's page) for the callback.
func (f *LoginFlow) BeginReturning(ep token.Endpoint, clientID, account, returnTo string) Login {
	state := randomString(24)
	verifier := oauth2.GenerateVerifier()
	nonce := randomString(16)
	binding := randomString(24)
	now := f.now()

	f.mu.Lock()
	var mine []string // account's pending logins
	for k, p := range f.pending {
		switch {
		case now.After(p.expires):
			delete(f.pending, k)
		case p.account == account:
			mine = append(mine, k)
		}
	}
	if len(mine) >= MaxPendingPerAccount {
		// One account's links cannot push other accounts' logins out of
		// the table: its own oldest goes.
		oldest := mine[0]
		for _, k := range mine[1:] {
			if f.pending[k].seq < f.pending[oldest].seq {
				oldest = k
			}
		}
		delete(f.pending, oldest)
	}
	if len(f.pending) >= f.max {
		// Bound memory against a flood of /-/login: drop the oldest.
		var oldest string
		var at time.Time
		for k, p := range f.pending {
			if oldest == "" || p.expires.Before(at) {
				oldest, at = k, p.expires
			}
		}
		delete(f.pending, oldest)
	}
	f.pending[state] = pendingLogin{
		verifier: verifier,
		nonce:    nonce,
		account:  account,
		returnTo: returnTo,
		binding:  sha256.Sum256([]byte(binding)),
		expires:  now.Add(f.ttl),
		seq:      f.seq,
	}
	f.seq++
	f.mu.Unlock()

	cfg := ep.OAuth2Config(token.ClientCredentials{ID: clientID})
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("nonce", nonce),
	}
	for _, sc := range ep.Scopes {
		if sc == "offline_access" {
			// OpenID Connect: a refresh token (offline access) is granted
			// only with prompt=consent; servers drop the scope without it.
			opts = append(opts, oauth2.SetAuthURLParam("prompt", "consent"))
			break
		}
	}
	if account != "" {
		// Suggest the account's user to Panopto's login page.
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", account))
	}
	u := cfg.AuthCodeURL(state, opts...)
	return Login{URL: u, State: state, Binding: binding}
}

// Completed is what a callback needs of its pending login.
type Completed struct {
	Verifier string // PKCE verifier for the code exchange
	Nonce    string // the nonce the id_token must carry
	Account  string // "" is the default grant
	ReturnTo string // "" for the sidecar's own page
}

// Finish ends the login of state and returns it. If requireBinding, only
// the browser that started the login can end it: binding must be the
// cookie value BeginReturning handed to that browser, else the answer is
// ErrWrongBrowser and the login stays pending for its own browser.
// Otherwise the state is consumed, once, whatever the outcome.
func (f *LoginFlow) Finish(state, binding string, requireBinding bool) (Completed, error) {
	f.mu.Lock()
	p, ok := f.pending[state]
	switch {
	case !ok:
	case f.now().After(p.expires):
		ok = false
	case requireBinding && !p.boundTo(binding):
		f.mu.Unlock()
		return Completed{}, ErrWrongBrowser
	}
	delete(f.pending, state)
	f.mu.Unlock()
	if !ok {
		return Completed{}, ErrBadState
	}
	return Completed{Verifier: p.verifier, Nonce: p.nonce, Account: p.account, ReturnTo: p.returnTo}, nil
}

// boundTo reports whether binding is the cookie value of the browser that
// began p.
func (p pendingLogin) boundTo(binding string) bool {
	got := sha256.Sum256([]byte(binding))
	return binding != "" && subtle.ConstantTimeCompare(got[:], p.binding[:]) == 1
}

// Pending reports how many logins are waiting for their callback.
func (f *LoginFlow) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}
