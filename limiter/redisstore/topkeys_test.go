package redisstore_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// TestSketchMatchesRedis: a topk.Sketch has the registers that Redis's own
// PFADD sets for the same keys, and Redis reads the dense encoding that
// the stores write with SET. PFMERGE of PFADD's sketch into an empty dense
// one gives Redis's registers in the dense encoding.
func TestSketchMatchesRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: limitertest.RedisAddr(t), Protocol: 2})
	defer client.Close()
	prefix := randomPrefix()
	added, dense := prefix+"{hll}:added", prefix+"{hll}:dense"
	defer client.Del(ctx, added, dense)
	var mine, empty topk.Sketch
	var keys []any
	for i := range 5000 {
		k := "key-" + strconv.Itoa(i) + "-" + string(rune('a'+i%26))
		mine.Add(topk.Hash(k))
		keys = append(keys, k)
	}
	if err := client.PFAdd(ctx, added, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, dense, empty.AppendDense(nil), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.PFMerge(ctx, dense, dense, added).Err(); err != nil {
		t.Fatal(err)
	}
	b, err := client.Get(ctx, dense).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var theirs topk.Sketch
	if !theirs.ReadDense(b) {
		t.Fatalf("Redis's merged sketch is not in the dense encoding (%d bytes)", len(b))
	}
	if theirs != mine {
		t.Fatal("the registers differ from those Redis's PFADD set for the same keys")
	}
	n, err := client.PFCount(ctx, dense).Result()
	if err != nil || n != mine.Count() {
		t.Fatalf("PFCOUNT %d (%v), Sketch.Count %d", n, err, mine.Count())
	}
}
