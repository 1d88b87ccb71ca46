package memstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sluice-gateway/sluice/limiter"
)

// ErrClosed reports a write to a store that has been closed.
var ErrClosed = errors.New("memstore: store closed")

// Buckets of the bbolt file.
var (
	bucketCounters = []byte("counters")           // name -> JSON limiter.Counter
	bucketRecords  = []byte("idempotency")        // name \x00 key -> JSON record
	bucketExpiry   = []byte("idempotency-expiry") // expiry (8 bytes, big-endian ns) + id -> nothing
	bucketHistory  = []byte("history")            // series -> encoded minutes
)

// maxBatch bounds the writes one transaction commits.
const maxBatch = 1024

// persistInterval is how often history and expired idempotency records are
// written to (or removed from) the file.
const persistInterval = 5 * time.Second

// durable keeps the named counters, their idempotency records and the
// history of a Store in a bbolt file.
//
// Counter writes are group-committed: one goroutine takes every write that
// is waiting, applies them in one read-write transaction and commits it,
// which fsyncs the file; each write is answered only after its commit. While
// one commit syncs, the next writes queue up and share the following one,
// so the cost of an fsync is spread over all concurrent writers, and a lone
// writer waits for no timer.
//
// History is kept in memory as in an in-memory store and written to the
// file every persistInterval and on Close: a crash loses at most that much
// of it, never an acknowledged counter change.
type durable struct {
	s    *Store
	db   *bolt.DB
	reqs chan *commit
	stop chan struct{}
	done chan struct{}
}

// commit is one write waiting for its transaction.
type commit struct {
	op   limiter.CounterOp
	key  string
	res  limiter.CounterResult
	err  error
	done chan struct{}
}

// Open returns a Store. With opts.Path set, its named counters, their
// idempotency records and the history live in that bbolt file (created
// when missing, mode 0600), which one process at a time may hold; rate-limit
// state stays in memory. Without a Path it is New. Close releases the file.
func Open(opts Options) (*Store, error) {
	s := New(opts)
	if opts.Path == "" {
		return s, nil
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		err = errors.New("the file is in use by another process")
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening %s: %w", opts.Path, err)
	}
	d := &durable{s: s, db: db, reqs: make(chan *commit), stop: make(chan struct{}), done: make(chan struct{})}
	if err := d.load(); err != nil {
		db.Close()
		s.Close()
		return nil, fmt.Errorf("opening %s: %w", opts.Path, err)
	}
	s.counters.db = d
	go d.loop()
	return s, nil
}

// load creates the buckets and reads the history into memory.
func (d *durable) load() error {
	oldest := d.s.clock().Unix()/60 - minutesKept + 1
	return d.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCounters, bucketRecords, bucketExpiry, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := d.loadOverrides(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			ms, err := decodeMinutes(v, oldest)
			if err != nil {
				return fmt.Errorf("history %q: %w", k, err)
			}
			if len(ms) > 0 && len(d.s.hist) < maxSeries {
				d.s.hist[string(k)] = ms
			}
			return nil
		})
	})
}

// loop commits the waiting writes, a batch per transaction, and persists
// the history now and then.
func (d *durable) loop() {
	defer close(d.done)
	t := time.NewTicker(persistInterval)
	defer t.Stop()
	batch := make([]*commit, 0, maxBatch)
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			_ = d.persist()
			continue
		case r := <-d.reqs:
			batch = append(batch[:0], r)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-d.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		d.commit(batch)
	}
}

// commit applies batch in one transaction. A failed commit fails every
// write of the batch and keeps none.
func (d *durable) commit(batch []*commit) {
	now := d.s.clock().UnixNano()
	err := d.db.Update(func(tx *bolt.Tx) error {
		t := &boltTable{tx: tx}
		for _, r := range batch {
			r.res, r.err = write(t, r.op, r.key, now)
			if t.err != nil {
				return t.err
			}
		}
		return nil
	})
	for _, r := range batch {
		if err != nil {
			r.res, r.err = limiter.CounterResult{}, fmt.Errorf("memstore: committing counters: %w", err)
		}
		close(r.done)
	}
}

// write queues a write and waits for its commit. When ctx ends first, the
// write may or may not be committed.
func (d *durable) write(ctx context.Context, op limiter.CounterOp, key string) (limiter.CounterResult, error) {
	r := &commit{op: op, key: key, done: make(chan struct{})}
	select {
	case d.reqs <- r:
	case <-d.stop:
		return limiter.CounterResult{}, ErrClosed
	case <-ctx.Done():
		return limiter.CounterResult{}, ctx.Err()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return limiter.CounterResult{}, ctx.Err()
	}
}

