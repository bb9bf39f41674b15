//go:build unix

package upstream

import "syscall"

// stillOpen reports whether an idle connection can carry a request that
// cannot be sent twice: the upstream has not closed it and sent nothing
// unasked. It peeks at the socket without blocking (one system call).
func (pc *conn) stillOpen() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	sc, ok := pc.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN is the normal state of an idle connection; a zero-byte
		// read is the upstream's close, and data or an error make the
		// connection unfit just the same.
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}
