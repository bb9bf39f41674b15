//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wrkScript prints wrk's summary and latency percentiles (µs) as one JSON
// line; wrk's own --latency table stops at p99, the Lua done() hook reaches
// p99.9 from the same HdrHistogram.
const wrkScript = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d," ..
    "\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d,\"mean\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
`

type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	ErrConnect int64   `json:"err_connect"`
	ErrRead    int64   `json:"err_read"`
	ErrWrite   int64   `json:"err_write"`
	ErrStatus  int64   `json:"err_status"` // non-2xx/3xx answers
	ErrTimeout int64   `json:"err_timeout"`
	P50        float64 `json:"p50"` // µs
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p999"`
	Max        float64 `json:"max"`
	Mean       float64 `json:"mean"`
}

func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

func (r wrkResult) errors() int64 {
	return r.ErrConnect + r.ErrRead + r.ErrWrite + r.ErrStatus + r.ErrTimeout
}

func writeWrkScript(dir string) (string, error) {
	p := filepath.Join(dir, "report.lua")
	return p, os.WriteFile(p, []byte(wrkScript), 0o644)
}

// runWrk loads url with conns keep-alive connections for d.
func runWrk(ctx context.Context, bin, script, url string, conns, threads int, d time.Duration, headers []string) (wrkResult, error) {
	threads = max(1, min(threads, conns))
	secs := max(1, int((d+time.Second/2)/time.Second))
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "10s", "--latency", "-s", script}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	wctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), "BENCHJSON "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return wrkResult{}, fmt.Errorf("wrk output: %w", err)
			}
			return r, nil
		}
	}
	return wrkResult{}, fmt.Errorf("wrk printed no summary: %s", out.String())
}

// ---- a Go load generator for the refresh storm ----
// Each request's start time is kept so latencies can be split by whether
// they overlap a token refresh.

type sample struct {
	start time.Time
	dur   time.Duration
	err   bool
}

func goLoad(ctx context.Context, url string, clients int, until func() bool, maxDur time.Duration) []sample {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        clients * 2,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	lctx, cancel := context.WithTimeout(ctx, maxDur)
	defer cancel()
	var (
		mu  sync.Mutex
		all []sample
		wg  sync.WaitGroup
	)
	stopCh := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				close(stopCh)
				return
			case <-t.C:
				if until() {
					close(stopCh)
					return
				}
			}
		}
	}()
	buf := make([][]byte, clients)
	for i := range clients {
		buf[i] = make([]byte, 4096)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			local := make([]sample, 0, 1<<14)
			for {
				select {
				case <-stopCh:
					mu.Lock()
					all = append(all, local...)
					mu.Unlock()
					return
				default:
				}
				req, _ := http.NewRequestWithContext(lctx, http.MethodGet, url, nil)
				t0 := time.Now()
				resp, err := c.Do(req)
				bad := err != nil
				if err == nil {
					for {
						if _, rerr := resp.Body.Read(buf[i]); rerr != nil {
							break
						}
					}
					resp.Body.Close()
					bad = resp.StatusCode != http.StatusOK
				}
				if lctx.Err() != nil && err != nil {
					continue // cut off by the harness's own deadline
				}
				local = append(local, sample{start: t0, dur: time.Since(t0), err: bad})
			}
		}(i)
	}
	wg.Wait()
	return all
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func durations(s []sample) []time.Duration {
	d := make([]time.Duration, 0, len(s))
	for _, x := range s {
		if !x.err {
			d = append(d, x.dur)
		}
	}
	slices.Sort(d)
	return d
}
