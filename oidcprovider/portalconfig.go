package oidcprovider

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// SessionConfig is Authelia's session block: the cookie people's browsers carry once they have
// signed in at the portal, and how long it lasts.
type SessionConfig struct {
	// Name is the cookie's name (letters, digits, '-' and '_'; not __Host- with a cookie_domain,
	// which browsers refuse on a cookie with a Domain). JSON: "name". Default: "portcullis_session".
	Name string `json:"name,omitempty"`
	// CookieDomain is the domain the cookie is sent to: the protected sites must be it or under
	// it, and so must the issuer's host. JSON: "cookie_domain". Default: the issuer's host only
	// (or the domain of the Cookies entry that covers the issuer's host).
	CookieDomain string `json:"cookie_domain,omitempty"`
	// Cookies are further cookie domains, each a registrable domain of its own (Authelia's
	// session.cookies): a browser signed in at the portal gets a session on one of them through
	// a one-time hand-off to the gate of the site it opens there, under the domain's own cookie.
	// An entry whose domain covers the issuer's host, when CookieDomain is empty, is the
	// issuer's own domain instead (its options then stand for this block's). The Caddyfile's
	// 'cookie_domain a b c' gives a as CookieDomain and b and c as entries; a 'cookie <domain>
	// { … }' block gives one entry. JSON: "cookies". Default: none.
	Cookies []CookieConfig `json:"cookies,omitempty"`
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

// CookieConfig is one further cookie domain of the session block. Unset values are the session
// block's.
type CookieConfig struct {
	// Domain is the cookie's domain, such as example.org: distinct from, and neither under nor
	// above, every other configured cookie domain, and not a public suffix. JSON: "domain".
	// Required.
	Domain string `json:"domain"`
	// Name is the cookie's name on this domain (it may repeat another domain's; letters, digits,
	// '-' and '_', and not __Host-, a prefix browsers refuse on a cookie with a Domain). JSON:
	// "name". Default: the session block's name.
	Name string `json:"name,omitempty"`
	// SameSite is "lax" or "strict". JSON: "same_site". Default: the session block's.
	SameSite string `json:"same_site,omitempty"`
	// Expiration is a session's longest life here without remember-me. JSON: "expiration".
	// Default: the session block's.
	Expiration caddy.Duration `json:"expiration,omitempty"`
	// Inactivity ends a session here unused for this long. JSON: "inactivity". Default: the
	// session block's.
	Inactivity caddy.Duration `json:"inactivity,omitempty"`
	// RememberMe is a remember-me session's life here (a session handed off from a remember-me
	// sign-in); negative: none. JSON: "remember_me". Default: the session block's.
	RememberMe caddy.Duration `json:"remember_me,omitempty"`
	// DefaultRedirectionURL is where the gate sends a browser after a hand-off whose return URL
	// it cannot use; it must be under Domain. JSON: "default_redirection_url". Default: the
	// root of the site of the hand-off.
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
	// UserVerification is discouraged, preferred or required (a PIN or biometric on the key)
	// for security keys used as a second factor. JSON: "user_verification". Default:
	// "preferred". Passkey ceremonies (adding a passkey, signing in with one) always require it.
	UserVerification string `json:"user_verification,omitempty"`
	// EnablePasskeyLogin offers "Sign in with a passkey" and the browser's passkey autofill on
	// the sign-in page: a passkey (a discoverable credential, with user verification) signs the
	// person in alone, at two factors. JSON: "enable_passkey_login". Default: true whenever
	// WebAuthn is on: the button is additive, and a browser without passkeys simply does not
	// use it (the page hides it where the browser cannot). false hides the button and the
	// autofill and makes the passkey sign-in endpoints answer 404; passkeys still serve as
	// second factors.
	EnablePasskeyLogin *bool `json:"enable_passkey_login,omitempty"`
}

// portalSettings are the resolved people options.
type portalSettings struct {
	cookieName   string
	cookieDomain string // "" for a host-only cookie on the issuer
	sameSite     http.SameSite
	secure       bool
	sessions     session.Config
	defaultURL   string
	// others are the further cookie domains (SessionConfig.Cookies), each handed off to
	others       []*cookieDomain
	totp         *totp.Config
	webauthn     *webauthn.Config
	passkeyLogin bool // the sign-in page offers passkeys (with webauthn)
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
	s, others, err := primaryCookie(s, host)
	if err != nil {
		return err
	}
	if s.Name != "" {
		if !validCookieName(s.Name) {
			return fmt.Errorf("session: name %q: use letters, digits, '-' and '_'", s.Name)
		}
		ps.cookieName = s.Name
	}
	if d := strings.ToLower(strings.TrimPrefix(s.CookieDomain, ".")); d != "" {
		if err := checkCookieDomain("session: cookie_domain", s.CookieDomain); err != nil {
			return err
		}
		if host != d && !strings.HasSuffix(host, "."+d) {
			return fmt.Errorf("session: cookie_domain %q does not cover the issuer's host %q; the portal sets the cookie, so use a domain the issuer is in (such as %q)", s.CookieDomain, host, parentDomain(host))
		}
		ps.cookieDomain = d
		if err := checkDomainCookieName("session: name", ps.cookieName); err != nil {
			return err
		}
	}
	if ps.sameSite, err = sameSiteOf("session: same_site", s.SameSite); err != nil {
		return err
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
	if ps.others, err = a.otherCookies(ps, s, others); err != nil {
		return err
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
			ps.passkeyLogin = w == nil || w.EnablePasskeyLogin == nil || *w.EnablePasskeyLogin
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

// primaryCookie returns the session block with the issuer's own cookie domain in CookieDomain
// (taken from the Cookies entry that covers host when CookieDomain is empty, whose options then
// stand for the block's) and the further cookie domains.
func primaryCookie(s *SessionConfig, host string) (*SessionConfig, []CookieConfig, error) {
	others := s.Cookies
	if s.CookieDomain != "" || len(others) == 0 {
		return s, others, nil
	}
	for i, c := range others {
		d := strings.ToLower(strings.TrimPrefix(c.Domain, "."))
		if d == "" || (host != d && !strings.HasSuffix(host, "."+d)) {
			continue
		}
		p := *s
		p.CookieDomain, p.Cookies = c.Domain, nil
		p.Name, p.SameSite, p.DefaultRedirectionURL = cmp.Or(c.Name, p.Name), cmp.Or(c.SameSite, p.SameSite), cmp.Or(c.DefaultRedirectionURL, p.DefaultRedirectionURL)
		p.Expiration, p.Inactivity, p.RememberMe = cmp.Or(c.Expiration, p.Expiration), cmp.Or(c.Inactivity, p.Inactivity), cmp.Or(c.RememberMe, p.RememberMe)
		return &p, append(slices.Clone(others[:i]), others[i+1:]...), nil
	}
	return nil, nil, fmt.Errorf("session: none of the cookie domains covers the issuer's host %q: the portal's own cookie needs one; add 'cookie_domain %s' (or a 'cookie %s { … }' block) before the others", host, parentDomain(host), parentDomain(host))
}

// cookieDomain is one resolved cookie domain beyond the issuer's.
type cookieDomain struct {
	domain     string // example.org
	dotted     string // .example.org
	name       string
	sameSite   http.SameSite
	sessions   session.Config
	defaultURL string
}

// covers reports whether host (lower case, without a port) is the domain or under it.
func (c *cookieDomain) covers(host string) bool {
	return host == c.domain || strings.HasSuffix(host, c.dotted)
}

// otherCookies resolves the further cookie domains: each distinct, neither under nor above
// another (the issuer's included), not a public suffix; unset options are the block's (s).
func (a *App) otherCookies(ps *portalSettings, s *SessionConfig, list []CookieConfig) ([]*cookieDomain, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if ps.cookieDomain == "" {
		return nil, fmt.Errorf("session: further cookie domains need the issuer's own first: add 'cookie_domain %s' before them", parentDomain(strings.ToLower(a.issuerURL.Hostname())))
	}
	seen := []string{ps.cookieDomain}
	var out []*cookieDomain
	for _, c := range list {
		key := fmt.Sprintf("session: cookie %q", c.Domain)
		if err := checkCookieDomain(key, c.Domain); err != nil {
			return nil, err
		}
		d := strings.ToLower(strings.TrimPrefix(c.Domain, "."))
		for _, o := range seen {
			switch {
			case o == d:
				return nil, fmt.Errorf("%s: the domain %s is listed twice; give each cookie domain once", key, d)
			case strings.HasSuffix(d, "."+o), strings.HasSuffix(o, "."+d):
				return nil, fmt.Errorf("%s: the cookie domains %s and %s are nested: a cookie of the outer one reaches the inner one's sites; list only %s, or two domains neither of which is under the other", key, o, d, shorter(o, d))
			}
		}
		seen = append(seen, d)
		cd := &cookieDomain{domain: d, dotted: "." + d, name: ps.cookieName, sameSite: ps.sameSite}
		if c.Name != "" {
			if !validCookieName(c.Name) {
				return nil, fmt.Errorf("%s: name %q: use letters, digits, '-' and '_'", key, c.Name)
			}
			if err := checkDomainCookieName(key+": name", c.Name); err != nil {
				return nil, err
			}
			cd.name = c.Name
		}
		if c.SameSite != "" {
			var err error
			if cd.sameSite, err = sameSiteOf(key+": same_site", c.SameSite); err != nil {
				return nil, err
			}
		}
		if c.Expiration < 0 || c.Inactivity < 0 {
			return nil, fmt.Errorf("%s: expiration and inactivity must be positive", key)
		}
		cd.sessions = session.Config{Expiration: time.Duration(cmp.Or(c.Expiration, s.Expiration)), Inactivity: time.Duration(cmp.Or(c.Inactivity, s.Inactivity)),
			RememberMe: time.Duration(cmp.Or(c.RememberMe, s.RememberMe))}
		if c.DefaultRedirectionURL != "" {
			u, err := url.Parse(c.DefaultRedirectionURL)
			if err != nil || !u.IsAbs() || u.Scheme != a.issuerURL.Scheme || u.User != nil || !cd.covers(strings.ToLower(u.Hostname())) {
				return nil, fmt.Errorf("%s: default_redirection_url %q must be an absolute %s URL on a host under %s", key, c.DefaultRedirectionURL, a.issuerURL.Scheme, d)
			}
			cd.defaultURL = u.String()
		}
		out = append(out, cd)
	}
	return out, nil
}

// shorter is the shorter of two domains.
func shorter(a, b string) string {
	if len(a) < len(b) {
		return a
	}
	return b
}

// checkCookieDomain refuses a cookie domain that is a single label, has a port, a path or a
// wildcard, is an IP address, or is a public suffix (browsers refuse a cookie for one).
func checkCookieDomain(key, raw string) error {
	d := strings.ToLower(strings.TrimPrefix(raw, "."))
	if !strings.Contains(d, ".") || strings.ContainsAny(d, "/:*@ ") || net.ParseIP(d) != nil {
		return fmt.Errorf("%s: %q must be a domain such as example.com (not a single label, a port, an address or a wildcard)", key, raw)
	}
	if suffix, _ := publicsuffix.PublicSuffix(d); suffix == d {
		return fmt.Errorf("%s: %q is a public suffix, under which anyone may register a domain; use your own domain under it (such as example.%s)", key, raw, d)
	}
	return nil
}

// sameSiteOf reads a same_site option.
func sameSiteOf(key, v string) (http.SameSite, error) {
	switch strings.ToLower(v) {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	}
	return 0, fmt.Errorf("%s %q: use lax or strict", key, v)
}

// parentDomain is host without its first label, or host itself when it has two labels or fewer.
func parentDomain(host string) string {
	if strings.Count(host, ".") < 2 {
		return host
	}
	_, rest, _ := strings.Cut(host, ".")
	return rest
}

// checkDomainCookieName refuses the name of a cookie set with a Domain attribute when browsers
// refuse that cookie: one with the __Host- prefix (in any case), which must be host-only, so the
// session would never be kept and every sign-in or hand-off would begin again.
func checkDomainCookieName(key, name string) error {
	if len(name) >= len("__Host-") && strings.EqualFold(name[:len("__Host-")], "__Host-") {
		return fmt.Errorf("%s %q: a __Host- cookie cannot have a Domain, and browsers refuse it; drop the __Host- prefix", key, name)
	}
	return nil
}

func validCookieName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return s != ""
}
