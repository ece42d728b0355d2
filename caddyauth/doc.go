// Package caddyauth is Portcullis's gateway: the oidc_auth directive and handler, and the
// http.authentication.providers.oidc module for Caddy's stock authentication handler. Both run
// one path (answer.go): they judge the URL the caller asked for (target.go), let a bypass rule
// through before any credential is checked (a users_file user's Basic credentials are removed
// there, after a lookup of the name), identify the caller by a Bearer access token of the oidc
// app, Basic credentials from its users_file or the portal's session cookie (identify.go,
// cookies.go), apply the accesscontrol rules, the site's own before the oidc app's global
// access_control list (decide.go), and either pass the request on with the caller's identity
// headers and placeholders (headers.go, placeholders.go) or answer it, with the same headers from
// both entry points. The caddy oidc check-policy command (command_checkpolicy.go) runs the same code on
// a config file.
//
// The package shares its name with Caddy's own caddyauth; Caddy's is imported as caddyauthstd.
package caddyauth
