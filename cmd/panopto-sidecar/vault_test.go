package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

func vaultYAML(upstream, vaultAddr string, pollSeconds int) string {
	return fmt.Sprintf(`listen: {{LISTEN}}
public_url: {{URL}}
upstream: %s
oauth: {refresh_before: 59m}
vault: {address: %s, auth: token, mount: secret}
credentials: {source: vault, path: panopto/client, poll_interval: %ds}
token_store: {type: vault, path: panopto/token}
log: {level: debug, format: json}
shutdown_grace: 5s
`, upstream, vaultAddr, pollSeconds)
}

type trafficStats struct {
	total, failed atomic.Int64
	mu            sync.Mutex
	codes         map[int]int
}

// traffic sends requests round-robin to the sidecars until stop closes.
func traffic(urls []string, workers int, stop <-chan struct{}) (*trafficStats, *sync.WaitGroup) {
	st := &trafficStats{codes: map[int]int{}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code := statusCode(urls[i%len(urls)] + "/Panopto/api/v1/whoami")
				st.total.Add(1)
				if code != 200 {
					st.failed.Add(1)
					st.mu.Lock()
					st.codes[code]++
					st.mu.Unlock()
				}
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	return st, &wg
}

// TestVaultReplicas: three sidecars share one Vault token store and read the
// client credentials from Vault. Across refresh cycles under concurrent
// traffic: no failed request, no grant revoked, about one token call per
// cycle; a secret rotated in Vault is picked up without restart; Vault
// stopped for longer than a refresh interval and started again costs no
// request while the token is valid, and refreshing resumes.
func TestVaultReplicas(t *testing.T) {
	t.Parallel()
	vs := vaulttest.StartPersistent(t)
	ctx := context.Background()
	kv := vs.Client(t).KVv2("secret")
	if _, err := kv.Put(ctx, "panopto/client", map[string]any{"client_id": testClientID, "client_secret": testClientSecret}); err != nil {
		t.Fatal(err)
	}
	const ttl = 6 * time.Second
	addrs := []string{holdAddr(t), holdAddr(t), holdAddr(t)}
	var redirects []string
	for _, a := range addrs {
		redirects = append(redirects, "http://"+a+"/redirect")
	}
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: redirects, AccessTTL: ttl})
	env := map[string]string{"VAULT_TOKEN": vs.RootToken(), "PANOPTO_CLIENT_ID": "", "PANOPTO_CLIENT_SECRET": ""}
	registerSecret(vs.RootToken())
	var scs []*sidecarProc
	var urls []string
	for _, a := range addrs {
		sc := startSidecar(t, t.TempDir(), a, vaultYAML(pan.URL, vs.Addr(), 1), env)
		scs = append(scs, sc)
		urls = append(urls, sc.URL)
	}
	logIn(t, scs[0].URL)
	// The other replicas adopt the login from the shared store.
	for _, sc := range scs[1:] {
		testsupport.WaitFor(t, 5*time.Second, "replica adopts the login", func() bool { return statusCode(sc.URL+"/Panopto/api/v1/whoami") == 200 })
	}

	stop := make(chan struct{})
	st, wg := traffic(urls, 12, stop)
	finish := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer finish()

	// Phase 1: refresh cycles.
	start := time.Now()
	r0 := pan.Stats().Refreshes
	const cycles = 5
	time.Sleep(cycles * ttl / 2)
	elapsed := time.Since(start)
	refreshes := pan.Stats().Refreshes - r0
	// One replica refreshes per cycle: a token is refreshed at half its
	// life (less up to a tenth of that as jitter), so elapsed/(ttl/2)
	// cycles, give or take one at each end. Three replicas refreshing on
	// their own would make three times as many.
	expected := float64(elapsed) / float64(ttl/2)
	t.Logf("phase 1: %v, %d refresh calls for %.1f cycles, %d requests, %d failed", elapsed.Round(time.Millisecond), refreshes, expected, st.total.Load(), st.failed.Load())
	if float64(refreshes) > expected*1.25+1 || float64(refreshes) < expected*0.75-1 {
		t.Errorf("%d refresh calls in %.1f cycles", refreshes, expected)
	}

	// Phase 2: rotate the client secret at Panopto and in Vault.
	pan.RotateClientSecret("rotated-secret-7d2e9b")
	if _, err := kv.Put(ctx, "panopto/client", map[string]any{"client_id": testClientID, "client_secret": "rotated-secret-7d2e9b"}); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scs {
		testsupport.WaitFor(t, 5*time.Second, "new credentials version", func() bool {
			var s struct{ Credentials map[string]any }
			getJSON(t, sc.URL+"/-/status", &s)
			return s.Credentials["version"] == "2"
		})
	}
	r1 := pan.Stats().Refreshes
	testsupport.WaitFor(t, 3*ttl, "a refresh with the rotated secret", func() bool { return pan.Stats().Refreshes > r1 })

	// Phase 3: Vault down for longer than a refresh interval, right after a
	// refresh (the token then has its whole life ahead).
	// The outage must cover the refresh falling due (half the token's life)
	// and end, a restarted Vault unsealed, before the token expires. Tokens
	// live longer for this phase so that the margin between the two holds
	// on a loaded machine too.
	const ttl3 = 3 * ttl
	pan.SetAccessTTL(ttl3)
	// Wait for a refresh that every replica has adopted (replicas adopt
	// when their own refresh falls due, within the jitter of each other).
	r2 := pan.Stats().Refreshes
	testsupport.WaitFor(t, 2*ttl, "a refresh", func() bool { return pan.Stats().Refreshes > r2 })
	testsupport.WaitFor(t, ttl3, "all replicas on the new token", func() bool {
		var exp []string
		for _, sc := range scs {
			var s struct {
				ExpiresAt string `json:"expires_at"`
			}
			getJSON(t, sc.URL+"/-/status", &s)
			exp = append(exp, s.ExpiresAt)
		}
		if exp[0] != exp[1] || exp[1] != exp[2] {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, exp[0])
		return err == nil && time.Until(at) > ttl3*3/4 // the fresh token, not the one before
	})
	storeErrors := func(sc *sidecarProc) float64 {
		return metricValue(fetch(t, sc.URL+"/metrics"), `panopto_sidecar_token_refreshes_total{result="store_error"}`)
	}
	var errorsBefore []float64
	for _, sc := range scs {
		errorsBefore = append(errorsBefore, storeErrors(sc))
	}
	vs.Stop()
	downAt := time.Now()
	failedBefore := st.failed.Load()
	// Down until every replica's refresh fell due and failed for want of the
	// store (half the token's life, less jitter), which is shorter than what
	// is left of it.
	testsupport.WaitFor(t, ttl3*3/4, "a failed refresh at every replica", func() bool {
		for i, sc := range scs {
			if storeErrors(sc) == errorsBefore[i] {
				return false
			}
		}
		return true
	})
	var status struct {
		Vault map[string]any `json:"vault"`
	}
	getJSON(t, scs[0].URL+"/-/status", &status)
	vs.Start()
	t.Logf("vault down for %v; status while down: %v", time.Since(downAt).Round(time.Millisecond), status.Vault["client"])
	if f := st.failed.Load() - failedBefore; f != 0 {
		t.Errorf("%d requests failed while Vault was down and the token valid", f)
	}
	r3 := pan.Stats().Refreshes
	testsupport.WaitFor(t, 3*ttl, "refreshing resumes after Vault is back", func() bool { return pan.Stats().Refreshes > r3 })
	time.Sleep(ttl / 2)
	finish()

	ps := pan.Stats()
	t.Logf("total: %d requests, %d failed %v; refreshes %d, reuse %d, revoked %d, invalid_client %d",
		st.total.Load(), st.failed.Load(), st.codes, ps.Refreshes, ps.RefreshReuse, ps.GrantsRevoked, ps.InvalidClient)
	if st.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed: %v", st.failed.Load(), st.total.Load(), st.codes)
	}
	if ps.RefreshReuse != 0 || ps.GrantsRevoked != 0 {
		t.Errorf("refresh token reused %d times, %d grants revoked", ps.RefreshReuse, ps.GrantsRevoked)
	}
	// Nothing secret in any replica's output.
	secrets := []string{testClientSecret, "rotated-secret-7d2e9b", vs.RootToken()}
	raw, _ := kv.Get(ctx, "panopto/token")
	if raw != nil {
		for _, k := range []string{"access_token", "refresh_token"} {
			if s, _ := raw.Data[k].(string); s != "" {
				secrets = append(secrets, s)
			}
		}
	}
	for i, sc := range scs {
		b, _ := json.Marshal(fetch(t, sc.URL+"/-/status"))
		metrics := fetch(t, sc.URL+"/metrics")
		assertNoSecrets(t, secrets, map[string]string{
			fmt.Sprintf("replica %d logs", i):    sc.LogsAtStop(),
			fmt.Sprintf("replica %d status", i):  string(b),
			fmt.Sprintf("replica %d metrics", i): metrics,
		})
	}
}
