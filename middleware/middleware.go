// Package middleware puts Sluice's limiter in front of any net/http handler.
//
// One line covers the common cases, on a memory store of the limiter's own:
//
//	mux := http.NewServeMux()
//	http.ListenAndServe(":8080", middleware.PerIP(100, time.Minute).Handler(mux))
//
// PerHeader keys by a request header (an API key), PerKey by any KeySource;
// WithStore counts in a shared store (a limiter/redisstore.Store for a
// fleet), and the other With options set the rest. The one-liners panic on
// invalid arguments, as regexp.MustCompile does; Limit is the same
// constructor returning its error. New applies several policies at once,
// each with its own key sources: a request passes only if every one admits it.
//
// A Limiter sets the rate-limit headers of the most restrictive policy on
// every limited response (X-RateLimit-Limit, X-RateLimit-Remaining,
// X-RateLimit-Reset, and RateLimit-Policy / RateLimit of
// draft-ietf-httpapi-ratelimit-headers-11) and answers a rejected request
// with 429, Retry-After, Cache-Control: no-store and a JSON body.
//
// When the store fails the request is let through (fail open, the default)
// or answered with 503 (fail closed), through one replaceable hook.
//
// This package does not import Gin; middleware/ginlimit adapts the same
// Limiter to Gin.
package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// MissingKey says what happens to a request none of whose key sources is
// present. There is no free pass.
type MissingKey int

const (
	// MissingKeyUseIP keys the request by its client IP.
	MissingKeyUseIP MissingKey = iota
	// MissingKeyReject answers 400.
	MissingKeyReject
)

// Rule applies one policy to requests.
type Rule struct {
	Policy *limiter.Policy
	// Keys are tried in order; the first present wins. Empty means the
	// client IP.
	Keys []KeySource
	// OnMissingKey applies when no source is present.
	OnMissingKey MissingKey
	// CountStatus, when set, counts only the requests whose response
	// status it matches (see Statuses): a request is decided as usual, and
	// its charge is refunded once the response shows a status that does
	// not match. Nil counts every admitted request. Only Handler and
	// Begin see the response; Check and its kin charge every request.
	CountStatus func(status int) bool
}

// Decision labels, as reported to an Observer.
const (
	DecisionAllowed        = "allowed"
	DecisionRejected       = "rejected"
	DecisionShadowRejected = "shadow_rejected"
	DecisionError          = "error"
)

// Event describes the decision made for one request, for an Observer.
type Event struct {
	Request *http.Request // nil when the decision was not asked over HTTP (Envoy's rate limit service)
	// Policies and Decisions are parallel: the label of each policy that
	// was evaluated (DecisionAllowed, ...).
	Policies  []string
	Decisions []string
	Keys      []string // the key each policy counted
	Costs     []int64
	Counts    []int64 // each policy's count for its key after the decision
	Limits    []int64
	Duration  time.Duration // time spent deciding, store included
	Err       error         // the store error, if any
}

// Observer is told of every decision, e.g. to count it in metrics. It is
// called on the request's goroutine and must not keep the Event.
type Observer func(Event)

// ErrorHandler decides what a request gets when the store fails: it returns
// true to let the request through, or writes a response and returns false.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error) (proceed bool)

// RejectHandler writes the response to a rejected request. The rate-limit
// headers and Retry-After are already set.
type RejectHandler func(w http.ResponseWriter, r *http.Request, rej Rejection)

// Rejection says why a request was rejected.
type Rejection struct {
	Policy     string
	RetryAfter int64 // whole seconds, at least 1
	Cost       int64 // the request's cost (see WithCost); 1 by default
}

// FailOpen is the ErrorHandler that lets requests through when the store
// fails.
func FailOpen(http.ResponseWriter, *http.Request, error) bool { return true }

// FailClosed is the ErrorHandler that answers 503 with a JSON error when
// the store fails.
func FailClosed(w http.ResponseWriter, _ *http.Request, _ error) bool {
	WriteJSONError(w, http.StatusServiceUnavailable, "rate limiter unavailable")
	return false
}

// WriteJSONError writes {"error": msg} with status.
func WriteJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	_, _ = w.Write(append(b, '\n'))
}

