package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// Kill -9 loops: the sidecar binary runs as a child process against a
// stand-in Panopto whose tokens last crashTTL, so a refresh (lease, token
// call, rotated grant written) happens about every second, and is killed at
// random points of that cycle.
const (
	crashKillsFile       = 20 // PANOPTO_SIDECAR_CRASH_ROUNDS sets it (.ci/run: 100 on its scheduled runs)
	crashKillsShort      = 12 // with -short, and at least this many in the Vault loop
	crashTTL             = 2 * time.Second
	crashMaxWait         = 1500 * time.Millisecond            // random wait before each kill
	crashDelayBefore     = 30 * time.Millisecond              // at most, before the stand-in sees a refresh (lease held)
	crashDelayAfter      = 10 * time.Millisecond              // at most, after it rotated the token (the loss window)
	crashTokenTimeout    = 500 * time.Millisecond             // timeouts.token_endpoint
	crashLease           = crashTokenTimeout + 10*time.Second // a refresh lease's length
	crashQuickRecovery   = 3 * time.Second                    // a restart refreshes and serves within this
	crashSurvivorPercent = 90
)

// buildSidecar builds ./cmd/panopto-sidecar into the test's temp dir (the
// build cache makes a second build in the same run a link).
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "panopto-sidecar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// childSidecar is the sidecar binary run as a separate process.
type childSidecar struct {
	t    *testing.T
	bin  string
	cfg  string
	env  []string
	URL  string
	logs string // stderr of every incarnation, appended
	cmd  *exec.Cmd
	runs int
}

func (c *childSidecar) start() {
	c.t.Helper()
	lf, err := os.OpenFile(c.logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "--- start %d\n", c.runs)
	c.runs++
	cmd := exec.Command(c.bin, "serve", "-config", c.cfg)
	cmd.Env = c.env
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if statusCode(c.URL+"/-/healthz") == 200 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.kill()
	c.t.Fatalf("restart %d: not healthy within 10s\n%s", c.runs, c.tail())
}

// kill sends SIGKILL and reaps the process.
func (c *childSidecar) kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}

func (c *childSidecar) tail() string {
	b, _ := os.ReadFile(c.logs)
	return lastLines(withoutOK(string(b)), 60)
}

// storedGrant is what a store holds right after a kill.
type storedGrant struct {
	present      bool   // a record exists
	refreshToken string // "" when none
	leased       bool   // a refresh lease is recorded
	dropped      string
}

// crashRig is one kill loop: a store inspector plus the counters.
type crashRig struct {
	t       *testing.T
	pan     *panopto
	slow    *slowRefresh
	sc      *childSidecar
	inspect func() (storedGrant, error) // error: the store does not decode
	kills   int

	survivors, deaths, relogins int
	window                      int // kills after the stand-in rotated the token, before it was stored
	leaseKills                  int // kills that left a lease behind
	slowRecoveries              int // recoveries slower than crashQuickRecovery
	reuseOutside                int // refresh-token reuse after a kill outside the window
	deathOutside                int // grants lost after a kill outside the window
	maxRecovery                 time.Duration
	secrets                     map[string]bool
}

// loginRequired are the /-/ready reasons only a new login clears.
var loginRequired = map[string]bool{
	string(token.ReasonNeverConnected): true, string(token.ReasonLoggedOut): true, string(token.ReasonRefreshRefused): true,
}

