//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package token

import (
	"os"
	"syscall"
)

// lock blocks until it holds an exclusive flock on f.
func lock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

// unlock releases the lock taken by lock.
func unlock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
