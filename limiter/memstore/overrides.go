package memstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/sluice-gateway/sluice/limiter"
)

// bucketOverrides holds the run-time overrides of a durable store:
// policy \x00 key -> limit (8 bytes, big-endian).
var bucketOverrides = []byte("overrides")

var _ limiter.Overrider = (*Store)(nil)

// overrides are the run-time per-key limits of a Store, by policy, then key.
type overrides struct {
	mu sync.Mutex
	m  map[string]map[string]int64
}

func overrideID(policy, key string) []byte { return []byte(policy + "\x00" + key) }

// SetOverride implements limiter.Overrider. On a store opened with a Path
// the override is written to the file (fsynced) before it takes effect.
func (s *Store) SetOverride(ctx context.Context, policy, key string, limit int64) error {
	if limit < 1 {
		return fmt.Errorf("override limit must be > 0, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &s.ovr
	o.mu.Lock()
	defer o.mu.Unlock()
	if d := s.counters.db; d != nil {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(limit))
		if err := d.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketOverrides).Put(overrideID(policy, key), v[:])
		}); err != nil {
			return fmt.Errorf("writing override: %w", err)
		}
	}
	if o.m == nil {
		o.m = map[string]map[string]int64{}
	}
	if o.m[policy] == nil {
		o.m[policy] = map[string]int64{}
	}
	o.m[policy][key] = limit
	return nil
}

// DeleteOverride implements limiter.Overrider.
func (s *Store) DeleteOverride(ctx context.Context, policy, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	o := &s.ovr
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.m[policy][key]; !ok {
		return false, nil
	}
	if d := s.counters.db; d != nil {
		if err := d.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketOverrides).Delete(overrideID(policy, key))
		}); err != nil {
			return false, fmt.Errorf("deleting override: %w", err)
		}
	}
	delete(o.m[policy], key)
	return true, nil
}

// ListOverrides implements limiter.Overrider; the map is a copy.
func (s *Store) ListOverrides(ctx context.Context, policy string) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.ovr.mu.Lock()
	defer s.ovr.mu.Unlock()
	return maps.Clone(s.ovr.m[policy]), nil
}

// loadOverrides reads the file's overrides into memory (at Open).
func (d *durable) loadOverrides(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketOverrides)
	if err != nil {
		return err
	}
	o := &d.s.ovr
	o.mu.Lock()
	defer o.mu.Unlock()
	return b.ForEach(func(k, v []byte) error {
		policy, key, ok := strings.Cut(string(k), "\x00")
		if !ok || len(v) != 8 {
			return fmt.Errorf("override %q: malformed record", k)
		}
		if o.m == nil {
			o.m = map[string]map[string]int64{}
		}
		if o.m[policy] == nil {
			o.m[policy] = map[string]int64{}
		}
		o.m[policy][key] = int64(binary.BigEndian.Uint64(v))
		return nil
	})
}