// DefaultReject writes the 429 JSON body
// {"error":"rate limit exceeded","policy":...,"retry_after_seconds":N},
// with "cost":C after it when the request cost more than 1 (WithCost).
func DefaultReject(w http.ResponseWriter, _ *http.Request, rej Rejection) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusTooManyRequests)
	buf := make([]byte, 0, 96)
	buf = append(buf, `{"error":"rate limit exceeded","policy":`...)
	buf = strconv.AppendQuote(buf, rej.Policy)
	buf = append(buf, `,"retry_after_seconds":`...)
	buf = strconv.AppendInt(buf, rej.RetryAfter, 10)
	if rej.Cost > 1 {
		buf = append(buf, `,"cost":`...)
		buf = strconv.AppendInt(buf, rej.Cost, 10)
	}
	buf = append(buf, "}\n"...)
	_, _ = w.Write(buf)
}

// Option configures a Limiter. WithStore, WithKey, WithName and
// WithAlgorithm shape the one policy of PerIP, PerHeader, PerKey and Limit;
// New takes its store and rules as arguments and rejects them.
type Option func(*config)

// config collects the options before a constructor checks them.
type config struct {
	ip       *IPResolver
	onError  ErrorHandler
	onReject RejectHandler
	skip     func(*http.Request) bool
	observe  Observer
	timeout  time.Duration
	cost     CostFunc

	// One-policy constructors only.
	store     limiter.Store
	key       KeySource
	nilOption string // "WithStore" or "WithKey" when given nil
	name      string
	algorithm limiter.Algorithm
	onePolicy []string // the one-policy options given, for New's error
}

// WithErrorHandler replaces the store-failure hook (default FailOpen).
func WithErrorHandler(h ErrorHandler) Option { return func(c *config) { c.onError = h } }

// WithRejectHandler replaces the 429 response.
func WithRejectHandler(h RejectHandler) Option { return func(c *config) { c.onReject = h } }

// WithSkip exempts the requests for which skip returns true (health
// checks, internal callers): they are neither counted nor limited.
func WithSkip(skip func(*http.Request) bool) Option { return func(c *config) { c.skip = skip } }

// WithObserver sets the decision observer.
func WithObserver(o Observer) Option { return func(c *config) { c.observe = o } }

// WithTimeout bounds each decision, store calls included; zero (the
// default) leaves the bound to the store (the Redis store has its own).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// CostFunc returns what a request costs, at least 1; an error answers the
// request 400 with the error's text, and nothing is counted.
type CostFunc func(r *http.Request) (int64, error)

// WithCost charges each request what cost returns instead of 1 (see
// ConstCost and HeaderCost). The rate-limit headers count in the same
// units, and the 429 body gives the cost.
func WithCost(cost CostFunc) Option { return func(c *config) { c.cost = cost } }

// ConstCost is the CostFunc of a fixed cost n (at least 1), for an
// endpoint that is dearer than the rest.
func ConstCost(n int64) CostFunc {
	return func(*http.Request) (int64, error) {
		if n < 1 {
			return 0, errors.New("cost must be >= 1")
		}
		return n, nil
	}
}

// HeaderCost is the CostFunc that reads the cost from request header name:
// def when the header is absent; a whole number from min to max (min at
// least 1); anything else (another number, a repeated header, junk) is an
// error, so that a client can neither buy requests for nothing nor refund
// itself.
func HeaderCost(name string, def, min, max int64) CostFunc {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (int64, error) {
		v := r.Header[name]
		switch {
		case len(v) == 0:
			return def, nil
		case len(v) > 1:
			return 0, fmt.Errorf("%s sent more than once", name)
		}
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < min || n > max {
			return 0, fmt.Errorf("%s must be a whole number from %d to %d", name, min, max)
		}
		return n, nil
	}
}

// WithIPResolver sets how client IPs are found, for rules without Keys and
// for MissingKeyUseIP (default: the TCP peer, IPv6 by /64). It also takes
// precedence over the client address an adapter passes to CheckClientIP
// (ginlimit's c.ClientIP()).
func WithIPResolver(r *IPResolver) Option {
	return func(c *config) {
		if r == nil {
			r = &IPResolver{}
		}
		c.ip = r
	}
}

// WithStore counts in s (a Redis store, or a memory store shared by several
// limiters) instead of a memory store of the limiter's own. Limiters that
// share a store need distinct names (WithName), or they share counters.
func WithStore(s limiter.Store) Option {
	return func(c *config) {
		c.store = s
		if s == nil {
			c.nilOption = "WithStore"
		} else if c.nilOption == "WithStore" {
			c.nilOption = ""
		}
		c.onePolicy = append(c.onePolicy, "WithStore")
	}
}

