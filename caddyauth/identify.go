package caddyauth

import (
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider"
)

// identity is an authenticated caller.
type identity struct {
	bearer   *oidcprovider.BearerIdentity // for a token
	user     *oidcprovider.UserIdentity   // for Basic credentials and sessions
	cookie   string                       // the session cookie's name, when identified by it
	subject  accesscontrol.Subject
	level    accesscontrol.Policy // OneFactor or TwoFactor
	strategy *strategy
	// placeholders is the {http.auth.user.*} provider of a cached identity.
	placeholders caddy.ReplacerFunc
}

// credentialFailure is present but invalid credentials.
type credentialFailure struct {
	strategy    *strategy
	description string
	basic       bool // Basic credentials: the challenge is Basic, not Bearer
}

// identification is what the strategies found.
type identification struct {
	id      *identity
	failure *credentialFailure
	// foreign is the first strategy that carried a Bearer value that is not ours: it counts as
	// absent, but if nothing authenticates on a rule that needs a caller it gets 401 invalid_token
	// rather than a portal redirect.
	foreign *strategy
}

// identify runs the strategies in order. No credentials → next strategy; a Bearer value that is
// not ours counts as absent; present but invalid credentials end the search.
func (g *gate) identify(r *http.Request, t *target) (identification, error) {
	var found identification
	for i := range g.strategies {
		s := &g.strategies[i]
		if s.header == "" {
			id, err := g.checkSession(r, s, t.access.Host)
			if err != nil {
				return found, err
			}
			if id != nil {
				found.id = id
				return found, nil
			}
			continue
		}
		// s.header is canonical: index the map rather than pay Get's canonicalisation on every
		// request
		var v string
		if vs := r.Header[s.header]; len(vs) > 0 {
			v = vs[0]
		}
		if v == "" {
			continue
		}
		scheme, cred := v, ""
		if i := strings.IndexAny(v, " \t"); i >= 0 {
			scheme, cred = v[:i], strings.TrimSpace(v[i+1:])
		}
		if strings.EqualFold(scheme, "Basic") {
			u, err := g.checkBasic(r, cred)
			switch {
			case err == nil:
				found.id = &identity{user: u, level: accesscontrol.OneFactor, strategy: s,
					subject: accesscontrol.Subject{Username: u.Username, Groups: u.Groups}}
				return found, nil
			case errors.Is(err, oidcprovider.ErrNoUsers):
				continue // no users_file: Basic credentials are the upstream's, passed on untouched
			case errors.Is(err, oidcprovider.ErrBadCredentials), errors.Is(err, errMalformedBasic):
				found.failure = &credentialFailure{strategy: s, description: "The username or password is wrong.", basic: true}
				return found, nil
			}
			return found, err
		}
		if !strings.EqualFold(scheme, "Bearer") {
			continue // other schemes are not ours: pass them on untouched
		}
		b, err := g.app.CheckBearer(r.Context(), cred, t.audience())
		if err == nil {
			if b.ClientCredentials {
				if found.id = g.identities.get(b, s, accesscontrol.OneFactor, ""); found.id == nil {
					found.id = g.identities.add(b, &identity{bearer: b, level: accesscontrol.OneFactor, strategy: s, subject: accesscontrol.Subject{ClientID: b.ClientID}})
				}
				return found, nil
			}
			id := identity{bearer: b, level: accesscontrol.OneFactor, strategy: s}
			{
				// a user's token: the user is read afresh, so a removed or disabled user is
				// refused at once, and the rules see their current groups
				u, ok, err := g.app.User(r.Context(), b.Username)
				if err != nil {
					return found, err
				}
				if !ok {
					found.failure = &credentialFailure{strategy: s, description: "The user of this access token is disabled or no longer exists."}
					return found, nil
				}
				id.user, id.subject = u, accesscontrol.Subject{Username: u.Username, Groups: u.Groups}
				if b.TwoFactor {
					id.level = accesscontrol.TwoFactor
				}
			}
			found.id = &id
			return found, nil
		}
		if errors.Is(err, oidcprovider.ErrNotOurToken) {
			if found.foreign == nil {
				found.foreign = s
			}
			continue
		}
		if inv := (*oidcprovider.InvalidTokenError)(nil); errors.As(err, &inv) {
			found.failure = &credentialFailure{strategy: s, description: inv.Description}
			return found, nil
		}
		return found, err
	}
	return found, nil
}

// errMalformedBasic is Basic credentials that do not decode to user:password.
var errMalformedBasic = errors.New("malformed Basic credentials")

// checkBasic decodes Basic credentials (RFC 7617) and checks them with the oidc app.
func (g *gate) checkBasic(r *http.Request, cred string) (*oidcprovider.UserIdentity, error) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return nil, errMalformedBasic
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return nil, errMalformedBasic
	}
	return g.app.CheckBasic(r.Context(), user, pass, oidcprovider.ClientIP(r))
}

// identityCacheMax bounds the identity cache: past it the cache starts afresh.
const identityCacheMax = 10000

// callerIdentityCache keeps the identities of recent callers with their placeholder providers, so the
// hot path allocates neither. It is keyed by who the caller is (a *UserIdentity or a
// *BearerIdentity: immutable values the provider replaces rather than changes, so an entry is
// never stale), each with the few identities of its strategies and levels. A lookup boxes only
// a pointer, which does not allocate.
type callerIdentityCache struct {
	m sync.Map // who → *[]*identity (copied on write)
	n atomic.Int64
}

// get returns the cached identity of who through s at level (with the session cookie's name,
// for a session), or nil.
func (c *callerIdentityCache) get(who any, s *strategy, level accesscontrol.Policy, cookie string) *identity {
	if v, ok := c.m.Load(who); ok {
		for _, id := range *v.(*[]*identity) {
			if id.strategy == s && id.level == level && id.cookie == cookie {
				return id
			}
		}
	}
	return nil
}

// add caches id, an identity of who, and returns it.
func (c *callerIdentityCache) add(who any, id *identity) *identity {
	id.placeholders = id.placeholderProvider()
	list := []*identity{id}
	if v, ok := c.m.Load(who); ok {
		list = append(slices.Clone(*v.(*[]*identity)), id)
	}
	if c.n.Add(1) > identityCacheMax {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(who, &list)
	return id
}
