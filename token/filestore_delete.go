package token

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

var _ Deleter = (*FileStore)(nil)

// lockStripes is how many lock files each kind of record shares.
const lockStripes = 16

// lockName is the lock file CompareAndSwap and Delete take for key, whose
// record is in file name. An account's lock file sits beside its record.
// A record of another kind is deleted in the end, and its lock file cannot
// be: a process waiting on the old lock would hold a lock nobody else
// takes. So a kind's records share lockStripes lock files, chosen by the
// record file's hash (token.upload.3.lock), and the directory holds no
// more files than live records plus those.
func (s *FileStore) lockName(key, name string) string {
	kind, _, ok := SplitRecordKey(key)
	if !ok {
		return name + ".lock"
	}
	ext := filepath.Ext(s.path)
	base := strings.TrimSuffix(s.path, ext)
	hash := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), filepath.Base(base)+"."+kind+"-"), ext)
	stripe := "0"
	if hash != "" {
		stripe = hash[:1] // one hex digit: lockStripes files
	}
	return base + "." + kind + "." + stripe + ".lock"
}

// Delete implements Deleter: under the record's lock, it removes the file
// if the version is still version.
func (s *FileStore) Delete(ctx context.Context, key string, version int64) error {
	if _, _, ok := SplitRecordKey(key); !ok {
		return fmt.Errorf("token store: delete %q: only records of other kinds are deleted", key)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := s.file(key)
	unlock, err := lockFile(s.lockName(key, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no directory: nothing stored
	}
	if err != nil {
		return err
	}
	defer unlock()
	_, current, err := s.read(name)
	if err != nil {
		return err // corrupt: never removed
	}
	if current != version {
		return ErrConflict
	}
	if current == 0 {
		return nil
	}
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("token store: delete %s: %w", name, err)
	}
	return syncDir(filepath.Dir(name))
}
