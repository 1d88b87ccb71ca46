package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// Config is the gateway's configuration: config.yaml, then SLUICE_
// environment overrides. Each field's comment says what its zero value
// means; Load fills in the defaults.
type Config struct {
	Listen          string                  `koanf:"listen"`           // proxy listener; default ":8080"
	TrustedProxies  []string                `koanf:"trusted_proxies"`  // CIDRs whose forwarding headers are believed
	IPv6Prefix      int                     `koanf:"ipv6_prefix"`      // IPv6 clients are keyed by this prefix; default 64
	ShutdownTimeout time.Duration           `koanf:"shutdown_timeout"` // bound on draining in-flight requests; default 10s
	ShutdownDelay   time.Duration           `koanf:"shutdown_delay"`   // after SIGTERM, keep serving this long with /readyz 503 before closing the listeners; 0: none
	Admin           AdminConfig             `koanf:"admin"`
	Store           StoreConfig             `koanf:"store"`
	Log             LogConfig               `koanf:"log"`
	Policies        map[string]PolicyConfig `koanf:"policies"`
	Routes          []RouteConfig           `koanf:"routes"`
	Alerts          []AlertConfig           `koanf:"alerts"`
	Decision        DecisionConfig          `koanf:"decision"` // HTTP decision endpoint (nginx, Traefik, Caddy)
	RLS             RLSConfig               `koanf:"rls"`      // Envoy's rate limit service over gRPC
	Server          ServerConfig            `koanf:"server"`   // limits on the proxy listener's clients
	JWT             JWTConfig               `koanf:"jwt"`      // keys that verify bearer tokens (key part jwt:CLAIM)

	// UpstreamTransport is the client of proxied routes that name none:
	// fast (default; the synchronous one of gateway/internal/upstream) or
	// standard (net/http's Transport).
	UpstreamTransport string `koanf:"upstream_transport"`
}

// AlertConfig posts a JSON event to a webhook when a policy's key or a
// counter crosses a threshold.
type AlertConfig struct {
	Name     string        `koanf:"name"`
	Policy   string        `koanf:"policy"`   // watch every key of this policy, or
	Counter  string        `koanf:"counter"`  // watch this counter
	Share    float64       `koanf:"share"`    // threshold as a share of the limit (policy) or of max (counter), or
	Value    int64         `koanf:"value"`    // an absolute threshold
	Webhook  string        `koanf:"webhook"`  // http or https URL
	Cooldown time.Duration `koanf:"cooldown"` // per key (policy) or per counter; default 1m
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	Listen string `koanf:"listen"` // default "127.0.0.1:9090"
	// Token is the bearer token of the /v1 API. Empty on a loopback
	// listener: a random token is generated and written to a file that only
	// its owner can read (the path is logged). Required on any other
	// address.
	Token string `koanf:"token"`
	// AllowedHosts are the host names (besides IP addresses and localhost)
	// that requests to the admin listener may name in their Host header,
	// e.g. a Service name that Prometheus scrapes; others get 421, so that a
	// DNS-rebinding web page cannot read the admin listener.
	AllowedHosts []string `koanf:"allowed_hosts"`
	// Tokens are scoped tokens, each with a name for the logs (tokens.go).
	Tokens []TokenConfig `koanf:"tokens"`
}

// StoreConfig chooses and configures the limiter store.
type StoreConfig struct {
	Backend string       `koanf:"backend"`  // memory (default) | redis
	OnError string       `koanf:"on_error"` // allow (default) | deny
	Memory  MemoryConfig `koanf:"memory"`
	Redis   RedisConfig  `koanf:"redis"`
	// TopK is the K of the busiest-key summaries: every key with more than
	// 1/K of a policy's requests in the window is listed (see the README).
	// Zero: 500.
	TopK int `koanf:"top_k"`
}

// MemoryConfig configures the in-process store.
type MemoryConfig struct {
	MaxKeys int `koanf:"max_keys"` // zero: 1,048,576
	// Path is a bbolt file that keeps named counters and history across
	// restarts, every acknowledged counter change fsynced; relative to the
	// working directory. Empty: they live in memory only.
	Path string `koanf:"path"`
}

