// Package redisstore is Sluice's limiter.Store on Redis: standalone,
// sentinel or cluster, through a go-redis UniversalClient.
//
// Every limiter key lives under the configured prefix with a hash tag that
// holds the policy and the key, so each call touches one hash slot; every
// limiter key has a TTL. Named counters have none: they persist until
// deleted.
//
// Time: decisions take the time from the store's clock, which is the local
// monotonic clock plus an offset calibrated against the server's TIME (and
// recalibrated every 30 seconds), so gateways with skewed clocks agree to
// within half a round trip.
//
// One shape of operation: every call, whatever the algorithm, goes through
// the pipelining batcher (batch.go) with its caller's context, so a
// deadline or a cancellation ends the wait, and a call withdrawn before it
// was sent charges nothing. sliding_window and fixed_window run on plain
// pipelined commands with algo.Window's and algo.Fixed's arithmetic
// (window.go, fixed.go): one round trip when admitted, two when rejected.
// sliding_log decides with algo.Log's arithmetic over the count that a
// small script takes in the same step as the add (log.go), with the same
// round trips. gcra runs one Lua script by SHA, one round trip either way:
// its arithmetic (algo.Cell's) needs max(tat, now) read and written at
// once, which plain commands cannot do (gcra.go). Each algorithm's code is
// a driver in a table that New builds, indexed by the policy's
// limiter.AlgorithmID (drivers.go): no call compares algorithms.
// Keys over their limit are answered locally until their retry-after
// (blocked.go), and circuit
// breakers, one per cluster master, keep a dead Redis from costing every
// request a timeout (breaker.go). Batched mode trades exactness for
// throughput (batched.go).
//
// Limiter calls are never retried (a retried call after a read timeout
// would charge twice) and carry the configured timeout, counted from when
// the call was made: a call that waits that long for a pipeline fails
// without being sent (batch.go). On a standalone
// server (or a sentinel group's master) the flushes keep their connections
// between pipelines while busy, which spares the pool's liveness check, a
// syscall per pipeline; a connection a flush finds idle for a second goes
// back to the pool and its check, and a pool of two connections or fewer
// is not pinned (batch.go).
//
// Listing a policy's busiest keys costs no Redis command per request: each
// process counts its requests in bounded summaries and writes them to Redis
// about once a second (topkeys.go). A reset reaches every process's local
// cache through pub/sub (resets.go).
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sluice-gateway/sluice/limiter"
)

// DefaultPrefix is the key prefix of a store whose Options.Prefix is empty.
const DefaultPrefix = "sluice:"

// DefaultTimeout bounds each call of a store whose Options.Timeout is zero.
const DefaultTimeout = 100 * time.Millisecond

// Options configure a Store and, through NewClient, its client.
type Options struct {
	// Addrs: one address is a standalone server; several (or Cluster) a
	// cluster; with MasterName, the sentinels of a failover group.
	Addrs      []string
	Cluster    bool // force cluster mode for a single seed address
	MasterName string
	Username   string
	Password   string
	DB         int
	TLS        bool
	// TLSCAFile is a PEM file of CAs to trust for TLS; empty means the
	// system's roots.
	TLSCAFile string
	// Timeout bounds each call from when it is made, its wait for a
	// pipeline included (a listing, a busiest-key flush and a batched-mode
	// flush have bounds of their own, in multiples of it); the caller's
	// context bounds the wait as well. Zero means DefaultTimeout.
	Timeout time.Duration
	// Prefix starts every key; empty means DefaultPrefix. It must not hold
	// '{' or '}'.
	Prefix string
	// PoolSize is the connection pool size per node; zero means go-redis's
	// default (10 per CPU).
	PoolSize int
	// BreakerThreshold is how many consecutive failed calls open the
	// circuit breaker; zero means 5, negative disables the breaker.
	BreakerThreshold int
	// BreakerInterval is how long the breaker stays open before one call
	// probes Redis again; zero means 250ms.
	BreakerInterval time.Duration
	// BatchInterval > 0 turns on batched mode for sliding_window policies:
	// decisions are local and admissions reach Redis every interval. See
	// Flush for the bound on over-admission. Zero keeps every decision exact.
	BatchInterval time.Duration
	// NoLocalCache turns off the local cache of keys over their limit; with
	// it on (the default), a rejected key is answered locally until its
	// retry-after.
	NoLocalCache bool
	// Clock replaces the calibrated server clock; for tests.
	Clock func() time.Time
	// TopK is the K of the busiest-key summaries (see the limiter package
	// doc); zero means topk.DefaultK.
	TopK int
}

