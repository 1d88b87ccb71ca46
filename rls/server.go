package rls

import (
	"context"
	"math"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/middleware"
)

// MaxDescriptors bounds the descriptors of one call; a call with more is
// answered InvalidArgument.
const MaxDescriptors = 64

// Snapshot is what one call is decided with. The gateway hands out the one
// of its current config, so a reload takes effect on the next call.
type Snapshot struct {
	Table *Table
	Store limiter.Store
	// FailOpen answers OK when the store fails (store.on_error: allow);
	// otherwise the call is answered OVER_LIMIT, so that Sluice's choice
	// holds whatever Envoy's failure_mode_deny says.
	FailOpen bool
}

// Server implements envoy.service.ratelimit.v3.RateLimitService. It is safe
// for concurrent use.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	snapshot func() Snapshot
	observe  middleware.Observer
}

// Option configures a Server.
type Option func(*Server)

// WithObserver reports every decision, as the proxy's route limiters do
// (metrics, history, alerts). The Event's Request is nil.
func WithObserver(o middleware.Observer) Option { return func(s *Server) { s.observe = o } }

// NewServer returns a Server that decides each call with what snapshot
// returns at the time.
func NewServer(snapshot func() Snapshot, opts ...Option) *Server {
	s := &Server{snapshot: snapshot}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, s) }

var _ rlsv3.RateLimitServiceServer = (*Server)(nil)

// ShouldRateLimit decides one call. Each descriptor the Table maps is one
// limiter.Request with cost hits_addend (the descriptor's own hits_addend
// when it sets one above zero; zero means 1), and the call is decided as one
// request under several policies: OVER_LIMIT if any non-shadow policy
// rejects, and then the descriptors that were charged are refunded, so a
// rejected call consumes no quota. Descriptors the Table does not map, and
// those with is_negative_hits, are answered OK and not counted. Each status
// carries current_limit (the policy's name, its limit for the key, and its
// window as unit when it is one second, minute, hour or day), limit_remaining and duration_until_reset (the retry time when
// over the limit, else the time until the key's usage has drained). An
// OVER_LIMIT answer also asks Envoy to add Retry-After to its 429.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if req.GetDomain() == "" {
		return nil, status.Error(codes.InvalidArgument, "domain must not be empty")
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "descriptors must not be empty")
	}
	if len(descs) > MaxDescriptors {
		return nil, status.Errorf(codes.InvalidArgument, "%d descriptors; at most %d", len(descs), MaxDescriptors)
	}
	snap := s.snapshot()
	hits := uint64(max(req.GetHitsAddend(), 1))
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs))}
	var reqBuf [8]limiter.Request
	var idxBuf [8]int
	var entryBuf [8]Entry
	reqs, idx := reqBuf[:0], idxBuf[:0] // idx: the descriptor of each request
	for i, d := range descs {
		resp.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		if d.GetIsNegativeHits() {
			continue
		}
		entries := entryBuf[:0]
		for _, e := range d.GetEntries() {
			entries = append(entries, Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
		p, key, ok := snap.Table.Lookup(req.GetDomain(), entries)
		if !ok {
			continue
		}
		cost := hits
		if h := d.GetHitsAddend(); h != nil && h.GetValue() > 0 {
			cost = h.GetValue()
		}
		if cost > math.MaxInt64 {
			return nil, status.Errorf(codes.InvalidArgument, "descriptor %d: hits_addend %d is too large", i, cost)
		}
		reqs = append(reqs, limiter.Request{Policy: p, Key: key, Cost: int64(cost)})
		idx = append(idx, i)
	}
	if len(reqs) == 0 {
		return resp, nil
	}
	var decBuf [8]limiter.Decision
	start := time.Now()
	out, err := limiter.Check(ctx, snap.Store, reqs, decBuf[:0])
	if s.observe != nil {
		middleware.Report(s.observe, nil, reqs, out, err, time.Since(start))
	}
	for j, r := range reqs {
		st := resp.Statuses[idx[j]]
		st.CurrentLimit = currentLimit(r.Policy, r.Key)
		switch {
		case j < len(out.Decisions):
			d := out.Decisions[j]
			st.LimitRemaining = clampUint32(d.Remaining)
			st.DurationUntilReset = durationpb.New(d.ResetAfter)
			if !d.Allowed && !r.Policy.Shadow {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
				st.DurationUntilReset = durationpb.New(d.RetryAfter)
			}
		case err != nil:
			if !snap.FailOpen {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			}
		default:
			// Not evaluated: an earlier policy rejected the call. Read its
			// usage without counting.
			if u, perr := snap.Store.Peek(ctx, r.Policy, r.Key); perr == nil {
				st.LimitRemaining = clampUint32(u.Remaining)
				st.DurationUntilReset = durationpb.New(u.ResetAfter)
			}
		}
	}
	if err != nil {
		if !snap.FailOpen {
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		return resp, nil
	}
	if !out.Allowed {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		retry := ceilSeconds(out.Decisions[out.Rejected].RetryAfter)
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{{Key: "retry-after", Value: strconv.FormatInt(retry, 10)}}
	}
	return resp, nil
}

// currentLimit describes p's limit for key. The API's units are fixed
// periods; a window that is not exactly one of them has unit UNKNOWN (the
// unit_multiplier field of newer Envoy APIs is not in the version this
// module builds with).
func currentLimit(p *limiter.Policy, key string) *rlsv3.RateLimitResponse_RateLimit {
	rl := &rlsv3.RateLimitResponse_RateLimit{Name: p.Name, RequestsPerUnit: clampUint32(p.LimitFor(key))}
	switch p.Window {
	case time.Second:
		rl.Unit = rlsv3.RateLimitResponse_RateLimit_SECOND
	case time.Minute:
		rl.Unit = rlsv3.RateLimitResponse_RateLimit_MINUTE
	case time.Hour:
		rl.Unit = rlsv3.RateLimitResponse_RateLimit_HOUR
	case 24 * time.Hour:
		rl.Unit = rlsv3.RateLimitResponse_RateLimit_DAY
	}
	return rl
}

func clampUint32(v int64) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}
