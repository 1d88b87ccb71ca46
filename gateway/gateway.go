// Package gateway is the Sluice program: configuration (koanf: YAML file
// plus SLUICE_ environment overrides), the route table, the reverse proxy
// and static routes behind the limiter, the authenticated admin API, metrics
// and live reload.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/knadh/koanf/providers/file"
	"github.com/sluice-gateway/sluice/gateway/internal/upstream"

	"github.com/sluice-gateway/sluice/internal/version"
	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/rls"
)

// Options configure a Gateway.
type Options struct {
	// ConfigPath is the YAML config file.
	ConfigPath string
	// Environ holds the environment overrides (KEY=value); nil means
	// os.Environ.
	Environ []string
	// LogOutput receives the logs; nil means io.Discard.
	LogOutput io.Writer
	// Watch reloads the config when its file changes.
	Watch bool
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (slowloris protection); zero means 10s.
	ReadHeaderTimeout time.Duration
	// Clock is the time for history minutes and alert cooldowns; nil means
	// time.Now.
	Clock func() time.Time
	// AlertBackoff is the first wait between webhook retries; zero means 1s.
	AlertBackoff time.Duration
	// OverrideRefresh is how often the run-time overrides are read from
	// the store; zero means DefaultOverrideRefresh (1s).
	OverrideRefresh time.Duration
	// TokenDir is where a generated admin token is written (see TokenFile);
	// empty means $XDG_RUNTIME_DIR/sluice or the temporary directory.
	TokenDir string
}

// Gateway is a running Sluice: a proxy listener and an admin listener over
// a configuration that Reload replaces atomically.
type Gateway struct {
	opts    Options
	log     atomic.Pointer[slog.Logger]
	level   slog.LevelVar
	metrics *metrics
	buffers *bufferPool
	noRoute sync.Map // status code -> sluice_requests_total{route="none",code}

	transportsMu sync.Mutex
	transports   map[time.Duration]*http.Transport
	fast         map[time.Duration]*upstream.Transport // by timeout; made on first use
	state        atomic.Pointer[state]
	token        atomic.Pointer[string]
	tokens       atomic.Pointer[tokenSet]
	tokenFile    string // where the generated token was written; guarded by reloadMu
	draining     atomic.Bool
	reloadMu     sync.Mutex
	watcher      *file.File

	proxyLn, adminLn   net.Listener
	proxySrv, adminSrv *http.Server
	serveErr           chan error
	closeOnce          sync.Once

	history     *recorder
	historyStop chan struct{}
	historyDone chan struct{}
	alerts      *alerter

	integrations integrations // the decision endpoint and the rate limit service

	overrides liveOverrides        // run-time per-key limits; see overrides.go
	jwt       atomic.Pointer[jwks] // the JWK Set in force (jwt.go)
}

// state is everything a request needs, swapped whole by Reload.
type state struct {
	cfg      *Config
	routes   routeTable
	policies map[string]*limiter.Policy
	names    []string // policy names, sorted
	store    limiter.Store
	ip       *middleware.IPResolver
	// decisionIP finds the client of a call to the decision endpoint.
	decisionIP *middleware.IPResolver
	rls        *rls.Table // Envoy rate limit descriptors to policies
	jwt        *jwks      // verifies bearer tokens for jwt:CLAIM keys; nil without jwt config
	// keys are the policies of each route with their key sources, for
	// log.access_keys.
	keys map[string][]policyKeys
}

// policyKeys is a policy's name and key sources.
type policyKeys struct {
	policy  string
	sources []middleware.KeySource
}

