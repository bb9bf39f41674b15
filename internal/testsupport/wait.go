package testsupport

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds and returns how long that
// took; when timeout passes first it fails the test, naming what it waited
// for. It waits for other goroutines or processes, not for a clock: unit
// tests move a Clock instead.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
	return 0
}
