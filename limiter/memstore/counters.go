package memstore

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/sluice-gateway/sluice/limiter"
)

// maxIdempotencyRecords bounds the idempotency records an in-memory store
// keeps; past it the oldest go first, before their IdempotencyTTL. A
// durable store (Options.Path) keeps every record on disk for the whole TTL.
const maxIdempotencyRecords = 1 << 17

// Counters implements limiter.Store. The counters also implement
// limiter.CounterWriter.
func (s *Store) Counters() limiter.Counters { return s.counters }

var _ limiter.CounterWriter = (*counters)(nil)

// counters are the store's named counters: in a map, or in a bbolt file
// when the store was opened with a Path (see durable.go).
type counters struct {
	s *Store

	// In memory (db == nil), under mu.
	mu    sync.Mutex
	m     map[string]limiter.Counter
	idem  map[string]record
	order []idemRef // records in the order written, for expiry and the bound

	db *durable
}

type idemRef struct {
	id      string
	expires int64
}

// record is what an idempotency key remembers of its first write.
type record struct {
	Fingerprint string                `json:"f"`
	Result      limiter.CounterResult `json:"r"`
	Expires     int64                 `json:"e"` // store time, ns since the Unix epoch
}

func newMemCounters(s *Store) *counters {
	return &counters{s: s, m: map[string]limiter.Counter{}, idem: map[string]record{}}
}

// recordID is the identity of an idempotency key: keys are scoped to their
// counter.
func recordID(name, key string) string { return name + "\x00" + key }

// table is the state one write reads and changes: the map under the mutex,
// or one bbolt transaction.
type table interface {
	counter(name string) (*limiter.Counter, error)
	putCounter(c limiter.Counter) error
	deleteCounter(name string) error
	record(id string) (*record, error)
	putRecord(id string, r record) error
}

// write applies op to t under the idempotency key (none when empty) at
// store time now. It is the one place the memory store, in memory or on
// disk, decides a counter write.
func write(t table, op limiter.CounterOp, key string, now int64) (limiter.CounterResult, error) {
	id := recordID(op.Name, key)
	if key != "" {
		r, err := t.record(id)
		if err != nil {
			return limiter.CounterResult{}, err
		}
		if r != nil && r.Expires > now {
			if r.Fingerprint != op.Fingerprint() {
				return limiter.CounterResult{}, limiter.ErrIdempotencyKeyReused
			}
			res := r.Result
			res.Replayed = true
			return res, nil
		}
	}
	cur, err := t.counter(op.Name)
	if err != nil {
		return limiter.CounterResult{}, err
	}
	next, res := op.Apply(cur)
	switch {
	case res.Bound != "":
	case next == nil:
		err = t.deleteCounter(op.Name)
	default:
		err = t.putCounter(*next)
	}
	if err == nil && key != "" {
		err = t.putRecord(id, record{Fingerprint: op.Fingerprint(), Result: res, Expires: now + int64(limiter.IdempotencyTTL)})
	}
	return res, err
}

// Write implements limiter.CounterWriter.
func (c *counters) Write(ctx context.Context, op limiter.CounterOp, key string) (limiter.CounterResult, error) {
	if err := op.Check(); err != nil {
		return limiter.CounterResult{}, err
	}
	if key != "" && !limiter.ValidIdempotencyKey(key) {
		return limiter.CounterResult{}, errors.New("idempotency key must be 1 to 255 printable ASCII characters")
	}
	if c.db != nil {
		return c.db.write(ctx, op, key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.s.clock().UnixNano()
	c.pruneRecords(now)
	return write((*memTable)(c), op, key, now)
}

// pruneRecords drops expired records, and the oldest beyond the bound. The
// mutex must be held.
func (c *counters) pruneRecords(now int64) {
	n := 0
	for n < len(c.order) && (c.order[n].expires <= now || len(c.order)-n >= maxIdempotencyRecords) {
		ref := c.order[n]
		if r, ok := c.idem[ref.id]; ok && r.Expires == ref.expires {
			delete(c.idem, ref.id)
		}
		n++
	}
	if n > 0 {
		c.order = append(c.order[:0], c.order[n:]...)
	}
}

type memTable counters

func (t *memTable) counter(name string) (*limiter.Counter, error) {
	if v, ok := t.m[name]; ok {
		return &v, nil
	}
	return nil, nil
}

func (t *memTable) putCounter(v limiter.Counter) error { t.m[v.Name] = v; return nil }
func (t *memTable) deleteCounter(name string) error    { delete(t.m, name); return nil }

func (t *memTable) record(id string) (*record, error) {
	if r, ok := t.idem[id]; ok {
		return &r, nil
	}
	return nil, nil
}

func (t *memTable) putRecord(id string, r record) error {
	t.idem[id] = r
	t.order = append(t.order, idemRef{id, r.Expires})
	return nil
}

func (c *counters) Add(ctx context.Context, name string, delta int64) (limiter.Counter, error) {
	res, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpAdd, Name: name, Delta: delta}, "")
	if err != nil {
		return limiter.Counter{}, err
	}
	return res.Counter, res.Err()
}

func (c *counters) Set(ctx context.Context, v limiter.Counter) (limiter.Counter, error) {
	res, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpSet, Name: v.Name, Counter: v}, "")
	return res.Counter, err
}

func (c *counters) Delete(ctx context.Context, name string) error {
	_, err := c.Write(ctx, limiter.CounterOp{Kind: limiter.OpDelete, Name: name}, "")
	return err
}

func (c *counters) Get(ctx context.Context, name string) (limiter.Counter, error) {
	if c.db != nil {
		return c.db.get(name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.m[name]
	if !ok {
		return limiter.Counter{}, limiter.ErrNotFound
	}
	return cur, nil
}

func (c *counters) List(context.Context) ([]limiter.Counter, error) {
	if c.db != nil {
		return c.db.list() // bbolt iterates in key order
	}
	c.mu.Lock()
	out := make([]limiter.Counter, 0, len(c.m))
	for _, v := range c.m {
		out = append(out, v)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
