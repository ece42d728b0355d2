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
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/regulation"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the enrolment link (`caddy oidc users invite`): a one-time link an operator hands
// to a person so they can set a password and add their second factors (an authenticator app, a
// security key, a passkey) with no mail and no password needed.
//
// The link's token is 32 random bytes. The store keeps only an HMAC of it under the portal's
// key (derived from the provider's secret), with the user and the expiry, for the link's
// lifespan; it remembers each user's latest link, and a new invite removes the previous one
// (and ends the enrolment session a used one began, as a revocation does).
// Opening the link (GET) only shows who it is for and a Continue button, so mail and chat
// previewers that fetch links use nothing up. Continue (POST, CSRF) claims the token
// (store.Claim, once on whichever node), ends any session the browser had, and begins an
// enrolment session (session.Session.Enrolment): a session at no factor level that the gate,
// the applications and every portal page but the few settings pages it needs treat as no
// session at all (see enrolmentRoute). It lasts enrolmentSessionLife at most, never beyond the
// link's own expiry, and ends when the person clicks "Done — sign in"; they then sign in with
// what they set up. Unknown, expired, used and replaced tokens get one page; they count as
// failures against the client's address in the regulator, which bans an address that keeps
// guessing.

// Lifespans of an enrolment link (`caddy oidc users invite --lifespan`).
const (
	// DefaultInviteLifespan is a link's lifespan unless the operator asks for another.
	DefaultInviteLifespan = 72 * time.Hour
	// MinInviteLifespan and MaxInviteLifespan bound the lifespan an operator may ask for.
	MinInviteLifespan = 5 * time.Minute
	MaxInviteLifespan = 30 * 24 * time.Hour
)

// enrolmentSessionLife is the longest an enrolment session lasts (less when the link expires
// sooner): time to set a password and add a device or two.
const enrolmentSessionLife = 30 * time.Minute

// Paths of the enrolment link, relative to the issuer.
const (
	// PathEnrol is the link's page (?token=…); its form posts the token back here.
	PathEnrol      = "/enrol"
	pathEnrolDone  = "/enrol/done"
	enrolRegulated = "\x00enrolment link" // the regulator's name for bad tokens (no user has it)
)

// Store keys of the enrolment links.
const (
	enrolTokenPrefix  = "enrol/t/"    // + token digest → inviteRecord
	enrolLatestPrefix = "enrol/u/"    // + user key → the digest of the user's latest link
	enrolUsedPrefix   = "enrol/used/" // + token digest: the link's claim
)

// ErrNoInvite is a user who has no live enrolment link (RevokeInvite).
var ErrNoInvite = errors.New("portal: no live enrolment link")

// errInvite is a token that is not (or no longer) a live link: unknown, expired, used, replaced
// by a newer one, or of a user who is gone or disabled.
var errInvite = errors.New("portal: not a live enrolment link")

// Invitation is a new enrolment link.
type Invitation struct {
	// User is the directory's spelling of the person's name.
	User string
	// Link is the one-time link, from the issuer: it is a credential, never logged.
	Link string
	// Expires is when the link stops working.
	Expires time.Time
	// Replaced reports that the person's previous link was revoked by this one.
	Replaced bool
}

// inviteRecord is a link as the store keeps it, under its token's digest.
type inviteRecord struct {
	User    string `json:"u"`
	Expires int64  `json:"exp"`
}

// invite is a live link.
type invite struct {
	token, digest string
	user          *users.User
	expires       time.Time
}

// enrolDigest is the store's name of a token: an HMAC under the portal's key, so a copy of the
// store gives no link and names none.
func (p *Portal) enrolDigest(token string) string {
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("enrolment link\x00" + token))
	return hex.EncodeToString(m.Sum(nil))
}

// enrolUserKey is the store key of user's latest link (an HMAC of the name: no name in keys).
func (p *Portal) enrolUserKey(user string) []byte {
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("enrolment user\x00" + user))
	return []byte(enrolLatestPrefix + hex.EncodeToString(m.Sum(nil)[:20]))
}

