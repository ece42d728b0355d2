// Package regulation bans sign-in attempts after repeated failures, as Authelia's regulation
// does (max_retries failures within find_time ban for ban_time), with one difference: failures
// are counted per (user, address) and per address, never per user alone, so a guesser from one
// address cannot lock a user out everywhere. Bans are kept in the store and survive a restart;
// on a single node the failure counts behind them live in memory (find_time is short), and on a
// store several nodes share they are kept in the store too, so that every node counts them (see
// shared.go).
package regulation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Config is Authelia's regulation block.
type Config struct {
	// MaxRetries is how many failures within FindTime ban a (user, address) pair; 0 disables
	// regulation. Authelia's default: 3.
	MaxRetries int
	// FindTime is the window failures are counted in. Authelia's default: 2m.
	FindTime time.Duration
	// BanTime is how long a ban lasts. Authelia's default: 5m.
	BanTime time.Duration
	// AddressRetries is how many failures within FindTime, across all users, ban an address.
	// Default: 3 × MaxRetries, at least 10 (a household or an office shares an address).
	AddressRetries int
	// SecondFactorRetries is how many second-factor failures of one user within FindTime, from
	// any address, ban that user's second factor everywhere: only someone who has the password
	// can cause them, and a code space of a million must not be searched from many addresses.
	// Default: 3 × MaxRetries, at least 10.
	SecondFactorRetries int
}

// WithDefaults fills Authelia's defaults for zero durations and the address limit.
func (c Config) WithDefaults() Config {
	if c.FindTime == 0 {
		c.FindTime = 2 * time.Minute
	}
	if c.BanTime == 0 {
		c.BanTime = 5 * time.Minute
	}
	if c.AddressRetries == 0 {
		c.AddressRetries = max(10, 3*c.MaxRetries)
	}
	if c.SecondFactorRetries == 0 {
		c.SecondFactorRetries = max(10, 3*c.MaxRetries)
	}
	return c
}

// maxTracked bounds the failure records kept in memory; past it, the oldest are dropped.
const maxTracked = 100_000

// Regulator counts failures and keeps bans. It is safe for concurrent use.
type Regulator struct {
	cfg Config
	kv  store.KV // where bans are kept; nil keeps them in memory only
	now func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // key → failure times within FindTime, oldest first (one node)
	bans     map[string]time.Time   // key → end of the ban
	// sh is set on a store several nodes share: failures are counted in the store, and bans
	// follow its change feed.
	sh *shared
	cr store.Creator // kv, on a store several nodes share: claims the attempts' slots
}

const banPrefix = "ban/"

// New returns a regulator; with kv, it reads the bans kept there (under ctx) and keeps new ones.
// When kv is shared by several nodes (it implements store.Changes), failures are counted in it
// and bans follow its change feed: call Close when the regulator is no longer used.
func New(ctx context.Context, cfg Config, kv store.KV) (*Regulator, error) {
	r := &Regulator{cfg: cfg.WithDefaults(), kv: kv, now: time.Now, failures: map[string][]time.Time{}, bans: map[string]time.Time{}}
	if kv == nil {
		return r, nil
	}
	if ch, ok := kv.(store.Changes); ok && r.cfg.MaxRetries > 0 {
		cr, ok := kv.(store.Creator)
		if !ok {
			return nil, errors.New("regulation: a store several nodes share must be able to create a record atomically (store.Creator)")
		}
		r.cr = cr
		r.follow(ch)
		return r, nil
	}
	bans, err := r.readBans(ctx)
	if err != nil {
		return nil, err
	}
	r.bans = bans
	return r, nil
}

// pairKey keys a (user, address) pair by a hash of the username, so a made-up name of any length
// costs the same few bytes.
func pairKey(user string, ip netip.Addr) string {
	h := sha256.Sum256([]byte(user))
	return "u/" + hex.EncodeToString(h[:16]) + "|" + clientaddr.Key(ip)
}
func addressKey(ip netip.Addr) string { return "a/" + clientaddr.Key(ip) }

// factorKey keys a user's second-factor failures from every address.
func factorKey(user string) string {
	h := sha256.Sum256([]byte(user))
	return "f/" + hex.EncodeToString(h[:16])
}

// Banned reports whether a sign-in of user from ip is refused, and until when. Callers answer a
// banned attempt exactly as a wrong password, at the same cost, so a ban tells a guesser nothing.
// On a shared store that cannot be read when it must be, it reports a ban (see Check).
func (r *Regulator) Banned(user string, ip netip.Addr) (time.Time, bool) {
	until, banned, err := r.Check(context.Background(), user, ip)
	if err != nil {
		return r.now().Add(time.Second), true
	}
	return until, banned
}

