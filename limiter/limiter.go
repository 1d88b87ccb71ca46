// Package limiter holds Sluice's rate-limiting contract: policies, decisions,
// the Store interface that backends implement, and named counters. It does no
// I/O and knows nothing of HTTP; the backends live in limiter/memstore (in
// process, the embedded default) and limiter/redisstore (a fleet of gateways
// sharing Redis or Redis Cluster).
//
// # Algorithms
//
// Every policy admits at most Limit units of cost per Window for each key. A
// rejected request consumes no quota; it is counted as rejected for its key.
//
//   - sliding_window (default): the window is cut into Buckets sub-windows of
//     length ceil(Window/Buckets). The estimate is the sum of the buckets inside
//     the window plus the oldest bucket weighted by the part of it still inside
//     (linear interpolation). Interpolation alone can be fooled: a burst at the
//     very end of a bucket is assumed to be spread over it, and an adversary can
//     then get close to 2 x Limit through in one window. Sluice therefore also
//     caps the unweighted sum of all Buckets+1 buckets touching the window at
//     Limit + floor(Limit/Buckets). Bounds, both measured by the accuracy study
//     in benchmarks/accuracy and held by this package's tests:
//     (1) in any span of one Window, at most Limit + floor(Limit/Buckets) units
//     are admitted (Buckets=1, the classic two-counter estimate: 2 x Limit);
//     (2) on bursty traffic (on/off Poisson at 0.5-2x the limit) the mean
//     absolute error of the estimate against an exact log stays under 2% with
//     the default 10 buckets. Reset and retry times can reach
//     Window x (1 + 1/Buckets).
//   - sliding_log: exact. One timestamp per admitted unit, kept for one Window;
//     never more than Limit in any span of one Window. Memory O(Limit) per key.
//   - fixed_window: one counter per window aligned to multiples of Window.
//     Up to 2 x Limit can pass in a span of one Window around a boundary.
//   - gcra: the generic cell rate algorithm (a token bucket without a timer):
//     one unit every Window/Limit, with bursts of up to Burst units (default
//     Limit). With Burst = Limit up to about 2 x Limit can pass in one Window.
//
// Each algorithm's arithmetic is written once, in limiter/internal/algo,
// for every store. Validate resolves a policy's Algorithm to an
// AlgorithmID, and the stores index their per-algorithm code with it: no
// store compares algorithm names per call.
//
// Time comes from the store: the memory store reads an injectable clock, the
// Redis store a clock calibrated against the Redis server's TIME, so gateways
// with skewed clocks agree.
//
// # Listing the busiest keys
//
// Store.Keys lists a policy's busiest keys: those with the most requests in
// the window, admitted plus rejected, each once, with its exact usage read
// from the store (on Redis: summed over every gateway of the fleet). Its
// cost does not grow with the number of active keys. Each process counts
// its requests in a summary of bounded size (package limiter/topk:
// Space-Saving per process, merged Misra-Gries per slot of a tenth of the
// window, at least a second), and a listing reads the exact usage of the N best candidates and
// of any other whose estimate is above T/2K (fewer than 2K), K being the
// summary's parameter (default 500, the memory and Redis stores' TopK
// option).
//
// The guarantee: let T be the policy's requests in the window (and at most
// one slot before it: a tenth of the window, at least a second), over
// every process. Every key with more
// than T/K of them is read exactly, so it is listed unless N listed keys
// have at least as many requests. ActiveKeys, the number of distinct keys
// with a request in the same span, is a HyperLogLog estimate (standard
// error 0.81%); a key reset since still counts (see KeyList).
package limiter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Algorithm names a rate-limiting algorithm.
type Algorithm string

// The algorithms every Store implements.
const (
	SlidingWindow Algorithm = "sliding_window"
	SlidingLog    Algorithm = "sliding_log"
	FixedWindow   Algorithm = "fixed_window"
	GCRA          Algorithm = "gcra"
)

// AlgorithmID numbers the algorithms, so that a store keeps its code for
// each in a table indexed by AlgorithmID and finds a policy's with
// Policy.AlgorithmID, which Validate resolves once, instead of comparing
// names on every call.
type AlgorithmID uint8

// The algorithms' numbers.
const (
	SlidingWindowID AlgorithmID = iota
	SlidingLogID
	FixedWindowID
	GCRAID
	// NumAlgorithms is the number of algorithms: the length of a table
	// indexed by AlgorithmID.
	NumAlgorithms = iota
)

// algorithmIDs maps each algorithm to its number.
var algorithmIDs = map[Algorithm]AlgorithmID{SlidingWindow: SlidingWindowID, SlidingLog: SlidingLogID, FixedWindow: FixedWindowID, GCRA: GCRAID}

// DefaultBuckets is the number of sub-windows of a sliding_window policy whose
// Buckets is zero.
const DefaultBuckets = 10

// MaxKeyLen is the longest key stored as it is. Longer keys are replaced by
// a hash of themselves (see StoreKey).
const MaxKeyLen = 256

