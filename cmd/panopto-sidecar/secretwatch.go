package main

import (
	"crypto/sha256"
	"time"
)

// secretPoll is how often the files holding secrets are read for a change.
const secretPoll = time.Second

// Files holding secrets (inbound.shared_secret_file, and Vault's auth
// files) are read with the config, by config.Load, so a rotation is a
// reload: a good new content is applied like an edited config.yaml, a bad
// one is refused, the config in force stays and /-/status shows why. They
// are polled by content, as tlsconf polls the certificate files: that
// follows Kubernetes secret mounts (a ..data symlink swap), bind mounts and
// plain rewrites alike.

// secretsChanged reports whether the secret files no longer hold what the
// config in force was loaded with, so that a reload is due: a rotation to
// apply, or a bad content to report. A content already tried is not tried
// again until it changes. When the files are back to what is in force after
// a refused content, a reload is due too: it clears the error reported.
// Only the watch goroutine calls it.
func (r *reloader) secretsChanged() bool {
	cur := r.cfg.Load()
	s, err := cur.ReadSecrets()
	if err == nil && s == cur.Secrets {
		stale := r.secretTried != [sha256.Size]byte{} && r.lastErr.Load() != nil
		r.secretTried = [sha256.Size]byte{}
		return stale
	}
	h := sha256.New()
	h.Write([]byte(s.SharedSecret.Reveal()))
	if err != nil {
		h.Write([]byte{0})
		h.Write([]byte(err.Error()))
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if sum == r.secretTried {
		return false
	}
	r.secretTried = sum
	return true
}
