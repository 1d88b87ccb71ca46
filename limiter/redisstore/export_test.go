package redisstore

import (
	"context"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// WaitTrims waits until the sliding_window trims sent so far have landed.
func (s *Store) WaitTrims() { s.trims.Wait() }

// StopKeyFlushLoop stops the busiest-key flushes of every second, so that
// a test's FlushKeys and Keys are the only ones (Close still flushes once).
func (s *Store) StopKeyFlushLoop() { s.top.stopLoop(context.Background()) }

// KeyEstimates returns what the fleet's busiest-key summaries of p's
// window say: the best n candidates with their summed counts, the
// estimated active keys and the requests the summaries counted.
func (s *Store) KeyEstimates(ctx context.Context, p *limiter.Policy, n int) ([]topk.Entry, int64, int64, error) {
	return s.top.candidates(ctx, p, n)
}
