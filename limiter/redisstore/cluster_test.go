package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// ownCluster is a Redis Cluster of the test's own: masters without
// replicas on free ports, killed in t.Cleanup. It never touches the shared
// cluster.
type ownCluster struct {
	ports []int
	buses []int // cluster bus ports
	ids   []string
	cmds  []*exec.Cmd
	// lo and hi are the slot ranges of the masters: master i serves
	// lo[i]..hi[i].
	lo, hi []int
}

func (c *ownCluster) addrs() []string {
	out := make([]string, len(c.ports))
	for i, p := range c.ports {
		out[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	return out
}

// master returns the index of the master that serves slot.
func (c *ownCluster) master(slot int) int {
	for i := range c.lo {
		if slot >= c.lo[i] && slot <= c.hi[i] {
			return i
		}
	}
	return -1
}

// kill sends SIGKILL to master i (kill -9).
func (c *ownCluster) kill(i int) {
	_ = c.cmds[i].Process.Kill()
	_ = c.cmds[i].Wait()
}

// startOwnCluster starts n masters; slots[i] is how many slots master i
// serves, in order from slot 0 (nil: an even split).
func startOwnCluster(t *testing.T, n int, slots []int) *ownCluster {
	t.Helper()
	bin := redisServer(t)
	if slots == nil {
		for i := range n {
			slots = append(slots, (i+1)*16384/n-i*16384/n)
		}
	}
	c := &ownCluster{}
	for range n {
		port, bus := freePort(t), freePort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--cluster-port", fmt.Sprint(bus),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "no",
			"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "log"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c.ports, c.buses, c.cmds = append(c.ports, port), append(c.buses, bus), append(c.cmds, cmd)
	}
	ctx := context.Background()
	clients := make([]*redis.Client, n)
	next := 0
	for i, port := range c.ports {
		waitPort(t, port)
		clients[i] = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		defer clients[i].Close()
		id, err := clients[i].ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		c.ids = append(c.ids, id)
		c.lo, c.hi = append(c.lo, next), append(c.hi, next+slots[i]-1)
		if slots[i] > 0 {
			if err := clients[i].ClusterAddSlotsRange(ctx, next, next+slots[i]-1).Err(); err != nil {
				t.Fatal(err)
			}
		}
		next += slots[i]
	}
	for i := 1; i < n; i++ {
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.ports[i], c.buses[i]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := true
		for _, cl := range clients {
			info, _ := cl.ClusterInfo(ctx).Result()
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				ready = false
			}
			if !slotsKnown(ctx, cl, countNonZero(slots)) {
				ready = false
			}
		}
		if ready {
			return c
		}
		if time.Now().After(deadline) {
			for i, cl := range clients {
				info, _ := cl.ClusterInfo(ctx).Result()
				shards, _ := cl.ClusterShards(ctx).Result()
				t.Logf("node %d: %d slot ranges; %s", i, len(shards), info)
			}
			t.Fatal("the cluster did not form within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slotsKnown reports whether a node knows n masters that serve slots.
func slotsKnown(ctx context.Context, c *redis.Client, n int) bool {
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return false
	}
	serving := 0
	for _, sh := range shards {
		if len(sh.Slots) > 0 {
			serving++
		}
	}
	return serving == n
}

func countNonZero(a []int) int {
	n := 0
	for _, v := range a {
		if v > 0 {
			n++
		}
	}
	return n
}

// slotOf asks a node for the hash slot of key.
func slotOf(t *testing.T, addr, key string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	slot, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(slot)
}

// TestClusterRedirectsAreErrors: a client that talks to one node of a
// cluster as a standalone server gets MOVED for the slots of another node
// and ASK for a slot being migrated away; both are errors for every
// algorithm. (A cluster client follows both: the command did not run.)
func TestClusterRedirectsAreErrors(t *testing.T) {
	t.Parallel()
	// Master 0 serves no slot; master 1 serves them all.
	c := startOwnCluster(t, 2, []int{0, 16384})
	t.Run("MOVED", func(t *testing.T) {
		mustFailEverywhere(t, redisstore.Options{Addrs: c.addrs()[:1]}, "MOVED", true, false)
	})
	t.Run("ASK", func(t *testing.T) {
		owner := redis.NewClient(&redis.Options{Addr: c.addrs()[1]})
		defer owner.Close()
		for _, alg := range algorithms {
			slot := slotOf(t, c.addrs()[1], "{errs-"+string(alg)+":k}")
			if err := owner.Do(context.Background(), "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[0]).Err(); err != nil {
				t.Fatal(err)
			}
		}
		mustFailEverywhere(t, redisstore.Options{Addrs: c.addrs()[1:]}, "ASK", true, false)
	})
}

// TestClusterMasterDown: kill -9 of one of three masters fails only the
// keys that master serves; keys on the healthy masters keep getting
// decisions, serially and concurrently, for every algorithm.
func TestClusterMasterDown(t *testing.T) {
	t.Parallel()
	c := startOwnCluster(t, 3, nil)
	s, err := redisstore.New(nil, redisstore.Options{Addrs: c.addrs(), Cluster: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const dead = 2
	type probe struct {
		p       *limiter.Policy
		key     string
		healthy bool
	}
	var probes []probe
	var onDead, onHealthy int
	for _, alg := range algorithms {
		p := limitertest.Policy(t, "down-"+string(alg), alg, 1_000_000, time.Hour)
		for i := range 24 {
			key := fmt.Sprint("k", i)
			healthy := c.master(slotOf(t, c.addrs()[0], "{"+p.Name+":"+key+"}")) != dead
			probes = append(probes, probe{p, key, healthy})
			if healthy {
				onHealthy++
			} else {
				onDead++
			}
			limitertest.MustAllow(t, s, p, key, 1)
		}
	}
	if onDead < 8 || onHealthy < 8 {
		t.Fatalf("%d keys on the dead master and %d on the others: the test needs some of each", onDead, onHealthy)
	}
	c.kill(dead)

	check := func(round int, pr probe) error {
		d, err := s.Allow(context.Background(), pr.p, pr.key, 1)
		switch {
		case pr.healthy && err != nil:
			return fmt.Errorf("round %d: %s key %s on a healthy master: %v", round, pr.p.Algorithm, pr.key, err)
		case pr.healthy && !d.Allowed:
			return fmt.Errorf("round %d: %s key %s on a healthy master rejected", round, pr.p.Algorithm, pr.key)
		case !pr.healthy && err == nil:
			return fmt.Errorf("round %d: %s key %s on the dead master: no error", round, pr.p.Algorithm, pr.key)
		}
		return nil
	}
	// Serially, the dead master's keys first: their failures open its
	// breaker, not the others'.
	for round := range 5 {
		for _, healthy := range []bool{false, true} {
			for _, pr := range probes {
				if pr.healthy != healthy {
					continue
				}
				if err := check(round, pr); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Concurrently: calls for dead and healthy masters share pipelines.
	var wg sync.WaitGroup
	errs := make(chan error, len(probes))
	for _, pr := range probes {
		wg.Go(func() {
			for round := range 5 {
				if err := check(round, pr); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		t.Fatal(err)
	}
	if !s.BreakerOpen() {
		t.Fatal("BreakerOpen is false while the dead master's breaker is open")
	}
}
