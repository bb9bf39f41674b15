package watch

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// step looks at one watch: if it is due and no other replica holds it, it
// takes the lease, polls Panopto if a poll is due, delivers the messages
// due, and writes the record back with a lease that runs Grace past its
// next due time (none once nothing is left to do).
func (w *Watcher) step(ctx context.Context, key string) {
	next, err := w.stepOnce(ctx, key)
	switch {
	case ctx.Err() != nil:
		next = w.o.Now() // looked at again by the next Run
	case errors.Is(err, errNotMine):
	case err != nil:
		w.log.Warn("watch step failed", "key", key, "err", err)
		next = w.o.Now().Add(w.o.PollBase)
	}
	w.release(key, next)
}

// stepOnce returns when the record next needs a look (zero: never).
func (w *Watcher) stepOnce(ctx context.Context, key string) (time.Time, error) {
	rec, ver, err := w.o.Store.Load(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	if ver == 0 || rec.Data == nil {
		return time.Time{}, w.unwatch(ctx, key, true)
	}
	var r record
	if err := json.Unmarshal(rec.Data, &r); err != nil {
		w.log.Error("watched upload record does not decode; left alone", "key", key, "err", err)
		return time.Time{}, w.unwatch(ctx, key, false)
	}
	now := w.o.Now()
	due, ok := r.due()
	if !ok {
		return time.Time{}, w.unwatch(ctx, key, false) // final and delivered
	}
	if l := rec.Lease; l != nil && l.Holder != w.o.Holder && now.Before(l.Until) {
		return l.Until, errNotMine
	}
	if due.After(now) {
		return due, nil
	}
	took := rec.Lease == nil || rec.Lease.Holder != w.o.Holder
	held := token.Record{Data: rec.Data, Lease: &token.Lease{Holder: w.o.Holder, Until: now.Add(w.o.Hold)}}
	ver, err = w.o.Store.CompareAndSwap(ctx, key, ver, held)
	if errors.Is(err, token.ErrConflict) {
		return now, errNotMine // look again: someone wrote it meanwhile
	}
	if err != nil {
		return time.Time{}, err
	}
	if took && rec.Lease != nil {
		w.log.Info("took over upload watch", "id", r.Upload.ID, "from", rec.Lease.Holder)
	}

	// Writes are made even when ctx has ended, so a replica shutting down
	// leaves what it learnt, and its lease, for the next one.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if r.Watching && !r.NextPoll.After(now) {
		queued := len(r.Queue)
		pctx, cancel := context.WithTimeout(ctx, w.o.Hold/2) // the rest of the lease is for delivering
		w.poll(pctx, &r, now)
		cancel()
		if len(r.Queue) > queued {
			// A receiver that reads GET /-/uploads/{id} on an event sees
			// at least what the event says: the record is written first.
			if ver, err = w.write(wctx, key, ver, &r, now.Add(w.o.Hold)); err != nil {
				return now, err
			}
		}
	}
	w.deliver(ctx, &r)
	due, ok = r.due()
	until := time.Time{}
	if ok {
		until = due.Add(w.o.Grace)
	}
	if _, err := w.write(wctx, key, ver, &r, until); err != nil {
		return now, err // the next step polls again; messages sent may be sent again
	}
	if !ok {
		return time.Time{}, w.unwatch(wctx, key, false)
	}
	return due, nil
}

// write stores r at version ver, leased by this replica until leaseUntil
// (no lease when zero), and returns the new version.
func (w *Watcher) write(ctx context.Context, key string, ver int64, r *record, leaseUntil time.Time) (int64, error) {
	r.Update = w.o.Now()
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	out := token.Record{Data: data}
	if !leaseUntil.IsZero() {
		out.Lease = &token.Lease{Holder: w.o.Holder, Until: leaseUntil}
	}
	return w.o.Store.CompareAndSwap(ctx, key, ver, out)
}

