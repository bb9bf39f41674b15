//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// windowPad extends a refresh window past the token call's answer to cover
// persisting the rotated grant and swapping it in.
const windowPad = 250 * time.Millisecond

// windowGap: token calls closer than this belong to the same expiry.
const windowGap = time.Second

type latencyStats struct {
	Requests int     `json:"requests"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	P999us   float64 `json:"p999_us"`
	MaxUS    float64 `json:"max_us"`
}

type stormWindow struct {
	AtSeconds float64 `json:"at_s"` // since the load started
	Calls     int     `json:"calls"`
	Failed    int     `json:"failed"` // token calls answered non-200
	Millis    float64 `json:"ms"`     // first call's start to last call's end
}

type stormResult struct {
	Clients       int           `json:"clients"`
	TTL           string        `json:"ttl"`
	RefreshBefore string        `json:"refresh_before"`
	Seconds       float64       `json:"seconds"`
	Requests      int           `json:"requests"`
	Errors        int           `json:"errors"`       // transport errors and non-200 answers
	Unauthorized  int64         `json:"unauthorized"` // upstream 401s (an expired/unknown bearer was injected)
	Windows       []stormWindow `json:"windows"`
	TokenCalls    int           `json:"token_calls"`
	RefreshReuse  int           `json:"refresh_reuse"` // rotated refresh tokens presented again
	InWindow      latencyStats  `json:"in_window"`
	Outside       latencyStats  `json:"outside"`
	TimedOut      bool          `json:"timed_out"`
}

func stats(s []sample) latencyStats {
	d := durations(s)
	us := func(x time.Duration) float64 { return float64(x) / 1e3 }
	st := latencyStats{Requests: len(s)}
	if len(d) > 0 {
		st.P50us, st.P99us, st.P999us, st.MaxUS = us(percentile(d, 50)), us(percentile(d, 99)), us(percentile(d, 99.9)), us(d[len(d)-1])
	}
	return st
}

func clusterCalls(calls []tokenCall) [][]tokenCall {
	var out [][]tokenCall
	for _, c := range calls {
		if n := len(out); n > 0 && c.start.Sub(out[n-1][len(out[n-1])-1].end) < windowGap {
			out[n-1] = append(out[n-1], c)
			continue
		}
		out = append(out, []tokenCall{c})
	}
	return out
}

// stormPhase runs a second sidecar whose token server grants short-lived
// access tokens and loads it with many clients across several refreshes.
func stormPhase(ctx context.Context, f flags, dir string, up *upstream, logf func(string, ...any)) (*stormResult, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	tokens := newTokenServer(f.stormTTL, "http://"+listen+"/redirect")
	if err := tokens.start(); err != nil {
		return nil, err
	}
	defer tokens.srv.Close()
	up.fake.Store(tokens.fake)
	p, err := startSidecar(ctx, f.sidecarBin, sidecarSetup{
		dir: filepath.Join(dir, "storm"), upstream: "http://" + up.addr, tokens: tokens,
		listen: listen, refreshBefore: f.stormBefore, logLevel: f.sidecarLog,
	})
	if err != nil {
		return nil, err
	}
	defer p.stop()
	logf("storm: %d clients, access tokens live %s, refresh_before %s, waiting for %d refreshes",
		f.stormClients, f.stormTTL, f.stormBefore, f.stormExpiries)

	unauth0 := up.unauthorized.Load()
	reuse0 := tokens.fake.Stats().RefreshReuse
	start := time.Now()
	maxDur := time.Duration(f.stormExpiries+2)*f.stormTTL + 15*time.Second
	done := func() bool {
		w := clusterCalls(tokens.callsSince(start))
		if len(w) < f.stormExpiries {
			return false
		}
		last := w[len(w)-1]
		// keep loading a while after the last window so "outside" has samples on both sides
		return time.Since(last[len(last)-1].end) > 2*time.Second
	}
	samples := goLoad(ctx, p.url+pathSmall, f.stormClients, done, maxDur)
	end := time.Now()
	calls := tokens.callsSince(start)
	win := clusterCalls(calls)

	r := &stormResult{
		Clients: f.stormClients, TTL: f.stormTTL.String(), RefreshBefore: f.stormBefore.String(),
		Seconds: end.Sub(start).Seconds(), Requests: len(samples), TokenCalls: len(calls),
		Unauthorized: up.unauthorized.Load() - unauth0, RefreshReuse: tokens.fake.Stats().RefreshReuse - reuse0,
		TimedOut: len(win) < f.stormExpiries,
	}
	type span struct{ a, b time.Time }
	var spans []span
	for _, w := range win {
		sw := stormWindow{AtSeconds: w[0].start.Sub(start).Seconds(), Calls: len(w),
			Millis: float64(w[len(w)-1].end.Sub(w[0].start)) / 1e6}
		for _, c := range w {
			if c.status != 200 {
				sw.Failed++
			}
		}
		r.Windows = append(r.Windows, sw)
		spans = append(spans, span{w[0].start, w[len(w)-1].end.Add(windowPad)})
	}
	var in, out []sample
	for _, s := range samples {
		if s.err {
			r.Errors++
		}
		e := s.start.Add(s.dur)
		hit := false
		for _, sp := range spans {
			if s.start.Before(sp.b) && e.After(sp.a) {
				hit = true
				break
			}
		}
		if hit {
			in = append(in, s)
		} else {
			out = append(out, s)
		}
	}
	r.InWindow, r.Outside = stats(in), stats(out)
	logf("storm: %d requests in %.1fs, %d token calls in %d windows, %d errors", r.Requests, r.Seconds, r.TokenCalls, len(win), r.Errors)
	return r, nil
}

func stormReport(w io.Writer, r *stormResult) {
	fmt.Fprintf(w, "\n### Refresh storm: %d clients, token TTL %s, refresh_before %s, %.1f s\n\n", r.Clients, r.TTL, r.RefreshBefore, r.Seconds)
	per := "-"
	maxPer := 0
	for _, x := range r.Windows {
		maxPer = max(maxPer, x.Calls)
	}
	if len(r.Windows) > 0 {
		per = fmt.Sprintf("%.2f (max %d)", float64(r.TokenCalls)/float64(len(r.Windows)), maxPer)
	}
	fmt.Fprintf(w, "- expiries (refresh windows): %d%s; token-endpoint calls: %d; per expiry: %s\n", len(r.Windows), map[bool]string{true: " (TIMED OUT before the wanted count)", false: ""}[r.TimedOut], r.TokenCalls, per)
	fmt.Fprintf(w, "- requests: %d; errors: %d; upstream 401 (bad bearer injected): %d; refresh-token reuse: %d\n", r.Requests, r.Errors, r.Unauthorized, r.RefreshReuse)
	for i, x := range r.Windows {
		fmt.Fprintf(w, "  - window %d at %.1f s: %d call(s), %d failed, %.1f ms\n", i+1, x.AtSeconds, x.Calls, x.Failed, x.Millis)
	}
	fmt.Fprintf(w, "\n| requests | n | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---:|---:|---:|---:|---:|\n")
	for _, row := range []struct {
		n string
		s latencyStats
	}{{"overlapping a refresh window (+" + windowPad.String() + ")", r.InWindow}, {"outside", r.Outside}} {
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f | %.0f |\n", row.n, row.s.Requests, row.s.P50us, row.s.P99us, row.s.P999us, row.s.MaxUS)
	}
}
