package oidcprovider

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
)

// IdentityValidationConfig is Authelia's identity_validation block: how people prove who they
// are before a sensitive change to their account.
type IdentityValidationConfig struct {
	// ElevatedSession is the proof asked before a second factor is added or removed and before
	// a password change. JSON: "elevated_session". Default: the defaults of
	// ElevatedSessionConfig.
	ElevatedSession *ElevatedSessionConfig `json:"elevated_session,omitempty"`
	// ResetPassword is the password reset's link (see ResetPasswordConfig, in
	// passwordreset.go). JSON: "reset_password". Default: jwt_lifespan 5m.
	ResetPassword *ResetPasswordConfig `json:"reset_password,omitempty"`
}

// ElevatedSessionConfig is Authelia's identity_validation.elevated_session block. Adding or
// removing a second factor and changing a password need an elevated session: one where the
// person entered a one-time code mailed to them (by the notifier) within elevation_lifespan,
// or, for a person who has a second factor, used it within elevation_lifespan. A password
// alone is never enough, unless require_notifier is false and there is no notifier.
type ElevatedSessionConfig struct {
	// CodeLifespan is how long a mailed code may be entered (1m to 1h). JSON: "code_lifespan".
	// Default: 5m.
	CodeLifespan caddy.Duration `json:"code_lifespan,omitempty"`
	// ElevationLifespan is how long a code, or a second factor, keeps the session elevated
	// (1m to 1h). JSON: "elevation_lifespan". Default: 10m.
	ElevationLifespan caddy.Duration `json:"elevation_lifespan,omitempty"`
	// Characters is the code's length (6 to 20), from an alphabet without look-alikes (no 0,
	// O, 1, I or L). JSON: "characters". Default: 8.
	Characters int `json:"characters,omitempty"`
	// RequireSecondFactor: a person who has a second factor must use it to elevate; a mailed
	// code alone is not enough for them (so a password and a mailbox do not remove a second
	// factor). false lets the code alone elevate them (someone who lost their phone removes it
	// with the code). JSON: "require_second_factor". Default: true (Authelia's is false).
	RequireSecondFactor *bool `json:"require_second_factor,omitempty"`
	// SkipSecondFactor: a session whose second factor was given within elevation_lifespan is
	// elevated without a code. false asks for the mailed code as well. JSON:
	// "skip_second_factor". Default: true (Authelia's is false).
	SkipSecondFactor *bool `json:"skip_second_factor,omitempty"`
	// RequireNotifier: without a notifier no code can be sent, so a person without a second
	// factor cannot add one at the portal (the operator enrols a first device with `caddy oidc
	// users totp add`). false keeps the old rule when there is no notifier: the password given
	// within five minutes (and the second factor, for a person who has one) is enough, which
	// lets anyone who learns a password enrol their own second factor. Portcullis's own key.
	// JSON: "require_notifier". Default: true.
	RequireNotifier *bool `json:"require_notifier,omitempty"`
}

// Bounds of the elevated_session values.
const (
	minCodeCharacters = 6
	maxCodeCharacters = 20
	minElevationTime  = time.Minute
	maxElevationTime  = time.Hour
)