// New loads the config and builds a Gateway; Start opens its listeners.
func New(opts Options) (*Gateway, error) {
	g := &Gateway{opts: opts, metrics: newMetrics(), buffers: newBufferPool(), serveErr: make(chan error, 4), transports: map[time.Duration]*http.Transport{},
		history: newRecorder(time.Now), historyStop: make(chan struct{}), historyDone: make(chan struct{})}
	if g.opts.LogOutput == nil {
		g.opts.LogOutput = io.Discard
	}
	g.log.Store(slog.New(slog.NewTextHandler(g.opts.LogOutput, &slog.HandlerOptions{Level: &g.level})))
	cfg, err := Load(opts.ConfigPath, opts.Environ, g.log.Load())
	if err != nil {
		return nil, err
	}
	g.setLogger(cfg)
	st, err := g.buildState(cfg, nil)
	if err != nil {
		return nil, err
	}
	g.state.Store(st)
	g.jwt.Store(st.jwt)
	g.overrides.done = make(chan struct{})
	octx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := g.refreshOverrides(octx, st, ""); err != nil {
		g.log.Load().Warn("reading run-time overrides failed; they apply once the store answers", "err", err)
	}
	cancel()
	g.setToken(cfg)
	g.setTokens(cfg)
	g.metrics.watchStore(func() limiter.Store { return g.state.Load().store })
	setRedisLogger(g.log.Load)
	clock, backoff := opts.Clock, opts.AlertBackoff
	if clock == nil {
		clock = time.Now
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	g.history.now = clock
	g.alerts = newAlerter(clock, backoff, g.metrics.alerts)
	g.alerts.log = g.log.Load
	g.alerts.configure(cfg.Alerts)
	return g, nil
}

func (g *Gateway) setLogger(cfg *Config) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	g.level.Set(lvl)
	ho := &slog.HandlerOptions{Level: &g.level}
	if cfg.Log.Format == "json" {
		g.log.Store(slog.New(slog.NewJSONHandler(g.opts.LogOutput, ho)))
	} else {
		g.log.Store(slog.New(slog.NewTextHandler(g.opts.LogOutput, ho)))
	}
}

// setToken takes the admin token from cfg, or makes a random one (once,
// kept across reloads). A generated token is never logged: once the admin
// listener is open it is written to an owner-only file (writeToken).
func (g *Gateway) setToken(cfg *Config) {
	if cfg.Admin.Token != "" {
		t := cfg.Admin.Token
		g.token.Store(&t)
		return
	}
	if old := g.token.Load(); old != nil && g.state.Load() != nil && g.state.Load().cfg.Admin.Token == "" && g.tokenFile != "" {
		return // keep the generated one across reloads
	}
	t := newToken()
	g.token.Store(&t)
	g.tokenFile = ""
	if g.adminLn != nil {
		g.writeToken()
	}
}

// writeToken writes the generated admin token to its file and logs the
// file's path (never the token).
func (g *Gateway) writeToken() {
	path := TokenFile(g.opts.TokenDir, g.adminLn.Addr().String())
	if err := writeTokenFile(path, *g.token.Load()); err != nil {
		g.log.Load().Error("admin.token is empty and the generated token could not be written; the /v1 API is unusable until admin.token is set", "path", path, "err", err)
		return
	}
	g.tokenFile = path
	g.log.Load().Warn("admin.token is empty; generated a random admin token, readable by this user only", "path", path)
}

// buildStore returns the store cfg describes.
func buildStore(cfg StoreConfig) (limiter.Store, error) {
	if cfg.Backend == "redis" {
		rc := cfg.Redis
		return redisstore.New(nil, redisstore.Options{
			Addrs: rc.Addrs, Cluster: rc.Cluster, MasterName: rc.MasterName,
			Username: rc.Username, Password: rc.Password, DB: rc.DB, TLS: rc.TLS, TLSCAFile: rc.TLSCAFile,
			Timeout: rc.Timeout, Prefix: rc.Prefix, BatchInterval: rc.BatchInterval, TopK: cfg.TopK,
		})
	}
	return memstore.Open(memstore.Options{MaxKeys: cfg.Memory.MaxKeys, Path: cfg.Memory.Path, TopK: cfg.TopK})
}

