package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/middleware"
)

// integrations are the listeners through which other proxies ask Sluice
// for decisions: the HTTP decision endpoint (decision.listen). Each is off
// when its address is empty.
type integrations struct {
	decisionLn  net.Listener
	decisionSrv *http.Server
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
	return nil
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
}

// stopIntegrations stops the listeners, letting in-flight calls finish
// until ctx ends.
func (g *Gateway) stopIntegrations(ctx context.Context) []error {
	in := &g.integrations
	var errs []error
	if in.decisionSrv != nil {
		errs = append(errs, in.decisionSrv.Shutdown(ctx))
	}
	return errs
}

// DecisionAddr returns the decision endpoint's address once started, or ""
// when decision.listen is off.
func (g *Gateway) DecisionAddr() string {
	if g.integrations.decisionLn == nil {
		return ""
	}
	return g.integrations.decisionLn.Addr().String()
}
