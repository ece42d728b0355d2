package caddyauth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	// The provider registers the oidc_provider directive that is ordered here.
	_ "github.com/portcullis-auth/portcullis/oidcprovider"
)

// Both directive orders are registered in one init so their relative order is fixed: each
// "before basic_auth" lands right in front of basic_auth, so oidc_provider (registered first)
// runs before oidc_auth, and the provider's own endpoints are never gated by its site's gate.
func init() {
	httpcaddyfile.RegisterDirectiveOrder("oidc_provider", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("oidc_auth", httpcaddyfile.Before, "basic_auth")
}
