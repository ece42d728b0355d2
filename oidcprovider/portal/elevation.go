package portal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the elevated session (Authelia's identity_validation.elevated_session): before
// a second factor is added or removed, or a password changed, the person proves who they are
// again, with a one-time code mailed to them, or with their second factor. A password alone,
// which whoever learnt it also has, is never enough (unless the operator keeps the old rule for
// a provider without a notifier: ElevationConfig.PasswordWithoutNotifier).
//
// A code is stored only as an HMAC digest bound to the user and the browser's session, with an
// expiry of CodeLifespan; it is compared in constant time, claimed (store.Claim) before it is
// accepted so that two submissions racing on any nodes cannot both pass, and a new code replaces
// the old. Wrong codes count as second-factor failures (the regulator bans as for TOTP), and at
// most one code a SendInterval is mailed to a person, so the page cannot flood a mailbox.

// ElevationConfig is how a session is elevated before a sensitive change. The zero value is
// the defaults.
type ElevationConfig struct {
	// CodeLifespan is how long a mailed code may be entered; 0 is 5m.
	CodeLifespan time.Duration
	// ElevationLifespan is how long a code, or a second factor, keeps the session elevated;
	// 0 is 10m.
	ElevationLifespan time.Duration
	// Characters is a code's length; 0 is 8.
	Characters int
	// CodeAloneWithSecondFactor lets a mailed code elevate a person who has a second factor
	// without it (require_second_factor false). By default they must use their second factor.
	CodeAloneWithSecondFactor bool
	// CodeAfterSecondFactor asks for a mailed code even of a session whose second factor is
	// recent (skip_second_factor false). By default a recent second factor is enough.
	CodeAfterSecondFactor bool
	// PasswordWithoutNotifier keeps the rule from before elevated sessions when there is no
	// notifier (require_notifier false): the password within five minutes, and the second
	// factor within five minutes for a person who has one.
	PasswordWithoutNotifier bool
	// SendInterval is the least time between two codes mailed to one person; 0 is 30s.
	SendInterval time.Duration
	// SendsPerHour is how many codes one person may be mailed in a clock hour; 0 is 10. With
	// SendInterval it keeps someone who has the password from filling the mailbox.
	SendsPerHour int
}

// WithDefaults fills the zero fields.
func (c ElevationConfig) WithDefaults() ElevationConfig {
	if c.CodeLifespan <= 0 {
		c.CodeLifespan = 5 * time.Minute
	}
	if c.ElevationLifespan <= 0 {
		c.ElevationLifespan = 10 * time.Minute
	}
	if c.Characters <= 0 {
		c.Characters = 8
	}
	if c.SendInterval <= 0 {
		c.SendInterval = 30 * time.Second
	}
	if c.SendsPerHour <= 0 {
		c.SendsPerHour = 10
	}
	return c
}

// codeAlphabet has no look-alikes: no 0, O, 1, I or L.
const codeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// newCode is a code of n characters of codeAlphabet from crypto/rand.
func newCode(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(codeAlphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("portal: crypto/rand failed: " + err.Error()) // crypto/rand never fails on Linux
		}
		b[i] = codeAlphabet[v.Int64()]
	}
	return string(b)
}

// normalCode is what a person typed as a code: capitals, without spaces or dashes.
func normalCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// need is what a session lacks for a sensitive change.
type need int

const (
	elevated         need = iota // nothing: the change may go ahead
	needCode                     // a mailed code
	needSecondFactor             // the person's second factor, used again
	needPassword                 // the password again (the rule without a notifier)
)

// passwordRule reports that the rule from before elevated sessions applies: no notifier, and
// the operator chose it.
func (p *Portal) passwordRule() bool {
	return !p.mails() && p.cfg.Elevation.PasswordWithoutNotifier
}

