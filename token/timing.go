package token

import "time"

// Timing holds how long the managers wait between attempts and looks. A
// zero field takes its default; tests shorten them.
type Timing struct {
	// RetryBase is the wait after a failed refresh (default 1s); it
	// doubles with every further failure, up to RetryMax (default 1m).
	RetryBase, RetryMax time.Duration
	// IdlePoll: how often a manager holding no grant, or waiting on
	// another replica, re-reads the store (default 10s).
	IdlePoll time.Duration
	// StoreRecheck: how often requests may make a manager without a
	// usable grant re-read the store (default 500ms).
	StoreRecheck time.Duration
	// LeasePoll: how often a manager waiting for another replica's refresh
	// lease re-reads the store (default 200ms).
	LeasePoll time.Duration
	// EvictEvery: how often a pool looks for idle accounts (default 1m).
	EvictEvery time.Duration
}

// withDefaults fills the zero fields of t.
func (t Timing) withDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.RetryBase, time.Second)
	def(&t.RetryMax, time.Minute)
	def(&t.IdlePoll, 10*time.Second)
	def(&t.StoreRecheck, 500*time.Millisecond)
	def(&t.LeasePoll, 200*time.Millisecond)
	def(&t.EvictEvery, time.Minute)
	return t
}
