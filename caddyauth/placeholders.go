package caddyauth

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/accesscontrol"
)

// placeholderProvider answers the identity's {http.auth.user.*} placeholders on demand (one
// provider is cheaper than static entries, which would grow the replacer's map on every
// request). A cached identity keeps its provider, so it is built once.
func (id *identity) placeholderProvider() caddy.ReplacerFunc {
	if id.placeholders != nil {
		return id.placeholders
	}
	level := "one_factor"
	if id.level == accesscontrol.TwoFactor {
		level = "two_factor"
	}
	if u := id.user; u != nil {
		return func(key string) (any, bool) {
			switch key {
			case "http.auth.user.id":
				return u.Username, true
			case "http.auth.user.auth_level":
				return level, true
			case "http.auth.user.groups":
				return u.GroupString, true
			case "http.auth.user.email":
				return u.Email, u.Email != ""
			}
			return nil, false
		}
	}
	b, clientID := id.bearer, id.subject.ClientID
	return func(key string) (any, bool) {
		switch key {
		case "http.auth.user.id":
			return b.SubjectID, true
		case "http.auth.user.client_id":
			return clientID, clientID != ""
		case "http.auth.user.auth_level":
			return level, true
		case "http.auth.user.scopes":
			return b.ScopeString, true
		}
		return nil, false
	}
}
