package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/middleware"
)

// JWTConfig gives the keys that verify bearer tokens for the key part
// jwt:CLAIM of policies. Exactly one of JWKSURL and JWKSFile is needed
// once a policy keys by a claim.
type JWTConfig struct {
	// JWKSURL is an http or https URL of a JWK Set, fetched at start
	// (a failure is logged; tokens then fail verification until a fetch
	// succeeds), every Refresh, and at most every 5 minutes on a token
	// with an unknown kid.
	JWKSURL string `koanf:"jwks_url"`
	// JWKSFile is a JWK Set file, read at start and on every reload.
	JWKSFile string `koanf:"jwks_file"`
	// Refresh is how often JWKSURL is fetched again; zero means 1h.
	Refresh time.Duration `koanf:"refresh"`
	// Issuer, when set, must be the token's iss.
	Issuer string `koanf:"issuer"`
	// Audience, when set, must be in the token's aud.
	Audience string `koanf:"audience"`
	// Algorithms the tokens may be signed with; empty means every
	// asymmetric one (middleware.JWTAlgorithms). HMAC and none are never
	// accepted.
	Algorithms []string `koanf:"algorithms"`
	// Leeway is the clock skew allowed on exp and nbf; zero means none.
	Leeway time.Duration `koanf:"leeway"`
}

// configured reports whether c names a JWK Set.
func (c JWTConfig) configured() bool { return c.JWKSURL != "" || c.JWKSFile != "" }

// validate checks c; usesClaims is whether some policy keys by jwt:CLAIM.
func (c JWTConfig) validate(bad func(path, format string, args ...any)) {
	if c.JWKSURL != "" && c.JWKSFile != "" {
		bad("jwt.jwks_file", "give jwt.jwks_url or jwt.jwks_file, not both")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("jwt.jwks_url", "must be an http or https URL, got %q", c.JWKSURL)
		}
	}
	if c.JWKSFile != "" {
		if _, err := readJWKS(c.JWKSFile); err != nil {
			bad("jwt.jwks_file", "%v", err)
		}
	}
	if c.Refresh < 0 {
		bad("jwt.refresh", "must be >= 0")
	} else if c.Refresh > 0 && c.Refresh < time.Second {
		bad("jwt.refresh", "must be at least 1s, got %s", c.Refresh)
	}
	if c.Leeway < 0 {
		bad("jwt.leeway", "must be >= 0")
	}
	for i, a := range c.Algorithms {
		if !slices.Contains(middleware.JWTAlgorithms, a) {
			bad("jwt.algorithms["+strconv.Itoa(i)+"]", "must be one of %s, got %q", strings.Join(middleware.JWTAlgorithms, ", "), a)
		}
	}
}

// readJWKS reads and checks a JWK Set file.
func readJWKS(path string) (json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWK Set: %v", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%s: the JWK Set has no keys", path)
	}
	return b, nil
}

// parserOptions are the token checks c asks for.
func (c JWTConfig) parserOptions() []jwt.ParserOption {
	var opts []jwt.ParserOption
	if len(c.Algorithms) > 0 {
		opts = append(opts, jwt.WithValidMethods(c.Algorithms))
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	if c.Leeway > 0 {
		opts = append(opts, jwt.WithLeeway(c.Leeway))
	}
	return opts
}

// jwks is the gateway's JWK Set, kept across reloads while jwt's config
// does not change (a fetched set keeps refreshing in the background).
type jwks struct {
	cfg    JWTConfig
	keys   keyfunc.Keyfunc
	cancel context.CancelFunc // stops the refreshing of a fetched set
}

// jwtKeys returns the keys for cfg, reusing prev's when cfg.JWT is the
// same and stopping prev's when it is replaced (the caller swaps them in).
func (g *Gateway) jwtKeys(cfg *Config) (*jwks, error) {
	c := cfg.JWT
	if !c.configured() {
		return nil, nil
	}
	if prev := g.jwt.Load(); prev != nil && reflect.DeepEqual(prev.cfg, c) && c.JWKSFile == "" {
		return prev, nil
	}
	if c.JWKSFile != "" {
		raw, err := readJWKS(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwt.jwks_file: %w", err)
		}
		k, err := keyfunc.NewJWKSetJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("jwt.jwks_file: %w", err)
		}
		return &jwks{cfg: c, keys: k, cancel: func() {}}, nil
	}
	refresh := c.Refresh
	if refresh <= 0 {
		refresh = time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := g.log.Load
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
		Client:      &http.Client{Timeout: 10 * time.Second},
		HTTPTimeout: 10 * time.Second,
		// A token with an unknown kid may trigger a fetch (at most one per
		// 5 minutes); other such requests never wait for it.
		RateLimitWaitMax: time.Millisecond,
		RefreshInterval:  refresh,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log().Warn("fetching the JWK Set failed; the keys fetched before stay in use", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwt.jwks_url: %w", err)
	}
	return &jwks{cfg: c, keys: k, cancel: cancel}, nil
}

// keyfunc is the jwt.Keyfunc of j, bound to each token's request context
// by the caller; nil when j is nil.
func (j *jwks) keyfunc() jwt.Keyfunc {
	if j == nil {
		return nil
	}
	return j.keys.Keyfunc
}

// checkKeys is a stand-in jwt.Keyfunc for validating specs: non-nil when
// c names a JWK Set, so that jwt:CLAIM parts are accepted exactly then.
func (c JWTConfig) checkKeys() jwt.Keyfunc {
	if !c.configured() {
		return nil
	}
	return func(*jwt.Token) (any, error) { return nil, jwt.ErrTokenUnverifiable }
}