// poll asks Panopto for the upload's state, reads the session when Panopto
// first names it and again at Complete, and queues the events.
func (w *Watcher) poll(ctx context.Context, r *record, now time.Time) {
	u := &r.Upload
	if !now.Before(r.Until) {
		r.Watching = false
		w.count.ranOut.Add(1)
		w.log.Warn("upload watch ran out before a final state; left as last seen",
			"id", u.ID, "account", u.Account, "state", u.State, "state_name", u.StateName, "watch_for", w.o.WatchFor)
		return
	}
	st, err := w.o.Panopto.Upload(ctx, u.Account, u.ID)
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // shutting down: not a poll; the next replica polls
	}
	w.count.polls.Add(1)
	r.Polls++
	r.NextPoll = now.Add(w.pollDelay(r.Polls))
	if err != nil {
		w.count.pollErrors.Add(1)
		w.log.Warn("polling upload failed", "id", u.ID, "account", u.Account, "err", err)
		return
	}
	u.State, u.StateName = st.State, StateNames[st.State]
	if st.Message != "" {
		u.Message = st.Message
	}
	read := st.State == StateComplete
	if st.SessionID != "" && (u.Session == nil || u.Session.ID != st.SessionID) {
		u.Session, read = &Session{ID: st.SessionID}, true
	}
	var sessionErr error
	if read && u.Session != nil {
		s, err := w.o.Panopto.Session(ctx, u.Account, u.Session.ID)
		if err != nil {
			sessionErr = err
			w.log.Warn("reading upload's session failed", "id", u.ID, "session", u.Session.ID, "err", err)
		} else {
			s.ID = u.Session.ID
			u.Session = &s
		}
	}
	if u.Session != nil && !r.Processing {
		r.Processing = true
		w.enqueue(r, webhook.TypeProcessing, now)
	}
	switch {
	case st.State == StateComplete && sessionErr != nil && r.NextPoll.Before(r.Until):
		// Read the session again at the next poll before telling anyone.
	case st.State == StateComplete:
		r.Watching = false
		w.count.completed.Add(1)
		w.enqueue(r, webhook.TypeCompleted, now)
		w.log.Info("upload complete", "id", u.ID, "account", u.Account, "polls", r.Polls)
	case Final(st.State):
		r.Watching = false
		w.count.failed.Add(1)
		w.enqueue(r, webhook.TypeFailed, now)
		w.log.Info("upload failed", "id", u.ID, "account", u.Account, "state_name", u.StateName, "polls", r.Polls)
	}
}

// pollDelay is the wait after polls polls: PollBase doubled polls times,
// at most PollMax (2 s after State=1, then 4, 8, … 60 s).
func (w *Watcher) pollDelay(polls int) time.Duration {
	d := w.o.PollBase
	for i := 0; i < polls && d < w.o.PollMax; i++ {
		d *= 2
	}
	return min(d, w.o.PollMax)
}

// enqueue queues an event about the upload as it is now, if webhooks are on.
func (w *Watcher) enqueue(r *record, typ string, now time.Time) {
	if w.currentSender() == nil {
		return
	}
	m, err := webhook.NewMessage(typ, now, r.Upload)
	if err != nil {
		w.log.Error("webhook message not made", "id", r.Upload.ID, "type", typ, "err", err)
		return
	}
	r.Queue = append(r.Queue, pending{Message: m, Next: now})
}

// deliver attempts the messages at the head of the queue while they are
// due and delivered, in order: a message waits behind an earlier one.
func (w *Watcher) deliver(ctx context.Context, r *record) {
	for len(r.Queue) > 0 {
		now := w.o.Now()
		p := &r.Queue[0]
		if p.Next.After(now) {
			return
		}
		s := w.currentSender()
		if s == nil {
			w.log.Warn("webhooks are off; undelivered webhook dropped", "id", r.Upload.ID, "webhook_id", p.Message.ID, "type", p.Message.Type)
			r.Queue = r.Queue[1:]
			continue
		}
		if now.Sub(p.Message.Timestamp) > w.o.GiveUpAfter {
			w.log.Error("webhook given up: not delivered in time", "id", r.Upload.ID, "webhook_id", p.Message.ID,
				"type", p.Message.Type, "attempts", p.Attempts, "give_up_after", w.o.GiveUpAfter)
			w.count.givenUp.Add(1)
			r.Queue = r.Queue[1:]
			continue
		}
		if ctx.Err() != nil {
			return // shutting down: the next replica sends it
		}
		// An attempt under way is finished (webhook.Timeout at most) even
		// when the replica is shutting down, so that a receiver that has
		// taken the event does not get it again from the next replica.
		err := s.Send(context.WithoutCancel(ctx), p.Message)
		if err == nil {
			w.count.delivered.Add(1)
			r.Queue = r.Queue[1:]
			continue
		}
		w.count.failedAttempts.Add(1)
		if de := (*webhook.DeliveryError)(nil); !errors.As(err, &de) {
			w.log.Warn("webhook not sent", "id", r.Upload.ID, "webhook_id", p.Message.ID, "type", p.Message.Type, "err", err)
		}
		p.Attempts++
		p.Next = w.o.Now().Add(w.o.Retry(p.Attempts))
		return
	}
}
