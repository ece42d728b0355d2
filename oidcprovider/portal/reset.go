package portal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clientaddr"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/totp"
	"github.com/portcullis-auth/portcullis/oidcprovider/mfa/webauthn"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the password reset: "Forgot password?" asks for a username or mail address and
// answers at once, the same page in the same time for everyone, while the lookup and the mail
// happen in the background; the mail carries a one-time link built from the issuer; the link
// opens a form that, after the user's second factor if they have one, sets a new password and
// ends every session of the user.
//
// The link's token is 32 random bytes. The store keeps only its SHA-256 digest, bound to the
// user and to the user's password at issue time (a changed password voids the link), for the
// link's lifespan. A newer link voids older ones (the store remembers the user's latest). The
// form's submission claims the token (store.Claim) before the password changes, so of two
// submissions on any nodes one alone passes.

// DefaultResetLifespan is how long a reset link stays valid unless configured otherwise
// (Authelia's identity_validation reset_password jwt_lifespan default).
const DefaultResetLifespan = 5 * time.Minute

// Limits of the reset request, chosen so that a person who lost their password is never in the
// way while nobody can use the form to flood a mailbox or the directory.
const (
	// resetMailInterval is the least time between two mails to one user (across nodes).
	resetMailInterval = time.Minute
	// resetAddressLimit requests per resetAddressWindow are taken from one client address (an
	// IPv6 /64 counts as one), per node; more are answered "too many requests", which is the
	// same whoever was named.
	resetAddressLimit  = 10
	resetAddressWindow = 15 * time.Minute
	// resetJobs is how many requests may be in the background at once; more are dropped (and
	// logged), still answered as usual.
	resetJobs = 32
	// resetJobTimeout bounds one background request (the lookup and the mail).
	resetJobTimeout = time.Minute
	// minPasswordLength and maxPasswordBytes bound a new password.
	minPasswordLength = 8
	maxPasswordBytes  = 1024
	// maxResetName bounds the username or mail address asked for.
	maxResetName = 256
)

// Paths of the password reset, relative to the issuer.
const (
	// PathResetPassword is the "Forgot password?" page: a username or mail address in.
	PathResetPassword = "/reset-password"
	// PathResetConfirm is the mailed link's page (?token=…): the new password in.
	PathResetConfirm    = "/reset-password/confirm"
	pathResetKeyOptions = "/reset-password/webauthn/options"
	pathResetKeyVerify  = "/reset-password/webauthn/verify"
)

// Store keys of the password reset.
const (
	resetTokenPrefix  = "pwreset/t/"    // + token digest → resetRecord
	resetLatestPrefix = "pwreset/u/"    // + user → the digest of the user's latest link
	resetMailPrefix   = "pwreset/m/"    // + user: a mail was sent within resetMailInterval
	resetUsedPrefix   = "pwreset/used/" // + token digest: the link's claim
	resetKeyPrefix    = "pwreset/k/"    // + token digest: the security key was proved on it
)

// PasswordReset configures the password reset.
type PasswordReset struct {
	// CustomURL, when set, is where the sign-in page's "Forgot password?" leads (another
	// service resets passwords); the built-in pages answer 404.
	CustomURL string
	// Lifespan is how long a mailed link stays valid; 0 means DefaultResetLifespan.
	Lifespan time.Duration
	// Store keeps the links (as digests), the per-user mail limit and the proofs of a second
	// factor; the nodes share it. Required for the built-in pages.
	Store store.KV
}

// resetter is the state of the built-in password reset.
type resetter struct {
	kv       store.KV
	lifespan time.Duration
	jobs     chan struct{} // a place per background request
	wg       sync.WaitGroup
	limiter  *addressLimiter
	// inline, for tests alone, does the lookup and the mail in the request (as a naive
	// implementation would), to show the timing test notices
	inline bool
}

