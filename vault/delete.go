package vault

import (
	"context"
	"fmt"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
)

var _ token.Deleter = (*Store)(nil)

// keyDeleted marks a tombstone: a record being deleted (see Delete).
const keyDeleted = "deleted"

// tombstoneHold is how long a tombstone stops writers. A Delete that has
// not sent its metadata delete within half of it leaves the tombstone,
// which writers may then overwrite (and the next Delete removes).
const tombstoneHold = time.Minute

// Delete implements token.Deleter for records of other kinds.
//
// KV v2 deletes a path's metadata (every version, and the key from LIST)
// without any check-and-set, so reading the version and then deleting
// could remove a record another replica wrote in between. Delete instead
// first writes a tombstone with check-and-set at version: if the record
// moved, that fails with token.ErrConflict and nothing is deleted. While
// the tombstone is young, Load reports the record missing (version 0), so
// a writer's check-and-set at 0 fails (the path exists) and one at any
// older version fails too: no write can land between the tombstone and
// the metadata delete, which therefore removes only the tombstone. A
// writer meanwhile gets token.ErrConflict and reads again. If the replica
// dies (or Vault fails) between the two, the tombstone stays; once older
// than tombstoneHold, Load reports it as an empty record at its version,
// so a writer's check-and-set replaces it and a later Delete removes it.
// Delete never sends the metadata delete later than half of tombstoneHold
// after the tombstone, so that it cannot remove what such a writer wrote.
func (s *Store) Delete(ctx context.Context, key string, version int64) error {
	p := s.keyPath(key)
	if _, _, ok := token.SplitRecordKey(key); !ok {
		return fmt.Errorf("vault: delete %s/%s: only records of other kinds are deleted", s.c.mount, p)
	}
	if version <= 0 {
		if _, v, err := s.Load(ctx, key); err != nil || v != 0 {
			return conflictOr(err)
		}
		return nil
	}
	start := time.Now()
	err := s.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		_, err := a.KVv2(s.c.mount).Put(ctx, p, map[string]any{keyDeleted: formatTime(start)}, api.WithCheckAndSet(int(version)))
		return err
	})
	if isCASMismatch(err) {
		return fmt.Errorf("vault: delete %s/%s at version %d: %w", s.c.mount, p, version, token.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("vault: delete %s/%s: %w", s.c.mount, p, err)
	}
	left := tombstoneHold/2 - time.Since(start)
	if left <= 0 {
		return fmt.Errorf("vault: delete %s/%s: the tombstone took too long; left for a later delete", s.c.mount, p)
	}
	ctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	err = s.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		return a.KVv2(s.c.mount).DeleteMetadata(ctx, p)
	})
	if err != nil {
		return fmt.Errorf("vault: delete metadata of %s/%s (its tombstone stays): %w", s.c.mount, p, err)
	}
	return nil
}

func conflictOr(err error) error {
	if err != nil {
		return err
	}
	return token.ErrConflict
}

// tombstone reports whether data is a tombstone, and the version Load
// reports for it: 0 while it is young, v once older than tombstoneHold.
func tombstone(data map[string]any, v int64, now time.Time) (int64, bool) {
	raw, ok := data[keyDeleted].(string)
	if !ok {
		return 0, false
	}
	at, err := parseTime(raw)
	if err == nil && now.Sub(at) < tombstoneHold {
		return 0, true
	}
	return v, true
}
