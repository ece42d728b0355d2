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

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
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

// startPeople starts watching the users file and opens the regulation on the store.
func (a *App) startPeople(b *backend) error {
	if a.users == nil {
		return nil
	}
	reg, err := regulation.New(a.Regulation.config(), b.kv)
	if err != nil {
		return err
	}
	a.regulator = reg
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

// CheckBasic checks Basic credentials of a caller at ip (Caddy's client IP). A right password
// is remembered (keyed by an HMAC of user, digest and password; sliding hour) so a script costs
// microseconds after its first request; digest checks run in the process-wide digest slots;
// failures count towards regulation, and a banned attempt pays a digest and fails as a wrong
// password would.
func (a *App) CheckBasic(ctx context.Context, username, password, ip string) (*UserIdentity, error) {
	if a.users == nil {
		return nil, ErrNoUsers
	}
	st := a.running()
	if st == nil || a.regulator == nil {
		return nil, ErrUnavailable
	}
	addr, _ := netip.ParseAddr(ip)
	db := a.users.Current()
	u, found := db.Lookup(username)
	if _, banned := a.regulator.Banned(username, addr); banned || !found {
		_, _ = clients.RunDigest(ctx, func() bool { users.Dummy(password); return false })
		a.failBasic(username, addr, banned)
		return nil, ErrBadCredentials
	}
	ok, _ := st.backend.secrets.Verify("user:"+username, u.Digest(), password, func() bool {
		ok, _ := clients.RunDigest(ctx, func() bool { return u.CheckPassword(password) })
		return ok
	})
	if !ok || u.Disabled {
		a.failBasic(username, addr, false)
		return nil, ErrBadCredentials
	}
	a.regulator.Succeed(username, addr)
	id := &UserIdentity{Username: u.Name, DisplayName: u.DisplayName, Groups: u.Groups, GroupString: strings.Join(u.Groups, ",")}
	if len(u.Emails) > 0 {
		id.Email = u.Emails[0]
	}
	return id, nil
}

func (a *App) failBasic(username string, addr netip.Addr, alreadyBanned bool) {
	if alreadyBanned {
		a.logger.Info("basic credentials refused", zap.String("reason", "banned"), zap.String("remote_ip", addr.String()))
		return
	}
	banned, err := a.regulator.Fail(username, addr)
	if err != nil {
		a.logger.Error("regulation", zap.Error(err))
	}
	fields := []zap.Field{zap.String("reason", "wrong credentials"), zap.String("remote_ip", addr.String())}
	if _, known := a.users.Current().Lookup(username); known {
		fields = append(fields, zap.String("user", username))
	}
	a.logger.Info("basic credentials refused", fields...)
	if banned {
		a.logger.Warn("sign-in attempts banned", zap.String("remote_ip", addr.String()), zap.Duration("ban_time", a.Regulation.config().BanTime))
	}
}
