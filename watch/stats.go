package watch

import "sync/atomic"

// Stats counts what one Watcher did since it was made (for metrics).
type Stats struct {
	Polls      int64 // sessionUpload reads
	PollErrors int64 // of which failed
	Completed  int64 // uploads seen reach Complete
	Failed     int64 // uploads seen end in another final state
	RanOut     int64 // watches ended by watch_for
	// Webhooks: delivered, attempts that failed, messages given up.
	Delivered      int64
	FailedAttempts int64
	GivenUp        int64
	// Swept counts the records deleted past their time (finished uploads
	// past Retention, idempotency keys past KeyTTL).
	Swept int64
}

type counters struct {
	polls, pollErrors, completed, failed, ranOut atomic.Int64
	delivered, failedAttempts, givenUp, swept    atomic.Int64
}

// Stats returns the counts so far.
func (w *Watcher) Stats() Stats {
	c := &w.count
	return Stats{
		Polls: c.polls.Load(), PollErrors: c.pollErrors.Load(), Completed: c.completed.Load(),
		Failed: c.failed.Load(), RanOut: c.ranOut.Load(), Delivered: c.delivered.Load(),
		FailedAttempts: c.failedAttempts.Load(), GivenUp: c.givenUp.Load(), Swept: c.swept.Load(),
	}
}
