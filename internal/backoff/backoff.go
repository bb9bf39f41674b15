// Package backoff is the one retry-delay policy of the sidecar: exponential
// growth from a base to a cap, with "equal jitter" (each delay drawn
// uniformly from the upper half of the current step), so that replicas
// failing together do not retry in lockstep yet a delay never falls below
// half its step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before retry number attempt, counted from 0: the
// step base·2^attempt, capped at max, and the result drawn uniformly from
// [step/2, step]. A negative attempt counts as 0; a max below base caps the
// step at max. It is safe for concurrent use.
func Delay(attempt int, base, max time.Duration) time.Duration {
	d := step(attempt, base, max)
	return d/2 + rand.N(d/2+1)
}

// step is the unjittered delay: base doubled attempt times, capped at max,
// never negative.
func step(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	d := min(base, max)
	for i := 0; i < attempt && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return d
}

// Sleep waits d, or until ctx ends, whichever comes first, and returns
// ctx's error in the second case. A d of zero or less returns at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
