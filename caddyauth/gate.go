package caddyauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// Strategy names, in the order a site tries them by default.
const (
	// StrategyAuthorization reads the Authorization header (Bearer; Basic comes with users) and
	// answers 401 with WWW-Authenticate.
	StrategyAuthorization = "authorization"
	// StrategyProxyAuthorization reads Proxy-Authorization and answers 407 with
	// Proxy-Authenticate.
	StrategyProxyAuthorization = "proxy_authorization"
)

var defaultStrategies = []string{StrategyAuthorization, StrategyProxyAuthorization}

// realm names the protection space in challenges.
const realm = "Portcullis"

// GateConfig is the configuration shared by the oidc_auth handler and the caddyauth provider.
type GateConfig struct {
	// Rules are this site's access-control rules, evaluated before the global access_control
	// list of the oidc app. A rule here may omit domain: it applies to the site it is in.
	// JSON: "rules"; default none.
	Rules []accesscontrol.Rule `json:"rules,omitempty"`
	// Strategies are the credential sources tried in order: "authorization" and
	// "proxy_authorization". JSON: "strategies"; default both, in that order.
	Strategies []string `json:"strategies,omitempty"`
}

// gate is the provisioned gateway logic.
type gate struct {
	app        *oidcprovider.App
	engine     *accesscontrol.Engine
	strategies []strategy
}

type strategy struct {
	name      string
	header    string // request header carrying credentials
	challenge string // response header for the challenge
	status    int    // status of a failed authentication
}

func (c *GateConfig) provision(ctx caddy.Context, directive string) (*gate, error) {
	appIface, err := ctx.AppIfConfigured(oidcprovider.AppName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("%s: the global 'oidc' option is missing; add '{ oidc { issuer https://auth.example.com … } }' at the top of the Caddyfile", directive)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", directive, err)
	}
	return c.newGate(appIface.(*oidcprovider.App), directive)
}

// newGate compiles the site's rules against a provisioned oidc app.
func (c *GateConfig) newGate(app *oidcprovider.App, directive string) (*gate, error) {
	site, err := app.CompileRules(c.Rules, directive, false)
	if err != nil {
		return nil, err
	}
	g := &gate{app: app, engine: accesscontrol.NewEngine(app.DefaultPolicy(), site, app.GlobalRules())}
	names := c.Strategies
	if len(names) == 0 {
		names = defaultStrategies
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("%s: strategies: %q is listed twice", directive, n)
		}
		seen[n] = true
		switch n {
		case StrategyAuthorization:
			g.strategies = append(g.strategies, strategy{n, "Authorization", "WWW-Authenticate", http.StatusUnauthorized})
		case StrategyProxyAuthorization:
			g.strategies = append(g.strategies, strategy{n, "Proxy-Authorization", "Proxy-Authenticate", http.StatusProxyAuthRequired})
		case "session", "cookie":
			return nil, fmt.Errorf("%s: strategies: %q is not available yet (it comes with the login portal); use authorization and/or proxy_authorization", directive, n)
		default:
			return nil, fmt.Errorf("%s: strategies: unknown strategy %q (authorization, proxy_authorization)", directive, n)
		}
	}
	return g, nil
}

// identity is an authenticated caller.
type identity struct {
	bearer   *oidcprovider.BearerIdentity
	subject  accesscontrol.Subject
	level    accesscontrol.Policy // OneFactor or TwoFactor
	strategy *strategy
}

// credentialFailure is present but invalid credentials.
type credentialFailure struct {
	strategy    *strategy
	description string
}

// requestURL is the URL the caller asked for, as the audience rule sees it.
func requestURL(r *http.Request) url.URL {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
}

