package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileStore keeps each record in its own JSON file, mode 0600, written
// atomically (temp file, fsync, rename, fsync of the directory). Writes take
// an exclusive lock (flock; LockFileEx on Windows) on a lock file beside it,
// so several processes sharing the file compare-and-swap safely (records of
// other kinds, which are deleted, share a few lock files per kind, see
// lockName). A file
// that does not decode is reported as ErrCorrupt and never overwritten.
type FileStore struct {
	path string // the default record; accounts live beside it
}

// NewFileStore returns a store whose default record is at path.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

var _ Store = (*FileStore)(nil)

// fileRecord is the on-disk form. It is the only place where secrets are
// written out in clear, which is the store's purpose.
type fileRecord struct {
	Version      int64       `json:"version"`
	AccessToken  string      `json:"access_token,omitempty"`
	RefreshToken string      `json:"refresh_token,omitempty"`
	TokenType    string      `json:"token_type,omitempty"`
	Scope        string      `json:"scope,omitempty"`
	ExpiresAt    time.Time   `json:"expires_at,omitzero"`
	ObtainedAt   time.Time   `json:"obtained_at,omitzero"`
	LeaseHolder  string      `json:"lease_holder,omitempty"`
	LeaseUntil   time.Time   `json:"lease_until,omitzero"`
	Dropped      string      `json:"dropped,omitempty"`
	Identity     *Identity   `json:"identity,omitempty"`
	Ticket       *TicketMark `json:"ticket,omitempty"`
	// Data is another package's record, written as the JSON it is.
	Data json.RawMessage `json:"data,omitempty"`
	// Account is the record's key, so that List can name it (file names
	// are hashes); "" for the default grant and records written before.
	Account string `json:"account,omitempty"`
}

func (s *FileStore) file(key string) string {
	if key == "" {
		return s.path
	}
	sum := sha256.Sum256([]byte(key))
	ext := filepath.Ext(s.path)
	base := strings.TrimSuffix(s.path, ext)
	kind := "account"
	if k, _, ok := SplitRecordKey(key); ok {
		kind = k // records of other kinds sit apart: token.upload-….json
	}
	return base + "." + kind + "-" + hex.EncodeToString(sum[:12]) + ext
}

// Load implements Store.
func (s *FileStore) Load(ctx context.Context, key string) (Record, int64, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, 0, err
	}
	return s.read(s.file(key))
}

func (s *FileStore) read(name string) (Record, int64, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, 0, nil
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("token store: %w", err) // names the operation and the file
	}
	var fr fileRecord
	if err := json.Unmarshal(data, &fr); err != nil || fr.Version <= 0 {
		if err == nil {
			err = errors.New("missing version")
		}
		return Record{}, 0, fmt.Errorf("%w: %s: %w (move the file aside and log in again)", ErrCorrupt, name, err)
	}
	return fr.record(), fr.Version, nil
}

func (fr fileRecord) record() Record {
	var rec Record
	if fr.AccessToken != "" || fr.RefreshToken != "" {
		rec.Grant = &Grant{
			AccessToken:  Secret(fr.AccessToken),
			RefreshToken: Secret(fr.RefreshToken),
			TokenType:    fr.TokenType,
			Scope:        fr.Scope,
			Expiry:       fr.ExpiresAt,
			ObtainedAt:   fr.ObtainedAt,
			Identity:     fr.Identity,
		}
	}
	if fr.LeaseHolder != "" {
		rec.Lease = &Lease{Holder: fr.LeaseHolder, Until: fr.LeaseUntil}
	}
	rec.Dropped = fr.Dropped
	rec.Ticket = fr.Ticket
	if fr.Data != nil {
		// The file is indented, Data with it; hand it back compact.
		var b bytes.Buffer
		if json.Compact(&b, fr.Data) == nil {
			rec.Data = b.Bytes()
		}
	}
	return rec
}

func toFileRecord(rec Record, version int64) fileRecord {
	fr := fileRecord{Version: version, Dropped: rec.Dropped, Ticket: rec.Ticket, Data: rec.Data}
	if g := rec.Grant; g != nil {
		fr.AccessToken = g.AccessToken.Reveal()
		fr.RefreshToken = g.RefreshToken.Reveal()
		fr.TokenType = g.TokenType
		fr.Scope = g.Scope
		fr.ExpiresAt = g.Expiry
		fr.ObtainedAt = g.ObtainedAt
		fr.Identity = g.Identity
	}
	if l := rec.Lease; l != nil {
		fr.LeaseHolder = l.Holder
		fr.LeaseUntil = l.Until
	}
	return fr
}

// CompareAndSwap implements Store.
func (s *FileStore) CompareAndSwap(ctx context.Context, key string, version int64, rec Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	name := s.file(key)
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("token store: create %s: %w", dir, err)
	}
	unlock, err := lockFile(s.lockName(key, name))
	if err != nil {
		return 0, err
	}
	defer unlock()

	_, current, err := s.read(name)
	if err != nil {
		return 0, err // corrupt: never overwritten
	}
	if current != version {
		return 0, ErrConflict
	}
	next := current + 1
	fr := toFileRecord(rec, next)
	fr.Account = key
	data, err := json.MarshalIndent(fr, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("token store: encode: %w", err)
	}
	if err := writeAtomic(name, append(data, '\n')); err != nil {
		return 0, err
	}
	return next, nil
}

// lockFile takes an exclusive lock on name (created if missing) and
// returns the function that releases it. The lock is per open file, so it
// also excludes other goroutines of this process.
func lockFile(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("token store: open lock %s: %w", name, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("token store: lock %s: %w", name, err)
	}
	return func() {
		_ = unlock(f)
		f.Close()
	}, nil
}

// writeAtomic replaces name with data so that a reader (or a crash) sees
// either the old file or the new one, never a mix.
func writeAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("token store: create temp file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("token store: chmod %s: %w", tmpName, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("token store: write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("token store: fsync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token store: close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, name); err != nil {
		return fmt.Errorf("token store: rename to %s: %w", name, err)
	}
	ok = true
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("token store: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("token store: fsync dir %s: %w", dir, err)
	}
	return nil
}
