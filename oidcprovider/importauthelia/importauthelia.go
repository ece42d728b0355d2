// Package importauthelia turns an Authelia configuration.yml into the equivalent Portcullis
// Caddyfile: the global oidc block (issuer, HMAC secret, lifespans, PKCE and PAR policy,
// authorization and claims policies, clients with their digests unchanged, access-control
// networks and rules, the PostgreSQL storage) and one site block per domain the rules name. Whatever it cannot carry over is returned as a list of leftovers, each with the key
// path and the reason, so an operator knows what to finish by hand.
package importauthelia

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Leftover is one key of the Authelia configuration the import could not carry over.
type Leftover struct {
	// Path is the key path, e.g. "identity_providers.oidc.clients[1].redirect_uris".
	Path string `json:"path"`
	// Why says why, and what to do.
	Why string `json:"why"`
	// NotNeeded marks a key whose job Caddy or Portcullis does without it (listeners, logs,
	// Authelia's authz endpoints): nothing is lost by leaving it out.
	NotNeeded bool `json:"not_needed,omitempty"`
}

// String is "not carried over: path: why", or "not needed: …".
func (l Leftover) String() string {
	if l.NotNeeded {
		return "not needed: " + l.Path + ": " + l.Why
	}
	return "not carried over: " + l.Path + ": " + l.Why
}

// Complete reports whether nothing was left over (keys that are not needed aside); the
// Caddyfile of a complete import passes caddy validate.
func (r *Result) Complete() bool {
	for _, l := range r.Leftovers {
		if !l.NotNeeded {
			return false
		}
	}
	return true
}

// Result is an import: the Caddyfile and what it left out.
type Result struct {
	Caddyfile string     `json:"caddyfile"`
	Leftovers []Leftover `json:"leftovers"`
}

// later marks sections that need the sign-in portal, which Portcullis does not serve yet.
const later = "Portcullis has no Duo or password policy; keep Authelia for them or drop them"

// Options tune Convert.
type Options struct {
	// Issuer, when set, is the provider's URL; otherwise it is taken from Authelia's session
	// cookies (authelia_url).
	Issuer string
}

// Convert reads an Authelia configuration.
func Convert(configYAML []byte, opts Options) (*Result, error) {
	var root map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(configYAML))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the Authelia configuration: %w", err)
	}
	c := &converter{opts: opts, certDir: str(root["certificates_directory"])}
	c.convert(root)
	sort.SliceStable(c.left, func(i, j int) bool { return c.left[i].Path < c.left[j].Path })
	return &Result{Caddyfile: c.out.String(), Leftovers: c.left}, nil
}

type converter struct {
	opts    Options
	out     strings.Builder
	left    []Leftover
	certDir string          // Authelia's certificates_directory, which its TLS clients trust
	clients map[string]bool // clients carried over: true for those with the client_credentials grant
	dropped map[string]bool // clients left out
}

func (c *converter) leave(path, why string) { c.left = append(c.left, Leftover{Path: path, Why: why}) }

func (c *converter) notNeeded(path, why string) {
	c.left = append(c.left, Leftover{Path: path, Why: why, NotNeeded: true})
}

// str is a scalar as text ("" for none).
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// list is a string or a list of scalars as a list.
func list(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, str(e))
		}
		return out
	}
	return []string{str(v)}
}

// quote writes a Caddyfile token: bare when safe, else quoted. Caddy's lexer reads \" in a
// double-quoted token as a quote and keeps every other backslash, so a value with a backslash
// (a regular expression's \w, an LDAP DN's \,) goes in backquotes, which take everything as
// written.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n\"'`{}#\\") && !strings.HasPrefix(s, "{") {
		return s
	}
	if strings.Contains(s, `\`) && !strings.Contains(s, "`") {
		return "`" + s + "`"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func quoteAll(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = quote(s)
	}
	return strings.Join(out, " ")
}

func (c *converter) line(depth int, format string, a ...any) {
	c.out.WriteString(strings.Repeat("\t", depth))
	fmt.Fprintf(&c.out, format, a...)
	c.out.WriteByte('\n')
}

func (c *converter) convert(root map[string]any) {
	oidc, _ := dig(root, "identity_providers", "oidc").(map[string]any)
	ac, _ := root["access_control"].(map[string]any)

	for k := range root {
		switch k {
		case "identity_providers", "access_control":
		case "authentication_backend", "regulation":
			// carried over below
		case "session", "totp", "webauthn":
			// carried over below, with the users file
		case "duo_api", "password_policy":
			c.leave(k, later)
		case "identity_validation":
			// carried over below
		case "storage":
			// carried over below
		case "notifier":
			// carried over below
		case "server":
			c.notNeeded(k, "Caddy's listeners and TLS serve the sites, and oidc_auth on each site replaces Authelia's authz endpoints (it reads Bearer and, with users_file, Basic credentials)")
		case "log", "telemetry", "ntp", "certificates_directory":
			c.notNeeded(k, "Caddy's own settings (logs, metrics, TLS) take this role")
		case "definitions":
			// networks are carried over with access_control below
			defs, _ := root[k].(map[string]any)
			for _, dk := range sortedKeys(defs) {
				if dk != "network" {
					c.leave(k+"."+dk, "not carried over by the import")
				}
			}
		case "theme", "default_2fa_method", "default_redirection_url", "jwt_secret", "privacy_policy":
			c.leave(k, "belongs to the sign-in portal or to Authelia alone; not carried over")
		default:
			c.leave(k, "unknown to the import")
		}
	}
	idp, _ := dig(root, "identity_providers").(map[string]any)
	for k := range idp {
		if k != "oidc" {
			c.leave("identity_providers."+k, "unknown to the import")
		}
	}

	c.line(0, "{")
	c.line(1, "oidc {")
	issuer := c.issuer(root)
	c.line(2, "issuer %s", quote(issuer))
	c.storage(root)
	if oidc != nil {
		c.provider(oidc)
	}
	c.people(root)
	netDefs, _ := dig(root, "definitions", "network").(map[string]any)
	if ac != nil || len(netDefs) > 0 {
		c.accessControl(ac, netDefs)
	}
	c.line(1, "}")
	c.line(0, "}")

	// the provider's site, then one site per domain the rules name
	c.out.WriteString("\n")
	c.line(0, "%s {", siteAddress(issuer))
	c.line(1, "oidc_provider")
	c.line(0, "}")
	for _, d := range c.siteDomains(ac) {
		c.out.WriteString("\n")
		c.line(0, "%s {", d)
		c.line(1, "oidc_auth")
		c.line(1, "reverse_proxy localhost:8080 # the upstream of %s: replace", d)
		c.line(0, "}")
	}
}

// dig walks nested maps; a missing key or a non-map on the way gives nil.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// issuer is Authelia's portal URL: the first session cookie's authelia_url (4.38 and later).
func (c *converter) issuer(root map[string]any) string {
	if c.opts.Issuer != "" {
		return strings.TrimSuffix(c.opts.Issuer, "/")
	}
	cookies, _ := dig(root, "session", "cookies").([]any)
	for _, ck := range cookies {
		if u := str(dig(ck, "authelia_url")); u != "" {
			if p, err := url.Parse(u); err == nil && p.Scheme == "https" && p.Host != "" {
				return strings.TrimSuffix(p.Scheme+"://"+p.Host+p.Path, "/")
			}
		}
	}
	c.leave("session.cookies[].authelia_url", "no portal URL to take the issuer from; the output uses https://auth.example.com: set issuer to the provider's URL")
	return "https://auth.example.com"
}

