package watch

import (
	"testing"
	"time"
)

func TestPollSchedule(t *testing.T) {
	w := New(Options{})
	var got []time.Duration
	for polls := 1; polls <= 8; polls++ {
		got = append(got, w.pollDelay(polls))
	}
	want := []time.Duration{4, 8, 16, 32, 60, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits after each poll %v, want 4 s, 8 s, … 60 s (the first poll comes 2 s after State=1)", got)
		}
	}
}

func TestFinal(t *testing.T) {
	for state, final := range map[int]bool{0: false, 1: false, 2: true, 3: false, 4: true, 5: true, 6: false, 7: true, 8: true} {
		if Final(state) != final {
			t.Errorf("Final(%d) = %v", state, !final)
		}
	}
}
