package middleware

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// IPResolver finds a request's client IP: the TCP peer, unless the peer is a
// trusted proxy; then the right-most address of X-Forwarded-For that is not
// a trusted proxy (X-Real-IP when there is no X-Forwarded-For). Headers from
// an untrusted peer are ignored, so clients cannot choose their own key.
//
// IPv6 clients are keyed by a prefix (a /64 by default): one host usually
// owns a whole /64 and could otherwise rotate through it.
//
// The zero value trusts no proxy and keys IPv6 by /64. An IPResolver is safe
// for concurrent use.
type IPResolver struct {
	trusted    []netip.Prefix
	ipv6Prefix int // 0 means 64
}

// NewIPResolver returns an IPResolver that believes forwarding headers from
// peers inside the trusted CIDRs (a bare address is a /32 or /128) and keys
// IPv6 clients by ipv6Prefix bits (0 means 64; 128 keys each address).
func NewIPResolver(trusted []string, ipv6Prefix int) (*IPResolver, error) {
	r := &IPResolver{ipv6Prefix: ipv6Prefix}
	if ipv6Prefix < 0 || ipv6Prefix > 128 {
		return nil, fmt.Errorf("ipv6_prefix: must be between 0 and 128, got %d", ipv6Prefix)
	}
	for i, s := range trusted {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("trusted_proxies[%d]: %q is neither a CIDR nor an address", i, s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

func (r *IPResolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHost parses an address that may carry a port or brackets, trying
// the likely form first (a failed parse allocates its error).
func parseHost(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return netip.Addr{}, false
	case s[0] == '[':
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap(), true
		}
		if s[len(s)-1] == ']' {
			if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
				return a.Unmap(), true
			}
		}
		return netip.Addr{}, false
	case strings.Count(s, ":") == 1:
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap(), true
		}
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// ClientIP returns the client address of req, or the zero Addr when the
// peer address cannot be parsed.
func (r *IPResolver) ClientIP(req *http.Request) netip.Addr {
	peer, ok := parseHost(req.RemoteAddr)
	if !ok {
		return netip.Addr{}
	}
	if len(r.trusted) == 0 || !r.isTrusted(peer) {
		return peer
	}
	xff := req.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		if a, ok := parseHost(req.Header.Get("X-Real-IP")); ok {
			return a
		}
		return peer
	}
	// Right to left over every entry of every X-Forwarded-For line.
	nearest := peer
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			if strings.TrimSpace(entry) == "" {
				continue
			}
			a, ok := parseHost(entry)
			if !ok {
				// Only a client writes garbage; the trusted hop to its right
				// is the best we know.
				return nearest
			}
			if !r.isTrusted(a) {
				return a
			}
			nearest = a
		}
	}
	return nearest
}

// Key returns the rate-limit key for addr: the address itself for IPv4, the
// masked prefix in CIDR form for IPv6 (e.g. "2001:db8:1:2::/64").
func (r *IPResolver) Key(addr netip.Addr) string {
	if !addr.IsValid() {
		return ""
	}
	if addr.Is4() {
		return addr.String()
	}
	bits := r.ipv6Prefix
	if bits == 0 {
		bits = 64
	}
	if bits == 128 {
		return addr.String()
	}
	p, _ := addr.Prefix(bits)
	return p.String()
}

// KeySource extracts one candidate key from a request; ok is false when
// the source is absent.
//
// The keys of this package's sources carry their source, so that key
// spaces never meet: an IP key is the address (or IPv6 prefix) as it is,
// "203.0.113.7" or "2001:db8:1:2::/64"; every other key is the source, its
// name and the value, "header:x-api-key:VALUE" (header names in lower
// case), "query:NAME:VALUE", "cookie:NAME:VALUE". A client that sends
// "X-API-Key: 203.0.113.7" therefore never spends the quota of the client
// at 203.0.113.7, nor "?key=k1" that of "X-API-Key: k1". In names and
// values '%' and '|' are written %25 and %7C (and ':' in names %3A), so
// that the parts of a Composite key are unambiguous. A KeySource of your
// own should start its keys with a prefix of its own for the same reason.
//
// A source present more than once (a repeated header, query parameter or
// cookie) is ambiguous: the upstream may read another copy than the one
// counted, and a client could then spend a quota that is not its own, or
// none. Such a source returns ok true with an empty key, and the Limiter
// answers the request 400.
type KeySource func(r *http.Request) (key string, ok bool)

