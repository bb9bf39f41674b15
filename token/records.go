package token

import (
	"context"
	"strings"
)

// Records of other packages live in the Store beside the grants, so that
// every replica sees them: an upload's watch ("upload/<id>", and
// "watch/<id>" while it is active), an idempotency key
// ("idem/<account>/<hash>"). They are deleted (Deleter) once past their
// time. Their keys are "kind/name"
// with a kind of lower-case letters, digits and '-'; account names never
// contain '/', so no such key is an account's. Stores keep each kind apart
// from the accounts, so listing accounts never reads them and listing a
// kind never reads the accounts.

// SplitRecordKey splits a record key into its kind and name. ok is false
// for an account's key, a login ticket marker's (kept where accounts are,
// as before records of other kinds existed), and any key whose kind is
// not lower-case letters, digits and '-'.
func SplitRecordKey(key string) (kind, name string, ok bool) {
	if strings.HasPrefix(key, ticketMarkerPrefix) {
		return "", "", false
	}
	kind, name, ok = strings.Cut(key, "/")
	if !ok || kind == "" || kind == "account" {
		return "", "", false
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", "", false
		}
	}
	return kind, name, true
}

// KeyLister lists the keys of records of one kind, across replicas.
type KeyLister interface {
	// ListKeys returns up to limit (<= 0: every) keys that start with
	// prefix and are greater than after, in ascending byte order. prefix
	// must start with a kind and '/' ("upload/").
	ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error)
}

// Deleter removes records of other kinds, so that what they keep does
// not grow without end. Accounts and login ticket markers are never
// deleted: Delete refuses any key SplitRecordKey does not split.
type Deleter interface {
	// Delete removes key's record if its version is still version, and
	// returns ErrConflict if it is not (someone wrote it meanwhile). A
	// record already gone (version 0 stored) is no error when version is
	// 0 too; after Delete, Load returns version 0 and CompareAndSwap at 0
	// creates the record afresh.
	Delete(ctx context.Context, key string, version int64) error
}
