package redisstore

// BreakerOpen reports whether a circuit breaker is open (on a cluster, the
// store's or any master's): Redis failed repeatedly and calls fail at once
// with ErrUnavailable until a probe succeeds. It is false when the breaker
// is disabled.
func (s *Store) BreakerOpen() bool {
	return s.breaker != nil && (s.breaker.open() || (s.nodes != nil && s.nodes.anyOpen()))
}
