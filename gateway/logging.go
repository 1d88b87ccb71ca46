package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// redisLog is the logger that go-redis's own lines go to.
var redisLog atomic.Pointer[func() *slog.Logger]

// go-redis has one logger per process, set without synchronisation in
// some releases, so it is set once here, before any goroutine can log.
func init() { redis.SetLogger(redisLogger{}) }

// setRedisLogger sends go-redis's log lines (pool and cluster notices)
// through log, as warnings, instead of plain text on stderr. The gateway
// created last owns them; before any, they go to slog.Default.
func setRedisLogger(log func() *slog.Logger) {
	redisLog.Store(&log)
}

// redisLogger adapts slog to go-redis's Logging interface.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	log := slog.Default()
	if f := redisLog.Load(); f != nil {
		log = (*f)()
	}
	log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}
