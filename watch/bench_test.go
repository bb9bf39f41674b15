package watch_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

// completions notes when Panopto first answered Complete for each upload.
type completions struct {
	watch.Panopto
	mu sync.Mutex
	at map[string]time.Time
}

func (c *completions) Upload(ctx context.Context, account, id string) (watch.Status, error) {
	st, err := c.Panopto.Upload(ctx, account, id)
	if err == nil && st.State == watch.StateComplete {
		c.mu.Lock()
		if _, ok := c.at[id]; !ok {
			c.at[id] = time.Now()
		}
		c.mu.Unlock()
	}
	return st, err
}

// BenchmarkWebhookLatency watches 100 uploads at once against the stand-in
// with the production poll schedule (2 s, then 4 s: the stand-in completes
// at the second poll), with a file store and with Vault, and reports the time from the poll
// at which Panopto answered Complete to upload.completed at the receiver
// (p50, p99), and the Panopto calls made per upload watched.
//
//	go test -run '^$' -bench WebhookLatency -benchtime 1x ./watch
func BenchmarkWebhookLatency(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchLatency(b, nil) })
	b.Run("vault", func(b *testing.B) {
		srv := vaulttest.StartDev(b)
		benchLatency(b, func() watch.Store { return vaultStore(b, srv) })
	})
}

func benchLatency(b *testing.B, store func() watch.Store) {
	const uploads = 100
	for b.Loop() {
		e := newEnv(b, nil)
		if store != nil {
			e.store = store()
		}
		o := e.options("pod-a")
		o.Store = e.store
		o.PollBase, o.PollMax, o.Scan, o.Grace, o.Hold = 0, 0, 0, 0, 0 // the defaults
		o.Log = nil
		c := &completions{Panopto: e.pan, at: map[string]time.Time{}}
		o.Panopto = c
		ups := make([]watch.Upload, uploads)
		for i := range ups {
			ups[i] = e.pan.upload(true)
		}
		before := e.pan.pan.Stats().APICalls
		w := e.run(o, true)
		for _, up := range ups {
			if err := w.Start(context.Background(), up); err != nil {
				b.Fatal(err)
			}
		}
		testsupport.WaitFor(b, 2*time.Minute, "every upload.completed", func() bool {
			n := 0
			for _, d := range e.rcv.delivered() {
				if d.typ == "upload.completed" {
					n++
				}
			}
			return n == uploads
		})
		w.stop()
		var lat []time.Duration
		for _, d := range e.rcv.delivered() {
			if d.typ == "upload.completed" {
				c.mu.Lock()
				lat = append(lat, d.at.Sub(c.at[d.data.ID]))
				c.mu.Unlock()
			}
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(e.pan.pan.Stats().APICalls-before)/uploads, "panopto-calls/upload")
	}
}