// WithKey keys requests by k (default: the client IP). A request for which
// k finds no key is keyed by its client IP: there is no free pass.
func WithKey(k KeySource) Option {
	return func(c *config) {
		c.key = k
		if k == nil {
			c.nilOption = "WithKey"
		} else if c.nilOption == "WithKey" {
			c.nilOption = ""
		}
		c.onePolicy = append(c.onePolicy, "WithKey")
	}
}

// WithName names the policy in headers, the 429 body and the store
// (default "per-ip", "per-" and the header name in lower case, or "per-key").
func WithName(name string) Option {
	return func(c *config) { c.name = name; c.onePolicy = append(c.onePolicy, "WithName") }
}

// WithAlgorithm chooses the algorithm (default limiter.SlidingWindow).
func WithAlgorithm(a limiter.Algorithm) Option {
	return func(c *config) { c.algorithm = a; c.onePolicy = append(c.onePolicy, "WithAlgorithm") }
}

// Limiter applies rules to requests. It is safe for concurrent use.
type Limiter struct {
	store    limiter.Store
	owned    *memstore.Store // the store the limiter made, closed by Close
	rules    []Rule
	ip       *IPResolver
	ipSet    bool // WithIPResolver was given: CheckClientIP ignores its function
	onError  ErrorHandler
	onReject RejectHandler
	skip     func(*http.Request) bool
	observe  Observer
	timeout  time.Duration
	cost     CostFunc
	settles  bool // a rule has CountStatus
}

// New returns a Limiter over store with several rules; a request passes
// only if every rule admits it. Every rule's policy must be valid and
// its name unique among the rules.
func New(store limiter.Store, rules []Rule, opts ...Option) (*Limiter, error) {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if len(c.onePolicy) > 0 {
		return nil, fmt.Errorf("middleware: New takes its store and policies as arguments; %s is for PerIP, PerHeader, PerKey and Limit", c.onePolicy[0])
	}
	return newLimiter(store, rules, &c)
}

func newLimiter(store limiter.Store, rules []Rule, c *config) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("middleware: nil store")
	}
	l := &Limiter{store: store, rules: rules, ip: c.ip, ipSet: c.ip != nil,
		onError: c.onError, onReject: c.onReject, skip: c.skip, observe: c.observe, timeout: c.timeout, cost: c.cost}
	if l.ip == nil {
		l.ip = &IPResolver{}
	}
	if l.onError == nil {
		l.onError = FailOpen
	}
	if l.onReject == nil {
		l.onReject = DefaultReject
	}
	seen := make(map[string]int, len(rules))
	for i, r := range rules {
		if r.Policy == nil {
			return nil, fmt.Errorf("middleware: rule %d has no policy", i)
		}
		if err := r.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("middleware: policy %q: %w", r.Policy.Name, err)
		}
		if j, dup := seen[r.Policy.Name]; dup {
			return nil, fmt.Errorf("middleware: rules %d and %d both name policy %q: names must be unique, or the rules share counters", j, i, r.Policy.Name)
		}
		seen[r.Policy.Name] = i
		if r.CountStatus != nil {
			l.settles = true
		}
	}
	return l, nil
}

const maxStackRules = 4

// Check decides r, writes the rate-limit headers to w, and, when the
// request must not go on, the response (429, 400 or the error hook's). It
// reports whether the handler should run.
func (l *Limiter) Check(w http.ResponseWriter, r *http.Request) bool {
	proceed, _, _ := l.decide(w, r, nil)
	return proceed
}

// CheckClientIP is Check for adapters whose framework knows the client
// address (ginlimit passes Gin's c.ClientIP()): clientIP stands in for the
// limiter's own resolution of the client IP, unless the Limiter was built
// WithIPResolver. It is called at most once, and only when a rule needs the
// client IP; an invalid address it returns means the limiter's own.
func (l *Limiter) CheckClientIP(w http.ResponseWriter, r *http.Request, clientIP func() netip.Addr) bool {
	proceed, _, _ := l.decide(w, r, clientIP)
	return proceed
}

