package limiter

import (
	"context"
	"time"
)

// HistoryRetention is how long history is kept.
const HistoryRetention = 24 * time.Hour

// Point is one minute of a history series.
type Point struct {
	Minute   time.Time `json:"minute"`
	Admitted int64     `json:"admitted"`
	Rejected int64     `json:"rejected"`
	Value    *int64    `json:"value,omitempty"` // counters: the value at the end of the minute
}

// History is an optional ability of a Store: per-minute series (admitted
// and rejected counts, or a counter's value) kept for HistoryRetention.
// Find it with a type assertion.
type History interface {
	// AddHistory adds each point's counts to its minute of series, and sets
	// the minute's value where the point has one.
	AddHistory(ctx context.Context, series string, points []Point) error
	// History returns the minutes of series from since on, oldest first.
	History(ctx context.Context, series string, since time.Time) ([]Point, error)
}
