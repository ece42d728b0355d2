package caddyauth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// errSessionCookies refuses a request whose session cookies the gate will not choose between
// (400): the live sessions of different people, or more than four cookies of the name.
var errSessionCookies = oidcprovider.ErrSessionCookies

// checkSession looks for the portal's session cookies: a live session is an identity at its
// factor level; no cookie, or cookies that speak for no one, count as absent. The cookies are
// read by the rule the portal reads them with (session.Pick, through the app's CheckSession):
// every cookie of the name counts, so one that speaks for no one never shadows a live one, and
// the live sessions of two people are errSessionCookies rather than a pick.
//
// The cookie is the one of the cookie domain host (the target's) is under: the portal's, or a
// further domain's whose sessions the gate began from a hand-off.
func (g *gate) checkSession(r *http.Request, s *strategy, host string) (*identity, error) {
	ctx := r.Context()
	name := g.app.SessionCookieName(host)
	if name == "" {
		return nil, nil
	}
	user, level, err := g.app.CheckSession(ctx, host, r.Header)
	switch {
	case errors.Is(err, oidcprovider.ErrNoSession), errors.Is(err, oidcprovider.ErrNoUsers):
		return nil, nil
	case err != nil:
		return nil, err
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

// stripSessionCookie removes every copy of the session cookie of host's cookie domain (and the
// nonce cookies of hand-offs under way, whose names begin with the session cookie's, after an
// optional __Host- prefix) from a request the gate lets through, whoever the caller is (a Bearer
// or Basic caller, or anyone on a bypass rule): an upstream that saw a live session id could act
// as the user on every other site.
func (g *gate) stripSessionCookie(r *http.Request, host string) {
	name := g.app.SessionCookieName(host)
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

// ours reports a cookie name that is name, or a hand-off nonce cookie of it.
func ours(k, name string) bool {
	if k == name {
		return true
	}
	k = strings.TrimPrefix(k, "__Host-")
	return strings.HasPrefix(k, name) && strings.HasPrefix(k[len(name):], "_handoff_")
}

// stripCookie removes the cookie called name (and the hand-off nonce cookies of that name) from
// the request, so the upstream never sees the session cookie (it could otherwise act as the user
// on every other site).
func stripCookie(r *http.Request, name string) {
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return
	}
	if len(lines) == 1 && !strings.Contains(lines[0], ";") {
		// the common case, our cookie alone: no parsing
		if k, _, _ := strings.Cut(strings.TrimSpace(lines[0]), "="); ours(k, name) {
			delete(r.Header, "Cookie")
		}
		return
	}
	var kept []string
	for _, line := range lines {
		var parts []string
		for _, part := range strings.Split(line, ";") {
			t := strings.TrimSpace(part)
			if k, _, _ := strings.Cut(t, "="); ours(k, name) || t == "" {
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
