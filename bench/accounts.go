//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"golang.org/x/oauth2"
)

// `bench accounts`: many students' grants in the file store and in the
// Vault store, side by side in one run, against the Panopto stand-in:
// start-up time, RSS with accounts cached, the first request of an account
// not cached, and the keep-alive's refreshes per second and store
// operations per refresh.

type accountsFlags struct {
	n         int
	cached    []int
	stores    []string
	rate      float64
	vaultBin  string
	sidecar   string
	workDir   string
	keep      bool
	seedConns int
}

type storeFigures struct {
	Store          string
	Seed           time.Duration
	Startup        time.Duration
	RSSIdle        int64
	RSSCached      map[int]int64
	FirstP50       time.Duration
	FirstP99       time.Duration
	CachedP50      time.Duration
	KASweepStart   time.Duration // start to first keep-alive refresh
	KARefreshes    int
	KADuration     time.Duration
	KAOps          map[string]int64 // Vault only: list, read, write, other
	KAOpsPerRefres float64
}

func accountsBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f accountsFlags
	fs := flag.NewFlagSet("bench accounts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.n, "n", 10000, "students' grants seeded into each store")
	cached := fs.String("cached", "1000,10000", "RSS is read when this many accounts are cached")
	stores := fs.String("stores", "file,vault", "stores, in order")
	fs.Float64Var(&f.rate, "keep-alive-rate", 1000, "accounts.keep_alive_rate of the keep-alive run")
	fs.StringVar(&f.vaultBin, "vault", os.Getenv("VAULT_BIN"), "vault binary (default $VAULT_BIN, else PATH)")
	fs.StringVar(&f.sidecar, "sidecar", "", "prebuilt panopto-sidecar binary (default: go build ./cmd/panopto-sidecar)")
	fs.StringVar(&f.workDir, "workdir", "", "directory for stores, configs and logs (default: a new temp dir)")
	fs.BoolVar(&f.keep, "keep", false, "keep the work directory")
	fs.IntVar(&f.seedConns, "seed-conns", 8, "parallel writers while seeding")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*cached, ",") {
		var k int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &k); err != nil || k < 1 || k > f.n {
			return fmt.Errorf("-cached: %q must be within 1-%d", s, f.n)
		}
		f.cached = append(f.cached, k)
	}
	f.stores = strings.Split(*stores, ",")
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	dir := f.workDir
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "panopto-sidecar-bench-accounts-"); err != nil {
			return err
		}
		if !f.keep {
			defer os.RemoveAll(dir)
		}
	}
	bf := flags{sidecarBin: f.sidecar}
	if err := buildSidecar(ctx, &bf, dir, stderr); err != nil {
		return err
	}
	f.sidecar = bf.sidecarBin

	var figs []storeFigures
	for _, st := range f.stores {
		fg, err := accountsStore(ctx, f, strings.TrimSpace(st), filepath.Join(dir, st), logf)
		if err != nil {
			return fmt.Errorf("%s store: %w", st, err)
		}
		figs = append(figs, fg)
	}
	accountsReport(stdout, f, figs)
	return nil
}

const benchClientID, benchClientSecret = "panopto-sidecar-bench", "bench-accounts-secret"

func studentName(i int) string { return fmt.Sprintf("student%05d", i) }

