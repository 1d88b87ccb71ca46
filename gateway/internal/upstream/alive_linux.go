package upstream

import "syscall"

// peekAlive reports whether an idle connection is open with nothing to
// read: a non-blocking MSG_PEEK sees EOF when the upstream has closed it,
// an error when it was reset, and bytes when the upstream sent something
// unasked (a 408, say), none of which a new request may follow.
func peekAlive(rc syscall.RawConn, buf []byte) bool {
	alive := false
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN
		return true
	})
	return err == nil && alive
}
