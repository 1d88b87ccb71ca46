package ginlimit_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/ginlimit"
	"github.com/sluice-gateway/sluice/middleware/middlewaretest"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func TestBehaviour(t *testing.T) {
	t.Parallel()
	middlewaretest.Run(t, func(t *testing.T, l *middleware.Limiter, h http.Handler) http.Handler {
		r := gin.New()
		r.Use(ginlimit.Middleware(l))
		r.Any("/*path", gin.WrapH(h))
		return r
	})
}