// RedisConfig configures the Redis store.
type RedisConfig struct {
	Addrs      []string      `koanf:"addrs"`       // one: standalone; several (or cluster): cluster; with master_name: sentinels
	Cluster    bool          `koanf:"cluster"`     // cluster mode with a single seed address
	MasterName string        `koanf:"master_name"` // sentinel master
	Username   string        `koanf:"username"`
	Password   string        `koanf:"password"`
	DB         int           `koanf:"db"`
	TLS        bool          `koanf:"tls"`
	TLSCAFile  string        `koanf:"tls_ca_file"` // PEM CAs to trust; empty: the system's
	Timeout    time.Duration `koanf:"timeout"`     // per call; default 100ms
	Prefix     string        `koanf:"prefix"`      // default "sluice:"
	// BatchInterval > 0: sliding_window decisions are made locally and sent
	// to Redis every interval (faster, may over-admit; see the README).
	BatchInterval time.Duration `koanf:"batch_interval"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `koanf:"level"`  // debug | info (default) | warn | error
	Format string `koanf:"format"` // text (default) | json
	Access *bool  `koanf:"access"` // one line per request; default true
	// AccessKeys adds the key each policy counted to the access log. Keys
	// may be API keys or other secrets: off by default.
	AccessKeys bool `koanf:"access_keys"`
}

// PolicyConfig is one policy; its name is its key under policies.
type PolicyConfig struct {
	Key          []string         `koanf:"key"`            // sources tried in order; default [ip]
	OnMissingKey string           `koanf:"on_missing_key"` // ip (default) | reject
	Algorithm    string           `koanf:"algorithm"`      // default sliding_window
	Limit        int64            `koanf:"limit"`
	Window       time.Duration    `koanf:"window"`
	Buckets      int              `koanf:"buckets"` // sliding_window; default 10
	Burst        int64            `koanf:"burst"`   // gcra; default the limit
	Shadow       bool             `koanf:"shadow"`
	Overrides    []OverrideConfig `koanf:"overrides"`
	// CountStatus counts only the responses whose status is listed, as a
	// code (401) or a class (5xx): a request is decided as usual, and its
	// charge is refunded when the response's status does not match. Empty:
	// every admitted request counts.
	CountStatus []string `koanf:"count_status"`
	// Calendar makes the policy a calendar quota: day, week (from Monday)
	// or month, in Timezone, counted in one fixed window per period that
	// resets when the period ends. Empty: windows of Window.
	Calendar string `koanf:"calendar"`
	// Timezone is Calendar's IANA time zone (Europe/Berlin); empty: UTC.
	Timezone string `koanf:"timezone"`
}

// OverrideConfig gives one key its own limit.
type OverrideConfig struct {
	Key   string `koanf:"key"`
	Limit int64  `koanf:"limit"`
}

// RouteConfig is one route.
type RouteConfig struct {
	Name     string          `koanf:"name"`
	Match    MatchConfig     `koanf:"match"`
	Upstream *UpstreamConfig `koanf:"upstream"`
	Respond  *RespondConfig  `koanf:"respond"`
	Policies []string        `koanf:"policies"`
	// Cost is what one request of the route costs in each of its policies;
	// zero means 1.
	Cost int64 `koanf:"cost"`
	// CostHeader, when set, reads the cost from a request header; a request
	// without it costs Cost.
	CostHeader *CostHeaderConfig `koanf:"cost_header"`
}

// CostHeaderConfig reads a request's cost from a header, within bounds; a
// value outside them, or not a whole number, is answered 400.
type CostHeaderConfig struct {
	Name string `koanf:"name"`
	Min  int64  `koanf:"min"` // zero means 1
	Max  int64  `koanf:"max"` // required
}

// MatchConfig selects requests; the longest matching prefix wins.
type MatchConfig struct {
	PathPrefix string   `koanf:"path_prefix"` // whole segments: /api matches /api and /api/x, not /apix
	Host       string   `koanf:"host"`        // empty: any host
	Methods    []string `koanf:"methods"`     // empty: any method
}

// UpstreamConfig is where a route proxies to.
type UpstreamConfig struct {
	URL         string        `koanf:"url"`
	StripPrefix bool          `koanf:"strip_prefix"`
	Timeout     time.Duration `koanf:"timeout"` // until response headers; default 30s
	// Transport is fast or standard; empty means upstream_transport.
	Transport string `koanf:"transport"`
}

// RespondConfig is a static answer.
type RespondConfig struct {
	Status      int    `koanf:"status"` // default 200
	Body        string `koanf:"body"`
	ContentType string `koanf:"content_type"` // default text/plain; charset=utf-8
}

// EnvPrefix starts every environment override.
const EnvPrefix = "SLUICE_"

// Load reads the config file at path, applies SLUICE_ environment overrides
// from environ (os.Environ when nil), fills in defaults and validates. It
// returns every problem found in one pass as an Errors of *ConfigError, each
// naming its field path and the line of the file (or the environment
// variable) that set it. Environment variables that name no config field
// are logged as warnings and ignored.
func Load(path string, environ []string, log *slog.Logger) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	src := &source{file: path, lines: yamlLines(data), env: map[string]string{}}
	k := koanf.New(".")
	if err := k.Load(bytesProvider(data), yaml.Parser()); err != nil {
		return nil, Errors{yamlError(path, data, err)}
	}
	var errs Errors
	checkKnown(k.Raw(), reflect.TypeFor[Config](), "", &errs)
	if environ == nil {
		environ = os.Environ()
	}
	envOpt := env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if strings.HasPrefix(name, EnvPrefix+"TEST_") {
				return "", nil // the tests' own variables
			}
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, EnvPrefix), "__", "."))
			t, ok := fieldType(reflect.TypeFor[Config](), strings.Split(key, "."))
			if !ok {
				if log != nil {
					log.Warn("ignoring an environment variable that names no config field", "name", name)
				}
				return "", nil
			}
			src.env[key] = name
			if t.Kind() == reflect.Slice {
				var parts []string
				for p := range strings.SplitSeq(value, ",") {
					if p = strings.TrimSpace(p); p != "" {
						parts = append(parts, p)
					}
				}
				return key, parts
			}
			return key, value
		},
	}
	if err := k.Load(env.Provider(".", envOpt), nil); err != nil {
		return nil, fmt.Errorf("reading the environment: %w", err)
	}
	cfg, decodeErrs := decode(k.Raw())
	errs = append(errs, decodeErrs...)
	// Check the rules too, even after type errors, so that one pass reports
	// everything; a field that failed to decode is reported once.
	failed := map[string]bool{}
	for _, e := range errs {
		failed[asConfigError(e).Path] = true
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
	rules:
		for _, e := range unjoin(err) {
			p := asConfigError(e).Path
			for f := range failed {
				if within(p, f) || within(f, p) {
					continue rules
				}
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		out := make(Errors, len(errs))
		for i, e := range errs {
			ce := asConfigError(e)
			src.locate(ce)
			out[i] = ce
		}
		return nil, out
	}
	return cfg, nil
}

// decode decodes raw into a Config. A value of the wrong type is an error;
// it is then dropped from raw and the rest decoded again, so that its
// siblings (the rest of its policy or route) still decode and are checked.
func decode(raw map[string]any) (*Config, Errors) {
	var errs Errors
	for range 5 {
		var cfg Config
		dc := &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				durationHook,
				mapstructure.StringToSliceHookFunc(","),
			),
			WeaklyTypedInput: true,
			Result:           &cfg,
			TagName:          "koanf",
		}
		d, err := mapstructure.NewDecoder(dc)
		if err == nil {
			err = d.Decode(raw)
		}
		if err == nil {
			return &cfg, errs
		}
		dropped := 0
		for _, e := range decodeErrors(err) {
			ce := asConfigError(e)
			if v, ok := rawAt(raw, ce.Path); ok {
				if !strings.Contains(ce.Msg, fmt.Sprint(v)) {
					ce.Msg = fmt.Sprintf("%s (got %v)", ce.Msg, v)
				}
				if deleteRaw(raw, ce.Path) {
					dropped++
				}
			}
			errs = append(errs, ce)
		}
		if dropped == 0 {
			return &cfg, errs
		}
	}
	return &Config{}, errs
}

// rawPath splits "a.b[2].c" into "a", "b", 2, "c".
func rawPath(path string) []any {
	var out []any
	for seg := range strings.SplitSeq(path, ".") {
		name, idx, _ := strings.Cut(seg, "[")
		if name != "" {
			out = append(out, name)
		}
		for idx != "" {
			n, rest, _ := strings.Cut(idx, "]")
			i, err := strconv.Atoi(n)
			if err != nil {
				return nil
			}
			out = append(out, i)
			idx = strings.TrimPrefix(rest, "[")
		}
	}
	return out
}

// rawAt returns the value at path in a raw config tree.
func rawAt(raw map[string]any, path string) (any, bool) {
	var cur any = raw
	for _, p := range rawPath(path) {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			s, ok := cur.([]any)
			if !ok || k < 0 || k >= len(s) {
				return nil, false
			}
			cur = s[k]
		}
	}
	return cur, len(rawPath(path)) > 0
}

// deleteRaw removes the value at path (a list element becomes nil, so the
// indices of its siblings stay as they are).
func deleteRaw(raw map[string]any, path string) bool {
	parts := rawPath(path)
	if len(parts) == 0 {
		return false
	}
	parent, ok := any(raw), true
	if len(parts) > 1 {
		parentPath := path[:strings.LastIndexAny(path, ".[")]
		if parent, ok = rawAt(raw, parentPath); !ok {
			return false
		}
	}
	switch k := parts[len(parts)-1].(type) {
	case string:
		m, ok := parent.(map[string]any)
		if !ok {
			return false
		}
		delete(m, k)
		return true
	case int:
		s, ok := parent.([]any)
		if !ok || k >= len(s) || s[k] == nil {
			return false
		}
		s[k] = nil
		return true
	}
	return false
}

// within reports whether path is field or lies inside it.
func within(path, field string) bool {
	return path == field || strings.HasPrefix(path, field+".") || strings.HasPrefix(path, field+"[")
}

var (
	decodeErrRE = regexp.MustCompile(`^'([^']+)' (.*)$`)
	mapIndexRE  = regexp.MustCompile(`\[[^\]]*\]`)
)

