//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type streamResult struct {
	Target      string  `json:"target"`
	Direction   string  `json:"direction"` // upload | download
	Repeat      int     `json:"repeat"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"` // 10^6 bytes per second
	PeakRSSByte int64   `json:"peak_rss_bytes"`
	RSSReset    bool    `json:"rss_reset"` // VmHWM was reset before the run
	CPUSeconds  float64 `json:"cpu_seconds"`
	Err         string  `json:"err,omitempty"`
}

// checkSmall makes one small GET through t and wants 200 with 1 KiB.
func checkSmall(ctx context.Context, t target) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.url+pathSmall, nil)
	for _, h := range t.headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: first request: %w", t.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || len(b) != 1024 {
		return fmt.Errorf("%s: first request answered %d with %d bytes: %.200s", t.name, resp.StatusCode, len(b), b)
	}
	return nil
}

// patternReader yields n bytes from a fixed buffer without allocating.
type patternReader struct {
	buf []byte
	n   int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := copy(p, r.buf)
	if int64(k) > r.n {
		k = int(r.n)
	}
	r.n -= int64(k)
	return k, nil
}

func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:              nil,
		DisableCompression: true,
		WriteBufferSize:    256 << 10,
		ReadBufferSize:     256 << 10,
	}}
}

func streamOnce(ctx context.Context, t target, dir string, n int64) (streamResult, error) {
	r := streamResult{Target: t.name, Direction: dir, Bytes: n}
	// bounded: at least 60 s, or 20 MB/s worth of bytes
	sctx, cancel := context.WithTimeout(ctx, max(60*time.Second, time.Duration(n/20e6)*time.Second))
	defer cancel()
	var req *http.Request
	if dir == "upload" {
		req, _ = http.NewRequestWithContext(sctx, http.MethodPost, t.url+pathSink, &patternReader{buf: make([]byte, 256<<10), n: n})
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
	} else {
		req, _ = http.NewRequestWithContext(sctx, http.MethodGet, t.url+pathSource+"?bytes="+strconv.FormatInt(n, 10), nil)
	}
	for _, h := range t.headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	pid := 0
	if t.proc != nil {
		pid = t.proc.cmd.Process.Pid
		r.RSSReset = resetPeakRSS(pid) == nil
	}
	var cpu0 float64
	if pid != 0 {
		cpu0 = cpuSeconds(pid)
	}
	c := streamClient()
	defer c.CloseIdleConnections()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", t.name, dir, err)
	}
	buf := make([]byte, 256<<10)
	var got int64
	if dir == "upload" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var ans struct{ Bytes int64 }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ans) != nil {
			return r, fmt.Errorf("%s upload: %d %.200s", t.name, resp.StatusCode, b)
		}
		got = ans.Bytes
	} else {
		got, err = io.CopyBuffer(io.Discard, resp.Body, buf)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return r, fmt.Errorf("%s download: status %d after %d bytes: %v", t.name, resp.StatusCode, got, err)
		}
	}
	el := time.Since(start)
	if got != n {
		return r, fmt.Errorf("%s %s: %d bytes arrived, want %d", t.name, dir, got, n)
	}
	r.Seconds = el.Seconds()
	r.MBps = float64(n) / 1e6 / el.Seconds()
	if pid != 0 {
		r.PeakRSSByte = peakRSS(pid)
		r.CPUSeconds = cpuSeconds(pid) - cpu0
	}
	return r, nil
}

func streamPhase(ctx context.Context, f flags, tgts []target, _ string, res *results, logf func(string, ...any)) error {
	for rep := range f.streamRepeats {
		for _, dir := range []string{"upload", "download"} {
			for _, t := range tgts {
				r, err := streamOnce(ctx, t, dir, f.streamBytes)
				r.Repeat = rep
				if err != nil {
					r.Err = err.Error()
					logf("stream %s %s: %v", t.name, dir, err)
				} else {
					logf("stream %-7s %-8s %8.0f MB/s  peak RSS %s MiB", t.name, dir, r.MBps, mib(r.PeakRSSByte))
				}
				res.Stream = append(res.Stream, r)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	if len(res.Stream) > 0 && !res.Stream[0].RSSReset && tgts[0].proc != nil {
		res.Notes = append(res.Notes, "could not reset VmHWM before streaming: peak RSS includes the earlier phases")
	}
	return nil
}

func streamReport(w io.Writer, f flags, rs []streamResult) {
	fmt.Fprintf(w, "\n### Streaming %s MiB per run (best of %d; peak RSS = max over runs, VmHWM reset before each)\n\n",
		strconv.FormatInt(f.streamBytes>>20, 10), f.streamRepeats)
	fmt.Fprintf(w, "| direction | target | MB/s | vs direct | peak RSS MiB | CPU s/GiB | errors |\n|---|---|---:|---:|---:|---:|---:|\n")
	type key struct{ t, d string }
	best := map[key]streamResult{}
	rss := map[key]int64{}
	errs := map[key]int{}
	var order []key
	for _, r := range rs {
		k := key{r.Target, r.Direction}
		if _, seen := best[k]; !seen {
			order = append(order, k)
			best[k] = streamResult{}
		}
		if r.Err != "" {
			errs[k]++
			continue
		}
		if r.MBps > best[k].MBps {
			best[k] = r
		}
		rss[k] = max(rss[k], r.PeakRSSByte)
	}
	for _, d := range []string{"upload", "download"} {
		for _, k := range order {
			if k.d != d {
				continue
			}
			b := best[k]
			vs := "-"
			if dr, ok := best[key{"direct", d}]; ok && dr.MBps > 0 && k.t != "direct" {
				vs = fmt.Sprintf("%.0f%%", 100*b.MBps/dr.MBps)
			}
			cpu := "-"
			if k.t != "direct" && b.Bytes > 0 {
				cpu = fmt.Sprintf("%.2f", b.CPUSeconds/(float64(b.Bytes)/(1<<30)))
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %d |\n", d, k.t, b.MBps, vs, mib(rss[k]), cpu, errs[k])
		}
	}
}