// CheckDecision is Check that also returns a one-word summary for access
// logs: DecisionAllowed, DecisionRejected, DecisionShadowRejected (admitted,
// but a shadow policy would have rejected), DecisionError,
// DecisionMissingKey, DecisionAmbiguousKey or DecisionSkipped.
func (l *Limiter) CheckDecision(w http.ResponseWriter, r *http.Request) (proceed bool, decision string) {
	proceed, decision, _ = l.decide(w, r, nil)
	return proceed, decision
}

// Begin is CheckDecision for callers that see the response (adapters, a
// proxy): when the handler has run, they call end with the response
// status, which refunds the charge of every rule whose CountStatus does
// not match it. end is never nil and does nothing when no rule counts by
// status or the request did not proceed. clientIP is as in CheckClientIP,
// and may be nil.
func (l *Limiter) Begin(w http.ResponseWriter, r *http.Request, clientIP func() netip.Addr) (proceed bool, decision string, end func(status int)) {
	proceed, decision, s := l.decide(w, r, clientIP)
	if s == nil {
		return proceed, decision, noSettle
	}
	return proceed, decision, s.end
}

func noSettle(int) {}

// settlement holds the charges of an admitted request that count by status.
type settlement struct {
	l       *Limiter
	ctx     context.Context
	reqs    []limiter.Request
	charges []limiter.Charge
	match   []func(int) bool
}

// end refunds the charges whose rule does not count status.
func (s *settlement) end(status int) {
	ctx := s.ctx
	if s.l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.l.timeout)
		defer cancel()
	}
	for i, m := range s.match {
		if m == nil || m(status) || s.charges[i].Cost == 0 {
			continue
		}
		// A failed refund leaves the request counted: stricter, never looser.
		_ = s.l.store.Refund(ctx, s.reqs[i].Policy, s.reqs[i].Key, s.charges[i])
	}
}

func (l *Limiter) decide(w http.ResponseWriter, r *http.Request, clientIP func() netip.Addr) (proceed bool, decision string, s *settlement) {
	if len(l.rules) == 0 || (l.skip != nil && l.skip(r)) {
		return true, DecisionSkipped, nil
	}
	cost := int64(1)
	if l.cost != nil {
		var err error
		if cost, err = l.cost(r); err == nil && cost < 1 {
			err = fmt.Errorf("cost must be >= 1, got %d", cost)
		}
		if err != nil {
			WriteJSONError(w, http.StatusBadRequest, "bad request cost: "+err.Error())
			return false, DecisionBadCost, nil
		}
	}
	var start time.Time
	if l.observe != nil {
		start = time.Now()
	}
	var reqBuf [maxStackRules]limiter.Request
	var decBuf [maxStackRules]limiter.Decision
	reqs := reqBuf[:0]
	var ip ipKey
	for _, rule := range l.rules {
		key, ok := l.key(rule, r, clientIP, &ip)
		if !ok {
			WriteJSONError(w, http.StatusBadRequest, "missing rate-limit key for policy "+rule.Policy.Name)
			return false, DecisionMissingKey, nil
		}
		if key == "" {
			WriteJSONError(w, http.StatusBadRequest, "ambiguous rate-limit key for policy "+rule.Policy.Name+": the header, query parameter or cookie it is read from is repeated (or, for a header, also sent with underscores for dashes)")
			return false, DecisionAmbiguousKey, nil
		}
		reqs = append(reqs, limiter.Request{Policy: rule.Policy, Key: key, Cost: cost})
	}
	ctx := r.Context()
	if l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	out, err := limiter.Check(ctx, l.store, reqs, decBuf[:0])
	if l.observe != nil {
		l.report(r, reqs, out, err, time.Since(start))
	}
	if err != nil {
		return l.onError(w, r, err), DecisionError, nil
	}
	decision = DecisionAllowed
	for i, d := range out.Decisions {
		if !d.Allowed && reqs[i].Policy.Shadow {
			decision = DecisionShadowRejected
		}
	}
	best := out.MostRestrictive(reqs)
	if out.Allowed && l.settles {
		s = &settlement{l: l, ctx: context.WithoutCancel(r.Context()), reqs: append([]limiter.Request(nil), reqs...),
			charges: make([]limiter.Charge, len(out.Decisions)), match: make([]func(int) bool, len(out.Decisions))}
		for i, d := range out.Decisions {
			s.charges[i], s.match[i] = d.Charge, l.rules[i].CountStatus
		}
	}
	if best < 0 {
		return true, decision, s // shadow policies only
	}
	d := out.Decisions[best]
	writeHeaders(w.Header(), reqs[best].Policy, d)
	if out.Allowed {
		return true, decision, s
	}
	retry := ceilSeconds(d.RetryAfter)
	h := w.Header()
	h["Retry-After"] = []string{strconv.FormatInt(retry, 10)}
	h["Cache-Control"] = []string{"no-store"}
	l.onReject(w, r, Rejection{Policy: reqs[best].Policy.Name, RetryAfter: retry, Cost: cost})
	return false, DecisionRejected, nil
}