// siteAddress is the Caddy site address of a URL (its scheme and host).
func siteAddress(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return u
	}
	return p.Scheme + "://" + p.Host
}

var lifespanKeys = []string{"access_token", "authorize_code", "device_code", "id_token", "refresh_token"}

// legacyLifespans are Authelia 4.30's lifespan keys, folded into lifespans.
var legacyLifespans = map[string]string{"access_token_lifespan": "access_token", "authorize_code_lifespan": "authorize_code",
	"id_token_lifespan": "id_token", "refresh_token_lifespan": "refresh_token"}

func (c *converter) provider(oidc map[string]any) {
	const base = "identity_providers.oidc"
	for old, k := range legacyLifespans {
		if v, ok := oidc[old]; ok {
			ls, _ := oidc["lifespans"].(map[string]any)
			if ls == nil {
				ls = map[string]any{}
				oidc["lifespans"] = ls
			}
			if _, set := ls[k]; !set {
				ls[k] = v
			}
			delete(oidc, old)
		}
	}
	keys := sortedKeys(oidc)
	for _, k := range keys {
		switch k {
		case "hmac_secret":
			c.line(2, "hmac_secret %s", quote(str(oidc[k])))
		case "enforce_pkce", "enable_pkce_plain_challenge", "minimum_parameter_entropy":
			c.line(2, "%s %s", k, quote(str(oidc[k])))
		case "pushed_authorizations":
			par, _ := oidc[k].(map[string]any)
			for _, pk := range sortedKeys(par) {
				switch pk {
				case "enforce":
					c.line(2, "require_pushed_authorization_requests %s", quote(str(par[pk])))
				case "context_lifespan":
					c.notNeeded(base+"."+k+"."+pk, "a pushed request lives 5 minutes in Portcullis, Authelia's default")
				default:
					c.leave(base+"."+k+"."+pk, "not carried over by the import")
				}
			}
		case "jwks", "issuer_private_key", "issuer_certificate_chain":
			c.leave(base+"."+k, "signing keys sit in files in Portcullis: write each key to a PEM file (mode 0600) and add 'signing_key [<key_id>] { algorithm <alg> key_file <file> }'; without one, a generated RS256 key is used")
		case "lifespans":
			c.lifespans(oidc[k])
		case "clients", "authorization_policies", "claims_policies":
		case "scopes":
			c.leave(base+"."+k, "custom scopes and their claims are not available yet; a client may still register and be granted any scope name")
		case "enable_client_debug_messages", "discovery_signed_response_alg", "discovery_signed_response_key_id":
			c.leave(base+"."+k, "not available yet")
		case "cors":
			c.cors(base+"."+k, oidc[k])
		default:
			c.leave(base+"."+k, "not carried over by the import")
		}
	}
	c.authorizationPolicies(base+".authorization_policies", oidc["authorization_policies"])
	c.claimsPolicies(base+".claims_policies", oidc["claims_policies"])
	c.clients = map[string]bool{}
	c.dropped = map[string]bool{}
	clients, _ := oidc["clients"].([]any)
	for i, cl := range clients {
		m, ok := cl.(map[string]any)
		if !ok {
			c.leave(fmt.Sprintf("%s.clients[%d]", base, i), "not a client map")
			continue
		}
		c.client(fmt.Sprintf("%s.clients[%d]", base, i), m)
	}
}

// cors carries over Authelia's cors block: endpoints, allowed_origins and
// allowed_origins_from_client_redirect_uris.
func (c *converter) cors(path string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.leave(path, "not a map")
		return
	}
	c.line(2, "cors {")
	for _, k := range sortedKeys(m) {
		switch k {
		case "endpoints":
			if vals := uniq(list(m[k])); len(vals) > 0 {
				c.line(3, "%s %s", k, quoteAll(vals))
			}
		case "allowed_origins":
			var origins []string
			for _, o := range uniq(list(m[k])) {
				switch trimmed := strings.TrimSuffix(o, "/"); {
				case o == "*":
					c.leave(path+"."+k, "* is refused: Portcullis answers only origins it is given; list each application's origin, or set allowed_origins_from_client_redirect_uris")
				case strings.Count(trimmed, "/") != 2:
					c.leave(path+"."+k, fmt.Sprintf("%q is not an origin (scheme://host[:port], no path)", o))
				default:
					origins = append(origins, trimmed)
				}
			}
			if len(origins) > 0 {
				c.line(3, "%s %s", k, quoteAll(origins))
			}
		case "allowed_origins_from_client_redirect_uris":
			if b, _ := m[k].(bool); b {
				c.line(3, "%s", k)
			}
		default:
			c.leave(path+"."+k, "not carried over by the import")
		}
	}
	c.line(2, "}")
}

func (c *converter) lifespans(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	c.line(2, "lifespans {")
	for _, k := range sortedKeys(m) {
		switch {
		case slices.Contains(lifespanKeys, k):
			c.line(3, "%s %s", k, duration(m[k]))
		case k == "custom":
			custom, _ := m[k].(map[string]any)
			for _, name := range sortedKeys(custom) {
				set, _ := custom[name].(map[string]any)
				c.line(3, "custom %s {", quote(name))
				for _, sk := range sortedKeys(set) {
					if slices.Contains(lifespanKeys, sk) {
						c.line(4, "%s %s", sk, duration(set[sk]))
					} else {
						c.leave("identity_providers.oidc.lifespans.custom."+name+"."+sk, "not a lifespan Portcullis has")
					}
				}
				c.line(3, "}")
			}
		default:
			c.leave("identity_providers.oidc.lifespans."+k, "not a lifespan Portcullis has")
		}
	}
	c.line(2, "}")
}

// duration is an Authelia duration as a Caddy one: a number of seconds becomes "<n>s"; Authelia's
// unit words ("1 hour", "1h30m") are normalised where Go reads them.
func duration(v any) string {
	s := strings.TrimSpace(str(v))
	if _, err := strconv.Atoi(s); err == nil {
		return s + "s"
	}
	r := strings.NewReplacer(" ", "", "hours", "h", "hour", "h", "minutes", "m", "minute", "m", "seconds", "s", "second", "s", "days", "d", "day", "d",
		"weeks", "w", "week", "w", "months", "M", "month", "M", "years", "y", "year", "y")
	s = r.Replace(s)
	for unit, hours := range map[string]int{"d": 24, "w": 7 * 24, "M": 30 * 24, "y": 365 * 24} {
		if n, rest, ok := strings.Cut(s, unit); ok && rest == "" {
			if count, err := strconv.Atoi(n); err == nil {
				return strconv.Itoa(hours*count) + "h"
			}
		}
	}
	return quote(s)
}

