package limiter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Counter is a named integer with optional bounds. Counters persist until
// deleted.
type Counter struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Min   *int64 `json:"min"`
	Max   *int64 `json:"max"`
}

// Check reports an error when Value lies outside [Min, Max] or Min > Max.
func (c Counter) Check() error {
	if !ValidCounterName(c.Name) {
		return fmt.Errorf("name: %q is not a valid counter name", c.Name)
	}
	if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
		return fmt.Errorf("min %d is greater than max %d", *c.Min, *c.Max)
	}
	if c.Min != nil && c.Value < *c.Min {
		return fmt.Errorf("value %d is below min %d", c.Value, *c.Min)
	}
	if c.Max != nil && c.Value > *c.Max {
		return fmt.Errorf("value %d is above max %d", c.Value, *c.Max)
	}
	return nil
}

// MaxCounterName is the longest counter name.
const MaxCounterName = 200

// ValidCounterName reports whether s may name a counter: 1 to
// MaxCounterName bytes of printable ASCII other than space, '{' and '}'.
func ValidCounterName(s string) bool {
	if s == "" || len(s) > MaxCounterName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// BoundError reports a step that would take a counter past its min, its max
// or the int64 range. The counter keeps Value.
type BoundError struct {
	Name  string
	Value int64  // the unchanged current value
	Bound string // "min", "max" or "int64"
}

func (e *BoundError) Error() string {
	return fmt.Sprintf("counter %q: step past %s (value stays %d)", e.Name, e.Bound, e.Value)
}

// IsBoundError reports whether err is a *BoundError and returns it.
func IsBoundError(err error) (*BoundError, bool) {
	var be *BoundError
	ok := errors.As(err, &be)
	return be, ok
}

// step applies delta to c in memory, with the same rules every store follows:
// the result must fit in int64 and in [Min, Max].
func step(c Counter, delta int64) (Counter, error) {
	if (delta > 0 && c.Value > math.MaxInt64-delta) || (delta < 0 && c.Value < math.MinInt64-delta) {
		return c, &BoundError{Name: c.Name, Value: c.Value, Bound: "int64"}
	}
	next := c.Value + delta
	if c.Max != nil && next > *c.Max {
		return c, &BoundError{Name: c.Name, Value: c.Value, Bound: "max"}
	}
	if c.Min != nil && next < *c.Min {
		return c, &BoundError{Name: c.Name, Value: c.Value, Bound: "min"}
	}
	c.Value = next
	return c, nil
}

// Counters is a store of named counters. Every operation is atomic.
type Counters interface {
	// Add adds delta (negative to decrement) to the named counter; a missing
	// counter starts at 0 with no bounds. A step out of bounds returns a
	// *BoundError and leaves the value unchanged.
	Add(ctx context.Context, name string, delta int64) (Counter, error)
	// Get returns the counter or ErrNotFound.
	Get(ctx context.Context, name string) (Counter, error)
	// Set creates or replaces a counter; c must pass Check.
	Set(ctx context.Context, c Counter) (Counter, error)
	// Delete removes a counter; deleting a missing counter is not an error.
	Delete(ctx context.Context, name string) error
	// List returns every counter, sorted by name.
	List(ctx context.Context) ([]Counter, error)
}

// OpKind names a counter write.
type OpKind string

// The counter writes.
const (
	OpAdd    OpKind = "add"    // add Delta (negative to decrement)
	OpSet    OpKind = "set"    // create or replace with Counter
	OpDelete OpKind = "delete" // remove
)

// CounterOp is one write to the counter Name.
type CounterOp struct {
	Kind    OpKind
	Name    string
	Delta   int64   // OpAdd
	Counter Counter // OpSet; its Name is Name
}

// Check reports an op that no store may apply: a bad kind or name, or an
// OpSet counter that fails Counter.Check.
func (op CounterOp) Check() error {
	if !ValidCounterName(op.Name) {
		return fmt.Errorf("counter name %q is not valid", op.Name)
	}
	switch op.Kind {
	case OpAdd, OpDelete:
	case OpSet:
		if op.Counter.Name != op.Name {
			return fmt.Errorf("set: counter %q under name %q", op.Counter.Name, op.Name)
		}
		return op.Counter.Check()
	default:
		return fmt.Errorf("unknown counter op %q", op.Kind)
	}
	return nil
}

// Fingerprint identifies what op does: two requests under one idempotency
// key are the same request when their ops have the same fingerprint, however
// their bodies were spelled ({} and {"by":1} are the same increment).
func (op CounterOp) Fingerprint() string {
	switch op.Kind {
	case OpAdd:
		return "add " + strconv.FormatInt(op.Delta, 10)
	case OpSet:
		return "set " + strconv.FormatInt(op.Counter.Value, 10) + " " + formatBound(op.Counter.Min) + " " + formatBound(op.Counter.Max)
	}
	return string(op.Kind)
}

func formatBound(b *int64) string {
	if b == nil {
		return "-"
	}
	return strconv.FormatInt(*b, 10)
}

// Apply computes op on cur (nil when the counter does not exist): the
// counter to keep (nil: none) and the result. It is the one place the stores
// that hold counters in Go take the effect of a write from; op must pass
// Check.
func (op CounterOp) Apply(cur *Counter) (*Counter, CounterResult) {
	switch op.Kind {
	case OpSet:
		next := op.Counter
		return &next, CounterResult{Counter: next}
	case OpDelete:
		return nil, CounterResult{}
	}
	base := Counter{Name: op.Name}
	if cur != nil {
		base = *cur
	}
	next, err := step(base, op.Delta)
	if be, ok := IsBoundError(err); ok {
		return cur, CounterResult{Counter: base, Bound: be.Bound}
	}
	return &next, CounterResult{Counter: next}
}

// CounterResult is what a counter write did.
type CounterResult struct {
	// Counter is the counter after the write (OpAdd, OpSet); when Bound is
	// set, the unchanged counter.
	Counter Counter
	// Bound is set when an OpAdd stepped past "min", "max" or "int64" and
	// changed nothing.
	Bound string
	// Replayed is set when the result is that of an earlier write with the
	// same idempotency key; this write changed nothing.
	Replayed bool
}

// Err returns the *BoundError that the result stands for, or nil.
func (r CounterResult) Err() error {
	if r.Bound == "" {
		return nil
	}
	return &BoundError{Name: r.Counter.Name, Value: r.Counter.Value, Bound: r.Bound}
}

// IdempotencyTTL is how long a write's idempotency record is kept.
const IdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKey is the longest idempotency key.
const MaxIdempotencyKey = 255

// ValidIdempotencyKey reports whether s may be an idempotency key: 1 to
// MaxIdempotencyKey bytes of printable ASCII (space included).
func ValidIdempotencyKey(s string) bool {
	if s == "" || len(s) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' {
			return false
		}
	}
	return true
}

// ErrIdempotencyKeyReused reports an idempotency key that an earlier,
// different write to the same counter used within IdempotencyTTL.
var ErrIdempotencyKeyReused = errors.New("idempotency key already used for a different request")

// CounterWriter is an optional ability of Counters: one write, optionally
// under an idempotency key. Find it with a type assertion.
//
// With a key, the store keeps a record of the write's result for
// IdempotencyTTL, written atomically with the change itself, so that a
// crash or a lost answer cannot separate the two. A write under a key that
// has a record for the same counter returns the recorded result with
// Replayed set and changes nothing, or ErrIdempotencyKeyReused when the
// record's op has another Fingerprint. Keys are scoped to their counter:
// the same key on another counter is another write. A refused step (Bound
// set) is an answer and is recorded like any other; a write that returns an
// error (a bad op, a store failure) leaves no record.
type CounterWriter interface {
	Write(ctx context.Context, op CounterOp, idempotencyKey string) (CounterResult, error)
}