// identify runs the strategies in order. No credentials → next strategy; a Bearer value that is
// not ours counts as absent; present but invalid credentials end the search.
func (g *gate) identify(r *http.Request) (*identity, *credentialFailure, error) {
	for i := range g.strategies {
		s := &g.strategies[i]
		v := r.Header.Get(s.header)
		if v == "" {
			continue
		}
		scheme, cred, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			continue // Basic and other schemes are not ours (yet): pass them on untouched
		}
		cred = strings.TrimSpace(cred)
		target := requestURL(r)
		b, err := g.app.CheckBearer(r.Context(), cred, &target)
		if err == nil {
			id := identity{bearer: b, level: accesscontrol.OneFactor, strategy: s}
			if b.ClientCredentials {
				id.subject.ClientID = b.ClientID
			} else {
				id.subject.Username = b.Username
			}
			return &id, nil, nil
		}
		if errors.Is(err, oidcprovider.ErrNotOurToken) {
			continue
		}
		if inv := (*oidcprovider.InvalidTokenError)(nil); errors.As(err, &inv) {
			return nil, &credentialFailure{strategy: s, description: inv.Description}, nil
		}
		return nil, nil, err
	}
	return nil, nil, nil
}

// accessRequest builds what the rules see of r.
func accessRequest(r *http.Request) accesscontrol.Request {
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	req := accesscontrol.Request{Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Method: r.Method}
	req.RawIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if req.RawIP == "" {
		req.RawIP, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	return req
}

// verdict is what the gate decided.
type verdict uint8

const (
	verdictAllow        verdict = iota + 1
	verdictUnauthorized         // anonymous: log in (302/303 for browsers, 401 otherwise)
	verdictInvalid              // invalid credentials: 401/407 with the challenge
	verdictForbidden            // authenticated but not enough: 403
	verdictDeny                 // anonymous on a rule without subjects: 403
)

// decide applies the rules, following Authelia: bypass lets everyone through (even with invalid
// credentials); deny is 403 unless an anonymous caller may match the rule's subjects; the factor
// policies need a caller of that level.
func (g *gate) decide(req *accesscontrol.Request, id *identity, failed bool) (verdict, accesscontrol.Decision) {
	var subj *accesscontrol.Subject
	if id != nil {
		subj = &id.subject
	}
	d := g.engine.Decide(req, subj)
	switch {
	case d.Policy == accesscontrol.Bypass:
		return verdictAllow, d
	case failed:
		return verdictInvalid, d
	case id == nil:
		if d.Policy == accesscontrol.Deny && !d.HasSubjects {
			return verdictDeny, d
		}
		return verdictUnauthorized, d
	case d.Policy == accesscontrol.Deny:
		return verdictForbidden, d
	case d.Policy == accesscontrol.TwoFactor && id.level < accesscontrol.TwoFactor:
		return verdictForbidden, d
	}
	return verdictAllow, d
}

// identityHeaders are the request headers the gate sets; every client-supplied Remote-* header
// is removed first.
const (
	headerUser     = "Remote-User"
	headerGroups   = "Remote-Groups"
	headerEmail    = "Remote-Email"
	headerName     = "Remote-Name"
	headerClientID = "Remote-Client-Id"
)

// stripRemoteHeaders removes every Remote-* header the caller sent.
func stripRemoteHeaders(h http.Header) {
	for k := range h {
		if len(k) > 7 && strings.EqualFold(k[:7], "remote-") {
			delete(h, k)
		}
	}
}

// applyIdentity sets the upstream headers and Caddy placeholders for an allowed caller.
func applyIdentity(r *http.Request, id *identity) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	level := "one_factor"
	if id.level == accesscontrol.TwoFactor {
		level = "two_factor"
	}
	if id.subject.ClientID != "" {
		r.Header[headerClientID] = []string{id.subject.ClientID}
	} else {
		r.Header[headerUser] = []string{id.subject.Username}
	}
	if repl != nil {
		// One provider answers every identity placeholder on demand: cheaper than four static
		// entries, which would grow the replacer's map on every request.
		b, clientID := id.bearer, id.subject.ClientID
		repl.Map(func(key string) (any, bool) {
			switch key {
			case "http.auth.user.id":
				return b.SubjectID, true
			case "http.auth.user.client_id":
				return clientID, clientID != ""
			case "http.auth.user.auth_level":
				return level, true
			case "http.auth.user.scopes":
				return b.ScopeString, true
			}
			return nil, false
		})
	}
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
func (g *gate) portalURL(r *http.Request) string {
	target := requestURL(r)
	return g.app.IssuerURL() + "/?rd=" + url.QueryEscape(target.String()) + "&rm=" + url.QueryEscape(r.Method)
}