// accountsStore runs every figure for one store, with its own stand-in (so
// grants rotated in one store never meet the other's).
func accountsStore(ctx context.Context, f accountsFlags, kind, dir string, logf func(string, ...any)) (storeFigures, error) {
	fig := storeFigures{Store: kind, RSSCached: map[int]int64{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fig, err
	}
	users := map[string]string{}
	for i := range f.n {
		users[studentName(i)] = "pw"
	}
	fake := panoptofake.New(panoptofake.Options{ClientID: benchClientID, ClientSecret: benchClientSecret, AccessTTL: 24 * time.Hour, Users: users})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fig, err
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	panURL := "http://" + ln.Addr().String()

	var store token.Store
	var storeYAML string
	env := append(os.Environ(), "PANOPTO_CLIENT_ID="+benchClientID, "PANOPTO_CLIENT_SECRET="+benchClientSecret)
	var counter *opCounter
	switch kind {
	case "file":
		path := filepath.Join(dir, "panopto-token.json")
		store = token.NewFileStore(path)
		storeYAML = fmt.Sprintf("token_store: {type: file, path: %s}\n", path)
	case "vault":
		vaddr, token, stop, err := startVault(ctx, f.vaultBin, dir)
		if err != nil {
			return fig, err
		}
		defer stop()
		counter, err = startOpCounter(vaddr)
		if err != nil {
			return fig, err
		}
		defer counter.srv.Close()
		getenv := func(k string) string { return map[string]string{"VAULT_TOKEN": token}[k] }
		c, err := vault.New(ctx, vault.Config{Address: "http://" + vaddr}, getenv, slog.New(slog.DiscardHandler))
		if err != nil {
			return fig, err
		}
		store = vault.NewStore(c, "panopto/token")
		storeYAML = fmt.Sprintf("vault: {address: %s, auth: token, mount: secret}\ntoken_store: {type: vault, path: panopto/token}\n", counter.url)
		env = append(env, "VAULT_TOKEN="+token)
	default:
		return fig, fmt.Errorf("unknown store %q", kind)
	}

	logf("%s: obtaining %d grants at the stand-in and storing them", kind, f.n)
	t0 := time.Now()
	if err := seedGrants(ctx, f, panURL, store); err != nil {
		return fig, err
	}
	fig.Seed = time.Since(t0)
	logf("%s: seeded in %s", kind, fig.Seed.Round(time.Millisecond))

	// Run 1: no keep-alive; cache every account one after the other.
	p, startup, err := startAccountsSidecar(ctx, f, dir, "cache", panURL, storeYAML, fmt.Sprintf("max_cache: %d, idle_evict: 24h", f.n), env)
	if err != nil {
		return fig, err
	}
	fig.Startup = startup
	fig.RSSIdle = statusKB(p.cmd.Process.Pid, "VmRSS") << 10
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var first []time.Duration
	for i := range f.n {
		d, err := timedGet(ctx, c, p.url+"/Panopto/api/v1/folders", studentName(i))
		if err != nil {
			p.stop()
			return fig, fmt.Errorf("first request of %s: %w\n%s", studentName(i), err, p.tail())
		}
		first = append(first, d)
		if slices.Contains(f.cached, i+1) {
			fig.RSSCached[i+1] = statusKB(p.cmd.Process.Pid, "VmRSS") << 10
			logf("%s: %d accounts cached, RSS %s MiB", kind, i+1, mib(fig.RSSCached[i+1]))
		}
	}
	var again []time.Duration
	for i := range min(f.n, 1000) {
		d, err := timedGet(ctx, c, p.url+"/Panopto/api/v1/folders", studentName(i))
		if err != nil {
			p.stop()
			return fig, err
		}
		again = append(again, d)
	}
	p.stop()
	slices.Sort(first)
	slices.Sort(again)
	fig.FirstP50, fig.FirstP99, fig.CachedP50 = percentile(first, 50), percentile(first, 99), percentile(again, 50)

	// Run 2: a fresh sidecar whose keep-alive finds every grant due. With
	// keep_alive 8s a sweep spans 1s, so the pace is keep_alive_rate or
	// what one refresh after another allows, whichever is slower.
	before := fake.Stats().Refreshes
	var ops0 map[string]int64
	if counter != nil {
		ops0 = counter.snapshot()
	}
	start := time.Now()
	p, _, err = startAccountsSidecar(ctx, f, dir, "keepalive", panURL, storeYAML+"oauth: {refresh_before: 1s}\n",
		fmt.Sprintf("keep_alive: 8s, keep_alive_rate: %g", f.rate), env)
	if err != nil {
		return fig, err
	}
	defer p.stop()
	var firstAt time.Time
	deadline := time.Now().Add(time.Duration(float64(f.n)/min(f.rate, 50)*float64(time.Second)) + 2*time.Minute)
	for time.Now().Before(deadline) {
		n := fake.Stats().Refreshes - before
		if n > 0 && firstAt.IsZero() {
			firstAt = time.Now()
		}
		if n >= f.n {
			break
		}
		select {
		case <-ctx.Done():
			return fig, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	end := time.Now()
	fig.KARefreshes = fake.Stats().Refreshes - before
	if !firstAt.IsZero() {
		fig.KASweepStart, fig.KADuration = firstAt.Sub(start), end.Sub(firstAt)
	}
	if counter != nil {
		ops1 := counter.snapshot()
		fig.KAOps = map[string]int64{}
		var total int64
		for k, v := range ops1 {
			fig.KAOps[k] = v - ops0[k]
			if k != "other" {
				total += v - ops0[k]
			}
		}
		if fig.KARefreshes > 0 {
			fig.KAOpsPerRefres = float64(total) / float64(fig.KARefreshes)
		}
	}
	logf("%s: keep-alive %d refreshes in %s", kind, fig.KARefreshes, fig.KADuration.Round(time.Millisecond))
	return fig, nil
}

// seedGrants obtains one grant per student at the stand-in (password
// grant) and stores it as a login 30 days ago would have, so that the
// keep-alive finds every one due.
func seedGrants(ctx context.Context, f accountsFlags, panURL string, store token.Store) error {
	cfg := oauth2.Config{ClientID: benchClientID, ClientSecret: benchClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: panURL + "/Panopto/oauth2/connect/token", AuthStyle: oauth2.AuthStyleInHeader}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, f.seedConns)
	for range f.seedConns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= f.n || ctx.Err() != nil {
					return
				}
				name := studentName(i)
				tok, err := cfg.PasswordCredentialsToken(ctx, name, "pw")
				if err != nil {
					errs <- fmt.Errorf("grant for %s: %w", name, err)
					return
				}
				g := &token.Grant{AccessToken: token.Secret(tok.AccessToken), RefreshToken: token.Secret(tok.RefreshToken),
					TokenType: "Bearer", Expiry: tok.Expiry, ObtainedAt: time.Now().Add(-30 * 24 * time.Hour)}
				if _, err := store.CompareAndSwap(ctx, name, 0, token.Record{Grant: g}); err != nil {
					errs <- fmt.Errorf("store %s: %w", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// startAccountsSidecar starts a sidecar in accounts.mode login over the
// store and returns it with the time from exec to its first healthz 200.
func startAccountsSidecar(ctx context.Context, f accountsFlags, dir, name, panURL, storeYAML, accounts string, env []string) (*proc, time.Duration, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`# generated by bench accounts
listen: %[1]s
public_url: http://%[1]s
upstream: %[2]s
%[3]saccounts: {mode: login, identity_claim: sub, %[4]s}
log: {level: warn, format: json}
shutdown_grace: 2s
`, listen, panURL, storeYAML, accounts)), 0o600); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	p, err := startProc(name+"-sidecar", dir, env, f.sidecar, "serve", "-config", cfg)
	if err != nil {
		return nil, 0, err
	}
	p.url = "http://" + listen
	c := &http.Client{Timeout: time.Second}
	for time.Since(start) < 30*time.Second {
		if p.cmd.ProcessState != nil {
			break
		}
		if resp, err := c.Get(p.url + "/-/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	p.stop()
	return nil, 0, fmt.Errorf("%s did not become healthy:\n%s", name, p.tail())
}

func timedGet(ctx context.Context, c *http.Client, u, account string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Panopto-User", account)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("status %d", resp.StatusCode)
	}
	return d, nil
}

// startVault runs a Vault dev server (in-memory KV v2 at secret/) and
// returns its address, root token and how to stop it.
func startVault(ctx context.Context, bin, dir string) (string, string, func(), error) {
	if bin == "" {
		bin, _ = exec.LookPath("vault")
	}
	if bin == "" {
		return "", "", nil, errors.New("no vault binary: set VAULT_BIN or -vault")
	}
	addr, err := freeAddr()
	if err != nil {
		return "", "", nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := "bench-" + hex.EncodeToString(b)
	p, err := startProc("vault", dir, []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}, bin,
		"server", "-dev", "-dev-root-token-id="+token, "-dev-listen-address="+addr)
	if err != nil {
		return "", "", nil, err
	}
	if err := waitHTTP(ctx, p, "http://"+addr+"/v1/sys/health", 30*time.Second); err != nil {
		p.stop()
		return "", "", nil, err
	}
	return addr, token, p.stop, nil
}

// opCounter is a reverse proxy in front of Vault that counts the KV calls
// by kind: list, read (a Load), write (a CompareAndSwap), other (login,
// token renewal).
type opCounter struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	ops map[string]int64
}

func startOpCounter(vaultAddr string) (*opCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	target, _ := url.Parse("http://" + vaultAddr)
	rp := httputil.NewSingleHostReverseProxy(target)
	o := &opCounter{url: "http://" + ln.Addr().String(), ops: map[string]int64{}}
	o.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "other"
		switch {
		case !strings.HasPrefix(r.URL.Path, "/v1/secret/"):
		case r.Method == "LIST" || r.URL.Query().Get("list") == "true":
			kind = "list"
		case r.Method == http.MethodGet:
			kind = "read"
		case r.Method == http.MethodPut || r.Method == http.MethodPost:
			kind = "write"
		}
		o.mu.Lock()
		o.ops[kind]++
		o.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go o.srv.Serve(ln)
	return o, nil
}

func (o *opCounter) snapshot() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]int64{}
	for k, v := range o.ops {
		m[k] = v
	}
	return m
}