// Check is Banned, with the store's error: on a shared store it answers from memory while memory
// is in step with the store's change feed, and otherwise reads the bans from the store (under
// ctx), whose error it returns.
func (r *Regulator) Check(ctx context.Context, user string, ip netip.Addr) (time.Time, bool, error) {
	if r.cfg.MaxRetries <= 0 {
		return time.Time{}, false, nil
	}
	now := r.now()
	if r.sh != nil {
		until, err := r.sharedBan(ctx, []string{pairKey(user, ip), addressKey(ip)}, now)
		return until, !until.IsZero(), err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var until time.Time
	for _, k := range []string{pairKey(user, ip), addressKey(ip)} {
		if end, ok := r.bans[k]; ok {
			if now.Before(end) {
				until = later(until, end)
			} else {
				delete(r.bans, k)
			}
		}
	}
	return until, !until.IsZero(), nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Attempt is a sign-in attempt, counted as a failure from the moment it begins, so attempts
// running at the same time cannot all get past the limit before their failures are counted.
// Settle it with Succeeded or Abandoned; a failed attempt needs nothing more.
type Attempt struct {
	r    *Regulator
	ctx  context.Context // the caller's, for the bans this attempt lifts
	keys []counted       // the pair first, then the address, then (second factors) the user
	at   time.Time
	// Banned reports that this attempt reached a limit: later attempts are refused.
	Banned bool
	id     string // names the attempt in the slots it holds on a shared store
	slots  []int  // on a shared store, the slot it holds of each key
}

// counted is one key an attempt counts against, and the failures that ban it.
type counted struct {
	key   string
	limit int
	// pardon: a success clears the key's failures and ban (the pair, the user's second
	// factor); otherwise it only gives this attempt back (the address)
	pardon bool
}

// Begin starts an attempt of user from ip: false when the pair or the address is banned (the
// caller answers as for a wrong password); otherwise the attempt is counted, and if it reaches a
// limit the ban begins at once.
func (r *Regulator) Begin(ctx context.Context, user string, ip netip.Addr) (*Attempt, bool) {
	a, ok, err := r.begin(ctx, user, ip, false)
	return a, ok && err == nil
}

// Enter is Begin with the store's error: on a shared store that cannot be read or written, the
// attempt is refused with the error (the caller answers that the service is unavailable, not
// that the password is wrong). On a single node it never fails.
func (r *Regulator) Enter(ctx context.Context, user string, ip netip.Addr) (*Attempt, bool, error) {
	return r.begin(ctx, user, ip, false)
}

// BeginSecondFactor starts a second-factor attempt of user from ip: as Begin, and also counted
// against the user's second factor from every address (SecondFactorRetries).
func (r *Regulator) BeginSecondFactor(ctx context.Context, user string, ip netip.Addr) (*Attempt, bool) {
	a, ok, err := r.begin(ctx, user, ip, true)
	return a, ok && err == nil
}

func (r *Regulator) begin(ctx context.Context, user string, ip netip.Addr, secondFactor bool) (*Attempt, bool, error) {
	if r.cfg.MaxRetries <= 0 {
		return &Attempt{}, true, nil
	}
	now := r.now()
	a := &Attempt{r: r, ctx: ctx, at: now, keys: []counted{
		{key: pairKey(user, ip), limit: r.cfg.MaxRetries, pardon: true},
		{key: addressKey(ip), limit: r.cfg.AddressRetries},
	}}
	if secondFactor {
		a.keys = append(a.keys, counted{key: factorKey(user), limit: r.cfg.SecondFactorRetries, pardon: true})
	}
	if r.sh != nil {
		return r.beginShared(ctx, a)
	}
	var newBans []string
	r.mu.Lock()
	for _, c := range a.keys {
		if end, ok := r.bans[c.key]; ok {
			if now.Before(end) {
				r.mu.Unlock()
				return nil, false, nil
			}
			delete(r.bans, c.key)
		}
	}
	for _, c := range a.keys {
		times := append(r.recent(c.key, now), now)
		r.failures[c.key] = times
		if len(times) >= c.limit {
			r.bans[c.key] = now.Add(r.cfg.BanTime)
			newBans = append(newBans, c.key)
		}
	}
	r.trim(now)
	r.mu.Unlock()
	a.Banned = len(newBans) > 0
	r.persist(ctx, newBans, now)
	return a, true, nil
}

// persist keeps new bans in the store. A ban is kept even when the caller has gone (a guesser
// who hangs up must not escape it), so the write does not take the caller's cancellation.
func (r *Regulator) persist(ctx context.Context, keys []string, now time.Time) {
	if r.kv == nil || len(keys) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	until, _ := now.Add(r.cfg.BanTime).MarshalText()
	for _, k := range keys {
		_ = r.kv.Put(ctx, store.Entry{Key: []byte(banPrefix + k), Value: until, TTL: r.cfg.BanTime})
	}
}

// Succeeded settles a right password (or second factor): the pair's failures and any ban on
// the pair are cleared (and the user's second-factor ones), and the address gets this attempt
// back.
func (a *Attempt) Succeeded() {
	if a.r == nil {
		return
	}
	if a.r.sh != nil {
		a.r.settleShared(a, false)
		return
	}
	lifted := make([]bool, len(a.keys))
	a.r.mu.Lock()
	for i, c := range a.keys {
		if c.pardon {
			delete(a.r.failures, c.key)
			_, lifted[i] = a.r.bans[c.key]
			delete(a.r.bans, c.key)
		} else {
			lifted[i] = a.giveBackLocked(c.key, c.limit)
		}
	}
	a.r.mu.Unlock()
	for i, c := range a.keys {
		a.r.forget(a.ctx, lifted[i], c.key)
	}
}

// Abandoned settles an attempt whose check never ran (the caller went away while it waited for
// a digest slot): it is given back, and a ban it alone caused is lifted. An attempt whose check
// ran must be settled on its result, even if the caller has gone: otherwise a guesser who hangs
// up early would guess for free.
func (a *Attempt) Abandoned() {
	if a.r == nil {
		return
	}
	if a.r.sh != nil {
		a.r.settleShared(a, true)
		return
	}
	lifted := make([]bool, len(a.keys))
	a.r.mu.Lock()
	for i, c := range a.keys {
		lifted[i] = a.giveBackLocked(c.key, c.limit)
	}
	a.r.mu.Unlock()
	for i, c := range a.keys {
		a.r.forget(a.ctx, lifted[i], c.key)
	}
}

// giveBackLocked removes this attempt's failure from key and lifts key's ban when the count is
// back under limit; it reports whether a ban was lifted. r.mu is held.
func (a *Attempt) giveBackLocked(key string, limit int) bool {
	times := a.r.failures[key]
	for i, t := range times {
		if t.Equal(a.at) {
			times = append(times[:i:i], times[i+1:]...)
			break
		}
	}
	if len(times) == 0 {
		delete(a.r.failures, key)
	} else {
		a.r.failures[key] = times
	}
	if _, banned := a.r.bans[key]; banned && len(times) < limit {
		delete(a.r.bans, key)
		return true
	}
	return false
}

// forget removes a lifted ban from the store, like persist whether or not the caller stays.
func (r *Regulator) forget(ctx context.Context, lifted bool, key string) {
	if lifted && r.kv != nil {
		_ = r.kv.Delete(context.WithoutCancel(ctx), []byte(banPrefix+key))
	}
}

// Fail records a failed sign-in of user from ip (Begin, settled as a failure); it reports
// whether a new ban began.
func (r *Regulator) Fail(ctx context.Context, user string, ip netip.Addr) (banned bool, err error) {
	a, ok, err := r.begin(ctx, user, ip, false)
	if !ok || err != nil {
		return false, err
	}
	return a.Banned, nil
}

// Succeed clears the failures of the pair after a good sign-in (the address keeps its count:
// one right password does not excuse a spray across users).
func (r *Regulator) Succeed(user string, ip netip.Addr) {
	if r.sh != nil {
		recs := make([][]byte, r.cfg.MaxRetries)
		for n := range recs {
			recs[n] = slotKey(pairKey(user, ip), n)
		}
		_ = r.kv.Delete(context.Background(), recs...)
		return
	}
	r.mu.Lock()
	delete(r.failures, pairKey(user, ip))
	r.mu.Unlock()
}

// recent is key's failures still within FindTime; r.mu is held.
func (r *Regulator) recent(key string, now time.Time) []time.Time {
	times := r.failures[key]
	i := 0
	for i < len(times) && now.Sub(times[i]) >= r.cfg.FindTime {
		i++
	}
	return times[i:]
}

// trim drops expired records when too many are tracked; r.mu is held.
func (r *Regulator) trim(now time.Time) {
	if len(r.failures)+len(r.bans) <= maxTracked {
		return
	}
	for k, times := range r.failures {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= r.cfg.FindTime {
			delete(r.failures, k)
		}
	}
	for k, end := range r.bans {
		if !now.Before(end) {
			delete(r.bans, k)
		}
	}
	// still too many: drop failure records (never bans) until under the bound
	for k := range r.failures {
		if len(r.failures)+len(r.bans) <= maxTracked {
			break
		}
		delete(r.failures, k)
	}
}
