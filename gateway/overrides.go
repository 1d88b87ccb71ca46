package gateway

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// DefaultOverrideRefresh is how often a gateway reads the run-time
// overrides from the store (Options.OverrideRefresh).
const DefaultOverrideRefresh = time.Second

// maxOverrideKey bounds the key of a run-time override, in bytes.
const maxOverrideKey = 4096

// liveOverrides holds each policy's run-time overrides as this gateway last
// read them from the store. The tables are kept by policy name across
// reloads, so a reload neither forgets nor re-reads them. Safe for
// concurrent use.
type liveOverrides struct {
	mu     sync.Mutex
	tables map[string]*limiter.LiveLimits
	done   chan struct{} // closed when the refresh loop has stopped
}

// table returns the policy's table, making it on first use.
func (o *liveOverrides) table(policy string) *limiter.LiveLimits {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tables == nil {
		o.tables = map[string]*limiter.LiveLimits{}
	}
	t, ok := o.tables[policy]
	if !ok {
		t = &limiter.LiveLimits{}
		o.tables[policy] = t
	}
	return t
}

// refreshOverrides reads the run-time overrides of every policy of st (or
// only of the one named) from the store into the tables the policies
// consult. On a store error a table keeps what it had.
func (g *Gateway) refreshOverrides(ctx context.Context, st *state, only string) error {
	o, ok := st.store.(limiter.Overrider)
	if !ok {
		return nil
	}
	for _, name := range st.names {
		if only != "" && name != only {
			continue
		}
		m, err := o.ListOverrides(ctx, name)
		if err != nil {
			return err
		}
		g.overrides.table(name).Replace(m)
	}
	return nil
}

// overrideLoop refreshes the run-time overrides every
// Options.OverrideRefresh until the gateway shuts down.
func (g *Gateway) overrideLoop() {
	defer close(g.overrides.done)
	every := g.opts.OverrideRefresh
	if every <= 0 {
		every = DefaultOverrideRefresh
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-g.historyStop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := g.refreshOverrides(ctx, g.state.Load(), "")
		cancel()
		if err != nil && !failing {
			g.log.Load().Warn("reading run-time overrides failed; the last ones read stay in force", "err", err)
		} else if err == nil && failing {
			g.log.Load().Info("reading run-time overrides works again")
		}
		failing = err != nil
	}
}

// overrideView is one override in the admin API. Source is "runtime" (set
// through the API, kept in the store) or "config" (policies.NAME.overrides);
// a runtime override wins over a config one for the same key.
type overrideView struct {
	Key     string `json:"key"`
	KeyPath string `json:"key_path"`
	Limit   int64  `json:"limit"`
	Source  string `json:"source"`
}

// overrider returns the store's Overrider or answers 501.
func overrider(w http.ResponseWriter, st *state) (limiter.Overrider, bool) {
	o, ok := st.store.(limiter.Overrider)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this store keeps no run-time overrides")
	}
	return o, ok
}

func (g *Gateway) listOverrides(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	o, ok := overrider(w, st)
	if !ok {
		return
	}
	m, err := o.ListOverrides(r.Context(), p.Name)
	if err != nil {
		g.storeError(w, err)
		return
	}
	out := make([]overrideView, 0, len(m)+len(p.Overrides))
	for k, v := range m {
		out = append(out, overrideView{Key: k, KeyPath: escapeKey(k), Limit: v, Source: "runtime"})
	}
	for k, v := range p.Overrides {
		out = append(out, overrideView{Key: k, KeyPath: escapeKey(k), Limit: v, Source: "config"})
	}
	slices.SortFunc(out, func(a, b overrideView) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(b.Source, a.Source)) // runtime first
	})
	writeJSON(w, http.StatusOK, map[string]any{"policy": p.Name, "overrides": out})
}

func (g *Gateway) putOverride(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	o, ok := overrider(w, st)
	if !ok {
		return
	}
	key := r.PathValue("key")
	if len(key) > maxOverrideKey {
		writeError(w, http.StatusBadRequest, "key longer than "+strconv.Itoa(maxOverrideKey)+" bytes")
		return
	}
	var body struct {
		Limit *int64 `json:"limit"`
	}
	if !decodeBody(w, r, &body, false) {
		return
	}
	if body.Limit == nil || *body.Limit < 1 {
		writeError(w, http.StatusBadRequest, "limit must be a whole number > 0")
		return
	}
	m, err := o.ListOverrides(r.Context(), p.Name)
	if err != nil {
		g.storeError(w, err)
		return
	}
	prev, had := m[key]
	if !had && len(m) >= limiter.MaxOverrides {
		writeError(w, http.StatusConflict, "policy "+strconv.Quote(p.Name)+" has "+strconv.Itoa(limiter.MaxOverrides)+" run-time overrides, the most it may have; delete some first")
		return
	}
	if err := o.SetOverride(r.Context(), p.Name, key, *body.Limit); err != nil {
		g.storeError(w, err)
		return
	}
	g.auditOverride(r, p.Name, key, "override set", slog.Int64("limit", *body.Limit), slog.Int64("previous", prev))
	g.afterOverride(r.Context(), st, p.Name)
	writeJSON(w, http.StatusOK, overrideView{Key: key, KeyPath: escapeKey(key), Limit: *body.Limit, Source: "runtime"})
}

func (g *Gateway) deleteOverride(w http.ResponseWriter, r *http.Request) {
	st, p, ok := g.policy(w, r)
	if !ok {
		return
	}
	o, ok := overrider(w, st)
	if !ok {
		return
	}
	key := r.PathValue("key")
	had, err := o.DeleteOverride(r.Context(), p.Name, key)
	if err != nil {
		g.storeError(w, err)
		return
	}
	if !had {
		writeError(w, http.StatusNotFound, "no run-time override for key "+strconv.Quote(key))
		return
	}
	g.auditOverride(r, p.Name, key, "override deleted")
	g.afterOverride(r.Context(), st, p.Name)
	w.WriteHeader(http.StatusNoContent)
}

// afterOverride makes this gateway see its own change at once; the others
// see it at their next refresh.
func (g *Gateway) afterOverride(ctx context.Context, st *state, policy string) {
	if err := g.refreshOverrides(context.WithoutCancel(ctx), st, policy); err != nil {
		g.log.Load().Warn("re-reading run-time overrides failed; they apply at the next refresh", "policy", policy, "err", err)
	}
}

// auditOverride logs a change of a run-time override with the name of the
// token that made it.
func (g *Gateway) auditOverride(r *http.Request, policy, key, msg string, attrs ...slog.Attr) {
	name := ""
	if p, _ := r.Context().Value(principalKey{}).(*principal); p != nil {
		name = p.name
	}
	attrs = append([]slog.Attr{slog.String("token", name), slog.String("policy", policy), slog.String("key", key)}, attrs...)
	g.log.Load().LogAttrs(r.Context(), slog.LevelInfo, msg, attrs...)
}
