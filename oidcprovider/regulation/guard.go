package regulation

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// ErrBadCredentials is a wrong username or password, a disabled user, or a banned attempt: the
// same answer, at the same cost, for all of them.
var ErrBadCredentials = errors.New("regulation: the username or password is wrong")

// ErrBusy means no digest slot came free within the guard's wait: the check never ran, and the
// attempt was given back.
var ErrBusy = errors.New("regulation: every digest slot stayed busy; try again later")

// Outcome is how a password check ended.
type Outcome uint8

// Outcomes of a password check.
const (
	// Accepted is a right password of an enabled user.
	Accepted Outcome = iota + 1
	// Refused is a wrong password, an unknown user or a disabled one.
	Refused
	// Banned is an attempt refused, without a check, because the pair or the address is banned.
	Banned
)

// Report tells of one settled password check, for logs and metrics. It never holds the password.
// Identical attempts that share one check (see Guard.Check) make one report.
type Report struct {
	// Via is the caller's name for where the password came from ("basic", "portal").
	Via string
	// Username is the name as presented; Known tells whether the users file has it, so a log
	// need not echo a made-up name.
	Username string
	Known    bool
	// Addr is the caller's address.
	Addr netip.Addr
	// Outcome is how the check ended.
	Outcome Outcome
	// Remembered is an Accepted answer from the verified-secret cache, without a digest check
	// and without counting anything.
	Remembered bool
	// NewBan is a Refused attempt that began a ban of the pair or the address.
	NewBan bool
}

// GuardConfig is what a Guard checks against.
type GuardConfig struct {
	// Regulator counts the attempts and keeps the bans. Required.
	Regulator *Regulator
	// Users is where the people come from (the users file or an LDAP directory). Required.
	Users users.Directory
	// Cache remembers right passwords (under the id "user:"+name). Required.
	Cache *digest.Cache
	// Report, when set, is told of every settled check.
	Report func(Report)
	// SlotWait bounds how long a check waits for a digest slot. Default: 30s.
	SlotWait time.Duration
}

// Guard checks the passwords of the people of a users file under regulation, for Basic
// credentials on a request and for the portal's sign-in form alike:
//
//   - A banned (user, address) pair or address is refused before anything else, a remembered
//     right password included (otherwise the cache would answer a guesser during the ban); a
//     banned address before the directory is even asked.
//   - A remembered right password (keyed by an HMAC of user, digest and password; sliding hour)
//     costs one HMAC and counts nothing, so a script with many connections costs microseconds
//     after its first request and never trips the limits with its own right password.
//   - Every other attempt counts towards regulation from the moment it begins, so simultaneous
//     guesses cannot slip past the limit; its digest check runs in one of the process-wide digest
//     slots (package digest). A check that ran counts on its result even if the caller went away
//     before the answer; only an attempt that never got a slot is given back (ErrBusy).
//   - Identical attempts running at once (same user, password and address: a script opening many
//     connections) share one attempt and one check, so they count once; a guesser gains nothing,
//     since only identical guesses share.
//   - An unknown user or a banned attempt waits about as long as a digest check takes, without
//     spending a slot, and gets the wrong-password answer; a disabled user pays a full check that
//     is never remembered.
//
// It is safe for concurrent use.
type Guard struct {
	cfg     GuardConfig
	flights singleflight.Group
}

// NewGuard returns a guard over cfg.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.SlotWait <= 0 {
		cfg.SlotWait = 30 * time.Second
	}
	return &Guard{cfg: cfg}
}

// Close stops what the guard's regulator follows (see Regulator.Close); nil-safe.
func (g *Guard) Close() {
	if g != nil {
		g.cfg.Regulator.Close()
	}
}

// Regulator is the regulator the guard counts with (the portal's second factors count with it
// too).
func (g *Guard) Regulator() *Regulator { return g.cfg.Regulator }

// Check checks the password of username presented from addr, via "basic" or "portal" (for the
// reports). It returns the user for a right password of an enabled user; ErrBadCredentials for a
// wrong password, an unknown or disabled user or a banned attempt; ErrBusy when no digest slot
// came free in time; on a store several nodes share, the store's error (wrapping
// store.ErrUnavailable when its database is down) when the bans or the count cannot be read.
//
// A caller who leaves gets its context's error, whatever the branch: when ctx ends before the
// answer is ready (while the check waits for the equalising delay, a digest slot or an identical
// attempt), Check returns ctx.Err() (the gateway answers 499, as for any caller who left). The
// attempt still counts as it would have: a check that began runs to its end and counts on its
// result.
func (g *Guard) Check(ctx context.Context, username, password string, addr netip.Addr, via string) (*users.User, error) {
	// a banned address is refused before the directory is asked: otherwise a banned guesser
	// could go on making a directory search (and a cache entry) of every name it sends
	if _, banned, err := g.cfg.Regulator.Check(ctx, strings.ToLower(username), addr); err != nil {
		return nil, err
	} else if banned {
		if err := waitLikeADigest(ctx); err != nil {
			return nil, err
		}
		g.report(Report{Via: via, Username: strings.ToLower(username), Addr: addr, Outcome: Banned})
		return nil, ErrBadCredentials
	}
	u, err := g.cfg.Users.Lookup(ctx, username)
	found := err == nil
	switch {
	case found:
		// the directory's spelling is the identity: "John", "john" and john's mail address
		// share one failure count and one remembered password
		username = u.Name
	case errors.Is(err, users.ErrNotFound):
		// an unknown name counts under one spelling, however it is written
		username = strings.ToLower(username)
	default:
		return nil, err // the directory cannot be asked: nothing is counted, nothing passes
	}
	if _, banned, err := g.cfg.Regulator.Check(ctx, username, addr); err != nil {
		return nil, err
	} else if banned {
		if err := waitLikeADigest(ctx); err != nil {
			return nil, err
		}
		g.report(Report{Via: via, Username: username, Known: found, Addr: addr, Outcome: Banned})
		return nil, ErrBadCredentials
	}
	if found && !u.Disabled && u.Digest() != "" && g.cfg.Cache.Remembered(cacheID(username), u.Digest(), password) {
		g.report(Report{Via: via, Username: username, Known: true, Addr: addr, Outcome: Accepted, Remembered: true})
		return u, nil
	}
	// the attempt runs to its end even if this caller leaves, and counts on its result
	v, _, _ := g.flights.Do(flightKey(username, password, addr), func() (any, error) {
		return g.attempt(context.WithoutCancel(ctx), u, found, username, password, addr, via), nil
	})
	if err := ctx.Err(); err != nil {
		return nil, err // the caller left: nothing to answer (the attempt counted all the same)
	}
	res := v.(result)
	return res.user, res.err
}

