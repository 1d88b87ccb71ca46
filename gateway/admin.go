package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 64 << 10

// adminHandler serves /healthz, /readyz, /metrics and the token-protected
// /v1 API. Keys and names are path segments, matched on the escaped path, so
// a key may hold an escaped "/" (%2F).
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /ui/", uiHandler())
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))

	v1 := http.NewServeMux()
	for _, rt := range g.v1Routes() {
		v1.HandleFunc(rt.pattern, g.authorize(rt.pattern, rt.handler))
	}
	mux.Handle("/v1/", g.authenticate(jsonErrors(v1)))
	return jsonErrors(mux)
}

// jsonErrors answers the requests that mux has no pattern for (404, or 405
// with its Allow header) with the admin API's JSON error shape.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&errorRewriter{ResponseWriter: w}, r)
	})
}

// errorRewriter replaces a plain-text error body with {"error": ...}.
type errorRewriter struct {
	http.ResponseWriter
	wrote bool
}

func (e *errorRewriter) WriteHeader(code int) {
	if e.wrote {
		return
	}
	e.wrote = true
	msg := "no such endpoint"
	if code == http.StatusMethodNotAllowed {
		msg = "method not allowed"
	}
	e.Header().Del("X-Content-Type-Options")
	writeError(e.ResponseWriter, code, msg)
}

func (e *errorRewriter) Write(b []byte) (int, error) {
	if !e.wrote {
		e.WriteHeader(http.StatusNotFound)
	}
	return len(b), nil
}

type adminRoute struct {
	pattern string // "METHOD /path/{wildcard}"
	handler http.HandlerFunc
}

// v1Routes is the token-protected API.
func (g *Gateway) v1Routes() []adminRoute {
	return []adminRoute{
		{"GET /v1/policies", g.listPolicies},
		{"GET /v1/policies/{policy}/keys", g.listKeys},
		{"GET /v1/policies/{policy}/keys/{key}", g.getKey},
		{"DELETE /v1/policies/{policy}/keys/{key}", g.resetKey},
		{"GET /v1/policies/{policy}/overrides", g.listOverrides},
		{"PUT /v1/policies/{policy}/overrides/{key}", g.putOverride},
		{"DELETE /v1/policies/{policy}/overrides/{key}", g.deleteOverride},
		{"GET /v1/counters", g.listCounters},
		{"GET /v1/counters/{name}", g.getCounter},
		{"PUT /v1/counters/{name}", g.putCounter},
		{"DELETE /v1/counters/{name}", g.deleteCounter},
		{"POST /v1/counters/{name}/increment", g.stepCounter(1)},
		{"POST /v1/counters/{name}/decrement", g.stepCounter(-1)},
		{"GET /v1/policies/{policy}/history", g.policyHistory},
		{"GET /v1/policies/{policy}/keys/{key}/history", g.keyHistory},
		{"GET /v1/counters/{name}/history", g.counterHistory},
	}
}

// AdminRoutes lists the patterns ("METHOD /v1/...") of every
// token-protected admin route.
func AdminRoutes() []string {
	var out []string
	for _, rt := range (*Gateway)(nil).v1Routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// authenticate requires "Authorization: Bearer <token>" with one of the
// admin tokens (held hashed, compared in constant time); authorize then
// checks the token's scopes per route.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var p *principal
		if ok && got != "" {
			p = g.tokens.Load().find(got)
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, withPrincipal(r, p))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	middleware.WriteJSONError(w, status, msg)
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	st := g.state.Load()
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	err := st.store.Ping(ctx)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": "up"})
	case st.cfg.Store.OnError == "allow":
		// Requests are admitted without limits (fail open): the gateway can
		// serve, so it stays in the load balancer.
		writeJSON(w, http.StatusOK, map[string]string{"status": "degraded", "store": "down", "on_error": "allow", "error": err.Error()})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store unreachable", "store": "down", "on_error": st.cfg.Store.OnError, "error": err.Error()})
	}
}

type policyView struct {
	Name      string   `json:"name"`
	Algorithm string   `json:"algorithm"`
	Limit     int64    `json:"limit"`
	Window    string   `json:"window"`
	Key       []string `json:"key"`
	Shadow    bool     `json:"shadow"`
}

