package vault

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
)

var _ token.Lister = (*Store)(nil)

// List implements token.Lister with one KV v2 LIST of the accounts' folder
// (its metadata path). Keys that do not unescape to an account name, such
// as login ticket markers ("login-ticket=2Falice"), are left out.
func (s *Store) List(ctx context.Context, after string, limit int) ([]string, error) {
	return s.listFolder(ctx, s.path+"/accounts", limit, func(name string) (string, bool) {
		return name, name > after && token.ValidAccount(name)
	})
}

// listFolder makes one KV v2 LIST of the folder p (its metadata path) and
// returns, in order and at most limit (0: all), what keep makes of each
// unescaped key name; names EscapeKey cannot have made are left out.
func (s *Store) listFolder(ctx context.Context, p string, limit int, keep func(name string) (string, bool)) ([]string, error) {
	var sec *api.Secret
	err := s.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		var err error
		sec, err = a.Logical().ListWithContext(ctx, s.c.mount+"/metadata/"+p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("vault: list %s/%s: %w", s.c.mount, p, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil // nothing stored yet
	}
	raw, _ := sec.Data["keys"].([]any)
	var out []string
	for _, k := range raw {
		ks, _ := k.(string)
		if name, ok := UnescapeKey(ks); ok {
			if v, ok := keep(name); ok {
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

var _ token.KeyLister = (*Store)(nil)

// ListKeys implements token.KeyLister with one KV v2 LIST of the kind's
// folder (path/records/kind), which holds no accounts.
func (s *Store) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	kind, _, ok := token.SplitRecordKey(prefix)
	if !ok {
		return nil, fmt.Errorf("vault: list keys: %q does not start with a record kind", prefix)
	}
	return s.listFolder(ctx, s.path+"/records/"+kind, limit, func(name string) (string, bool) {
		key := kind + "/" + name
		return key, strings.HasPrefix(key, prefix) && key > after
	})
}

// UnescapeKey reverses EscapeKey; ok is false for a segment EscapeKey
// cannot have made (a folder, a stray key).
func UnescapeKey(seg string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		ch := seg[i]
		switch {
		case ch == '=':
			if i+2 >= len(seg) {
				return "", false
			}
			v, err := strconv.ParseUint(seg[i+1:i+3], 16, 8)
			if err != nil || strings.ToUpper(seg[i+1:i+3]) != seg[i+1:i+3] {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_':
			b.WriteByte(ch)
		default:
			return "", false
		}
	}
	return b.String(), seg != ""
}
