// Package throttle limits failed attempts per key (a client id, a source address). Each key has a
// token bucket of Burst failures refilled at one per Interval; once it is empty the key is
// throttled until a token comes back, so a guesser gets a fast refusal instead of a digest check.
package throttle

import (
	"sync"
	"time"
)

type bucket struct {
	tokens float64
	last   time.Time
}

// Limiter tracks failures per key. It is safe for concurrent use; the zero value is not usable.
type Limiter struct {
	burst    float64
	interval time.Duration
	maxKeys  int

	mu      sync.Mutex
	buckets map[string]*bucket
	now     func() time.Time
}

// New returns a limiter that allows burst failures per key, regaining one every interval, and
// tracks at most maxKeys keys (beyond that, full buckets are forgotten first).
func New(burst int, interval time.Duration, maxKeys int) *Limiter {
	return &Limiter{burst: float64(burst), interval: interval, maxKeys: maxKeys, buckets: map[string]*bucket{}, now: time.Now}
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens += float64(el) / float64(l.interval)
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
		b.last = now
	}
}

// Throttled reports whether key has no failures left and, if so, how long until it has one.
func (l *Limiter) Throttled(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return false, 0
	}
	l.refill(b, l.now())
	if b.tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - b.tokens) * float64(l.interval))
}

// Fail records one failure for key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.sweepLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens--
	if b.tokens < 0 {
		b.tokens = 0
	}
}

// sweepLocked forgets keys whose bucket is full again; if none is, it forgets half the keys, so
// memory stays bounded under a flood of distinct keys.
func (l *Limiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.maxKeys {
		return
	}
	n := len(l.buckets) / 2
	for k := range l.buckets {
		if n == 0 {
			break
		}
		delete(l.buckets, k)
		n--
	}
}
