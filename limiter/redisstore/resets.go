package redisstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// A reset must take effect on every process of a fleet at once, but each
// process answers keys over their limit from its local cache (blocked.go).
// Reset therefore publishes the key on <prefix>resets after deleting it in
// Redis, and every store subscribes to that channel and drops the key from
// its cache. On a Cluster PUBLISH reaches the subscribers of every node.
// A process that was disconnected when a reset was published keeps its
// entry until the entry's retry-after, as before.

func (s *Store) resetChannel() string { return s.prefix + "resets" }

func resetMessage(p *limiter.Policy, storeKey string) string {
	return p.Name + "\x00" + string(p.Algorithm) + "\x00" + strconv.FormatInt(int64(p.Window), 10) + "\x00" + storeKey
}

// startResets subscribes to the reset channel until Close.
func (s *Store) startResets() {
	if s.blocked == nil {
		return
	}
	ps := s.client.Subscribe(context.Background(), s.resetChannel())
	go func() {
		<-s.stop
		ps.Close()
	}()
	go func() {
		for msg := range ps.Channel() {
			parts := strings.SplitN(msg.Payload, "\x00", 4)
			if len(parts) != 4 {
				continue
			}
			window, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil {
				continue
			}
			s.forgetBlocked(blockedKey{policy: parts[0], algorithm: limiter.Algorithm(parts[1]), window: time.Duration(window), key: parts[3]})
		}
	}()
}

// publishReset tells every process of the fleet that storeKey of p was reset.
func (s *Store) publishReset(ctx context.Context, p *limiter.Policy, storeKey string) error {
	return s.client.Publish(ctx, s.resetChannel(), resetMessage(p, storeKey)).Err()
}

// forgetBlocked forgets what this process holds of k's rejections after a
// reset: its local cache entry and the rejections on their way to Redis.
func (s *Store) forgetBlocked(k blockedKey) {
	s.blocked.take(k)
	s.top.forgetRejections(k)
}