// alive waits until the restarted sidecar has refreshed the grant it found
// in the store (its own refresh count is at least one) and then serves: a
// request through it answers 200 and /-/ready is 200. The access token left
// in the store may still be valid, so serving alone proves nothing. It gives
// up early when the sidecar says a login is required.
func (r *crashRig) alive(timeout time.Duration) (bool, time.Duration) {
	start := time.Now()
	for time.Since(start) < timeout {
		var st struct{ Refreshes int64 }
		if getJSONQuiet(r.sc.URL+"/-/status", &st) == 200 && st.Refreshes > 0 &&
			statusCode(r.sc.URL+"/Panopto/api/v1/whoami") == 200 && statusCode(r.sc.URL+"/-/ready") == 200 {
			return true, time.Since(start)
		}
		var ready struct{ Reason string }
		if getJSONQuiet(r.sc.URL+"/-/ready", &ready) == 503 && loginRequired[ready.Reason] {
			return false, time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false, time.Since(start)
}

func (r *crashRig) run() {
	t := r.t
	r.sc.start()
	logIn(t, r.sc.URL)
	if ok, _ := r.alive(5 * time.Second); !ok {
		t.Fatalf("not serving after the first login\n%s", r.sc.tail())
	}
	deadline := time.Now().Add(max(60*time.Second, time.Duration(r.kills)*1700*time.Millisecond))
	for i := range r.kills {
		if time.Now().After(deadline) {
			t.Fatalf("kill loop ran out of time after %d kills", i)
		}
		time.Sleep(rand.N(crashMaxWait))
		before := r.pan.Stats()
		r.sc.kill()
		r.slow.settle()

		sg, err := r.inspect()
		if err != nil {
			t.Fatalf("kill %d: the token store does not decode after kill -9: %v", i, err)
		}
		if !sg.present || sg.refreshToken == "" {
			t.Fatalf("kill %d: no grant in the store after kill -9 (dropped %q)", i, sg.dropped)
		}
		r.secrets[sg.refreshToken] = true
		// The unavoidable window: the stand-in rotated the stored refresh
		// token (it is no longer active, its grant is not revoked, a
		// successor was issued) but the sidecar died before storing it.
		inWindow := !r.pan.RefreshTokenActive(sg.refreshToken)
		if inWindow {
			r.window++
		}
		if sg.leased {
			r.leaseKills++
		}

		r.sc.start()
		ok, took := r.alive(crashLease + crashQuickRecovery)
		after := r.pan.Stats()
		reuse := after.RefreshReuse - before.RefreshReuse
		if reuse > 0 && !inWindow {
			r.reuseOutside++
			t.Errorf("kill %d: a restart presented a rotated refresh token although the stored one was current", i)
		}
		if ok {
			r.survivors++
			r.maxRecovery = max(r.maxRecovery, took)
			if took > crashQuickRecovery {
				// A restarted sidecar knows the lease it left is its own.
				r.slowRecoveries++
				t.Errorf("kill %d: recovery took %v (lease left behind: %v)", i, took.Round(time.Millisecond), sg.leased)
			}
			continue
		}
		r.deaths++
		if !inWindow {
			r.deathOutside++
			t.Errorf("kill %d: the grant was lost (reuse %d, revoked %d) although the stored refresh token was current (lease %v)\n%s",
				i, reuse, after.GrantsRevoked-before.GrantsRevoked, sg.leased, r.sc.tail())
		}
		logIn(t, r.sc.URL)
		r.relogins++
		if ok, _ := r.alive(5 * time.Second); !ok {
			t.Fatalf("kill %d: not serving after a new login: status %s ready %s", i, fetch(t, r.sc.URL+"/-/status"), fetch(t, r.sc.URL+"/-/ready"))
		}
	}
	r.sc.kill()
}

func (r *crashRig) report(store string) {
	t := r.t
	st := r.pan.Stats()
	t.Logf("%s store: %d kills -9, %d grants survived (%.0f%%), %d lost, %d in the rotate-before-persist window, %d left a lease (%d slow recoveries, slowest %v), refreshes %d, refresh reuse %d, grants revoked %d, logins again %d",
		store, r.kills, r.survivors, 100*float64(r.survivors)/float64(r.kills), r.deaths, r.window, r.leaseKills, r.slowRecoveries,
		r.maxRecovery.Round(time.Millisecond), st.Refreshes, st.RefreshReuse, st.GrantsRevoked, r.relogins)
	if st.Refreshes < r.kills/3 {
		t.Errorf("only %d refreshes over %d kills: the kills did not land in refresh cycles", st.Refreshes, r.kills)
	}
	if st.RefreshReuse > r.window {
		t.Errorf("refresh token reused %d times for %d kills inside the window", st.RefreshReuse, r.window)
	}
	// Every kill outside the window is a survivor (checked kill by kill);
	// overall, with enough kills for the figure to mean something:
	if r.kills >= 40 && r.survivors*100 < r.kills*crashSurvivorPercent {
		t.Errorf("%d of %d grants survived, want ≥ %d%%", r.survivors, r.kills, crashSurvivorPercent)
	}
	logs, _ := os.ReadFile(r.sc.logs)
	secrets := []string{testClientSecret}
	for s := range r.secrets {
		secrets = append(secrets, s)
	}
	assertNoSecrets(t, secrets, map[string]string{"sidecar logs": string(logs)})
}

// slowRefresh delays refresh_token calls by up to crashDelayBefore before
// the stand-in sees them (the lease is held, nothing rotated yet; a caller
// killed meanwhile never reaches it) and again after it answered (rotated at
// Panopto, not yet stored by the sidecar), as a real network does, so some
// kills land in each of those two windows.
type slowRefresh struct {
	h        http.Handler
	inflight atomic.Int32
}

func (s *slowRefresh) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/connect/token") {
		s.h.ServeHTTP(w, r)
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !strings.Contains(string(body), "grant_type=refresh_token") {
		s.h.ServeHTTP(w, r)
		return
	}
	select {
	case <-time.After(rand.N(crashDelayBefore)):
	case <-r.Context().Done():
		return // the caller died before its request was complete
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	time.Sleep(rand.N(crashDelayAfter))
	maps.Copy(w.Header(), rec.Header())
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// settle waits until no token call is in flight at the stand-in, so what it
// says about a refresh token is final.
func (s *slowRefresh) settle() {
	deadline := time.Now().Add(2 * time.Second)
	for s.inflight.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func crashConfig(upstream, store string) string {
	return fmt.Sprintf(`listen: {{LISTEN}}
public_url: {{URL}}
upstream: %s
oauth: {refresh_before: 1s}
%s
log: {level: info, format: json}
shutdown_grace: 2s
timeouts: {token_endpoint: %s}
`, upstream, store, crashTokenTimeout)
}

func newCrashRig(t *testing.T, cfgBody string, extraEnv ...string) (*crashRig, string) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("kill -9 loop needs a Unix")
	}
	bin := buildSidecar(t)
	dir := t.TempDir()
	addr := childAddr(t)
	fake := panoptofake.New(panoptofake.Options{ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: crashTTL})
	slow := &slowRefresh{h: fake}
	srv := httptest.NewServer(slow)
	t.Cleanup(srv.Close)
	pan := &panopto{Server: fake, URL: srv.URL}
	cfg := strings.ReplaceAll(strings.ReplaceAll(crashConfig(pan.URL, cfgBody), "{{LISTEN}}", addr), "{{URL}}", "http://"+addr)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOSTNAME=crash-test",
		"PANOPTO_CLIENT_ID=" + testClientID,
		"PANOPTO_CLIENT_SECRET=" + testClientSecret,
	}, extraEnv...)
	sc := &childSidecar{t: t, bin: bin, cfg: cfgPath, env: env, URL: "http://" + addr, logs: filepath.Join(dir, "sidecar.log")}
	t.Cleanup(func() {
		sc.kill()
		if t.Failed() {
			b, _ := os.ReadFile(sc.logs)
			t.Logf("sidecar logs:\n%s", lastLines(string(b), 150))
		}
	})
	r := &crashRig{t: t, pan: pan, slow: slow, sc: sc, kills: crashKills(t), secrets: map[string]bool{}}
	return r, dir
}

