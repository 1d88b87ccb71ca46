package middleware

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// PerIP returns a Limiter that admits limit requests per window from each
// client IP (the TCP peer; IPv6 clients by /64; see WithIPResolver to
// believe proxies), on a memory store of its own unless WithStore says
// otherwise. Put it in front of a handler with Handler:
//
//	http.ListenAndServe(":8080", middleware.PerIP(100, time.Minute).Handler(mux))
//
// PerIP, PerHeader and PerKey panic when their arguments are invalid (a
// limit below 1, a window under 1ms, a nil store or key, a bad name), as
// regexp.MustCompile does: with constant arguments the mistake shows when
// the program starts. Limit takes the same arguments and returns the error
// instead, for limits read from configuration.
func PerIP(limit int, window time.Duration, opts ...Option) *Limiter {
	return must("PerIP", limit, window, nil, "per-ip", opts)
}

// PerHeader is PerIP keyed by the named request header (an API key, a
// tenant): requests without it are keyed by their client IP, and requests
// that send it more than once are answered 400. The policy is named "per-"
// and the header name in lower case.
func PerHeader(name string, limit int, window time.Duration, opts ...Option) *Limiter {
	if name == "" {
		panic("middleware: PerHeader: empty header name")
	}
	return must("PerHeader", limit, window, Header(name), headerPolicyName(name), opts)
}

// PerKey is PerIP keyed by key: requests for which key finds nothing are
// keyed by their client IP. The policy is named "per-key".
func PerKey(key KeySource, limit int, window time.Duration, opts ...Option) *Limiter {
	if key == nil {
		panic("middleware: PerKey: nil key")
	}
	return must("PerKey", limit, window, key, "per-key", opts)
}

// Limit is the error-returning form of PerIP, PerHeader and PerKey: one
// policy of limit requests per window, keyed by the client IP unless
// WithKey says otherwise, named "per-ip" (or "per-key" with WithKey) unless
// WithName says otherwise.
func Limit(limit int, window time.Duration, opts ...Option) (*Limiter, error) {
	return build(limit, window, nil, "", opts)
}

func must(fn string, limit int, window time.Duration, key KeySource, name string, opts []Option) *Limiter {
	l, err := build(limit, window, key, name, opts)
	if err != nil {
		panic(fmt.Sprintf("middleware: %s: %v", fn, strings.TrimPrefix(err.Error(), "middleware: ")))
	}
	return l
}

// build makes the one-policy Limiter; key and name are the constructor's
// defaults, which the options override.
func build(limit int, window time.Duration, key KeySource, name string, opts []Option) (*Limiter, error) {
	c := config{key: key, name: name}
	for _, o := range opts {
		o(&c)
	}
	if c.name == "" {
		c.name = "per-ip"
		if c.key != nil {
			c.name = "per-key"
		}
	}
	// The policy's own checks would say "must be > 0"; say what was given.
	switch {
	case limit < 1:
		return nil, fmt.Errorf("middleware: limit must be at least 1, got %d", limit)
	case window < time.Millisecond:
		return nil, fmt.Errorf("middleware: window must be at least 1ms, got %v", window)
	}
	switch c.nilOption {
	case "WithStore":
		return nil, errors.New("middleware: WithStore(nil): pass a store, or leave the option out for a memory store")
	case "WithKey":
		return nil, errors.New("middleware: WithKey(nil): pass a KeySource, or leave the option out to key by client IP")
	}
	p := &limiter.Policy{Name: c.name, Algorithm: c.algorithm, Limit: int64(limit), Window: window}
	rule := Rule{Policy: p}
	if c.key != nil {
		rule.Keys = []KeySource{c.key}
	}
	store, owned := c.store, (*memstore.Store)(nil)
	if store == nil {
		// Checked first, so that a bad policy does not start a sweeper.
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("middleware: policy %q: %w", p.Name, err)
		}
		owned = memstore.New(memstore.Options{})
		store = owned
	}
	l, err := newLimiter(store, []Rule{rule}, &c)
	if err != nil {
		if owned != nil {
			owned.Close()
		}
		return nil, err
	}
	if owned != nil {
		l.owned = owned
		// A Limiter dropped without Close stops its sweeper when collected.
		runtime.AddCleanup(l, func(s *memstore.Store) { s.Close() }, owned)
	}
	return l, nil
}

// headerPolicyName is "per-" and the header name in lower case, with any
// character a policy name cannot hold replaced by '-'.
func headerPolicyName(header string) string {
	b := []byte("per-" + strings.ToLower(header))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return string(b)
}
