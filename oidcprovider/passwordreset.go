package oidcprovider

import (
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// PasswordResetConfig is Authelia's password_reset block (authentication_backend.password_reset
// there): whether the sign-in page offers "Forgot password?", and where it leads. The built-in
// reset mails a one-time link through the notifier; the link's lifespan is identity_validation's
// reset_password jwt_lifespan (default 5m).
//
//	password_reset {
//		disable false
//		custom_url https://accounts.example.com/forgot
//	}
type PasswordResetConfig struct {
	// Disable hides "Forgot password?" and turns the reset pages off (they answer 404).
	// JSON: "disable". Default: false (offered whenever a notifier can mail the links).
	Disable bool `json:"disable,omitempty"`
	// CustomURL sends "Forgot password?" to another service's page (an https URL, or http on a
	// loopback host); the built-in reset pages are then off. JSON: "custom_url". Default: ""
	// (the built-in reset).
	CustomURL string `json:"custom_url,omitempty"`
}

// check validates the block; errors name the key and the fix.
func (c *PasswordResetConfig) check() error {
	if c == nil || c.CustomURL == "" {
		return nil
	}
	u, err := url.Parse(c.CustomURL)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return fmt.Errorf("password_reset: custom_url %q must be an absolute https URL such as https://accounts.example.com/forgot", c.CustomURL)
	}
	if u.Scheme == "http" && !clients.IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("password_reset: custom_url %q must use https (http only for localhost and loopback addresses)", c.CustomURL)
	}
	if c.Disable {
		return fmt.Errorf("password_reset: both disable and custom_url are set; remove custom_url to turn the reset off, or disable to send people to %s", c.CustomURL)
	}
	return nil
}

// portalPasswordReset is the portal's password reset for this config: nil when it is disabled,
// or when there is no notifier to mail links and no custom_url (the sign-in page then offers no
// reset, and startup logs why).
func (a *App) portalPasswordReset(kv store.KV, hasNotifier bool) *portal.PasswordReset {
	c := a.PasswordReset
	switch {
	case c != nil && c.Disable:
		return nil
	case c != nil && c.CustomURL != "":
		return &portal.PasswordReset{CustomURL: c.CustomURL}
	case !hasNotifier:
		a.logger.Info("password reset is off: there is no notifier to mail reset links (add a notifier block, or password_reset { custom_url … })")
		return nil
	}
	return &portal.PasswordReset{Store: kv, Lifespan: a.resetLinkLifespan()}
}

// unmarshalPasswordReset reads 'password_reset { disable [true|false]; custom_url <url> }'.
func unmarshalPasswordReset(d *caddyfile.Dispenser) (*PasswordResetConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &PasswordResetConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "disable":
			if err := boolArg(d, &c.Disable); err != nil {
				return nil, err
			}
		case "custom_url":
			if err := oneArg(d, &c.CustomURL); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("password_reset: unknown option %q (disable, custom_url)", opt)
		}
	}
	return c, nil
}

// ResetPasswordConfig is Authelia's identity_validation.reset_password block: the mailed
// reset link. Portcullis's links are random tokens the store keeps as digests, not JWTs, so
// Authelia's jwt_algorithm and jwt_secret have no use here.
//
//	identity_validation {
//		reset_password {
//			jwt_lifespan 5m
//		}
//	}
type ResetPasswordConfig struct {
	// JWTLifespan is how long a mailed reset link stays valid (1m to 1h). JSON:
	// "jwt_lifespan". Default: 5m.
	JWTLifespan caddy.Duration `json:"jwt_lifespan,omitempty"`
}

// Bounds of reset_password's jwt_lifespan.
const (
	minResetLifespan = time.Minute
	maxResetLifespan = time.Hour
)

// unmarshalResetPassword reads 'reset_password { jwt_lifespan <duration> }'.
func unmarshalResetPassword(d *caddyfile.Dispenser) (*ResetPasswordConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &ResetPasswordConfig{}
	for d.NextBlock(2) {
		switch opt := d.Val(); opt {
		case "jwt_lifespan":
			if err := durationArg(d, &c.JWTLifespan); err != nil {
				return nil, err
			}
		case "jwt_algorithm", "jwt_secret":
			return nil, d.Errf("identity_validation: reset_password: %s has no use here (reset links are random one-time tokens kept as digests, not JWTs); remove it", opt)
		default:
			return nil, d.Errf("identity_validation: reset_password: unknown option %q (jwt_lifespan)", opt)
		}
	}
	return c, nil
}

// provisionPasswordReset checks the password_reset block and the reset link's lifespan.
func (a *App) provisionPasswordReset() error {
	if iv := a.IdentityValidation; iv != nil && iv.ResetPassword != nil {
		if l := time.Duration(iv.ResetPassword.JWTLifespan); l != 0 && (l < minResetLifespan || l > maxResetLifespan) {
			return fmt.Errorf("identity_validation: reset_password: jwt_lifespan %v: use a duration from 1m to 1h (or leave it out for 5m)", l)
		}
	}
	if a.PasswordReset == nil {
		return nil
	}
	if a.directory == nil {
		return fmt.Errorf("password_reset: needs the people who sign in; add 'users_file /etc/caddy/users.yml' or an ldap block")
	}
	if err := a.PasswordReset.check(); err != nil {
		return err
	}
	if c := a.PasswordReset; !c.Disable && c.CustomURL == "" && a.Notifier == nil {
		return fmt.Errorf("password_reset: the built-in reset mails a link, and there is no notifier; add a notifier block (notifier { smtp { … } }), set custom_url, or set disable true")
	}
	return nil
}

// resetLinkLifespan is how long a mailed reset link stays valid.
func (a *App) resetLinkLifespan() time.Duration {
	if iv := a.IdentityValidation; iv != nil && iv.ResetPassword != nil && iv.ResetPassword.JWTLifespan > 0 {
		return time.Duration(iv.ResetPassword.JWTLifespan)
	}
	return portal.DefaultResetLifespan
}
