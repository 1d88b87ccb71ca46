// Package rls serves Envoy's rate limit service
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, the API of
// Envoy's ratelimit filter, also used by Istio, Contour, Emissary and Gloo)
// over Sluice's limiter: the same policies, store, counts and observers as
// the proxy listener.
//
// A Table maps each descriptor of a call to a policy and a key, in the
// spirit of envoyproxy/ratelimit's domain and descriptor tree: a domain
// holds descriptors; a descriptor matches one entry by key and, when it
// names one, by value; nested descriptors match the entries after it; the
// policy of the descriptor where the entries end applies. A descriptor that
// names no value matches any value, and each value counts for itself
// (Lookup says under which key). Where
// envoyproxy/ratelimit writes a limit inline (rate_limit: {unit,
// requests_per_unit}), a Table names a Sluice policy, which brings its
// algorithm, window, overrides and shadow mode, and shares its counts with
// every route and descriptor that names it.
//
// This package imports gRPC; limiter and middleware do not.
package rls

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// Descriptor matches one entry of a rate limit descriptor.
type Descriptor struct {
	Key   string
	Value string // empty: any value; each value is a key of its own
	// Policy limits descriptors whose entries end here; nil: they are not
	// limited.
	Policy      *limiter.Policy
	Descriptors []Descriptor // match the entries after this one
}

// Domain is the descriptor tree of one rate limit domain.
type Domain struct {
	Name        string
	Descriptors []Descriptor
}

// Entry is one (key, value) pair of a descriptor.
type Entry struct{ Key, Value string }

// Table maps descriptors to policies and keys. It is immutable and safe for
// concurrent use; the zero Table maps nothing.
type Table struct {
	domains map[string]*node
	ipKey   func(netip.Addr) string
}

// TableOption configures a Table.
type TableOption func(*Table)

// WithIPKey sets how a remote_address value is keyed, so that it counts
// under the same key as on the proxy listener (the gateway passes its
// IPResolver's Key: IPv6 by ipv6_prefix). The default keys IPv4 as it is
// and IPv6 by its /64.
func WithIPKey(f func(netip.Addr) string) TableOption { return func(t *Table) { t.ipKey = f } }

type node struct {
	policy *limiter.Policy
	exact  map[Entry]*node  // children that name a value
	any    map[string]*node // children that name only a key
}

func newNode() *node { return &node{exact: map[Entry]*node{}, any: map[string]*node{}} }

// NewTable compiles domains. Domain names must be unique and non-empty, as
// must each (key, value) among siblings; every policy must be valid.
func NewTable(domains []Domain, opts ...TableOption) (*Table, error) {
	t := &Table{domains: map[string]*node{}, ipKey: (&middleware.IPResolver{}).Key}
	for _, o := range opts {
		o(t)
	}
	var errs []error
	for _, d := range domains {
		if d.Name == "" {
			errs = append(errs, errors.New("a domain has no name"))
			continue
		}
		if t.domains[d.Name] != nil {
			errs = append(errs, fmt.Errorf("domain %q: duplicate", d.Name))
			continue
		}
		root := newNode()
		t.domains[d.Name] = root
		errs = append(errs, add(root, d.Descriptors, "domain "+d.Name)...)
	}
	return t, errors.Join(errs...)
}

func add(parent *node, ds []Descriptor, path string) []error {
	var errs []error
	for _, d := range ds {
		p := path + " > " + d.Key
		if d.Value != "" {
			p += "=" + d.Value
		}
		if d.Key == "" {
			errs = append(errs, fmt.Errorf("%s: a descriptor has no key", path))
			continue
		}
		if d.Policy != nil {
			if err := d.Policy.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %q: %w", p, d.Policy.Name, err))
				continue
			}
		}
		n := newNode()
		n.policy = d.Policy
		if d.Value == "" {
			if parent.any[d.Key] != nil {
				errs = append(errs, fmt.Errorf("%s: duplicate", p))
				continue
			}
			parent.any[d.Key] = n
		} else {
			e := Entry{d.Key, d.Value}
			if parent.exact[e] != nil {
				errs = append(errs, fmt.Errorf("%s: duplicate", p))
				continue
			}
			parent.exact[e] = n
		}
		errs = append(errs, add(n, d.Descriptors, p)...)
	}
	return errs
}

// Lookup returns the policy and key of a descriptor of domain, or ok false
// when the table does not limit it. An entry matches a descriptor naming
// its key and value first, else one naming its key alone.
//
// The key is made of the entries that key-only descriptors matched (all the
// entries when each matched a value), each in its own key space as
// middleware's key sources are: a remote_address whose value is an IP
// address is the IP key the proxy listener uses ("203.0.113.7", an IPv6
// prefix), so one client counts once whichever way it came; any other entry
// is "descriptor:KEY:VALUE" (middleware.SourcedKey). Several parts are
// joined with "|", which SourcedKey escapes inside names and values.
func (t *Table) Lookup(domain string, entries []Entry) (p *limiter.Policy, key string, ok bool) {
	if t == nil || len(entries) == 0 {
		return nil, "", false
	}
	n := t.domains[domain]
	if n == nil {
		return nil, "", false
	}
	var open [4]int
	opens := open[:0] // indexes of the entries that key-only descriptors matched
	for i, e := range entries {
		next := n.exact[e]
		if next == nil {
			if next = n.any[e.Key]; next == nil {
				return nil, "", false
			}
			opens = append(opens, i)
		}
		n = next
	}
	if n.policy == nil {
		return nil, "", false
	}
	if len(opens) == 1 {
		return n.policy, t.part(entries[opens[0]]), true
	}
	var b strings.Builder
	add := func(e Entry) {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString(t.part(e))
	}
	if len(opens) == 0 {
		for _, e := range entries {
			add(e)
		}
	} else {
		for _, i := range opens {
			add(entries[i])
		}
	}
	return n.policy, b.String(), true
}

// part is the key of one entry.
func (t *Table) part(e Entry) string {
	if e.Key == "remote_address" {
		if a, err := netip.ParseAddr(e.Value); err == nil {
			if k := t.ipKey(a.Unmap()); k != "" {
				return k
			}
		}
	}
	return middleware.SourcedKey("descriptor", e.Key, e.Value)
}
