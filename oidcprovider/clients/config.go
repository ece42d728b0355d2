package clients

import "github.com/portcullis-auth/portcullis/oidcprovider/duration"

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
	// Public marks a client that cannot keep a secret (a single-page or native app): it has no
	// secret, authenticates with "none" and must use PKCE. JSON: "public". Default: false.
	Public bool `json:"public,omitempty"`
	// Scopes the client may request. JSON: "scopes". Default: openid, groups, profile and email
	// for a client that signs people in; none for a client_credentials client.
	Scopes []string `json:"scopes,omitempty"`
	// Audience lists the audiences the client may request (for the gateway, URLs of protected
	// sites). JSON: "audience". Default: none.
	Audience []string `json:"audience,omitempty"`
	// GrantTypes the client may use: authorization_code, refresh_token, implicit,
	// client_credentials (device_code is not available yet). JSON: "grant_types". Default:
	// derived from response_types: authorization_code for the default response type "code",
	// implicit for implicit types, both for hybrid types.
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
	// RedirectURIs are the exact callback URIs the authorization endpoint may send the browser
	// back to: absolute, without a fragment, http or https (a public client may also use a
	// custom scheme, for native apps). JSON: "redirect_uris". Default: none; a client with the
	// authorization_code or implicit grant needs at least one.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// PostLogoutRedirectURIs are the exact URIs RP-initiated logout may send the browser to
	// afterwards (post_logout_redirect_uri), checked as redirect_uris are. Beyond Authelia.
	// JSON: "post_logout_redirect_uris". Default: none (logout ends at the portal).
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	// ResponseTypes the client may ask the authorization endpoint for: "code", "id_token",
	// "token", "id_token token", "code id_token", "code token", "code id_token token" (the words
	// in any order). Implicit types need the implicit grant, hybrid types both authorization_code
	// and implicit. JSON: "response_types". Default: "code" for a client with the
	// authorization_code grant; none for a client that never uses the authorization endpoint.
	ResponseTypes []string `json:"response_types,omitempty"`
	// ResponseModes the client may ask for: query, form_post, fragment. query cannot carry
	// tokens, so it needs the "code" response type. JSON: "response_modes". Default: form_post,
	// plus query when response_types has "code", plus fragment when it has an implicit or hybrid
	// type.
	ResponseModes []string `json:"response_modes,omitempty"`
	// AuthorizationPolicy is who may sign in to the client: one_factor, two_factor, or the name
	// of one of the provider's authorization_policies. JSON: "authorization_policy". Default:
	// two_factor (one_factor for a client whose only grant is client_credentials).
	AuthorizationPolicy string `json:"authorization_policy,omitempty"`
	// ConsentMode is how people consent: "explicit" (asked every time), "implicit" (never
	// asked), "pre-configured" (asked, and the answer may be remembered for
	// pre_configured_consent_duration) or "auto". JSON: "consent_mode". Default: auto, which is
	// pre-configured when pre_configured_consent_duration is set and explicit otherwise.
	ConsentMode string `json:"consent_mode,omitempty"`
	// PreConfiguredConsentDuration is how long a remembered consent lasts under the
	// pre-configured mode. JSON: "pre_configured_consent_duration", an integer of nanoseconds or
	// a string such as "168h", "7d" or "1w". Default: 1 week when the mode is pre-configured.
	PreConfiguredConsentDuration duration.Duration `json:"pre_configured_consent_duration,omitempty"`
	// RequirePushedAuthorizationRequests makes the client send every authorization request
	// through the pushed-authorization-request endpoint (RFC 9126) first. JSON:
	// "require_pushed_authorization_requests". Default: false (the provider's own option
	// requires it of every client).
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`
	// RequirePKCE makes the client send a PKCE code_challenge (RFC 7636) with every
	// authorization request. Public clients always must. JSON: "require_pkce". Default: false.
	RequirePKCE bool `json:"require_pkce,omitempty"`
	// PKCEChallengeMethod pins the PKCE method, "plain" or "S256", and implies require_pkce.
	// plain needs the provider's enable_pkce_plain_challenge. JSON: "pkce_challenge_method".
	// Default: "" (any method the provider allows).
	PKCEChallengeMethod string `json:"pkce_challenge_method,omitempty"`
	// IDTokenSignedResponseAlg is the JWS algorithm of the client's ID tokens; a signing key of
	// the provider must serve it. JSON: "id_token_signed_response_alg". Default: RS256, or the
	// algorithm of id_token_signed_response_key_id.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`
	// IDTokenSignedResponseKeyID names the signing_key that signs the client's ID tokens.
	// JSON: "id_token_signed_response_key_id". Default: the first key of the algorithm.
	IDTokenSignedResponseKeyID string `json:"id_token_signed_response_key_id,omitempty"`
	// UserinfoSignedResponseAlg is the JWS algorithm of signed userinfo responses, or "none" for
	// plain JSON. JSON: "userinfo_signed_response_alg". Default: "none", or the algorithm of
	// userinfo_signed_response_key_id.
	UserinfoSignedResponseAlg string `json:"userinfo_signed_response_alg,omitempty"`
	// UserinfoSignedResponseKeyID names the signing_key that signs the client's userinfo
	// responses. JSON: "userinfo_signed_response_key_id". Default: the first key of the
	// algorithm.
	UserinfoSignedResponseKeyID string `json:"userinfo_signed_response_key_id,omitempty"`
	// SectorIdentifierURI turns on pairwise subject identifiers: clients with the same value see
	// the same "sub" for a person, other clients another. An absolute https URL without a
	// fragment or user info; the whole URL is the sector. JSON: "sector_identifier_uri".
	// Default: none (public subject identifiers, the same for every client).
	SectorIdentifierURI string `json:"sector_identifier_uri,omitempty"`
	// ClaimsPolicy names one of the provider's claims_policies, which lists the claims the
	// client's ID tokens carry. JSON: "claims_policy". Default: none (the ID token carries every
	// claim of the granted scopes).
	ClaimsPolicy string `json:"claims_policy,omitempty"`
	// ResourceServerFor lists the client ids whose tokens this client may read in full at the
	// introspection endpoint, as a resource server (an API) that those clients' tokens are
	// sent to: with the user's username and the "sub" the token's client sees (pairwise, when
	// it has a sector_identifier_uri). Every client reads its own tokens in full; any other
	// confidential client is told only whether a token is active and what it grants (active,
	// client_id, scope, aud, exp, iat, iss, token_type). Each id must be a registered client;
	// a public client cannot introspect and may not set it. Beyond Authelia. JSON:
	// "resource_server_for". Default: none.
	ResourceServerFor []string `json:"resource_server_for,omitempty"`
}