// result is the outcome of one attempt, shared by identical callers.
type result struct {
	user *users.User
	err  error
}

// cacheID is a user's id in the verified-secret cache, apart from every client id.
func cacheID(username string) string { return "user:" + username }

// flightSalt keeps the in-flight keys from being plain hashes of passwords.
var flightSalt = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// flightKey identifies identical password attempts: user, password and address.
func flightKey(username, password string, addr netip.Addr) string {
	h := sha256.New()
	h.Write(flightSalt)
	for _, part := range []string{username, password, clientaddr.Key(addr)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:]) // length-prefixed, so no two splits of the same bytes share a key
		h.Write([]byte(part))
	}
	return string(h.Sum(nil))
}

// attempt is one regulated password check: counted from its start, settled on its result. It
// runs to its end whether or not the caller waits (ctx carries no cancellation).
func (g *Guard) attempt(ctx context.Context, u *users.User, found bool, username, password string, addr netip.Addr, via string) result {
	refused := Report{Via: via, Username: username, Known: found, Addr: addr, Outcome: Refused}
	attempt, allowed, err := g.cfg.Regulator.Enter(ctx, username, addr)
	if err != nil {
		return result{err: err} // the store cannot count it: nothing was checked
	}
	if !allowed || !found {
		_ = waitLikeADigest(ctx)
		if !allowed {
			refused.Outcome = Banned
		} else {
			refused.NewBan = attempt.Banned
		}
		g.report(refused)
		return result{err: ErrBadCredentials}
	}
	refused.NewBan = attempt.Banned
	if u.Disabled {
		// the same work as a right user's check, and always a failure
		_, _, err := g.check(ctx, u, password)
		g.report(refused)
		if err != nil {
			return result{err: ErrBusy}
		}
		return result{err: ErrBadCredentials}
	}
	var failed, unreachable error
	verify := func() bool {
		ok, dirErr, err := g.check(ctx, u, password)
		failed, unreachable = err, dirErr
		return ok
	}
	var ok bool
	if u.Digest() == "" {
		ok = verify() // nothing to remember it under
	} else {
		ok, _ = g.cfg.Cache.Verify(cacheID(username), u.Digest(), password, verify)
	}
	switch {
	case failed != nil:
		// no digest slot: the check never ran, so the attempt is given back
		attempt.Abandoned()
		return result{err: ErrBusy}
	case unreachable != nil:
		// the directory could not answer: nothing was learnt, so nothing counts
		attempt.Abandoned()
		return result{err: unreachable}
	}
	// the check ran: it counts on its result even if the caller has gone, or a guesser who
	// hangs up before the answer would guess for free (and learn the answer from the cache)
	if !ok {
		g.report(refused)
		return result{err: ErrBadCredentials}
	}
	attempt.Succeeded()
	g.report(Report{Via: via, Username: username, Known: true, Addr: addr, Outcome: Accepted})
	return result{user: u}
}

// check runs the directory's password check in a digest slot: err when no slot came free,
// dirErr when the directory could not answer (a wrong password is ok false, both nil).
func (g *Guard) check(ctx context.Context, u *users.User, password string) (ok bool, dirErr, err error) {
	ok, err = g.digest(ctx, func() bool {
		match, e := g.cfg.Users.CheckPassword(ctx, u, password)
		dirErr = e
		return match && e == nil
	})
	return ok, dirErr, err
}

func (g *Guard) report(r Report) {
	if g.cfg.Report != nil {
		g.cfg.Report(r)
	}
}

// digest runs a password check in the process-wide digest slots, waiting at most SlotWait for
// one, and keeps the running average of how long checks take, for waitLikeADigest.
func (g *Guard) digest(ctx context.Context, check func() bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.SlotWait)
	defer cancel()
	var took time.Duration
	ok, err := digest.Run(ctx, func() bool {
		start := time.Now()
		defer func() { took = time.Since(start) }()
		return check()
	})
	if err == nil {
		// exponentially weighted: a new sample counts for an eighth
		old := checkAverage.Load()
		if old == 0 {
			checkAverage.Store(int64(took))
		} else {
			checkAverage.Store(old + (int64(took)-old)/8)
		}
	}
	return ok, err
}

// checkAverage is the running average duration of a password check, in nanoseconds. It is
// process-wide, as the digest slots are: the cost of a check does not change with a config
// reload.
var checkAverage atomic.Int64

// waitLikeADigest waits about as long as a password check takes (the running average, or 100ms
// before the first check), so an unknown user or a banned attempt answers no faster than a wrong
// password, without spending a digest slot: a flood of them cannot starve real checks.
func waitLikeADigest(ctx context.Context) error {
	d := time.Duration(checkAverage.Load())
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
