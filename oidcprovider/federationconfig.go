package oidcprovider

// The identity_providers of the oidc app (package federation): checked at provision, built on
// the open store at start and handed to the portal.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
	"github.com/portcullis-auth/portcullis/oidcprovider/portal"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// provisionFederation resolves and checks the identity_providers: placeholders in client_id
// and client_secret, names used once, people to map identities onto, and create_users only with
// a users file.
func (a *App) provisionFederation(repl *caddy.Replacer) error {
	if len(a.IdentityProviders) == 0 {
		return nil
	}
	if a.UsersFile == "" && a.LDAP == nil {
		return errors.New("identity_provider: needs people to sign in as: add 'users_file /etc/caddy/users.yml' or an 'ldap { … }' block")
	}
	seen := map[string]bool{}
	for i := range a.IdentityProviders {
		c := a.IdentityProviders[i]
		r := &placeholders{repl: repl, scope: "identity_provider " + c.Name}
		r.resolve("issuer", &c.Issuer)
		r.resolve("client_id", &c.ClientID)
		if c.ClientSecret != "" {
			s, err := repl.ReplaceOrErr(c.ClientSecret, true, true)
			if err != nil {
				return fmt.Errorf("identity_provider %s: client_secret: %w", c.Name, err)
			}
			c.ClientSecret = s
		}
		if r.err != nil {
			return r.err
		}
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("identity_provider %s is defined twice; give each a name of its own", c.Name)
		}
		seen[c.Name] = true
		if c.CreateUsers && a.LDAP != nil {
			return fmt.Errorf("identity_provider %s: create_users writes to the users file, but people come from LDAP; remove create_users (add the people to the directory instead)", c.Name)
		}
		a.IdentityProviders[i] = c
	}
	return nil
}

// startFederation builds the identity providers on the open store for the portal's config.
func (a *App) startFederation(kv store.KV, secret []byte, cfg *portal.Config) error {
	if len(a.IdentityProviders) == 0 {
		return nil
	}
	key, err := deriveKey(secret, "federation")
	if err != nil {
		return err
	}
	for _, c := range a.IdentityProviders {
		fp, err := federation.New(c, a.issuer+portal.FederationCallbackPath(c.Name), kv, key, nil)
		if err != nil {
			return err
		}
		cfg.IdentityProviders = append(cfg.IdentityProviders, fp)
	}
	cfg.Links = federation.NewLinks(kv)
	if a.usersFile != nil {
		f := a.usersFile
		cfg.CreateUser = func(ctx context.Context, id *federation.Identity) (*users.User, error) {
			return createFederatedUser(ctx, f, id)
		}
	}
	return nil
}

// createFederatedUser adds the person of id to the users file (create_users), named by the
// upstream's claim_username value, with its name and verified e-mail address and a random
// password nobody knows (a password reset or a passkey gives them one of their own). A name
// that finds a user already (in another case, or as a user's address), or an address that is
// another user's, is ErrUserExists.
func createFederatedUser(ctx context.Context, f *users.File, id *federation.Identity) (*users.User, error) {
	nu := users.NewUser{Name: id.Username, DisplayName: strings.TrimSpace(id.Name)}
	if id.EmailVerified && id.Email != "" {
		nu.Emails = []string{id.Email}
	}
	digest, err := users.HashPassword(rand.Text() + rand.Text())
	if err != nil {
		return nil, err
	}
	nu.Digest = digest
	add := func(data []byte) ([]byte, error) {
		// a name sign-in finds already (another user's address, say) would be taken, at a
		// password sign-in, a reset and in Remote-User, for the one it names now
		if db, err := users.Parse(data); err != nil {
			return nil, err
		} else if u, err := db.Find(nu.Name); err == nil {
			return nil, fmt.Errorf("%q names user %q: %w", nu.Name, u.Name, users.ErrUserExists)
		} else if owner := emailOwner(db, nu.Emails); owner != "" {
			// two users with one address: Remote-Email and a reset would speak for both
			return nil, fmt.Errorf("the address %q is user %q's: %w", nu.Emails[0], owner, users.ErrUserExists)
		}
		out, err := users.AddUser(data, nu)
		if errors.Is(err, users.ErrInvalid) && nu.DisplayName != "" {
			// a name the file cannot hold (a control character, say): the username serves
			nu.DisplayName = ""
			return users.AddUser(data, nu)
		}
		return out, err
	}
	if _, err := users.EditFile(f.Path(), false, add); err != nil {
		return nil, fmt.Errorf("creating user %q: %w", nu.Name, err)
	}
	if _, err := f.Reload(); err != nil {
		return nil, fmt.Errorf("re-reading the users file after creating user %q: %w", nu.Name, err)
	}
	return f.Lookup(ctx, nu.Name)
}

// emailOwner is the user of db who has one of the addresses, or "".
func emailOwner(db *users.Database, addrs []string) string {
	for _, name := range db.Names() {
		u, _ := db.Lookup(name)
		for _, m := range u.Emails {
			for _, a := range addrs {
				if strings.EqualFold(m, a) {
					return name
				}
			}
		}
	}
	return ""
}
