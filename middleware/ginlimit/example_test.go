package ginlimit_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-gateway/sluice/middleware/ginlimit"
)

// Two requests a minute per client IP on a Gin route, behind a load
// balancer at 10.0.0.1: Gin's trusted proxies decide what the client IP is.
func ExamplePerIP() {
	r := gin.New()
	_ = r.SetTrustedProxies([]string{"10.0.0.0/8"})
	r.GET("/hello", ginlimit.PerIP(2, time.Minute), func(c *gin.Context) { c.String(200, "hello") })

	for range 3 {
		req := httptest.NewRequest("GET", "/hello", nil)
		req.RemoteAddr = "10.0.0.1:5000"
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 1
	// 200 0
	// 429 0
}
