package limiter

import (
	"context"
	"errors"
	"fmt"
	"math"
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

// Step applies delta to c in memory, with the same rules every store follows:
// the result must fit in int64 and in [Min, Max].
func Step(c Counter, delta int64) (Counter, error) {
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
