package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
)

// This file is the gate's side of the hand-off to further cookie domains (session.Cookies; the
// protocol is described in session/handoff.go, the portal's side in portal/handoff.go).

// HandoffPath is the path the oidc_auth gate of a site under a further cookie domain reserves
// for the end of a hand-off: it takes the one-time code there, sets the domain's session cookie
// and sends the browser on. A request for it is never passed upstream, whatever the rules say;
// on sites under the issuer's own domain (or under none) the path is the upstream's as any other.
const HandoffPath = "/.portcullis/handoff"

// handoffBeginTTL is how long a hand-off may take from the gate's first redirect to the code's
// return, a sign-in at the portal included: the life of the signed start and of the nonce cookie.
const handoffBeginTTL = 10 * time.Minute

// handoffTTLEnv shortens the life of hand-off codes for tests (a duration such as "2s"): a hook
// of the test suite, not an option, and so not documented with the configuration.
const handoffTTLEnv = "PORTCULLIS_TEST_HANDOFF_TTL"

// handoffState is the running hand-off machinery: the sessions of each further domain (in the
// order of portalSettings.others), the codes, and the key the gate signs starts with.
type handoffState struct {
	sessions []*session.Store
	codes    *session.Handoffs
	key      []byte
}

// startHandoffs builds the hand-off machinery on the open store, when there are further
// cookie domains, and returns the portal's part of it.
func (a *App) startHandoffs(b *backend, st *runtimeState) (*portal.Handoff, error) {
	ps := a.portal
	if len(ps.others) == 0 {
		return nil, nil
	}
	key, err := deriveKey(st.secret, "handoff")
	if err != nil {
		return nil, err
	}
	ttl := session.HandoffTTL
	if v := os.Getenv(handoffTTLEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			a.logger.Warn(handoffTTLEnv+" is set: hand-off codes live for a test's time", zap.Duration("ttl", d))
			ttl = d
		}
	}
	h := &handoffState{codes: session.NewHandoffs(b.kv, ttl), key: key}
	domains := make([]string, len(ps.others))
	for i, d := range ps.others {
		h.sessions = append(h.sessions, session.NewWithCache(d.sessions, b.kv, b.sessions))
		domains[i] = d.domain
	}
	st.handoff = h
	return &portal.Handoff{Domains: domains, Key: key, Codes: h.codes, GatePath: HandoffPath}, nil
}

// otherDomain is the further cookie domain covering host (lower case, without a port) and its
// index, or nil: a loop over a few suffixes, allocation-free, on every request with a cookie.
func (ps *portalSettings) otherDomain(host string) (*cookieDomain, int) {
	for i, d := range ps.others {
		if d.covers(host) {
			return d, i
		}
	}
	return nil, -1
}

// HandoffHost reports whether host (lower case, without a port) is under a further cookie
// domain: its gate begins hand-offs rather than sending browsers to the sign-in page, and
// reserves HandoffPath.
func (a *App) HandoffHost(host string) bool {
	if a.portal == nil {
		return false
	}
	d, _ := a.portal.otherDomain(host)
	return d != nil
}

// HandoffBegin starts a hand-off for a browser without a session at rd (the absolute URL it
// asked for, on host, under a further cookie domain), needing a second factor when twoFactor:
// the portal's URL to send it to, and the host-only nonce cookie to set with that redirect.
// False when host is under no further cookie domain.
func (a *App) HandoffBegin(host, rd string, twoFactor bool) (string, *http.Cookie, bool) {
	st := a.running()
	if a.portal == nil || st == nil || st.handoff == nil {
		return "", nil, false
	}
	d, _ := a.portal.otherDomain(host)
	if d == nil {
		return "", nil, false
	}
	nonce, binding := session.NewNonce()
	level := "1"
	if twoFactor {
		level = "2"
	}
	exp := time.Now().Add(handoffBeginTTL).Unix()
	sig := session.SignBegin(st.handoff.key, rd, binding, level, exp)
	q := url.Values{"rd": {rd}, "b": {binding}, "l": {level}, "exp": {strconv.FormatInt(exp, 10)}, "sig": {sig}}
	c := &http.Cookie{Name: session.HandoffNonceCookie(d.name, binding, a.portal.secure), Value: nonce, Path: "/", MaxAge: int(handoffBeginTTL / time.Second),
		HttpOnly: true, Secure: a.portal.secure, SameSite: http.SameSiteLaxMode}
	return a.issuer + portal.PathHandoff + "?" + q.Encode(), c, true
}

// ErrHandoffRefused is a hand-off code the gate refuses: unknown, expired, already used, for
// another domain, presented without the browser's nonce, or from a sign-in that has ended.
var ErrHandoffRefused = errors.New("oidc: the hand-off code is refused")

