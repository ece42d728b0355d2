package oidcprovider

import (
	"github.com/caddyserver/caddy/v2"
)

// Lifespans are how long each kind of token lives. A zero value takes the default.
type Lifespans struct {
	// AccessToken is the access token lifespan. JSON: "access_token"; default 1h.
	AccessToken caddy.Duration `json:"access_token,omitempty"`
	// AuthorizeCode is the authorization code lifespan. JSON: "authorize_code"; default 1m.
	AuthorizeCode caddy.Duration `json:"authorize_code,omitempty"`
	// IDToken is the ID token lifespan. JSON: "id_token"; default 1h.
	IDToken caddy.Duration `json:"id_token,omitempty"`
	// RefreshToken is the refresh token lifespan. JSON: "refresh_token"; default 90m.
	RefreshToken caddy.Duration `json:"refresh_token,omitempty"`
	// Custom holds named lifespan sets that a client selects with its "lifespan" option; a zero
	// value in a set falls back to the global one. JSON: "custom"; default none.
	Custom map[string]Lifespans `json:"custom,omitempty"`
}

// SigningKey is one key the provider signs with.
type SigningKey struct {
	// KeyID is the JWK "kid". JSON: "key_id"; default: the first 7 hex digits of the key's
	// SHA-256 JWK thumbprint, "-", and the lowercase algorithm (e.g. "3f2a9c1-rs256").
	KeyID string `json:"key_id,omitempty"`
	// Algorithm is the JWS algorithm: RS256/384/512, PS256/384/512 for RSA keys (at least 2048
	// bits), ES256/384/512 for EC keys of the matching curve. JSON: "algorithm"; default RS256 for
	// RSA keys and the curve's algorithm for EC keys.
	Algorithm string `json:"algorithm,omitempty"`
	// KeyFile is a PEM file holding the private key in PKCS#1, SEC 1 or PKCS#8 form.
	// JSON: "key_file"; required.
	KeyFile string `json:"key_file"`
}

// ClientConfig is one registered client. JSON names are Authelia's (seed 004).
type ClientConfig struct {
	// ID is the client identifier: 1 to 100 RFC 3986 unreserved characters, unique.
	// JSON: "client_id"; required.
	ID string `json:"client_id"`
	// Name is shown to people. JSON: "client_name"; default: the client id.
	Name string `json:"client_name,omitempty"`
	// Secret is the client secret as a go-crypt digest ($pbkdf2-sha512$…, $argon2id$…, $2b$…,
	// $scrypt$…, $6$…), "$plaintext$<secret>", or a bare secret (taken as plaintext, with a
	// warning). Placeholders {env.*} and {file.*} are resolved at start. JSON: "client_secret";
	// required for confidential clients, forbidden for public ones.
	Secret string `json:"client_secret,omitempty"`
	// Public marks a client that cannot keep a secret. JSON: "public"; default false.
	Public bool `json:"public,omitempty"`
	// Scopes the client may request. JSON: "scopes"; default none for client_credentials clients.
	Scopes []string `json:"scopes,omitempty"`
	// Audience lists the audiences the client may request (for the gateway, URLs of protected
	// sites). JSON: "audience"; default none.
	Audience []string `json:"audience,omitempty"`
	// GrantTypes the client may use. JSON: "grant_types"; default "authorization_code", which is
	// not available yet: set "client_credentials".
	GrantTypes []string `json:"grant_types,omitempty"`
	// RequestedAudienceMode is "explicit" (grant only the audiences asked for) or "implicit"
	// (grant the whole audience list when the request names none). JSON:
	// "requested_audience_mode"; default "explicit".
	RequestedAudienceMode string `json:"requested_audience_mode,omitempty"`
	// TokenEndpointAuthMethod is how the client authenticates: client_secret_basic,
	// client_secret_post, or none for public clients. A request using another method is refused.
	// JSON: "token_endpoint_auth_method"; default client_secret_basic (none for public clients).
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Lifespan names a set under lifespans.custom. JSON: "lifespan"; default: the global lifespans.
	Lifespan string `json:"lifespan,omitempty"`
}

// Default lifespans (Authelia's).
var defaultLifespans = Lifespans{
	AccessToken:   caddy.Duration(3600e9),
	AuthorizeCode: caddy.Duration(60e9),
	IDToken:       caddy.Duration(3600e9),
	RefreshToken:  caddy.Duration(5400e9),
}