// clientKeys are the client options the import carries over, with their Caddyfile names; the
// others are left over.
var clientKeys = map[string]string{
	"client_name":                           "name",
	"client_secret":                         "secret",
	"public":                                "public",
	"scopes":                                "scopes",
	"audience":                              "audience",
	"grant_types":                           "grant_types",
	"requested_audience_mode":               "requested_audience_mode",
	"token_endpoint_auth_method":            "token_endpoint_auth_method",
	"lifespan":                              "lifespan",
	"redirect_uris":                         "redirect_uris",
	"post_logout_redirect_uris":             "post_logout_redirect_uris",
	"response_types":                        "response_types",
	"response_modes":                        "response_modes",
	"authorization_policy":                  "authorization_policy",
	"consent_mode":                          "consent_mode",
	"pre_configured_consent_duration":       "pre_configured_consent_duration",
	"require_pushed_authorization_requests": "require_pushed_authorization_requests",
	"require_pkce":                          "require_pkce",
	"pkce_challenge_method":                 "pkce_challenge_method",
	"id_token_signed_response_alg":          "id_token_signed_response_alg",
	"id_token_signed_response_key_id":       "id_token_signed_response_key_id",
	"userinfo_signed_response_alg":          "userinfo_signed_response_alg",
	"userinfo_signed_response_key_id":       "userinfo_signed_response_key_id",
	"sector_identifier_uri":                 "sector_identifier_uri",
	"claims_policy":                         "claims_policy",
	"access_token_signed_response_alg":      "access_token_signed_response_alg",
	"access_token_signed_response_key_id":   "access_token_signed_response_key_id",
	"introspection_signed_response_alg":     "introspection_signed_response_alg",
	"authorization_signed_response_alg":     "authorization_signed_response_alg",
	"token_endpoint_auth_signing_alg":       "token_endpoint_auth_signing_alg",
	"jwks_uri":                              "jwks_uri",
	"request_object_signing_alg":            "request_object_signing_alg",
	"authorization_signed_response_key_id":  "authorization_signed_response_key_id",
	"introspection_signed_response_key_id":  "introspection_signed_response_key_id",
	"backchannel_logout_uri":                "backchannel_logout_uri",
	"backchannel_logout_session_required":   "backchannel_logout_session_required",
}

// pendingClientKeys are Authelia's client options Portcullis does not take yet, and why.
var pendingClientKeys = map[string]string{
	"request_uris":                "request objects by reference (request_uri) are not available; send them by value (request)",
	"allow_multiple_auth_methods": "not available yet; a client authenticates one way per request",
}

// unsignedDefaults are client options whose value "none" is what Portcullis does by default: a
// plain authorization response, opaque access tokens, JSON introspection.
var unsignedDefaults = []string{"authorization_signed_response_alg", "access_token_signed_response_alg", "introspection_signed_response_alg"}

// legacyClientKeys are Authelia 4.30's client keys and their current names.
var legacyClientKeys = map[string]string{"id": "client_id", "description": "client_name", "secret": "client_secret",
	"sector_identifier": "sector_identifier_uri", "userinfo_signing_algorithm": "userinfo_signed_response_alg"}

func (c *converter) client(path string, m map[string]any) {
	for old, k := range legacyClientKeys {
		if v, ok := m[old]; ok {
			if _, set := m[k]; !set {
				m[k] = v
			}
			delete(m, old)
		}
	}
	id := str(m["client_id"])
	if id == "" {
		c.leave(path+".client_id", "a client without an id")
		return
	}
	if g, ok := m["grant_types"]; ok {
		const deviceCode = "urn:ietf:params:oauth:grant-type:device_code"
		kept := uniq(list(g))
		if slices.Contains(kept, "refresh_token") && !slices.Contains(kept, "authorization_code") && !slices.Contains(kept, deviceCode) {
			c.notNeeded(path+".grant_types", fmt.Sprintf("client %s: refresh_token without authorization_code or the device code grant never issues a refresh token (Authelia only warns); the grant is left out", id))
			kept = slices.DeleteFunc(kept, func(g string) bool { return g == "refresh_token" })
		}
		if len(kept) == 0 {
			c.leave(path, fmt.Sprintf("client %s has no grant Portcullis serves; left out", id))
			c.dropped[id] = true
			return
		}
		m["grant_types"] = toAny(kept)
	}
	if d, ok := m["pre_configured_consent_duration"]; ok && str(d) != "" {
		if mode := str(m["consent_mode"]); mode == "explicit" || mode == "implicit" {
			c.notNeeded(path+".pre_configured_consent_duration", fmt.Sprintf("client %s: consent_mode %s ignores it (Portcullis refuses the pair)", id, mode))
			delete(m, "pre_configured_consent_duration")
		}
	}
	c.clients[id] = slices.Contains(list(m["grant_types"]), "client_credentials")
	c.line(2, "client %s {", quote(id))
	for _, k := range sortedKeys(m) {
		if k == "client_id" {
			continue
		}
		v := m[k]
		opt, ok := clientKeys[k]
		switch {
		case slices.Contains(unsignedDefaults, k) && (str(v) == "none" || str(v) == ""):
			c.notNeeded(path+"."+k, "none is what Portcullis does (client "+id+")")
			continue
		case !isList(v) && str(v) == "":
			c.notNeeded(path+"."+k, "empty (client "+id+")")
			continue
		case k == "token_endpoint_auth_signing_alg" && !strings.HasSuffix(str(m["token_endpoint_auth_method"]), "_jwt"):
			c.notNeeded(path+"."+k, "only client_secret_jwt and private_key_jwt use it (client "+id+")")
			continue
		case k == "request_object_signing_alg" && len(asList(m["jwks"])) == 0 && str(m["jwks_uri"]) == "":
			c.notNeeded(path+"."+k, "request objects are verified with the client's keys, and it has none (jwks, jwks_uri); without keys it sends none (client "+id+")")
			continue
		case k == "jwks":
			c.clientKeys(path+"."+k, id, v)
			continue
		case !ok && pendingClientKeys[k] != "":
			c.leave(path+"."+k, pendingClientKeys[k]+" (client "+id+")")
			continue
		case !ok:
			c.leave(path+"."+k, "not carried over by the import (client "+id+")")
			continue
		}
		switch {
		case isList(v):
			vals := uniq(list(v))
			if len(vals) == 0 {
				continue // an empty list is the default
			}
			c.line(3, "%s %s", opt, quoteAll(vals))
		case str(v) == "":
			continue // an empty value is the default
		case k == "pre_configured_consent_duration":
			c.line(3, "%s %s", opt, duration(v))
		default:
			c.line(3, "%s %s", opt, quote(str(v)))
		}
	}
	c.line(2, "}")
}

