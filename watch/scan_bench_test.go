package watch

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// BenchmarkScan: the store holds 10 000 finished uploads and 10 active
// ones. "every-upload" is the scan as it was (list every upload record);
// "active" the scan now (list the markers of the active watches);
// "hourly-sweep" what one replica does every hour instead.
//
//	go test -run '^$' -bench Scan -benchtime 20x ./watch
func BenchmarkScan(b *testing.B) {
	const finished, active = 10000, 10
	b.Run("file", func(b *testing.B) {
		benchScan(b, token.NewFileStore(filepath.Join(b.TempDir(), "token.json")), finished, active)
	})
	b.Run("vault", func(b *testing.B) { benchScan(b, devVaultStore(b), finished, active) })
}

func benchScan(b *testing.B, s Store, finished, active int) {
	now := time.Now()
	w := New(Options{Store: s, Now: func() time.Time { return now }})
	for i := range finished {
		seedUpload(b, w, fmt.Sprintf("f-%05d", i), false, false, now.Add(-time.Hour))
	}
	for i := range active {
		seedUpload(b, w, fmt.Sprintf("a-%02d", i), true, false, now)
	}
	ctx := context.Background()
	b.Run("every-upload", func(b *testing.B) {
		for b.Loop() {
			keys, err := s.ListKeys(ctx, keyPrefix, "", 0)
			if err != nil || len(keys) != finished+active {
				b.Fatal(len(keys), err)
			}
		}
	})
	b.Run("hourly-sweep", func(b *testing.B) { // nothing past retention: lists and reads every record
		for b.Loop() {
			if err := w.Sweep(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("active", func(b *testing.B) {
		for b.Loop() {
			clear(w.local)
			if err := w.scan(ctx); err != nil || len(w.local) != active {
				b.Fatal(len(w.local), err)
			}
		}
	})
}
