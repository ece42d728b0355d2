package clients

// Config is one registered client as configured (the oidc app's "clients" list). JSON names are
// Authelia's (seed 004).
type Config struct {
	// ID is the client identifier: 1 to 100 RFC 3986 unreserved characters, unique.
	// JSON: "client_id". Required.
	ID string `json:"client_id"`
	// Name is shown to people. JSON: "client_name". Default: the client id.
	Name string `json:"client_name,omitempty"`
	// Secret is the client secret as a go-crypt digest ($pbkdf2-sha512$…, $argon2id$…, $2b$…,
	// $scrypt$…, $6$…), "$plaintext$<secret>", or a bare secret (taken as plaintext, with a
	// warning). Placeholders {env.*} and {file.*} are resolved at start. JSON: "client_secret";
	// required for confidential clients, forbidden for public ones.
	Secret string `json:"client_secret,omitempty"`
	// Public marks a client that cannot keep a secret. JSON: "public". Default: false.
	Public bool `json:"public,omitempty"`
	// Scopes the client may request. JSON: "scopes". Default: none for client_credentials clients.
	Scopes []string `json:"scopes,omitempty"`
	// Audience lists the audiences the client may request (for the gateway, URLs of protected
	// sites). JSON: "audience". Default: none.
	Audience []string `json:"audience,omitempty"`
	// GrantTypes the client may use. JSON: "grant_types". Default: "authorization_code", which is
	// not available yet: set "client_credentials".
	GrantTypes []string `json:"grant_types,omitempty"`
	// RequestedAudienceMode is "explicit" (grant only the audiences asked for) or "implicit"
	// (grant the whole audience list when the request names none). JSON:
	// "requested_audience_mode". Default: "explicit".
	RequestedAudienceMode string `json:"requested_audience_mode,omitempty"`
	// TokenEndpointAuthMethod is how the client authenticates: client_secret_basic,
	// client_secret_post, or none for public clients. A request using another method is refused.
	// JSON: "token_endpoint_auth_method". Default: client_secret_basic (none for public clients).
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Lifespan names a set under lifespans.custom. JSON: "lifespan". Default: the global lifespans.
	Lifespan string `json:"lifespan,omitempty"`
}
