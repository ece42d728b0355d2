package caddyauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

// outcome is what the gate made of one request: a verdict, or an error (a refused target or
// session cookies, or a check that failed).
type outcome struct {
	t       target
	site    string // the metrics' site label
	found   identification
	verdict verdict
	d       accesscontrol.Decision
	err     error
	// handoff is a request for the reserved hand-off path on a site under a further cookie
	// domain: the gate answers it itself, before any rule.
	handoff bool
}

// allowed reports an outcome that lets the request through.
func (o *outcome) allowed() bool { return o.err == nil && !o.handoff && o.verdict == verdictAllow }

// run is the gate's work on a request, the same for oidc_auth and the stock handler's provider:
// it removes the caller's Remote-* headers, builds the target, lets a bypass rule through before
// any credential is read (bypass rules carry no subjects, so the rules' decision for an anonymous
// caller is every caller's), identifies the caller and applies the rules.
func (g *gate) run(r *http.Request) outcome {
	stripRemoteHeaders(r)
	var o outcome
	var err error
	if o.t, err = g.requestTarget(r); err != nil {
		host, _ := audience.SplitHost(r.Host)
		o.site, o.err = g.siteLabel(host), err
		return o
	}
	o.site = g.siteLabel(o.t.access.Host)
	if o.t.access.Path == oidcprovider.HandoffPath && g.app.HandoffHost(o.t.access.Host) {
		o.handoff = true
		return o
	}
	anon := g.engine.Decide(&o.t.access, nil)
	if anon.Policy == accesscontrol.Bypass {
		o.verdict, o.d = verdictAllow, anon
	} else if o.found, err = g.identify(r, &o.t); err != nil {
		o.err = err
		return o
	} else {
		o.verdict, o.d = g.decide(&o.t.access, &o.found, anon)
	}
	if c := g.logger.Check(zapcore.DebugLevel, "access decision"); c != nil {
		c.Write(zap.String("host", o.t.access.Host), zap.String("rule", g.engine.RuleName(o.d.Rule)), zap.Stringer("policy", o.d.Policy), zap.Bool("authenticated", o.found.id != nil))
	}
	return o
}

// admit lets an allowed request through: it counts it, gives the upstream the caller's identity
// headers and placeholders (none on a bypass rule, which loses a users_file user's Basic
// credentials instead) and removes the session cookie.
func (g *gate) admit(r *http.Request, o *outcome) {
	g.countAllowed(o.site, o.d.Policy)
	if o.found.id != nil {
		applyIdentity(r, o.found.id)
	} else if o.d.Policy == accesscontrol.Bypass {
		g.stripUserBasic(r)
	}
	g.stripSessionCookie(r, o.t.access.Host)
}

// stripUserBasic removes, on a bypass rule, the Basic credentials (in the headers of the site's
// strategies) whose username is a user of the users file, so the upstream of a bypass path never
// learns a Portcullis password; other Basic credentials (the upstream's own users') and other
// schemes pass. It is a lookup only: the password is not checked, nothing is counted or logged.
// A request without those headers allocates nothing.
func (g *gate) stripUserBasic(r *http.Request) {
	for i := range g.strategies {
		s := &g.strategies[i]
		if s.header == "" {
			continue
		}
		for _, v := range r.Header[s.header] {
			if name, ok := basicUsername(v); ok && g.app.IsUser(name) {
				delete(r.Header, s.header)
				break
			}
		}
	}
}