// elevation checks the block and resolves it for the portal (nil c is every default).
func (c *IdentityValidationConfig) elevation() (portal.ElevationConfig, error) {
	var e ElevatedSessionConfig
	if c != nil && c.ElevatedSession != nil {
		e = *c.ElevatedSession
	}
	const where = "identity_validation: elevated_session: "
	out := portal.ElevationConfig{
		CodeLifespan:      time.Duration(e.CodeLifespan),
		ElevationLifespan: time.Duration(e.ElevationLifespan),
		Characters:        e.Characters,
	}
	for _, d := range []struct {
		key string
		v   time.Duration
		def string
	}{{"code_lifespan", out.CodeLifespan, "5m"}, {"elevation_lifespan", out.ElevationLifespan, "10m"}} {
		if d.v != 0 && (d.v < minElevationTime || d.v > maxElevationTime) {
			return out, fmt.Errorf("%s%s %v: use a duration from 1m to 1h (or leave it out for %s)", where, d.key, d.v, d.def)
		}
	}
	if e.Characters != 0 && (e.Characters < minCodeCharacters || e.Characters > maxCodeCharacters) {
		return out, fmt.Errorf("%scharacters %d: use a length from %d to %d (or leave it out for 8)", where, e.Characters, minCodeCharacters, maxCodeCharacters)
	}
	out.CodeAloneWithSecondFactor = e.RequireSecondFactor != nil && !*e.RequireSecondFactor
	out.CodeAfterSecondFactor = e.SkipSecondFactor != nil && !*e.SkipSecondFactor
	out.PasswordWithoutNotifier = e.RequireNotifier != nil && !*e.RequireNotifier
	return out.WithDefaults(), nil
}

// provisionIdentityValidation checks the block, and warns when a second factor can be enrolled
// but no code can be mailed: people without one cannot add one at the portal.
func (a *App) provisionIdentityValidation() error {
	e, err := a.IdentityValidation.elevation()
	if err != nil {
		return err
	}
	if a.portal != nil && (a.portal.totp != nil || a.portal.webauthn != nil) && a.Notifier == nil {
		if e.PasswordWithoutNotifier {
			a.logger.Warn("identity_validation: require_notifier is false and there is no notifier: a password typed within five minutes is enough to add a second factor, so whoever learns a password can enrol their own")
		} else {
			a.logger.Warn("no notifier: people without a second factor cannot add one at the portal (no code can be mailed to them); give them a first device with 'caddy oidc users totp add', or add a notifier block")
		}
	}
	return nil
}

// unmarshalIdentityValidation reads 'identity_validation { elevated_session { … } }'.
func unmarshalIdentityValidation(d *caddyfile.Dispenser) (*IdentityValidationConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	iv := &IdentityValidationConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "elevated_session":
			if iv.ElevatedSession != nil {
				return nil, d.Err("identity_validation: elevated_session is given twice; merge the two blocks")
			}
			e, err := unmarshalElevatedSession(d)
			if err != nil {
				return nil, err
			}
			iv.ElevatedSession = e
		case "reset_password":
			if iv.ResetPassword != nil {
				return nil, d.Err("identity_validation: reset_password is given twice; merge the two blocks")
			}
			rp, err := unmarshalResetPassword(d)
			if err != nil {
				return nil, err
			}
			iv.ResetPassword = rp
		default:
			return nil, d.Errf("identity_validation: unknown option %q (elevated_session, reset_password)", opt)
		}
	}
	return iv, nil
}

// unmarshalElevatedSession reads 'elevated_session { … }'.
func unmarshalElevatedSession(d *caddyfile.Dispenser) (*ElevatedSessionConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	e := &ElevatedSessionConfig{}
	flag := func(dst **bool) error {
		var v bool
		if err := boolArg(d, &v); err != nil {
			return err
		}
		*dst = &v
		return nil
	}
	for d.NextBlock(2) {
		var err error
		switch opt := d.Val(); opt {
		case "code_lifespan":
			err = durationArg(d, &e.CodeLifespan)
		case "elevation_lifespan":
			err = durationArg(d, &e.ElevationLifespan)
		case "characters":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n == 0 {
				return nil, d.Errf("identity_validation: elevated_session: characters: %q is not a number (a length from %d to %d)", v, minCodeCharacters, maxCodeCharacters)
			}
			e.Characters = n
		case "require_second_factor":
			err = flag(&e.RequireSecondFactor)
		case "skip_second_factor":
			err = flag(&e.SkipSecondFactor)
		case "require_notifier":
			err = flag(&e.RequireNotifier)
		default:
			return nil, d.Errf("identity_validation: elevated_session: unknown option %q (code_lifespan, elevation_lifespan, characters, require_second_factor, skip_second_factor, require_notifier)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}
