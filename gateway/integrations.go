package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/rls"
)

// integrations are the listeners through which other proxies ask Sluice
// for decisions: the HTTP decision endpoint (decision.listen) and Envoy's
// rate limit service (rls.listen). Each is off when its address is empty.
type integrations struct {
	decisionLn  net.Listener
	decisionSrv *http.Server
	rlsLn       net.Listener
	rlsSrv      *grpc.Server
}

// buildIntegrations compiles what the integrations need from cfg into st.
func (g *Gateway) buildIntegrations(st *state, cfg *Config) error {
	st.decisionIP = st.ip
	if len(cfg.Decision.TrustedProxies) > 0 {
		ip, err := middleware.NewIPResolver(cfg.Decision.TrustedProxies, cfg.IPv6Prefix)
		if err != nil {
			return fmt.Errorf("decision: %w", err)
		}
		st.decisionIP = ip
	}
	var domains []rls.Domain
	for _, d := range cfg.RLS.Domains {
		domains = append(domains, rls.Domain{Name: d.Domain, Descriptors: rlsDescriptors(d.Descriptors, st.policies)})
	}
	table, err := rls.NewTable(domains, rls.WithIPKey(st.ip.Key))
	if err != nil {
		return fmt.Errorf("rls: %w", err)
	}
	st.rls = table
	return nil
}

func rlsDescriptors(ds []RLSDescriptorConfig, policies map[string]*limiter.Policy) []rls.Descriptor {
	out := make([]rls.Descriptor, 0, len(ds))
	for _, d := range ds {
		out = append(out, rls.Descriptor{Key: d.Key, Value: d.Value, Policy: policies[d.Policy], Descriptors: rlsDescriptors(d.Descriptors, policies)})
	}
	return out
}

// rlsSnapshot is what the rate limit service decides a call with.
func (g *Gateway) rlsSnapshot() rls.Snapshot {
	st := g.state.Load()
	return rls.Snapshot{Table: st.rls, Store: st.store, FailOpen: st.cfg.Store.OnError != "deny"}
}

// listenIntegrations opens the listeners cfg asks for.
func (g *Gateway) listenIntegrations(cfg *Config) error {
	in := &g.integrations
	if cfg.Decision.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Decision.Listen)
		if err != nil {
			return fmt.Errorf("decision.listen: %w", err)
		}
		in.decisionLn = ln
	}
	if cfg.RLS.Listen != "" {
		ln, err := net.Listen("tcp", cfg.RLS.Listen)
		if err != nil {
			if in.decisionLn != nil {
				in.decisionLn.Close()
			}
			return fmt.Errorf("rls.listen: %w", err)
		}
		in.rlsLn = ln
	}
	return nil
}

// serveIntegrations serves the open listeners in the background.
func (g *Gateway) serveIntegrations(headerTimeout time.Duration) {
	in := &g.integrations
	log := g.log.Load()
	if in.decisionLn != nil {
		in.decisionSrv = &http.Server{
			Handler:           g.decisionHandler(),
			ReadHeaderTimeout: headerTimeout,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		go func() { g.serveErr <- serve(in.decisionSrv, in.decisionLn) }()
		log.Info("decision endpoint listening", "addr", in.decisionLn.Addr().String())
	}
	if in.rlsLn != nil {
		in.rlsSrv = grpc.NewServer(
			grpc.ConnectionTimeout(headerTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
			grpc.MaxRecvMsgSize(1<<20),
		)
		rls.NewServer(g.rlsSnapshot, rls.WithObserver(g.observe)).Register(in.rlsSrv)
		go func() { g.serveErr <- in.rlsSrv.Serve(in.rlsLn) }()
		log.Info("rate limit service listening", "addr", in.rlsLn.Addr().String())
	}
}

// stopIntegrations stops the listeners, letting in-flight calls finish
// until ctx ends.
func (g *Gateway) stopIntegrations(ctx context.Context) []error {
	in := &g.integrations
	var errs []error
	if in.decisionSrv != nil {
		errs = append(errs, in.decisionSrv.Shutdown(ctx))
	}
	if in.rlsSrv != nil {
		done := make(chan struct{})
		go func() { in.rlsSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			in.rlsSrv.Stop()
			<-done
			errs = append(errs, ctx.Err())
		}
	}
	return errs
}

// RLSAddr returns the rate limit service's address once started, or ""
// when rls.listen is off.
func (g *Gateway) RLSAddr() string {
	if g.integrations.rlsLn == nil {
		return ""
	}
	return g.integrations.rlsLn.Addr().String()
}

// DecisionAddr returns the decision endpoint's address once started, or ""
// when decision.listen is off.
func (g *Gateway) DecisionAddr() string {
	if g.integrations.decisionLn == nil {
		return ""
	}
	return g.integrations.decisionLn.Addr().String()
}
