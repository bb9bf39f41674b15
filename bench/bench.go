//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// target is one way of reaching the upstream.
type target struct {
	name    string
	url     string   // base URL
	headers []string // wrk -H values
	proc    *proc    // nil for direct
}

// cell is one wrk run of one target at one concurrency.
type cell struct {
	Target      string    `json:"target"`
	Conns       int       `json:"conns"`
	Repeat      int       `json:"repeat"`
	Wrk         wrkResult `json:"wrk"`
	CPUSeconds  float64   `json:"cpu_seconds"` // proxy process tree, during the run
	PeakRSSByte int64     `json:"peak_rss_bytes"`
}

type results struct {
	Started time.Time      `json:"started"`
	Flags   map[string]any `json:"flags"`
	Cells   []cell         `json:"cells"`
	Stream  []streamResult `json:"stream"`
	Storm   *stormResult   `json:"storm,omitempty"`
	Upload  *uploadResult  `json:"upload,omitempty"`
	Notes   []string       `json:"notes"`

	// Deadline: many uploads at once, API calls meanwhile.
	Deadline *deadlineResult `json:"deadline,omitempty"`
}

func bench(ctx context.Context, f flags, stdout, stderr io.Writer) (err error) {
	dir := f.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "panopto-sidecar-bench-"); err != nil {
			return err
		}
		if !f.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}

	if err := ensureTools(ctx, &f, stderr); err != nil {
		return err
	}
	if err := buildSidecar(ctx, &f, dir, stderr); err != nil {
		return err
	}
	script, err := writeWrkScript(dir)
	if err != nil {
		return err
	}

	res := &results{Started: time.Now(), Flags: map[string]any{
		"d": f.duration.String(), "repeats": f.repeats, "c": f.concurrencies, "targets": f.targets,
		"stream_bytes": f.streamBytes, "stream_repeats": f.streamRepeats, "sidecar_log": f.sidecarLog,
		"cpus": runtime.NumCPU(),
	}}

	// The fast upstream and the token server live in this process.
	sb := make([]byte, 24)
	_, _ = rand.Read(sb)
	static := "static-" + hex.EncodeToString(sb)
	up := newUpstream(static)
	if err := up.start(); err != nil {
		return err
	}
	defer up.srv.Close()
	sideListen, err := freeAddr()
	if err != nil {
		return err
	}
	tokens := newTokenServer(time.Hour, "http://"+sideListen+"/redirect")
	if err := tokens.start(); err != nil {
		return err
	}
	defer tokens.srv.Close()
	up.fake.Store(tokens.fake)

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	var tgts []target
	for _, name := range f.targets {
		t := target{name: name}
		var p *proc
		switch name {
		case "direct":
			t.url = "http://" + up.addr
			t.headers = []string{"Authorization: Bearer " + static}
		case "sidecar":
			p, err = startSidecar(ctx, f.sidecarBin, sidecarSetup{
				dir: filepath.Join(dir, "sidecar"), upstream: "http://" + up.addr, tokens: tokens,
				listen: sideListen, refreshBefore: 5 * time.Minute, logLevel: f.sidecarLog,
			})
		case "nginx":
			p, err = startNginx(ctx, f.nginxBin, dir, up.addr, static)
		case "caddy":
			p, err = startCaddy(ctx, f.caddyBin, dir, up.addr, static)
		case "goproxy":
			p, err = startGoProxy(ctx, dir, up.addr, static)
		}
		if err != nil {
			return err
		}
		if p != nil {
			procs = append(procs, p)
			t.proc, t.url = p, p.url
		}
		tgts = append(tgts, t)
		logf("%s ready at %s", name, t.url)
	}
	// Every target must answer the small request with 200 before loading.
	for _, t := range tgts {
		if err := checkSmall(ctx, t); err != nil {
			return err
		}
	}

	// Streaming runs first, on freshly started proxies, so its peak RSS is
	// not the heap left over from 256-connection load.
	if !f.skip["stream"] {
		if err := streamPhase(ctx, f, tgts, static, res, logf); err != nil {
			return err
		}
	}
	if !f.skip["latency"] {
		if err := latencyPhase(ctx, f, script, tgts, res, logf); err != nil {
			return err
		}
	}
	// The main proxies are stopped before the storm so it has the CPUs.
	for _, p := range procs {
		p.stop()
	}
	procs = nil
	if !f.skip["storm"] && slices.Contains(f.targets, "sidecar") {
		st, err := stormPhase(ctx, f, dir, up, logf)
		if err != nil {
			return err
		}
		res.Storm = st
	}
	if !f.skip["upload"] {
		ur, err := uploadPhase(ctx, f, dir, logf)
		if err != nil {
			return err
		}
		res.Upload = ur
	}
	if !f.skip["deadline"] {
		dr, err := deadlinePhase(ctx, f, dir, logf)
		if err != nil {
			return err
		}
		res.Deadline = dr
	}
	if up.unauthorized.Load() > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("upstream refused %d requests for a bad bearer", up.unauthorized.Load()))
	}
	report(stdout, f, res)
	if f.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(f.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if f.keep || f.workDir != "" {
		fmt.Fprintf(stderr, "work directory (configs, logs): %s\n", dir)
	}
	return nil
}