// HandoffRedeemed is the gate's answer to a redeemed hand-off.
type HandoffRedeemed struct {
	// Location is where to send the browser: the return URL, on the code's domain.
	Location string
	// Cookies are the domain's session cookie and the nonce cookie's removal.
	Cookies []*http.Cookie
	// Strict is a session cookie with SameSite=Strict, which a browser would not send on the
	// redirect that ends a navigation begun on another site: answer with a page that moves on.
	Strict bool
}

// HandoffRedeem takes the code of a hand-off presented at HandoffPath on host (lower case,
// without a port) by a request with header h, and rd, the return URL: once, for host's cookie
// domain, from the browser that holds the nonce. It begins the domain's session, of the family
// of the portal's session, whose sign-in must still be live. The refusals are one
// ErrHandoffRefused; a store that cannot answer is ErrUnavailable.
func (a *App) HandoffRedeem(ctx context.Context, host, code, rd string, h http.Header) (*HandoffRedeemed, error) {
	st := a.running()
	if a.portal == nil || st == nil {
		return nil, ErrUnavailable
	}
	d, i := a.portal.otherDomain(host)
	if d == nil || st.handoff == nil {
		return nil, ErrHandoffRefused
	}
	g, err := st.handoff.codes.Take(ctx, code, d.domain, a.nonceBindings(d, h))
	if errors.Is(err, session.ErrHandoff) {
		return nil, ErrHandoffRefused
	} else if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	sessions := st.handoff.sessions[i]
	id, sess, err := sessions.Adopt(ctx, &g.Session, d.domain, g.Origin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// the sign-in must still be live once this session is in the family, so a sign-out that
	// raced the code either ends this session or came first and is seen here
	if live, err := sessions.FamilyLive(ctx, g.Session.Family, g.Origin); err != nil || !live {
		_ = sessions.End(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, ErrHandoffRefused
	}
	// the session this one replaces in the browser (one factor, before a step-up), when it is of
	// the same sign-in, ends now rather than at its expiry
	_, _, _ = session.Pick(h, d.name, func(old string) (string, struct{}, error) {
		if s, err := sessions.Get(ctx, old); err == nil && s.Domain == d.domain && s.Family == g.Session.Family && old != id {
			_ = sessions.Drop(ctx, old)
		}
		return "", struct{}{}, session.ErrNoSession
	})
	sc := &http.Cookie{Name: d.name, Value: id, Path: "/", Domain: d.domain, HttpOnly: true, Secure: a.portal.secure, SameSite: d.sameSite}
	if sess.RememberMe {
		sc.MaxAge = int(time.Until(sess.Expires) / time.Second)
	}
	out := &HandoffRedeemed{Location: a.handoffReturn(d, rd), Strict: d.sameSite == http.SameSiteStrictMode,
		Cookies: []*http.Cookie{sc, {Name: session.HandoffNonceCookie(d.name, g.Binding, a.portal.secure), Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: a.portal.secure, SameSite: http.SameSiteLaxMode}}}
	a.logger.Info("session handed off", zap.String("user", sess.User), zap.String("domain", d.domain))
	return out, nil
}

// maxNonceCookies bounds the nonce cookies a redemption looks at (one per hand-off under way
// in the browser's tabs, or begun and left at the sign-in page): as many as a browser keeps of
// a domain (Chromium's 180), since it sends the oldest first and the newest is the one redeemed.
const maxNonceCookies = 180

// nonceBindings are the digests of the nonce cookies of d's hand-offs that a request carries:
// those whose digest begins as the cookie's name says (a cookie whose name and value disagree
// was not set by a gate).
func (a *App) nonceBindings(d *cookieDomain, h http.Header) []string {
	prefix := session.HandoffNonceCookie(d.name, "", a.portal.secure)
	var out []string
	for _, line := range h["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.HasPrefix(k, prefix) || len(out) == maxNonceCookies {
				continue
			}
			b := session.NonceDigest(strings.Trim(v, `"`))
			if k == session.HandoffNonceCookie(d.name, b, a.portal.secure) {
				out = append(out, b)
			}
		}
	}
	return out
}

// handoffReturn is rd when it is an absolute URL on the issuer's scheme under d, else d's
// default_redirection_url, else the site's root: never another domain.
func (a *App) handoffReturn(d *cookieDomain, rd string) string {
	if len(rd) <= 4096 && !strings.ContainsAny(rd, "\\\x00\r\n\t") {
		if u, err := url.Parse(rd); err == nil && u.IsAbs() && u.Scheme == a.issuerURL.Scheme && u.User == nil && u.Opaque == "" && d.covers(strings.ToLower(u.Hostname())) {
			u.Fragment = ""
			return u.String()
		}
	}
	if d.defaultURL != "" {
		return d.defaultURL
	}
	return "/"
}

// HandoffFailedURL is the portal's page for a refused hand-off, with a way back to rd.
func (a *App) HandoffFailedURL(rd string) string {
	return a.issuer + portal.PathHandoffFailed + "?rd=" + url.QueryEscape(rd)
}
