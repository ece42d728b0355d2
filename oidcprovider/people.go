package oidcprovider

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/digest"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// RegulationConfig is Authelia's regulation block.
type RegulationConfig struct {
	// MaxRetries is how many failures within FindTime ban a (user, address) pair; 0 disables
	// regulation. JSON: "max_retries". Default: 3.
	MaxRetries *int `json:"max_retries,omitempty"`
	// FindTime is the window failures are counted in. JSON: "find_time". Default: 2m.
	FindTime caddy.Duration `json:"find_time,omitempty"`
	// BanTime is how long a ban lasts. JSON: "ban_time". Default: 5m.
	BanTime caddy.Duration `json:"ban_time,omitempty"`
}

func (c *RegulationConfig) config() regulation.Config {
	cfg := regulation.Config{MaxRetries: 3}
	if c != nil {
		if c.MaxRetries != nil {
			cfg.MaxRetries = *c.MaxRetries
		}
		cfg.FindTime, cfg.BanTime = time.Duration(c.FindTime), time.Duration(c.BanTime)
	}
	return cfg.WithDefaults()
}

// usersReload is how often the users file is checked for changes.
const usersReload = 2 * time.Second

// provisionPeople reads the users file, so a bad file fails caddy validate naming the user and
// the field.
func (a *App) provisionPeople() error {
	if r := a.Regulation; r != nil {
		switch {
		case r.MaxRetries != nil && *r.MaxRetries < 0:
			return fmt.Errorf("regulation: max_retries must be 0 (off) or more, got %d", *r.MaxRetries)
		case r.FindTime < 0:
			return fmt.Errorf("regulation: find_time must be positive")
		case r.BanTime < 0:
			return fmt.Errorf("regulation: ban_time must be positive")
		}
	}
	if a.UsersFile == "" {
		return nil
	}
	path, err := caddy.NewReplacer().ReplaceOrErr(a.UsersFile, true, true)
	if err != nil {
		return fmt.Errorf("users_file: %w", err)
	}
	f, err := users.Open(path)
	if err != nil {
		return fmt.Errorf("users_file: %w", err)
	}
	a.users = f
	return nil
}

// startPeople starts watching the users file, opens the regulation on the store, and builds the
// sessions, the second-factor devices and the portal.
func (a *App) startPeople(b *backend, st *runtimeState) error {
	if a.users == nil {
		return nil
	}
	reg, err := regulation.New(a.Regulation.config(), b.kv)
	if err != nil {
		return err
	}
	a.regulator = reg
	if err := a.startPortal(b, st); err != nil {
		return err
	}
	stop := make(chan struct{})
	a.mu.Lock()
	a.stopWatch = stop
	a.mu.Unlock()
	go a.users.Watch(usersReload, stop, func(changed bool, err error) {
		if err != nil {
			a.logger.Error("users file: keeping the last good version", zap.Error(err))
			return
		}
		a.logger.Info("users file reloaded", zap.String("users_file", a.users.Path()), zap.Int("users", a.users.Current().Len()))
	})
	return nil
}

func (a *App) stopWatching() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopWatch != nil {
		close(a.stopWatch)
		a.stopWatch = nil
	}
}

// UserIdentity is who valid Basic credentials speak for. It is immutable.
type UserIdentity struct {
	// Username is the user's name.
	Username string
	// DisplayName is the displayname, or the username.
	DisplayName string
	// Email is the primary address, or "".
	Email string
	// Groups are the user's groups.
	Groups []string
	// GroupString is Groups joined with commas, for Remote-Groups.
	GroupString string
}

// ErrNoUsers means no users_file is configured: Basic credentials are not ours.
var ErrNoUsers = errors.New("oidc: no users_file is configured")

// ErrBadCredentials is a wrong username or password, a disabled user, or a banned attempt: the
// same answer, at the same cost, for all of them.
var ErrBadCredentials = errors.New("oidc: the username or password is wrong")

// CheckBasic checks Basic credentials of a caller at ip (Caddy's client IP). When the caller
// leaves before the answer, the error is ctx's. A right password
// is remembered (keyed by an HMAC of user, digest and password; sliding hour) so a script costs
// microseconds after its first request. Each attempt counts towards regulation from the moment
// it begins, so simultaneous guesses cannot slip past the limit. An unknown user or a banned
// attempt waits as long as a digest check takes, without spending CPU on one, and gets the
// wrong-password answer; a disabled user pays a full check that is never remembered. A check
// that ran counts on its result even when the caller went away before the answer; only an
// attempt that never got a digest slot is given back.
func (a *App) CheckBasic(ctx context.Context, username, password, ip string) (*UserIdentity, error) {
	return a.checkPassword(ctx, username, password, ip, "basic")
}