// lacks says what sess lacks before a sensitive change of u's account.
func (p *Portal) lacks(ctx context.Context, sess *session.Session, u *users.User) need {
	if sess.Enrolment {
		// the one-time enrolment link proved who this is, and the session reaches nothing but
		// the pages that add a password and devices (enrolmentRoute)
		return elevated
	}
	now := p.cfg.Now()
	has := p.hasSecondFactor(ctx, u)
	if p.passwordRule() {
		switch {
		case sess.SecondFactor == session.FactorPasskey && sess.Level >= session.TwoFactor && now.Sub(sess.SecondFactorAt) <= freshness:
			// a passkey used within five minutes is both: possession, and a PIN or biometric
			// (a passkey-only person has no password to give)
			return elevated
		case now.Sub(sess.PasswordAt) > freshness:
			return needPassword
		case has && (sess.Level < session.TwoFactor || now.Sub(sess.SecondFactorAt) > freshness):
			return needSecondFactor
		}
		return elevated
	}
	life := p.cfg.Elevation.ElevationLifespan
	code := !sess.ElevatedAt.IsZero() && now.Sub(sess.ElevatedAt) <= life
	if !has {
		if code {
			return elevated
		}
		return needCode
	}
	second := sess.Level >= session.TwoFactor && !sess.SecondFactorAt.IsZero() && now.Sub(sess.SecondFactorAt) <= life
	switch {
	case !second && !p.cfg.Elevation.CodeAloneWithSecondFactor:
		return needSecondFactor
	case second && !p.cfg.Elevation.CodeAfterSecondFactor:
		return elevated
	case code:
		return elevated
	}
	return needCode
}

// elevateURL is the elevation page, coming back to next (a settings path) with rd.
func (p *Portal) elevateURL(next, rd string) string {
	q := url.Values{"next": {p.settingsReturn(next)}}
	if rd = p.safeRedirect(rd); rd != "" {
		q.Set("rd", rd)
	}
	return p.base + pathElevate + "?" + q.Encode()
}

// returnTo is where an elevation goes back to: next (a settings path), with rd for the pages
// that carry it on.
func (p *Portal) returnTo(next, rd string) string {
	next = p.settingsReturn(next)
	if next == PathSettings {
		return p.base + PathSettings
	}
	return p.withRD(next, rd)
}

// codeRecord is what the store holds of a pending code: its digest, never the code.
type codeRecord struct {
	// Digest is the HMAC of the user, the session and the code under the portal's code key.
	Digest []byte `json:"digest"`
	// Session names the browser's session it was sent to (an HMAC of its id), so the page can
	// tell that a code is on its way to this browser.
	Session string `json:"session"`
	// Sent is when it was sent.
	Sent time.Time `json:"sent"`
}

// userKey is a store key for user under kind, by an HMAC of the name (any name, any length,
// the same few bytes, and no name in the store's keys).
func (p *Portal) userKey(kind, user string) []byte {
	m := hmac.New(sha256.New, p.codeKey)
	m.Write([]byte("key\x00" + kind + "\x00" + user))
	return []byte("elevation/" + kind + "/" + hex.EncodeToString(m.Sum(nil)[:20]))
}

