package federation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// Key layout of the links in the store; names and subjects are base64url-encoded (never a '/'),
// so one user's prefix never covers another's keys. Links do not expire.
//
//	federation/link/<provider>/<b64url(subject)>                → Link (JSON)
//	federation/user/<b64url(user)>/<provider>/<b64url(subject)> → Link (JSON), the user's index
//	federation/unlinked/<provider>/<b64url(subject)>            → the user it was unlinked from
const (
	linkPrefix     = "federation/link/"
	userPrefix     = "federation/user/"
	unlinkedPrefix = "federation/unlinked/"
)

// Errors of the links and the mapping, for errors.Is.
var (
	// ErrLinkedElsewhere is an upstream identity linked to another local user.
	ErrLinkedElsewhere = errors.New("federation: this identity is linked to another account")
	// ErrUnknown is an upstream identity that maps to no local user.
	ErrUnknown = errors.New("federation: no account here matches this identity")
	// ErrUnverified is an e-mail address the upstream has not verified (link by_email_verified).
	ErrUnverified = errors.New("federation: the identity provider has not verified this e-mail address")
	// ErrDomain is an e-mail address outside the provider's allowed_domains.
	ErrDomain = errors.New("federation: this e-mail address's domain is not allowed")
	// ErrDisabled is a local user who is disabled.
	ErrDisabled = errors.New("federation: the account is disabled")
	// ErrUnlinked is an identity its person unlinked: no rule maps it again until it is
	// linked on the account page.
	ErrUnlinked = errors.New("federation: this identity was unlinked from its account")
)

// Link ties an upstream identity to a local user.
type Link struct {
	// Provider is the identity provider's name.
	Provider string `json:"provider"`
	// Subject is the upstream's id of the person.
	Subject string `json:"subject"`
	// User is the local username.
	User string `json:"user"`
	// Username and Email are the upstream's, when linked (shown on the account page).
	Username string `json:"username,omitempty"`
	Email    string `json:"email,omitempty"`
	// Linked is when it was linked.
	Linked time.Time `json:"linked"`
}

// Links keeps the links in a store.
type Links struct{ kv store.KV }

// NewLinks keeps links in kv.
func NewLinks(kv store.KV) *Links { return &Links{kv: kv} }

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func linkKey(provider, subject string) []byte {
	return []byte(linkPrefix + provider + "/" + b64(subject))
}

func userKey(user, provider, subject string) []byte {
	return []byte(userPrefix + b64(user) + "/" + provider + "/" + b64(subject))
}

func unlinkedKey(provider, subject string) []byte {
	return []byte(unlinkedPrefix + provider + "/" + b64(subject))
}

// Find returns the link of (provider, subject), or store.ErrNotFound.
func (l *Links) Find(ctx context.Context, provider, subject string) (*Link, error) {
	data, err := l.kv.Get(ctx, linkKey(provider, subject))
	if err != nil {
		return nil, err
	}
	var link Link
	if err := json.Unmarshal(data, &link); err != nil {
		return nil, fmt.Errorf("federation: reading a link: %w", err)
	}
	return &link, nil
}

// Add links id to user: atomically across nodes, so an identity is never linked to two users
// (ErrLinkedElsewhere). Linking it to its own user again is no error. A linked identity is
// unlinked no more (Remove's mark is lifted).
func (l *Links) Add(ctx context.Context, id *Identity, user string, now time.Time) error {
	rec := Link{Provider: id.Provider, Subject: id.Subject, User: user, Username: id.Username, Email: id.Email, Linked: now.UTC()}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	got, err := l.kv.GetOrCreate(ctx, linkKey(id.Provider, id.Subject), func() ([]byte, error) { return data, nil })
	if err != nil {
		return fmt.Errorf("federation: keeping a link: %w", err)
	}
	var held Link
	if err := json.Unmarshal(got, &held); err != nil {
		return fmt.Errorf("federation: reading a link: %w", err)
	}
	if held.User != user {
		return ErrLinkedElsewhere
	}
	if err := l.kv.PutSync(ctx, store.Entry{Key: userKey(user, id.Provider, id.Subject), Value: got}); err != nil {
		return fmt.Errorf("federation: keeping a link: %w", err)
	}
	if err := l.kv.Delete(ctx, unlinkedKey(id.Provider, id.Subject)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("federation: keeping a link: %w", err)
	}
	return nil
}

// List returns user's links, oldest first.
func (l *Links) List(ctx context.Context, user string) ([]Link, error) {
	keys, err := l.kv.Keys(ctx, []byte(userPrefix+b64(user)+"/"))
	if err != nil {
		return nil, fmt.Errorf("federation: listing links: %w", err)
	}
	var out []Link
	for _, k := range keys {
		data, err := l.kv.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("federation: listing links: %w", err)
		}
		var link Link
		if json.Unmarshal(data, &link) == nil && link.User == user {
			out = append(out, link)
		}
	}
	slices.SortFunc(out, func(a, b Link) int { return a.Linked.Compare(b.Linked) })
	return out, nil
}

