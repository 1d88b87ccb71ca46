package middleware_test

import (
	"net/http"
	"testing"

	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/middlewaretest"
)

func TestBehaviour(t *testing.T) {
	t.Parallel()
	middlewaretest.Run(t, func(t *testing.T, l *middleware.Limiter, h http.Handler) http.Handler {
		return l.Handler(h)
	})
}