func latencyPhase(ctx context.Context, f flags, script string, tgts []target, res *results, logf func(string, ...any)) error {
	if f.warmup > 0 {
		for _, t := range tgts {
			logf("warm-up %s (%s, 64 connections)", t.name, f.warmup)
			if _, err := runWrk(ctx, f.wrkBin, script, t.url+pathSmall, 64, f.wrkThreads, f.warmup, t.headers); err != nil {
				return err
			}
		}
	}
	total := len(f.concurrencies) * f.repeats * len(tgts)
	n := 0
	for _, c := range f.concurrencies {
		for rep := range f.repeats {
			for _, t := range tgts {
				n++
				var cpu0 float64
				if t.proc != nil {
					_ = resetPeakRSS(t.proc.cmd.Process.Pid) // per-cell peak (from the RSS at the cell's start)
					cpu0 = cpuSeconds(t.proc.cmd.Process.Pid)
				}
				r, err := runWrk(ctx, f.wrkBin, script, t.url+pathSmall, c, f.wrkThreads, f.duration, t.headers)
				if err != nil {
					return err
				}
				cl := cell{Target: t.name, Conns: c, Repeat: rep, Wrk: r}
				if t.proc != nil {
					cl.CPUSeconds = cpuSeconds(t.proc.cmd.Process.Pid) - cpu0
					cl.PeakRSSByte = peakRSS(t.proc.cmd.Process.Pid)
				}
				res.Cells = append(res.Cells, cl)
				logf("[%d/%d] c=%-3d rep=%d %-7s %8.0f req/s  p50 %6.0fµs  p99 %6.0fµs  p99.9 %6.0fµs  errors %d",
					n, total, c, rep+1, t.name, r.rps(), r.P50, r.P99, r.P999, r.errors())
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	return nil
}

// ---- the table ----

type agg struct {
	rps, p50, p99, p999 float64 // medians over repeats
	cpuPer10k           float64
	rss                 int64
	errors              int64
	n                   int
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func aggregate(cells []cell) map[string]map[int]agg {
	type acc struct {
		rps, p50, p99, p999 []float64
		cpu                 float64
		req                 int64
		rss                 int64
		errs                int64
	}
	m := map[string]map[int]*acc{}
	for _, c := range cells {
		if m[c.Target] == nil {
			m[c.Target] = map[int]*acc{}
		}
		a := m[c.Target][c.Conns]
		if a == nil {
			a = &acc{}
			m[c.Target][c.Conns] = a
		}
		a.rps = append(a.rps, c.Wrk.rps())
		a.p50 = append(a.p50, c.Wrk.P50)
		a.p99 = append(a.p99, c.Wrk.P99)
		a.p999 = append(a.p999, c.Wrk.P999)
		a.cpu += c.CPUSeconds
		a.req += c.Wrk.Requests
		a.rss = max(a.rss, c.PeakRSSByte)
		a.errs += c.Wrk.errors()
	}
	out := map[string]map[int]agg{}
	for t, byC := range m {
		out[t] = map[int]agg{}
		for c, a := range byC {
			g := agg{rps: median(a.rps), p50: median(a.p50), p99: median(a.p99), p999: median(a.p999),
				rss: a.rss, errors: a.errs, n: len(a.rps)}
			if a.req > 0 {
				g.cpuPer10k = a.cpu / float64(a.req) * 1e4
			}
			out[t][c] = g
		}
	}
	return out
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

func report(w io.Writer, f flags, res *results) {
	fmt.Fprintf(w, "\n## panopto-sidecar benchmark (%s, %d CPUs, %s per cell, %d repeats, sidecar log.level %s)\n",
		res.Started.Format(time.RFC3339), runtime.NumCPU(), f.duration, f.repeats, f.sidecarLog)
	if len(res.Cells) > 0 {
		a := aggregate(res.Cells)
		fmt.Fprintf(w, "\n### Small GET (1 KiB JSON), medians over repeats; added latency = target − direct\n\n")
		fmt.Fprintf(w, "| conns | target | req/s | p50 µs | +p50 µs | +p99 µs | +p99.9 µs | CPU s/10k req | peak RSS MiB (max over repeats) | errors |\n")
		fmt.Fprintf(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range f.concurrencies {
			d, hasDirect := a["direct"][c]
			for _, t := range f.targets {
				g, ok := a[t][c]
				if !ok {
					continue
				}
				add := func(v, base float64) string {
					if !hasDirect || t == "direct" {
						return "-"
					}
					return fmt.Sprintf("%+.0f", v-base)
				}
				cpu := "-"
				if t != "direct" {
					cpu = fmt.Sprintf("%.3f", g.cpuPer10k)
				}
				fmt.Fprintf(w, "| %d | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %d |\n",
					c, t, g.rps, g.p50, add(g.p50, d.p50), add(g.p99, d.p99), add(g.p999, d.p999), cpu, mib(g.rss), g.errors)
			}
		}
		fmt.Fprintf(w, "\n### Ratios (sidecar ÷ other; throughput > 1 and latency/CPU < 1 favour the sidecar)\n\n")
		fmt.Fprintf(w, "| conns | vs | req/s | p99 | p99.9 | CPU/req |\n|---:|---|---:|---:|---:|---:|\n")
		for _, c := range f.concurrencies {
			s, ok := a["sidecar"][c]
			if !ok {
				continue
			}
			for _, o := range []string{"nginx", "caddy", "goproxy"} {
				g, ok := a[o][c]
				if !ok {
					continue
				}
				fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s |\n", c, o, ratio(s.rps, g.rps), ratio(s.p99, g.p99), ratio(s.p999, g.p999), ratio(s.cpuPer10k, g.cpuPer10k))
			}
		}
		targetsCheck(w, a)
	}
	if len(res.Stream) > 0 {
		streamReport(w, f, res.Stream)
	}
	if res.Storm != nil {
		stormReport(w, res.Storm)
	}
	if res.Upload != nil {
		uploadReport(w, res.Upload)
	}
	if res.Deadline != nil {
		deadlineReport(w, res.Deadline)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// targetsCheck states where the small-request numbers stand against the
// team's goals.
func targetsCheck(w io.Writer, a map[string]map[int]agg) {
	var lines []string
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, c := range []int{64, 256} {
		s, ok1 := a["sidecar"][c]
		cd, ok2 := a["caddy"][c]
		ng, ok3 := a["nginx"][c]
		if ok1 && ok2 {
			lines = append(lines, fmt.Sprintf("c=%d throughput ≥ Caddy: %.0f vs %.0f req/s — %s", c, s.rps, cd.rps, verdict(s.rps >= cd.rps)))
		}
		if ok1 && ok3 {
			lines = append(lines, fmt.Sprintf("c=%d throughput ≥ 0.9× nginx: %.2f× — %s", c, s.rps/ng.rps, verdict(s.rps >= 0.9*ng.rps)))
		}
	}
	if s, ok := a["sidecar"][1]; ok {
		if d, ok := a["direct"][1]; ok {
			lines = append(lines, fmt.Sprintf("c=1 added p50 ≤ 100 µs: %+.0f µs — %s", s.p50-d.p50, verdict(s.p50-d.p50 <= 100)))
		}
	}
	if s, ok := a["sidecar"][64]; ok {
		if ng, ok := a["nginx"][64]; ok {
			lines = append(lines, fmt.Sprintf("c=64 p99 ≤ nginx: %.0f vs %.0f µs — %s", s.p99, ng.p99, verdict(s.p99 <= ng.p99)))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Targets (small requests)\n\n")
	for _, l := range lines {
		fmt.Fprintf(w, "- %s\n", l)
	}
}