// sessionTag names the session of id in a code record.
func (p *Portal) sessionTag(id string) string {
	m := hmac.New(sha256.New, p.codeKey)
	m.Write([]byte("session\x00" + id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// codeDigest is the digest a code is kept as: bound to the user and the session.
func (p *Portal) codeDigest(user, sessionID, code string) []byte {
	m := hmac.New(sha256.New, p.codeKey)
	m.Write([]byte("code\x00" + user + "\x00" + p.sessionTag(sessionID) + "\x00" + code))
	return m.Sum(nil)
}

// mails reports whether codes can be mailed: a notifier, and a store for their digests.
func (p *Portal) mails() bool { return p.cfg.Notifier != nil && p.cfg.Store != nil }

// pendingCode reports whether a code sent to the browser of session id is still live.
func (p *Portal) pendingCode(ctx context.Context, user, id string) bool {
	data, err := p.cfg.Store.Get(ctx, p.userKey("code", user))
	if err != nil {
		return false
	}
	var rec codeRecord
	return json.Unmarshal(data, &rec) == nil && rec.Session == p.sessionTag(id) && p.cfg.Now().Sub(rec.Sent) < p.cfg.Elevation.CodeLifespan
}

// maskAddress shows where a code went without the whole address: j•••@example.com.
func maskAddress(addr string) string {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" {
		return "•••"
	}
	first := []rune(local)[0]
	return string(first) + "•••@" + domain
}

// mailOf is the address a code goes to ("" for none).
func mailOf(u *users.User) string {
	for _, m := range u.Emails {
		if strings.Contains(m, "@") {
			return m
		}
	}
	return ""
}

// elevationPage fills and renders the elevation page.
func (p *Portal) elevationPage(w http.ResponseWriter, r *http.Request, status int, id string, sess *session.Session, u *users.User, next, rd string, d *pageData) {
	ctx := r.Context()
	if d == nil {
		d = &pageData{}
	}
	d.Title, d.User, d.Session, d.Next, d.RD = "Confirm it is you", u, sess, p.settingsReturn(next), p.safeRedirect(rd)
	e := &elevationView{Lifespan: minutes(p.cfg.Elevation.CodeLifespan), Characters: p.cfg.Elevation.Characters}
	addr := mailOf(u)
	switch {
	case !p.mails():
		e.NoNotifier = true
	case addr == "":
		e.NoAddress = true
	default:
		e.CanSend, e.To = true, maskAddress(addr)
		e.Pending = p.pendingCode(ctx, u.Name, id)
	}
	if p.hasSecondFactor(ctx, u) && !p.cfg.Elevation.CodeAfterSecondFactor {
		// the second factor elevates too: offer it
		e.SecondFactorURL = p.base + PathSecondFactor + "?rd=" + url.QueryEscape(p.origin+p.returnTo(next, rd))
	}
	d.Elevation = e
	p.render(w, r, status, "elevate", d)
}

// elevationView is what the elevation page shows.
type elevationView struct {
	CanSend         bool   // a code can be mailed
	NoNotifier      bool   // no notifier: no code can be sent
	NoAddress       bool   // the person has no mail address
	To              string // the masked address
	Pending         bool   // a code is on its way to this browser: show the code form
	Lifespan        string // "5 minutes"
	Characters      int
	SecondFactorURL string // the second-factor page, coming back here, when it elevates too
}

// minutes writes d for people: "5 minutes", "1 minute", "90 seconds".
func minutes(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "1 minute"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + " minutes"
	}
	return strconv.Itoa(int(d/time.Second)) + " seconds"
}

// elevateView shows the elevation page (GET), or goes back when the session needs no code.
func (p *Portal) elevateView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next, rd := p.settingsReturn(q.Get("next")), p.safeRedirect(q.Get("rd"))
	id, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.origin+p.returnTo(next, rd)))
		return
	}
	if p.lacks(r.Context(), sess, u) != needCode {
		// elevated already, or what it lacks is asked on the way back (the password, the
		// second factor)
		redirect(w, r, p.returnTo(next, rd))
		return
	}
	d := &pageData{Notice: notices[q.Get("notice")]}
	p.elevationPage(w, r, http.StatusOK, id, sess, u, next, rd, d)
}

