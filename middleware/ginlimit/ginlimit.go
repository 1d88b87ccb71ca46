// Package ginlimit adapts Sluice's middleware.Limiter to Gin. It holds no
// logic of its own: the decision, the headers and the responses are those of
// package middleware.
package ginlimit

import (
	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// Middleware returns a Gin handler that applies l. A request that l stops
// (429, 400, or a store failure that fails closed) is aborted: later
// handlers never run. The store sees c.Request.Context().
func Middleware(l *middleware.Limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !l.Check(c.Writer, c.Request) {
			c.Abort()
			return
		}
		c.Next()
	}
}

// New builds a Limiter from store and rules and returns its Gin handler.
func New(store limiter.Store, rules []middleware.Rule, opts ...middleware.Option) (gin.HandlerFunc, error) {
	l, err := middleware.New(store, rules, opts...)
	if err != nil {
		return nil, err
	}
	return Middleware(l), nil
}
