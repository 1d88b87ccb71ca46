package memstore

import (
	"context"
	"sort"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// maxSeries bounds the history series the memory store keeps; each holds
// only the minutes that have data, at most a day of them.
const maxSeries = 10_000

const minutesKept = int64(limiter.HistoryRetention / time.Minute)

type minute struct {
	admitted, rejected int64
	value              *int64
}

var _ limiter.History = (*Store)(nil)

// AddHistory implements limiter.History.
func (s *Store) AddHistory(_ context.Context, series string, points []limiter.Point) error {
	oldest := s.clock().Unix()/60 - minutesKept + 1
	s.histMu.Lock()
	defer s.histMu.Unlock()
	ms := s.hist[series]
	if ms == nil {
		if len(s.hist) >= maxSeries {
			s.pruneHistory(oldest)
			if len(s.hist) >= maxSeries {
				return nil // full of live series: new ones are not kept
			}
		}
		ms = map[int64]*minute{}
		s.hist[series] = ms
	}
	if s.counters.db != nil {
		s.histDirty[series] = true
	}
	for _, p := range points {
		m := p.Minute.Unix() / 60
		if m < oldest {
			continue
		}
		slot := ms[m]
		if slot == nil {
			slot = &minute{}
			ms[m] = slot
		}
		slot.admitted += p.Admitted
		slot.rejected += p.Rejected
		if p.Value != nil {
			v := *p.Value
			slot.value = &v
		}
	}
	for m := range ms {
		if m < oldest {
			delete(ms, m)
		}
	}
	return nil
}

// pruneHistory drops minutes past the retention and series left empty.
func (s *Store) pruneHistory(oldest int64) {
	for name, ms := range s.hist {
		for m := range ms {
			if m < oldest {
				delete(ms, m)
			}
		}
		if len(ms) == 0 {
			delete(s.hist, name)
			if s.counters.db != nil {
				s.histDirty[name] = true
			}
		}
	}
}

// History implements limiter.History.
func (s *Store) History(_ context.Context, series string, since time.Time) ([]limiter.Point, error) {
	now := s.clock().Unix() / 60
	from := max(since.Unix()/60, now-minutesKept+1)
	s.histMu.Lock()
	defer s.histMu.Unlock()
	var out []limiter.Point
	for m, v := range s.hist[series] {
		if m >= from && m <= now {
			out = append(out, limiter.Point{Minute: time.Unix(m*60, 0).UTC(), Admitted: v.admitted, Rejected: v.rejected, Value: v.value})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Minute.Before(out[j].Minute) })
	return out, nil
}