func (d *durable) get(name string) (limiter.Counter, error) {
	var out limiter.Counter
	err := d.db.View(func(tx *bolt.Tx) error {
		c, err := (&boltTable{tx: tx}).counter(name)
		if err != nil {
			return err
		}
		if c == nil {
			return limiter.ErrNotFound
		}
		out = *c
		return nil
	})
	return out, err
}

func (d *durable) list() ([]limiter.Counter, error) {
	out := []limiter.Counter{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			var c limiter.Counter
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("counter %q: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// persist writes the history series changed since the last call and
// removes expired idempotency records.
func (d *durable) persist() error {
	s := d.s
	now := s.clock()
	oldest := now.Unix()/60 - minutesKept + 1
	s.histMu.Lock()
	changed := make(map[string][]byte, len(s.histDirty))
	for series := range s.histDirty {
		changed[series] = encodeMinutes(s.hist[series], oldest)
	}
	clear(s.histDirty)
	s.histMu.Unlock()
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		for series, v := range changed {
			var err error
			if len(v) == 0 {
				err = b.Delete([]byte(series))
			} else {
				err = b.Put([]byte(series), v)
			}
			if err != nil {
				return err
			}
		}
		return pruneRecords(tx, now.UnixNano())
	})
	if err != nil {
		// Try again next time.
		s.histMu.Lock()
		for series := range changed {
			s.histDirty[series] = true
		}
		s.histMu.Unlock()
	}
	return err
}

// pruneRecords deletes idempotency records that expired by now.
func pruneRecords(tx *bolt.Tx, now int64) error {
	records := tx.Bucket(bucketRecords)
	cur := tx.Bucket(bucketExpiry).Cursor()
	for k, _ := cur.First(); len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now; k, _ = cur.First() {
		id := k[8:]
		if v := records.Get(id); v != nil {
			var r record
			if json.Unmarshal(v, &r) != nil || r.Expires <= now {
				if err := records.Delete(id); err != nil {
					return err
				}
			}
		}
		if err := cur.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// close stops the commit loop after the commit in progress, persists the
// history and closes the file.
func (d *durable) close() error {
	close(d.stop)
	<-d.done
	return errors.Join(d.persist(), d.db.Close())
}

// boltTable is one read-write (or read-only) transaction. The first error
// of a change is kept in err and fails the whole transaction.
type boltTable struct {
	tx  *bolt.Tx
	err error
}

func (t *boltTable) counter(name string) (*limiter.Counter, error) {
	v := t.tx.Bucket(bucketCounters).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	var c limiter.Counter
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("counter %q: %w", name, err)
	}
	return &c, nil
}

func (t *boltTable) fail(err error) error {
	if err != nil && t.err == nil {
		t.err = err
	}
	return err
}

func (t *boltTable) putCounter(c limiter.Counter) error {
	v, err := json.Marshal(c)
	if err != nil {
		return t.fail(err)
	}
	return t.fail(t.tx.Bucket(bucketCounters).Put([]byte(c.Name), v))
}

func (t *boltTable) deleteCounter(name string) error {
	return t.fail(t.tx.Bucket(bucketCounters).Delete([]byte(name)))
}

func (t *boltTable) record(id string) (*record, error) {
	v := t.tx.Bucket(bucketRecords).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	return &r, nil
}

func (t *boltTable) putRecord(id string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return t.fail(err)
	}
	if err := t.tx.Bucket(bucketRecords).Put([]byte(id), v); err != nil {
		return t.fail(err)
	}
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(r.Expires))
	return t.fail(t.tx.Bucket(bucketExpiry).Put(append(k, id...), nil))
}

// encodeMinutes encodes the minutes from oldest on as varints: minute,
// admitted, rejected, then 1 and the value or 0.
func encodeMinutes(ms map[int64]*minute, oldest int64) []byte {
	var b []byte
	for m, v := range ms {
		if m < oldest {
			continue
		}
		b = binary.AppendVarint(b, m)
		b = binary.AppendVarint(b, v.admitted)
		b = binary.AppendVarint(b, v.rejected)
		if v.value != nil {
			b = binary.AppendVarint(append(b, 1), *v.value)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

var errBadHistory = errors.New("malformed history")

func decodeMinutes(b []byte, oldest int64) (map[int64]*minute, error) {
	ms := map[int64]*minute{}
	next := func() (int64, error) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, errBadHistory
		}
		b = b[n:]
		return v, nil
	}
	for len(b) > 0 {
		var f [3]int64
		for i := range f {
			v, err := next()
			if err != nil {
				return nil, err
			}
			f[i] = v
		}
		if len(b) == 0 {
			return nil, errBadHistory
		}
		m := &minute{admitted: f[1], rejected: f[2]}
		flag := b[0]
		b = b[1:]
		if flag == 1 {
			v, err := next()
			if err != nil {
				return nil, err
			}
			m.value = &v
		}
		if f[0] >= oldest {
			ms[f[0]] = m
		}
	}
	return ms, nil
}
