package algo

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// fixed_window's decisions, for every store.

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
