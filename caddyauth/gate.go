package caddyauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

// Strategy names, in the order a site tries them by default.
const (
	// StrategyAuthorization reads the Authorization header (Bearer; Basic comes with users) and
	// answers 401 with WWW-Authenticate.
	StrategyAuthorization = "authorization"
	// StrategyProxyAuthorization reads Proxy-Authorization and answers 407 with
	// Proxy-Authenticate.
	StrategyProxyAuthorization = "proxy_authorization"
	// StrategySession reads the portal's session cookie (with a users_file); a browser without
	// one is sent to the portal.
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
	identities identityCache
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
	appIface, err := ctx.AppIfConfigured(oidcprovider.AppName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errors.New("the global 'oidc' option is missing; add '{ oidc { issuer https://auth.example.com … } }' at the top of the Caddyfile")
	} else if err != nil {
		return nil, err
	}
	g, err := c.newGate(appIface.(*oidcprovider.App))
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

// target is the URL the caller asked for, as every check sees it: the rules (host, decoded
// path, query, method), the audience rule and the portal's return URL.
type target struct {
	scheme   string
	hostport string // as asked for, for the return URL
	method   string
	access   accesscontrol.Request
	escaped  string // the escaped path
}

// audience is the target as the audience rule reads it; only a Bearer token needs it.
func (t *target) audience() audience.URL { return audience.Target(t.scheme, t.hostport, t.escaped) }

// errUnsafeMethod refuses a method with lower-case letters (400): rules name methods in upper
// case, and many servers upper-case what they receive, so "delete" would slip past a rule on
// DELETE and still delete.
var errUnsafeMethod = errors.New("refused a request method that is not in upper case")

// errUnsafePath refuses a request whose path servers may read differently (400).
var errUnsafePath = errors.New("refused a request path with a dot segment, an encoded slash or backslash, or a control character")

// errMisdirected refuses a request whose Host names a port of another of this Caddy's servers
// than the one it arrived on (421).
var errMisdirected = errors.New("refused a request whose Host names the port of another of this server's listeners")

// requestTarget builds the target from the request Caddy received, before any rewrite: path,
// query and method from Caddy's original request; scheme and host from the connection, or from
// X-Forwarded-Proto and X-Forwarded-Host when Caddy trusts the peer as a proxy (trusted_proxies).
// A path that CheckPath refuses is errUnsafePath; a Host port that another of this Caddy's
// servers listens on, while the request came in on another port, is errMisdirected.
func (g *gate) requestTarget(r *http.Request) (target, error) {
	u, method := r.URL, r.Method
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u, method = orig.URL, orig.Method
	}
	if !upperMethod(method) || !upperMethod(r.Method) {
		return target{}, errUnsafeMethod
	}
	escaped := u.EscapedPath()
	decoded, err := audience.CheckPath(escaped)
	if err != nil {
		return target{}, errUnsafePath
	}
	scheme, hostport := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	forwarded := false
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			scheme, forwarded = p, true
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			hostport, forwarded = h, true
		}
	}
	host, port := audience.SplitHost(hostport)
	if !forwarded && g.misdirected(r, scheme, port) {
		return target{}, errMisdirected
	}
	t := target{
		scheme:   scheme,
		hostport: hostport,
		method:   method,
		escaped:  escaped,
		access:   accesscontrol.Request{Host: host, Path: decoded, RawQuery: u.RawQuery, Method: method},
	}
	t.access.RawIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if t.access.RawIP == "" {
		t.access.RawIP, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	return t, nil
}

// upperMethod reports a method without lower-case ASCII letters.
func upperMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return false
		}
	}
	return true
}

// misdirected reports a Host port (explicit, or the scheme's default) that differs from the port
// the request arrived on and that another of this Caddy's servers listens on.
func (g *gate) misdirected(r *http.Request, scheme, hostPort string) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if !ok {
		return false
	}
	want := uint(443)
	if scheme == "http" {
		want = 80
	}
	if hostPort != "" {
		p, err := strconv.ParseUint(hostPort, 10, 16)
		if err != nil {
			return true
		}
		want = uint(p)
	}
	return want != uint(local.Port) && g.app.ListensOn(want)
}

// firstValue is the first entry of a comma-separated header value, trimmed.
func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// url is the target as an absolute URL string, for the portal's return URL.
func (t *target) url() string {
	u := url.URL{Scheme: t.scheme, Host: t.hostport, RawPath: t.escaped, Path: t.access.Path, RawQuery: t.access.RawQuery}
	return u.String()
}

