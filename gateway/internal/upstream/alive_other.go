//go:build !linux

package upstream

// peekAlive cannot look at the socket on this platform: a connection the
// upstream closed is found when a request fails on it, and idempotent
// requests without a body are retried on a new connection.
func (c *conn) peekAlive() bool { return true }

func (c *conn) peekFD(uintptr) {}
