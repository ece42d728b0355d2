package caddyauth

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// Strategy names, in the order a site tries them by default.
const (
	// StrategyAuthorization reads the Authorization header: a Bearer access token, or Basic
	// credentials checked against the users_file (without one, Basic credentials are the
	// upstream's and pass untouched). A failure is answered 401 with WWW-Authenticate.
	StrategyAuthorization = "authorization"
	// StrategyProxyAuthorization reads Proxy-Authorization and answers 407 with
	// Proxy-Authenticate.
	StrategyProxyAuthorization = "proxy_authorization"
	// StrategySession reads the portal's session cookies (with a users_file); without a live
	// session the caller is anonymous, and a browser is sent to the portal where a rule needs a
	// caller.
	StrategySession = "session"
)

var defaultStrategies = []string{StrategyAuthorization, StrategyProxyAuthorization, StrategySession}

// realm names the protection space in challenges.
const realm = "Portcullis"

// GateConfig is the configuration shared by the oidc_auth handler and the caddyauth provider.
type GateConfig struct {
	// Rules are this site's access-control rules, evaluated before the global access_control
	// list of the oidc app. A rule here may omit domain: it applies to the site it is in.
	// JSON: "rules". Default: none.
	Rules []accesscontrol.Rule `json:"rules,omitempty"`
	// Strategies are the credential sources tried in order: "authorization" (Bearer and Basic),
	// "proxy_authorization" and "session" (the portal's cookie). JSON: "strategies".
	// Default: all three, in that order.
	Strategies []string `json:"strategies,omitempty"`
}

// gate is the provisioned gateway logic.
type gate struct {
	app        *oidcprovider.App
	logger     *zap.Logger // the access decisions, at debug level
	engine     *accesscontrol.Engine
	strategies []strategy
	sites      map[string]bool // the hosts the rules name exactly: the metrics' site labels
	// allowed counts allowed requests per site label and policy: each counter is looked up by
	// its labels on its first use and kept, as that lookup on every request costs more than the
	// rest of the decision (and a series appears only once it counts something).
	allowed map[string]*[int(accesscontrol.Deny) + 1]atomic.Pointer[func()]
	// identities keeps the identity (and its placeholder provider) of each authenticated
	// caller, so a request allocates neither.
	identities callerIdentityCache
}

// countAllowed counts an allowed request of site under policy.
func (g *gate) countAllowed(site string, policy accesscontrol.Policy) {
	c := g.allowed[site]
	if c == nil || int(policy) >= len(c) {
		g.app.GateDecided(site, policy.String(), "allow")
		return
	}
	inc := c[policy].Load()
	if inc == nil {
		f := g.app.GateCounter(site, policy.String(), "allow")
		c[policy].Store(&f)
		inc = &f
	}
	(*inc)()
}

// siteLabel is host when the rules name it, else "other", so the metric has few labels whatever
// Host headers callers send.
func (g *gate) siteLabel(host string) string {
	if g.sites[host] {
		return host
	}
	return "other"
}

type strategy struct {
	name      string
	header    string // request header carrying credentials; "" for the session cookie
	challenge string // response header for the challenge
	status    int    // status of a failed authentication
}

func (c *GateConfig) provision(ctx caddy.Context) (*gate, error) {
	app, err := oidcprovider.AppOf(ctx)
	if err != nil {
		return nil, err
	}
	g, err := c.newGate(app)
	if err != nil {
		return nil, err
	}
	g.logger = ctx.Logger()
	return g, nil
}

// newGate compiles the site's rules against a provisioned oidc app.
func (c *GateConfig) newGate(app *oidcprovider.App) (*gate, error) {
	site, err := app.CompileRules(c.Rules, "", false)
	if err != nil {
		return nil, err
	}
	g := &gate{app: app, logger: zap.NewNop(), engine: accesscontrol.NewEngine(app.DefaultPolicy(), site, app.GlobalRules()), sites: map[string]bool{},
		allowed: map[string]*[int(accesscontrol.Deny) + 1]atomic.Pointer[func()]{}}
	for _, d := range g.engine.ExactDomains() {
		g.sites[d] = true
	}
	for _, label := range append(slices.Collect(maps.Keys(g.sites)), "other") {
		g.allowed[label] = new([int(accesscontrol.Deny) + 1]atomic.Pointer[func()])
	}
	names := c.Strategies
	if len(names) == 0 {
		names = defaultStrategies
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("strategies: %q is listed twice", n)
		}
		seen[n] = true
		switch n {
		case StrategyAuthorization:
			g.strategies = append(g.strategies, strategy{n, "Authorization", "WWW-Authenticate", http.StatusUnauthorized})
		case StrategyProxyAuthorization:
			g.strategies = append(g.strategies, strategy{n, "Proxy-Authorization", "Proxy-Authenticate", http.StatusProxyAuthRequired})
		case StrategySession:
			g.strategies = append(g.strategies, strategy{name: n})
		default:
			return nil, fmt.Errorf("strategies: unknown strategy %q (authorization, proxy_authorization, session)", n)
		}
	}
	return g, nil
}
