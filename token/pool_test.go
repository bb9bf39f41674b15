package token

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// newTestPool returns a started pool over an empty file store, on clk.
func newTestPool(t *testing.T, clk *testsupport.Clock, o PoolOptions) *Pool {
	t.Helper()
	if o.Store == nil {
		o.Store = NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	}
	o.Now = clk.Now
	o.Credentials = StaticCredentials{ID: "cid", Secret: "secret"}
	o.Endpoint = Endpoint{TokenURL: "http://127.0.0.1:1/unused", RefreshBefore: time.Minute}
	p := NewPool(o)
	runPool(t, p)
	return p
}

// runPool loads p's default grant and runs p until the test ends, then
// waits for Run to return.
func runPool(t *testing.T, p *Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	p.Load(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func testClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

func TestIdentityProviderPassword(t *testing.T) {
	for _, c := range []struct{ user, key, want string }{
		// The vector of the Panopto stand-in, which follows Panopto's sample.
		{`NetID\JSmith`, "ABC", "x/Oncide+Kz7QpfgFarxNyGzMZIcFhscuoawWyjTjmg="},
		// Both parts are lower-cased before hashing.
		{`netid\jsmith`, "abc", "x/Oncide+Kz7QpfgFarxNyGzMZIcFhscuoawWyjTjmg="},
		{`NETID\JSMITH`, "aBc", "x/Oncide+Kz7QpfgFarxNyGzMZIcFhscuoawWyjTjmg="},
	} {
		if got := idpPassword(c.user, Secret(c.key)).Reveal(); got != c.want {
			t.Errorf("idpPassword(%q, %q) = %s, want %s", c.user, c.key, got, c.want)
		}
	}
	if idpPassword(`NetID\JSmith`, "ABC") == idpPassword(`NetID\other`, "ABC") {
		t.Error("two users share a password")
	}
}

func TestValidAccount(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"alice@example.edu", true},
		{"jürgen", true},
		{strings.Repeat("a", 256), true},
		{"", false},
		{strings.Repeat("a", 257), false},
		{"two words", false},
		{"tab\there", false},
		{"new\nline", false},
		{"del\x7f", false},
		{`NetID\alice`, false},
		{"../alice", false},
	} {
		if got := ValidAccount(c.name); got != c.ok {
			t.Errorf("ValidAccount(%q) = %v, want %v", c.name, got, c.ok)
		}
	}
}

func TestPoolAccountsOff(t *testing.T) {
	p := newTestPool(t, testClock(), PoolOptions{Mode: AccountsOff})
	ctx := context.Background()
	if m, err := p.Manager(ctx, ""); err != nil || m != p.Default() {
		t.Fatalf("default account: %v", err)
	}
	if _, err := p.Manager(ctx, "alice"); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("named account with accounts off: %v", err)
	}
	if st := p.Status(); st.Cached != 0 || st.Mode != AccountsOff {
		t.Fatalf("status %+v", st)
	}
}

func TestPoolRefusesInvalidAccount(t *testing.T) {
	p := newTestPool(t, testClock(), PoolOptions{Mode: AccountsLogin})
	if _, err := p.Manager(context.Background(), "a/b"); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("invalid name: %v", err)
	}
	if p.Status().Cached != 0 {
		t.Fatal("an invalid name was cached")
	}
}

