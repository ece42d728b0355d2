// Package caddyauth is Portcullis's gateway: the oidc_auth directive and handler, and the
// http.authentication.providers.oidc module for Caddy's stock authentication handler. Both
// identify the caller (Bearer access tokens from the oidc app's store) and apply the
// accesscontrol rules: the global access_control list of the oidc app, preceded by the site's own
// rules.
//
// The package shares its name with Caddy's own caddyauth; Caddy's is imported as caddyauthstd.
package caddyauth