// NewClient builds the UniversalClient the options describe, with limiter
// calls never retried and every call bounded by the timeout.
func NewClient(o Options) (redis.UniversalClient, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	uo := &redis.UniversalOptions{
		Addrs:                 o.Addrs,
		IsClusterMode:         o.Cluster,
		MasterName:            o.MasterName,
		Username:              o.Username,
		Password:              o.Password,
		DB:                    o.DB,
		MaxRetries:            -1,
		DialTimeout:           max(timeout, 500*time.Millisecond),
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		Protocol:              2,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if o.TLS || o.TLSCAFile != "" {
		uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLSCAFile != "" {
			pem, err := os.ReadFile(o.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca_file %s: no PEM certificates", o.TLSCAFile)
			}
			uo.TLSConfig.RootCAs = pool
		}
	}
	return redis.NewUniversalClient(uo), nil
}

// Store is a limiter.Store on Redis. It is safe for concurrent use.
type Store struct {
	client      redis.UniversalClient
	prefix      string
	timeout     time.Duration
	clock       func() time.Time
	offset      atomic.Int64 // server time minus local time, ns
	idPrefix    string       // this store's random id: sliding_log members, batched mode's batch marks
	ids         atomic.Uint64
	top         *topKeys
	life        context.Context // ends when Close starts: the background calls on their way give up
	endLife     context.CancelFunc
	stop        chan struct{}
	trims       sync.WaitGroup              // sliding_window trims on their way (window.go)
	trimMu      sync.Mutex                  // orders trims.Add with Close's trims.Wait
	trimsClosed bool                        // under trimMu: Close started waiting for the trims
	trimming    sync.Map                    // hash name -> struct{}: its trim is on its way
	trimRefused atomic.Pointer[unwellState] // the last refused trim, until one succeeds
	done        chan struct{}
	closing     sync.Once
	owns        bool
	breaker     *breaker      // nil when disabled
	nodes       *nodeBreakers // one breaker per master on a cluster; nil otherwise
	batch       *batcher
	blocked     *blockedCache // nil when disabled
	batched     *batchedState // nil unless batched mode is on
	drivers     [limiter.NumAlgorithms]driver
	batchDone   chan struct{}
	unwell      atomic.Pointer[unwellState] // the last unwell reply, for Ping
}

var _ limiter.Store = (*Store)(nil)

// New returns a Store on client. When client is nil, New builds one from o
// and Close closes it. New does not fail when Redis is down: the store
// reports errors per call until Redis answers. The store bounds its calls
// with context deadlines: a client of the caller's must honour them
// (ContextTimeoutEnabled, as NewClient sets), or have read and write
// timeouts no longer than o.Timeout.
func New(client redis.UniversalClient, o Options) (*Store, error) {
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, r := range prefix {
		if r == '{' || r == '}' {
			return nil, fmt.Errorf("prefix %q: must not contain '{' or '}'", prefix)
		}
	}
	s := &Store{client: client, prefix: prefix, timeout: o.Timeout, clock: o.Clock,
		stop: make(chan struct{}), done: make(chan struct{})}
	s.life, s.endLife = context.WithCancel(context.Background())
	if s.client == nil {
		if len(o.Addrs) == 0 {
			return nil, errors.New("addrs: at least one address is needed")
		}
		client, err := NewClient(o)
		if err != nil {
			return nil, err
		}
		s.client, s.owns = client, true
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if o.BreakerThreshold >= 0 {
		s.breaker = newBreaker(o.BreakerThreshold, o.BreakerInterval)
		if cc, ok := s.client.(*redis.ClusterClient); ok {
			s.nodes = newNodeBreakers(cc, o.BreakerThreshold, o.BreakerInterval, s.timeout, s.breaker)
		}
	}
	// Two flushes in flight keep Redis busy while a pipeline is on the
	// wire; more would only make the pipelines shallower (measured in
	// benchmarks/decisions: 2 beat 4 and 32 at 64 callers).
	s.batch = newBatcher(s, 2)
	if !o.NoLocalCache {
		s.blocked = newBlockedCache()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.idPrefix = hex.EncodeToString(b[:]) // before the flush loop, which reads it
	s.batchDone = make(chan struct{})
	if o.BatchInterval > 0 {
		s.batched = newBatchedState()
		go s.flushLoop(o.BatchInterval)
	} else {
		close(s.batchDone)
	}
	s.drivers = s.newDrivers()
	s.loadScripts()
	if s.clock != nil {
		close(s.done)
	} else {
		s.clock = s.serverNow
		calibrated := s.calibrate() == nil
		go s.calibrateLoop(calibrated)
	}
	s.startTopKeys(o.TopK)
	return s, nil
}

// loadScripts loads the scripts on every node that answers, so that the
// pipelined calls find them; a node that does not have one yet gets it
// through the NOSCRIPT fallback.
func (s *Store) loadScripts() {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.timeout, time.Second))
	defer cancel()
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return
		}
	}
}

