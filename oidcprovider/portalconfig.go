package oidcprovider

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// SessionConfig is Authelia's session block: the cookie people's browsers carry once they have
// signed in at the portal, and how long it lasts.
type SessionConfig struct {
	// Name is the cookie's name. JSON: "name". Default: "portcullis_session".
	Name string `json:"name,omitempty"`
	// CookieDomain is the domain the cookie is sent to: the protected sites must be it or under
	// it, and so must the issuer's host. JSON: "cookie_domain". Default: the issuer's host only.
	CookieDomain string `json:"cookie_domain,omitempty"`
	// SameSite is the cookie's SameSite attribute, "lax" or "strict". JSON: "same_site".
	// Default: "lax".
	SameSite string `json:"same_site,omitempty"`
	// Expiration is a session's longest life without remember-me. JSON: "expiration".
	// Default: 1h.
	Expiration caddy.Duration `json:"expiration,omitempty"`
	// Inactivity ends a session unused for this long (remember-me sessions excepted).
	// JSON: "inactivity". Default: 5m.
	Inactivity caddy.Duration `json:"inactivity,omitempty"`
	// RememberMe is how long a session lasts when the person ticks "Remember me"; a negative
	// value (Caddyfile: -1 or off) hides the box. JSON: "remember_me". Default: 30d.
	RememberMe caddy.Duration `json:"remember_me,omitempty"`
	// DefaultRedirectionURL is where the portal sends a person who signs in without a return
	// URL. JSON: "default_redirection_url". Default: the portal's own signed-in page.
	DefaultRedirectionURL string `json:"default_redirection_url,omitempty"`
}

// TOTPConfig is Authelia's totp block: one-time codes from an authenticator app (RFC 6238).
type TOTPConfig struct {
	// Disable hides TOTP: no enrolment, and codes are not accepted. JSON: "disable".
	// Default: false.
	Disable bool `json:"disable,omitempty"`
	// Issuer names the service in authenticator apps. JSON: "issuer". Default: the issuer's
	// host.
	Issuer string `json:"issuer,omitempty"`
	// Algorithm is SHA1, SHA256 or SHA512 for new devices. JSON: "algorithm". Default: SHA1
	// (the one every app supports).
	Algorithm string `json:"algorithm,omitempty"`
	// Digits is 6 or 8 for new devices. JSON: "digits". Default: 6.
	Digits int `json:"digits,omitempty"`
	// Period is the time step of new devices. JSON: "period". Default: 30s.
	Period caddy.Duration `json:"period,omitempty"`
	// Skew is how many steps before and after the current one are accepted (0–2).
	// JSON: "skew". Default: 1.
	Skew *int `json:"skew,omitempty"`
	// SecretSize is a new secret's size in bytes (at least 20). JSON: "secret_size".
	// Default: 32.
	SecretSize int `json:"secret_size,omitempty"`
}

// WebAuthnConfig is Authelia's webauthn block: security keys and passkeys as a second factor.
type WebAuthnConfig struct {
	// Disable hides WebAuthn. JSON: "disable". Default: false.
	Disable bool `json:"disable,omitempty"`
	// DisplayName names the service in the browser's prompt. JSON: "display_name".
	// Default: "Portcullis".
	DisplayName string `json:"display_name,omitempty"`
	// Timeout is how long the browser waits for the authenticator. JSON: "timeout".
	// Default: 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// UserVerification is discouraged, preferred or required (a PIN or biometric on the key).
	// JSON: "user_verification". Default: "preferred".
	UserVerification string `json:"user_verification,omitempty"`
}

// portalSettings are the resolved people options.
type portalSettings struct {
	cookieName   string
	cookieDomain string // "" for a host-only cookie on the issuer
	sameSite     http.SameSite
	secure       bool
	sessions     session.Config
	defaultURL   string
	totp         *totp.Config
	webauthn     *webauthn.Config
}

