package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/limiter"
)

// TokenConfig is one scoped admin token (admin.tokens). admin.token stays
// a token with every scope.
type TokenConfig struct {
	Name      string   `koanf:"name"`       // shown in the logs of its writes; [A-Za-z0-9_-]+
	Token     string   `koanf:"token"`      // the bearer token, or
	TokenFile string   `koanf:"token_file"` // a file holding it (surrounding white space is ignored)
	Scopes    []string `koanf:"scopes"`     // read | counters | keys | admin
	Counters  []string `koanf:"counters"`   // counters scope: names it may write, with * for any run of characters; empty: all
}

// The scopes of an admin token.
const (
	ScopeRead     = "read"     // GET anything under /v1
	ScopeCounters = "counters" // write counters (PUT, increment, decrement, DELETE)
	ScopeKeys     = "keys"     // reset policy keys
	ScopeAdmin    = "admin"    // everything
)

var scopeNames = []string{ScopeRead, ScopeCounters, ScopeKeys, ScopeAdmin}

// secret returns the token itself, read from TokenFile when it is set.
func (tc TokenConfig) secret() (string, error) {
	if tc.TokenFile == "" {
		return tc.Token, nil
	}
	b, err := os.ReadFile(tc.TokenFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// validateTokens checks admin.tokens.
func (c *Config) validateTokens(bad func(path, format string, args ...any)) {
	names, secrets := map[string]bool{}, map[string]bool{}
	if c.Admin.Token != "" {
		secrets[c.Admin.Token] = true
	}
	for i, tc := range c.Admin.Tokens {
		path := "admin.tokens[" + strconv.Itoa(i) + "]"
		if !limiter.ValidName(tc.Name) {
			bad(path+".name", "must match [A-Za-z0-9_-]+, got %q", tc.Name)
		} else if names[tc.Name] {
			bad(path+".name", "duplicate token name %q", tc.Name)
		}
		names[tc.Name] = true
		switch {
		case (tc.Token == "") == (tc.TokenFile == ""):
			bad(path, "needs exactly one of token and token_file")
		default:
			s, err := tc.secret()
			switch {
			case err != nil:
				bad(path+".token_file", "%v", err)
			case s == "":
				bad(path, "the token is empty")
			case secrets[s]:
				bad(path, "the same token as another admin token")
			}
			secrets[s] = true
		}
		if len(tc.Scopes) == 0 {
			bad(path+".scopes", "must name at least one of read, counters, keys, admin")
		}
		for j, s := range tc.Scopes {
			if !slices.Contains(scopeNames, s) {
				bad(path+".scopes["+strconv.Itoa(j)+"]", "must be read, counters, keys or admin, got %q", s)
			}
		}
		if len(tc.Counters) > 0 && !slices.Contains(tc.Scopes, ScopeCounters) {
			bad(path+".counters", "applies to the counters scope, which the token lacks")
		}
		for j, g := range tc.Counters {
			if g == "" || !limiter.ValidCounterName(strings.ReplaceAll(g, "*", "x")) {
				bad(path+".counters["+strconv.Itoa(j)+"]", "must be a counter name, with * for any run of characters; got %q", g)
			}
		}
	}
}

// principal is one admin token, held as its SHA-256.
type principal struct {
	name     string
	hash     [sha256.Size]byte
	scopes   []string
	counters []string // globs; empty: every counter
}

func (p *principal) has(scope string) bool {
	return slices.Contains(p.scopes, ScopeAdmin) || slices.Contains(p.scopes, scope)
}

// mayWrite reports whether the token may write the counter name.
func (p *principal) mayWrite(name string) bool {
	if slices.Contains(p.scopes, ScopeAdmin) || len(p.counters) == 0 {
		return true
	}
	for _, g := range p.counters {
		if glob(g, name) {
			return true
		}
	}
	return false
}

// glob reports whether s matches pattern, where * matches any run of
// characters (including none) and every other character itself.
func glob(pattern, s string) bool {
	first, rest, star := strings.Cut(pattern, "*")
	if !star {
		return pattern == s
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for {
		next, after, more := strings.Cut(rest, "*")
		if !more {
			return strings.HasSuffix(s, rest) && len(s) >= len(rest)
		}
		i := strings.Index(s, next)
		if i < 0 {
			return false
		}
		s, rest = s[i+len(next):], after
	}
}

// tokenSet is every admin token in force.
type tokenSet []principal

// setTokens builds the tokens in force from cfg and the admin token (the
// configured or generated one, named "admin", with every scope). The scoped
// tokens' values are dropped from cfg once hashed.
func (g *Gateway) setTokens(cfg *Config) {
	var ts tokenSet
	if t := g.token.Load(); t != nil && *t != "" {
		ts = append(ts, principal{name: "admin", hash: sha256.Sum256([]byte(*t)), scopes: []string{ScopeAdmin}})
	}
	for i, tc := range cfg.Admin.Tokens {
		s, err := tc.secret()
		if err != nil || s == "" {
			g.log.Load().Error("admin token unusable; it is refused", "name", tc.Name, "err", err)
			continue
		}
		ts = append(ts, principal{name: tc.Name, hash: sha256.Sum256([]byte(s)), scopes: tc.Scopes, counters: tc.Counters})
		cfg.Admin.Tokens[i].Token = "" // only the hash is kept
	}
	g.tokens.Store(&ts)
}

// find returns the token whose hash matches presented, comparing with
// every token in constant time.
func (ts tokenSet) find(presented string) *principal {
	h := sha256.Sum256([]byte(presented))
	var found *principal
	for i := range ts {
		if subtle.ConstantTimeCompare(h[:], ts[i].hash[:]) == 1 {
			found = &ts[i]
		}
	}
	return found
}

type principalKey struct{}

// requiredScope is the scope a /v1 route needs: GET is read; writes under
// /v1/counters/ are counters; resetting a key and setting or deleting a
// run-time override are keys; anything else, and
// any route added later without a rule here, is admin.
func requiredScope(pattern string) string {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case method == http.MethodGet:
		return ScopeRead
	case strings.HasPrefix(path, "/v1/counters/"):
		return ScopeCounters
	case method == http.MethodDelete && path == "/v1/policies/{policy}/keys/{key}",
		path == "/v1/policies/{policy}/overrides/{key}":
		return ScopeKeys
	}
	return ScopeAdmin
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// authorize answers 403 when the request's token lacks the scope of the
// route (or, for counter writes, the counter), and logs every write with
// the token's name.
func (g *Gateway) authorize(pattern string, next http.HandlerFunc) http.HandlerFunc {
	scope := requiredScope(pattern)
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(principalKey{}).(*principal)
		if p == nil || !p.has(scope) {
			g.forbid(w, r, p, scope, "token lacks the "+scope+" scope")
			return
		}
		if scope == ScopeCounters {
			if name := r.PathValue("name"); !p.mayWrite(name) {
				g.forbid(w, r, p, scope, "token may not write counter "+strconv.Quote(name))
				return
			}
		}
		if r.Method == http.MethodGet {
			next(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next(rec, r)
		g.log.Load().Info("admin write", "token", p.name, "method", r.Method, "path", r.URL.EscapedPath(), "status", rec.status)
	}
}

func (g *Gateway) forbid(w http.ResponseWriter, r *http.Request, p *principal, scope, msg string) {
	name := ""
	if p != nil {
		name = p.name
	}
	g.log.Load().Warn("admin: forbidden", "token", name, "method", r.Method, "path", r.URL.EscapedPath(), "scope", scope)
	writeJSON(w, http.StatusForbidden, map[string]string{"error": msg, "scope": scope})
}

// withPrincipal returns r carrying the authenticated token.
func withPrincipal(r *http.Request, p *principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}