// Invite makes a one-time enrolment link for u, valid for lifespan (the caller checks it
// against MinInviteLifespan and MaxInviteLifespan, and that u is enabled), and revokes the
// link u had. The token is returned in the link alone; the store keeps its digest.
func (p *Portal) Invite(ctx context.Context, u *users.User, lifespan time.Duration) (*Invitation, error) {
	kv := p.cfg.Store
	if kv == nil || lifespan <= 0 {
		return nil, errors.New("portal: enrolment links need a store and a positive lifespan")
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	token := base64.RawURLEncoding.EncodeToString(raw)
	digest := p.enrolDigest(token)
	replaced, err := p.revokeInvite(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	expires := p.cfg.Now().Add(lifespan).Truncate(time.Second)
	rec, _ := json.Marshal(inviteRecord{User: u.Name, Expires: expires.Unix()})
	if err := kv.Put(ctx,
		store.Entry{Key: []byte(enrolTokenPrefix + digest), Value: rec, TTL: lifespan},
		store.Entry{Key: p.enrolUserKey(u.Name), Value: []byte(digest), TTL: lifespan},
	); err != nil {
		return nil, fmt.Errorf("portal: keeping an enrolment link: %w", err)
	}
	// from the issuer alone, as the reset links are
	link := p.origin + p.base + PathEnrol + "?token=" + token
	p.cfg.Logger.Info("enrolment link made", zap.String("user", u.Name), zap.Time("expires", expires), zap.Bool("replaced", replaced))
	return &Invitation{User: u.Name, Link: link, Expires: expires, Replaced: replaced}, nil
}

// RevokeInvite removes the live enrolment link of user and ends the enrolment session a used
// link of theirs began; ErrNoInvite when there was neither.
func (p *Portal) RevokeInvite(ctx context.Context, user string) error {
	if p.cfg.Store == nil {
		return ErrNoInvite
	}
	had, err := p.revokeInvite(ctx, user)
	switch {
	case err != nil:
		return err
	case !had:
		return ErrNoInvite
	}
	p.cfg.Logger.Info("enrolment link revoked", zap.String("user", user))
	return nil
}

// revokeInvite removes user's latest link and ends the enrolment sessions a link of theirs
// began (a leaked link may have been used), and reports whether there was a live link or such
// a session.
func (p *Portal) revokeInvite(ctx context.Context, user string) (bool, error) {
	kv := p.cfg.Store
	ended, err := p.cfg.Sessions.EndEnrolments(ctx, user)
	if err != nil {
		return false, fmt.Errorf("portal: ending the enrolment sessions: %w", err)
	}
	latest, err := kv.Get(ctx, p.enrolUserKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return ended > 0, nil
	} else if err != nil {
		return false, fmt.Errorf("portal: reading the enrolment link: %w", err)
	}
	_, err = kv.Get(ctx, []byte(enrolTokenPrefix+string(latest)))
	live := err == nil
	if err := kv.Delete(ctx, []byte(enrolTokenPrefix+string(latest)), p.enrolUserKey(user)); err != nil {
		return false, fmt.Errorf("portal: revoking the enrolment link: %w", err)
	}
	return live || ended > 0, nil
}

// openInvite checks a token: errInvite, an error wrapping users.ErrUnavailable, another error
// (the store), or the live link.
func (p *Portal) openInvite(ctx context.Context, token string) (*invite, error) {
	if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) != 32 {
		return nil, errInvite
	}
	kv := p.cfg.Store
	if kv == nil {
		return nil, errInvite
	}
	digest := p.enrolDigest(token)
	var rec inviteRecord
	if err := readLink(ctx, kv, []byte(enrolTokenPrefix+digest), &rec, errInvite); err != nil {
		return nil, err
	}
	expires := time.Unix(rec.Expires, 0)
	if rec.User == "" || !p.cfg.Now().Before(expires) {
		return nil, errInvite
	}
	if err := latestIs(ctx, kv, p.enrolUserKey(rec.User), digest, errInvite); err != nil {
		return nil, err // a newer link replaced it, or it was revoked
	}
	u, err := p.linkUser(ctx, rec.User, errInvite)
	if err != nil {
		return nil, err
	}
	return &invite{token: token, digest: digest, user: u, expires: expires}, nil
}

// enrolmentRoute reports a portal path an enrolment session may use: the settings page, adding
// an authenticator app, a security key or a passkey (every route of their registrations, not
// the removal), setting the password, and ending the set-up. Everywhere else the session is no
// session (pick): it signs nobody in to the gate, the applications or any other page.
func enrolmentRoute(rel string) bool {
	switch rel {
	case PathSettings, pathTOTPEnrol, pathPassword, pathEnrolDone:
		return true
	case pathKeyRemove:
		return false
	}
	for _, family := range []string{pathKeyRegister, "/settings/passkey"} { // security keys', passkeys'
		if rel == family || strings.HasPrefix(rel, family+"/") {
			return true
		}
	}
	return false
}

// enrolmentOK marks the context of a request on an enrolmentRoute.
type enrolmentOK struct{}

// allowEnrolment returns r marked so that pick accepts an enrolment session, when rel is an
// enrolmentRoute.
func allowEnrolment(r *http.Request, rel string) *http.Request {
	if !enrolmentRoute(rel) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), enrolmentOK{}, true))
}

