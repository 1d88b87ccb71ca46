// Package ginlimit adapts Sluice's middleware.Limiter to Gin. It holds no
// logic of its own: the decision, the headers and the responses are those of
// package middleware.
//
//	r := gin.New()
//	r.SetTrustedProxies(nil) // no proxy in front: key by the TCP peer
//	r.Use(ginlimit.PerIP(100, time.Minute))
//
// The client address is Gin's own c.ClientIP(), so proxy trust is set once,
// on the engine: SetTrustedProxies, RemoteIPHeaders and TrustedPlatform
// decide which forwarding headers are believed. Beware that a new Gin engine
// trusts every proxy until SetTrustedProxies is called: any client could
// then choose its own key with X-Forwarded-For. A Limiter built with
// middleware.WithIPResolver resolves the client IP by its own rules instead
// and ignores Gin's.
package ginlimit

import (
	"net/netip"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// Middleware returns a Gin handler that applies l, with Gin's c.ClientIP()
// as the client address. A request that l stops (429, 400, or a store
// failure that fails closed) is aborted: later handlers never run. The
// store sees c.Request.Context().
func Middleware(l *middleware.Limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		clientIP := func() netip.Addr {
			addr, _ := netip.ParseAddr(c.ClientIP())
			return addr.WithZone("")
		}
		proceed, _, end := l.Begin(c.Writer, c.Request, clientIP)
		if !proceed {
			c.Abort()
			return
		}
		c.Next()
		end(c.Writer.Status())
	}
}

// New builds a Limiter from store and rules (see middleware.New) and
// returns its Gin handler.
func New(store limiter.Store, rules []middleware.Rule, opts ...middleware.Option) (gin.HandlerFunc, error) {
	l, err := middleware.New(store, rules, opts...)
	if err != nil {
		return nil, err
	}
	return Middleware(l), nil
}

// PerIP is middleware.PerIP for Gin: limit requests per window from each
// client IP, on a memory store of its own unless middleware.WithStore says
// otherwise. Like middleware.PerIP it panics on invalid arguments; build
// with middleware.Limit and wrap with Middleware to get the error instead.
func PerIP(limit int, window time.Duration, opts ...middleware.Option) gin.HandlerFunc {
	return Middleware(middleware.PerIP(limit, window, opts...))
}

// PerHeader is middleware.PerHeader for Gin: keyed by the named request
// header, or by client IP when it is absent.
func PerHeader(name string, limit int, window time.Duration, opts ...middleware.Option) gin.HandlerFunc {
	return Middleware(middleware.PerHeader(name, limit, window, opts...))
}

// PerKey is middleware.PerKey for Gin: keyed by key (which sees
// c.Request), or by client IP when it finds nothing.
func PerKey(key middleware.KeySource, limit int, window time.Duration, opts ...middleware.Option) gin.HandlerFunc {
	return Middleware(middleware.PerKey(key, limit, window, opts...))
}
