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
	// required for confidential clients (except private_key_jwt ones, which do not use it),
	// forbidden for public ones; client_secret_jwt needs it plaintext.
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
	// client_credentials, urn:ietf:params:oauth:grant-type:device_code (RFC 8628: a device
	// client needs no redirect_uris and uses no response types; with refresh_token it gets
	// refresh tokens for offline_access). JSON: "grant_types". Default:
	// derived from response_types: authorization_code for the default response type "code",
	// implicit for implicit types, both for hybrid types.
	GrantTypes []string `json:"grant_types,omitempty"`
	// RequestedAudienceMode is "explicit" (grant only the audiences asked for) or "implicit"
	// (grant the whole audience list when the request names none). JSON:
	// "requested_audience_mode". Default: "explicit".
	RequestedAudienceMode string `json:"requested_audience_mode,omitempty"`
	// TokenEndpointAuthMethod is how the client authenticates: client_secret_basic,
	// client_secret_post, client_secret_jwt (an RFC 7523 assertion signed with the secret, which
	// must then be plaintext), private_key_jwt (an assertion signed with the client's private key,
	// verified with jwks or jwks_uri; no secret needed), or none for public clients. A request
	// using another method is refused. JSON: "token_endpoint_auth_method". Default:
	// client_secret_basic (none for public clients).
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
	// ResponseModes the client may ask for: query, form_post, fragment, and the JARM modes jwt,
	// query.jwt, fragment.jwt, form_post.jwt (the answer in one signed JWT; jwt is query.jwt for
	// the "code" type, fragment.jwt otherwise). query and query.jwt cannot carry tokens, so they
	// need the "code" response type. JSON: "response_modes". Default: form_post, plus query when
	// response_types has "code", plus fragment when it has an implicit or hybrid type (no JARM
	// mode unless listed).
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

	// TokenEndpointAuthSigningAlg is the JWS algorithm the client's assertions must use with
	// client_secret_jwt (HS256, HS384, HS512) or private_key_jwt (RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512); an assertion signed otherwise is refused. JSON:
	// "token_endpoint_auth_signing_alg". Default: HS256 for client_secret_jwt; for
	// private_key_jwt, the algorithm of the client's keys when they all have one, else RS256.
	TokenEndpointAuthSigningAlg string `json:"token_endpoint_auth_signing_alg,omitempty"`
	// JWKSURI is an https URL (http only on a loopback host) where the client publishes its
	// public keys (a JWK Set), for private_key_jwt assertions and request objects. It is fetched
	// when first needed (never at caddy validate), with a 5 s timeout and a 256 KiB cap, cached
	// 10 minutes, and fetched again at most once a minute for a kid it does not hold. Exclusive
	// with jwks. JSON: "jwks_uri". Default: none.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// JWKS are the client's public keys given in the config, for private_key_jwt assertions and
	// request objects (Authelia's "jwks" list; in a Caddyfile, one "public_key <key_id> { … }"
	// block per key). Exclusive with jwks_uri. JSON: "jwks". Default: none.
	JWKS []ClientKey `json:"jwks,omitempty"`
	// RequestObjectSigningAlg is the JWS algorithm the client's request objects (the "request"
	// parameter, RFC 9101) must be signed with (RS*, PS*, ES*); "none" is refused, and so is the
	// option on a client without keys (jwks or jwks_uri). JSON: "request_object_signing_alg".
	// Default: any RSA or EC algorithm of the client's keys.
	RequestObjectSigningAlg string `json:"request_object_signing_alg,omitempty"`
	// AccessTokenSignedResponseAlg makes the client's access tokens JWTs (RFC 9068, typ
	// at+jwt) signed with this algorithm by one of the provider's signing keys; "none" keeps
	// them opaque. JSON: "access_token_signed_response_alg". Default: "none" (opaque), or the
	// algorithm of access_token_signed_response_key_id.
	AccessTokenSignedResponseAlg string `json:"access_token_signed_response_alg,omitempty"`
	// AccessTokenSignedResponseKeyID names the signing_key that signs the client's JWT access
	// tokens. JSON: "access_token_signed_response_key_id". Default: the first key of the
	// algorithm.
	AccessTokenSignedResponseKeyID string `json:"access_token_signed_response_key_id,omitempty"`
	// IntrospectionSignedResponseAlg makes introspection answers to this client signed JWTs
	// (RFC 9701, application/token-introspection+jwt); "none" keeps them JSON. JSON:
	// "introspection_signed_response_alg". Default: "none", or the algorithm of
	// introspection_signed_response_key_id.
	IntrospectionSignedResponseAlg string `json:"introspection_signed_response_alg,omitempty"`
	// IntrospectionSignedResponseKeyID names the signing_key that signs the client's
	// introspection answers. JSON: "introspection_signed_response_key_id". Default: the first
	// key of the algorithm.
	IntrospectionSignedResponseKeyID string `json:"introspection_signed_response_key_id,omitempty"`
	// AuthorizationSignedResponseAlg is the JWS algorithm of the client's JARM authorization
	// responses (response_mode jwt, query.jwt, fragment.jwt, form_post.jwt). JSON:
	// "authorization_signed_response_alg". Default: RS256, or the algorithm of
	// authorization_signed_response_key_id.
	AuthorizationSignedResponseAlg string `json:"authorization_signed_response_alg,omitempty"`
	// AuthorizationSignedResponseKeyID names the signing_key that signs the client's JARM
	// responses. JSON: "authorization_signed_response_key_id". Default: the first key of the
	// algorithm.
	AuthorizationSignedResponseKeyID string `json:"authorization_signed_response_key_id,omitempty"`
	// BackchannelLogoutURI receives a signed logout_token (OpenID Connect Back-Channel Logout
	// 1.0), POSTed by a queue that retries for about 45 minutes, when a portal session in which
	// the client got an ID token ends (sign-out at the portal or by an application, `caddy oidc
	// sessions end`, a password change or reset, a newer sign-in in the same browser): https, or
	// http on a loopback host (localhost, *.localhost, 127.0.0.0/8, ::1), without a fragment or
	// user info, on a client that signs people in (public clients too). JSON:
	// "backchannel_logout_uri". Default: none.
	BackchannelLogoutURI string `json:"backchannel_logout_uri,omitempty"`
	// BackchannelLogoutSessionRequired records that the client needs the session's "sid" in
	// its logout tokens and ID tokens; Portcullis puts it in both always (every ID token of a
	// portal session and every logout token), so this only needs backchannel_logout_uri beside
	// it. JSON: "backchannel_logout_session_required". Default: false.
	BackchannelLogoutSessionRequired bool `json:"backchannel_logout_session_required,omitempty"`
}

// ClientKey is one public key of a client (Authelia's jwks entries). In a Caddyfile:
//
//	public_key <key_id> {
//		algorithm ES256
//		key_file /etc/caddy/clients/app.pub.pem
//	}
type ClientKey struct {
	// KeyID is the JWK "kid" the client puts in its JWS headers. JSON: "key_id". Required,
	// unique among the client's keys.
	KeyID string `json:"key_id"`
	// Algorithm is the JWS algorithm the key verifies (RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512). JSON: "algorithm". Default: RS256 for an RSA key, the
	// curve's algorithm for an EC key.
	Algorithm string `json:"algorithm,omitempty"`
	// Use is the JWK "use"; only "sig" is accepted. JSON: "use". Default: "sig".
	Use string `json:"use,omitempty"`
	// Key is the PEM public key (PUBLIC KEY or RSA PUBLIC KEY) or certificate (CERTIFICATE,
	// the first of a chain); placeholders {env.*} and {file.*} are resolved at start. JSON:
	// "key". Exclusive with key_file; one of the two is required.
	Key string `json:"key,omitempty"`
	// KeyFile is a file holding the PEM public key or certificate. JSON: "key_file".
	// Exclusive with key.
	KeyFile string `json:"key_file,omitempty"`
}