func newResetter(cfg *PasswordReset, n notify.Notifier) (*resetter, error) {
	if cfg == nil || cfg.CustomURL != "" {
		return nil, nil
	}
	if cfg.Store == nil || n == nil {
		return nil, errors.New("portal: the password reset needs a store and a notifier (or a custom URL)")
	}
	r := &resetter{kv: cfg.Store, lifespan: cfg.Lifespan, jobs: make(chan struct{}, resetJobs),
		limiter: &addressLimiter{max: resetAddressLimit, window: resetAddressWindow, seen: map[string][]time.Time{}}}
	if r.lifespan <= 0 {
		r.lifespan = DefaultResetLifespan
	}
	return r, nil
}

// forgotURL is where the sign-in page's "Forgot password?" leads, or "" to hide it.
func (p *Portal) forgotURL() string {
	switch {
	case p.cfg.PasswordReset == nil:
		return ""
	case p.cfg.PasswordReset.CustomURL != "":
		return p.cfg.PasswordReset.CustomURL
	case p.reset != nil:
		return p.base + PathResetPassword
	}
	return ""
}

// isResetPath reports a path of the password reset.
func isResetPath(rel string) bool {
	switch rel {
	case PathResetPassword, PathResetConfirm, pathResetKeyOptions, pathResetKeyVerify:
		return true
	}
	return false
}

// serveReset serves the password reset's paths (CSRF already checked for a POST).
func (p *Portal) serveReset(w http.ResponseWriter, r *http.Request, rel string) {
	if p.reset == nil {
		p.render(w, r, http.StatusNotFound, "error", &pageData{Title: "Page not found",
			Error: "Passwords cannot be reset here. Ask the people who run this service."})
		return
	}
	// the confirm page's URL carries the token: a Referer carries the origin alone (not
	// no-referrer, under which a browser sends its forms with Origin: null, which the CSRF check
	// refuses)
	w.Header().Set("Referrer-Policy", "strict-origin")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case rel == PathResetPassword && get:
		p.render(w, r, http.StatusOK, "reset", &pageData{Title: "Reset your password", Reset: &resetView{}})
	case rel == PathResetPassword && post:
		p.resetRequest(w, r)
	case rel == PathResetConfirm && get:
		p.resetForm(w, r)
	case rel == PathResetConfirm && post:
		p.resetConfirm(w, r)
	case rel == pathResetKeyOptions && post:
		p.resetKeyOptions(w, r)
	case rel == pathResetKeyVerify && post:
		p.resetKeyVerify(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	}
}

// resetView is what the reset pages show beside pageData.
type resetView struct {
	// Sent: the request was taken (the same page whoever was named).
	Sent bool
	// Lifespan of a link, for the pages' wording.
	Lifespan string
	// Token is the link's token, carried by the form.
	Token string
	// NeedsCode: the form asks for a TOTP code.
	NeedsCode bool
	// NeedsKey: the page offers the security key (the user has one, not yet proved here).
	NeedsKey bool
	// KeyOnly: the user has keys and no TOTP device, so the key comes before the form.
	KeyOnly bool
	// OptionsURL and VerifyURL are the WebAuthn script's endpoints for this link.
	OptionsURL, VerifyURL string
}

// ---- the request ----

// resetRequest takes a request for a link. It answers at once, with the same page whether or
// not a user matches: the lookup and the mail happen in the background.
func (p *Portal) resetRequest(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("username"))
	if name == "" {
		p.render(w, r, http.StatusBadRequest, "reset", &pageData{Title: "Reset your password", Error: "Enter your username or mail address.", Reset: &resetView{}})
		return
	}
	addr := p.clientAddr(r)
	ip := p.cfg.ClientIP(r)
	now := p.cfg.Now()
	if !p.reset.limiter.allow(clientaddr.Key(addr), now) {
		p.cfg.Logger.Info("password reset request refused: too many from this address", zap.String("remote_ip", ip))
		w.Header().Set("Retry-After", fmt.Sprint(int(resetAddressWindow/time.Second)))
		p.render(w, r, http.StatusTooManyRequests, "reset", &pageData{Title: "Too many requests",
			Error: "Too many password resets were asked for from your network. Wait a quarter of an hour, then try again.", Reset: &resetView{}})
		return
	}
	if len(name) <= maxResetName && !strings.ContainsAny(name, "\x00\r\n") {
		if p.reset.inline {
			p.sendResetLink(r.Context(), name, ip, now)
		} else {
			p.inBackground("a reset link", func(ctx context.Context) { p.sendResetLink(ctx, name, ip, now) })
		}
	}
	p.render(w, r, http.StatusOK, "reset", &pageData{Title: "Check your mail", Reset: &resetView{Sent: true, Lifespan: lifespanWords(p.reset.lifespan)}})
}

