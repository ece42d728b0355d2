package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// This file is the gateway's API: everything package caddyauth calls on the oidc app, and
// nothing else. Beside it, caddyauth uses only UnmarshalRule (a site's rules, with the Caddyfile
// parsing in caddyfile.go) and, for its check-policy command, Provision and the helpers of
// command.go (AddCommand, Subcommand, UsageError, PrintJSON); the operator's calls are in
// admin.go. The gateway gets the app from Caddy with AppOf and asks it, per request:
//
// Who is calling:
//   - ClientIP: the request's client address, as Caddy's trusted_proxies settle it.
//   - CheckBearer: who an access token speaks for at the URL asked for (*BearerIdentity), or
//     ErrNotOurToken (not a token of ours), *InvalidTokenError (ours, refused), ErrUnavailable.
//   - CheckBasic: who Basic credentials speak for (*UserIdentity), or ErrNoUsers (no users_file:
//     not ours to check), ErrBadCredentials (wrong, disabled or banned, one answer),
//     ErrUnavailable, or the context's error when the caller left.
//   - SessionCookieName and CheckSession: the session cookie of the request's host (the
//     portal's, or a further cookie domain's), and who a request's session cookies speak for and
//     the factor level, or ErrNoUsers, ErrNoSession (treat the cookies as absent),
//     ErrSessionCookies (two people's sessions: 400), ErrUnavailable.
//   - HandoffHost, HandoffBegin, HandoffRedeem and HandoffFailedURL: the hand-off that gives a
//     browser signed in at the portal a session on a further cookie domain (handoff.go).
//   - IsUser: whether a username is one of the users file's (a lookup, nothing checked or
//     counted), for the Basic credentials the gateway removes on a bypass rule.
//   - User: the current identity of a user a token speaks for, or false when the user is gone
//     or disabled (or there is no users file, or the store is not open).
//
// What the rules say: CompileRules (a site's rules against the app's networks and clients),
// GlobalRules and DefaultPolicy.
//
// How to answer: IssuerURL (the portal's sign-in page lives there), SecondFactorURL, and
// ListensOn (whether a port named in the Host header is one of this config's listeners).
//
// What to count: GateCounter and GateDecided, the gate's decisions in the app's metrics.
//
// ErrUnavailable always means the store is not open (start-up, reload, shutdown), its database
// cannot be reached (a shared store), or, for a password, that no digest slot came free in time:
// the gateway answers 503 with Retry-After (IsUnavailable tells).

// BearerIdentity is who an accepted access token speaks for.
type BearerIdentity = oauth.BearerIdentity

// InvalidTokenError is why a Bearer token of ours is refused (401 invalid_token).
type InvalidTokenError = oauth.InvalidTokenError

// UserIdentity is who a user's credentials (Basic, a session cookie, a user's access token
// through User) speak for. It is immutable.
type UserIdentity struct {
	// Username is the user's name.
	Username string
	// DisplayName is the displayname, or the username.
	DisplayName string
	// Email is the primary address, or "".
	Email string
	// Groups are the user's groups.
	Groups []string
	// GroupString is Groups joined with commas, for Remote-Groups.
	GroupString string
}

var (
	// ErrNotOurToken means a Bearer value is not an access token of this provider.
	ErrNotOurToken = oauth.ErrNotOurToken
	// ErrUnavailable means the store is not open, or no digest slot came free in time for a
	// password check; answer 503 with Retry-After.
	ErrUnavailable = oauth.ErrUnavailable
)

// IsUnavailable reports whether err means the provider cannot answer now: ErrUnavailable, or a
// store error meaning its database is closed or cannot be reached (store.ErrClosed,
// store.ErrUnavailable). The gateway answers 503 with Retry-After, before it looks for a caller
// who left (a statement that timed out in the store is not the caller's deadline).
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrClosed) || errors.Is(err, users.ErrUnavailable)
}

// ErrNoUsers means no users_file is configured: Basic credentials and session cookies are not
// ours.
var ErrNoUsers = errors.New("oidc: no users_file is configured")

// ErrBadCredentials is a wrong username or password, a disabled user, or a banned attempt: the
// same answer, at the same cost, for all of them.
var ErrBadCredentials = errors.New("oidc: the username or password is wrong")

// ErrNoSession is a session cookie that speaks for no one (unknown, ended, expired, or its
// user removed or disabled).
var ErrNoSession = errors.New("oidc: no such session")

