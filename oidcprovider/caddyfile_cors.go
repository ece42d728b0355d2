package oidcprovider

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// unmarshalCORS reads the oidc block's 'cors { … }' (Authelia's identity_providers.oidc.cors):
//
//	cors {
//		endpoints authorization token revocation introspection userinfo
//		allowed_origins https://app.example.com
//		allowed_origins_from_client_redirect_uris
//	}
//
// endpoints and allowed_origins append, so long lists may take several lines. The values are
// checked at provision (caddy validate).
func unmarshalCORS(d *caddyfile.Dispenser) (*CORSConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &CORSConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "endpoints", "allowed_origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("cors: %s needs at least one value", opt)
			}
			if opt == "endpoints" {
				c.Endpoints = append(c.Endpoints, args...)
			} else {
				c.AllowedOrigins = append(c.AllowedOrigins, args...)
			}
		case "allowed_origins_from_client_redirect_uris":
			if err := boolArg(d, &c.AllowedOriginsFromClientRedirectURIs); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("cors: unknown option %q (endpoints, allowed_origins, allowed_origins_from_client_redirect_uris)", opt)
		}
	}
	return c, nil
}
