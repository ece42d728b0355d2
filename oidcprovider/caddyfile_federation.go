package oidcprovider

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
)

// unmarshalIdentityProvider reads an identity_provider block, d positioned on its token:
//
//	identity_provider <name> {
//		type oidc|github
//		display_name <button label>           # default: <name>
//		issuer <https url>                    # type oidc only
//		client_id <id>
//		client_secret <secret>                # {env.*} and {file.*} resolved at provision
//		scopes <scope...>                     # default: openid email profile (github: read:user user:email)
//		claim_username <claim>                # default: preferred_username (github: login)
//		link by_email_verified|by_username|manual   # default: by_email_verified
//		allowed_domains <domain...>
//		two_factor_satisfied [true|false]     # default: false
//		create_users [true|false]             # default: false
//	}
//
// The values are checked when the app is provisioned (federation.Config.Validate).
func unmarshalIdentityProvider(d *caddyfile.Dispenser) (federation.Config, error) {
	var c federation.Config
	if !d.NextArg() {
		return c, d.Err("identity_provider needs a name: identity_provider google { type oidc … }")
	}
	c.Name = d.Val()
	if d.NextArg() {
		return c, d.Errf("identity_provider %s: one name only, got another: %q", c.Name, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "type":
			err = oneArg(d, &c.Type)
		case "display_name":
			err = oneArg(d, &c.DisplayName)
		case "issuer":
			err = oneArg(d, &c.Issuer)
		case "client_id":
			err = oneArg(d, &c.ClientID)
		case "client_secret", "secret":
			err = secretArg(d, &c.ClientSecret)
		case "scopes":
			c.Scopes, err = appendArgs(d, c.Scopes)
		case "claim_username":
			err = oneArg(d, &c.ClaimUsername)
		case "link":
			err = oneArg(d, &c.Link)
		case "allowed_domains":
			c.AllowedDomains, err = appendArgs(d, c.AllowedDomains)
		case "two_factor_satisfied":
			err = boolArg(d, &c.TwoFactorSatisfied)
		case "create_users":
			err = boolArg(d, &c.CreateUsers)
		default:
			return c, d.Errf("identity_provider %s: unknown option %q (type, display_name, issuer, client_id, client_secret, scopes, claim_username, link, allowed_domains, two_factor_satisfied, create_users)", c.Name, opt)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}