// enrolmentAllowed reports whether ctx is a request's on an enrolmentRoute.
func enrolmentAllowed(ctx context.Context) bool { return ctx.Value(enrolmentOK{}) != nil }

// inviteView is what the enrolment link's page shows.
type inviteView struct {
	Token   string
	Expires time.Time
}

// serveEnrol serves the enrolment link's paths (CSRF already checked for a POST).
func (p *Portal) serveEnrol(w http.ResponseWriter, r *http.Request, rel string) {
	// the link's page carries the token in its URL: a Referer carries the origin alone (not
	// no-referrer, under which a browser sends the form with Origin: null, which the CSRF
	// check refuses)
	w.Header().Set("Referrer-Policy", "strict-origin")
	switch get, post := r.Method == http.MethodGet || r.Method == http.MethodHead, r.Method == http.MethodPost; {
	case rel == PathEnrol && get:
		p.enrolPage(w, r)
	case rel == PathEnrol && post:
		p.enrolRedeem(w, r)
	case rel == pathEnrolDone && post:
		p.enrolDone(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	}
}

// enrolAttempt starts a regulated look at a token from addr: nil and false when the address is
// banned for guessing (it has answered), or the store cannot count (it has answered).
func (p *Portal) enrolAttempt(w http.ResponseWriter, r *http.Request, addr netip.Addr) (*regulation.Attempt, bool) {
	if p.cfg.Regulator == nil {
		return &regulation.Attempt{}, true
	}
	a, ok, err := p.cfg.Regulator.Enter(r.Context(), enrolRegulated, addr)
	switch {
	case err != nil:
		p.cfg.Logger.Error("portal: regulating an enrolment link", zap.Error(err))
		p.unavailable(w, r)
		return nil, false
	case !ok:
		p.cfg.Logger.Info("enrolment link refused: too many bad links from this address", zap.String("remote_ip", addr.String()))
		w.Header().Set("Retry-After", "300")
		p.render(w, r, http.StatusTooManyRequests, "enrol", &pageData{Title: "Too many attempts",
			Error: "Too many enrolment links that do not work were tried from your network. Wait a few minutes, then open your link again."})
		return nil, false
	}
	if a == nil {
		a = &regulation.Attempt{}
	}
	return a, true
}

// inviteFailed answers a link that could not be opened; a bad token stays counted against the
// address.
func (p *Portal) inviteFailed(w http.ResponseWriter, r *http.Request, a *regulation.Attempt, err error) {
	switch {
	case errors.Is(err, errInvite):
		p.cfg.Logger.Info("enrolment link refused: unknown, expired, used or replaced", zap.String("remote_ip", p.cfg.ClientIP(r)))
		p.render(w, r, http.StatusGone, "enrol", &pageData{Title: "This link no longer works",
			Error: "This enrolment link has expired or was already used. Ask your administrator for a new one."})
		return
	}
	a.Abandoned()
	if errors.Is(err, users.ErrUnavailable) {
		p.directoryDown(w, r)
		return
	}
	p.cfg.Logger.Error("portal: reading an enrolment link", zap.Error(err))
	p.unavailable(w, r)
}

// enrolPage shows whom the link is for and a Continue button (GET). It uses nothing up: mail
// and chat previewers fetch links before people do.
func (p *Portal) enrolPage(w http.ResponseWriter, r *http.Request) {
	a, ok := p.enrolAttempt(w, r, p.clientAddr(r))
	if !ok {
		return
	}
	inv, err := p.openInvite(r.Context(), r.URL.Query().Get("token"))
	if err != nil {
		p.inviteFailed(w, r, a, err)
		return
	}
	a.Abandoned() // a look at a live link is no failure, and no success either
	p.render(w, r, http.StatusOK, "enrol", &pageData{Title: "Set up your account, " + inv.user.DisplayName, User: inv.user,
		Invite: &inviteView{Token: inv.token, Expires: inv.expires}})
}

// enrolRedeem uses the link up (POST): the token is claimed once, the browser's session ends,
// and an enrolment session begins on the settings page.
func (p *Portal) enrolRedeem(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := p.clientAddr(r)
	a, ok := p.enrolAttempt(w, r, addr)
	if !ok {
		return
	}
	inv, err := p.openInvite(ctx, r.PostFormValue("token"))
	if err != nil {
		p.inviteFailed(w, r, a, err)
		return
	}
	// the link is used once, on whichever node
	kv := p.cfg.Store
	usedKey := []byte(enrolUsedPrefix + inv.digest)
	if _, claimed, err := store.Claim(ctx, kv, usedKey, inv.expires.Sub(p.cfg.Now())+time.Minute); err != nil {
		p.inviteFailed(w, r, a, err)
		return
	} else if !claimed {
		p.inviteFailed(w, r, a, errInvite)
		return
	}
	u := inv.user
	wctx := context.WithoutCancel(ctx)
	life := min(enrolmentSessionLife, inv.expires.Sub(p.cfg.Now()))
	id, sess, err := p.cfg.Sessions.CreateEnrolment(wctx, u.Name, life)
	if err != nil {
		// the link may be used again once the store answers
		_ = kv.Delete(wctx, usedKey)
		a.Abandoned()
		p.cfg.Logger.Error("portal: beginning an enrolment session", zap.String("user", u.Name), zap.Error(err))
		p.unavailable(w, r)
		return
	}
	a.Succeeded()
	if latestIs(wctx, kv, p.enrolUserKey(u.Name), inv.digest, errInvite) == nil {
		_ = kv.Delete(wctx, p.enrolUserKey(u.Name))
	}
	if err := kv.Delete(wctx, []byte(enrolTokenPrefix+inv.digest)); err != nil {
		p.cfg.Logger.Warn("portal: removing a used enrolment link", zap.Error(err)) // its claim voids it all the same
	}
	// whoever was signed in on this browser is signed out: the set-up is the person's alone
	if old := p.sessionID(r); old != "" {
		if err := p.endSession(wctx, old); err != nil {
			p.cfg.Logger.Error("portal: ending the session an enrolment replaces", zap.Error(err))
		}
	}
	p.setSession(w, id, sess)
	p.cfg.Logger.Info("enrolment link used", zap.String("user", u.Name), zap.Time("session_ends", sess.Expires), zap.String("remote_ip", addr.String()))
	p.notifyEvent(ctx, r, u, "Your account set-up link was used", "The one-time link to set up your account was used. If it was not you, tell the people who run this service at once.")
	redirect(w, r, p.base+PathSettings)
}

// enrolDone ends the enrolment session (POST, "Done — sign in") and sends the person to sign
// in with what they set up.
func (p *Portal) enrolDone(w http.ResponseWriter, r *http.Request) {
	id, sess, u := p.current(r)
	if sess == nil || !sess.Enrolment {
		redirect(w, r, p.base+PathSettings)
		return
	}
	if err := p.endSession(r.Context(), id); err != nil {
		p.unavailable(w, r)
		return
	}
	p.clearSession(w)
	p.cfg.Logger.Info("enrolment finished", zap.String("user", u.Name), zap.String("remote_ip", p.cfg.ClientIP(r)))
	redirect(w, r, p.base+PathSignIn+"?notice=enrolled")
}