// basicUsername is the username of Basic credentials (RFC 7617), or false for another scheme or
// credentials that do not decode.
func basicUsername(v string) (string, bool) {
	i := strings.IndexAny(v, " \t")
	if i < 0 || !strings.EqualFold(v[:i], "Basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[i+1:]))
	if err != nil {
		return "", false
	}
	user, _, ok := strings.Cut(string(raw), ":")
	return user, ok && user != ""
}

// statusClientGone is the status of a request whose client left while its credentials were
// checked (499, as Caddy's reverse proxy says it): nobody to answer, and no server error to log.
const statusClientGone = 499

// refuse is the one answer to a request the gate does not let through, for oidc_auth and the
// stock handler's provider alike: it counts the answer, sets its headers on w (the challenge,
// WWW-Authenticate or Proxy-Authenticate after the strategy that failed, Basic or Bearer after
// the credentials; the Location of the portal; Retry-After) and returns the status oidc_auth
// answers with its error. With redirect, a browser that must sign in is sent to the portal: the
// status is 302 or 303 and the error nil, and the caller writes the answer. Without it (the stock
// handler, which can only answer 401), a browser gets what an API client gets.
func (g *gate) refuse(w http.ResponseWriter, r *http.Request, o *outcome, redirect bool) (int, error) {
	if err := o.err; err != nil {
		switch {
		case oidcprovider.IsUnavailable(err):
			// the store cannot answer (closed, or its database unreachable): never a pass, never
			// a 500; checked first, since a statement that timed out is not the caller leaving
			g.app.GateDecided(o.site, "none", "unavailable")
			w.Header().Set("Retry-After", "1")
			return http.StatusServiceUnavailable, err
		case errors.Is(err, errMisdirected):
			g.app.GateDecided(o.site, "none", "misdirected")
			return http.StatusMisdirectedRequest, err
		case errors.Is(err, errUnsafeMethod), errors.Is(err, errUnsafePath), errors.Is(err, errSessionCookies):
			g.app.GateDecided(o.site, "none", "bad_request")
			return http.StatusBadRequest, err
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return statusClientGone, err
		}
		g.app.GateDecided(o.site, "none", "unavailable")
		return http.StatusInternalServerError, fmt.Errorf("checking credentials: %w", err)
	}
	if o.handoff {
		// only oidc_auth can answer the hand-off's path; never the upstream's
		g.app.GateDecided(o.site, "none", "bad_request")
		return http.StatusNotFound, errors.New("the hand-off path is answered by the oidc_auth directive only")
	}
	policy := o.d.Policy.String()
	switch o.verdict {
	case verdictInvalid:
		g.app.GateDecided(o.site, policy, "invalid_token")
		f := o.found.failure
		if f.basic {
			w.Header().Set(f.strategy.challenge, `Basic realm="`+realm+`", charset="UTF-8"`)
		} else {
			w.Header().Set(f.strategy.challenge, bearerChallenge("invalid_token", f.description))
		}
		return f.strategy.status, errors.New("invalid credentials: " + f.description)
	case verdictForbidden:
		g.app.GateDecided(o.site, policy, "forbidden")
		if id := o.found.id; id.user == nil {
			w.Header().Set(id.strategy.challenge, bearerChallenge("insufficient_scope", "The rule for this URL asks more than this token can prove ("+policy+")."))
		}
		return http.StatusForbidden, fmt.Errorf("forbidden by %s", g.engine.RuleName(o.d.Rule))
	case verdictDeny:
		g.app.GateDecided(o.site, policy, "forbidden")
		return http.StatusForbidden, fmt.Errorf("denied by %s", g.engine.RuleName(o.d.Rule))
	}
	// Anonymous: browsers go to the portal; API clients get 401 with the same Location. A
	// one-factor session on a two_factor rule goes to the second-factor page the same way.
	loc := g.portalURL(&o.t)
	if o.verdict == verdictStepUp {
		loc = g.app.SecondFactorURL(o.t.url(), o.t.method)
	}
	browser := redirect && isBrowser(r)
	if browser {
		// a site under a further cookie domain: its session comes from the portal's by a
		// hand-off, which a browser without one (or with one factor where two are asked) begins
		if hl, nonce, ok := g.app.HandoffBegin(o.t.access.Host, o.t.url(), o.verdict == verdictStepUp); ok {
			loc = hl
			http.SetCookie(w, nonce)
		}
	}
	w.Header().Set("Location", loc)
	if browser {
		g.app.GateDecided(o.site, policy, "redirect")
		w.Header().Set("Cache-Control", "no-store")
		if m := o.t.method; m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions {
			return http.StatusSeeOther, nil
		}
		return http.StatusFound, nil
	}
	g.app.GateDecided(o.site, policy, "unauthorized")
	w.Header().Set("WWW-Authenticate", bearerChallenge("", ""))
	return http.StatusUnauthorized, errors.New("authentication required")
}

// bearerChallenge formats an RFC 6750 challenge.
func bearerChallenge(errCode, description string) string {
	if errCode == "" {
		return `Bearer realm="` + realm + `"`
	}
	return `Bearer realm="` + realm + `", error="` + errCode + `", error_description="` + strings.ReplaceAll(description, `"`, `'`) + `"`
}

// isBrowser follows Authelia: Accept names text/html, or */* comes first; and not XHR.
func isBrowser(r *http.Request) bool {
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return false
	}
	accept := r.Header.Get("Accept")
	if strings.Contains(accept, "text/html") {
		return true
	}
	first, _, _ := strings.Cut(accept, ",")
	first, _, _ = strings.Cut(first, ";")
	return strings.TrimSpace(first) == "*/*"
}

// portalURL is where an anonymous browser is sent to log in: the issuer with rd (the URL it
// asked for) and rm (its method).
func (g *gate) portalURL(t *target) string {
	return g.app.IssuerURL() + "/?rd=" + url.QueryEscape(t.url()) + "&rm=" + url.QueryEscape(t.method)
}
