package algo

import (
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// gcra's decisions, for every store.

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
