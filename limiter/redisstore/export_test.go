package redisstore

// WaitTrims waits until the sliding_window trims sent so far have landed.
func (s *Store) WaitTrims() { s.trims.Wait() }
