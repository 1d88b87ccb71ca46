// Package middleware puts Sluice's limiter in front of any net/http handler.
//
// A Limiter holds the rules (a policy, where its key comes from, what to do
// when the key is missing) and makes one decision per request: every rule
// must admit it. It sets the rate-limit headers of the most restrictive rule
// on every limited response (X-RateLimit-Limit, X-RateLimit-Remaining,
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
	"strconv"
	"time"
	"unsafe"

	"github.com/sluice-gateway/sluice/limiter"
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
	Request *http.Request
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
// {"error":"rate limit exceeded","policy":...,"retry_after_seconds":N}.
func DefaultReject(w http.ResponseWriter, _ *http.Request, rej Rejection) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusTooManyRequests)
	buf := make([]byte, 0, 96)
	buf = append(buf, `{"error":"rate limit exceeded","policy":`...)
	buf = strconv.AppendQuote(buf, rej.Policy)
	buf = append(buf, `,"retry_after_seconds":`...)
	buf = strconv.AppendInt(buf, rej.RetryAfter, 10)
	buf = append(buf, "}\n"...)
	_, _ = w.Write(buf)
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithErrorHandler replaces the store-failure hook (default FailOpen).
func WithErrorHandler(h ErrorHandler) Option { return func(l *Limiter) { l.onError = h } }

// WithRejectHandler replaces the 429 response.
func WithRejectHandler(h RejectHandler) Option { return func(l *Limiter) { l.onReject = h } }

// WithSkip exempts the requests for which skip returns true (health
// checks, internal callers): they are neither counted nor limited.
func WithSkip(skip func(*http.Request) bool) Option { return func(l *Limiter) { l.skip = skip } }

// WithObserver sets the decision observer.
func WithObserver(o Observer) Option { return func(l *Limiter) { l.observe = o } }

// WithTimeout bounds each decision, store calls included; zero (the
// default) leaves the bound to the store (the Redis store has its own).
func WithTimeout(d time.Duration) Option { return func(l *Limiter) { l.timeout = d } }

// WithIPResolver sets how client IPs are found, for rules without Keys and
// for MissingKeyUseIP (default: the TCP peer, IPv6 by /64).
func WithIPResolver(r *IPResolver) Option { return func(l *Limiter) { l.ip = r } }

// Limiter applies rules to requests. It is safe for concurrent use.
type Limiter struct {
	store    limiter.Store
	rules    []Rule
	ip       *IPResolver
	onError  ErrorHandler
	onReject RejectHandler
	skip     func(*http.Request) bool
	observe  Observer
	timeout  time.Duration
	labels   []string // policy names, for events
}

// New returns a Limiter over store. Every rule's policy must be valid.
func New(store limiter.Store, rules []Rule, opts ...Option) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("middleware: nil store")
	}
	l := &Limiter{store: store, rules: rules, onError: FailOpen, onReject: DefaultReject, ip: &IPResolver{}}
	for _, o := range opts {
		o(l)
	}
	for i, r := range rules {
		if r.Policy == nil {
			return nil, fmt.Errorf("middleware: rule %d has no policy", i)
		}
		if err := r.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("middleware: policy %q: %w", r.Policy.Name, err)
		}
		l.labels = append(l.labels, r.Policy.Name)
	}
	return l, nil
}

// Rules returns the limiter's rules.
func (l *Limiter) Rules() []Rule { return l.rules }

const maxStackRules = 4

// Check decides r, writes the rate-limit headers to w, and, when the
// request must not go on, the response (429, 400 or the error hook's). It
// reports whether the handler should run. Both adapters call it.
func (l *Limiter) Check(w http.ResponseWriter, r *http.Request) bool {
	proceed, _ := l.CheckDecision(w, r)
	return proceed
}

