package caddyauth

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
	"github.com/portcullis-auth/portcullis/oidcprovider/audience"
)

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
	t.access.RawIP = oidcprovider.ClientIP(r)
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
