package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// An upload's record ("upload/<id>") stays after the upload finished, for
// Get, until Retention has passed. While the watch is active (polling, or
// webhooks not yet delivered) a marker ("watch/<id>") says so, and the
// scan every Scan lists the markers only: its cost is bounded by the
// uploads still active, not by every upload ever made. Every Sweep, one
// replica lists the upload records and the idempotency keys and deletes
// those past their time.

// markerPrefix starts every active watch's marker key.
const markerPrefix = "watch/"

// sweepKey is the record through which replicas take turns to sweep.
const sweepKey = "sweep/uploads"

// marker is the stored form of a marker (token.Record.Data).
type marker struct {
	Created time.Time `json:"created"`
}

// markerKey is the marker of the upload whose record is at key.
func markerKey(key string) string { return markerPrefix + strings.TrimPrefix(key, keyPrefix) }

// mark writes the marker of upload id; one already there is no error.
func (w *Watcher) mark(ctx context.Context, id string, now time.Time) error {
	data, _ := json.Marshal(marker{Created: now})
	_, err := w.o.Store.CompareAndSwap(ctx, markerKey(uploadKey(id)), 0, token.Record{Data: data})
	if err != nil && !errors.Is(err, token.ErrConflict) {
		return err
	}
	return nil
}

// unwatch deletes the marker of the upload at key, which needs no more
// work. missing says the upload's record is not there: then a marker
// younger than Hold is kept, since Start may be about to write it.
func (w *Watcher) unwatch(ctx context.Context, key string, missing bool) error {
	mk := markerKey(key)
	rec, ver, err := w.o.Store.Load(ctx, mk)
	if err != nil || ver == 0 {
		return err
	}
	var m marker
	if missing && rec.Data != nil && json.Unmarshal(rec.Data, &m) == nil && w.o.Now().Sub(m.Created) < w.o.Hold {
		return nil
	}
	if err := w.o.Store.Delete(ctx, mk, ver); err != nil && !errors.Is(err, token.ErrConflict) {
		return fmt.Errorf("watch: delete marker %s: %w", mk, err)
	}
	return nil
}

// sweepDue reports whether this replica sweeps now, and when to ask again.
// The sweep record holds when a replica last swept; the replica whose
// compare-and-swap moves it forward sweeps, the others wait.
func (w *Watcher) sweepDue(ctx context.Context, now time.Time) (time.Time, bool) {
	retry := now.Add(w.o.Scan)
	rec, ver, err := w.o.Store.Load(ctx, sweepKey)
	if err != nil {
		w.log.Warn("reading when uploads were last swept failed", "err", err)
		return retry, false
	}
	var last marker
	if ver != 0 && rec.Data != nil {
		_ = json.Unmarshal(rec.Data, &last)
	}
	if next := last.Created.Add(w.o.Sweep); now.Before(next) {
		return next, false
	}
	data, _ := json.Marshal(marker{Created: now})
	if _, err := w.o.Store.CompareAndSwap(ctx, sweepKey, ver, token.Record{Data: data}); err != nil {
		if !errors.Is(err, token.ErrConflict) {
			w.log.Warn("taking the turn to sweep uploads failed", "err", err)
			return retry, false
		}
		return now.Add(w.o.Sweep), false // another replica sweeps
	}
	return now.Add(w.o.Sweep), true
}

// Sweep deletes the uploads finished more than Retention ago and the
// idempotency keys older than KeyTTL, and writes the marker of any active
// upload that lacks one (its replica died between the two writes). Run
// calls it every Sweep on one replica; deletes are compare-and-delete, so
// a record written meanwhile stays.
func (w *Watcher) Sweep(ctx context.Context) error {
	var errs []error
	for _, kind := range []struct {
		prefix string
		sweep  func(context.Context, string, token.Record, int64) (bool, error)
	}{
		{keyPrefix, w.sweepUpload},
		{idemPrefix, w.sweepIdem},
	} {
		keys, err := w.o.Store.ListKeys(ctx, kind.prefix, "", 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, ver, err := w.o.Store.Load(ctx, k)
			if err != nil || ver == 0 {
				errs = append(errs, err)
				continue
			}
			del, err := kind.sweep(ctx, k, rec, ver)
			if err == nil && del {
				err = w.o.Store.Delete(ctx, k, ver)
				if err == nil {
					w.count.swept.Add(1)
				}
			}
			if err != nil && !errors.Is(err, token.ErrConflict) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sweepUpload decides on an upload's record.
func (w *Watcher) sweepUpload(ctx context.Context, key string, rec token.Record, _ int64) (bool, error) {
	if rec.Data == nil {
		return true, nil // left empty (a Vault tombstone): nothing to keep
	}
	var r record
	if err := json.Unmarshal(rec.Data, &r); err != nil {
		return false, nil // left alone, as a step does
	}
	now := w.o.Now()
	if _, active := r.due(); active {
		return false, w.mark(ctx, r.Upload.ID, now)
	}
	return now.Sub(r.Update) >= w.o.Retention, nil
}

// sweepIdem decides on an idempotency key's record: gone once KeyTTL has
// passed, unless its request still holds it.
func (w *Watcher) sweepIdem(_ context.Context, _ string, rec token.Record, _ int64) (bool, error) {
	if rec.Data == nil {
		return true, nil
	}
	var kr keyRecord
	if err := json.Unmarshal(rec.Data, &kr); err != nil {
		return false, nil
	}
	now := w.o.Now()
	held := rec.Lease != nil && now.Before(rec.Lease.Until)
	return !held && now.Sub(kr.Created) >= w.o.KeyTTL, nil
}
