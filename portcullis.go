// Package portcullis registers Portcullis's Caddy modules: the oidc app and the oidc_provider
// handler (package oidcprovider), and the oidc_auth gateway with its caddyauth provider (package
// caddyauth). Build Caddy with it: xcaddy build --with github.com/portcullis-auth/portcullis
package portcullis

import (
	// The gateway: oidc_auth, the http.authentication.providers.oidc module and directive order.
	_ "github.com/portcullis-auth/portcullis/caddyauth"
	// The provider: the oidc app, the oidc_provider handler and the global oidc option.
	_ "github.com/portcullis-auth/portcullis/oidcprovider"
)