// identity is an authenticated caller.
type identity struct {
	bearer   *oidcprovider.BearerIdentity // for a token
	user     *oidcprovider.UserIdentity   // for Basic credentials and sessions
	cookie   string                       // the session cookie's name, when identified by it
	subject  accesscontrol.Subject
	level    accesscontrol.Policy // OneFactor or TwoFactor
	strategy *strategy
	// placeholders is the {http.auth.user.*} provider of a cached identity.
	placeholders caddy.ReplacerFunc
}

// credentialFailure is present but invalid credentials.
type credentialFailure struct {
	strategy    *strategy
	description string
	basic       bool // Basic credentials: the challenge is Basic, not Bearer
}

// identification is what the strategies found.
type identification struct {
	id      *identity
	failure *credentialFailure
	// foreign is the first strategy that carried a Bearer value that is not ours: it counts as
	// absent, but if nothing authenticates on a rule that needs a caller it gets 401 invalid_token
	// rather than a portal redirect.
	foreign *strategy
}

// identify runs the strategies in order. No credentials → next strategy; a Bearer value that is
// not ours counts as absent; present but invalid credentials end the search.
func (g *gate) identify(r *http.Request, t *target) (identification, error) {
	var found identification
	for i := range g.strategies {
		s := &g.strategies[i]
		if s.header == "" {
			id, err := g.checkSession(r, s)
			if err != nil {
				return found, err
			}
			if id != nil {
				found.id = id
				return found, nil
			}
			continue
		}
		// s.header is canonical: index the map rather than pay Get's canonicalisation on every
		// request
		var v string
		if vs := r.Header[s.header]; len(vs) > 0 {
			v = vs[0]
		}
		if v == "" {
			continue
		}
		scheme, cred := v, ""
		if i := strings.IndexAny(v, " \t"); i >= 0 {
			scheme, cred = v[:i], strings.TrimSpace(v[i+1:])
		}
		if strings.EqualFold(scheme, "Basic") {
			u, err := g.checkBasic(r, cred)
			switch {
			case err == nil:
				found.id = &identity{user: u, level: accesscontrol.OneFactor, strategy: s,
					subject: accesscontrol.Subject{Username: u.Username, Groups: u.Groups}}
				return found, nil
			case errors.Is(err, oidcprovider.ErrNoUsers):
				continue // no users_file: Basic credentials are the upstream's, passed on untouched
			case errors.Is(err, oidcprovider.ErrBadCredentials), errors.Is(err, errMalformedBasic):
				found.failure = &credentialFailure{strategy: s, description: "The username or password is wrong.", basic: true}
				return found, nil
			}
			return found, err
		}
		if !strings.EqualFold(scheme, "Bearer") {
			continue // other schemes are not ours: pass them on untouched
		}
		b, err := g.app.CheckBearer(r.Context(), cred, t.audience())
		if err == nil {
			if b.ClientCredentials {
				if found.id = g.identities.get(b, s, accesscontrol.OneFactor, ""); found.id == nil {
					found.id = g.identities.add(b, &identity{bearer: b, level: accesscontrol.OneFactor, strategy: s, subject: accesscontrol.Subject{ClientID: b.ClientID}})
				}
				return found, nil
			}
			id := identity{bearer: b, level: accesscontrol.OneFactor, strategy: s}
			{
				// a user's token: the user is read afresh, so a removed or disabled user is
				// refused at once, and the rules see their current groups
				u, ok := g.app.User(b.Username)
				if !ok {
					found.failure = &credentialFailure{strategy: s, description: "The user of this access token is disabled or no longer exists."}
					return found, nil
				}
				id.user, id.subject = u, accesscontrol.Subject{Username: u.Username, Groups: u.Groups}
				if b.TwoFactor {
					id.level = accesscontrol.TwoFactor
				}
			}
			found.id = &id
			return found, nil
		}
		if errors.Is(err, oidcprovider.ErrNotOurToken) {
			if found.foreign == nil {
				found.foreign = s
			}
			continue
		}
		if inv := (*oidcprovider.InvalidTokenError)(nil); errors.As(err, &inv) {
			found.failure = &credentialFailure{strategy: s, description: inv.Description}
			return found, nil
		}
		return found, err
	}
	return found, nil
}

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

// errMalformedBasic is Basic credentials that do not decode to user:password.
var errMalformedBasic = errors.New("malformed Basic credentials")