// checkPassword is CheckBasic for a password given via "basic" (credentials on a request) or
// "portal" (the sign-in form): the log lines and metrics say which.
func (a *App) checkPassword(ctx context.Context, username, password, ip, via string) (*UserIdentity, error) {
	if a.users == nil {
		return nil, ErrNoUsers
	}
	st := a.running()
	if st == nil || a.regulator == nil {
		return nil, ErrUnavailable
	}
	addr, _ := netip.ParseAddr(ip)
	u, found := a.users.Current().Lookup(username)
	// a banned pair or address is refused before anything else, a remembered right password
	// included: otherwise the cache would answer a guesser during the ban
	if _, banned := a.regulator.Banned(username, addr); banned {
		if err := a.waitLikeADigest(ctx); err != nil {
			return nil, ErrUnavailable
		}
		a.refusePassword(via, username, found, addr, true, nil)
		return nil, ErrBadCredentials
	}
	// a remembered right password costs nothing and counts nothing: a script with many
	// connections never trips the limits with its own right password
	if found && !u.Disabled && st.backend.secrets.Remembered("user:"+username, u.Digest(), password) {
		if via != "basic" {
			a.metrics.signIn(via, "password", "success") // a sign-in, even with a remembered password
		}
		return userIdentity(u), nil
	}
	// identical attempts running at once (same user, password and address: a script opening
	// many connections) share one attempt and one check, so they count once; a guesser gains
	// nothing, since only identical guesses share. The attempt runs to its end even if this
	// caller leaves, and counts on its result.
	v, _, _ := a.passwordFlights.Do(flightKey(username, password, addr), func() (any, error) {
		id, err := a.attempt(context.WithoutCancel(ctx), st, u, found, username, password, addr, via)
		return passwordResult{id, err}, nil
	})
	if err := ctx.Err(); err != nil {
		return nil, err // the caller left: nothing to answer (the attempt counted all the same)
	}
	res := v.(passwordResult)
	return res.id, res.err
}

// passwordResult is the outcome of one password attempt, shared by identical callers.
type passwordResult struct {
	id  *UserIdentity
	err error
}

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
	for _, part := range []string{username, password, regulation.Address(addr)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:]) // length-prefixed, so no two splits of the same bytes share a key
		h.Write([]byte(part))
	}
	return string(h.Sum(nil))
}

// attempt is one regulated password check: counted from its start, settled on its result. It
// runs to its end whether or not the caller waits (ctx carries no cancellation).
func (a *App) attempt(ctx context.Context, st *runtimeState, u *users.User, found bool, username, password string, addr netip.Addr, via string) (*UserIdentity, error) {
	attempt, allowed := a.regulator.Begin(username, addr)
	if !allowed || !found {
		_ = a.waitLikeADigest(ctx)
		a.refusePassword(via, username, found, addr, !allowed, attempt)
		return nil, ErrBadCredentials
	}
	if u.Disabled {
		// the same work as a right user's check, and always a failure
		_, err := a.digest(ctx, func() bool { return u.CheckPassword(password) })
		a.refusePassword(via, username, found, addr, false, attempt)
		if err != nil {
			return nil, ErrUnavailable
		}
		return nil, ErrBadCredentials
	}
	var failed error
	ok, _ := st.backend.secrets.Verify("user:"+username, u.Digest(), password, func() bool {
		ok, err := a.digest(ctx, func() bool { return u.CheckPassword(password) })
		failed = err
		return ok
	})
	if failed != nil {
		// no digest slot: the check never ran, so the attempt is given back
		attempt.Abandoned()
		return nil, ErrUnavailable
	}
	// the check ran: it counts on its result even if the caller has gone, or a guesser who
	// hangs up before the answer would guess for free (and learn the answer from the cache)
	if !ok {
		a.refusePassword(via, username, found, addr, false, attempt)
		return nil, ErrBadCredentials
	}
	attempt.Succeeded()
	a.metrics.signIn(via, "password", "success")
	return userIdentity(u), nil
}

func userIdentity(u *users.User) *UserIdentity {
	id := &UserIdentity{Username: u.Name, DisplayName: u.DisplayName, Groups: u.Groups, GroupString: strings.Join(u.Groups, ",")}
	if len(u.Emails) > 0 {
		id.Email = u.Emails[0]
	}
	return id
}

// digestWait bounds how long a check waits for a digest slot.
const digestWait = 30 * time.Second

// digest runs a password check in the process-wide digest slots and keeps a running average of
// how long checks take, for waitLikeADigest.
func (a *App) digest(ctx context.Context, check func() bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, digestWait)
	defer cancel()
	var took time.Duration
	ok, err := digest.Run(ctx, func() bool {
		start := time.Now()
		defer func() { took = time.Since(start) }()
		return check()
	})
	if err == nil {
		// exponentially weighted: a new sample counts for an eighth
		old := digestAverage.Load()
		if old == 0 {
			digestAverage.Store(int64(took))
		} else {
			digestAverage.Store(old + (int64(took)-old)/8)
		}
	}
	return ok, err
}

// digestAverage is the running average duration of a password check, in nanoseconds.
var digestAverage atomic.Int64

// waitLikeADigest waits about as long as a password check takes (the running average, or 100ms
// before the first check), so an unknown user or a banned attempt answers no faster than a wrong
// password, without spending a digest slot: a flood of them cannot starve real checks.
func (a *App) waitLikeADigest(ctx context.Context) error {
	d := time.Duration(digestAverage.Load())
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

func (a *App) refusePassword(via, username string, known bool, addr netip.Addr, banned bool, attempt *regulation.Attempt) {
	fields := []zap.Field{zap.String("via", via), zap.String("remote_ip", addr.String())}
	if known {
		fields = append(fields, zap.String("user", username))
	}
	if banned {
		a.logger.Info("password refused", append(fields, zap.String("reason", "banned"))...)
		a.metrics.signIn(via, "password", "banned")
		return
	}
	a.logger.Info("password refused", append(fields, zap.String("reason", "wrong credentials"))...)
	a.metrics.signIn(via, "password", "failure")
	if attempt != nil && attempt.Banned {
		a.metrics.banned()
		a.logger.Warn("sign-in attempts banned", zap.String("remote_ip", addr.String()), zap.Duration("ban_time", a.Regulation.config().BanTime))
	}
}
