package upstream

import "syscall"

// peekAlive reports whether an idle connection is open with nothing to
// read: a non-blocking MSG_PEEK sees EOF when the upstream has closed it,
// an error when it was reset, and bytes when the upstream sent something
// unasked (a 408, say), none of which a new request may follow. It runs
// through RawConn.Control, which neither waits nor looks at deadlines (a
// response head's may still be set), with a function made once per
// connection, so the check allocates nothing.
func (c *conn) peekAlive() bool {
	c.peekOK = false
	if err := c.raw.Control(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}

func (c *conn) peekFD(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), c.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekOK = err == syscall.EAGAIN
}
