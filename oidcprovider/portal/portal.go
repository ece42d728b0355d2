// Package portal serves the pages people use to sign in: the sign-in form, the second factor
// (a TOTP code, or a security key or passkey), adding and removing second-factor devices, the
// signed-in page and sign-out. Pages are server-rendered html/template with embedded assets: no
// external requests, no front-end framework, and no JavaScript except where WebAuthn needs it.
// Every form carries a CSRF token, every answer a strict Content-Security-Policy, and the return
// URL (rd) is followed only to hosts the session cookie covers.
package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/consent"
	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// ErrBadCredentials is what a PasswordChecker returns for a wrong username or password, a
// disabled user or a banned attempt: the page shows one message for all of them.
var ErrBadCredentials = errors.New("portal: the username or password is wrong")

// PasswordChecker checks a password for a sign-in from ip, with the regulation and the digest
// limits of Basic credentials. It returns nil, an error wrapping ErrBadCredentials, or another
// error (the portal answers 503).
type PasswordChecker func(ctx context.Context, username, password, ip string) error

// Config is what the portal needs.
type Config struct {
	// Issuer is the provider's issuer URL; the pages live under its path.
	Issuer *url.URL
	// CookieName is the session cookie's name.
	CookieName string
	// CookieDomain is the session cookie's Domain; "" makes it host-only on the issuer.
	CookieDomain string
	// SameSite is the session cookie's SameSite mode (Lax or Strict).
	SameSite http.SameSite
	// Secure marks cookies Secure (false only for a loopback http issuer).
	Secure bool
	// RememberMe is how long a remember-me session lasts; 0 or less hides the box.
	RememberMe time.Duration
	// DefaultRedirect is where a sign-in without a return URL goes; "" is the signed-in page.
	DefaultRedirect string
	// Key is a secret for CSRF tokens and ceremony keys (derived from the provider's secret).
	Key []byte
	// Users is where the people come from (the users file or an LDAP directory).
	Users users.Directory
	// CheckPassword checks a sign-in's password.
	CheckPassword PasswordChecker
	// ClientIP is the client address as Caddy settled it.
	ClientIP func(*http.Request) string
	// Sessions keeps the sessions.
	Sessions *session.Store
	// Regulator counts second-factor failures as it counts password failures.
	Regulator *regulation.Regulator
	// OnSecondFactor, when set, is told of every second factor checked: factor "totp" or
	// "webauthn", result "success", "failure" or "banned", and whether a ban began.
	OnSecondFactor func(factor, result string, banBegan bool)
	// TOTP keeps TOTP devices; nil when TOTP is disabled.
	TOTP *totp.Devices
	// WebAuthn keeps security keys and passkeys; nil when WebAuthn is disabled.
	WebAuthn *webauthn.Devices
	// PasskeyLogin offers "Sign in with a passkey" and the browser's passkey autofill on the
	// sign-in page (with WebAuthn on); false hides them and the passkey sign-in endpoints answer
	// 404, while passkeys still serve as second factors.
	PasskeyLogin bool
	// Logger logs sign-ins and device changes (never passwords, codes or cookies).
	Logger *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// FormActionFor, when set, names the origins a form with return URL rd may lead to through
	// redirects (the application's redirect URI when rd resumes an authorization request), so
	// the page's form-action allows them.
	FormActionFor func(ctx context.Context, rd string) []string
	// OnSignOut, when set, is told of each session ended by signing out (its user and its
	// reference, Session.Ref), so what the session authorized can end with it.
	OnSignOut func(ctx context.Context, user, ref string)
	// EndUserTokens, when set, ends every token the user gave applications until now, refresh
	// tokens included: a password reset or change calls it after ending the user's sessions,
	// since a refresh token outlives the session it came from.
	EndUserTokens func(ctx context.Context, user string) error
	// Consents, when set, are the users' remembered consents, listed on the signed-in page
	// where a user may withdraw one.
	Consents ConsentKeeper
	// ClientName names an application on the signed-in page. Optional.
	ClientName func(clientID string) string
	// Notifier sends people their one-time codes, reset links and account notices; nil when
	// the provider has no notifier block.
	Notifier notify.Notifier
	// PasswordReset, when set, offers "Forgot password?" on the sign-in page: the built-in
	// pages (a one-time link mailed through Notifier) or a link to another service's page.
	// nil hides the link, and the reset pages answer 404.
	PasswordReset *PasswordReset
	// Elevation is how a session is elevated before a sensitive change (a second factor added
	// or removed, a password changed). The zero value is the defaults.
	Elevation ElevationConfig
	// Store keeps the pending one-time codes (as digests) and their send limits; without it
	// no code is sent, as without a Notifier.
	Store store.KV
	// Handoff, when set, hands sessions off to the gates of further cookie domains (handoff.go);
	// return URLs on those domains are followed too.
	Handoff *Handoff
	// IdentityProviders are the upstream identity providers offered on the sign-in page, in
	// this order (federation.go); none when empty.
	IdentityProviders []*federation.Provider
	// Links keeps the links between upstream identities and local users; required with
	// IdentityProviders.
	Links *federation.Links
	// CreateUser, when set, adds a local user for an upstream identity of a provider with
	// create_users (the users file's editor; nil when people come from LDAP).
	CreateUser CreateUser
}