// storeFor returns the store that cfg runs on when it replaces prev (nil at
// start). A reload never drops a store's state: the memory store is kept, with
// its counters, whatever else changed (changes of store.memory apply on
// restart, and cfg is made to say so); a Redis store is rebuilt only when
// store.redis changed, its state being in Redis. A change of store.backend
// would strand the state of the store in force, so a reload refuses it: the
// old config stays.
func (g *Gateway) storeFor(cfg *Config, prev *state) (limiter.Store, error) {
	if prev == nil {
		st, err := buildStore(cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return st, nil
	}
	was, now := prev.cfg.Store, cfg.Store
	if was.TopK != now.TopK {
		g.log.Load().Warn("store.top_k changes apply on restart; the running store keeps its busiest-key summaries", "top_k", was.TopK)
		cfg.Store.TopK, now.TopK = was.TopK, was.TopK
	}
	switch {
	case was.Backend != now.Backend:
		return nil, fmt.Errorf("store.backend: a reload cannot change it from %s to %s (the %s store's counters would be lost or stranded); restart to change it", was.Backend, now.Backend, was.Backend)
	case now.Backend == "memory":
		if !reflect.DeepEqual(was.Memory, now.Memory) {
			g.log.Load().Warn("store.memory changes apply on restart; the running memory store keeps its counters and settings",
				"max_keys", was.Memory.MaxKeys, "path", was.Memory.Path)
			cfg.Store.Memory = was.Memory
		}
		return prev.store, nil
	case reflect.DeepEqual(was.Redis, now.Redis):
		return prev.store, nil
	}
	st, err := buildStore(now)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// buildState compiles cfg; its store is storeFor's.
func (g *Gateway) buildState(cfg *Config, prev *state) (*state, error) {
	st := &state{cfg: cfg, policies: map[string]*limiter.Policy{}}
	ip, err := middleware.NewIPResolver(cfg.TrustedProxies, cfg.IPv6Prefix)
	if err != nil {
		return nil, err
	}
	st.ip = ip
	if st.store, err = g.storeFor(cfg, prev); err != nil {
		return nil, err
	}
	if st.jwt, err = g.jwtKeys(cfg); err != nil {
		if prev == nil || st.store != prev.store {
			st.store.Close()
		}
		return nil, err
	}
	fail := func(err error) (*state, error) {
		if prev == nil || st.store != prev.store {
			st.store.Close()
		}
		if st.jwt != nil && st.jwt != g.jwt.Load() {
			st.jwt.cancel()
		}
		return nil, err
	}
	jwtOpts := cfg.JWT.parserOptions()
	for name, pc := range cfg.Policies {
		p, err := pc.policy(name)
		if err != nil {
			return fail(fmt.Errorf("policies.%s: %w", name, err))
		}
		if _, ok := st.store.(limiter.Overrider); ok {
			p.Live = g.overrides.table(name)
		}
		st.policies[name] = p
		st.names = append(st.names, name)
	}
	slices.Sort(st.names)
	onError := middleware.ErrorHandler(middleware.FailOpen)
	if cfg.Store.OnError == "deny" {
		onError = func(w http.ResponseWriter, r *http.Request, err error) bool {
			middleware.WriteJSONError(w, http.StatusServiceUnavailable, "rate limiter unavailable")
			return false
		}
	}
	var routes []*route
	for _, rc := range cfg.Routes {
		rt := &route{name: rc.Name, prefix: rc.Match.PathPrefix, host: hostOnly(rc.Match.Host), methods: rc.Match.Methods, respond: rc.Respond,
			upstream: g.metrics.upstream.WithLabelValues(rc.Name)}
		if rt.prefix != "/" {
			rt.prefix = strings.TrimSuffix(rt.prefix, "/")
		}
		if rc.Upstream != nil {
			if rt.proxy, rt.direct, err = g.newProxy(rc.Name, rt.prefix, rc.Upstream, ip, len(cfg.TrustedProxies) > 0); err != nil {
				return fail(fmt.Errorf("routes %s: %w", rc.Name, err))
			}
		}
		if len(rc.Policies) > 0 {
			if st.keys == nil {
				st.keys = map[string][]policyKeys{}
			}
			var rules []middleware.Rule
			for _, name := range rc.Policies {
				pc := cfg.Policies[name]
				rule := middleware.Rule{Policy: st.policies[name]}
				// Per route: the key part "route" is the route's name.
				for _, spec := range pc.Key {
					src, err := middleware.ParseKeyJWT(spec, ip, rc.Name, st.jwt.keyfunc(), jwtOpts...)
					if err != nil {
						return fail(fmt.Errorf("policies.%s.key: %w", name, err))
					}
					rule.Keys = append(rule.Keys, src)
				}
				st.keys[rc.Name] = append(st.keys[rc.Name], policyKeys{name, rule.Keys})
				if pc.OnMissingKey == "reject" {
					rule.OnMissingKey = middleware.MissingKeyReject
				}
				if len(pc.CountStatus) > 0 {
					if rule.CountStatus, err = middleware.Statuses(pc.CountStatus...); err != nil {
						return fail(fmt.Errorf("policies.%s.count_status: %w", name, err))
					}
				}
				rules = append(rules, rule)
			}
			opts := []middleware.Option{middleware.WithIPResolver(ip),
				middleware.WithErrorHandler(onError),
				middleware.WithObserver(g.observe)}
			if cost := max(rc.Cost, 1); rc.CostHeader != nil {
				opts = append(opts, middleware.WithCost(middleware.HeaderCost(rc.CostHeader.Name, cost, max(rc.CostHeader.Min, 1), rc.CostHeader.Max)))
			} else if cost > 1 {
				opts = append(opts, middleware.WithCost(middleware.ConstCost(cost)))
			}
			rt.limiter, err = middleware.New(st.store, rules, opts...)
			if err != nil {
				return fail(fmt.Errorf("routes %s: %w", rc.Name, err))
			}
		}
		routes = append(routes, rt)
	}
	st.routes = newRouteTable(routes)
	if err := g.buildIntegrations(st, cfg); err != nil {
		return fail(err)
	}
	return st, nil
}

// Reload loads the config file again and, when it is valid, replaces the
// running config atomically; in-flight requests finish on the old one. An
// invalid config is logged and counted, and the old one stays in force.
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	log := g.log.Load()
	prev := g.state.Load()
	cfg, err := Load(g.opts.ConfigPath, g.opts.Environ, log)
	var st *state
	if err == nil {
		st, err = g.buildState(cfg, prev)
	}
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		log.Error("config reload failed; the old config stays in force", "path", g.opts.ConfigPath, "err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return err
	}
	if cfg.Listen != prev.cfg.Listen || cfg.Admin.Listen != prev.cfg.Admin.Listen ||
		cfg.Decision.Listen != prev.cfg.Decision.Listen || cfg.RLS.Listen != prev.cfg.RLS.Listen {
		log.Warn("listen addresses change only on restart", "listen", prev.cfg.Listen, "admin.listen", prev.cfg.Admin.Listen,
			"decision.listen", prev.cfg.Decision.Listen, "rls.listen", prev.cfg.RLS.Listen)
	}
	g.setLogger(cfg)
	g.state.Store(st)
	if old := g.jwt.Swap(st.jwt); old != nil && old != st.jwt {
		old.cancel()
	}
	g.setToken(cfg)
	g.setTokens(cfg)
	g.alerts.configure(cfg.Alerts)
	if st.store != prev.store {
		// Requests that loaded the old state may still be using its store.
		old := prev.store
		time.AfterFunc(2*time.Second+cfg.Store.Redis.Timeout, func() { old.Close() })
	}
	g.metrics.reloads.WithLabelValues("success").Inc()
	g.log.Load().Info("config reloaded", "path", g.opts.ConfigPath, "routes", len(st.routes), "policies", len(st.policies))
	return nil
}

// Start opens both listeners and serves in the background.
func (g *Gateway) Start() error {
	cfg := g.state.Load().cfg
	var err error
	if g.proxyLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if g.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		g.proxyLn.Close()
		return fmt.Errorf("admin.listen: %w", err)
	}
	if err = g.listenIntegrations(cfg); err != nil {
		g.proxyLn.Close()
		g.adminLn.Close()
		return err
	}
	headerTimeout := g.opts.ReadHeaderTimeout
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	g.proxyLn = &connLimiter{Listener: g.proxyLn, max: func() int { return g.state.Load().cfg.Server.MaxConnections },
		refused: g.metrics.connsRefused.Inc}
	g.proxySrv = &http.Server{
		Handler:           g.limitBodies(g.proxyHandler()),
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(g.log.Load().Handler(), slog.LevelDebug),
	}
	g.adminSrv = &http.Server{
		Handler:           g.checkHost(g.adminHandler()),
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go func() { g.serveErr <- serve(g.proxySrv, g.proxyLn) }()
	go func() { g.serveErr <- serve(g.adminSrv, g.adminLn) }()
	g.serveIntegrations(headerTimeout)
	if g.opts.Watch {
		g.watch()
	}
	go g.historyLoop()
	go g.overrideLoop()
	if cfg.Admin.Token == "" {
		g.reloadMu.Lock()
		g.writeToken()
		g.reloadMu.Unlock()
	}
	v := version.Get()
	g.log.Load().Info("sluice listening", "proxy", g.proxyLn.Addr().String(), "admin", g.adminLn.Addr().String(), "store", cfg.Store.Backend,
		"version", v.Version, "revision", v.Revision, "go", v.GoVersion)
	return nil
}

func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// watch reloads on changes of the config file.
func (g *Gateway) watch() {
	path, err := filepath.Abs(g.opts.ConfigPath)
	if err != nil {
		g.log.Load().Warn("not watching the config file", "err", err)
		return
	}
	g.watcher = file.Provider(path)
	var mu sync.Mutex
	var pending *time.Timer
	err = g.watcher.Watch(func(_ any, err error) {
		if err != nil {
			g.log.Load().Warn("config watch", "err", err)
			return
		}
		// Editors write a file in several steps; reload once they settle.
		mu.Lock()
		defer mu.Unlock()
		if pending != nil {
			pending.Stop()
		}
		pending = time.AfterFunc(100*time.Millisecond, func() { _ = g.Reload() })
	})
	if err != nil {
		g.log.Load().Warn("not watching the config file", "err", err)
		g.watcher = nil
	}
}

// ProxyAddr returns the proxy listener's address once started.
func (g *Gateway) ProxyAddr() string { return g.proxyLn.Addr().String() }

// AdminAddr returns the admin listener's address once started.
func (g *Gateway) AdminAddr() string { return g.adminLn.Addr().String() }

// AdminToken returns the admin token in force.
func (g *Gateway) AdminToken() string { return *g.token.Load() }

// Shutdown drains: from its first moment /readyz answers 503, so load
// balancers stop sending. It stops accepting connections on the proxy
// listener, waits for in-flight requests until ctx ends, then closes the
// admin listener (which answers /readyz until then) and the store.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	var err error
	g.closeOnce.Do(func() {
		if g.watcher != nil {
			_ = g.watcher.Unwatch()
		}
		if g.proxySrv != nil {
			close(g.historyStop)
			<-g.historyDone
			<-g.overrides.done
		}
		errs := []error{}
		if g.proxySrv != nil {
			errs = append(errs, g.proxySrv.Shutdown(ctx), g.adminSrv.Shutdown(ctx))
			errs = append(errs, g.stopIntegrations(ctx)...)
		}
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = g.FlushHistory(fctx)
		cancel()
		g.alerts.close()
		g.closeIdleUpstreams()
		if j := g.jwt.Load(); j != nil {
			j.cancel()
		}
		errs = append(errs, g.state.Load().store.Close())
		g.reloadMu.Lock()
		if g.tokenFile != "" {
			_ = os.Remove(g.tokenFile)
		}
		g.reloadMu.Unlock()
		err = errors.Join(errs...)
	})
	return err
}

