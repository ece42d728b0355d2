package users

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/go-crypt/crypt/algorithm/argon2"
)

// Errors of a Directory, for errors.Is.
var (
	// ErrNotFound is a name that names no user of the directory.
	ErrNotFound = errors.New("users: no such user")
	// ErrUnavailable is a directory that cannot be asked (an LDAP server down or timing out):
	// the gate answers 503 with Retry-After, the portal a page that says so, and never a pass.
	ErrUnavailable = errors.New("users: the user directory cannot be reached")
)

// Directory is where people come from: the users file (File) or an LDAP directory (package
// users/ldap). Every method is safe for concurrent use.
type Directory interface {
	// Lookup finds the user that name names: a username (in any letter case: the directory's
	// own spelling, User.Name, is the identity), or, where the backend allows it, one of the
	// user's mail addresses. It returns ErrNotFound for no user (and for a mail address that
	// more than one user holds), or an error wrapping ErrUnavailable when the directory cannot
	// be asked. Disabled users are found (User.Disabled says so).
	Lookup(ctx context.Context, name string) (*User, error)
	// CheckPassword reports whether password is u's password: the file checks the digest, LDAP
	// binds as the user (never comparing a hash read from the directory). It does not look at
	// Disabled. A wrong password is (false, nil); a directory that cannot be asked is an error
	// wrapping ErrUnavailable.
	CheckPassword(ctx context.Context, u *User, password string) (bool, error)
	// SetPassword gives u a new password (a reset or a change): the file writes a new argon2id
	// digest through the text-preserving editor; LDAP uses the password-modify extended
	// operation (RFC 3062), or unicodePwd on Active Directory. Later Lookups see the change.
	SetPassword(ctx context.Context, u *User, password string) error
}

// memo is what Memo keeps on a User.
type memo struct{ v any }

// Memo returns the value build made for this User the first time Memo was called on it (a User
// is immutable: a directory that sees a change returns a new User, so values derived from one,
// such as the gateway's identity headers, may be kept on it).
func (u *User) Memo(build func() any) any {
	if m := u.memo.Load(); m != nil {
		return m.v
	}
	m := &memo{v: build()}
	if u.memo.CompareAndSwap(nil, m) {
		return m.v
	}
	return u.memo.Load().v
}

// userMemo is the field Memo keeps its value in (declared here so the struct reads as data).
type userMemo = atomic.Pointer[memo]

// Lookup implements Directory on the current version of the file: the name as written, else
// the one user whose name differs only in letter case (the file refuses two such), else the one
// user with that mail address.
func (f *File) Lookup(_ context.Context, name string) (*User, error) {
	return f.Current().Find(name)
}

// Find is Lookup on this version of the file.
func (db *Database) Find(name string) (*User, error) {
	if u, ok := db.users[name]; ok {
		return u, nil
	}
	if name == "" {
		return nil, ErrNotFound
	}
	if canonical, ok := db.folded[fold(name)]; ok {
		return db.users[canonical], nil
	}
	if strings.Contains(name, "@") {
		var found *User
		for _, n := range db.names {
			u := db.users[n]
			for _, m := range u.Emails {
				if strings.EqualFold(m, name) {
					if found != nil && found != u {
						return nil, ErrNotFound // two users share it: it names neither
					}
					found = u
				}
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, ErrNotFound
}

// CheckPassword implements Directory: a full digest check of u's password.
// A user without a password (passkey-only) never matches, after a check of the same cost.
func (f *File) CheckPassword(_ context.Context, u *User, password string) (bool, error) {
	return match(u.digest, password), nil
}

// SetPassword implements Directory: it writes an argon2id digest of password (Authelia's
// default parameters) for u through EditFile and re-reads the file.
func (f *File) SetPassword(_ context.Context, u *User, password string) error {
	digest, err := HashPassword(password)
	if err != nil {
		return err
	}
	if _, err := EditFile(f.path, false, func(data []byte) ([]byte, error) {
		return SetPassword(data, u.Name, digest)
	}); err != nil {
		return fmt.Errorf("users file %s: setting the password of %s: %w", f.path, u.Name, err)
	}
	if _, err := f.Reload(); err != nil {
		return fmt.Errorf("users file %s: re-reading it after setting a password: %w", f.path, err)
	}
	return nil
}

// HashPassword is the digest a new password is stored as: argon2id with Authelia's default
// parameters (m=65536 KiB, t=3, p=4), as caddy oidc hash prints by default.
func HashPassword(password string) (string, error) {
	h, err := argon2.New(argon2.WithProfileRFC9106LowMemory())
	if err != nil {
		return "", fmt.Errorf("hashing a password: %w", err)
	}
	d, err := h.Hash(password)
	if err != nil {
		return "", fmt.Errorf("hashing a password: %w", err)
	}
	return d.Encode(), nil
}

var _ Directory = (*File)(nil)