// checkBasic decodes Basic credentials (RFC 7617) and checks them with the oidc app.
func (g *gate) checkBasic(r *http.Request, cred string) (*oidcprovider.UserIdentity, error) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return nil, errMalformedBasic
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return nil, errMalformedBasic
	}
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	return g.app.CheckBasic(r.Context(), user, pass, ip)
}

// verdict is what the gate decided.
type verdict uint8

const (
	verdictAllow        verdict = iota + 1
	verdictUnauthorized         // anonymous: log in (302/303 for browsers, 401 otherwise)
	verdictInvalid              // invalid credentials: 401/407 with the challenge
	verdictForbidden            // authenticated but not enough: 403
	verdictDeny                 // anonymous on a rule without subjects: 403
	verdictStepUp               // a one-factor session on a two_factor rule: the second-factor page
)

// foreignTokenDescription explains a 401 to a caller whose Bearer token is not ours.
const foreignTokenDescription = "The Bearer token was not issued by this provider."

// decide applies the rules, following Authelia: bypass lets everyone through (even with invalid
// credentials); deny is 403 unless an anonymous caller may match the rule's subjects; the factor
// policies need a caller of that level. A caller who sent only a Bearer token that is not ours is
// anonymous, but where the rule needs a caller it gets 401 invalid_token, never the portal. anon
// is the rules' decision for an anonymous caller, which the gate took before identification (a
// bypass there admits everyone without a look at their credentials).
func (g *gate) decide(req *accesscontrol.Request, found *identification, anon accesscontrol.Decision) (verdict, accesscontrol.Decision) {
	d := anon
	if found.id != nil {
		d = g.engine.Decide(req, &found.id.subject)
	}
	switch {
	case d.Policy == accesscontrol.Bypass:
		return verdictAllow, d
	case found.failure != nil:
		return verdictInvalid, d
	case found.id == nil:
		if d.Policy == accesscontrol.Deny && !d.HasSubjects {
			return verdictDeny, d
		}
		if found.foreign != nil {
			found.failure = &credentialFailure{strategy: found.foreign, description: foreignTokenDescription}
			return verdictInvalid, d
		}
		return verdictUnauthorized, d
	case d.Policy == accesscontrol.Deny:
		return verdictForbidden, d
	case d.Policy == accesscontrol.TwoFactor && found.id.level < accesscontrol.TwoFactor:
		if found.id.cookie != "" {
			return verdictStepUp, d
		}
		return verdictForbidden, d
	}
	return verdictAllow, d
}

// identityHeaders are the request headers the gate sets; every client-supplied header whose name
// starts with "Remote-", "Remote_" or "Remote." is removed first.
const (
	headerUser     = "Remote-User"
	headerGroups   = "Remote-Groups"
	headerEmail    = "Remote-Email"
	headerName     = "Remote-Name"
	headerClientID = "Remote-Client-Id"
)

// isRemoteHeader reports a header name in the Remote-* family, whatever its separator and case:
// servers that allow underscores in header names, or that map '.' to '_', would read
// "Remote_User" or "Remote.User" as Remote-User.
func isRemoteHeader(k string) bool {
	if len(k) < 7 || !strings.EqualFold(k[:6], "remote") {
		return false
	}
	switch k[6] {
	case '-', '_', '.':
		return true
	}
	return false
}