// inBackground runs job on a goroutine of its own, when one of the places is free; otherwise
// it drops it and logs so.
func (p *Portal) inBackground(what string, job func(ctx context.Context)) {
	select {
	case p.reset.jobs <- struct{}{}:
	default:
		p.cfg.Logger.Warn("password reset: too many requests in progress; one was dropped", zap.String("job", what))
		return
	}
	p.reset.wg.Add(1)
	go func() {
		defer func() { <-p.reset.jobs; p.reset.wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), resetJobTimeout)
		defer cancel()
		job(ctx)
	}()
}

// sendResetLink finds the user name names and mails them a new link, unless they are unknown,
// disabled or without a mail address, or were sent one within resetMailInterval.
func (p *Portal) sendResetLink(ctx context.Context, name, ip string, at time.Time) {
	log := p.cfg.Logger
	u, err := p.cfg.Users.Lookup(ctx, name)
	switch {
	case errors.Is(err, users.ErrNotFound):
		// the name typed is not logged: it may be a password typed in the wrong field
		log.Info("password reset asked for no known user: no mail sent", zap.String("remote_ip", ip))
		return
	case err != nil:
		log.Error("password reset: the directory cannot be asked; no mail sent", zap.String("remote_ip", ip), zap.Error(err))
		return
	case u.Disabled:
		log.Info("password reset asked for a disabled user: no mail sent", zap.String("user", u.Name), zap.String("remote_ip", ip))
		return
	case len(u.Emails) == 0:
		log.Info("password reset asked for a user without a mail address: no mail sent", zap.String("user", u.Name), zap.String("remote_ip", ip))
		return
	}
	kv := p.reset.kv
	if _, claimed, err := store.Claim(ctx, kv, []byte(resetMailPrefix+u.Name), resetMailInterval); err != nil {
		log.Error("password reset: the store cannot be written; no mail sent", zap.String("user", u.Name), zap.Error(err))
		return
	} else if !claimed {
		log.Info("password reset: a link was mailed to this user less than a minute ago; no mail sent", zap.String("user", u.Name), zap.String("remote_ip", ip))
		return
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	digest := tokenDigest(token)
	rec, _ := json.Marshal(resetRecord{User: u.Name, Password: passwordVersion(u), Issued: at.Unix()})
	if err := kv.Put(ctx,
		store.Entry{Key: []byte(resetTokenPrefix + digest), Value: rec, TTL: p.reset.lifespan},
		store.Entry{Key: []byte(resetLatestPrefix + u.Name), Value: []byte(digest), TTL: p.reset.lifespan},
	); err != nil {
		log.Error("password reset: storing a link", zap.String("user", u.Name), zap.Error(err))
		return
	}
	// from the issuer alone: never from the request's Host or X-Forwarded-Host
	link := p.cfg.Issuer.Scheme + "://" + p.cfg.Issuer.Host + p.base + PathResetConfirm + "?token=" + token
	err = p.cfg.Notifier.Send(ctx, notify.Recipient{Name: u.DisplayName, Address: u.Emails[0]}, notify.Message{
		Kind: notify.KindResetLink, Title: "Set a new password", Link: link, Lifespan: p.reset.lifespan, RemoteIP: ip, When: at,
	})
	if err != nil {
		log.Error("password reset: the link could not be mailed", zap.String("user", u.Name), zap.Error(err))
		return
	}
	log.Info("password reset link mailed", zap.String("user", u.Name), zap.String("remote_ip", ip))
}

// resetRecord is a link as the store keeps it, under its token's digest.
type resetRecord struct {
	User string `json:"u"`
	// Password is a digest of the user's password digest (or version) at issue time.
	Password string `json:"p"`
	Issued   int64  `json:"at"`
}

// tokenDigest is the store's name of a token: its SHA-256, base64url.
func tokenDigest(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// passwordVersion is what a link remembers of the user's password: a digest of its digest (or
// of a directory's PasswordVersion), so a password changed since voids the link.
func passwordVersion(u *users.User) string {
	h := sha256.Sum256([]byte("portcullis reset\x00" + u.Digest()))
	return hex.EncodeToString(h[:])
}

// ---- the link ----

// errResetLink is a token that is not (or no longer) a live link: unknown, expired, used,
// replaced by a newer one, or of a user whose password changed or who is disabled or gone.
var errResetLink = errors.New("portal: not a live reset link")

// resetLink is a live link.
type resetLink struct {
	token, digest string
	user          *users.User
}

// openLink checks a token: errResetLink, an error wrapping users.ErrUnavailable, another
// error (the store), or the live link.
func (p *Portal) openLink(ctx context.Context, token string) (*resetLink, error) {
	if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) != 32 {
		return nil, errResetLink
	}
	digest := tokenDigest(token)
	kv := p.reset.kv
	var rec resetRecord
	if err := readLink(ctx, kv, []byte(resetTokenPrefix+digest), &rec, errResetLink); err != nil {
		return nil, err
	}
	if rec.User == "" {
		return nil, errResetLink
	}
	if err := latestIs(ctx, kv, []byte(resetLatestPrefix+rec.User), digest, errResetLink); err != nil {
		return nil, err // a newer link replaced it
	}
	u, err := p.linkUser(ctx, rec.User, errResetLink)
	if err != nil {
		return nil, err
	}
	if passwordVersion(u) != rec.Password {
		return nil, errResetLink
	}
	return &resetLink{token: token, digest: digest, user: u}, nil
}

// readLink reads the record of a one-time link (JSON under key) into rec: bad when there is
// none or it cannot be read, the store's error otherwise.
func readLink(ctx context.Context, kv store.KV, key []byte, rec any, bad error) error {
	data, err := kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return bad
	} else if err != nil {
		return err
	}
	if json.Unmarshal(data, rec) != nil {
		return bad
	}
	return nil
}

