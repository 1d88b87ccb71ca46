package redisstore

// BreakerOpen reports whether the circuit breaker is open: Redis failed
// repeatedly and calls fail at once with ErrUnavailable until a probe
// succeeds. It is false when the breaker is disabled.
func (s *Store) BreakerOpen() bool { return s.breaker != nil && s.breaker.open() }