// clientKeys carries over a client's jwks list as public_key blocks, each key's PEM inline as a
// heredoc.
func (c *converter) clientKeys(path, id string, v any) {
	for i, e := range asList(v) {
		m, ok := e.(map[string]any)
		if !ok {
			c.leave(fmt.Sprintf("%s[%d]", path, i), "not a key map (client "+id+")")
			continue
		}
		kid, pemText := str(m["key_id"]), strings.TrimSpace(str(m["key"]))
		if pemText == "" {
			pemText = strings.TrimSpace(str(m["certificate_chain"]))
		}
		if kid == "" || pemText == "" || strings.Contains(pemText, "{{") {
			c.leave(fmt.Sprintf("%s[%d]", path, i), "a key needs its key_id and its PEM key or certificate written out (a template is not read); add it as public_key <key_id> { algorithm …; key_file … } (client "+id+")")
			continue
		}
		c.line(3, "public_key %s {", quote(kid))
		for _, k := range []string{"algorithm", "use"} {
			if s := str(m[k]); s != "" {
				c.line(4, "%s %s", k, quote(s))
			}
		}
		c.line(4, "key <<PEM")
		for _, l := range strings.Split(pemText, "\n") {
			c.line(4, "%s", strings.TrimSpace(l))
		}
		c.line(4, "PEM")
		c.line(3, "}")
	}
}

// authorizationPolicies carries over Authelia's authorization_policies as authorization_policy
// blocks.
func (c *converter) authorizationPolicies(path string, v any) {
	policies, _ := v.(map[string]any)
	for _, name := range sortedKeys(policies) {
		p, ok := policies[name].(map[string]any)
		if !ok {
			c.leave(path+"."+name, "not a policy map")
			continue
		}
		c.line(2, "authorization_policy %s {", quote(name))
		for _, k := range sortedKeys(p) {
			switch k {
			case "default_policy":
				c.line(3, "default_policy %s", quote(str(p[k])))
			case "rules":
			default:
				c.leave(path+"."+name+"."+k, "not carried over by the import")
			}
		}
		for i, r := range asList(p["rules"]) {
			rm, ok := r.(map[string]any)
			if !ok {
				c.leave(fmt.Sprintf("%s.%s.rules[%d]", path, name, i), "not a rule map")
				continue
			}
			c.line(3, "rule {")
			for _, k := range sortedKeys(rm) {
				switch k {
				case "subject":
					for _, alt := range subjects(rm[k]) {
						c.line(4, "subject %s", quoteAll(alt))
					}
				case "networks":
					c.line(4, "networks %s", quoteAll(list(rm[k])))
				case "policy":
					c.line(4, "policy %s", quote(str(rm[k])))
				default:
					c.leave(fmt.Sprintf("%s.%s.rules[%d].%s", path, name, i, k), "not a criterion of an authorization policy rule (subject, networks)")
				}
			}
			c.line(3, "}")
		}
		c.line(2, "}")
	}
}

// claimsPolicies carries over the id_token lists of Authelia's claims_policies.
func (c *converter) claimsPolicies(path string, v any) {
	policies, _ := v.(map[string]any)
	for _, name := range sortedKeys(policies) {
		p, _ := policies[name].(map[string]any)
		c.line(2, "claims_policy %s {", quote(name))
		for _, k := range sortedKeys(p) {
			switch k {
			case "id_token":
				if claims := uniq(list(p[k])); len(claims) > 0 {
					c.line(3, "id_token %s", quoteAll(claims))
				}
			default:
				c.leave(path+"."+name+"."+k, "Portcullis's claims policies choose the ID token's claims only; custom claims and the access token's and introspection's claims are not available yet")
			}
		}
		c.line(2, "}")
	}
}

func isList(v any) bool { _, ok := v.([]any); return ok }

// uniq drops repeated values, keeping the first of each.
func uniq(l []string) []string {
	out := l[:0:0]
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func toAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func (c *converter) accessControl(ac map[string]any, netDefs map[string]any) {
	c.line(2, "access_control {")
	if p := str(ac["default_policy"]); p != "" {
		c.line(3, "default_policy %s", quote(p))
	}
	for _, name := range sortedKeys(netDefs) {
		cidrs := list(netDefs[name])
		if len(cidrs) == 0 {
			c.leave("definitions.network."+name, "a network needs at least one CIDR or address")
			continue
		}
		c.line(3, "network %s %s", quote(name), quoteAll(cidrs))
	}
	if nets, ok := ac["networks"].([]any); ok {
		for i, n := range nets {
			name, cidrs := str(dig(n, "name")), list(dig(n, "networks"))
			if name == "" || len(cidrs) == 0 {
				c.leave(fmt.Sprintf("access_control.networks[%d]", i), "a network needs a name and networks")
				continue
			}
			c.line(3, "network %s %s", quote(name), quoteAll(cidrs))
		}
	}
	for _, k := range sortedKeys(ac) {
		if k != "default_policy" && k != "networks" && k != "rules" {
			c.leave("access_control."+k, "not carried over by the import")
		}
	}
	rules, _ := ac["rules"].([]any)
	for i, r := range rules {
		m, ok := r.(map[string]any)
		if !ok {
			c.leave(fmt.Sprintf("access_control.rules[%d]", i), "not a rule map")
			continue
		}
		c.rule(fmt.Sprintf("access_control.rules[%d]", i), m)
	}
	c.line(2, "}")
}

func (c *converter) rule(path string, m map[string]any) {
	var body []string
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch k {
		case "domain", "domain_regex", "resources", "methods", "networks":
			body = append(body, k+" "+quoteAll(list(v)))
		case "policy":
		case "subject":
			for _, alt := range subjects(v) {
				why, lost := "", false
				for _, s := range alt {
					id, ok := strings.CutPrefix(s, "oauth2:client:")
					if !ok {
						continue
					}
					switch cc, carried := c.clients[id]; {
					case !carried:
						why, lost = "names a client that was left out", true
					case !cc && !lost:
						why = "names client " + id + ", which has no client_credentials grant: only client_credentials tokens carry an oauth2:client subject, so it never matched"
					}
				}
				if why != "" {
					msg := fmt.Sprintf("%s %s; that alternative is dropped", strings.Join(alt, " "), why)
					if lost {
						c.leave(path+".subject", msg)
					} else {
						c.notNeeded(path+".subject", msg)
					}
					continue
				}
				body = append(body, "subject "+quoteAll(alt))
			}
		case "query":
			for _, alt := range asList(v) {
				var conds []string
				for _, cond := range asList(alt) {
					key, op, val := str(dig(cond, "key")), str(dig(cond, "operator")), str(dig(cond, "value"))
					if _, isMap := dig(cond, "value").(map[string]any); isMap {
						val = ""
					}
					parts := []string{quote(key)}
					if op != "" {
						parts = append(parts, quote(op))
					}
					if val != "" {
						parts = append(parts, quote(val))
					}
					conds = append(conds, strings.Join(parts, " "))
				}
				switch len(conds) {
				case 0:
				case 1:
					body = append(body, "query "+conds[0])
				default:
					body = append(body, "query {\n\t\t\t\t\t"+strings.Join(conds, "\n\t\t\t\t\t")+"\n\t\t\t\t}")
				}
			}
		default:
			c.leave(path+"."+k, "not a rule criterion Portcullis has")
		}
	}
	if hasSubjectKey(m) && !slices.ContainsFunc(body, func(s string) bool { return strings.HasPrefix(s, "subject ") }) {
		c.leave(path, "every subject alternative was dropped; the rule is left out")
		return
	}
	c.line(3, "rule {")
	for _, b := range body {
		c.line(4, "%s", b)
	}
	c.line(4, "policy %s", quote(str(m["policy"])))
	c.line(3, "}")
}

