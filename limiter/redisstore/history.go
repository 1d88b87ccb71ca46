package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
)

var _ limiter.History = (*Store)(nil)

// History lives in one hash per series: fields "<unix minute>:a", ":r"
// and ":v", with a TTL of the retention plus an hour, refreshed on write;
// fields older than the retention are dropped when the series is read.
func (s *Store) historyKey(series string) string { return s.prefix + "hist:{" + series + "}" }

// AddHistory implements limiter.History.
func (s *Store) AddHistory(ctx context.Context, series string, points []limiter.Point) error {
	if len(points) == 0 {
		return nil
	}
	return s.guard(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*s.timeout)
		defer cancel()
		key := s.historyKey(series)
		pipe := s.client.Pipeline()
		for _, p := range points {
			m := strconv.FormatInt(p.Minute.Unix()/60, 10)
			if p.Admitted != 0 {
				pipe.HIncrBy(ctx, key, m+":a", p.Admitted)
			}
			if p.Rejected != 0 {
				pipe.HIncrBy(ctx, key, m+":r", p.Rejected)
			}
			if p.Value != nil {
				pipe.HSet(ctx, key, m+":v", *p.Value)
			}
		}
		pipe.PExpire(ctx, key, limiter.HistoryRetention+time.Hour)
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("redis history: %w", err)
		}
		return nil
	})
}

// History implements limiter.History.
func (s *Store) History(ctx context.Context, series string, since time.Time) ([]limiter.Point, error) {
	var out []limiter.Point
	err := s.guard(ctx, func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*s.timeout)
		defer cancel()
		key := s.historyKey(series)
		all, err := s.client.HGetAll(ctx, key).Result()
		if err != nil && err != redis.Nil {
			return fmt.Errorf("redis history: %w", err)
		}
		now := s.clock().Unix() / 60
		oldest := now - int64(limiter.HistoryRetention/time.Minute) + 1
		from := max(since.Unix()/60, oldest)
		byMinute := map[int64]*limiter.Point{}
		var stale []string
		for f, v := range all {
			ms, kind, ok := strings.Cut(f, ":")
			m, err1 := strconv.ParseInt(ms, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			if m < oldest {
				stale = append(stale, f)
				continue
			}
			if m < from || m > now {
				continue
			}
			p := byMinute[m]
			if p == nil {
				p = &limiter.Point{Minute: time.Unix(m*60, 0).UTC()}
				byMinute[m] = p
			}
			switch kind {
			case "a":
				p.Admitted = n
			case "r":
				p.Rejected = n
			case "v":
				p.Value = &n
			}
		}
		if len(stale) > 0 {
			s.client.HDel(ctx, key, stale...) // best effort: the TTL bounds it too
		}
		for _, p := range byMinute {
			out = append(out, *p)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Minute.Before(out[j].Minute) })
		return nil
	})
	return out, err
}
