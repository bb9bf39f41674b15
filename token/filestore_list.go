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

var _ Lister = (*FileStore)(nil)

// List implements Lister. Account files are named by a hash of the account,
// so List reads every one: a record names its account since this version.
// A record written before that is named when its login's identity names
// an account that hashes to its file name, and otherwise once it is written
// again.
func (s *FileStore) List(ctx context.Context, after string, limit int) ([]string, error) {
	return s.listFiles(ctx, ".account-", limit, func(f string) (string, bool) {
		name, ok := s.accountOf(f)
		return name, ok && name > after && ValidAccount(name)
	})
}

// listFiles names, in order and at most limit (0: all), what keep makes of
// each record file beside the default one whose name continues the base
// with infix (".account-", ".upload-"), lock files left out.
func (s *FileStore) listFiles(ctx context.Context, infix string, limit int, keep func(file string) (string, bool)) ([]string, error) {
	ext := filepath.Ext(s.path)
	base := strings.TrimSuffix(s.path, ext)
	dir, prefix := filepath.Dir(base), filepath.Base(base)+infix
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token store: list %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) || strings.HasSuffix(n, ".lock") {
			continue
		}
		if name, ok := keep(filepath.Join(dir, n)); ok {
			names = append(names, name)
		}
	}
	return firstSorted(names, limit), nil
}

// firstSorted sorts names and keeps the first limit of them (0: all).
func firstSorted(names []string, limit int) []string {
	slices.Sort(names)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	return names
}

// accountOf names the account whose record is in file f.
func (s *FileStore) accountOf(f string) (string, bool) {
	data, err := os.ReadFile(f)
	if err != nil {
		return "", false // gone meanwhile, or unreadable: Load will say
	}
	var fr fileRecord
	if err := json.Unmarshal(data, &fr); err != nil {
		return "", false
	}
	if fr.Account != "" {
		return fr.Account, filepath.Base(s.file(fr.Account)) == filepath.Base(f)
	}
	if id := fr.Identity; id != nil {
		for _, c := range []string{id.PreferredUsername, id.Email, id.Subject, id.Name} {
			if _, short, ok := strings.Cut(c, `\`); ok {
				c = short
			}
			for _, name := range []string{c, strings.ToLower(c)} {
				if name != "" && filepath.Base(s.file(name)) == filepath.Base(f) {
					return name, true
				}
			}
		}
	}
	return "", false
}