func (s *Store) serverNow() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// calibrate sets the clock offset from the server's TIME, assuming the
// answer was taken halfway through the round trip.
func (s *Store) calibrate() error {
	ctx, cancel := context.WithTimeout(s.life, max(s.timeout, time.Second))
	defer cancel()
	t0 := time.Now()
	server, err := s.client.Time(ctx).Result()
	if err != nil {
		return err
	}
	rtt := time.Since(t0)
	mid := t0.Add(rtt / 2)
	s.offset.Store(int64(server.Sub(mid)))
	return nil
}

func (s *Store) calibrateLoop(calibrated bool) {
	defer close(s.done)
	every := 30 * time.Second
	wait := every
	if !calibrated {
		wait = time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if s.calibrate() == nil {
				t.Reset(every)
			} else {
				t.Reset(time.Second)
			}
		}
	}
}

// Close stops the background work (the calibration, the busiest-key and
// batched-mode flushes), sends the last batched-mode and busiest-key
// flushes, waits for the trims on their way and closes a client that New
// built. It returns within about the store's timeout, whether Redis
// answers or not: it waits for background calls still on the wire no
// longer than that (go-redis ends a read at its deadline, not when its
// context is cancelled); they end by their own deadlines, at once when
// Close closes the client.
func (s *Store) Close() error {
	s.closing.Do(func() {
		// One deadline for all of it: the last writes matter less than
		// returning.
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		s.endLife()
		close(s.stop)
		waitDone(ctx, s.done)
		waitDone(ctx, s.batchDone)
		_ = s.Flush(ctx) // admissions first
		s.top.close(ctx)
		s.trimMu.Lock()
		s.trimsClosed = true
		s.trimMu.Unlock()
		s.trims.Wait() // each is bounded by the timeout from when it was queued
		s.batch.close()
	})
	if s.owns {
		return s.client.Close()
	}
	return nil
}

// waitDone waits until done is closed or ctx ends.
func waitDone(ctx context.Context, done <-chan struct{}) {
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Ping implements limiter.Store. It fails when Redis does not answer PING,
// and for five seconds after a limiter call got a reply that says the
// server is unwell for Sluice (NOAUTH, WRONGPASS, NOPERM, OOM, READONLY,
// LOADING, MASTERDOWN, CLUSTERDOWN, MISCONF) unless a later call succeeded:
// a server can answer PING and still refuse every decision.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return err
	}
	if u := s.unwell.Load(); u != nil && time.Since(u.at) < unwellFor {
		return fmt.Errorf("redis answers PING but refused a limiter call: %w", u.err)
	}
	if u := s.trimRefused.Load(); u != nil {
		return fmt.Errorf("redis refuses to delete old sliding_window buckets (HDEL), so keys grow with every bucket: %w", u.err)
	}
	if s.breaker != nil && s.breaker.open() {
		s.breaker.close()
	}
	return nil
}