// CheckDecision is Check that also returns a one-word summary for access
// logs: DecisionAllowed, DecisionRejected, DecisionShadowRejected (admitted,
// but a shadow policy would have rejected), DecisionError,
// DecisionMissingKey or DecisionSkipped.
func (l *Limiter) CheckDecision(w http.ResponseWriter, r *http.Request) (proceed bool, decision string) {
	if len(l.rules) == 0 || (l.skip != nil && l.skip(r)) {
		return true, DecisionSkipped
	}
	var start time.Time
	if l.observe != nil {
		start = time.Now()
	}
	var reqBuf [maxStackRules]limiter.Request
	var decBuf [maxStackRules]limiter.Decision
	reqs := reqBuf[:0]
	for _, rule := range l.rules {
		key, ok := l.key(rule, r)
		if !ok {
			WriteJSONError(w, http.StatusBadRequest, "missing rate-limit key for policy "+rule.Policy.Name)
			return false, DecisionMissingKey
		}
		reqs = append(reqs, limiter.Request{Policy: rule.Policy, Key: key, Cost: 1})
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
		return l.onError(w, r, err), DecisionError
	}
	decision = DecisionAllowed
	for i, d := range out.Decisions {
		if !d.Allowed && reqs[i].Policy.Shadow {
			decision = DecisionShadowRejected
		}
	}
	best := out.MostRestrictive(reqs)
	if best < 0 {
		return true, decision // shadow policies only
	}
	d := out.Decisions[best]
	writeHeaders(w.Header(), reqs[best].Policy, d)
	if out.Allowed {
		return true, decision
	}
	retry := ceilSeconds(d.RetryAfter)
	h := w.Header()
	h["Retry-After"] = []string{strconv.FormatInt(retry, 10)}
	h["Cache-Control"] = []string{"no-store"}
	l.onReject(w, r, Rejection{Policy: reqs[best].Policy.Name, RetryAfter: retry})
	return false, DecisionRejected
}

func (l *Limiter) key(rule Rule, r *http.Request) (string, bool) {
	for _, src := range rule.Keys {
		if k, ok := src(r); ok {
			return k, true
		}
	}
	if len(rule.Keys) > 0 && rule.OnMissingKey == MissingKeyReject {
		return "", false
	}
	k := l.ip.Key(l.ip.ClientIP(r))
	return k, k != ""
}

func (l *Limiter) report(r *http.Request, reqs []limiter.Request, out limiter.Outcome, err error, took time.Duration) {
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
	var keyBuf [maxStackRules]string
	var costBuf, countBuf, limitBuf [maxStackRules]int64
	keys, costs, counts, limits := keyBuf[:0], costBuf[:0], countBuf[:0], limitBuf[:0]
	for i := range labels {
		keys, costs = append(keys, reqs[i].Key), append(costs, reqs[i].Cost)
		var count, limit int64
		if i < len(out.Decisions) {
			count, limit = out.Decisions[i].Count, out.Decisions[i].Limit
		}
		counts, limits = append(counts, count), append(limits, limit)
	}
	l.observe(Event{Request: r, Policies: l.labels[:len(labels)], Decisions: labels, Keys: keys, Costs: costs,
		Counts: counts, Limits: limits, Duration: took, Err: err})
}

// Handler returns next behind the limiter.
func (l *Limiter) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Check(w, r) {
			next.ServeHTTP(w, r)
		}
	})
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
	buf = strconv.AppendInt(buf, d.Limit, 10)
	e0 := len(buf)
	buf = strconv.AppendInt(buf, d.Remaining, 10)
	e1 := len(buf)
	buf = strconv.AppendInt(buf, resetS, 10)
	e2 := len(buf)
	buf = appendPolicyItem(buf, p.Name)
	buf = append(buf, ";q="...)
	buf = strconv.AppendInt(buf, d.Limit, 10)
	buf = append(buf, ";w="...)
	buf = strconv.AppendInt(buf, windowS, 10)
	e3 := len(buf)
	buf = appendPolicyItem(buf, p.Name)
	buf = append(buf, ";r="...)
	buf = strconv.AppendInt(buf, d.Remaining, 10)
	buf = append(buf, ";t="...)
	buf = strconv.AppendInt(buf, resetS, 10)
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