// latestIs checks that a user's latest link, kept under key, is the one of digest: bad when
// there is none or another (a newer link replaced it), the store's error otherwise.
func latestIs(ctx context.Context, kv store.KV, key []byte, digest string, bad error) error {
	latest, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return bad
	case err != nil:
		return err
	case !hmac.Equal(latest, []byte(digest)):
		return bad
	}
	return nil
}

// linkUser looks up the user a link was made for: bad when they are gone, disabled or spelled
// otherwise now, an error wrapping users.ErrUnavailable when the directory cannot be asked.
func (p *Portal) linkUser(ctx context.Context, name string, bad error) (*users.User, error) {
	u, err := p.cfg.Users.Lookup(ctx, name)
	if errors.Is(err, users.ErrNotFound) {
		return nil, bad
	} else if err != nil {
		return nil, err
	}
	if u.Name != name || u.Disabled {
		return nil, bad
	}
	return u, nil
}

// factors are the second factors a link's user must prove one of.
type factors struct {
	totp, keys bool
}

func (f factors) any() bool { return f.totp || f.keys }

// factorsOf reads the user's devices; unlike the settings page, an error is an error (never
// "no device", which would skip the second factor).
func (p *Portal) factorsOf(ctx context.Context, u *users.User) (factors, error) {
	var f factors
	if p.cfg.TOTP != nil {
		_, err := p.cfg.TOTP.Info(ctx, u.Name)
		switch {
		case err == nil:
			f.totp = true
		case !errors.Is(err, totp.ErrNoDevice):
			return f, err
		}
	}
	if p.cfg.WebAuthn != nil {
		keys, err := p.cfg.WebAuthn.List(ctx, u.Name)
		if err != nil {
			return f, err
		}
		f.keys = len(keys) > 0
	}
	return f, nil
}

