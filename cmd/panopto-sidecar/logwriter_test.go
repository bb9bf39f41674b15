package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestLogWriterKeepsLinesWhole: concurrent writers' lines arrive whole, in
// per-writer order, and nothing is lost at Close.
func TestLogWriterKeepsLinesWhole(t *testing.T) {
	var out testsupport.SyncBuffer
	lw := newLogWriter(&out)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				fmt.Fprintf(lw, "writer=%d line=%d %s\n", w, i, strings.Repeat("x", i%50))
			}
		}()
	}
	wg.Wait()
	lw.Close()
	fmt.Fprintf(lw, "after close\n")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*2000+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("%d lines", len(lines))
	}
	next := map[int]int{}
	for _, l := range lines[:len(lines)-1] {
		var w, i int
		if _, err := fmt.Sscanf(l, "writer=%d line=%d", &w, &i); err != nil {
			t.Fatalf("broken line %q", l)
		}
		if i != next[w] || !strings.HasSuffix(l, " "+strings.Repeat("x", i%50)) {
			t.Fatalf("writer %d: line %d out of order or cut: %q", w, i, l)
		}
		next[w]++
	}
}