// Errors callers branch on.
var (
	// ErrNotFound reports a named counter that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidCost reports a cost below 1.
	ErrInvalidCost = errors.New("cost must be >= 1")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidName reports whether s may name a policy, a route or a counter.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Policy describes one limit. A Policy must not be changed after it is first
// used; build a new one instead (a changed copy is a new one). Call Validate
// before use: it resolves the algorithm once (see AlgorithmID).
type Policy struct {
	Name      string        // [A-Za-z0-9_-]+, unique among policies
	Algorithm Algorithm     // zero means SlidingWindow
	Limit     int64         // units admitted per Window; must be > 0
	Window    time.Duration // must be >= 1ms
	Buckets   int           // sliding_window only; zero means DefaultBuckets
	Burst     int64         // gcra only; zero means Limit
	Shadow    bool          // compute and record, never reject
	// Overrides gives some keys a limit of their own (tiers).
	Overrides map[string]int64
	// Calendar, when set, makes the policy a calendar quota: a fixed
	// window per day, week or month of Location (see Period). Validate
	// then makes Algorithm fixed_window and Window the period's nominal
	// length (a month: 31 days).
	Calendar Calendar
	// Location is Calendar's time zone; nil means UTC.
	Location *time.Location
	// Live, when not nil, holds limits set at run time (see Overrider);
	// a key's live limit wins over its entry in Overrides.
	Live *LiveLimits

	// algID is Algorithm's AlgorithmID plus one, set by Validate; zero
	// before.
	algID uint8
}

// MaxWindow is the longest window a policy may have: 100 years (36500d).
// A deadline is a window or two past now in nanoseconds since 1970, and
// windows much longer (about 85,000 days and more) overflow it.
const MaxWindow = 36500 * 24 * time.Hour

// FieldError is a validation error that names the offending field.
type FieldError struct {
	Field string // dotted path, e.g. "window" or "overrides[0].limit"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate fills in defaults and checks p, returning every problem found as
// *FieldError values joined with errors.Join.
func (p *Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !ValidName(p.Name) {
		bad("name", "must match [A-Za-z0-9_-]+, got %q", p.Name)
	}
	switch p.Calendar {
	case "":
		if p.Location != nil {
			bad("timezone", "applies to calendar quotas only (set calendar: day, week or month)")
		}
	case CalendarDay, CalendarWeek, CalendarMonth:
		if p.Algorithm == "" {
			p.Algorithm = FixedWindow
		}
		if p.Algorithm != FixedWindow {
			bad("algorithm", "a calendar quota counts in fixed windows: fixed_window or nothing, got %q", p.Algorithm)
		}
		// Window == w again: Validate may run more than once on a policy.
		if w := calendarWindow(p.Calendar); p.Window == 0 || p.Window == w {
			p.Window = w
		} else {
			bad("window", "a calendar %s is %s: leave window out (or set %s), got %s", p.Calendar, map[Calendar]string{CalendarDay: "a day", CalendarWeek: "a week", CalendarMonth: "a calendar month"}[p.Calendar],
				map[Calendar]string{CalendarDay: "1d", CalendarWeek: "7d", CalendarMonth: "31d"}[p.Calendar], p.Window)
		}
	default:
		bad("calendar", "must be day, week or month, got %q", p.Calendar)
	}
	if p.Algorithm == "" {
		p.Algorithm = SlidingWindow
	}
	if id, ok := algorithmIDs[p.Algorithm]; !ok {
		bad("algorithm", "must be one of sliding_window, sliding_log, fixed_window, gcra; got %q", p.Algorithm)
	} else if p.algID != uint8(id)+1 {
		// Written only when it changes: Validate may run again on a
		// policy in use.
		p.algID = uint8(id) + 1
	}
	if p.Limit <= 0 {
		bad("limit", "must be > 0")
	}
	if p.Window < time.Millisecond {
		bad("window", "must be > 0 (at least 1ms)")
	} else if p.Window > MaxWindow {
		bad("window", "must be at most 36500d (100 years), got %v", p.Window)
	}
	if p.Buckets < 0 {
		bad("buckets", "must be >= 0")
	}
	if p.Buckets == 0 {
		p.Buckets = DefaultBuckets
	}
	if p.Algorithm == SlidingWindow && p.Window >= time.Millisecond && p.Window/time.Duration(p.Buckets) < time.Millisecond {
		bad("buckets", "window / buckets must be at least 1ms")
	}
	if p.Burst < 0 {
		bad("burst", "must be >= 0")
	}
	if p.Algorithm == GCRA && p.Limit > 0 && p.Window >= time.Millisecond && p.Window/time.Duration(p.Limit) < time.Microsecond {
		bad("limit", "gcra needs window/limit >= 1µs")
	}
	for k, v := range p.Overrides {
		if v <= 0 {
			bad("overrides", "limit for key %q must be > 0", k)
		}
	}
	return errors.Join(errs...)
}

// AlgorithmID returns the number of p's algorithm, as Validate resolved
// it. A policy not validated gets its Algorithm's number looked up, and
// sliding_window's when Algorithm is empty or unknown.
func (p *Policy) AlgorithmID() AlgorithmID {
	if p.algID != 0 {
		return AlgorithmID(p.algID - 1)
	}
	return algorithmIDs[p.Algorithm] // SlidingWindowID when absent
}

// LimitFor returns the limit that applies to key: its run-time override
// (Live), else its configured one (Overrides), else Limit.
func (p *Policy) LimitFor(key string) int64 {
	if p.Live != nil {
		if l, ok := p.Live.Get(key); ok {
			return l
		}
	}
	if len(p.Overrides) > 0 {
		if l, ok := p.Overrides[key]; ok {
			return l
		}
	}
	return p.Limit
}

// BurstFor returns the gcra burst that applies to key: Burst scaled like the
// key's limit, or the key's limit when Burst is zero.
func (p *Policy) BurstFor(key string) int64 {
	limit := p.LimitFor(key)
	if p.Burst == 0 {
		return limit
	}
	if limit == p.Limit {
		return p.Burst
	}
	b := p.Burst * limit / p.Limit
	return max(b, 1)
}

// BucketSize is the length of one sliding_window sub-window:
// ceil(Window/Buckets), so that Buckets of them cover at least one Window.
func (p *Policy) BucketSize() time.Duration {
	n := time.Duration(max(p.Buckets, 1))
	return (p.Window + n - 1) / n
}

// StoreKey returns the form of key that stores use: key itself when it is at
// most MaxKeyLen bytes, otherwise "sha256:" and the hex digest of key.
// Keys are binary-safe.
func StoreKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Decision is the outcome of one Allow call.
type Decision struct {
	Allowed    bool
	Limit      int64         // the limit that applied to this key
	Remaining  int64         // units still admissible now, after this request
	Count      int64         // units counted in the window, after this request
	ResetAfter time.Duration // until the key's usage has fully drained
	RetryAfter time.Duration // until a request of the same cost could pass; 0 when allowed
	// Charge is what an admitting call took; Refund gives it back.
	Charge Charge
}

// Charge records what an Allow call took, so that Store.Refund can return it.
type Charge struct {
	Cost int64  // zero when nothing was taken
	At   int64  // store time of the charge, in nanoseconds since the Unix epoch
	ID   string // identifies the charge where the algorithm needs it (sliding_log)
}

// Usage is the state of one key of one policy, read without counting.
type Usage struct {
	Key        string        `json:"key"`
	Count      int64         `json:"count"`
	Limit      int64         `json:"limit"`
	Remaining  int64         `json:"remaining"`
	Rejected   int64         `json:"rejected"`
	ResetAfter time.Duration `json:"-"`
}

// Store counts requests per policy and key. Implementations are safe for
// concurrent use.
type Store interface {
	// Allow charges cost units to key under p if they fit and reports the
	// decision. A rejection charges nothing and counts one rejection.
	Allow(ctx context.Context, p *Policy, key string, cost int64) (Decision, error)
	// Refund gives back what an admitting Allow charged (a zero Charge is a
	// no-op). It is used when another policy rejects the same request.
	Refund(ctx context.Context, p *Policy, key string, c Charge) error
	// Peek reports the usage of key without counting. An unseen key has
	// Count 0.
	Peek(ctx context.Context, p *Policy, key string) (Usage, error)
	// Reset forgets key: its next request starts afresh.
	Reset(ctx context.Context, p *Policy, key string) error
	// Keys lists up to max of p's busiest keys: the most requests in the
	// window (admitted plus rejected), busiest first, each key once with
	// its usage as Peek reports it. See the package doc for which keys a
	// listing is sure to hold.
	Keys(ctx context.Context, p *Policy, max int) (KeyList, error)
	// Counters returns the store's named counters.
	Counters() Counters
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// KeyList is a listing of a policy's busiest keys.
type KeyList struct {
	Keys []Usage
	// ActiveKeys estimates how many distinct keys had a request in the
	// window (and at most a tenth of a window before it). A reset does not
	// take a key out, and a key used again after its reset counts once:
	// the estimate counts the keys that sent traffic, not those with quota
	// in use, and a sketch cannot forget one key. So it may exceed the
	// number of keys a listing of every key shows (those with requests
	// since their last reset) by the keys reset in the window.
	ActiveKeys int64
}

// KeyFlusher is an optional ability of a Store whose processes share a
// listing through periodic flushes (the Redis store, about once a second):
// FlushKeys sends what this process counted so far. Find it with a type
// assertion.
type KeyFlusher interface {
	FlushKeys(ctx context.Context) error
}

// KeyRanker is an optional ability of a Store: RankKeys returns up to n of
// p's keys in the order a listing reads them, by the estimates of the
// busiest-key summaries, without reading any key's usage. Find it with a
// type assertion.
type KeyRanker interface {
	RankKeys(ctx context.Context, p *Policy, n int) ([]string, error)
}

// Requests is how many requests u stands for in the window: admitted
// units plus rejections.
func (u Usage) Requests() int64 { return u.Count + u.Rejected }
