package clients

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter counts failed attempts per key with a token bucket per key (golang.org/x/time/rate):
// Burst attempts, regaining one every Interval. An attempt takes a token before the expensive
// check and gives it back when the check succeeds, so concurrent guesses cannot all get past the
// limit before their failures are counted. At most MaxKeys keys are tracked; beyond that, keys
// whose bucket is full again (which carry no information) are forgotten first. It is safe for
// concurrent use; the zero value is not usable.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	now     func() time.Time
}

// NewLimiter returns a limiter of burst attempts per key, regaining one every interval, tracking
// at most maxKeys keys.
func NewLimiter(burst int, interval time.Duration, maxKeys int) *Limiter {
	return &Limiter{limit: rate.Every(interval), burst: burst, maxKeys: maxKeys, buckets: map[string]*rate.Limiter{}, now: time.Now}
}

// Attempt is a token taken from a key's bucket.
type Attempt struct {
	r  *rate.Reservation
	at time.Time
}

// Take takes a token for key. ok is false when the key has none left (the attempt is refused and
// nothing is taken).
func (l *Limiter) Take(key string) (a Attempt, ok bool) {
	now := l.now()
	l.mu.Lock()
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= l.maxKeys {
			l.sweepLocked(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if !r.OK() || r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return Attempt{}, false
	}
	return Attempt{r: r, at: now}, true
}

// GiveBack returns the token of a successful attempt. It cancels the reservation as of the time
// it was made: rate.Reservation.Cancel at a later time restores nothing once the reservation's
// moment has passed, which is always the case after a digest check.
func (a Attempt) GiveBack() {
	if a.r != nil {
		a.r.CancelAt(a.at)
	}
}

// Throttled reports whether key has no tokens left, without taking one.
func (l *Limiter) Throttled(key string) bool {
	l.mu.Lock()
	b, ok := l.buckets[key]
	l.mu.Unlock()
	return ok && b.TokensAt(l.now()) < 1
}

// sweepLocked forgets keys whose bucket is full again; if none is, it forgets half the keys, so
// memory stays bounded under a flood of distinct keys.
func (l *Limiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
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
