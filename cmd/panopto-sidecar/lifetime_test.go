package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// heldUpstream answers every request once the test releases it, and says
// when one arrived: a request held in flight for as long as the test needs.
type heldUpstream struct {
	*httptest.Server
	arrived chan struct{} // one value per request
	release chan struct{}
	once    sync.Once
}

// Release lets the requests held, and those to come, complete.
func (u *heldUpstream) Release() { u.once.Do(func() { close(u.release) }) }

func newHeldUpstream(t *testing.T) *heldUpstream {
	u := &heldUpstream{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.arrived <- struct{}{}
		<-u.release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(u.Close)
	t.Cleanup(u.Release) // first: a test that failed may hold a request
	return u
}

// failingListener accepts nothing; once fail closes, Accept fails as a
// listener torn away under its server does.
type failingListener struct {
	net.Listener
	fail   chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.fail:
		return nil, errors.New("accept: the listener broke")
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// lifetimeRun is one serve started by a lifetime test.
type lifetimeRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when serve returned err
	err    error
	s      *sidecar
	addr   string // the main listener's
	pub    string // the public listener's
	before map[string]bool
	logs   *testsupport.SyncBuffer
}

// startLifetime runs serve with a config whose /held/ route reaches up
// without a bearer; when fail closes, the listener named by failing (main
// or public) fails.
func startLifetime(t *testing.T, up *heldUpstream, failing string, fail chan struct{}, extra string, env map[string]string) *lifetimeRun {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
public_listen: localhost:0
public_url: http://localhost:9
upstream: %s
routes: [{prefix: /held/, inject: false}]
accounts: {mode: login, return_to: ["https://ontrack.example/panopto/"], identity_claim: preferred_username}
log: {level: debug, format: json}
shutdown_grace: 30s
`, up.URL) + extra
	if !strings.Contains(extra, "token_store:") {
		cfg += fmt.Sprintf("token_store: {type: file, path: %q}\n", filepath.Join(dir, "panopto-token.json"))
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := testEnv(env)
	ctx, cancel := context.WithCancel(context.Background())
	r := &lifetimeRun{cancel: cancel, done: make(chan struct{}), before: servedGoroutines(), logs: &testsupport.SyncBuffer{}}
	served := make(chan struct{})
	opts := serveOptions{
		served: func(s *sidecar, main, public net.Addr) {
			r.s, r.addr, r.pub = s, main.String(), public.String()
			close(served)
		},
	}
	wrap := func(ln net.Listener) net.Listener {
		return &failingListener{Listener: ln, fail: fail, closed: make(chan struct{})}
	}
	if failing == "main" {
		opts.wrapMain = wrap
	} else {
		opts.wrapPublic = wrap
	}
	go func() {
		defer close(r.done)
		r.err = serve(ctx, path, getenv, r.logs, opts)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if t.Failed() {
			t.Logf("sidecar log:\n%s", r.logs.String())
		}
	})
	select {
	case <-served:
	case <-r.done:
		t.Fatalf("serve returned %v before serving:\n%s", r.err, r.logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not start:\n%s", r.logs.String())
	}
	return r
}

// holdRequest sends a request that up holds, and returns once up has it.
func (r *lifetimeRun) holdRequest(t *testing.T, up *heldUpstream) <-chan string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + r.addr + "/held/video")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	select {
	case <-up.arrived:
	case s := <-got:
		t.Fatalf("the request did not reach the upstream: %s", s)
	}
	return got
}

// shutdownWaitsForRequest checks the part of shutdown every cause shares:
// both listeners stop accepting at once, serve waits for the request
// in flight, which completes, and every goroutine serve started has ended
// when it returns.
func (r *lifetimeRun) shutdownWaitsForRequest(t *testing.T, up *heldUpstream, got <-chan string) {
	t.Helper()
	testsupport.WaitFor(t, 10*time.Second, "both listeners refuse connections", func() bool { return refused(r.addr) && refused(r.pub) })
	select {
	case <-r.done:
		t.Fatalf("serve returned (%v) while a request was in flight", r.err)
	default:
	}
	up.Release()
	if s := <-got; s != "200 done" {
		t.Fatalf("the request in flight got %q, want 200 done", s)
	}
	r.returnedWithNothingLeft(t)
}

// returnedWithNothingLeft waits for serve to return and checks that every
// goroutine it started has ended.
func (r *lifetimeRun) returnedWithNothingLeft(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return")
	}
	if left := leftGoroutines(r.before); len(left) > 0 {
		t.Fatalf("serve returned, but goroutines it started run on:\n%s", strings.Join(left, "\n\n"))
	}
}

// TestServerFailureShutsEverythingDown: when a listener fails under its
// server, serve takes the same shutdown path as on SIGTERM: the other
// listener closes too, a request in flight on the main one completes,
// serve returns the failure, and the Vault client is closed.
func TestServerFailureShutsEverythingDown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing string // the listener that fails
		vault   bool
		want    string // in serve's error
	}{
		{"public listener fails; file token store", "public", false, "serve public_listen: "},
		{"public listener fails; vault token store", "public", true, "serve public_listen: "},
		{"main listener fails", "main", false, "serve: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newHeldUpstream(t)
			var extra string
			var env map[string]string
			if tc.vault {
				vs := vaulttest.StartDev(t)
				registerSecret(vs.RootToken())
				extra = fmt.Sprintf("vault: {address: %s, auth: token, mount: secret}\ntoken_store: {type: vault, path: panopto/token}\n", vs.Addr())
				env = map[string]string{"VAULT_TOKEN": vs.RootToken()}
			}
			fail := make(chan struct{})
			r := startLifetime(t, up, tc.failing, fail, extra, env)
			if tc.vault && r.s.vault.Status() == nil {
				t.Fatal("no Vault client held while serving") // the token store's
			}
			if tc.failing == "main" {
				// The main listener accepts nothing: the public one closes.
				close(fail)
				testsupport.WaitFor(t, 10*time.Second, "the public listener refuses connections", func() bool { return refused(r.pub) })
				r.returnedWithNothingLeft(t)
			} else {
				got := r.holdRequest(t, up)
				close(fail)
				r.shutdownWaitsForRequest(t, up, got)
			}
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("serve returned %v, want the failure (%q)", r.err, tc.want)
			}
			for _, a := range []string{r.addr, r.pub} {
				if !refused(a) {
					t.Fatalf("%s still accepts after serve returned", a)
				}
			}
			if r.s.vault.Status() != nil {
				t.Fatal("the Vault client is still held after serve returned")
			}
		})
	}
}

// refused reports whether addr refuses a connection.
func refused(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err != nil
}

// TestServeReturnsAfterEverythingEnded: ctx ends (as on SIGTERM), with a
// request in flight or none; serve returns nil only once the request
// completed, and with nothing it started left running.
func TestServeReturnsAfterEverythingEnded(t *testing.T) {
	for _, tc := range []struct {
		inFlight, vault bool
	}{{true, false}, {false, false}, {false, true}} {
		t.Run(fmt.Sprintf("request in flight %v, vault %v", tc.inFlight, tc.vault), func(t *testing.T) {
			inFlight := tc.inFlight
			up := newHeldUpstream(t)
			var extra string
			var env map[string]string
			if tc.vault {
				// The Vault credentials' polling is serve's too.
				vs := vaulttest.StartDev(t)
				registerSecret(vs.RootToken())
				if _, err := vs.Client(t).KVv2("secret").Put(context.Background(), "panopto/client",
					map[string]any{"client_id": testClientID, "client_secret": testClientSecret}); err != nil {
					t.Fatal(err)
				}
				extra = fmt.Sprintf("vault: {address: %s, auth: token, mount: secret}\ncredentials: {source: vault, path: panopto/client, poll_interval: 1s}\n", vs.Addr())
				env = map[string]string{"VAULT_TOKEN": vs.RootToken(), "PANOPTO_CLIENT_ID": "", "PANOPTO_CLIENT_SECRET": ""}
			}
			r := startLifetime(t, up, "public", make(chan struct{}), extra, env)
			// servedFrames names what serve runs: the check below can fail.
			testsupport.WaitFor(t, 10*time.Second, "serve's goroutines to show", func() bool { return len(leftGoroutines(r.before)) > 0 })
			if inFlight {
				got := r.holdRequest(t, up)
				r.cancel()
				r.shutdownWaitsForRequest(t, up, got)
			} else {
				r.cancel()
				r.returnedWithNothingLeft(t)
			}
			if r.err != nil {
				t.Fatalf("serve returned %v, want nil", r.err)
			}
			if !strings.Contains(r.logs.String(), `"msg":"stopped"`) {
				t.Fatal("no stopped line: the log was not flushed")
			}
		})
	}
}

// servedFrames name the code of goroutines serve starts, the token pool's
// (its managers' loops, the eviction loop) included.
var servedFrames = []string{
	"main.serve(", "main.serve.func", "main.(*sidecar).shutdown", "main.(*reloader).", "main.(*publicServer).",
	"panopto-sidecar/token.(*KeepAlive).Run", "panopto-sidecar/token.(*Manager).loop", "panopto-sidecar/token.(*Pool).evictLoop",
	"panopto-sidecar/token.(*Pool).Run", "panopto-sidecar/vault.(*Credentials).Run",
}

// servedGoroutines returns the goroutines running code serve starts, by
// their header line ("goroutine N [state]:" without the state).
func servedGoroutines() map[string]bool {
	out := map[string]bool{}
	for _, g := range goroutineStacks() {
		out[goroutineID(g)] = true
	}
	return out
}

func leftGoroutines(before map[string]bool) []string {
	var left []string
	for _, g := range goroutineStacks() {
		if !before[goroutineID(g)] {
			left = append(left, g)
		}
	}
	return left
}

func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range servedFrames {
			if strings.Contains(g, f) && !strings.Contains(g, "runtime.Stack(") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func goroutineID(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}