func hasSubjectKey(m map[string]any) bool { _, ok := m["subject"]; return ok }

// subjects reads Authelia's subject forms: "a", ["a", "b"] (alternatives), [["a", "b"], "c"].
func subjects(v any) [][]string {
	switch x := v.(type) {
	case string:
		return [][]string{{x}}
	case []any:
		var out [][]string
		for _, e := range x {
			out = append(out, list(e))
		}
		return out
	}
	return nil
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return nil
}

// siteDomains lists the domains of the rules that can be Caddy site addresses: exact names and
// *.wildcards (not {user}/{group} labels or regular expressions), each once, in rule order.
func (c *converter) siteDomains(ac map[string]any) []string {
	var out []string
	rules, _ := ac["rules"].([]any)
	for _, r := range rules {
		for _, d := range list(dig(r, "domain")) {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			if d == "" || strings.ContainsAny(d, "{}") || slices.Contains(out, d) {
				continue
			}
			out = append(out, d)
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// people carries over who signs in and how: the users file (Portcullis reads Authelia's format,
// for the sign-in portal and Basic credentials alike), the session block, the second factors
// (totp, webauthn) and the regulation.
func (c *converter) people(root map[string]any) {
	if ab, ok := root["authentication_backend"].(map[string]any); ok {
		_, hasLDAP := ab["ldap"].(map[string]any)
		for _, k := range sortedKeys(ab) {
			switch {
			case k == "file":
			case k == "ldap" && hasLDAP:
				c.ldap(ab[k].(map[string]any), ab["refresh_interval"])
			case k == "refresh_interval" && hasLDAP:
				// carried over as the ldap block's cache_ttl
			case k == "refresh_interval":
				c.notNeeded("authentication_backend."+k, "Portcullis re-reads the users file when it changes")
			case k == "password_reset":
				c.passwordReset(ab[k])
			default:
				c.leave("authentication_backend."+k, "not carried over by the import")
			}
		}
		if file, ok := ab["file"].(map[string]any); ok {
			for _, k := range sortedKeys(file) {
				switch k {
				case "path":
					c.line(2, "users_file %s", quote(str(file[k])))
				case "watch":
					c.notNeeded("authentication_backend.file.watch", "Portcullis always re-reads the users file when it changes")
				case "password":
					c.notNeeded("authentication_backend.file.password", "the digest settings for new passwords are caddy oidc hash's flags")
				default:
					c.leave("authentication_backend.file."+k, "not carried over by the import")
				}
			}
		}
	}
	c.notifier(root)
	c.identityValidation(root)
	c.session(root)
	c.secondFactors(root)
	reg, ok := root["regulation"].(map[string]any)
	if !ok {
		return
	}
	c.line(2, "regulation {")
	for _, k := range sortedKeys(reg) {
		switch k {
		case "max_retries":
			c.line(3, "max_retries %s", quote(str(reg[k])))
		case "find_time", "ban_time":
			c.line(3, "%s %s", k, duration(reg[k]))
		case "modes":
			c.notNeeded("regulation.modes", "Portcullis always counts per (user, address) and per address")
		default:
			c.leave("regulation."+k, "not carried over by the import")
		}
	}
	c.line(2, "}")
}

// session carries over Authelia's session block: the first cookie's domain, its default
// redirection URL, and the lifetimes (a cookie's own values over the block's).
func (c *converter) session(root map[string]any) {
	sess, ok := root["session"].(map[string]any)
	if !ok {
		return
	}
	opts := map[string]string{}
	set := func(path, key string, v any) {
		switch key {
		case "expiration", "inactivity":
			opts[key] = duration(v)
		case "remember_me":
			if d := str(v); d == "-1" || d == "-1s" {
				opts[key] = "-1"
			} else {
				opts[key] = duration(v)
			}
		case "name":
			opts[key] = quote(str(v))
		case "same_site":
			if ss := strings.ToLower(str(v)); ss == "lax" || ss == "strict" {
				opts[key] = ss
			} else {
				c.leave(path, "Portcullis's session cookie is SameSite lax or strict")
			}
		case "domain":
			opts["cookie_domain"] = quote(str(v))
		case "default_redirection_url":
			opts[key] = quote(str(v))
		case "secret", "redis", "authelia_url":
			c.notNeeded(path, "Portcullis keeps sessions in its own store under random ids, and takes the portal's URL from the issuer")
		default:
			c.leave(path, "not carried over by the import")
		}
	}
	for _, k := range sortedKeys(sess) {
		if k != "cookies" {
			set("session."+k, k, sess[k])
		}
	}
	cookies, _ := sess["cookies"].([]any)
	for i, ck := range cookies {
		m, _ := ck.(map[string]any)
		if i > 0 {
			c.leave(fmt.Sprintf("session.cookies[%d]", i), "Portcullis serves one cookie domain per provider; the portal is on "+str(dig(cookies[0], "domain")))
			continue
		}
		for _, k := range sortedKeys(m) {
			set(fmt.Sprintf("session.cookies[%d].%s", i, k), k, m[k])
		}
	}
	c.line(2, "session {")
	for _, k := range []string{"name", "cookie_domain", "same_site", "expiration", "inactivity", "remember_me", "default_redirection_url"} {
		if v, ok := opts[k]; ok {
			c.line(3, "%s %s", k, v)
		}
	}
	c.line(2, "}")
}

// secondFactors carries over the totp and webauthn blocks.
func (c *converter) secondFactors(root map[string]any) {
	if t, ok := root["totp"].(map[string]any); ok {
		c.line(2, "totp {")
		for _, k := range sortedKeys(t) {
			switch k {
			case "disable":
				if str(t[k]) == "true" {
					c.line(3, "disable")
				}
			case "issuer", "algorithm":
				c.line(3, "%s %s", k, quote(str(t[k])))
			case "digits", "skew", "secret_size":
				c.line(3, "%s %s", k, quote(str(t[k])))
			case "period":
				c.line(3, "period %s", duration(t[k]))
			case "allowed_algorithms", "allowed_digits", "allowed_periods":
				c.notNeeded("totp."+k, "people enrol with the configured algorithm, digits and period, and devices keep their own")
			default:
				c.leave("totp."+k, "not carried over by the import")
			}
		}
		c.line(2, "}")
	}
	if w, ok := root["webauthn"].(map[string]any); ok {
		c.line(2, "webauthn {")
		for _, k := range sortedKeys(w) {
			switch k {
			case "disable":
				if str(w[k]) == "true" {
					c.line(3, "disable")
				}
			case "display_name":
				c.line(3, "display_name %s", quote(str(w[k])))
			case "timeout":
				c.line(3, "timeout %s", duration(w[k]))
			case "user_verification":
				c.line(3, "user_verification %s", quote(str(w[k])))
			case "selection_criteria":
				sc, _ := w[k].(map[string]any)
				for _, sk := range sortedKeys(sc) {
					if sk == "user_verification" {
						c.line(3, "user_verification %s", quote(str(sc[sk])))
					} else {
						c.leave("webauthn.selection_criteria."+sk, "not carried over by the import")
					}
				}
			default:
				c.leave("webauthn."+k, "not carried over by the import")
			}
		}
		c.line(2, "}")
	}
}

// ldapPasswordEnv is the environment variable the imported ldap block reads the service
// account's password from, when Authelia's configuration does not say where its secret file is.
const ldapPasswordEnv = "PORTCULLIS_LDAP_PASSWORD"

// ldapKeys are the keys of authentication_backend.ldap the ldap block takes as they are, in the
// order written.
var ldapKeys = []string{"implementation", "address", "start_tls", "timeout", "base_dn", "additional_users_dn", "users_filter",
	"additional_groups_dn", "groups_filter", "group_search_mode", "user"}

// ldapAttributeKeys are the keys of attributes the ldap block takes, in the order written.
var ldapAttributeKeys = []string{"distinguished_name", "username", "display_name", "mail", "member_of", "group_name",
	"given_name", "family_name", "middle_name", "nickname", "gender", "birthdate", "website", "profile", "picture",
	"zoneinfo", "locale", "phone_number", "phone_extension", "street_address", "locality", "region", "postal_code", "country"}

// legacyLDAPKeys are the keys of Authelia before 4.38 and their current names.
var legacyLDAPKeys = map[string]string{"url": "address", "username_attribute": "attributes.username",
	"mail_attribute": "attributes.mail", "display_name_attribute": "attributes.display_name",
	"group_name_attribute": "attributes.group_name", "distinguished_name_attribute": "attributes.distinguished_name",
	"member_of_attribute": "attributes.member_of"}

// ldap writes the ldap block from authentication_backend.ldap, with refresh_interval as its
// cache_ttl. The password is never written into the Caddyfile: a password in Authelia's file
// becomes {env.PORTCULLIS_LDAP_PASSWORD} (and a leftover says to set it), a secret file named by
// Authelia's template becomes {file.<path>}.
func (c *converter) ldap(l map[string]any, refresh any) {
	const base = "authentication_backend.ldap"
	attrs, _ := l["attributes"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	for old, k := range legacyLDAPKeys {
		v, ok := l[old]
		if !ok {
			continue
		}
		delete(l, old)
		if a, isAttr := strings.CutPrefix(k, "attributes."); isAttr {
			if _, set := attrs[a]; !set {
				attrs[a] = v
			}
		} else if _, set := l[k]; !set {
			l[k] = v
		}
	}
	c.line(2, "ldap {")
	for _, k := range ldapKeys {
		v, ok := l[k]
		if !ok || str(v) == "" {
			continue
		}
		switch k {
		case "address":
			c.line(3, "address %s", quote(ldapAddress(str(v))))
		case "timeout":
			c.line(3, "timeout %s", duration(v))
		case "start_tls":
			if str(v) == "true" {
				c.line(3, "start_tls")
			}
		default:
			c.line(3, "%s %s", k, quote(str(v)))
		}
	}
	c.passwordLine(3, base, l, ldapPasswordEnv, "AUTHELIA_AUTHENTICATION_BACKEND_LDAP_PASSWORD")
	if tls, ok := l["tls"].(map[string]any); ok {
		c.tlsBlock(base+".tls", tls, 3, "the directory", true)
		if c.certDir != "" {
			c.leave(base+".tls", "Authelia also trusted the certificates in certificates_directory ("+c.certDir+"): if one of them signed the directory's certificate, add 'ca_file <that PEM file>' to the tls block")
		}
	}
	if len(attrs) > 0 {
		c.line(3, "attributes {")
		for _, k := range ldapAttributeKeys {
			if v := str(attrs[k]); v != "" {
				c.line(4, "%s %s", k, quote(v))
			}
		}
		c.line(3, "}")
		for _, k := range sortedKeys(attrs) {
			if !slices.Contains(ldapAttributeKeys, k) {
				c.leave(base+".attributes."+k, "Portcullis reads the username, display name, mail, groups and OpenID Connect profile attributes only")
			}
		}
	}
	if p, ok := l["pooling"].(map[string]any); ok {
		c.line(3, "pooling {")
		for _, k := range sortedKeys(p) {
			switch k {
			case "enable":
				if str(p[k]) == "true" {
					c.line(4, "enable")
				}
			case "count", "retries":
				c.line(4, "%s %s", k, quote(str(p[k])))
			case "timeout":
				c.line(4, "timeout %s", duration(p[k]))
			default:
				c.leave(base+".pooling."+k, "not carried over by the import")
			}
		}
		c.line(3, "}")
	}
	switch r := strings.TrimSpace(str(refresh)); r {
	case "":
		c.notNeeded("authentication_backend.refresh_interval", "unset: Authelia refreshed a user's groups and state every 5 minutes; Portcullis asks the directory again after cache_ttl, 30s by default")
	case "always":
		c.line(3, "cache_ttl 1s")
		c.notNeeded("authentication_backend.refresh_interval", "always: Portcullis asks the directory again after cache_ttl, set to 1s")
	case "disable":
		c.leave("authentication_backend.refresh_interval", "disable: Portcullis always asks the directory again after cache_ttl (30s by default), so a change there is seen")
	default:
		c.line(3, "cache_ttl %s", duration(refresh))
	}
	for _, k := range sortedKeys(l) {
		switch {
		case slices.Contains(ldapKeys, k), k == "password", k == "tls", k == "attributes", k == "pooling":
		case k == "permit_referrals":
			if str(l[k]) == "true" {
				c.leave(base+"."+k, "Portcullis follows no referrals: point address at a server that holds the users (for a password reset, a writable one)")
			} else {
				c.notNeeded(base+"."+k, "false is what Portcullis does")
			}
		case k == "permit_feature_detection_failure":
			c.notNeeded(base+"."+k, "Portcullis reads no RootDSE: it asks for the password-modify operation only when setting a password")
		case k == "permit_unauthenticated_bind":
			if str(l[k]) == "true" {
				c.leave(base+"."+k, "Portcullis binds as a service account only: set user and password")
			} else {
				c.notNeeded(base+"."+k, "false is what Portcullis does")
			}
		default:
			c.leave(base+"."+k, "not carried over by the import")
		}
	}
	c.line(2, "}")
}

// ldapAddress gives Authelia's address a scheme where it has none: ldapi for an absolute path,
// else ldaps, as Authelia does.
func ldapAddress(a string) string {
	switch {
	case strings.Contains(a, "://"):
		return a
	case strings.HasPrefix(a, "/"):
		return "ldapi://" + url.PathEscape(a)
	}
	return "ldaps://" + a
}

// tlsBlock writes the tls block of ldap or of the notifier's smtp at depth; peer names the
// server in the reasons. Authelia gives the client certificate and key inline (PEM) or through
// its secret template; Portcullis reads them from files, where it takes one (clientCert).
func (c *converter) tlsBlock(path string, tls map[string]any, depth int, peer string, clientCert bool) {
	c.line(depth, "tls {")
	for _, k := range sortedKeys(tls) {
		switch k {
		case "server_name":
			c.line(depth+1, "server_name %s", quote(str(tls[k])))
		case "skip_verify":
			if str(tls[k]) == "true" {
				c.line(depth+1, "skip_verify")
			}
		case "minimum_version", "maximum_version":
			switch v := strings.ToUpper(strings.TrimSpace(str(tls[k]))); v {
			case "TLS1.2", "TLS1.3":
				c.line(depth+1, "%s %s", k, v)
			default:
				c.leave(path+"."+k, "Portcullis speaks TLS 1.2 or 1.3 to "+peer+": the output keeps the default")
			}
		case "certificate_chain", "private_key":
			if !clientCert {
				c.leave(path+"."+k, "Portcullis presents no client certificate to "+peer)
			} else if file, ok := secretFile(tls[k]); ok {
				c.line(depth+1, "%s %s", k, quote(file))
			} else {
				c.leave(path+"."+k, "Portcullis reads it from a PEM file: write it to a file (mode 0600 for the key) and add '"+k+" <file>' to the tls block")
			}
		default:
			c.leave(path+"."+k, "not carried over by the import")
		}
	}
	c.line(depth, "}")
}

// dbPasswordEnv is the environment variable the imported storage postgres block reads the
// database password from, when Authelia's configuration does not say where its secret file is.
const dbPasswordEnv = "PORTCULLIS_DB_PASSWORD"

// secretTemplate is Authelia's configuration template that reads a secret from a file:
// {{ secret "/path" }}, optionally piped through filters.
var secretTemplate = regexp.MustCompile(`^\{\{-?\s*secret\s+"([^"]+)"\s*(\|[^}]*)?-?\}\}$`)

// secretFile returns the file a value reads its secret from through Authelia's secret template.
func secretFile(v any) (string, bool) {
	m := secretTemplate.FindStringSubmatch(strings.TrimSpace(str(v)))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// storage carries over Authelia's storage block: storage.postgres becomes 'storage postgres
// { … }' with the same keys; local (SQLite) needs nothing (one node keeps the embedded store);
// mysql is left over. Authelia's records are never read.
func (c *converter) storage(root map[string]any) {
	st, ok := root["storage"].(map[string]any)
	if !ok {
		if _, set := root["storage"]; set {
			c.leave("storage", "not a map")
		}
		return
	}
	c.leave("storage", "Authelia's records (TOTP and WebAuthn devices, remembered consents, pending identity checks) are not read: people enrol their second factors and approve consents again")
	for _, k := range sortedKeys(st) {
		switch k {
		case "encryption_key":
			c.notNeeded("storage."+k, "it encrypts Authelia's own records, which Portcullis does not read")
		case "local":
			c.notNeeded("storage."+k, "one node keeps its state in Portcullis's embedded store (the default storage directory); for more than one node, use storage postgres")
		case "mysql":
			c.leave("storage."+k, "Portcullis shares its state between nodes through PostgreSQL only: the output keeps the embedded store, which serves one node; for more than one, add 'storage postgres { … }' (README: More than one node)")
		case "postgres":
			if pg, ok := st[k].(map[string]any); ok {
				c.postgres(pg)
			} else {
				c.leave("storage."+k, "not a map")
			}
		default:
			c.leave("storage."+k, "not carried over by the import")
		}
	}
}

// postgres writes the storage postgres block. The password is never written into the
// Caddyfile: a password in Authelia's file becomes {env.PORTCULLIS_DB_PASSWORD} (and a
// leftover says to set it), a secret file named by Authelia's template becomes {file.<path>}.
func (c *converter) postgres(pg map[string]any) {
	const base = "storage.postgres"
	c.line(2, "storage postgres {")
	address := str(pg["address"])
	if address == "" && str(pg["host"]) != "" {
		host, port := str(pg["host"]), str(pg["port"])
		switch {
		case strings.HasPrefix(host, "/"):
			address = "unix://" + host
		case port != "":
			address = "tcp://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
		default:
			address = "tcp://" + host
		}
	}
	switch {
	case address == "":
		c.line(3, "address tcp://127.0.0.1:5432")
		c.leave(base+".address", "no address given: the output uses tcp://127.0.0.1:5432; set the database server's")
	case strings.HasPrefix(address, "unix://"):
		c.line(3, "address %s", quote(address))
	default:
		// Authelia's scheme is optional (tcp by default) and may pin the IP version
		for _, scheme := range []string{"tcp4://", "tcp6://", "tcp://"} {
			address = strings.TrimPrefix(address, scheme)
		}
		c.line(3, "address %s", quote("tcp://"+address))
	}
	for _, k := range []string{"database", "schema", "username"} {
		if v := str(pg[k]); v != "" {
			c.line(3, "%s %s", k, quote(v))
		}
	}
	c.passwordLine(3, base, pg, dbPasswordEnv, "AUTHELIA_STORAGE_POSTGRES_PASSWORD")
	if v, ok := pg["timeout"]; ok {
		c.line(3, "timeout %s", duration(v))
	}
	if tls, ok := pg["tls"].(map[string]any); ok {
		c.postgresTLS(base+".tls", tls)
		if c.certDir != "" {
			c.leave(base+".tls", "Authelia also trusted the certificates in certificates_directory ("+c.certDir+"): if one of them signed the database's certificate, add 'ca_file <that PEM file>' to the tls block")
		}
	}
	for _, k := range sortedKeys(pg) {
		switch k {
		case "address", "host", "port", "database", "schema", "username", "password", "timeout", "tls":
		case "servers":
			c.leave(base+"."+k, "Portcullis connects to one server: give the address of the primary (or of a proxy or virtual address that follows it)")
		case "ssl":
			c.leave(base+"."+k, "Authelia's ssl block (before 4.36) is not carried over: write a tls block (server_name, ca_file, certificate_chain, private_key)")
		default:
			c.leave(base+"."+k, "not carried over by the import")
		}
	}
	c.line(2, "}")
}

// postgresTLS writes the tls block of storage postgres. Authelia gives the client certificate
// and key inline (PEM) or through its secret template; Portcullis reads them from files.
func (c *converter) postgresTLS(path string, tls map[string]any) {
	c.line(3, "tls {")
	for _, k := range sortedKeys(tls) {
		switch k {
		case "server_name":
			c.line(4, "server_name %s", quote(str(tls[k])))
		case "skip_verify":
			if str(tls[k]) == "true" {
				c.line(4, "skip_verify")
			}
		case "minimum_version":
			switch v := strings.ToUpper(strings.TrimSpace(str(tls[k]))); v {
			case "TLS1.2", "TLS1.3":
				c.line(4, "minimum_version %s", v)
			default:
				c.leave(path+"."+k, "Portcullis speaks TLS 1.2 or 1.3 to the database: the output keeps the default, TLS1.2")
			}
		case "maximum_version":
			c.notNeeded(path+"."+k, "Portcullis sets no maximum version: Go negotiates the highest both ends speak")
		case "certificate_chain", "private_key":
			if file, ok := secretFile(tls[k]); ok {
				c.line(4, "%s %s", k, quote(file))
			} else {
				c.leave(path+"."+k, "Portcullis reads it from a PEM file: write it to a file (mode 0600 for the key) and add '"+k+" <file>' to the tls block")
			}
		default:
			c.leave(path+"."+k, "not carried over by the import")
		}
	}
	c.line(3, "}")
}

// passwordReset carries over authentication_backend.password_reset: disable and custom_url.
func (c *converter) passwordReset(v any) {
	pr, ok := v.(map[string]any)
	if !ok {
		return
	}
	var lines []string
	for _, k := range sortedKeys(pr) {
		switch k {
		case "disable":
			if str(pr[k]) == "true" {
				lines = append(lines, "disable")
			}
		case "custom_url":
			if u := str(pr[k]); u != "" {
				lines = append(lines, "custom_url "+quote(u))
			}
		default:
			c.leave("authentication_backend.password_reset."+k, "not carried over by the import")
		}
	}
	if len(lines) == 0 {
		return
	}
	c.line(2, "password_reset {")
	for _, l := range lines {
		c.line(3, "%s", l)
	}
	c.line(2, "}")
}

// smtpPasswordEnv is the environment variable the imported notifier reads the SMTP password
// from, when Authelia's configuration does not say where its secret file is.
const smtpPasswordEnv = "PORTCULLIS_SMTP_PASSWORD"

// notifier carries over Authelia's notifier: filesystem or smtp, with its address (4.38's, or
// host and port before it), account, sender, subject, timeouts and TLS. The password is never
// copied: it is read from the environment or from Authelia's secret file.
func (c *converter) notifier(root map[string]any) {
	n, ok := root["notifier"].(map[string]any)
	if !ok {
		return
	}
	c.line(2, "notifier {")
	for _, k := range sortedKeys(n) {
		switch k {
		case "disable_startup_check":
			if str(n[k]) == "true" {
				c.line(3, "disable_startup_check")
			}
		case "filesystem":
			if f := str(dig(n, k, "filename")); f != "" {
				c.line(3, "filesystem %s", quote(f))
			}
		case "smtp":
			if s, ok := n[k].(map[string]any); ok {
				c.smtp(s)
			}
		case "template_path":
			c.leave("notifier."+k, "Portcullis's messages come from its own templates; not carried over")
		default:
			c.leave("notifier."+k, "not carried over by the import")
		}
	}
	c.line(2, "}")
}

func (c *converter) smtp(s map[string]any) {
	const base = "notifier.smtp"
	c.line(3, "smtp {")
	address := str(s["address"])
	if address == "" && str(s["host"]) != "" {
		// before 4.38: host and port, the scheme told by the port
		port := str(s["port"])
		if port == "" {
			port = "25"
		}
		scheme := "smtp"
		switch port {
		case "465":
			scheme = "submissions"
		case "587":
			scheme = "submission"
		}
		address = scheme + "://" + net.JoinHostPort(str(s["host"]), port)
	}
	if address != "" {
		if !strings.Contains(address, "://") {
			address = "smtp://" + address // Authelia's default scheme
		}
		c.line(4, "address %s", quote(address))
	}
	for _, k := range sortedKeys(s) {
		v := s[k]
		switch k {
		case "address", "host", "port", "password":
		case "username", "sender", "identifier", "subject":
			c.line(4, "%s %s", k, quote(str(v)))
		case "timeout":
			c.line(4, "timeout %s", duration(v))
		case "disable_require_tls", "disable_starttls", "disable_html_emails":
			if str(v) == "true" {
				c.line(4, "%s", k)
			}
		case "startup_check_address":
			c.notNeeded(base+"."+k, "Portcullis checks the server at start without sending a mail")
		case "tls":
			if tls, ok := v.(map[string]any); ok {
				c.tlsBlock(base+".tls", tls, 4, "the mail server", false)
			}
		default:
			c.leave(base+"."+k, "not carried over by the import")
		}
	}
	if _, hasUser := s["username"]; hasUser {
		c.passwordLine(4, base, s, smtpPasswordEnv, "AUTHELIA_NOTIFIER_SMTP_PASSWORD")
	}
	c.line(3, "}")
}

// identityValidation carries over identity_validation: the elevated session's keys and the
// reset link's lifespan (Portcullis's links are random tokens kept as digests, not JWTs).
func (c *converter) identityValidation(root map[string]any) {
	iv, ok := root["identity_validation"].(map[string]any)
	if !ok {
		return
	}
	var lines []string
	for _, k := range sortedKeys(iv) {
		switch k {
		case "elevated_session":
			es, _ := iv[k].(map[string]any)
			var inner []string
			for _, ek := range sortedKeys(es) {
				switch v := es[ek]; ek {
				case "code_lifespan", "elevation_lifespan":
					inner = append(inner, ek+" "+duration(v))
				case "characters":
					inner = append(inner, ek+" "+quote(str(v)))
				case "require_second_factor", "skip_second_factor":
					inner = append(inner, ek+" "+quote(str(v)))
				default:
					c.leave("identity_validation.elevated_session."+ek, "not carried over by the import")
				}
			}
			if len(inner) > 0 {
				lines = append(lines, "elevated_session {")
				for _, l := range inner {
					lines = append(lines, "\t"+l)
				}
				lines = append(lines, "}")
			}
		case "reset_password":
			rp, _ := iv[k].(map[string]any)
			for _, rk := range sortedKeys(rp) {
				switch rk {
				case "jwt_lifespan":
					lines = append(lines, "reset_password {", "\tjwt_lifespan "+duration(rp[rk]), "}")
				case "jwt_algorithm", "jwt_secret":
					c.notNeeded("identity_validation.reset_password."+rk, "Portcullis's reset links carry a random token kept as a digest, not a JWT")
				default:
					c.leave("identity_validation.reset_password."+rk, "not carried over by the import")
				}
			}
		default:
			c.leave("identity_validation."+k, "not carried over by the import")
		}
	}
	if len(lines) == 0 {
		return
	}
	c.line(2, "identity_validation {")
	for _, l := range lines {
		c.line(3, "%s", l)
	}
	c.line(2, "}")
}

// passwordLine writes the password of the section at base (ldap, storage postgres, the
// notifier's smtp) at depth, never the password itself: Authelia's secret file becomes
// {file.<file>}, anything else the environment variable env, and a leftover says which to set
// (Authelia itself read autheliaEnv or autheliaEnv_FILE when the section has no password).
func (c *converter) passwordLine(depth int, base string, section map[string]any, env, autheliaEnv string) {
	password := "{env." + env + "}"
	switch v, set := section["password"]; {
	case !set:
		c.leave(base+".password", "Authelia read the password from its environment ("+autheliaEnv+"_FILE or "+autheliaEnv+"): the output reads it from the environment variable "+env+"; set it, or write 'password {file.<the secret file>}'")
	default:
		if file, ok := secretFile(v); ok {
			password = "{file." + file + "}"
		} else {
			c.leave(base+".password", "the password is not copied into the Caddyfile: the output reads it from the environment variable "+env+"; set it there, or write it to a file only Caddy reads and use 'password {file.<that file>}'")
		}
	}
	c.line(depth, "password %s", password)
}