// isFailure reports whether err means Redis is unreachable or unwell: a
// network error, a timeout, a closed or exhausted pool, or a server that is
// loading or has lost its cluster. Answers (a missing key, a script error, a
// counter bound) and callers that gave up are not failures.
func isFailure(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return false // the caller went away
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
	}
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// unwellReplies are the error replies that say the server (not one key) is
// unwell for Sluice: it refuses the credentials, the user's rights, memory,
// writes, or is not ready.
var unwellReplies = []string{"NOAUTH", "WRONGPASS", "NOPERM", "OOM ", "READONLY ", "LOADING ", "MASTERDOWN ", "CLUSTERDOWN ", "MISCONF "}

// unwellReply reports whether err carries one of unwellReplies, as the
// reply itself or inside a script error.
func unwellReply(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, w := range unwellReplies {
		if strings.HasPrefix(msg, w) || strings.Contains(msg, " "+w) || strings.Contains(msg, "-"+w) {
			return true
		}
	}
	return false
}

type unwellState struct {
	err error
	at  time.Time
}

// unwellFor is how long Ping keeps reporting an unwell reply that a
// limiter call got, unless a later call succeeds.
const unwellFor = 5 * time.Second

// noteOutcome remembers a decision's unwell reply for Ping, and forgets it
// when a decision succeeds. (Reads do not count: a replica or a full server
// still answers them.)
func (s *Store) noteOutcome(err error) { remember(&s.unwell, err, unwellReply) }

// remember keeps err in last when bad(err) holds, and forgets what last
// held when err is nil.
func remember(last *atomic.Pointer[unwellState], err error, bad func(error) bool) {
	switch {
	case err == nil:
		if last.Load() != nil {
			last.Store(nil)
		}
	case bad(err):
		last.Store(&unwellState{err: err, at: time.Now()})
	}
}

// guard runs call unless the store's circuit breaker is open, and records
// whether Redis failed.
func (s *Store) guard(ctx context.Context, call func() error) error {
	return s.guardWith(ctx, s.breaker, call)
}

// guardKey is guard for a call on one Redis key: on a cluster it uses the
// breaker of the master that serves the key, so a dead master fails only
// its own keys. A cluster whose slots cannot be found fails the call at
// once, through the store's breaker: its pipeline would wait for them
// again.
func (s *Store) guardKey(ctx context.Context, p *limiter.Policy, storeKey string, call func() error) error {
	b := s.breaker
	if s.nodes != nil {
		var err error
		if b, err = s.nodes.forKey(ctx, s.keyName(p, storeKey)); err != nil {
			call = func() error { return fmt.Errorf("redis: finding the key's cluster node: %w", err) }
		}
	}
	return s.guardWith(ctx, b, call)
}

func (s *Store) guardWith(ctx context.Context, b *breaker, call func() error) error {
	if b == nil {
		return call()
	}
	ok, probe := b.allow()
	if !ok {
		return ErrUnavailable
	}
	err := call()
	b.done(probe, isFailure(ctx, err))
	return err
}

// keyName returns the limiter key of key under p. The window is part of the
// name so that a changed policy starts afresh.
func (s *Store) keyName(p *limiter.Policy, storeKey string) string {
	return s.prefix + algoCodes[p.AlgorithmID()] + ":" + strconv.FormatInt(p.Window.Milliseconds(), 10) + ":{" + p.Name + ":" + storeKey + "}"
}

func us(t int64) string { return strconv.FormatInt(t, 10) }

// result decodes the reply of a limiter script.
func result(v any, limit int64) (limiter.Decision, int64, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return limiter.Decision{}, 0, fmt.Errorf("unexpected script reply %T", v)
	}
	var n [6]int64
	for i, x := range a {
		if n[i], ok = x.(int64); !ok {
			return limiter.Decision{}, 0, fmt.Errorf("unexpected script reply element %T", x)
		}
	}
	d := limiter.Decision{
		Allowed:    n[0] == 1,
		Limit:      limit,
		Count:      n[1],
		Remaining:  n[2],
		ResetAfter: time.Duration(n[3]) * time.Microsecond,
		RetryAfter: time.Duration(n[4]) * time.Microsecond,
	}
	return d, n[5], nil
}

type call struct {
	script *redis.Script
	keys   []string
	args   []any
}