// ipKey is a request's client IP key, found at most once per request.
type ipKey struct {
	key  string
	done bool
}

// key finds rule's key for r. clientIP is the adapter's client address, or
// nil. (It is kept out of ipKey, whose key escapes: so it does not.)
func (l *Limiter) key(rule Rule, r *http.Request, clientIP func() netip.Addr, ip *ipKey) (string, bool) {
	for _, src := range rule.Keys {
		if k, ok := src(r); ok {
			return k, true
		}
	}
	if len(rule.Keys) > 0 && rule.OnMissingKey == MissingKeyReject {
		return "", false
	}
	if !ip.done {
		var addr netip.Addr
		if clientIP != nil && !l.ipSet {
			addr = clientIP()
		}
		if !addr.IsValid() {
			addr = l.ip.ClientIP(r)
		}
		ip.key, ip.done = l.ip.Key(addr.Unmap()), true
	}
	return ip.key, ip.key != ""
}

func (l *Limiter) report(r *http.Request, reqs []limiter.Request, out limiter.Outcome, err error, took time.Duration) {
	Report(l.observe, r, reqs, out, err, took)
}

// Report tells observe of a decision that limiter.Check made over reqs
// (out and err are what it returned), labelling each policy's decision
// DecisionAllowed, DecisionRejected, DecisionShadowRejected or
// DecisionError. Every caller of limiter.Check that reports to an Observer
// goes through it: the Limiter, and Sluice's decision services, which pass
// a nil r when the decision was not asked for an HTTP request (Envoy's rate
// limit service).
func Report(observe Observer, r *http.Request, reqs []limiter.Request, out limiter.Outcome, err error, took time.Duration) {
	var buf [maxStackRules]string
	labels := buf[:0]
	for i, d := range out.Decisions {
		switch {
		case d.Allowed:
			labels = append(labels, DecisionAllowed)
		case reqs[i].Policy.Shadow:
			labels = append(labels, DecisionShadowRejected)
		default:
			labels = append(labels, DecisionRejected)
		}
	}
	if err != nil && len(labels) < len(reqs) {
		labels = append(labels, DecisionError)
	}
	var keyBuf, nameBuf [maxStackRules]string
	var costBuf, countBuf, limitBuf [maxStackRules]int64
	names, keys, costs, counts, limits := nameBuf[:0], keyBuf[:0], costBuf[:0], countBuf[:0], limitBuf[:0]
	for i := range labels {
		names, keys, costs = append(names, reqs[i].Policy.Name), append(keys, reqs[i].Key), append(costs, reqs[i].Cost)
		var count, limit int64
		if i < len(out.Decisions) {
			count, limit = out.Decisions[i].Count, out.Decisions[i].Limit
		}
		counts, limits = append(counts, count), append(limits, limit)
	}
	observe(Event{Request: r, Policies: names, Decisions: labels, Keys: keys, Costs: costs,
		Counts: counts, Limits: limits, Duration: took, Err: err})
}

// Close stops the memory store that PerIP, PerHeader, PerKey or Limit made
// for the limiter (its sweeper goroutine); a store given with WithStore or
// to New is the caller's to close. A Limiter that lives as long as the
// program need not be closed, and one that is no longer referenced stops
// its store when the garbage collector finds it. Close returns nil and may
// be called more than once.
func (l *Limiter) Close() error {
	if l.owned != nil {
		return l.owned.Close()
	}
	return nil
}