// The pool holds at most MaxCached accounts and evicts the least recently
// used; an evicted account gets a new manager on its next request.
func TestPoolLRU(t *testing.T) {
	clk := testClock()
	p := newTestPool(t, clk, PoolOptions{Mode: AccountsLogin, PoolSettings: PoolSettings{MaxCached: 2}})
	ctx := context.Background()
	get := func(name string) *Manager {
		t.Helper()
		clk.Advance(time.Second)
		m, err := p.Manager(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	alice, bob := get("alice"), get("bob")
	if alice == bob {
		t.Fatal("two accounts share a manager")
	}
	if get("alice") != alice {
		t.Fatal("a cached account got a new manager")
	}
	get("carol") // evicts bob, the least recently used
	if get("alice") != alice {
		t.Fatal("alice was evicted instead of bob")
	}
	if st := p.Status(); st.Cached != 2 || st.Evicted != 1 {
		t.Fatalf("status %+v, want 2 cached, 1 evicted", st)
	}
	if get("bob") == bob {
		t.Fatal("an evicted account kept its manager")
	}
	if st := p.Status(); st.Cached != 2 || st.Evicted != 2 {
		t.Fatalf("status %+v, want 2 cached, 2 evicted", st)
	}
}

func TestPoolIdleEviction(t *testing.T) {
	clk := testClock()
	p := newTestPool(t, clk, PoolOptions{Mode: AccountsLogin, PoolSettings: PoolSettings{IdleEvict: time.Hour}})
	ctx := context.Background()
	alice, _ := p.Manager(ctx, "alice")
	clk.Advance(30 * time.Minute)
	p.Manager(ctx, "bob")
	clk.Advance(40 * time.Minute) // alice idle 70 min, bob 40
	p.evictIdle()
	if st := p.Status(); st.Cached != 1 || st.Evicted != 1 {
		t.Fatalf("status %+v, want 1 cached, 1 evicted", st)
	}
	if m, _ := p.Manager(ctx, "alice"); m == alice {
		t.Fatal("the idle account was not evicted")
	}
	// IdleEvict 0: nothing leaves memory for being idle.
	p.Update(PoolSettings{})
	clk.Advance(24 * time.Hour)
	p.evictIdle()
	if st := p.Status(); st.Cached != 2 {
		t.Fatalf("status %+v, want both kept", st)
	}
}

// Update reaches the default manager, every cached one, and later ones.
func TestPoolUpdate(t *testing.T) {
	p := newTestPool(t, testClock(), PoolOptions{Mode: AccountsIdP})
	ctx := context.Background()
	alice, _ := p.Manager(ctx, "alice")
	p.Update(PoolSettings{Endpoint: Endpoint{TokenURL: "https://new.example/token"}, Provider: "unilms"})
	bob, _ := p.Manager(ctx, "bob")
	for name, m := range map[string]*Manager{"default": p.Default(), "alice": alice, "bob": bob} {
		if got := m.endpoint.Load().TokenURL; got != "https://new.example/token" {
			t.Errorf("%s: token URL %q", name, got)
		}
	}
	user, _, err := bob.password(ctx, ClientCredentials{AppKey: "k"})
	if err != nil || user != `unilms\bob` {
		t.Errorf("bob logs in as %q (%v), want the new provider", user, err)
	}
}

// Which grant logs in without a browser, and with what.
func TestPoolPasswordLogin(t *testing.T) {
	creds := ClientCredentials{Username: "svc.uploader", Password: "pw", AppKey: "ABC"}
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		grant    GrantType
		mode     AccountsMode
		account  string
		user     string
		password Secret
	}{
		{"code grant", GrantAuthorizationCode, AccountsOff, "", "", ""},
		{"password grant", GrantPassword, AccountsOff, "", "svc.uploader", "pw"},
		{"password grant, idp account", GrantPassword, AccountsIdP, "JSmith", `NetID\JSmith`, "x/Oncide+Kz7QpfgFarxNyGzMZIcFhscuoawWyjTjmg="},
		{"login account", GrantPassword, AccountsLogin, "alice", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Pool{grant: c.grant, mode: c.mode}
			pw := p.passwordFor(c.account, "NetID")
			if c.user == "" {
				if pw != nil {
					t.Fatal("logs in without a browser")
				}
				return
			}
			user, pass, err := pw(ctx, creds)
			if err != nil || user != c.user || pass != c.password {
				t.Fatalf("got %q %v", user, err)
			}
			if _, _, err := pw(ctx, ClientCredentials{}); err == nil {
				t.Fatal("no error without the credentials it needs")
			}
		})
	}
}

// Only the default grant reports its expiry; every grant counts refreshes.
func TestPoolHooks(t *testing.T) {
	p := newTestPool(t, testClock(), PoolOptions{Mode: AccountsLogin, Hooks: Hooks{
		Refresh: func(string) {}, Expiry: func(time.Time) {},
	}})
	alice, _ := p.Manager(context.Background(), "alice")
	if p.Default().hooks.Expiry == nil || alice.hooks.Expiry != nil {
		t.Error("expiry hook: want the default grant's only")
	}
	if p.Default().hooks.Refresh == nil || alice.hooks.Refresh == nil {
		t.Error("refresh hook: want every grant's")
	}
}

// Status counts connected accounts and names none of them.
func TestPoolStatus(t *testing.T) {
	clk := testClock()
	store := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	g := &Grant{AccessToken: "a", RefreshToken: "r", Expiry: clk.Now().Add(time.Hour), ObtainedAt: clk.Now()}
	if _, err := store.CompareAndSwap(context.Background(), "alice", 0, Record{Grant: g}); err != nil {
		t.Fatal(err)
	}
	p := newTestPool(t, clk, PoolOptions{Store: store, Mode: AccountsLogin})
	p.Manager(context.Background(), "alice")
	p.Manager(context.Background(), "bob")
	st := p.Status()
	if st.Cached != 2 || st.Connected != 1 {
		t.Fatalf("status %+v, want 2 cached, 1 connected", st)
	}
	js, err := json.Marshal(st)
	if err != nil || string(js) != `{"cached":2,"connected":1,"evicted":0,"mode":"login"}` {
		t.Fatalf("status JSON %s (%v)", js, err)
	}
}

func TestModesText(t *testing.T) {
	for _, name := range []string{"off", "idp", "login"} {
		var m AccountsMode
		if err := m.UnmarshalText([]byte(name)); err != nil || m.String() != name {
			t.Errorf("accounts mode %q: %v %v", name, m, err)
		}
	}
	for _, name := range []string{"authorization_code", "password"} {
		var g GrantType
		if err := g.UnmarshalText([]byte(name)); err != nil || g.String() != name {
			t.Errorf("grant %q: %v %v", name, g, err)
		}
	}
	var m AccountsMode
	if err := m.UnmarshalText([]byte("Off")); err == nil {
		t.Error("unknown accounts mode accepted")
	}
	var g GrantType
	if err := g.UnmarshalText([]byte("client_credentials")); err == nil {
		t.Error("unknown grant accepted")
	}
	if _, err := AccountsMode(7).MarshalText(); err == nil {
		t.Error("out-of-range accounts mode marshalled")
	}
}