// Allow implements limiter.Store.
func (s *Store) Allow(ctx context.Context, p *limiter.Policy, key string, cost int64) (limiter.Decision, error) {
	if cost < 1 {
		return limiter.Decision{}, limiter.ErrInvalidCost
	}
	s.top.observe(p, key)
	dr := &s.drivers[p.AlgorithmID()]
	if dr.local != nil {
		return dr.local(p, key, cost), nil
	}
	var bk blockedKey
	var localNow time.Time
	if s.blocked != nil {
		bk, localNow = blockedKeyOf(p, limiter.StoreKey(key)), s.clock()
		if d, ok := s.blocked.check(bk, localNow, p.LimitFor(key)); ok {
			return d, nil
		}
	}
	var d limiter.Decision
	err := s.guardKey(ctx, p, limiter.StoreKey(key), func() (err error) {
		d, err = dr.allow(ctx, p, key, limiter.StoreKey(key), p.LimitFor(key), cost, s.clock().UnixNano())
		return err
	})
	s.noteOutcome(err)
	if s.blocked != nil && err == nil {
		if n := s.blocked.take(bk); n > 0 {
			s.addRejected(ctx, p, bk.key, n)
		}
		// A rejection of one unit says when anything can pass again; a
		// larger cost's retry-after says nothing about smaller ones.
		if !d.Allowed && cost == 1 {
			s.blocked.block(bk, localNow, d)
		}
	}
	return d, err
}

// addRejected counts rejections that the local cache answered, best effort
// (the count is informational), even when the caller has gone.
func (s *Store) addRejected(ctx context.Context, p *limiter.Policy, storeKey string, n int64) {
	name := s.keyName(p, storeKey) + ":rej"
	_ = s.batch.do(context.WithoutCancel(ctx), &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) {
		pipe.IncrBy(ctx, name, n)
		pipe.PExpire(ctx, name, p.Window)
	}})
}

// Refund implements limiter.Store.
func (s *Store) Refund(ctx context.Context, p *limiter.Policy, key string, c limiter.Charge) error {
	if c.Cost <= 0 {
		return nil
	}
	dr := &s.drivers[p.AlgorithmID()]
	if dr.refundLocal != nil && dr.refundLocal(p, key, c) {
		return nil
	}
	storeKey := limiter.StoreKey(key)
	return s.guardKey(ctx, p, storeKey, func() error { return dr.refund(ctx, p, key, s.keyName(p, storeKey), c) })
}

// Peek implements limiter.Store.
func (s *Store) Peek(ctx context.Context, p *limiter.Policy, key string) (limiter.Usage, error) {
	storeKey := limiter.StoreKey(key)
	var u limiter.Usage
	err := s.guardKey(ctx, p, storeKey, func() (err error) {
		u, err = s.drivers[p.AlgorithmID()].peek(ctx, p, storeKey, p.LimitFor(key), s.clock().UnixNano())
		return err
	})
	if s.blocked != nil && err == nil {
		u.Rejected += s.blocked.pending(blockedKeyOf(p, storeKey))
	}
	if err != nil {
		return u, fmt.Errorf("redis peek: %w", err)
	}
	return u, nil
}

// Reset implements limiter.Store.
func (s *Store) Reset(ctx context.Context, p *limiter.Policy, key string) error {
	if s.blocked != nil {
		s.forgetBlocked(blockedKeyOf(p, limiter.StoreKey(key)))
	}
	return s.guardKey(ctx, p, limiter.StoreKey(key), func() error { return s.reset(ctx, p, key) })
}

// reset deletes the key and tells the fleet, within the store's timeout.
func (s *Store) reset(ctx context.Context, p *limiter.Policy, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	name := s.keyName(p, limiter.StoreKey(key))
	var del *redis.IntCmd
	// Same hash slot, so one DEL is fine on a cluster too.
	o := &cmdsOp{fn: func(ctx context.Context, pipe redis.Pipeliner) { del = pipe.Del(ctx, name, name+":rej") }}
	if err := s.batch.do(ctx, o); err != nil {
		return fmt.Errorf("redis reset: %w", err)
	}
	if err := del.Err(); err != nil {
		return fmt.Errorf("redis reset: %w", err)
	}
	if err := s.publishReset(ctx, p, limiter.StoreKey(key)); err != nil {
		return fmt.Errorf("redis reset: telling the fleet: %w", err)
	}
	return nil
}
