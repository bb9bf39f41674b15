package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

var _ KeyLister = (*FileStore)(nil)

// ListKeys implements KeyLister. A kind's records are files named
// base.<kind>-<hash><ext> beside the accounts'; each names its key, so
// ListKeys reads every record of the kind and none of the accounts'.
func (s *FileStore) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	kind, _, ok := SplitRecordKey(prefix)
	if !ok {
		return nil, fmt.Errorf("token store: list keys: %q does not start with a record kind", prefix)
	}
	ext := filepath.Ext(s.path)
	base := strings.TrimSuffix(s.path, ext)
	dir, fileKind := filepath.Dir(base), filepath.Base(base)+"."+kind+"-"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token store: list %s: %w", dir, err)
	}
	var keys []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, fileKind) || !strings.HasSuffix(n, ext) {
			continue
		}
		key, ok := s.keyOf(filepath.Join(dir, n))
		if ok && strings.HasPrefix(key, prefix) && key > after {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// keyOf names the key whose record is in file f, if the file is that key's.
func (s *FileStore) keyOf(f string) (string, bool) {
	data, err := os.ReadFile(f)
	if err != nil {
		return "", false // gone meanwhile, or unreadable: Load will say
	}
	var fr struct {
		Account string `json:"account"`
	}
	if err := json.Unmarshal(data, &fr); err != nil || fr.Account == "" {
		return "", false
	}
	return fr.Account, filepath.Base(s.file(fr.Account)) == filepath.Base(f)
}
