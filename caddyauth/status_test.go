package caddyauth

import (
	"errors"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// statusOf is the status Caddy would answer for a handler error.
func statusOf(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 500
}