// keyProved reports whether the link's user proved a security key on this link.
func (p *Portal) keyProved(ctx context.Context, l *resetLink) (bool, error) {
	_, err := p.reset.kv.Get(ctx, []byte(resetKeyPrefix+l.digest))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// linkFailed answers a link that could not be opened.
func (p *Portal) linkFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errResetLink):
		p.render(w, r, http.StatusBadRequest, "reset", &pageData{Title: "This link does not work",
			Error: "The link has expired, was already used, or a newer one was sent. Ask for a new link below.", Reset: &resetView{}})
	case errors.Is(err, users.ErrUnavailable):
		p.directoryDown(w, r)
	default:
		p.cfg.Logger.Error("password reset: reading a link", zap.Error(err))
		p.unavailable(w, r)
	}
}

// formData is the new-password form for the link l.
func (p *Portal) formData(ctx context.Context, l *resetLink) (*pageData, error) {
	f, err := p.factorsOf(ctx, l.user)
	if err != nil {
		return nil, err
	}
	v := &resetView{Token: l.token, Lifespan: lifespanWords(p.reset.lifespan)}
	if f.any() {
		proved, err := p.keyProved(ctx, l)
		if err != nil {
			return nil, err
		}
		if proved {
			return &pageData{Title: "Choose a new password", User: l.user, Reset: v, Notice: "Your security key was accepted."}, nil
		}
		v.NeedsCode = f.totp
		v.NeedsKey = f.keys
		v.KeyOnly = f.keys && !f.totp
		v.OptionsURL = p.base + pathResetKeyOptions + "?token=" + l.token
		v.VerifyURL = p.base + pathResetKeyVerify + "?token=" + l.token
	}
	return &pageData{Title: "Choose a new password", User: l.user, Reset: v}, nil
}

// resetForm shows the new-password form of a link. It does not use the link up: mail scanners
// open links before people do.
func (p *Portal) resetForm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, err := p.openLink(ctx, r.URL.Query().Get("token"))
	if err != nil {
		p.linkFailed(w, r, err)
		return
	}
	d, err := p.formData(ctx, l)
	if err != nil {
		p.linkFailed(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "resetform", d)
}

// newPasswordProblem is what is wrong with a new password, or "".
func newPasswordProblem(pw, again string) string {
	switch {
	case pw == "" || again == "":
		return "Enter the new password twice."
	case pw != again:
		return "The two passwords are not the same. Type them again."
	case len(pw) > maxPasswordBytes:
		return fmt.Sprintf("That password is too long: use at most %d bytes.", maxPasswordBytes)
	case !utf8.ValidString(pw):
		return "That password holds characters that cannot be stored. Type it again."
	case len([]rune(pw)) < minPasswordLength:
		return fmt.Sprintf("That password is too short: use at least %d characters.", minPasswordLength)
	}
	return ""
}