func accountsReport(w io.Writer, f accountsFlags, figs []storeFigures) {
	fmt.Fprintf(w, "\n#### Accounts at scale: %d students' grants per store\n\n", f.n)
	fmt.Fprintf(w, "| figure |")
	for _, fg := range figs {
		fmt.Fprintf(w, " %s store |", fg.Store)
	}
	fmt.Fprintf(w, "\n|---|")
	for range figs {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w)
	row := func(name string, val func(storeFigures) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, fg := range figs {
			fmt.Fprintf(w, " %s |", val(fg))
		}
		fmt.Fprintln(w)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	row("seeding (bench, 8 writers)", func(fg storeFigures) string { return fg.Seed.Round(time.Millisecond).String() })
	row("start-up (exec to first healthz 200)", func(fg storeFigures) string { return ms(fg.Startup) })
	row("RSS, no account cached", func(fg storeFigures) string { return mib(fg.RSSIdle) + " MiB" })
	for _, k := range f.cached {
		row(fmt.Sprintf("RSS, %d accounts cached", k), func(fg storeFigures) string { return mib(fg.RSSCached[k]) + " MiB" })
	}
	row("first request of an account not cached, p50 / p99", func(fg storeFigures) string { return ms(fg.FirstP50) + " / " + ms(fg.FirstP99) })
	row("request of a cached account, p50", func(fg storeFigures) string { return ms(fg.CachedP50) })
	row("keep-alive: start to first refresh (one walk of the store)", func(fg storeFigures) string { return ms(fg.KASweepStart) })
	row(fmt.Sprintf("keep-alive refreshes per second (keep_alive_rate %g)", f.rate), func(fg storeFigures) string {
		if fg.KADuration <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f (%d in %s)", float64(fg.KARefreshes)/fg.KADuration.Seconds(), fg.KARefreshes, fg.KADuration.Round(time.Millisecond))
	})
	row("store operations per keep-alive refresh", func(fg storeFigures) string {
		if fg.KAOps == nil {
			return "same calls as Vault (file reads/writes)"
		}
		return fmt.Sprintf("%.2f (list %d, read %d, write %d)", fg.KAOpsPerRefres, fg.KAOps["list"], fg.KAOps["read"], fg.KAOps["write"])
	})
}