// decodeErrors turns mapstructure's errors into one error per field.
func decodeErrors(err error) []error {
	var out []error
	for line := range strings.SplitSeq(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" || strings.HasSuffix(line, "error(s) decoding:") || strings.HasPrefix(line, "decoding failed") {
			continue
		}
		if m := decodeErrRE.FindStringSubmatch(line); m != nil {
			path := mapIndexRE.ReplaceAllStringFunc(m[1], func(s string) string {
				inner := s[1 : len(s)-1]
				if _, err := strconv.Atoi(inner); err == nil {
					return s
				}
				return "." + inner
			})
			line = path + ": " + m[2]
		}
		out = append(out, errors.New(line))
	}
	if len(out) == 0 {
		out = append(out, err)
	}
	return out
}

// tagged returns the struct field with koanf tag name.
func tagged(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("koanf") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldType follows a key path through the config types. Map keys match
// anything; lists of structures cannot be addressed by a path.
func fieldType(t reflect.Type, parts []string) (reflect.Type, bool) {
	t = deref(t)
	if len(parts) == 0 {
		return t, true
	}
	switch t.Kind() {
	case reflect.Struct:
		f, ok := tagged(t, parts[0])
		if !ok {
			return nil, false
		}
		return fieldType(f.Type, parts[1:])
	case reflect.Map:
		if parts[0] == "" {
			return nil, false
		}
		return fieldType(t.Elem(), parts[1:])
	}
	return nil, false
}

// checkKnown reports every key of raw that names no field of t.
func checkKnown(raw any, t reflect.Type, path string, errs *Errors) {
	t = deref(t)
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return // a type error, which decoding reports
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := tagged(t, k)
			if !ok {
				*errs = append(*errs, fieldErr(join(k), "unknown field"))
				continue
			}
			checkKnown(m[k], f.Type, join(k), errs)
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return
		}
		for k, v := range m {
			checkKnown(v, t.Elem(), join(k), errs)
		}
	case reflect.Slice:
		s, ok := raw.([]any)
		if !ok {
			return
		}
		for i, v := range s {
			checkKnown(v, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	}
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.UpstreamTransport == "" {
		c.UpstreamTransport = TransportFast
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = 64
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9090"
	}
	c.Server.applyDefaults()
	if c.Store.Backend == "" {
		c.Store.Backend = "memory"
	}
	if c.Store.OnError == "" {
		c.Store.OnError = "allow"
	}
	if len(c.Store.Redis.Addrs) == 0 {
		c.Store.Redis.Addrs = []string{"127.0.0.1:6379"}
	}
	if c.Store.Redis.Timeout == 0 {
		c.Store.Redis.Timeout = 100 * time.Millisecond
	}
	if c.Store.Redis.Prefix == "" {
		c.Store.Redis.Prefix = "sluice:"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Access == nil {
		yes := true
		c.Log.Access = &yes
	}
	for name, p := range c.Policies {
		if len(p.Key) == 0 {
			p.Key = []string{"ip"}
		}
		if p.OnMissingKey == "" {
			p.OnMissingKey = "ip"
		}
		if p.Algorithm == "" && p.Calendar != "" {
			p.Algorithm = string(limiter.FixedWindow) // a calendar quota's only one
		}
		if p.Algorithm == "" {
			p.Algorithm = string(limiter.SlidingWindow)
		}
		c.Policies[name] = p
	}
	for i := range c.Alerts {
		if c.Alerts[i].Cooldown == 0 {
			c.Alerts[i].Cooldown = time.Minute
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Upstream != nil && r.Upstream.Timeout == 0 {
			r.Upstream.Timeout = 30 * time.Second
		}
		if r.Upstream != nil && r.Upstream.Transport == "" {
			r.Upstream.Transport = c.UpstreamTransport
		}
		if r.Respond != nil {
			if r.Respond.Status == 0 {
				r.Respond.Status = 200
			}
			if r.Respond.ContentType == "" {
				r.Respond.ContentType = "text/plain; charset=utf-8"
			}
		}
	}
}

// Validate checks a config with its defaults filled in and returns every
// problem as an Errors, each naming its field path.
func (c *Config) Validate() error {
	var errs Errors
	bad := func(path, format string, args ...any) { errs = append(errs, fieldErr(path, format, args...)) }
	checkAddr := func(path, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(path, "must be host:port, got %q", addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(path, "bad port %q", port)
		}
	}
	checkAddr("listen", c.Listen)
	if t := c.UpstreamTransport; t != TransportFast && t != TransportStandard {
		bad("upstream_transport", "must be fast or standard, got %q", t)
	}
	checkAddr("admin.listen", c.Admin.Listen)
	if c.Admin.Token == "" && len(c.Admin.Tokens) == 0 && !loopbackAddr(c.Admin.Listen) {
		bad("admin.token", "required when admin.listen (%q) is not a loopback address: set admin.token (or SLUICE_ADMIN__TOKEN) or admin.tokens, or listen on 127.0.0.1", c.Admin.Listen)
	}
	for i, h := range c.Admin.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ :*") {
			bad("admin.allowed_hosts["+strconv.Itoa(i)+"]", "must be a host name without port, got %q", h)
		}
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be between 1 and 128, got %d", c.IPv6Prefix)
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout", "must be >= 0")
	}
	if c.ShutdownDelay < 0 {
		bad("shutdown_delay", "must be >= 0")
	}
	c.Server.validate(bad)
	c.JWT.validate(bad)
	for i, tp := range c.TrustedProxies { // each bad entry, not only the first
		if _, err := middleware.NewIPResolver([]string{tp}, 64); err != nil {
			bad("trusted_proxies["+strconv.Itoa(i)+"]", "%q is neither a CIDR nor an address", tp)
		}
	}
	switch c.Store.Backend {
	case "memory", "redis":
	default:
		bad("store.backend", "must be memory or redis, got %q", c.Store.Backend)
	}
	switch c.Store.OnError {
	case "allow", "deny":
	default:
		bad("store.on_error", "must be allow or deny, got %q", c.Store.OnError)
	}
	if c.Store.Memory.MaxKeys < 0 {
		bad("store.memory.max_keys", "must be >= 0")
	}
	if c.Store.TopK < 0 || c.Store.TopK > 100_000 {
		bad("store.top_k", "must be from 0 to 100000, got %d", c.Store.TopK)
	}
	c.validateTokens(bad)
	rc := c.Store.Redis
	for i, a := range rc.Addrs {
		checkAddr("store.redis.addrs["+strconv.Itoa(i)+"]", a)
	}
	if rc.Timeout <= 0 {
		bad("store.redis.timeout", "must be > 0")
	}
	if strings.ContainsAny(rc.Prefix, "{}") {
		bad("store.redis.prefix", "must not contain '{' or '}'")
	}
	if rc.DB < 0 {
		bad("store.redis.db", "must be >= 0")
	}
	if rc.BatchInterval < 0 {
		bad("store.redis.batch_interval", "must be >= 0")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}

	names := make([]string, 0, len(c.Policies))
	for name := range c.Policies {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := "policies." + name
		if !limiter.ValidName(name) {
			bad(path, "policy names must match [A-Za-z0-9_-]+")
			continue
		}
		pc := c.Policies[name]
		if _, err := pc.policy(name); err != nil {
			for _, e := range unjoin(err) {
				var fe *limiter.FieldError
				if errors.As(e, &fe) {
					bad(path+"."+fe.Field, "%s", fe.Msg)
				} else {
					bad(path, "%v", e)
				}
			}
		}
		for i, spec := range pc.Key {
			if _, err := middleware.ParseKeyJWT(spec, &middleware.IPResolver{}, "", c.JWT.checkKeys()); err != nil {
				bad(path+".key["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
		switch pc.OnMissingKey {
		case "ip", "reject":
		default:
			bad(path+".on_missing_key", "must be ip or reject, got %q", pc.OnMissingKey)
		}
		for i, o := range pc.Overrides {
			if o.Limit <= 0 {
				bad(path+".overrides["+strconv.Itoa(i)+"].limit", "must be > 0")
			}
			if msg := pc.foreignKey(o.Key); msg != "" {
				bad(path+".overrides["+strconv.Itoa(i)+"].key", "%s", msg)
			}
		}
		if pc.CountStatus != nil {
			if _, err := middleware.Statuses(pc.CountStatus...); err != nil {
				bad(path+".count_status", "%v", err)
			}
		}
	}

	seen := map[string]bool{}
	for i, r := range c.Routes {
		path := "routes[" + strconv.Itoa(i) + "]"
		if !limiter.ValidName(r.Name) {
			bad(path+".name", "must match [A-Za-z0-9_-]+, got %q", r.Name)
		} else if seen[r.Name] {
			bad(path+".name", "duplicate route name %q", r.Name)
		}
		seen[r.Name] = true
		if !strings.HasPrefix(r.Match.PathPrefix, "/") {
			bad(path+".match.path_prefix", "must start with /, got %q", r.Match.PathPrefix)
		}
		for j, m := range r.Match.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/()<>@,;:\\\"[]?={}") {
				bad(path+".match.methods["+strconv.Itoa(j)+"]", "must be an upper-case method token, got %q", m)
			}
		}
		switch {
		case r.Upstream == nil && r.Respond == nil:
			bad(path, "needs an upstream or a respond")
		case r.Upstream != nil && r.Respond != nil:
			bad(path, "has both an upstream and a respond; choose one")
		case r.Upstream != nil:
			u, err := url.Parse(r.Upstream.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(path+".upstream.url", "must be an http or https URL with a host, got %q", r.Upstream.URL)
			}
			if r.Upstream.Timeout < 0 {
				bad(path+".upstream.timeout", "must be >= 0")
			}
			if t := r.Upstream.Transport; t != TransportFast && t != TransportStandard {
				bad(path+".upstream.transport", "must be fast or standard, got %q", t)
			}
		case r.Respond != nil:
			if r.Respond.Status < 100 || r.Respond.Status > 599 {
				bad(path+".respond.status", "must be between 100 and 599, got %d", r.Respond.Status)
			}
		}
		if r.Cost < 0 {
			bad(path+".cost", "must be >= 1, got %d", r.Cost)
		}
		if ch := r.CostHeader; ch != nil {
			if ch.Name == "" || strings.ContainsAny(ch.Name, " \t:()<>@,;\\\"/[]?={}") {
				bad(path+".cost_header.name", "must be a header name, got %q", ch.Name)
			}
			if ch.Min < 0 {
				bad(path+".cost_header.min", "must be >= 1, got %d", ch.Min)
			}
			if ch.Max < max(ch.Min, 1) {
				bad(path+".cost_header.max", "must be >= min (%d), got %d", max(ch.Min, 1), ch.Max)
			}
			if c := max(r.Cost, 1); c < max(ch.Min, 1) || c > ch.Max {
				bad(path+".cost", "the cost of a request without %s (%d) must lie within cost_header's min and max", ch.Name, c)
			}
		}
		if (r.Cost != 0 || r.CostHeader != nil) && len(r.Policies) == 0 {
			bad(path+".cost", "the route has no policies to charge")
		}
		for j, p := range r.Policies {
			if _, ok := c.Policies[p]; !ok {
				bad(path+".policies["+strconv.Itoa(j)+"]", "unknown policy %q", p)
			}
			if slices.Contains(r.Policies[:j], p) {
				bad(path+".policies["+strconv.Itoa(j)+"]", "policy %q listed twice (it would count each request twice)", p)
			}
		}
	}
	alertNames := map[string]bool{}
	for i, a := range c.Alerts {
		path := "alerts[" + strconv.Itoa(i) + "]"
		if !limiter.ValidName(a.Name) {
			bad(path+".name", "must match [A-Za-z0-9_-]+, got %q", a.Name)
		} else if alertNames[a.Name] {
			bad(path+".name", "duplicate alert name %q", a.Name)
		}
		alertNames[a.Name] = true
		switch {
		case (a.Policy == "") == (a.Counter == ""):
			bad(path, "needs exactly one of policy and counter")
		case a.Policy != "":
			if _, ok := c.Policies[a.Policy]; !ok {
				bad(path+".policy", "unknown policy %q", a.Policy)
			}
		case !limiter.ValidCounterName(a.Counter):
			bad(path+".counter", "%q is not a valid counter name", a.Counter)
		}
		if (a.Share == 0) == (a.Value == 0) {
			bad(path, "needs exactly one of share and value")
		}
		if a.Share < 0 {
			bad(path+".share", "must be > 0")
		}
		if u, err := url.Parse(a.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(path+".webhook", "must be an http or https URL, got %q", a.Webhook)
		}
		if a.Cooldown < 0 {
			bad(path+".cooldown", "must be >= 0")
		}
	}
	c.validateIntegrations(bad)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func unjoin(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return []error{err}
}

// foreignKey says why key is no key that pc's sources make (keys carry
// their source: "header:x-api-key:VALUE", an IP as is), or "" when it may
// be one. It catches overrides written with a bare value, which would never
// apply.
func (pc PolicyConfig) foreignKey(key string) string {
	isIP := func(k string) bool {
		if _, err := netip.ParseAddr(k); err == nil {
			return true
		}
		_, err := netip.ParsePrefix(k)
		return err == nil
	}
	part := func(spec, k string) bool {
		kind, name, _ := strings.Cut(strings.TrimSpace(spec), ":")
		switch kind {
		case "ip":
			return isIP(k)
		case "method", "path", "host", "route":
			return strings.HasPrefix(k, kind+":")
		case "header":
			name = strings.ToLower(name)
		}
		if strings.ContainsAny(name, "%|:") {
			return true // escaped in keys; not worth checking
		}
		return strings.HasPrefix(k, kind+":"+name+":")
	}
	if pc.OnMissingKey != "reject" && isIP(key) {
		return ""
	}
	example := ""
	for _, spec := range pc.Key {
		specs := strings.Split(spec, "+")
		keys := strings.Split(key, "|")
		if len(specs) == len(keys) {
			all := true
			for j := range specs {
				all = all && part(specs[j], keys[j])
			}
			if all {
				return ""
			}
		}
		if example == "" && len(specs) == 1 {
			if kind, name, ok := strings.Cut(spec, ":"); ok {
				if kind == "header" {
					name = strings.ToLower(name)
				}
				example = fmt.Sprintf(", e.g. %q", kind+":"+name+":"+key)
			}
		}
	}
	return fmt.Sprintf("%q is no key this policy makes: keys carry their source%s (see the README)", key, example)
}

// policy builds the limiter policy named name.
func (pc PolicyConfig) policy(name string) (*limiter.Policy, error) {
	p := &limiter.Policy{
		Name:      name,
		Algorithm: limiter.Algorithm(pc.Algorithm),
		Limit:     pc.Limit,
		Window:    pc.Window,
		Buckets:   pc.Buckets,
		Burst:     pc.Burst,
		Shadow:    pc.Shadow,
		Calendar:  limiter.Calendar(pc.Calendar),
	}
	if pc.Timezone != "" {
		loc, err := time.LoadLocation(pc.Timezone)
		if err != nil {
			return p, &limiter.FieldError{Field: "timezone", Msg: fmt.Sprintf("unknown time zone %q (an IANA name such as Europe/Berlin)", pc.Timezone)}
		}
		p.Location = loc
	}
	if len(pc.Overrides) > 0 {
		p.Overrides = make(map[string]int64, len(pc.Overrides))
		for _, o := range pc.Overrides {
			p.Overrides[o.Key] = o.Limit
		}
	}
	return p, p.Validate()
}