// sendCode mails a new code (POST): at most one a SendInterval per person.
func (p *Portal) sendCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	next, rd := p.settingsReturn(r.PostFormValue("next")), p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.origin+p.returnTo(next, rd)))
		return
	}
	if p.lacks(ctx, sess, u) != needCode {
		redirect(w, r, p.returnTo(next, rd))
		return
	}
	addr := mailOf(u)
	if !p.mails() || addr == "" {
		p.elevationPage(w, r, http.StatusConflict, id, sess, u, next, rd, nil)
		return
	}
	ip := p.cfg.ClientIP(r)
	_, first, err := store.Claim(ctx, p.cfg.Store, p.userKey("sent", u.Name), p.cfg.Elevation.SendInterval)
	if err != nil {
		p.cfg.Logger.Error("portal: limiting the codes mailed", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	if !first {
		p.cfg.Logger.Info("elevation code not sent: one was sent moments ago", zap.String("user", u.Name), zap.String("remote_ip", ip))
		p.elevationPage(w, r, http.StatusTooManyRequests, id, sess, u, next, rd, &pageData{
			Error: "A code was sent moments ago. Check your mail (and its spam folder); you can ask for another within " + minutes(p.cfg.Elevation.SendInterval) + "."})
		return
	}
	now := p.cfg.Now()
	if ok, err := p.hourlySlot(ctx, u.Name, now); err != nil {
		p.cfg.Logger.Error("portal: limiting the codes mailed", zap.Error(err))
		p.unavailable(w, r)
		return
	} else if !ok {
		p.cfg.Logger.Info("elevation code not sent: the hourly limit is reached", zap.String("user", u.Name), zap.String("remote_ip", ip))
		p.elevationPage(w, r, http.StatusTooManyRequests, id, sess, u, next, rd, &pageData{
			Error: "Too many codes were sent to you this hour. Use the latest one, or try again later."})
		return
	}
	code, err := p.issueCode(ctx, u.Name, id)
	if err != nil {
		p.cfg.Logger.Error("portal: keeping an elevation code", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	err = p.cfg.Notifier.Send(ctx, notify.Recipient{Name: u.DisplayName, Address: addr}, notify.Message{
		Kind: notify.KindCode, Title: "Confirm it is you", Code: code, Lifespan: p.cfg.Elevation.CodeLifespan, RemoteIP: ip, When: now})
	if err != nil {
		_ = p.cfg.Store.Delete(context.WithoutCancel(ctx), p.userKey("code", u.Name))
		p.cfg.Logger.Error("portal: mailing an elevation code", zap.String("user", u.Name), zap.Error(err))
		w.Header().Set("Retry-After", "60")
		p.elevationPage(w, r, http.StatusServiceUnavailable, id, sess, u, next, rd, &pageData{
			Error: "The code could not be sent just now. Try again in a minute; if it lasts, tell the people who run this service."})
		return
	}
	p.cfg.Logger.Info("elevation code sent", zap.String("user", u.Name), zap.String("remote_ip", ip))
	q := url.Values{"next": {next}, "notice": {"code-sent"}}
	if rd != "" {
		q.Set("rd", rd)
	}
	redirect(w, r, p.base+pathElevate+"?"+q.Encode())
}

// issueCode makes a new code for user's session id and keeps its digest, replacing the code
// sent before (one record per person).
// hourlySlot takes one of the SendsPerHour numbered slots of user's clock hour (each claimed
// once, across nodes); false when all are taken.
func (p *Portal) hourlySlot(ctx context.Context, user string, now time.Time) (bool, error) {
	hour := now.Truncate(time.Hour).Unix()
	for n := range p.cfg.Elevation.SendsPerHour {
		_, claimed, err := store.Claim(ctx, p.cfg.Store, p.userKey("sent-hour", fmt.Sprintf("%s\x00%d\x00%d", user, hour, n)), time.Hour)
		if err != nil || claimed {
			return claimed, err
		}
	}
	return false, nil
}

func (p *Portal) issueCode(ctx context.Context, user, id string) (string, error) {
	code := newCode(p.cfg.Elevation.Characters)
	rec, err := json.Marshal(codeRecord{Digest: p.codeDigest(user, id, code), Session: p.sessionTag(id), Sent: p.cfg.Now()})
	if err != nil {
		return "", err
	}
	if err := p.cfg.Store.Put(ctx, store.Entry{Key: p.userKey("code", user), Value: rec, TTL: p.cfg.Elevation.CodeLifespan}); err != nil {
		return "", fmt.Errorf("portal: keeping an elevation code: %w", err)
	}
	return code, nil
}

// checkCode checks a code (POST): the session is elevated, under a new id, when it is right.
func (p *Portal) checkCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	next, rd := p.settingsReturn(r.PostFormValue("next")), p.safeRedirect(r.PostFormValue("rd"))
	id, sess, u := p.current(r)
	if sess == nil {
		redirect(w, r, p.withRD(PathSignIn, p.origin+p.returnTo(next, rd)))
		return
	}
	if p.lacks(ctx, sess, u) != needCode {
		redirect(w, r, p.returnTo(next, rd))
		return
	}
	addr := p.clientAddr(r)
	fail := func(status int, reason, msg string) {
		p.cfg.Logger.Info("elevation code refused", zap.String("user", u.Name), zap.String("reason", reason), zap.String("remote_ip", addr.String()))
		p.elevationPage(w, r, status, id, sess, u, next, rd, &pageData{Error: msg})
	}
	const wrong = "That code is not right, or it has expired. Check the code in the latest mail, or ask for a new one."
	attempt, allowed := p.begin(ctx, u.Name, addr)
	if !allowed {
		p.observe("code", "banned", nil)
		fail(http.StatusUnauthorized, "banned", wrong)
		return
	}
	ok, err := p.spendCode(ctx, u.Name, id, normalCode(r.PostFormValue("code")))
	if err != nil {
		attempt.Abandoned()
		p.cfg.Logger.Error("portal: checking an elevation code", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	if !ok {
		p.observe("code", "failure", attempt)
		fail(http.StatusUnauthorized, "wrong, used or expired code", wrong)
		return
	}
	attempt.Succeeded()
	p.observe("code", "success", nil)
	newID, sess, err := p.cfg.Sessions.MarkElevated(ctx, id)
	if err != nil {
		p.cfg.Logger.Error("portal: elevating a session", zap.Error(err))
		p.unavailable(w, r)
		return
	}
	p.setSession(w, newID, sess)
	p.cfg.Logger.Info("session elevated", zap.String("user", u.Name), zap.String("by", "code"), zap.String("remote_ip", addr.String()))
	redirect(w, r, p.returnTo(next, rd))
}

// digestEqual compares digests in constant time (a variable so a test can see it is used).
var digestEqual = hmac.Equal

// spendCode reports whether code is the live code sent to user's session id, and spends it:
// of submissions racing on any nodes, one alone is told yes.
func (p *Portal) spendCode(ctx context.Context, user, id, code string) (bool, error) {
	if code == "" || len(code) > 64 || p.cfg.Store == nil {
		return false, nil
	}
	key := p.userKey("code", user)
	data, err := p.cfg.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var rec codeRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return false, nil
	}
	want := p.codeDigest(user, id, code)
	if !digestEqual(rec.Digest, want) || p.cfg.Now().Sub(rec.Sent) >= p.cfg.Elevation.CodeLifespan {
		return false, nil
	}
	_, claimed, err := store.Claim(ctx, p.cfg.Store, []byte("elevation/spent/"+hex.EncodeToString(want)), p.cfg.Elevation.CodeLifespan)
	if err != nil || !claimed {
		return false, err
	}
	_ = p.cfg.Store.Delete(context.WithoutCancel(ctx), key)
	return true, nil
}

// notifyEvent tells u of a change to their account by mail, when there is a notifier and an
// address; a failure is logged, never shown (the change is made).
func (p *Portal) notifyEvent(ctx context.Context, r *http.Request, u *users.User, title, event string) {
	addr := mailOf(u)
	if p.cfg.Notifier == nil || addr == "" {
		return
	}
	err := p.cfg.Notifier.Send(context.WithoutCancel(ctx), notify.Recipient{Name: u.DisplayName, Address: addr}, notify.Message{
		Kind: notify.KindEvent, Title: title, Event: event, RemoteIP: p.cfg.ClientIP(r), When: p.cfg.Now()})
	if err != nil {
		p.cfg.Logger.Warn("portal: mailing an account notice", zap.String("user", u.Name), zap.String("title", title), zap.Error(err))
	}
}
