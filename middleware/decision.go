package middleware

// Summary labels of CheckDecision beyond the per-policy ones.
const (
	// DecisionSkipped: the skip function exempted the request, or the
	// limiter has no rules.
	DecisionSkipped = "skipped"
	// DecisionMissingKey: no key source was present and the rule rejects.
	DecisionMissingKey = "missing_key"
	// DecisionAmbiguousKey: a key source was present more than once (see
	// KeySource); the request is answered 400.
	DecisionAmbiguousKey = "ambiguous_key"
	// DecisionBadCost: the request's cost (WithCost) was invalid; the
	// request is answered 400.
	DecisionBadCost = "bad_cost"
)