// Remove unlinks (provider, subject) from user, and reports whether it was linked to user. The
// identity stays marked as unlinked, so Resolve maps it by no rule (by_email_verified would
// link it again at its next sign-in) until it is linked again (Add).
func (l *Links) Remove(ctx context.Context, user, provider, subject string) (bool, error) {
	link, err := l.Find(ctx, provider, subject)
	if errors.Is(err, store.ErrNotFound) {
		_ = l.kv.Delete(ctx, userKey(user, provider, subject)) // a stale index entry
		return false, nil
	} else if err != nil {
		return false, err
	}
	if link.User != user {
		return false, nil
	}
	if err := l.kv.PutSync(ctx, store.Entry{Key: unlinkedKey(provider, subject), Value: []byte(user)}); err != nil {
		return false, fmt.Errorf("federation: removing a link: %w", err)
	}
	if err := l.kv.Delete(ctx, linkKey(provider, subject), userKey(user, provider, subject)); err != nil {
		return false, fmt.Errorf("federation: removing a link: %w", err)
	}
	return true, nil
}

// Resolve finds the local user id signs in as under the provider's rules: an existing link
// always wins; else by the config's Link (by_email_verified, by_username; manual finds none).
// With AllowedDomains set, the e-mail address must be under one of them and verified. linked reports a user found
// through a link. Errors: ErrDomain, ErrUnverified, ErrUnknown, ErrUnlinked, ErrDisabled, or one wrapping
// users.ErrUnavailable or the store's.
func Resolve(ctx context.Context, cfg Config, links *Links, dir users.Directory, id *Identity) (u *users.User, linked bool, err error) {
	if len(cfg.AllowedDomains) > 0 {
		if !DomainAllowed(cfg, id.Email) {
			return nil, false, ErrDomain
		}
		if !id.EmailVerified {
			return nil, false, ErrUnverified // an address the upstream has not verified proves no domain
		}
	}
	link, err := links.Find(ctx, id.Provider, id.Subject)
	switch {
	case err == nil:
		u, err = dir.Lookup(ctx, link.User)
		linked = true
	case errors.Is(err, store.ErrNotFound):
		if _, err = links.kv.Get(ctx, unlinkedKey(id.Provider, id.Subject)); err == nil {
			return nil, false, ErrUnlinked
		} else if errors.Is(err, store.ErrNotFound) {
			u, err = byRule(ctx, cfg, dir, id)
		}
	}
	if errors.Is(err, users.ErrNotFound) {
		return nil, linked, ErrUnknown
	} else if err != nil {
		return nil, linked, err
	}
	if u.Disabled {
		return nil, linked, ErrDisabled
	}
	return u, linked, nil
}

// byRule is the local user of an identity not linked yet.
func byRule(ctx context.Context, cfg Config, dir users.Directory, id *Identity) (*users.User, error) {
	switch cfg.Link {
	case LinkByEmailVerified:
		if id.Email == "" {
			return nil, users.ErrNotFound
		}
		if !id.EmailVerified {
			return nil, ErrUnverified
		}
		u, err := dir.Lookup(ctx, id.Email)
		if err != nil {
			return nil, err
		}
		// Lookup also takes a username: the address must be one of the user's
		for _, m := range u.Emails {
			if sameFold(m, id.Email) {
				return u, nil
			}
		}
		return nil, users.ErrNotFound
	case LinkByUsername:
		if id.Username == "" {
			return nil, users.ErrNotFound
		}
		u, err := dir.Lookup(ctx, id.Username)
		if err != nil {
			return nil, err
		}
		if !sameFold(u.Name, id.Username) {
			// Lookup found the name as someone's mail address (by_username maps names alone),
			// or folded a non-ASCII letter of it
			return nil, users.ErrNotFound
		}
		return u, nil
	}
	return nil, users.ErrNotFound
}

// sameFold reports whether an upstream's name or address is the local one, differing at most in
// ASCII case: a Unicode fold (the Kelvin sign K as k, the long s ſ as s) may be another person
// to the upstream, so it matches no one.
func sameFold(local, upstream string) bool {
	if local == upstream {
		return true
	}
	if len(local) != len(upstream) {
		return false
	}
	for i := range len(local) {
		a, b := local[i], upstream[i]
		if a >= utf8.RuneSelf || b >= utf8.RuneSelf {
			if a != b {
				return false
			}
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// DomainAllowed reports whether email is under the provider's allowed_domains (always, when
// there are none).
func DomainAllowed(cfg Config, email string) bool {
	if len(cfg.AllowedDomains) == 0 {
		return true
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	return slices.Contains(cfg.AllowedDomains, strings.ToLower(email[at+1:]))
}