// TestCrashFileStore: kill -9 at random points of the refresh cycle, with
// the file store. The token file is never half-written (it always decodes,
// with a version), a restart never presents a refresh token it could know
// is stale, and the grant survives every kill outside the unavoidable
// window between the stand-in rotating the refresh token and the sidecar
// storing it.
func TestCrashFileStore(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	tokenFile := filepath.Join(storeDir, "panopto-token.json")
	r, _ := newCrashRig(t, "token_store: {type: file, path: "+tokenFile+"}")
	temps := 0
	r.inspect = func() (storedGrant, error) {
		// What a reader sees is either the old file or the new one: it
		// decodes, has a version, and is mode 0600.
		data, err := os.ReadFile(tokenFile)
		if errors.Is(err, fs.ErrNotExist) {
			return storedGrant{}, nil
		}
		if err != nil {
			return storedGrant{}, err
		}
		var fr struct {
			Version      int64  `json:"version"`
			RefreshToken string `json:"refresh_token"`
			LeaseHolder  string `json:"lease_holder"`
			Dropped      string `json:"dropped"`
		}
		if err := json.Unmarshal(data, &fr); err != nil {
			return storedGrant{}, fmt.Errorf("%w (%d bytes)", err, len(data))
		}
		if fr.Version <= 0 {
			return storedGrant{}, fmt.Errorf("no version (%d bytes)", len(data))
		}
		if _, _, err := token.NewFileStore(tokenFile).Load(context.Background(), ""); err != nil {
			return storedGrant{}, err
		}
		if fi, err := os.Stat(tokenFile); err == nil && fi.Mode().Perm() != 0o600 {
			return storedGrant{}, fmt.Errorf("token file mode %v", fi.Mode().Perm())
		}
		// Temp files a kill left behind are never read back; count them.
		left, _ := filepath.Glob(filepath.Join(storeDir, ".panopto-token.json.tmp-*"))
		temps = len(left)
		return storedGrant{present: true, refreshToken: fr.RefreshToken, leased: fr.LeaseHolder != "", dropped: fr.Dropped}, nil
	}
	r.run()
	r.report("file")
	t.Logf("file store: %d temp files left behind by kills", temps)
}

