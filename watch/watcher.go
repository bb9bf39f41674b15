package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// Store is where watches and idempotency keys live: the token store, so
// that every replica sees them.
type Store interface {
	token.Store
	token.KeyLister
	token.Deleter
}

// Panopto is what a watch asks Panopto, as the upload's account.
type Panopto interface {
	// Upload reads the sessionUpload id.
	Upload(ctx context.Context, account, id string) (Status, error)
	// Session reads GET /Panopto/api/v1/sessions/{sessionID}.
	Session(ctx context.Context, account, sessionID string) (Session, error)
}

// Sender delivers one webhook message (one attempt); *webhook.Sender is one.
type Sender interface {
	Send(ctx context.Context, m webhook.Message) error
}

var _ Sender = (*webhook.Sender)(nil)

// Options configures a Watcher. Zero durations take the defaults.
type Options struct {
	Store   Store
	Panopto Panopto
	// Holder names this replica in leases (the token managers' holder).
	Holder string
	// WatchFor bounds a watch (uploads.watch_for; default 24h).
	WatchFor time.Duration
	// PollBase and PollMax: the first poll comes PollBase after State=1,
	// each later one twice as long after the previous, at most PollMax
	// (default 2 s and 60 s).
	PollBase, PollMax time.Duration
	// Scan is how often the store is listed for active watches this
	// replica does not know of: those other replicas started, to take over
	// if their replica dies (default 30 s). A replica learns of its own at
	// Start, and of every one at its first scan.
	Scan time.Duration
	// Grace is how long past its next due time a record's lease outlives
	// a holder that died (default 30 s). Hold is the lease taken while
	// working on a record, which covers a poll and a delivery (default 1 min).
	Grace, Hold time.Duration
	// Workers bounds the records worked on at once (default 8).
	Workers int
	// Retry is the wait after a failed delivery (default webhook.Retry);
	// GiveUpAfter drops a message not delivered so long after its event
	// (default webhook.GiveUpAfter).
	Retry       func(failed int) time.Duration
	GiveUpAfter time.Duration
	// KeyTTL is how long an idempotency key is honoured (default 24h);
	// KeyLease the lease a claim holds and renews while its request runs
	// (default 30 s; renewed every third of it).
	KeyTTL, KeyLease time.Duration
	// Retention is how long a finished upload (final, or its watch ran
	// out, and every webhook delivered or given up) stays readable by Get
	// (uploads.retention; default 30 days). Every Sweep (default 1h), one
	// replica deletes the uploads finished longer ago and the
	// idempotency keys older than KeyTTL.
	Retention, Sweep time.Duration
	Now              func() time.Time
	Log              *slog.Logger
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.WatchFor, 24*time.Hour)
	def(&o.PollBase, 2*time.Second)
	def(&o.PollMax, time.Minute)
	def(&o.Scan, 30*time.Second)
	def(&o.Grace, 30*time.Second)
	def(&o.Hold, time.Minute)
	def(&o.GiveUpAfter, webhook.GiveUpAfter)
	def(&o.KeyTTL, 24*time.Hour)
	def(&o.KeyLease, 30*time.Second)
	def(&o.Retention, 30*24*time.Hour)
	def(&o.Sweep, time.Hour)
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Retry == nil {
		o.Retry = webhook.Retry
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Holder == "" {
		o.Holder = fmt.Sprintf("replica-%08x", rand.Uint32())
	}
}

// Watcher follows uploads to their final state. Start and Get may be
// called whether or not Run runs; Run does the watching.
type Watcher struct {
	o      Options
	log    *slog.Logger
	sender atomic.Pointer[senderBox]
	kick   chan struct{}
	count  counters

	mu    sync.Mutex
	local map[string]*entry // the watches this replica knows of, by key
}

type senderBox struct{ s Sender }

// entry is what a replica remembers of a watch between steps.
type entry struct {
	due  time.Time // when to look at it next
	busy bool      // a worker has it
}

// New returns a Watcher; webhooks are off until SetSender.
func New(o Options) *Watcher {
	o.defaults()
	return &Watcher{
		o:     o,
		log:   o.Log.With("component", "watch"),
		kick:  make(chan struct{}, 1),
		local: map[string]*entry{},
	}
}

// SetSender turns webhooks on (or, with nil, off). It applies to events
// that happen from then on; messages already queued are delivered by the
// new sender, or dropped (and logged) when webhooks are off.
func (w *Watcher) SetSender(s Sender) {
	if s == nil {
		w.sender.Store(nil)
		return
	}
	w.sender.Store(&senderBox{s})
}

func (w *Watcher) currentSender() Sender {
	if b := w.sender.Load(); b != nil {
		return b.s
	}
	return nil
}

