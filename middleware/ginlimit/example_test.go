package ginlimit_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/memstore"
	"github.com/sluice-gateway/sluice/middleware"
	"github.com/sluice-gateway/sluice/middleware/ginlimit"
)

// Limit a Gin route group to 2 requests per minute per client IP.
func ExampleNew() {
	store := memstore.New(memstore.Options{})
	defer store.Close()

	limit, err := ginlimit.New(store, []middleware.Rule{{
		Policy: &limiter.Policy{Name: "api", Limit: 2, Window: time.Minute},
	}})
	if err != nil {
		panic(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	api := r.Group("/api", limit)
	api.GET("/hello", func(c *gin.Context) { c.String(200, "hello") })

	for range 3 {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", "/api/hello", nil))
		fmt.Println(rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 1
	// 200 0
	// 429 0
}