// Run starts the gateway and serves until ctx ends, then drains: /readyz
// answers 503 at once, new requests are still served for shutdown_delay, then
// the listeners close and in-flight requests get shutdown_timeout.
func (g *Gateway) Run(ctx context.Context) error {
	if err := g.Start(); err != nil {
		g.state.Load().store.Close()
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-g.serveErr:
		if err != nil {
			_ = g.Shutdown(context.Background())
			return err
		}
	}
	g.draining.Store(true)
	if delay := g.state.Load().cfg.ShutdownDelay; delay > 0 {
		// Load balancers see /readyz fail and stop sending; until they
		// do, new requests are still served rather than refused.
		g.log.Load().Info("draining: still serving while load balancers notice", "shutdown_delay", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-g.serveErr:
			t.Stop()
		}
	}
	timeout := g.state.Load().cfg.ShutdownTimeout
	g.log.Load().Info("shutting down", "drain_timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return g.Shutdown(sctx)
}

// proxyHandler is the Gin engine of the proxy listener. Routing, limiting,
// recovery and the access log live in one handler, so a request costs no
// per-request context values.
func (g *Gateway) proxyHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = false
	e.ContextWithFallback = true
	_ = e.SetTrustedProxies(nil)
	e.NoRoute(g.serveRequest)
	return e
}

