package oidcprovider

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// portRange is a range of TCP ports Caddy's HTTP servers listen on.
type portRange struct{ start, end uint }

// listenPorts reads the ports of every HTTP server of this config. The gate uses them to refuse a
// request whose Host names a port of another of this Caddy's servers than the one it arrived on
// (a token for https://host:8443/ must not open https://host/ by lying in the Host header), while
// a Host port that no server of this Caddy listens on (a NAT or a container port mapping in front)
// is taken as the client's view of the URL.
func (a *App) listenPorts() []portRange {
	if a.ctx.Context == nil {
		return nil
	}
	app, err := a.ctx.AppIfConfigured("http")
	if errors.Is(err, caddy.ErrNotConfigured) || err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	var out []portRange
	for _, srv := range httpApp.Servers {
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(l)
			if err != nil || na.IsUnixNetwork() {
				continue
			}
			out = append(out, portRange{na.StartPort, na.EndPort})
		}
	}
	return out
}