// IP is the KeySource of the client IP as resolver finds it.
func IP(resolver *IPResolver) KeySource {
	return func(r *http.Request) (string, bool) {
		k := resolver.Key(resolver.ClientIP(r))
		return k, k != ""
	}
}

// Header is the KeySource of a request header; a header sent more than
// once is ambiguous, and so is a request that sends its spelling with
// underscores for dashes (X_API_Key for X-API-Key), which CGI-style
// upstreams read as the same header.
func Header(name string) KeySource {
	name = http.CanonicalHeaderKey(name)
	prefix := "header:" + escapeKeyPart(strings.ToLower(name), true) + ":"
	alias := ""
	if strings.Contains(name, "-") {
		alias = http.CanonicalHeaderKey(strings.ReplaceAll(name, "-", "_"))
	}
	return func(r *http.Request) (string, bool) {
		v := r.Header[name]
		switch {
		case len(v) > 1 || (alias != "" && len(r.Header[alias]) > 0):
			return "", true
		case len(v) == 0 || v[0] == "":
			return "", false
		}
		return prefix + escapeKeyPart(v[0], false), true
	}
}

// Query is the KeySource of a query parameter; a parameter given more than
// once, or a query string that does not parse (a stray ';' or '%', which
// upstreams read in different ways), is ambiguous.
func Query(name string) KeySource {
	prefix := "query:" + escapeKeyPart(name, true) + ":"
	return func(r *http.Request) (string, bool) {
		if r.URL.RawQuery == "" {
			return "", false
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		v := q[name]
		switch {
		case err != nil || len(v) > 1:
			return "", true
		case len(v) == 0 || v[0] == "":
			return "", false
		}
		return prefix + escapeKeyPart(v[0], false), true
	}
}

// Cookie is the KeySource of a cookie's value; a cookie sent more than
// once is ambiguous.
func Cookie(name string) KeySource {
	prefix := "cookie:" + escapeKeyPart(name, true) + ":"
	return func(r *http.Request) (string, bool) {
		c := r.CookiesNamed(name)
		switch {
		case len(c) > 1:
			return "", true
		case len(c) == 0 || c[0].Value == "":
			return "", false
		}
		return prefix + escapeKeyPart(c[0].Value, false), true
	}
}

// SourcedKey returns the stored key of value from the source named
// source and name, in the form this package's sources use
// ("header:x-api-key:VALUE"): for key sources outside this package, such as
// the descriptors of Envoy's rate limit service ("descriptor:user:alice").
func SourcedKey(source, name, value string) string {
	return source + ":" + escapeKeyPart(name, true) + ":" + escapeKeyPart(value, false)
}

// escapeKeyPart writes '%' and '|' (and, in a name, ':') of s as %25, %7C
// and %3A; it returns s itself when there is nothing to escape.
func escapeKeyPart(s string, name bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c == '|' || (name && c == ':') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			b = append(b, "%25"...)
		case c == '|':
			b = append(b, "%7C"...)
		case name && c == ':':
			b = append(b, "%3A"...)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// ParseKeySource turns a config spec into a KeySource: "ip",
// "header:NAME", "query:NAME", "cookie:NAME", "method", "path", "host",
// ("jwt:CLAIM" with ParseKeyJWT),
// "route" (the request's ServeMux pattern), or a composite of several
// joined by "+", all required: "header:X-API-Key + route".
func ParseKeySource(spec string, resolver *IPResolver) (KeySource, error) {
	return ParseKey(spec, resolver, "")
}

// ParseKey is ParseKeySource for a program with routes of its own (the
// gateway): the part "route" is the constant route, or the request's
// ServeMux pattern when route is empty.
func ParseKey(spec string, resolver *IPResolver, route string) (KeySource, error) {
	return parseKey(spec, resolver, route, nil)
}

// ParseKeyJWT is ParseKey that also knows the part "jwt:CLAIM": a claim
// of the request's bearer token, verified with keys (JWTClaim with opts).
// With keys nil a jwt part is an error.
func ParseKeyJWT(spec string, resolver *IPResolver, route string, keys jwt.Keyfunc, opts ...jwt.ParserOption) (KeySource, error) {
	if keys == nil {
		return parseKey(spec, resolver, route, nil)
	}
	return parseKey(spec, resolver, route, func(claim string) KeySource { return JWTClaim(claim, keys, opts...) })
}

func parseKey(spec string, resolver *IPResolver, route string, jwtPart func(claim string) KeySource) (KeySource, error) {
	if !strings.Contains(spec, "+") {
		return parsePart(spec, resolver, route, jwtPart)
	}
	var parts []KeySource
	for p := range strings.SplitSeq(spec, "+") {
		src, err := parsePart(strings.TrimSpace(p), resolver, route, jwtPart)
		if err != nil {
			return nil, fmt.Errorf("%s: part %w", strconv.Quote(spec), err)
		}
		parts = append(parts, src)
	}
	return Composite(parts...), nil
}

func parsePart(spec string, resolver *IPResolver, route string, jwtPart func(claim string) KeySource) (KeySource, error) {
	kind, name, hasName := strings.Cut(spec, ":")
	switch {
	case spec == "ip":
		return IP(resolver), nil
	case spec == "method":
		return Method(), nil
	case spec == "path":
		return Path(), nil
	case spec == "host":
		return Host(), nil
	case spec == "route":
		return Route(route), nil
	case !hasName || name == "":
	case kind == "header":
		return Header(name), nil
	case kind == "query":
		return Query(name), nil
	case kind == "cookie":
		return Cookie(name), nil
	case kind == "jwt" && jwtPart == nil:
		return nil, fmt.Errorf("%s: a jwt part needs the keys that verify the token (the gateway's jwt.jwks_url or jwt.jwks_file)", strconv.Quote(spec))
	case kind == "jwt":
		return jwtPart(name), nil
	}
	return nil, fmt.Errorf("%s: want ip, header:NAME, query:NAME, cookie:NAME, jwt:CLAIM, method, path, host or route, or several joined by +", strconv.Quote(spec))
}

// Composite is the KeySource whose key is made of every part's, all
// required: absent when any part is absent, ambiguous when any part is.
// The key is the parts' keys joined by "|" ("header:x-api-key:k1|route:api";
// the parts escape '|' in their values, so the join is unambiguous).
func Composite(parts ...KeySource) KeySource {
	return func(r *http.Request) (string, bool) {
		var b strings.Builder
		for i, p := range parts {
			k, ok := p(r)
			if !ok || k == "" {
				return "", ok
			}
			if i > 0 {
				b.WriteByte('|')
			}
			b.WriteString(k)
		}
		return b.String(), len(parts) > 0
	}
}

// Method is the KeySource of the request method: "method:GET".
func Method() KeySource {
	return func(r *http.Request) (string, bool) {
		if r.Method == "" {
			return "method:GET", true
		}
		return "method:" + escapeKeyPart(r.Method, false), true
	}
}

// Path is the KeySource of the request path, as routed (cleaned by the
// gateway): "path:/v1/users". Put it in a Composite: on its own it keys
// every client of a path together.
func Path() KeySource {
	return func(r *http.Request) (string, bool) {
		// An escaped path holds no '|' (it is written %7C), so it needs no
		// escaping of its own.
		return "path:" + r.URL.EscapedPath(), true
	}
}

// Host is the KeySource of the request's host, in lower case and without
// a port: "host:api.example.com".
func Host() KeySource {
	return func(r *http.Request) (string, bool) {
		h := r.Host
		if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
			h = h[:i]
		}
		if h == "" {
			return "", false
		}
		return "host:" + escapeKeyPart(strings.ToLower(h), false), true
	}
}

// Route is the KeySource of a route: the constant name when it is not
// empty ("route:api"), else the ServeMux pattern that matched the request
// (r.Pattern; absent outside a ServeMux handler).
func Route(name string) KeySource {
	if name != "" {
		key := "route:" + escapeKeyPart(name, false)
		return func(*http.Request) (string, bool) { return key, true }
	}
	return func(r *http.Request) (string, bool) {
		if r.Pattern == "" {
			return "", false
		}
		return "route:" + escapeKeyPart(r.Pattern, false), true
	}
}

// TrustsPeer reports whether req's TCP peer is a trusted proxy.
func (r *IPResolver) TrustsPeer(req *http.Request) bool {
	if len(r.trusted) == 0 {
		return false
	}
	peer, ok := parseHost(req.RemoteAddr)
	return ok && r.isTrusted(peer)
}
