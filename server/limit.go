package server

import (
	"bytes"
	"encoding/binary"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
)

// ipLimiter is a token bucket per client address for the keyless doors
// (decisions, beacons): rate tokens a second, up to burst. Buckets live in
// a fixed table indexed by a hash of the address; an address that takes
// over another's slot starts with a full bucket, so a collision can only
// loosen a limit, never refuse a client that is within its own.
type ipLimiter struct {
	rate, burst float64
	slots       [1 << 13]ipBucket
}

type ipBucket struct {
	mu     sync.Mutex
	key    uint64
	tokens float64
	last   int64 // Unix nanoseconds
}

func newIPLimiter(rate, burst float64) *ipLimiter {
	if rate <= 0 {
		return nil
	}
	return &ipLimiter{rate: rate, burst: max(burst, 1)}
}

// allow takes a token for the client at key, at time now.
func (l *ipLimiter) allow(key uint64, now int64) bool {
	b := &l.slots[key&(1<<13-1)]
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.key != key || b.last == 0 {
		b.key, b.tokens, b.last = key, l.burst, now
	}
	b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.rate/1e9)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientKey hashes the client's address: the peer's, or, when the peer is
// a proxy on loopback, the last address of X-Forwarded-For (the one that
// proxy saw).
func clientKey(ctx *fasthttp.RequestCtx) uint64 {
	ip := ctx.RemoteIP()
	if ip.IsLoopback() {
		if xff := ctx.Request.Header.Peek("X-Forwarded-For"); len(xff) > 0 {
			if i := bytes.LastIndexByte(xff, ','); i >= 0 {
				xff = xff[i+1:]
			}
			return xxhash.Sum64(bytes.TrimSpace(xff))
		}
	}
	var b [16]byte
	if v4 := ip.To4(); v4 != nil {
		copy(b[:], v4)
		return xxhash.Sum64(b[:4])
	}
	// IPv6 clients get addresses by the /64: limit the prefix.
	copy(b[:], ip.To16())
	return binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ 6
}

var errRateLimited = errorf(fasthttp.StatusTooManyRequests, "rate_limited", "too many requests from this address without the API key; retry later")

// limitKeyless refuses a keyless request over its address's rate, with
// Retry-After. Requests with the API key are not limited.
func (s *Server) limitKeyless(ctx *fasthttp.RequestCtx) error {
	if s.keyless == nil || authorize(ctx, s.o.APIKey) == nil {
		return nil
	}
	return s.limitAddress(ctx)
}

// limitAddress is limitKeyless for a request known to be keyless.
func (s *Server) limitAddress(ctx *fasthttp.RequestCtx) error {
	if s.keyless == nil || s.keyless.allow(clientKey(ctx), ctx.Time().UnixNano()) {
		return nil
	}
	s.m.rateLimited.Inc()
	ctx.Response.Header.Set("Retry-After", "1")
	return errRateLimited
}