// stripRemoteHeaders removes every Remote-* header the caller sent, and the request trailers of
// those names, both those declared now and those that arrive after the body; and it removes the
// Remote-* names from the Connection header, where reverse_proxy would read them as hop-by-hop
// headers and drop the identity headers the gate sets. A request without a Connection header
// (every HTTP/2 and HTTP/3 request) costs nothing more than the loop over its header names.
func stripRemoteHeaders(r *http.Request) {
	for k, vs := range r.Header {
		if isRemoteHeader(k) {
			delete(r.Header, k)
		} else if len(k) == len("Connection") && k == "Connection" {
			stripConnectionTokens(r.Header, vs)
		}
	}
	if r.Trailer == nil {
		return
	}
	for k := range r.Trailer {
		if isRemoteHeader(k) {
			delete(r.Trailer, k)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trailerFilter{ReadCloser: r.Body, r: r}
	}
}

// stripConnectionTokens removes the Remote-* names (any case, any separator) from the request's
// Connection header lines, keeping its other tokens (close, keep-alive, Upgrade, names of other
// headers); a header left with no token is removed. Net/http files every spelling of the header
// name under its canonical key, the only one reverse_proxy reads.
func stripConnectionTokens(h http.Header, lines []string) {
	found := false
	for _, line := range lines {
		for tok := range strings.SplitSeq(line, ",") {
			if isRemoteHeader(textproto.TrimString(tok)) {
				found = true
				break
			}
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, line := range lines {
		var toks []string
		for tok := range strings.SplitSeq(line, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !isRemoteHeader(tok) {
				toks = append(toks, tok)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = kept
}

// trailerFilter removes Remote-* trailers once the body has been read to its end, which is when
// net/http fills in the request's trailers.
type trailerFilter struct {
	io.ReadCloser
	r *http.Request
}

func (f *trailerFilter) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if err == io.EOF {
		for k := range f.r.Trailer {
			if isRemoteHeader(k) {
				delete(f.r.Trailer, k)
			}
		}
	}
	return n, err
}

// applyIdentity sets the upstream headers and Caddy placeholders for an allowed caller.
func applyIdentity(r *http.Request, id *identity) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id.subject.ClientID != "" {
		r.Header[headerClientID] = []string{id.subject.ClientID}
	} else if id.user == nil {
		r.Header[headerUser] = []string{id.subject.Username}
	}
	if u := id.user; u != nil {
		// the upstream learns who the caller is from the Remote-* headers, never the password
		// or the session cookie
		if id.cookie == "" && id.bearer == nil && id.strategy != nil {
			r.Header.Del(id.strategy.header)
		}
		// one allocation for the four values; each header gets a slice of it whose capacity
		// ends at its value, so an append by a later handler copies rather than overwrites
		vals := make([]string, 4)
		vals[0], vals[1], vals[2], vals[3] = u.Username, u.GroupString, u.Email, u.DisplayName
		r.Header[headerUser] = vals[0:1:1]
		if u.GroupString != "" {
			r.Header[headerGroups] = vals[1:2:2]
		}
		if u.Email != "" {
			r.Header[headerEmail] = vals[2:3:3]
		}
		r.Header[headerName] = vals[3:4:4]
	}
	if repl != nil {
		repl.Map(id.placeholderProvider())
	}
}

// placeholderProvider answers the identity's {http.auth.user.*} placeholders on demand (one
// provider is cheaper than static entries, which would grow the replacer's map on every
// request). A cached identity keeps its provider, so it is built once.
func (id *identity) placeholderProvider() caddy.ReplacerFunc {
	if id.placeholders != nil {
		return id.placeholders
	}
	level := "one_factor"
	if id.level == accesscontrol.TwoFactor {
		level = "two_factor"
	}
	if u := id.user; u != nil {
		return func(key string) (any, bool) {
			switch key {
			case "http.auth.user.id":
				return u.Username, true
			case "http.auth.user.auth_level":
				return level, true
			case "http.auth.user.groups":
				return u.GroupString, true
			case "http.auth.user.email":
				return u.Email, u.Email != ""
			}
			return nil, false
		}
	}
	b, clientID := id.bearer, id.subject.ClientID
	return func(key string) (any, bool) {
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
func (g *gate) portalURL(t *target) string {
	return g.app.IssuerURL() + "/?rd=" + url.QueryEscape(t.url()) + "&rm=" + url.QueryEscape(t.method)
}

// identityCacheMax bounds the identity cache: past it the cache starts afresh.
const identityCacheMax = 10000

// identityCache keeps the identities of recent callers with their placeholder providers, so the
// hot path allocates neither. It is keyed by who the caller is (a *UserIdentity or a
// *BearerIdentity: immutable values the provider replaces rather than changes, so an entry is
// never stale), each with the few identities of its strategies and levels. A lookup boxes only
// a pointer, which does not allocate.
type identityCache struct {
	m sync.Map // who → *[]*identity (copied on write)
	n atomic.Int64
}

// get returns the cached identity of who through s at level (with the session cookie's name,
// for a session), or nil.
func (c *identityCache) get(who any, s *strategy, level accesscontrol.Policy, cookie string) *identity {
	if v, ok := c.m.Load(who); ok {
		for _, id := range *v.(*[]*identity) {
			if id.strategy == s && id.level == level && id.cookie == cookie {
				return id
			}
		}
	}
	return nil
}

// add caches id, an identity of who, and returns it.
func (c *identityCache) add(who any, id *identity) *identity {
	id.placeholders = id.placeholderProvider()
	list := []*identity{id}
	if v, ok := c.m.Load(who); ok {
		list = append(slices.Clone(*v.(*[]*identity)), id)
	}
	if c.n.Add(1) > identityCacheMax {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(who, &list)
	return id
}
