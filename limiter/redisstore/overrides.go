package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sluice-gateway/sluice/limiter"
)

var _ limiter.Overrider = (*Store)(nil)

// overridesKey is the hash of a policy's run-time overrides (key -> limit),
// with no TTL. The hash tag keeps it in one slot on a cluster.
func (s *Store) overridesKey(policy string) string {
	return s.prefix + "overrides:{" + policy + "}"
}

// SetOverride implements limiter.Overrider: HSET on the policy's hash.
func (s *Store) SetOverride(ctx context.Context, policy, key string, limit int64) error {
	if limit < 1 {
		return fmt.Errorf("override limit must be > 0, got %d", limit)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.guard(ctx, func() error {
		return s.client.HSet(ctx, s.overridesKey(policy), key, limit).Err()
	})
}

// DeleteOverride implements limiter.Overrider: HDEL on the policy's hash.
func (s *Store) DeleteOverride(ctx context.Context, policy, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int64
	err := s.guard(ctx, func() error {
		var err error
		n, err = s.client.HDel(ctx, s.overridesKey(policy), key).Result()
		return err
	})
	return n > 0, err
}

// ListOverrides implements limiter.Overrider: HGETALL on the policy's hash.
func (s *Store) ListOverrides(ctx context.Context, policy string) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var raw map[string]string
	err := s.guard(ctx, func() error {
		var err error
		raw, err = s.client.HGetAll(ctx, s.overridesKey(policy)).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(raw))
	for k, v := range raw {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("override %q of policy %q: bad limit %q", k, policy, v)
		}
		out[k] = n
	}
	return out, nil
}
