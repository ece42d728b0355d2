package oidcprovider

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis-auth/portcullis/oidcprovider/oauth"
)

// CORSConfig lets browser applications on other origins call the provider's endpoints
// (cross-origin resource sharing), as Authelia's identity_providers.oidc.cors does. Nothing is
// allowed by default: an endpoint answers other origins only when it is listed in Endpoints and
// the request's Origin is allowed. Discovery and /jwks.json are public documents and always
// answer "Access-Control-Allow-Origin: *", with or without this block.
//
// An allowed origin's requests get "Access-Control-Allow-Origin: <origin>" (never "*", and
// never Access-Control-Allow-Credentials: the endpoints take explicit credentials, an
// Authorization header or a form, not the browser's cookies) with "Vary: Origin"; its preflight
// (OPTIONS with Access-Control-Request-Method) is answered 204 with the endpoint's methods, the
// headers Authorization and Content-Type, and a max age of 10 minutes. Any other origin gets no
// CORS headers, so the browser keeps the answer from the page.
type CORSConfig struct {
	// Endpoints are the endpoints that answer allowed origins: authorization,
	// pushed-authorization-request, token, revocation, introspection, userinfo (Authelia's
	// names). JSON: "endpoints". Default: none.
	Endpoints []string `json:"endpoints,omitempty"`
	// AllowedOrigins are origins, scheme://host[:port] (http or https, no path), whose pages may
	// call the endpoints. "*" is refused: list the origins. JSON: "allowed_origins". Default:
	// none.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// AllowedOriginsFromClientRedirectURIs adds the origin of every http and https redirect URI
	// of every registered client to AllowedOrigins. JSON:
	// "allowed_origins_from_client_redirect_uris". Default: false.
	AllowedOriginsFromClientRedirectURIs bool `json:"allowed_origins_from_client_redirect_uris,omitempty"`
}

// CORS endpoint names (Authelia's) and the methods each answers.
var corsEndpoints = map[string]string{
	"authorization":                "GET, POST, OPTIONS",
	"pushed-authorization-request": "POST, OPTIONS",
	"token":                        "POST, OPTIONS",
	"revocation":                   "POST, OPTIONS",
	"introspection":                "POST, OPTIONS",
	"userinfo":                     "GET, POST, OPTIONS",
}

// corsMaxAge is how long a browser may keep a preflight's answer, in seconds.
const corsMaxAge = 600

// corsPolicy is a provisioned CORSConfig: the allowed origins (lowercase) and the endpoints, by
// name. The zero value (or nil) allows nothing.
type corsPolicy struct {
	origins   map[string]bool
	endpoints map[string]bool
}

// corsEndpoint names the CORS endpoint at path rel (relative to the issuer), or "".
func corsEndpoint(rel string) string {
	switch rel {
	case oauth.PathAuthorization, oauth.PathAuthorizationAlias:
		return "authorization"
	case oauth.PathPAR:
		return "pushed-authorization-request"
	case oauth.PathToken:
		return "token"
	case oauth.PathRevocation, oauth.PathRevokeAlias:
		return "revocation"
	case oauth.PathIntrospection, oauth.PathIntrospectAlias:
		return "introspection"
	case oauth.PathUserinfo:
		return "userinfo"
	}
	return ""
}

// parseOrigin checks an origin as configured and returns it in the form browsers send it:
// lowercase scheme and host, the scheme's default port left out.
func parseOrigin(s string) (string, error) {
	if s == "*" {
		return "", fmt.Errorf("%q would let every web site read the answers; list the origins of your applications, such as https://app.example.com", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an origin such as https://app.example.com (scheme://host[:port])", s)
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("%q is not an origin: write only scheme://host[:port], such as %s://%s, without a path", s, u.Scheme, u.Host)
	}
	if strings.Contains(u.Hostname(), "*") {
		return "", fmt.Errorf("%q: wildcards are not allowed in origins; list each one", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q has no valid port", s)
		}
	}
	return originString(u), nil
}

// originString is u's origin as a browser serializes it.
func originString(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host += ":" + port
	}
	return scheme + "://" + host
}

// provisionCORS checks the cors block and builds the policy; the clients must be provisioned
// first (their redirect URIs may give origins).
func (a *App) provisionCORS() error {
	a.cors = nil
	c := a.CORS
	if c == nil {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}, endpoints: map[string]bool{}}
	for _, e := range c.Endpoints {
		if _, ok := corsEndpoints[e]; !ok {
			names := make([]string, 0, len(corsEndpoints))
			for n := range corsEndpoints {
				names = append(names, n)
			}
			slices.Sort(names)
			return fmt.Errorf("cors: endpoints: unknown endpoint %q (%s; discovery and jwks are always open to every origin)", e, strings.Join(names, ", "))
		}
		p.endpoints[e] = true
	}
	for _, o := range c.AllowedOrigins {
		origin, err := parseOrigin(o)
		if err != nil {
			return fmt.Errorf("cors: allowed_origins: %w", err)
		}
		p.origins[origin] = true
	}
	if c.AllowedOriginsFromClientRedirectURIs {
		for _, cl := range a.clients {
			for _, ru := range cl.GetRedirectURIs() {
				if u, err := url.Parse(ru); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
					p.origins[originString(u)] = true
				}
			}
		}
	}
	switch {
	case len(p.endpoints) == 0:
		a.logger.Warn("cors: no endpoints are listed, so no origin is allowed anywhere; add 'endpoints token userinfo …'")
	case len(p.origins) == 0:
		a.logger.Warn("cors: no origin is allowed; add 'allowed_origins https://app.example.com' or 'allowed_origins_from_client_redirect_uris'")
	}
	a.cors = p
	return nil
}

// serve adds the CORS headers of the endpoint at rel to w and answers a preflight; it reports
// whether it answered the request (a preflight), which then goes no further.
func (p *corsPolicy) serve(w http.ResponseWriter, r *http.Request, rel string) bool {
	if p == nil {
		return false
	}
	name := corsEndpoint(rel)
	if name == "" || !p.endpoints[name] {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	allowed := origin != "" && p.origins[strings.ToLower(origin)]
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if !preflight {
		if allowed {
			h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		}
		return false
	}
	if allowed {
		h.Set("Access-Control-Allow-Methods", corsEndpoints[name])
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}