func (g *Gateway) listPolicies(w http.ResponseWriter, r *http.Request) {
	st := g.state.Load()
	out := make([]policyView, 0, len(st.names))
	for _, name := range st.names {
		p := st.policies[name]
		out = append(out, policyView{Name: name, Algorithm: string(p.Algorithm), Limit: p.Limit, Window: p.Window.String(), Key: st.cfg.Policies[name].Key, Shadow: p.Shadow})
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

// usageView is one key's usage. Key is for display (JSON replaces bytes that
// are not UTF-8 with U+FFFD); KeyPath is the key path-escaped, exact for
// every key, to put in /v1/policies/{policy}/keys/{key}.
type usageView struct {
	Key          string `json:"key"`
	KeyPath      string `json:"key_path"`
	Count        int64  `json:"count"`
	Limit        int64  `json:"limit"`
	Remaining    int64  `json:"remaining"`
	Rejected     int64  `json:"rejected"`
	ResetAfterMS int64  `json:"reset_after_ms"`
}

func viewUsage(u limiter.Usage) usageView {
	return usageView{Key: u.Key, KeyPath: escapeKey(u.Key), Count: u.Count, Limit: u.Limit, Remaining: u.Remaining, Rejected: u.Rejected, ResetAfterMS: u.ResetAfter.Milliseconds()}
}

// escapeKey path-escapes a key losslessly, whatever its bytes; "." and ".."
// have their dots escaped too, so that no router takes them for dot segments.
func escapeKey(k string) string {
	switch k {
	case ".", "..":
		return strings.Repeat("%2E", len(k))
	}
	return url.PathEscape(k)
}

// policy finds the path's policy or answers 404.
func (g *Gateway) policy(w http.ResponseWriter, r *http.Request) (*state, *limiter.Policy, bool) {
	st := g.state.Load()
	p, ok := st.policies[r.PathValue("policy")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown policy "+strconv.Quote(r.PathValue("policy")))
		return nil, nil, false
	}
	return st, p, true
}

// storeError answers a failed store call.
func (g *Gateway) storeError(w http.ResponseWriter, err error) {
	g.metrics.storeErrors.Inc()
	g.log.Load().Warn("admin: store error", "err", err)
	writeError(w, http.StatusServiceUnavailable, "store unavailable: "+err.Error())
}

func (g *Gateway) listKeys(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a whole number from 1 to 1000")
			return
		}
		limit = min(n, 1000)
	}
	list, err := st.store.Keys(r.Context(), p, limit)
	if err != nil {
		g.storeError(w, err)
		return
	}
	out := make([]usageView, len(list.Keys))
	for i, u := range list.Keys {
		out[i] = viewUsage(u)
	}
	writeJSON(w, http.StatusOK, map[string]any{"policy": p.Name, "keys": out, "active_keys": list.ActiveKeys})
}

func (g *Gateway) getKey(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	u, err := st.store.Peek(r.Context(), p, r.PathValue("key"))
	if err != nil {
		g.storeError(w, err)
		return
	}
	v := viewUsage(u)
	v.Key = r.PathValue("key")
	v.KeyPath = escapeKey(v.Key)
	writeJSON(w, http.StatusOK, v)
}

func (g *Gateway) resetKey(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	if err := st.store.Reset(r.Context(), p, r.PathValue("key")); err != nil {
		g.storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// counterName returns the path's counter name or answers 400.
func counterName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !limiter.ValidCounterName(name) {
		writeError(w, http.StatusBadRequest, "counter names are 1 to 200 printable ASCII characters without spaces or braces")
		return "", false
	}
	return name, true
}

func (g *Gateway) listCounters(w http.ResponseWriter, r *http.Request) {
	list, err := g.state.Load().store.Counters().List(r.Context())
	if err != nil {
		g.storeError(w, err)
		return
	}
	if list == nil {
		list = []limiter.Counter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"counters": list})
}

func (g *Gateway) getCounter(w http.ResponseWriter, r *http.Request) {
	name, ok := counterName(w, r)
	if !ok {
		return
	}
	c, err := g.state.Load().store.Counters().Get(r.Context(), name)
	switch {
	case errors.Is(err, limiter.ErrNotFound):
		writeError(w, http.StatusNotFound, "no counter "+strconv.Quote(name))
	case err != nil:
		g.storeError(w, err)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// decodeBody decodes a JSON body strictly into v. An empty body is allowed
// when optional. It answers 400 (or 413) itself and returns false on error.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.Itoa(maxAdminBody)+" bytes")
			return false
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return true
		}
		writeError(w, http.StatusBadRequest, "a JSON body is required")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON: more than one value")
		return false
	}
	return true
}

func (g *Gateway) putCounter(w http.ResponseWriter, r *http.Request) {
	name, ok := counterName(w, r)
	if !ok {
		return
	}
	var body struct {
		Value *int64 `json:"value"`
		Min   *int64 `json:"min"`
		Max   *int64 `json:"max"`
	}
	if !decodeBody(w, r, &body, false) {
		return
	}
	c := limiter.Counter{Name: name, Min: body.Min, Max: body.Max}
	if body.Value != nil {
		c.Value = *body.Value
	}
	if err := c.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	g.writeCounter(w, r, limiter.CounterOp{Kind: limiter.OpSet, Name: name, Counter: c})
}

func (g *Gateway) stepCounter(sign int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := counterName(w, r)
		if !ok {
			return
		}
		var body struct {
			By *int64 `json:"by"`
		}
		if !decodeBody(w, r, &body, true) {
			return
		}
		by := int64(1)
		if body.By != nil {
			by = *body.By
		}
		if by <= 0 {
			writeError(w, http.StatusBadRequest, "by must be > 0")
			return
		}
		g.writeCounter(w, r, limiter.CounterOp{Kind: limiter.OpAdd, Name: name, Delta: sign * by})
	}
}

