package caddyauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// maxSessionCookies bounds the cookies of the session cookie's name one request may carry.
const maxSessionCookies = 4

// errSessionCookies refuses a request whose session cookies the gate will not choose between
// (400): the live sessions of different people, or more cookies of the name than it reads.
var errSessionCookies = errors.New("refused a request with session cookies of two people, or with more than 4 session cookies")

// checkSession looks for the portal's session cookies: a live session is an identity at its
// factor level; no cookie, or cookies that speak for no one, count as absent.
//
// Every cookie of the name is read (up to maxSessionCookies; more is errSessionCookies), so one
// that speaks for no one never shadows a live one: a site under the cookie domain can set a
// cookie of our name, with a longer path so browsers send it first, but cannot make one that
// names a live session, since session ids are random and kept on the server. The only cookie
// such a site can plant to some effect is a live session of its own; beside the person's own
// session that is two people, and the gate refuses the request rather than pick one. (Alone, it
// cannot be told from a sign-in: keep untrusted sites out of the cookie domain.)
func (g *gate) checkSession(r *http.Request, s *strategy) (*identity, error) {
	name := g.app.SessionCookieName()
	if name == "" {
		return nil, nil
	}
	var values [maxSessionCookies]string
	n := sessionCookies(r, name, values[:])
	if n > maxSessionCookies {
		return nil, errSessionCookies
	}
	var (
		user  *oidcprovider.UserIdentity
		level int
	)
	for i, v := range values[:n] {
		if v == "" || slices.Contains(values[:i], v) {
			continue
		}
		u, lvl, err := g.app.CheckSession(v)
		switch {
		case err == nil:
			if user == nil {
				user, level = u, lvl
			} else if u.Username != user.Username {
				return nil, errSessionCookies
			}
		case errors.Is(err, oidcprovider.ErrNoUsers):
			return nil, nil
		case !errors.Is(err, oidcprovider.ErrNoSession):
			return nil, err
		}
	}
	if user == nil {
		return nil, nil
	}
	lvl := accesscontrol.OneFactor
	if level >= 2 {
		lvl = accesscontrol.TwoFactor
	}
	if id := g.identities.get(user, s, lvl, name); id != nil {
		return id, nil
	}
	return g.identities.add(user, &identity{user: user, level: lvl, strategy: s, cookie: name,
		subject: accesscontrol.Subject{Username: user.Username, Groups: user.Groups}}), nil
}

// sessionCookies puts the values of the cookies called name into values, in the order the
// request carries them, and returns how many there are (which may exceed len(values)), without
// parsing every cookie of the request.
func sessionCookies(r *http.Request, name string, values []string) int {
	n := 0
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if k, v, ok := strings.Cut(part, "="); ok && k == name {
				if n < len(values) {
					values[n] = strings.Trim(v, `"`)
				}
				n++
			}
		}
	}
	return n
}

// stripSessionCookie removes every copy of the portal's session cookie from a request the gate
// lets through, whoever the caller is (a Bearer or Basic caller, or anyone on a bypass rule): an
// upstream that saw a live session id could act as the user on every other site.
func (g *gate) stripSessionCookie(r *http.Request) {
	name := g.app.SessionCookieName()
	if name == "" {
		return
	}
	for _, line := range r.Header["Cookie"] {
		if strings.Contains(line, name) {
			stripCookie(r, name)
			return
		}
	}
}

// stripCookie removes the cookie called name from the request, so the upstream never sees the
// session cookie (it could otherwise act as the user on every other site).
func stripCookie(r *http.Request, name string) {
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return
	}
	if len(lines) == 1 && !strings.Contains(lines[0], ";") {
		// the common case, our cookie alone: no parsing
		if k, _, _ := strings.Cut(strings.TrimSpace(lines[0]), "="); k == name {
			delete(r.Header, "Cookie")
		}
		return
	}
	var kept []string
	for _, line := range lines {
		var parts []string
		for _, part := range strings.Split(line, ";") {
			t := strings.TrimSpace(part)
			if k, _, _ := strings.Cut(t, "="); k == name || t == "" {
				continue
			}
			parts = append(parts, t)
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = kept
}