// ConsentKeeper lists and withdraws a user's remembered consents.
type ConsentKeeper interface {
	List(ctx context.Context, username string, now time.Time) ([]consent.Grant, error)
	Withdraw(ctx context.Context, username, id string) (bool, error)
}

// Portal serves the pages.
type Portal struct {
	cfg    Config
	base   string // the issuer's path, without a trailing slash
	origin string // scheme://host of the issuer
	pages  map[string]*template.Template
	assets http.Handler
	csp    string
	// cspFormAction is the form-action source list of csp, for pages that add to it.
	cspFormAction string
	// reset is the built-in password reset (nil when off or at a custom URL)
	reset *resetter
	// codeKey keys the digests of one-time codes (derived from Key)
	codeKey []byte
	// passkeyStarts counts the passkey sign-ins begun per client address (passkey.go)
	passkeyStarts *addressLimiter
}

// Paths of the portal's pages and endpoints, relative to the issuer.
const (
	PathSignIn          = "/"
	PathSecondFactor    = "/2fa"
	pathTOTPCheck       = "/2fa/totp"
	pathWebAuthnOptions = "/2fa/webauthn/options"
	pathWebAuthnVerify  = "/2fa/webauthn/verify"
	PathSettings        = "/settings"
	pathConfirm         = "/settings/confirm"
	pathTOTPEnrol       = "/settings/totp"
	pathTOTPRemove      = "/settings/totp/remove"
	pathKeyRegister     = "/settings/webauthn"
	pathKeyOptions      = "/settings/webauthn/options"
	pathKeyVerify       = "/settings/webauthn/verify"
	pathKeyRemove       = "/settings/webauthn/remove"
	pathKeyRename       = "/settings/webauthn/rename"
	pathPasskeyRegister = "/settings/passkey"
	pathPasskeyRegOpts  = "/settings/passkey/options"
	pathPasskeyRegDone  = "/settings/passkey/verify"
	pathPasskeyOptions  = "/passkey/options"
	pathPasskeyVerify   = "/passkey/verify"
	pathConsentWithdraw = "/settings/consents/withdraw"
	pathElevate         = "/settings/elevate"
	pathElevateSend     = "/settings/elevate/send"
	pathPassword        = "/settings/password"
	PathSignOut         = "/logout"
	pathAssets          = "/assets/"
)

// freshness is how recent the password (and the second factor, for a user who has one) must be
// to add or remove a device.
const freshness = 5 * time.Minute

