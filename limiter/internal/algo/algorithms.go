package algo

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// The arithmetic of fixed_window, gcra and sliding_log, written once for
// every store (sliding_window's is Window, in window.go). Each works on a
// key's state as the store keeps it, with now passed in, in integer ticks
// of Tick; the stores load and save the state.

// Fixed is the fixed_window arithmetic: one count per window aligned
// to a multiple of Size.
type Fixed struct {
	Size int64         // window length, in ticks
	Tick time.Duration // the length of one tick
	// Calendar, when set, makes the windows the calendar periods of
	// Location instead (see limiter.Period); Size then only bounds a period.
	Calendar limiter.Calendar
	Location *time.Location
}

// FixedOf returns the Fixed of p for times counted in tick units.
func FixedOf(p *limiter.Policy, tick time.Duration) Fixed {
	return Fixed{Size: max(1, int64(p.Window/tick)), Tick: tick, Calendar: p.Calendar, Location: p.Location}
}

// Start is the start of the window that holds now.
func (f Fixed) Start(now int64) int64 {
	if f.Calendar != "" {
		s, _ := f.calendarBounds(now)
		return s
	}
	return now - now%f.Size
}

// calendarBounds is Start and End for a calendar policy, in ticks.
func (f Fixed) calendarBounds(now int64) (start, end int64) {
	s, e := limiter.Period(f.Calendar, f.Location, time.Unix(0, now*int64(f.Tick)))
	return s.UnixNano() / int64(f.Tick), e.UnixNano() / int64(f.Tick)
}

// End is the end of the window that holds now (the start of the next).
func (f Fixed) End(now int64) int64 {
	if f.Calendar != "" {
		_, e := f.calendarBounds(now)
		return e
	}
	return f.Start(now) + f.Size
}

// Decide decides a request of cost units at now, when count units are
// already in now's window.
func (f Fixed) Decide(count, now, limit, cost int64) limiter.Decision {
	d := limiter.Decision{Limit: limit}
	if count+cost <= limit {
		count += cost
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now * int64(f.Tick)}
	} else {
		d.RetryAfter = time.Duration(f.End(now)-now) * f.Tick
		if cost > limit {
			d.RetryAfter = time.Duration(f.Size) * f.Tick
		}
	}
	f.Fill(&d, count, now, limit)
	return d
}

// Fill sets the count, remaining and reset time of d for count units in
// now's window.
func (f Fixed) Fill(d *limiter.Decision, count, now, limit int64) {
	d.Count = count
	d.Remaining = max(0, limit-count)
	d.ResetAfter = 0
	if count > 0 {
		d.ResetAfter = time.Duration(f.End(now)-now) * f.Tick
	}
}

// Cell is the gcra arithmetic (the generic cell rate algorithm) over a
// key's theoretical arrival time (TAT): one unit every Interval, at most
// Burst units ahead of now.
type Cell struct {
	Interval int64 // ticks per unit
	Burst    int64
	Window   int64 // the policy's window, in ticks (the retry-after of a cost above Burst)
	Tick     time.Duration
}

// CellOf returns the Cell of p for key (whose limit is limit), for times
// counted in tick units.
func CellOf(p *limiter.Policy, key string, limit int64, tick time.Duration) Cell {
	return Cell{Interval: max(1, int64(p.Window/tick)/limit), Burst: p.BurstFor(key), Window: int64(p.Window / tick), Tick: tick}
}

// Decide decides a request of cost units at now and returns the new TAT
// (tat itself when rejected).
func (g Cell) Decide(tat, now, cost int64) (int64, limiter.Decision) {
	newTat := max(tat, now) + g.Interval*cost
	allowAt := newTat - g.Interval*g.Burst
	var d limiter.Decision
	if now >= allowAt {
		tat = newTat
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: now * int64(g.Tick)}
	} else {
		d.RetryAfter = time.Duration(allowAt-now) * g.Tick
		if cost > g.Burst {
			d.RetryAfter = time.Duration(g.Window) * g.Tick
		}
	}
	g.Fill(&d, tat, now)
	return tat, d
}

// Fill sets the count, remaining and reset time of d for tat at now.
func (g Cell) Fill(d *limiter.Decision, tat, now int64) {
	used := max(0, tat-now)
	d.Count = (used + g.Interval - 1) / g.Interval
	d.Remaining = max(0, g.Burst-d.Count)
	d.ResetAfter = time.Duration(used) * g.Tick
}

// Refund returns the TAT after cost units are given back at now.
func (g Cell) Refund(tat, now, cost int64) int64 { return max(now, tat-g.Interval*cost) }

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
