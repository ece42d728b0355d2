package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
	"github.com/portcullis-auth/portcullis/oidcprovider/users/ldap"
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
func (a *App) provisionPeople(repl *caddy.Replacer) error {
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
	if err := a.provisionNotifier(repl); err != nil {
		return err
	}
	if a.LDAP != nil {
		if a.UsersFile != "" {
			return errors.New("users_file and ldap are both given: people come from one of them; remove one")
		}
		cfg, err := resolveLDAP(repl, *a.LDAP, a.logger)
		if err != nil {
			return err
		}
		dir, err := ldap.New(cfg, a.logger.Named("ldap"))
		if err != nil {
			return err
		}
		a.ldapDirectory, a.directory = dir, dir
		return nil
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
	a.usersFile = f
	a.directory = f
	return nil
}

// provisionNotifier checks the notifier block and builds the notifier (it connects to nothing).
func (a *App) provisionNotifier(repl *caddy.Replacer) error {
	if a.Notifier == nil {
		return nil
	}
	cfg, err := a.Notifier.Resolve(func(v string) (string, error) { return repl.ReplaceOrErr(v, true, true) })
	if err != nil {
		return err
	}
	n, err := notify.New(cfg, a.logger.Named("notifier"))
	if err != nil {
		return err
	}
	a.notifier = n
	return nil
}

// checkAtStart asks the directory and the notifier whether they answer, in the background, and
// logs what it learns: neither stops the server (a directory or mail server down at start may
// be back in a minute).
func (a *App) checkAtStart() {
	const bound = 15 * time.Second
	if d := a.ldapDirectory; d != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			if err := d.Check(ctx); err != nil {
				a.logger.Error("ldap: the directory does not answer; sign-ins fail (503) until it does", zap.Error(err))
				return
			}
			a.logger.Info("ldap: the directory answers", zap.String("address", d.Config().Address))
		}()
	}
	if n := a.notifier; n != nil && (a.Notifier == nil || !a.Notifier.DisableStartupCheck) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			if err := n.Check(ctx); err != nil {
				a.logger.Error("notifier: messages cannot be delivered; codes and reset links will fail until they can", zap.Error(err))
				return
			}
			a.logger.Info("notifier: messages can be delivered")
		}()
	}
}

// startPeople puts the users file in the running state with what serves its people: the
// regulation on the store, the password guard, the sessions, the second-factor devices and the
// portal.
func (a *App) startPeople(ctx context.Context, b *backend, st *runtimeState) error {
	if a.directory == nil {
		return nil
	}
	st.users, st.usersFile = a.directory, a.usersFile
	reg, err := regulation.New(ctx, a.Regulation.config(), b.kv)
	if err != nil {
		return err
	}
	st.guard = regulation.NewGuard(regulation.GuardConfig{
		Regulator: reg,
		Users:     st.users,
		Cache:     b.secrets,
		Report:    a.passwordChecked,
	})
	return a.startPortal(b, st)
}

// watchUsers starts watching the running state's users file, until Stop closes st.stopWatch.
func (a *App) watchUsers(st *runtimeState) {
	if st.usersFile == nil {
		return
	}
	f := st.usersFile
	st.stopWatch = make(chan struct{})
	go f.Watch(usersReload, st.stopWatch, func(changed bool, err error) {
		if err != nil {
			a.logger.Error("users file: keeping the last good version", zap.Error(err))
			return
		}
		a.logger.Info("users file reloaded", zap.String("users_file", f.Path()), zap.Int("users", f.Current().Len()))
	})
}

// runningPeople returns the running state for a request about people: ErrNoUsers without a
// users_file, ErrUnavailable while the store is not open.
func (a *App) runningPeople() (*runtimeState, error) {
	if a.directory == nil {
		return nil, ErrNoUsers
	}
	st := a.running()
	if st == nil || st.users == nil {
		return nil, ErrUnavailable
	}
	return st, nil
}

// checkPassword is CheckBasic for a password given via "basic" (credentials on a request) or
// "portal" (the sign-in form): the log lines and metrics say which.
func (a *App) checkPassword(ctx context.Context, username, password, ip, via string) (*UserIdentity, error) {
	st, err := a.runningPeople()
	if err != nil {
		return nil, err
	}
	if !st.backend.trusted() {
		// bans are shared through the store: while its database cannot be reached, whether
		// another node has banned this caller is unknown, and a failure here could not be
		// shared, so no password is checked (503), right or wrong
		return nil, ErrUnavailable
	}
	addr, _ := netip.ParseAddr(ip)
	u, err := st.guard.Check(ctx, username, password, addr, via)
	switch {
	case err == nil:
		return identityOf(u), nil
	case errors.Is(err, regulation.ErrBadCredentials):
		return nil, ErrBadCredentials
	case errors.Is(err, regulation.ErrBusy):
		return nil, ErrUnavailable
	case errors.Is(err, users.ErrUnavailable):
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err) // the directory: 503, never a pass
	case ctx.Err() != nil:
		return nil, err // the caller left
	default:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err) // a shared store could not count it
	}
}

// identityOf is u's identity for the gateway, built once per User (a directory hands out a new
// User when one changes), so the cookie check builds none per request.
func identityOf(u *users.User) *UserIdentity {
	return u.Memo(func() any { return userIdentity(u) }).(*UserIdentity)
}

func userIdentity(u *users.User) *UserIdentity {
	id := &UserIdentity{Username: u.Name, DisplayName: u.DisplayName, Groups: u.Groups, GroupString: strings.Join(u.Groups, ",")}
	if len(u.Emails) > 0 {
		id.Email = u.Emails[0]
	}
	return id
}

// passwordChecked logs a refused password and counts every check in the metrics. A remembered
// Basic password is not counted (a script would swamp the figures); a remembered one at the
// portal is a sign-in all the same.
func (a *App) passwordChecked(r regulation.Report) {
	if r.Outcome == regulation.Accepted {
		if !r.Remembered || r.Via != "basic" {
			a.metrics.signIn(r.Via, "password", "success")
		}
		return
	}
	fields := []zap.Field{zap.String("via", r.Via), zap.String("remote_ip", r.Addr.String())}
	if r.Known {
		fields = append(fields, zap.String("user", r.Username))
	}
	if r.Outcome == regulation.Banned {
		a.logger.Info("password refused", append(fields, zap.String("reason", "banned"))...)
		a.metrics.signIn(r.Via, "password", "banned")
		return
	}
	a.logger.Info("password refused", append(fields, zap.String("reason", "wrong credentials"))...)
	a.metrics.signIn(r.Via, "password", "failure")
	if r.NewBan {
		a.metrics.banned()
		a.logger.Warn("sign-in attempts banned", zap.String("remote_ip", r.Addr.String()), zap.Duration("ban_time", a.Regulation.config().BanTime))
	}
}
