package memstore

import (
	"context"
	"sort"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// maxSeries bounds the history the memory store keeps.
const maxSeries = 10_000

const minutesKept = int64(limiter.HistoryRetention / time.Minute)

type minute struct {
	stamp              int64 // Unix minute; 0 when empty
	admitted, rejected int64
	value              *int64
}

var _ limiter.History = (*Store)(nil)

// AddHistory implements limiter.History.
func (s *Store) AddHistory(_ context.Context, series string, points []limiter.Point) error {
	s.histMu.Lock()
	defer s.histMu.Unlock()
	ring := s.hist[series]
	if ring == nil {
		if len(s.hist) >= maxSeries {
			return nil // full: new series are not kept
		}
		ring = make([]minute, minutesKept)
		s.hist[series] = ring
	}
	for _, p := range points {
		m := p.Minute.Unix() / 60
		slot := &ring[m%minutesKept]
		if slot.stamp != m {
			*slot = minute{stamp: m}
		}
		slot.admitted += p.Admitted
		slot.rejected += p.Rejected
		if p.Value != nil {
			v := *p.Value
			slot.value = &v
		}
	}
	return nil
}

// History implements limiter.History.
func (s *Store) History(_ context.Context, series string, since time.Time) ([]limiter.Point, error) {
	now := s.clock().Unix() / 60
	from := max(since.Unix()/60, now-minutesKept+1)
	s.histMu.Lock()
	defer s.histMu.Unlock()
	var out []limiter.Point
	for _, m := range s.hist[series] {
		if m.stamp >= from && m.stamp <= now {
			out = append(out, limiter.Point{Minute: time.Unix(m.stamp*60, 0).UTC(), Admitted: m.admitted, Rejected: m.rejected, Value: m.value})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Minute.Before(out[j].Minute) })
	return out, nil
}
