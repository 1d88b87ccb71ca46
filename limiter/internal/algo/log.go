package algo

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// sliding_log's decisions, for every store.

// Log is the sliding_log arithmetic over a key's log: the times of
// the admitted units inside the window, oldest first, each with its units.
type Log struct {
	Size int64 // window length, in ticks
	Tick time.Duration
}

// LogOf returns the Log of p for times counted in tick units.
func LogOf(p *limiter.Policy, tick time.Duration) Log {
	return Log{Size: int64(p.Window / tick), Tick: tick}
}

// Inside reports whether a unit logged at t still counts at now.
func (l Log) Inside(t, now int64) bool { return t > now-l.Size }

// Fits reports whether cost more units fit when total units are logged
// inside the window.
func (l Log) Fits(total, limit, cost int64) bool { return total+cost <= limit }

// RetryAfter is the time until cost more units fit, given the log inside
// the window (times and units, oldest first, totalling total).
func (l Log) RetryAfter(times, units []int64, total, now, limit, cost int64) time.Duration {
	if cost > limit || len(times) == 0 {
		return time.Duration(l.Size) * l.Tick
	}
	// Enough of the oldest entries must leave the window.
	need, i := total+cost-limit, 0
	for ; i < len(times)-1 && need > units[i]; i++ {
		need -= units[i]
	}
	return time.Duration(times[i]+l.Size-now) * l.Tick
}

// Fill sets the count, remaining and reset time of d for total units
// logged, the newest at newest (ignored when total is 0).
func (l Log) Fill(d *limiter.Decision, total, newest, now, limit int64) {
	d.Count = total
	d.Remaining = max(0, limit-total)
	d.ResetAfter = 0
	if total > 0 {
		d.ResetAfter = time.Duration(newest+l.Size-now) * l.Tick
	}
}
