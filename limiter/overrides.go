package limiter

import (
	"context"
	"sync/atomic"
)

// MaxOverrides bounds the run-time overrides of one policy (see Overrider).
const MaxOverrides = 10000

// Overrider is an optional ability of a Store: per-key limits set at run
// time (PUT /v1/policies/{policy}/overrides/{key}), kept in the store so
// that every process on it can read them and they survive restarts. Find
// it with a type assertion. Processes read the overrides into a
// LiveLimits, which Policy.LimitFor consults; the store itself never
// consults them.
type Overrider interface {
	// SetOverride gives key its own limit (> 0) under the named policy,
	// replacing any it had.
	SetOverride(ctx context.Context, policy, key string, limit int64) error
	// DeleteOverride removes key's override and reports whether it had one.
	DeleteOverride(ctx context.Context, policy, key string) (bool, error)
	// ListOverrides returns the named policy's overrides, key to limit (an
	// empty or nil map when there are none).
	ListOverrides(ctx context.Context, policy string) (map[string]int64, error)
}

// LiveLimits is one policy's run-time overrides as last read from the
// store. Its zero value holds none. It is safe for concurrent use: Replace
// swaps the whole table atomically, and readers never lock.
type LiveLimits struct {
	m atomic.Pointer[map[string]int64]
}

// Replace makes m the table in force; m must not be changed afterwards.
func (l *LiveLimits) Replace(m map[string]int64) { l.m.Store(&m) }

// Get returns key's run-time limit, if it has one.
func (l *LiveLimits) Get(key string) (int64, bool) {
	m := l.m.Load()
	if m == nil {
		return 0, false
	}
	v, ok := (*m)[key]
	return v, ok
}

// Len is the number of keys with a run-time limit.
func (l *LiveLimits) Len() int {
	if m := l.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}