func (g *Gateway) deleteCounter(w http.ResponseWriter, r *http.Request) {
	if name, ok := counterName(w, r); ok {
		g.writeCounter(w, r, limiter.CounterOp{Kind: limiter.OpDelete, Name: name})
	}
}

// IdempotencyKeyHeader makes a counter write idempotent
// (draft-ietf-httpapi-idempotency-key-header): a repeat with the same key
// and the same request within limiter.IdempotencyTTL gets the first answer
// and changes nothing, marked by ReplayedHeader; the same key with another
// request is 422.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// idempotencyKey returns the request's Idempotency-Key (empty when none):
// a Structured Field string ("...") as the draft has it, or the bare
// characters. It answers 400 itself on a bad key.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	vals := r.Header.Values(IdempotencyKeyHeader)
	if len(vals) == 0 {
		return "", true
	}
	key := strings.TrimSpace(vals[0])
	if strings.HasPrefix(key, `"`) {
		u, err := strconv.Unquote(key)
		if err != nil {
			u = ""
		}
		key = u
	}
	if len(vals) > 1 || !limiter.ValidIdempotencyKey(key) {
		writeError(w, http.StatusBadRequest, "Idempotency-Key must be one value of 1 to 255 printable ASCII characters")
		return "", false
	}
	return key, true
}

// writeCounter applies a counter write, under the request's Idempotency-Key
// when it has one, and answers: 200 with the counter, 204 for a delete, 409
// for a step out of bounds, 422 for a key used for another request.
func (g *Gateway) writeCounter(w http.ResponseWriter, r *http.Request, op limiter.CounterOp) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	var res limiter.CounterResult
	var err error
	counters := g.state.Load().store.Counters()
	if cw, ok := counters.(limiter.CounterWriter); ok {
		res, err = cw.Write(r.Context(), op, key)
	} else if key != "" {
		writeError(w, http.StatusNotImplemented, "this store does not support Idempotency-Key")
		return
	} else {
		res, err = writeWithout(r.Context(), counters, op)
	}
	switch {
	case errors.Is(err, limiter.ErrIdempotencyKeyReused):
		writeError(w, http.StatusUnprocessableEntity, "Idempotency-Key "+strconv.Quote(key)+" was used for a different request to counter "+strconv.Quote(op.Name))
		return
	case err != nil:
		g.storeError(w, err)
		return
	}
	if res.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	} else if op.Kind != limiter.OpDelete && res.Bound == "" {
		g.recordCounter(r.Context(), res.Counter)
	}
	switch {
	case res.Bound != "":
		writeJSON(w, http.StatusConflict, map[string]any{"error": res.Err().Error(), "value": res.Counter.Value})
	case op.Kind == limiter.OpDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusOK, res.Counter)
	}
}

// writeWithout applies op through the plain Counters methods, for a store
// whose counters are no CounterWriter.
func writeWithout(ctx context.Context, c limiter.Counters, op limiter.CounterOp) (limiter.CounterResult, error) {
	var res limiter.CounterResult
	var err error
	switch op.Kind {
	case limiter.OpSet:
		res.Counter, err = c.Set(ctx, op.Counter)
	case limiter.OpDelete:
		err = c.Delete(ctx, op.Name)
	default:
		res.Counter, err = c.Add(ctx, op.Name, op.Delta)
		if be, ok := limiter.IsBoundError(err); ok {
			res.Counter, res.Bound, err = limiter.Counter{Name: op.Name, Value: be.Value}, be.Bound, nil
		}
	}
	return res, err
}

// writeHistory answers the points of series since ?since= (RFC 3339; default
// the whole retention).
func (g *Gateway) writeHistory(w http.ResponseWriter, r *http.Request, series string, extra map[string]any) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an RFC 3339 time, e.g. 2026-11-25T10:00:00Z")
			return
		}
		since = t
	}
	points := []limiter.Point{}
	if h, ok := g.state.Load().store.(limiter.History); ok {
		got, err := h.History(r.Context(), series, since)
		if err != nil {
			g.storeError(w, err)
			return
		}
		points = append(points, got...)
	}
	extra["points"] = points
	writeJSON(w, http.StatusOK, extra)
}

func (g *Gateway) policyHistory(w http.ResponseWriter, r *http.Request) {
	if _, p, ok := g.policy(w, r); ok {
		g.writeHistory(w, r, policySeries(p.Name), map[string]any{"policy": p.Name})
	}
}

func (g *Gateway) keyHistory(w http.ResponseWriter, r *http.Request) {
	if _, p, ok := g.policy(w, r); ok {
		key := r.PathValue("key")
		g.writeHistory(w, r, keySeries(p.Name, key), map[string]any{"policy": p.Name, "key": key})
	}
}

func (g *Gateway) counterHistory(w http.ResponseWriter, r *http.Request) {
	if name, ok := counterName(w, r); ok {
		g.writeHistory(w, r, counterSeries(name), map[string]any{"counter": name})
	}
}
