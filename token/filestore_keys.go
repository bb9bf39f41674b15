package token

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	return s.listFiles(ctx, "."+kind+"-", limit, func(f string) (string, bool) {
		key, ok := s.keyOf(f)
		return key, ok && strings.HasPrefix(key, prefix) && key > after
	})
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
