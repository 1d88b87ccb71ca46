package limiter

import "context"

// Request is one policy to apply to one request.
type Request struct {
	Policy *Policy
	Key    string
	Cost   int64 // zero means 1
}

// Outcome is the result of Check for one request under several policies.
type Outcome struct {
	// Allowed is false when a non-shadow policy rejected the request.
	Allowed bool
	// Decisions holds one decision per request that was evaluated, in order.
	// Evaluation stops at the first non-shadow rejection.
	Decisions []Decision
	// Rejected is the index of the rejecting policy, or -1.
	Rejected int
}

// Check applies every request in order and admits only if every non-shadow
// policy admits. When one rejects, the charges already taken by the policies
// before it are refunded, so a rejected request consumes no quota anywhere.
// The refund is a second call: between the charge and the refund another
// request may see the refunded units as used (a window of one store round
// trip), which can only make the limiter stricter, never looser.
//
// The decisions of refunded policies report their usage without the
// request: their Remaining and Count are as if it had never come.
//
// On a store error Check returns the decisions made so far and the error; it
// does not refund, so that a caller that fails open keeps the request counted.
func Check(ctx context.Context, s Store, reqs []Request, decisions []Decision) (Outcome, error) {
	out := Outcome{Allowed: true, Rejected: -1, Decisions: decisions[:0]}
	for i, r := range reqs {
		cost := r.Cost
		if cost == 0 {
			cost = 1
		}
		d, err := s.Allow(ctx, r.Policy, r.Key, cost)
		if err != nil {
			return out, err
		}
		out.Decisions = append(out.Decisions, d)
		if d.Allowed || r.Policy.Shadow {
			continue
		}
		out.Allowed = false
		out.Rejected = i
		for j := range i {
			if c := out.Decisions[j].Charge; c.Cost > 0 {
				// A failed refund leaves the limiter stricter than it should
				// be for one window; the rejection itself stands. The refund
				// goes even when the caller has gone.
				_ = s.Refund(context.WithoutCancel(ctx), reqs[j].Policy, reqs[j].Key, c)
				// The decision now tells the usage without this request.
				d := &out.Decisions[j]
				d.Charge = Charge{}
				d.Count = max(0, d.Count-c.Cost)
				d.Remaining += c.Cost
			}
		}
		break
	}
	return out, nil
}

// MostRestrictive returns the index of the decision with the lowest
// Remaining among the non-shadow policies (the rejecting one if any), or -1
// when every policy is a shadow policy.
func (o Outcome) MostRestrictive(reqs []Request) int {
	if o.Rejected >= 0 {
		return o.Rejected
	}
	best := -1
	for i, d := range o.Decisions {
		if reqs[i].Policy.Shadow {
			continue
		}
		if best < 0 || d.Remaining < o.Decisions[best].Remaining {
			best = i
		}
	}
	return best
}