// resetConfirm sets the new password: the link, the password twice, the second factor, then
// the link is claimed, the password set, every session of the user ended and the user told.
func (p *Portal) resetConfirm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := p.cfg.Logger
	l, err := p.openLink(ctx, r.PostFormValue("token"))
	if err != nil {
		p.linkFailed(w, r, err)
		return
	}
	d, err := p.formData(ctx, l)
	if err != nil {
		p.linkFailed(w, r, err)
		return
	}
	again := func(status int, msg string) {
		d.Error = msg
		p.render(w, r, status, "resetform", d)
	}
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password_again")
	if msg := newPasswordProblem(pw, pw2); msg != "" {
		again(http.StatusBadRequest, msg)
		return
	}
	u := l.user
	addr := p.clientAddr(r)
	ip := p.cfg.ClientIP(r)
	switch v := d.Reset; {
	case v.KeyOnly:
		again(http.StatusUnauthorized, "Confirm it is you with your security key first.")
		return
	case v.NeedsCode:
		if !p.resetTOTP(ctx, u, addr, r.PostFormValue("code")) {
			again(http.StatusUnauthorized, "That code is not right. Wait for a new one and try again.")
			return
		}
	}
	// the link is used once, on whichever node
	usedKey := []byte(resetUsedPrefix + l.digest)
	if _, claimed, err := store.Claim(ctx, p.reset.kv, usedKey, p.reset.lifespan); err != nil {
		log.Error("password reset: claiming a link", zap.Error(err))
		p.unavailable(w, r)
		return
	} else if !claimed {
		p.linkFailed(w, r, errResetLink)
		return
	}
	if err := p.cfg.Users.SetPassword(ctx, u, pw); err != nil {
		// the link may be tried again once the directory answers
		_ = p.reset.kv.Delete(context.WithoutCancel(ctx), usedKey)
		log.Error("password reset: setting the password", zap.String("user", u.Name), zap.String("remote_ip", ip), zap.Error(err))
		w.Header().Set("Retry-After", "30")
		p.render(w, r, http.StatusServiceUnavailable, "error", &pageData{Title: "Your password was not changed",
			Error: "The directory of users could not store the new password. Your link still works until it expires: try again in a minute. If it lasts, tell the people who run this service."})
		return
	}
	wctx := context.WithoutCancel(ctx)
	if err := p.reset.kv.Delete(wctx, []byte(resetTokenPrefix+l.digest), []byte(resetLatestPrefix+u.Name), []byte(resetKeyPrefix+l.digest)); err != nil {
		// the changed password voids the link all the same
		log.Warn("password reset: removing a used link", zap.Error(err))
	}
	ended := p.endEverySession(wctx, u.Name)
	p.clearSession(w)
	log.Info("password reset", zap.String("user", u.Name), zap.String("remote_ip", ip), zap.Int("sessions_ended", ended))
	if len(u.Emails) > 0 {
		to := notify.Recipient{Name: u.DisplayName, Address: u.Emails[0]}
		at := p.cfg.Now()
		p.inBackground("a password-changed notice", func(ctx context.Context) {
			if err := p.cfg.Notifier.Send(ctx, to, notify.Message{Kind: notify.KindEvent, Title: "Your password was changed",
				Event: "Your password was changed through a reset link, and every session of your account was signed out.", RemoteIP: ip, When: at}); err != nil {
				log.Error("password reset: the notice could not be mailed", zap.String("user", u.Name), zap.Error(err))
			}
		})
	}
	p.render(w, r, http.StatusOK, "resetdone", &pageData{Title: "Password changed"})
}

// resetTOTP checks a TOTP code on a reset link, regulated as the second-factor page is.
func (p *Portal) resetTOTP(ctx context.Context, u *users.User, addr netip.Addr, code string) bool {
	attempt, allowed := p.begin(ctx, u.Name, addr)
	if !allowed {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", "banned"), zap.String("flow", "password reset"), zap.String("remote_ip", addr.String()))
		p.observe("totp", "banned", nil)
		return false
	}
	err := p.cfg.TOTP.Check(ctx, u.Name, strings.ReplaceAll(code, " ", ""), p.cfg.Now())
	if err != nil {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "totp"), zap.String("reason", err.Error()), zap.String("flow", "password reset"), zap.String("remote_ip", addr.String()))
		p.observe("totp", "failure", attempt)
		return false
	}
	attempt.Succeeded()
	p.observe("totp", "success", nil)
	return true
}

