package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// The CSRF defence is a double submit bound to a key: the browser holds a random value in a
// host-only cookie, and every form carries an HMAC of it under the portal's key, which a page
// on another site can neither read nor compute. Requests whose Origin is another site's are
// refused as well.

// csrfCookie is the name of the cookie holding the browser's CSRF value: with the __Host-
// prefix on https, so a sibling subdomain cannot plant one.
func (p *Portal) csrfCookie() string {
	if p.cfg.Secure {
		return "__Host-" + p.cfg.CookieName + "_csrf"
	}
	return p.cfg.CookieName + "_csrf"
}

// csrfToken returns the token forms carry, setting the cookie when the browser has none.
func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(p.csrfCookie()); err == nil && len(c.Value) == 43 {
		return p.csrfMAC(c.Value)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	v := base64.RawURLEncoding.EncodeToString(raw)
	http.SetCookie(w, &http.Cookie{Name: p.csrfCookie(), Value: v, Path: "/", HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	// a later read in this request (a page rendered after a failed form) sees the new value
	r.AddCookie(&http.Cookie{Name: p.csrfCookie(), Value: v})
	return p.csrfMAC(v)
}

func (p *Portal) csrfMAC(v string) string {
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("csrf\x00" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports a POST that carries the right token (form field "csrf" or header
// X-CSRF-Token) for the browser's CSRF cookie, from no other origin than the portal's.
func (p *Portal) checkCSRF(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != p.origin {
		return false
	}
	c, err := r.Cookie(p.csrfCookie())
	if err != nil || len(c.Value) != 43 {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(p.csrfMAC(c.Value))) == 1
}

// current is the browser's live session and its user, or nils. A session whose user has been
// removed or disabled is ended. An enrolment session is no session except on an
// enrolmentRoute (enrol.go). The cookies are read by the rule the gate reads them with
// (session.Pick): every session cookie counts, one that speaks for no one never shadows a live
// one, and the live sessions of two people are no session here (ServeHTTP answers them 400).
func (p *Portal) current(r *http.Request) (string, *session.Session, *users.User) {
	id, s, err := p.pick(r)
	if err != nil {
		return "", nil, nil
	}
	return id, s.sess, s.user
}

// signedIn is a live session and its user.
type signedIn struct {
	sess *session.Session
	user *users.User
}

// pick is current with the reason when there is no session: session.ErrCookies for the live
// sessions of two people, or more than session.MaxCookies cookies of the name.
func (p *Portal) pick(r *http.Request) (string, signedIn, error) {
	ctx := r.Context()
	return session.Pick(r.Header, p.cfg.CookieName, func(id string) (string, signedIn, error) {
		sess, err := p.cfg.Sessions.Get(ctx, id)
		if err != nil || sess.Domain != "" || (sess.Enrolment && !enrolmentAllowed(ctx)) {
			// a session another cookie domain's gate began is that domain's alone; an enrolment
			// session is none but where it sets up the account
			return "", signedIn{}, session.ErrNoSession
		}
		u, err := p.cfg.Users.Lookup(ctx, sess.User)
		if err != nil && !errors.Is(err, users.ErrNotFound) {
			return "", signedIn{}, err // the directory cannot be asked: the session is kept
		}
		if err != nil || u.Disabled {
			_ = p.cfg.Sessions.End(ctx, id)
			return "", signedIn{}, session.ErrNoSession
		}
		return sess.User, signedIn{sess, u}, nil
	})
}

// sessionID is the id of the browser's live session, or "": the one a sign-in replaces or a
// sign-out ends. It reads the cookies as current does but without the user's check, so the
// session of a removed or disabled user still ends as a sign-out ends it (OnSignOut is told).
func (p *Portal) sessionID(r *http.Request) string {
	ctx := r.Context()
	id, _, _ := session.Pick(r.Header, p.cfg.CookieName, func(id string) (string, struct{}, error) {
		sess, err := p.cfg.Sessions.Get(ctx, id)
		if err != nil || sess.Domain != "" {
			return "", struct{}{}, session.ErrNoSession
		}
		return sess.User, struct{}{}, nil
	})
	return id
}

// setSession gives the browser the session cookie for id.
func (p *Portal) setSession(w http.ResponseWriter, id string, sess *session.Session) {
	c := &http.Cookie{Name: p.cfg.CookieName, Value: id, Path: "/", Domain: p.cfg.CookieDomain, HttpOnly: true, Secure: p.cfg.Secure, SameSite: p.cfg.SameSite}
	if sess.RememberMe {
		c.MaxAge = int(time.Until(sess.Expires) / time.Second)
	}
	http.SetCookie(w, c)
}

// clearSession removes the session cookie from the browser.
func (p *Portal) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: p.cfg.CookieName, Value: "", Path: "/", Domain: p.cfg.CookieDomain, HttpOnly: true, Secure: p.cfg.Secure, SameSite: p.cfg.SameSite, MaxAge: -1})
}

// safeRedirect returns rd when the portal may send a browser there: an absolute URL on the
// issuer's scheme (https, or http for a loopback issuer), without user info, whose host is the
// cookie domain or under it, or the issuer's host (any port: cookies ignore ports, so a
// host-only cookie of the issuer reaches every port of its host), or a further cookie domain
// or under it (Handoff). Anything else is "".
func (p *Portal) safeRedirect(rd string) string {
	if rd == "" || len(rd) > 4096 || strings.ContainsAny(rd, "\\\x00\r\n\t") {
		return ""
	}
	u, err := url.Parse(rd)
	if err != nil || !u.IsAbs() || u.Scheme != p.cfg.Issuer.Scheme || u.User != nil || u.Opaque != "" || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	issuerHost := strings.ToLower(p.cfg.Issuer.Hostname())
	switch d := p.cfg.CookieDomain; {
	case host == issuerHost:
	case d != "" && (host == d || strings.HasSuffix(host, "."+d)):
	case p.handoffDomain(host) != "":
	default:
		return ""
	}
	u.Fragment = ""
	return u.String()
}

// localURL is an absolute URL of a portal path, for return URLs inside the portal.
func (p *Portal) localURL(rel string) string { return p.origin + p.base + rel }

// afterSignIn is where a signed-in browser goes when rd is not usable.
func (p *Portal) afterSignIn() string {
	if p.cfg.DefaultRedirect != "" {
		return p.cfg.DefaultRedirect
	}
	return p.base + PathSettings
}