// New parses the templates and checks the configuration.
func New(cfg Config) (*Portal, error) {
	if cfg.Issuer == nil || cfg.Sessions == nil || cfg.Users == nil || cfg.CheckPassword == nil || len(cfg.Key) < 32 {
		return nil, errors.New("portal: issuer, sessions, users, a password checker and a 32-byte key are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.IdentityProviders) > 0 && cfg.Links == nil {
		return nil, errors.New("portal: identity providers need a store of links")
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	cfg.Elevation = cfg.Elevation.WithDefaults()
	p := &Portal{cfg: cfg, base: strings.TrimSuffix(cfg.Issuer.Path, "/"), origin: cfg.Issuer.Scheme + "://" + cfg.Issuer.Host, pages: map[string]*template.Template{},
		passkeyStarts: &addressLimiter{max: passkeyOptionsLimit, window: passkeyOptionsWindow, seen: map[string][]time.Time{}}}
	var err error
	if p.reset, err = newResetter(cfg.PasswordReset, cfg.Notifier); err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"path": func(rel string) string { return p.base + rel },
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2 Jan 2006, 15:04 UTC")
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: layout: %w", err)
	}
	entries, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range entries {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, fmt.Errorf("portal: page %s: %w", page, err)
		}
		p.pages[page] = t
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	p.assets = http.StripPrefix(p.base+pathAssets, http.FileServerFS(sub))
	// form-action must allow the redirect that follows a form (Chrome checks it): the return
	// URLs the portal follows are the issuer's host (any port) and the cookie domain's hosts.
	formAction := "'self' " + cfg.Issuer.Scheme + "://" + cfg.Issuer.Hostname() + ":*"
	if d := cfg.CookieDomain; d != "" {
		formAction += " " + cfg.Issuer.Scheme + "://" + d + ":* " + cfg.Issuer.Scheme + "://*." + d + ":*"
	}
	if cfg.Handoff != nil {
		for _, d := range cfg.Handoff.Domains {
			formAction += " " + cfg.Issuer.Scheme + "://" + d + ":* " + cfg.Issuer.Scheme + "://*." + d + ":*"
		}
	}
	if u, err := url.Parse(cfg.DefaultRedirect); err == nil && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	p.cspFormAction = formAction
	p.csp = p.cspWithFormAction(nil)
	m := hmac.New(sha256.New, cfg.Key)
	m.Write([]byte("portcullis elevation code key v1"))
	p.codeKey = m.Sum(nil)
	p.logFederation()
	return p, nil
}

// cspWithFormAction is the pages' Content-Security-Policy with extra form-action origins.
func (p *Portal) cspWithFormAction(extra []string) string {
	fa := p.cspFormAction
	for _, o := range extra {
		if o != "" && !strings.ContainsAny(o, " ;,'\"\r\n") {
			fa += " " + o
		}
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action " + fa + "; frame-ancestors 'none'; base-uri 'none'"
}

// Handles reports whether rel (a path relative to the issuer) is one of the portal's.
func (p *Portal) Handles(rel string) bool {
	switch rel {
	case PathSignIn, PathSecondFactor, pathTOTPCheck, pathWebAuthnOptions, pathWebAuthnVerify,
		PathSettings, pathConfirm, pathTOTPEnrol, pathTOTPRemove, pathKeyRegister, pathKeyOptions,
		pathKeyVerify, pathKeyRemove, pathConsentWithdraw, PathSignOut,
		pathElevate, pathElevateSend, pathPassword,
		PathHandoff, PathHandoffFailed,
		pathKeyRename, pathPasskeyRegister, pathPasskeyRegOpts, pathPasskeyRegDone, pathPasskeyOptions, pathPasskeyVerify:
		return true
	}
	return isResetPath(rel) || rel == PathEnrol || rel == pathEnrolDone || isFederationPath(rel) || strings.HasPrefix(rel, pathAssets)
}

// ServeHTTP serves the page at rel (a path relative to the issuer). The caller bounds the body
// of a POST (oidcprovider does, with oauth.MaxFormBytes, as for the protocol's forms).
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request, rel string) {
	p.secureHeaders(w)
	if strings.HasPrefix(rel, pathAssets) {
		if strings.HasSuffix(rel, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600") // the assets alone may be cached
		p.assets.ServeHTTP(w, r)
		return
	}
	r = allowEnrolment(r, rel) // an enrolment session counts on its few settings pages alone
	_, _, picked := p.pick(r)
	if errors.Is(picked, users.ErrUnavailable) {
		p.directoryDown(w, r)
		return
	}
	if err := picked; errors.Is(err, session.ErrCookies) {
		// as at the gate: the portal does not choose between two people's sessions
		p.cfg.Logger.Info("portal request refused: session cookies of two people, or too many session cookies", zap.String("path", rel), zap.String("remote_ip", p.cfg.ClientIP(r)))
		p.render(w, r, http.StatusBadRequest, "error", &pageData{Title: "Your browser sent two sessions",
			Error: "Your browser sent the session cookies of two people, or too many session cookies, so it cannot be told who is signed in. A site under this domain may have set one. Remove this site's cookies in your browser, then sign in again."})
		return
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	if post {
		if !p.checkCSRF(r) {
			p.cfg.Logger.Info("portal form refused: missing or wrong CSRF token", zap.String("path", rel), zap.String("remote_ip", p.cfg.ClientIP(r)))
			p.render(w, r, http.StatusForbidden, "error", &pageData{Title: "This form has expired", Error: "The form was sent without its security token, or the token expired. Go back, reload the page and try again."})
			return
		}
	}
	switch {
	case rel == PathSignIn && get:
		p.signInPage(w, r)
	case rel == PathSignIn && post:
		p.signIn(w, r)
	case rel == PathSecondFactor && get:
		p.secondFactorPage(w, r)
	case rel == pathTOTPCheck && post:
		p.checkTOTP(w, r)
	case rel == pathWebAuthnOptions && post:
		p.webauthnLoginOptions(w, r)
	case rel == pathWebAuthnVerify && post:
		p.webauthnLoginVerify(w, r)
	case rel == PathSettings && get:
		p.settingsPage(w, r)
	case rel == pathConfirm && post:
		p.confirmPassword(w, r)
	case rel == pathTOTPEnrol && get:
		p.totpEnrolPage(w, r)
	case rel == pathTOTPEnrol && post:
		p.totpEnrol(w, r)
	case rel == pathTOTPRemove && post:
		p.totpRemove(w, r)
	case rel == pathKeyRegister && get:
		p.keyRegisterPage(w, r, false)
	case rel == pathKeyOptions && post:
		p.keyRegisterOptions(w, r, false)
	case rel == pathKeyVerify && post:
		p.keyRegisterVerify(w, r, false)
	case rel == pathPasskeyRegDone && post:
		p.keyRegisterVerify(w, r, true)
	case rel == pathKeyRemove && post:
		p.keyRemove(w, r)
	case rel == pathKeyRename && post:
		p.keyRename(w, r)
	case rel == pathPasskeyRegister && get:
		p.keyRegisterPage(w, r, true)
	case rel == pathPasskeyRegOpts && post:
		p.keyRegisterOptions(w, r, true)
	case rel == pathPasskeyOptions && post:
		p.passkeyOptions(w, r)
	case rel == pathPasskeyVerify && post:
		p.passkeyVerify(w, r)
	case rel == pathConsentWithdraw && post:
		p.consentWithdraw(w, r)
	case rel == pathElevate && get:
		p.elevateView(w, r)
	case rel == pathElevate && post:
		p.checkCode(w, r)
	case rel == pathElevateSend && post:
		p.sendCode(w, r)
	case rel == pathPassword && get:
		p.passwordPage(w, r)
	case rel == pathPassword && post:
		p.changePassword(w, r)
	case rel == PathSignOut && get:
		p.signOutPage(w, r)
	case rel == PathSignOut && post:
		p.signOut(w, r)
	case rel == PathHandoff && get:
		p.handoff(w, r)
	case rel == PathHandoffFailed && get:
		p.handoffFailed(w, r, p.safeRedirect(r.URL.Query().Get("rd")))
	case isResetPath(rel):
		p.serveReset(w, r, rel)
	case rel == PathEnrol || rel == pathEnrolDone:
		p.serveEnrol(w, r, rel)
	case isFederationPath(rel):
		p.serveFederation(w, r, rel)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	}
}

// ceremonyKey binds a pending TOTP enrolment or WebAuthn ceremony to the browser's session
// without storing the session id.
func (p *Portal) ceremonyKey(sessionID string) string {
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("ceremony\x00" + sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// clientAddr is the client's address for regulation.
func (p *Portal) clientAddr(r *http.Request) netip.Addr {
	a, _ := netip.ParseAddr(p.cfg.ClientIP(r))
	return a
}