// TestCrashVaultStore: the same loop with the token store in a Vault KV v2
// (check-and-set), fewer kills.
func TestCrashVaultStore(t *testing.T) {
	t.Parallel()
	vs := vaulttest.StartDev(t)
	kv := vs.Client(t).KVv2("secret")
	r, _ := newCrashRig(t, fmt.Sprintf("vault: {address: %s, auth: token, mount: secret}\ntoken_store: {type: vault, path: panopto/crash}", vs.Addr()),
		"VAULT_TOKEN="+vs.RootToken())
	r.kills = max(r.kills*2/5, crashKillsShort) // a Vault round costs more
	r.inspect = func() (storedGrant, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sec, err := kv.Get(ctx, "panopto/crash")
		if err != nil {
			return storedGrant{}, err
		}
		if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= 0 || sec.Data == nil {
			return storedGrant{}, errors.New("no version or data")
		}
		str := func(k string) string { s, _ := sec.Data[k].(string); return s }
		if _, err := time.Parse(time.RFC3339Nano, str("expires_at")); err != nil && str("refresh_token") != "" {
			return storedGrant{}, fmt.Errorf("expires_at: %w", err)
		}
		return storedGrant{present: true, refreshToken: str("refresh_token"), leased: str("lease_holder") != "", dropped: str("dropped")}, nil
	}
	r.secrets[vs.RootToken()] = true
	r.run()
	r.report("vault")
}

// crashKills is how many times the file store's loop kills the sidecar:
// crashKillsFile, crashKillsShort with -short, or PANOPTO_SIDECAR_CRASH_ROUNDS
// (the full loop is 100).
func crashKills(t *testing.T) int {
	if v := os.Getenv("PANOPTO_SIDECAR_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PANOPTO_SIDECAR_CRASH_ROUNDS=%q: want a count of kills", v)
		}
		return n
	}
	if testing.Short() {
		return crashKillsShort
	}
	return crashKillsFile
}

var shortClient = &http.Client{Timeout: 5 * time.Second}

// getJSONQuiet is getJSON without failing the test on a transport error.
func getJSONQuiet(url string, v any) int {
	resp, err := shortClient.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}
