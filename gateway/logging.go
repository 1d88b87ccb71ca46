package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

var (
	redisLogOnce sync.Once
	redisLog     atomic.Pointer[func() *slog.Logger]
)

// setRedisLogger sends go-redis's own log lines (pool and cluster
// notices) through the gateway's slog logger, as warnings, instead of
// plain text on stderr. go-redis has one logger per process: the gateway
// created last owns it.
func setRedisLogger(log func() *slog.Logger) {
	redisLog.Store(&log)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}

// redisLogger adapts slog to go-redis's Logging interface.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if f := redisLog.Load(); f != nil {
		(*f)().WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
	}
}
