package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	tests := []struct {
		name      string
		attempt   int
		base, max time.Duration
		want      time.Duration
	}{
		{"first", 0, time.Second, time.Minute, time.Second},
		{"negative counts as first", -3, time.Second, time.Minute, time.Second},
		{"second", 1, time.Second, time.Minute, 2 * time.Second},
		{"sixth", 5, time.Second, time.Minute, 32 * time.Second},
		{"capped", 6, time.Second, time.Minute, time.Minute},
		{"far past the cap", 1 << 20, time.Second, time.Minute, time.Minute},
		{"acme bounds", 3, 2 * time.Second, 2 * time.Minute, 16 * time.Second},
		{"acme capped", 7, 2 * time.Second, 2 * time.Minute, 2 * time.Minute},
		{"max below base", 0, time.Minute, time.Second, time.Second},
		{"no base", 4, 0, time.Minute, 0},
		{"huge max does not overflow", 200, time.Second, time.Duration(1<<63 - 1), time.Duration(1<<63 - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := step(tt.attempt, tt.base, tt.max); got != tt.want {
				t.Fatalf("step(%d, %v, %v) = %v, want %v", tt.attempt, tt.base, tt.max, got, tt.want)
			}
		})
	}
}

func TestDelayIsInUpperHalfOfStep(t *testing.T) {
	tests := []struct {
		attempt   int
		base, max time.Duration
	}{
		{0, time.Second, time.Minute},
		{3, time.Second, time.Minute},
		{12, time.Second, time.Minute},
		{0, 2 * time.Second, 2 * time.Minute},
		{9, 2 * time.Second, 2 * time.Minute},
		{0, time.Nanosecond, time.Nanosecond},
		{5, 0, time.Minute},
	}
	for _, tt := range tests {
		s := step(tt.attempt, tt.base, tt.max)
		lo, hi := s, time.Duration(0)
		for range 1000 {
			d := Delay(tt.attempt, tt.base, tt.max)
			if d < s/2 || d > s {
				t.Fatalf("Delay(%d, %v, %v) = %v, not in [%v, %v]", tt.attempt, tt.base, tt.max, d, s/2, s)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		if s >= time.Millisecond && hi-lo < s/4 {
			t.Errorf("Delay(%d, %v, %v): 1000 draws spread only over [%v, %v]: no jitter", tt.attempt, tt.base, tt.max, lo, hi)
		}
	}
}

// TestRetrySequence is the sequence a retry loop sees with the Vault login
// bounds (1 s to 1 min), counting attempts from 0 and back to 0 after a
// success.
func TestRetrySequence(t *testing.T) {
	attempt := 0
	prevMax := time.Duration(0)
	for i := range 12 {
		d := Delay(attempt, time.Second, time.Minute)
		attempt++
		ceil := min(time.Second<<i, time.Minute)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %v not in [%v, %v]", i, d, ceil/2, ceil)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax < 30*time.Second {
		t.Errorf("backoff never grew: max %v", prevMax)
	}
	attempt = 0
	if d := Delay(attempt, time.Second, time.Minute); d > time.Second {
		t.Errorf("after reset: %v", d)
	}
}

func TestSleep(t *testing.T) {
	ctx := context.Background()
	if err := Sleep(ctx, 20*time.Millisecond); err != nil {
		t.Fatalf("a full sleep: %v", err)
	}
	if err := Sleep(ctx, 0); err != nil {
		t.Fatalf("no sleep: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if err := Sleep(cctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled sleep: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a cancelled sleep waited %v", took)
	}
}