// Start begins watching an upload Panopto has just accepted (State=1):
// u names it (ID, Account, FolderID, Name, Bytes, and Metadata as the
// Metadata function returned it). It writes the
// watch's record, held by this replica, and returns; the first poll comes
// PollBase later. The record is written even if ctx (a request's) has
// ended, since Panopto has the upload either way.
func (w *Watcher) Start(ctx context.Context, u Upload) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	now := w.o.Now()
	u.State, u.StateName = StateUploadComplete, StateNames[StateUploadComplete]
	r := record{
		Upload: u, Start: now, Update: now, Until: now.Add(w.o.WatchFor),
		NextPoll: now.Add(w.o.PollBase), Watching: true,
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("watch: encode upload %s: %w", u.ID, err)
	}
	// The watch's marker first: a replica that dies before the record
	// is written leaves a marker without a record, which a step removes;
	// a record without a marker would never be scanned.
	if err := w.mark(ctx, u.ID, now); err != nil {
		return fmt.Errorf("watch: start upload %s: %w", u.ID, err)
	}
	key := uploadKey(u.ID)
	lease := &token.Lease{Holder: w.o.Holder, Until: r.NextPoll.Add(w.o.Grace)}
	if _, err := w.o.Store.CompareAndSwap(ctx, key, 0, token.Record{Data: data, Lease: lease}); err != nil {
		return fmt.Errorf("watch: start upload %s: %w", u.ID, err)
	}
	w.schedule(key, r.NextPoll)
	w.log.Info("watching upload", "id", u.ID, "account", u.Account)
	return nil
}

// Get returns the upload id as last seen; ok is false when no watch of
// that id exists. The caller checks that the upload's Account is the
// caller's.
func (w *Watcher) Get(ctx context.Context, id string) (Upload, bool, error) {
	rec, ver, err := w.o.Store.Load(ctx, uploadKey(id))
	if err != nil {
		return Upload{}, false, fmt.Errorf("watch: read upload %s: %w", id, err)
	}
	if ver == 0 || rec.Data == nil {
		return Upload{}, false, nil
	}
	var r record
	if err := json.Unmarshal(rec.Data, &r); err != nil {
		return Upload{}, false, fmt.Errorf("watch: read upload %s: %w: %w", id, token.ErrCorrupt, err)
	}
	return r.Upload, true, nil
}

// schedule notes that key needs a look at due and wakes Run.
func (w *Watcher) schedule(key string, due time.Time) {
	w.mu.Lock()
	e := w.local[key]
	if e == nil {
		e = &entry{}
		w.local[key] = e
	}
	e.due = due
	w.mu.Unlock()
	w.wake()
}

func (w *Watcher) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends, then waits for the steps under way (a
// webhook attempt under way is finished, webhook.Timeout at most; a poll
// is cut short) and returns nil. It lists the markers of active watches
// every Scan for those it does not know of, works on each watch when it is
// due, at most Workers at a time, and every Sweep, when it is this
// replica's turn, runs Sweep.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, w.o.Workers)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextScan, nextSweep time.Time
	var sweeping atomic.Bool
	for {
		now := w.o.Now()
		if !now.Before(nextScan) {
			if err := w.scan(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("listing watched uploads failed", "err", err)
			}
			nextScan = now.Add(w.o.Scan)
		}
		if !now.Before(nextSweep) && !sweeping.Load() {
			var sweep bool
			nextSweep, sweep = w.sweepDue(ctx, now)
			if sweep {
				sweeping.Store(true)
				wg.Go(func() {
					defer sweeping.Store(false)
					if err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
						w.log.Warn("deleting finished uploads failed", "err", err)
					}
				})
			}
		}
		wake := nextScan
		if nextSweep.Before(wake) {
			wake = nextSweep
		}
		for _, key := range w.takeDue(now, &wake) {
			select {
			case slots <- struct{}{}:
			default: // every worker busy: one that ends wakes the loop
				w.release(key, now)
				continue
			}
			wg.Go(func() {
				defer func() { <-slots; w.wake() }()
				w.step(ctx, key)
			})
		}
		timer.Reset(max(0, wake.Sub(w.o.Now())))
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		case <-timer.C:
		}
	}
}

// scan adds the watches in the store this replica does not know of, due
// now; a step finds out whether they need work. It lists the markers of
// active watches only, so its cost does not grow with finished uploads.
func (w *Watcher) scan(ctx context.Context) error {
	markers, err := w.o.Store.ListKeys(ctx, markerPrefix, "", 0)
	if err != nil {
		return err
	}
	now := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range markers {
		k := keyPrefix + strings.TrimPrefix(m, markerPrefix)
		if w.local[k] == nil {
			w.local[k] = &entry{due: now}
		}
	}
	return nil
}

// takeDue marks busy and returns the keys due at now, and lowers wake to
// the earliest due time of the others.
func (w *Watcher) takeDue(now time.Time, wake *time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for k, e := range w.local {
		switch {
		case e.busy:
		case !e.due.After(now):
			e.busy = true
			keys = append(keys, k)
		case e.due.Before(*wake):
			*wake = e.due
		}
	}
	return keys
}

// release ends a step on key: due at the given time, or never when zero
// (then it is forgotten, so memory does not grow with finished uploads).
func (w *Watcher) release(key string, due time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.local[key]
	if e == nil {
		return
	}
	if due.IsZero() {
		delete(w.local, key)
		return
	}
	e.busy = false
	e.due = due
}

// errNotMine: another replica holds the record or wrote it first.
var errNotMine = errors.New("held by another replica")