// Handler returns next behind the limiter.
// When a rule counts by status (CountStatus), the charge is settled when
// next returns, with the status it wrote (200 when it wrote none).
func (l *Limiter) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proceed, _, s := l.decide(w, r, nil)
		if !proceed {
			return
		}
		if s == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.end(rec.Status())
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer below.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the status written, 200 when none was.
func (w *statusRecorder) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Statuses returns the matcher of the response statuses in specs, each a
// code ("401") or a class ("5xx"), for Rule.CountStatus.
func Statuses(specs ...string) (func(status int) bool, error) {
	var codes [6][]int // by class
	var classes [6]bool
	if len(specs) == 0 {
		return nil, errors.New("no status given")
	}
	for _, s := range specs {
		if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && (s[1:] == "xx" || s[1:] == "XX") {
			classes[s[0]-'0'] = true
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 599 {
			return nil, fmt.Errorf("%q: want a status from 100 to 599 or a class such as 5xx", s)
		}
		codes[n/100] = append(codes[n/100], n)
	}
	return func(status int) bool {
		c := status / 100
		if c < 1 || c > 5 {
			return false
		}
		if classes[c] {
			return true
		}
		for _, n := range codes[c] {
			if n == status {
				return true
			}
		}
		return false
	}, nil
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// writeHeaders sets the rate-limit headers for decision d of policy p.
// X-RateLimit-Reset and the t parameter are the seconds until capacity
// frees: the retry time when rejected, else the time until the key's usage
// has fully drained (0 when nothing is used).
func writeHeaders(h http.Header, p *limiter.Policy, d limiter.Decision) {
	reset := d.ResetAfter
	if !d.Allowed {
		reset = d.RetryAfter
	}
	var resetS int64
	if reset > 0 {
		resetS = int64((reset + time.Second - 1) / time.Second)
	}
	windowS := max(1, int64((p.Window+time.Second-1)/time.Second))
	// The five values are cut from one string. For the usual short policy
	// name, that string and the slices that hold the values share one
	// allocation.
	var blk *headerBlock
	var buf []byte
	if len(p.Name) <= maxInlineName {
		blk = new(headerBlock)
		buf = blk.buf[:0]
	} else {
		buf = make([]byte, 0, 96+2*len(p.Name))
	}
	// Each number and the name are formatted once; where a value repeats
	// one, its bytes are copied.
	buf = strconv.AppendInt(buf, d.Limit, 10)
	e0 := len(buf)
	buf = strconv.AppendInt(buf, d.Remaining, 10)
	e1 := len(buf)
	buf = strconv.AppendInt(buf, resetS, 10)
	e2 := len(buf)
	buf = appendPolicyItem(buf, p.Name)
	item := len(buf)
	buf = append(buf, ";q="...)
	buf = append(buf, buf[:e0]...)
	buf = append(buf, ";w="...)
	buf = strconv.AppendInt(buf, windowS, 10)
	e3 := len(buf)
	buf = append(buf, buf[e2:item]...)
	buf = append(buf, ";r="...)
	buf = append(buf, buf[e0:e1]...)
	buf = append(buf, ";t="...)
	buf = append(buf, buf[e1:e2]...)
	var s string
	var vals []string
	if blk != nil && cap(buf) == len(blk.buf) {
		// buf still lives in blk and is never written again.
		s = unsafe.String(&buf[0], len(buf))
		vals = blk.vals[:]
	} else {
		s = string(buf)
		vals = make([]string, 5)
	}
	vals[0], vals[1], vals[2], vals[3], vals[4] = s[:e0], s[e0:e1], s[e1:e2], s[e2:e3], s[e3:]
	h["X-Ratelimit-Limit"] = vals[0:1:1]
	h["X-Ratelimit-Remaining"] = vals[1:2:2]
	h["X-Ratelimit-Reset"] = vals[2:3:3]
	h["Ratelimit-Policy"] = vals[3:4:4]
	h["Ratelimit"] = vals[4:5:5]
}

// maxInlineName is the longest policy name whose header values fit in a
// headerBlock: five 20-digit numbers, two quoted names and the parameters.
const maxInlineName = (headerBlockSize - 5*20 - 16) / 2

const headerBlockSize = 256

type headerBlock struct {
	vals [5]string
	buf  [headerBlockSize]byte
}

// appendPolicyItem appends name as a Structured Field string. Policy names
// match [A-Za-z0-9_-]+, so no escaping is needed; anything else is escaped
// as the grammar requires.
func appendPolicyItem(buf []byte, name string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20 || c > 0x7e:
			buf = append(buf, '?')
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}