// endEverySession ends every session of user and what each authorized (OnSignOut), as the
// operator's `caddy oidc sessions end` does, then every token the user gave applications
// (EndUserTokens), and returns how many sessions there were.
func (p *Portal) endEverySession(ctx context.Context, user string) int {
	return p.endOtherSessions(ctx, user, "", "a password reset")
}

// ---- the security key on a link ----

// resetKeyLink opens the link of a WebAuthn script request, or answers the script.
func (p *Portal) resetKeyLink(w http.ResponseWriter, r *http.Request) (*resetLink, bool) {
	if p.cfg.WebAuthn == nil {
		scriptError(w, http.StatusNotFound, "Security keys are not enabled.")
		return nil, false
	}
	l, err := p.openLink(r.Context(), r.URL.Query().Get("token"))
	switch {
	case errors.Is(err, errResetLink):
		scriptError(w, http.StatusBadRequest, "This link no longer works. Ask for a new one.")
		return nil, false
	case err != nil:
		p.cfg.Logger.Error("password reset: reading a link", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return nil, false
	}
	return l, true
}

func (p *Portal) resetKeyOptions(w http.ResponseWriter, r *http.Request) {
	l, ok := p.resetKeyLink(w, r)
	if !ok {
		return
	}
	opts, err := p.cfg.WebAuthn.BeginLogin(r.Context(), l.user.Name, p.ceremonyKey("reset\x00"+l.digest))
	if errors.Is(err, webauthn.ErrNoDevice) {
		scriptError(w, http.StatusBadRequest, "You have no security key registered.")
		return
	} else if err != nil {
		p.cfg.Logger.Error("password reset: starting a WebAuthn check", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(opts)
}

func (p *Portal) resetKeyVerify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, ok := p.resetKeyLink(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		scriptError(w, http.StatusBadRequest, "The answer was too large.")
		return
	}
	u := l.user
	addr := p.clientAddr(r)
	attempt, allowed := p.begin(ctx, u.Name, addr)
	if !allowed {
		p.observe("webauthn", "banned", nil)
		scriptError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	if err := p.cfg.WebAuthn.FinishLogin(ctx, u.Name, p.ceremonyKey("reset\x00"+l.digest), body); err != nil {
		p.cfg.Logger.Info("second factor refused", zap.String("user", u.Name), zap.String("factor", "webauthn"), zap.String("flow", "password reset"), zap.String("reason", err.Error()), zap.String("remote_ip", addr.String()))
		p.observe("webauthn", "failure", attempt)
		scriptError(w, http.StatusUnauthorized, "The security key was not accepted.")
		return
	}
	attempt.Succeeded()
	p.observe("webauthn", "success", nil)
	if err := p.reset.kv.Put(ctx, store.Entry{Key: []byte(resetKeyPrefix + l.digest), Value: []byte{1}, TTL: p.reset.lifespan}); err != nil {
		p.cfg.Logger.Error("password reset: recording a security key", zap.Error(err))
		scriptError(w, http.StatusServiceUnavailable, "Try again in a moment.")
		return
	}
	answerScript(w, http.StatusOK, map[string]string{"redirect": p.base + PathResetConfirm + "?token=" + l.token})
}

// ---- helpers ----

// addressLimiter counts requests per client address in a sliding window.
type addressLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	seen   map[string][]time.Time
}

// allow records a request from key at now and reports whether it is within the limit.
func (l *addressLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) > 10000 {
		for k, ts := range l.seen {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) > l.window {
				delete(l.seen, k)
			}
		}
	}
	ts := l.seen[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.max {
		l.seen[key] = ts
		return false
	}
	l.seen[key] = append(ts, now)
	return true
}

// lifespanWords is a lifespan as the pages say it ("5 minutes").
func lifespanWords(d time.Duration) string {
	switch {
	case d%time.Hour == 0 && d >= time.Hour:
		if d == time.Hour {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0 && d >= time.Minute:
		if d == time.Minute {
			return "1 minute"
		}
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}