// ClientIP is the request's client address as Caddy settled it (the server's trusted_proxies),
// or else the peer's address: the one address the provider and the gateway both judge, count
// and log.
func ClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// CheckBearer validates an access token presented at target, the canonical URL the caller asked
// for (see oauth.Provider.CheckBearer). It returns ErrNotOurToken for a value that is not a token
// of ours, an *InvalidTokenError for one of ours that is refused, and ErrUnavailable while the
// store is not open.
func (a *App) CheckBearer(ctx context.Context, token string, target audience.URL) (*BearerIdentity, error) {
	st := a.running()
	if st == nil {
		return nil, ErrUnavailable
	}
	return st.provider.CheckBearer(ctx, token, target)
}

// CheckBasic checks Basic credentials of a caller at ip (Caddy's client IP) with the password
// guard (regulation.Guard: regulation, remembered right passwords, digest slots, identical
// attempts sharing one check, unknown users and bans answered at a digest's pace). It answers
// ErrNoUsers without a users_file, ErrUnavailable while the store is not open or when no digest
// slot came free in time, ErrBadCredentials for a wrong username or password, a disabled user
// or a banned attempt. A caller who leaves before the answer gets its context's error
// (context.Canceled or context.DeadlineExceeded), in every branch; the attempt counts all the
// same.
func (a *App) CheckBasic(ctx context.Context, username, password, ip string) (*UserIdentity, error) {
	return a.checkPassword(ctx, username, password, ip, "basic")
}

// SessionCookieName is the name of the session cookie at host (lower case, without a port):
// the cookie of the further cookie domain covering host, else the portal's; "" when no
// users_file is configured (no sessions).
func (a *App) SessionCookieName(host string) string {
	if a.portal == nil {
		return ""
	}
	if d, _ := a.portal.otherDomain(host); d != nil {
		return d.name
	}
	return a.portal.cookieName
}

// ErrSessionCookies is a request whose session cookies speak for two people, or that carries
// more than four cookies of the session cookie's name (session.ErrCookies): answer 400.
var ErrSessionCookies = session.ErrCookies

// CheckSession returns who the session cookies of a request to host (lower case, without a
// port; h, its header) speak for and the factor level reached (1 or 2). At a host under a
// further cookie domain it reads that domain's cookie and accepts only sessions begun there by
// a hand-off; elsewhere the portal's own sessions. It reads them by the rule the portal reads
// them with too (session.Pick):
// every cookie of the name counts, one that speaks for no one is skipped, the live sessions of
// two people (or more than four cookies) are ErrSessionCookies. No cookie, or none that speaks
// for anyone (unknown, ended or expired sessions, or their user removed or disabled), is
// ErrNoSession: the caller treats the cookies as absent.
func (a *App) CheckSession(ctx context.Context, host string, h http.Header) (*UserIdentity, int, error) {
	if a.portal == nil {
		return nil, 0, ErrNoUsers
	}
	cookie, domain, other := a.portal.cookieName, "", -1
	if d, i := a.portal.otherDomain(host); d != nil {
		cookie, domain, other = d.name, d.domain, i
	}
	_, found, err := session.Pick(h, cookie, func(id string) (string, sessionIdentity, error) {
		st, err := a.runningPeople()
		if err != nil {
			return "", sessionIdentity{}, err
		}
		sessions := st.sessions
		if other >= 0 {
			if st.handoff == nil {
				return "", sessionIdentity{}, session.ErrNoSession
			}
			sessions = st.handoff.sessions[other]
		}
		name, level, err := sessions.WhoIn(ctx, id, domain)
		if err == nil && level < session.OneFactor { // an enrolment session (no factor) grants nothing
			err = session.ErrNoSession
		}
		if errors.Is(err, session.ErrNoSession) {
			return "", sessionIdentity{}, err
		} else if err != nil {
			return "", sessionIdentity{}, ErrUnavailable
		}
		u, err := st.users.Lookup(ctx, name)
		if err != nil && !errors.Is(err, users.ErrNotFound) {
			return "", sessionIdentity{}, fmt.Errorf("%w: %w", ErrUnavailable, err) // kept; 503
		}
		if err != nil || u.Disabled {
			_ = sessions.End(ctx, id)
			return "", sessionIdentity{}, session.ErrNoSession
		}
		return name, sessionIdentity{identityOf(u), int(level)}, nil
	})
	if errors.Is(err, session.ErrNoSession) {
		return nil, 0, ErrNoSession
	} else if err != nil {
		return nil, 0, err
	}
	return found.user, found.level, nil
}

// sessionIdentity is who a live session speaks for, at its factor level.
type sessionIdentity struct {
	user  *UserIdentity
	level int
}