// serveRequest routes, limits and then proxies or answers one request; it
// counts and logs it even when a panic aborts it.
func (g *Gateway) serveRequest(c *gin.Context) {
	start := time.Now()
	st := g.state.Load()
	var rt *route
	decision := "none"
	defer func() {
		v := recover()
		g.finish(c, st, rt, decision, start)
		if v == nil {
			return
		}
		// http.ErrAbortHandler goes on up, so net/http aborts the connection
		// and the client sees a truncated body as an error; Gin's own
		// Recovery would swallow it and end the response cleanly.
		if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			panic(v)
		}
		g.log.Load().Error("panic serving a request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		if !c.Writer.Written() {
			middleware.WriteJSONError(c.Writer, http.StatusInternalServerError, "internal error")
		}
	}()
	if m := c.Request.Method; m == http.MethodConnect || m == http.MethodTrace {
		// A gateway, not a forward proxy: CONNECT is never forwarded. TRACE
		// would echo the request, cookies and credentials included, to
		// whatever script can send it (cross-site tracing), as nginx
		// refuses it too.
		c.Header("Allow", allowedMethods)
		middleware.WriteJSONError(c.Writer, http.StatusMethodNotAllowed, m+" is not supported")
		return
	}
	if upgradesToH2C(c.Request.Header) {
		// An h2c upstream would answer 101 and then take any number of
		// HTTP/2 requests, to any path, over the one tunnel counted here:
		// serve the plain HTTP/1.1 request instead (a server may ignore
		// Upgrade).
		c.Request.Header.Del("Upgrade")
		c.Request.Header.Del("HTTP2-Settings")
	}
	// Route matching and the upstream see the same, cleaned path.
	if !cleanRequestPath(c.Request) {
		middleware.WriteJSONError(c.Writer, http.StatusBadRequest, uncleanPath)
		return
	}
	var allow []string
	rt, allow = st.routes.match(c.Request)
	if rt == nil {
		if len(allow) > 0 {
			c.Header("Allow", strings.Join(dedupe(allow), ", "))
			middleware.WriteJSONError(c.Writer, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		middleware.WriteJSONError(c.Writer, http.StatusNotFound, "no route")
		return
	}
	if rt.limiter != nil {
		var proceed bool
		var end func(status int)
		proceed, decision, end = rt.limiter.Begin(c.Writer, c.Request, nil)
		if !proceed {
			return
		}
		// Policies that count by status are settled with the response's.
		defer func() { end(c.Writer.Status()) }()
	}
	if rt.respond != nil {
		c.Writer.Header().Set("Content-Type", rt.respond.ContentType)
		c.Writer.WriteHeader(rt.respond.Status)
		if c.Request.Method != http.MethodHead {
			_, _ = io.WriteString(c.Writer, rt.respond.Body)
		}
		return
	}
	upstart := time.Now()
	pw := proxyWriter(c.Writer, c.Request)
	if rt.direct != nil {
		rt.direct.serve(pw, c.Request)
	} else {
		rt.proxy.ServeHTTP(pw, c.Request)
	}
	pw.release()
	// A client's fault is not an upstream exchange.
	if status, _ := clientFault(c.Request, false); status == 0 && c.Request.Context().Err() == nil {
		rt.upstream.Observe(time.Since(upstart).Seconds())
	}
}

// finish counts the request in sluice_requests_total and writes its access
// log line.
func (g *Gateway) finish(c *gin.Context, st *state, rt *route, decision string, start time.Time) {
	status := c.Writer.Status()
	codes, name := &g.noRoute, "none"
	if rt != nil {
		codes, name = &rt.codes, rt.name
	}
	counter, ok := codes.Load(status)
	if !ok {
		counter, _ = codes.LoadOrStore(status, g.metrics.requests.WithLabelValues(name, strconv.Itoa(status)))
	}
	counter.(prometheus.Counter).Inc()
	if st.cfg.Log.Access != nil && !*st.cfg.Log.Access {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.String("route", name),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.String("decision", decision),
		slog.String("client", st.ip.ClientIP(c.Request).String()),
	}
	if st.cfg.Log.AccessKeys && rt != nil {
		attrs = append(attrs, slog.String("keys", accessKeys(st.keys[name], c.Request)))
	}
	g.log.Load().LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
}

// accessKeys is "policy=key ..." for the access log: the key each policy
// of the route counts (the first source present), at most 256 bytes of it.
func accessKeys(pks []policyKeys, r *http.Request) string {
	var b strings.Builder
	for _, pk := range pks {
		key := ""
		for _, src := range pk.sources {
			if k, ok := src(r); ok {
				key = k
				break
			}
		}
		if len(key) > 256 {
			key = key[:256]
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pk.policy + "=" + strconv.Quote(key))
	}
	return b.String()
}

// allowedMethods is the Allow header of a refused CONNECT or TRACE.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// upgradesToH2C reports whether h asks to upgrade to cleartext HTTP/2.
func upgradesToH2C(h http.Header) bool {
	for _, v := range h.Values("Upgrade") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "h2c") {
				return true
			}
		}
	}
	return false
}