// provisionPortal checks and resolves the session, totp and webauthn options.
func (a *App) provisionPortal() error {
	if a.UsersFile == "" && a.LDAP == nil {
		for name, given := range map[string]bool{"session": a.Session != nil, "totp": a.TOTP != nil, "webauthn": a.WebAuthn != nil, "notifier": a.Notifier != nil, "identity_validation": a.IdentityValidation != nil} {
			if given {
				return fmt.Errorf("%s: needs people who sign in: add 'users_file /etc/caddy/users.yml' or an 'ldap { … }' block", name)
			}
		}
		return nil
	}
	host := strings.ToLower(a.issuerURL.Hostname())
	ps := &portalSettings{cookieName: "portcullis_session", sameSite: http.SameSiteLaxMode, secure: a.issuerURL.Scheme == "https"}
	s := a.Session
	if s == nil {
		s = &SessionConfig{}
	}
	if s.Name != "" {
		if !validCookieName(s.Name) {
			return fmt.Errorf("session: name %q: use letters, digits, '-' and '_'", s.Name)
		}
		ps.cookieName = s.Name
	}
	if d := strings.ToLower(strings.TrimPrefix(s.CookieDomain, ".")); d != "" {
		switch {
		case !strings.Contains(d, ".") || strings.ContainsAny(d, "/:*"):
			return fmt.Errorf("session: cookie_domain %q must be a domain such as example.com (not a single label, a port or a wildcard)", s.CookieDomain)
		case host != d && !strings.HasSuffix(host, "."+d):
			return fmt.Errorf("session: cookie_domain %q does not cover the issuer's host %q; the portal sets the cookie, so use a domain the issuer is in (such as %q)", s.CookieDomain, host, parentDomain(host))
		}
		ps.cookieDomain = d
	}
	switch strings.ToLower(s.SameSite) {
	case "", "lax":
	case "strict":
		ps.sameSite = http.SameSiteStrictMode
	default:
		return fmt.Errorf("session: same_site %q: use lax or strict", s.SameSite)
	}
	ps.sessions = session.Config{Expiration: time.Duration(s.Expiration), Inactivity: time.Duration(s.Inactivity), RememberMe: time.Duration(s.RememberMe)}
	switch {
	case s.Expiration < 0:
		return fmt.Errorf("session: expiration must be positive")
	case s.Inactivity < 0:
		return fmt.Errorf("session: inactivity must be positive")
	}
	if s.DefaultRedirectionURL != "" {
		u, err := url.Parse(s.DefaultRedirectionURL)
		if err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("session: default_redirection_url %q must be an absolute http(s) URL", s.DefaultRedirectionURL)
		}
		ps.defaultURL = u.String()
	}
	if t := a.TOTP; t == nil || !t.Disable {
		cfg := totp.Config{Issuer: host}
		if t != nil {
			cfg = totp.Config{Issuer: t.Issuer, Algorithm: t.Algorithm, Digits: t.Digits, Period: time.Duration(t.Period), Skew: t.Skew, SecretSize: t.SecretSize}
			if cfg.Issuer == "" {
				cfg.Issuer = host
			}
		}
		resolved, err := cfg.WithDefaults()
		if err != nil {
			return fmt.Errorf("totp: %w", err)
		}
		ps.totp = &resolved
	}
	if w := a.WebAuthn; w == nil || !w.Disable {
		rpID := host
		if ps.cookieDomain != "" {
			rpID = ps.cookieDomain
		}
		cfg := webauthn.Config{RPID: rpID, RPDisplayName: "Portcullis", RPOrigins: []string{a.issuerURL.Scheme + "://" + a.issuerURL.Host}}
		if w != nil {
			if w.DisplayName != "" {
				cfg.RPDisplayName = w.DisplayName
			}
			cfg.Timeout, cfg.UserVerification = time.Duration(w.Timeout), w.UserVerification
			switch w.UserVerification {
			case "", "discouraged", "preferred", "required":
			default:
				return fmt.Errorf("webauthn: user_verification %q: use discouraged, preferred or required", w.UserVerification)
			}
		}
		resolved, err := cfg.WithDefaults()
		switch {
		case err == nil:
			ps.webauthn = &resolved
		case w == nil && (net.ParseIP(host) != nil || a.issuerURL.Scheme != "https"):
			// an issuer on an IP address (or plain http outside *.localhost) cannot use
			// WebAuthn; without a webauthn block, go on with TOTP only
			a.logger.Warn("webauthn is off: browsers allow security keys only on https sites and on localhost names, and never on an IP address", zap.String("issuer", a.issuer))
		default:
			return err
		}
	}
	a.portal = ps
	return nil
}

// parentDomain is host without its first label, or host itself when it has two labels or fewer.
func parentDomain(host string) string {
	if strings.Count(host, ".") < 2 {
		return host
	}
	_, rest, _ := strings.Cut(host, ".")
	return rest
}

func validCookieName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return s != ""
}