// User is the current identity of the user called name, or false when there are no people, the
// store is not open, or the user is gone or disabled (a user's access token at the gateway); err
// (wrapping ErrUnavailable) when the user directory cannot be asked, which is never a pass.
func (a *App) User(ctx context.Context, name string) (*UserIdentity, bool, error) {
	st, err := a.runningPeople()
	if err != nil {
		return nil, false, nil
	}
	u, err := st.users.Lookup(ctx, name)
	switch {
	case errors.Is(err, users.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("%w: %w", ErrUnavailable, err) // the directory: 503, never a pass
	case u.Disabled:
		return nil, false, nil
	}
	return identityOf(u), true, nil
}

// IsUser reports whether the user directory names a user called name, disabled or not. It is a
// lookup only (no password is checked, nothing is counted or logged): the gateway removes the
// Basic credentials of a user on a bypass rule. False without people, or while the store is not
// open. True while the directory cannot be asked: a password that may be a user's is never
// passed on to an upstream.
func (a *App) IsUser(name string) bool {
	st, err := a.runningPeople()
	if err != nil {
		return false
	}
	_, err = st.users.Lookup(context.Background(), name)
	return !errors.Is(err, users.ErrNotFound)
}

// CompileRules compiles rules against this app's network definitions and registered clients:
// besides accesscontrol's own checks, every "oauth2:client:<id>" subject must name a registered
// client with the client_credentials grant (only its tokens carry that subject). scope prefixes
// error messages ("access_control" for the global list; "" for a site's rules, whose module Caddy
// already names).
func (a *App) CompileRules(rules []accesscontrol.Rule, scope string, requireDomain bool) (*accesscontrol.RuleSet, error) {
	set, err := accesscontrol.Compile(rules, accesscontrol.CompileOptions{RequireDomain: requireDomain, Networks: a.networks, Scope: scope})
	if err != nil {
		return nil, err
	}
	prefix := ""
	if scope != "" {
		prefix = scope + ": "
	}
	for id, rule := range accesscontrol.SubjectClients(rules) {
		c, ok := a.clients[id]
		if !ok {
			return nil, fmt.Errorf("%s%s: subject: oauth2:client:%s names no registered client; add a 'client %s { … }' block to the oidc option", prefix, rule, id, id)
		}
		if !slices.Contains(c.GetGrantTypes(), clients.GrantClientCredentials) {
			return nil, fmt.Errorf("%s%s: subject: oauth2:client:%s matches only client_credentials tokens, and client %s has no client_credentials grant; match the people who sign in to it with user: or group: subjects, or add client_credentials to its grant_types", prefix, rule, id, id)
		}
	}
	return set, nil
}

// GlobalRules are the compiled global access_control rules.
func (a *App) GlobalRules() *accesscontrol.RuleSet { return a.globalRules }

// DefaultPolicy is the access_control default_policy (deny when not set).
func (a *App) DefaultPolicy() accesscontrol.Policy { return a.defaultPol }

// IssuerURL is the issuer without a trailing slash.
func (a *App) IssuerURL() string { return a.issuer }

// SecondFactorURL is the portal's second-factor page with the return URL rd and method rm.
func (a *App) SecondFactorURL(rd, rm string) string {
	return a.issuer + portal.PathSecondFactor + "?rd=" + url.QueryEscape(rd) + "&rm=" + url.QueryEscape(rm)
}

// ListensOn reports whether one of this config's HTTP servers listens on port.
func (a *App) ListensOn(port uint) bool {
	st := a.running()
	if st == nil {
		return false
	}
	for _, r := range st.ports {
		if r.start <= port && port <= r.end {
			return true
		}
	}
	return false
}

// GateCounter returns the increment of the gate's decision counter for one (site, policy,
// answer), as GateDecided counts them, resolved once, for the allow path that runs on every
// request; a no-op without metrics.
func (a *App) GateCounter(site, policy, answer string) func() {
	if m := a.metrics; m != nil {
		return m.gate.WithLabelValues(site, policy, answer).Inc
	}
	return func() {}
}

// GateDecided counts one request the gate decided: site is a host its rules name or "other",
// policy the deciding policy ("none" when the request was refused before the rules), answer one
// of allow, unauthorized, invalid_token, forbidden, redirect, bad_request, misdirected,
// unavailable. The gateway counts each request once, here or through GateCounter.
func (a *App) GateDecided(site, policy, answer string) {
	if m := a.metrics; m != nil {
		m.gate.WithLabelValues(site, policy, answer).Inc()
	}
}
