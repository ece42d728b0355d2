// Package users reads people from a file in Authelia's users_database.yml format, checks their
// passwords against go-crypt digests, and re-reads the file when it changes, keeping the last good
// set when an edit is bad.
//
//	users:
//	  john:
//	    displayname: "John Doe"
//	    password: "$argon2id$v=19$m=65536,t=3,p=4$…"
//	    email: john@example.com          # or a list
//	    groups: [admins, dev]
//	    disabled: false
//	    given_name: John                 # optional OpenID Connect profile fields
//
// A user without a password key has no password (a passkey-only user, as
// 'caddy oidc users add --no-password' writes one): no password ever matches theirs, at the
// cost of a real check, and they sign in with a passkey. An empty password value is refused
// as a mistake. Authelia's own loader requires the key, so such a file is ours alone.
package users

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-crypt/crypt"
	"github.com/go-crypt/crypt/algorithm"
	"gopkg.in/yaml.v3"
)

// User is one person of the file.
type User struct {
	// Name is the username (the key under users:), as written.
	Name string
	// DisplayName is displayname, or Name when empty.
	DisplayName string
	// Emails are the addresses of email, the first one primary.
	Emails []string
	// Groups are the user's groups, in file order, without duplicates.
	Groups []string
	// Disabled users cannot sign in, and their tokens cannot be refreshed.
	Disabled bool
	// Profile holds the optional OpenID Connect profile fields.
	Profile Profile
	// PasswordVersion, for a user of a directory that does not hand out password digests
	// (LDAP), is a value that changes whenever the password may have changed (the entry's
	// modification time, say): right passwords are remembered under it, so a change forgets
	// them. "" means a right password is never remembered. The file's users leave it empty:
	// their digest serves (Digest).
	PasswordVersion string

	digest     algorithm.Digest
	digestText string
	memo       userMemo
}

// CheckPassword reports whether password matches the user's digest (a full digest check; the
// caller caps and caches them). It does not look at Disabled. A user without a password never
// matches, after a check of the same cost.
func (u *User) CheckPassword(password string) bool { return match(u.digest, password) }

// HasPassword reports whether the user has a password (a passkey-only user has none).
func (u *User) HasPassword() bool { return u.digest != nil }

// match checks password against d; with no digest it checks a dummy one, so a user without a
// password costs what a wrong password costs, and fails.
func match(d algorithm.Digest, password string) bool {
	if d == nil {
		dummy.Match(password)
		return false
	}
	return d.Match(password)
}

// Digest is the user's password digest as written in the file, or PasswordVersion for a user
// of a directory: a changed password changes it, so callers may key remembered verifications on
// it. "" means none may be remembered.
func (u *User) Digest() string {
	if u.digestText != "" {
		return u.digestText
	}
	return u.PasswordVersion
}

// Profile holds the optional profile fields of Authelia's file, named as its keys.
type Profile struct {
	GivenName      string         `yaml:"given_name"`
	MiddleName     string         `yaml:"middle_name"`
	FamilyName     string         `yaml:"family_name"`
	Nickname       string         `yaml:"nickname"`
	Profile        string         `yaml:"profile"`
	Picture        string         `yaml:"picture"`
	Website        string         `yaml:"website"`
	Gender         string         `yaml:"gender"`
	Birthdate      string         `yaml:"birthdate"`
	ZoneInfo       string         `yaml:"zoneinfo"`
	Locale         string         `yaml:"locale"`
	PhoneNumber    string         `yaml:"phone_number"`
	PhoneExtension string         `yaml:"phone_extension"`
	Address        *Address       `yaml:"address"`
	Extra          map[string]any `yaml:"extra"`
}

// Address is the structured postal address of a profile.
type Address struct {
	StreetAddress string `yaml:"street_address"`
	Locality      string `yaml:"locality"`
	Region        string `yaml:"region"`
	PostalCode    string `yaml:"postal_code"`
	Country       string `yaml:"country"`
}

// entry is one user as the file spells it.
type entry struct {
	DisplayName string    `yaml:"displayname"`
	Password    string    `yaml:"password"`
	Email       yaml.Node `yaml:"email"`
	Groups      []string  `yaml:"groups"`
	Disabled    bool      `yaml:"disabled"`
	Profile     `yaml:",inline"`
}

// Database is one parsed version of the file. It is immutable and safe for concurrent use.
type Database struct {
	users  map[string]*User
	names  []string
	folded map[string]string // fold(name) → name
}

// Parse reads a users file. Every error names the user and the field at fault.
func Parse(data []byte) (*Database, error) {
	var doc struct {
		Users yaml.Node `yaml:"users"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if doc.Users.Kind != yaml.MappingNode {
		return nil, errors.New("users file: no 'users:' map (expected users: { <name>: { password: …, … } })")
	}
	db := &Database{users: map[string]*User{}, folded: map[string]string{}}
	decoder, err := crypt.NewDefaultDecoder()
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	folded := db.folded
	for i := 0; i+1 < len(doc.Users.Content); i += 2 {
		name, node := doc.Users.Content[i].Value, doc.Users.Content[i+1]
		u, err := parseUser(name, node, decoder)
		if err != nil {
			return nil, fmt.Errorf("users file: user %q (line %d): %w", name, doc.Users.Content[i].Line, err)
		}
		// fold as strings.EqualFold does (ſ and s, K and k): rules compare names that way
		folding := fold(name)
		if other, dup := folded[folding]; dup {
			return nil, fmt.Errorf("users file: users %q and %q differ only in case; sign-in could not tell them apart", other, name)
		}
		folded[folding] = name
		db.users[name] = u
		db.names = append(db.names, name)
	}
	sort.Strings(db.names)
	return db, nil
}

func parseUser(name string, node *yaml.Node, decoder *crypt.Decoder) (*User, error) {
	if name == "" || strings.ContainsAny(name, ":/\\\x00 \t\r\n") {
		return nil, errors.New("the username must be non-empty, without spaces, ':', '/', '\\' or control characters")
	}
	var e entry
	if err := node.Decode(&e); err != nil {
		return nil, err
	}
	// yaml.v3 cannot refuse unknown fields of an inlined struct through Node.Decode, so check
	if node.Kind == yaml.MappingNode {
		for i := 0; i < len(node.Content); i += 2 {
			if k := node.Content[i].Value; !knownField(k) {
				return nil, fmt.Errorf("unknown field %q (line %d)", k, node.Content[i].Line)
			}
		}
	}
	u := &User{Name: name, DisplayName: e.DisplayName, Disabled: e.Disabled, Profile: e.Profile}
	if u.DisplayName == "" {
		u.DisplayName = name
	}
	switch {
	case e.Password == "" && node.Kind == yaml.MappingNode && !hasKey(node, "password"):
		// no password key: a passkey-only user
	case e.Password == "":
		return nil, errors.New("password: empty (a digest such as caddy oidc hash prints; leave the key out for a user without a password, who signs in with a passkey)")
	case strings.HasPrefix(e.Password, "$plaintext$"):
		return nil, errors.New("password: a $plaintext$ password is not accepted for people; store a digest (caddy oidc hash)")
	default:
		if err := CheckCost(e.Password); err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		d, err := decoder.Decode(e.Password)
		if err != nil {
			return nil, fmt.Errorf("password: not a digest go-crypt reads (argon2id, scrypt, pbkdf2, bcrypt, sha-crypt): %w", err)
		}
		u.digest, u.digestText = d, e.Password
	}
	switch e.Email.Kind {
	case 0:
	case yaml.ScalarNode:
		if e.Email.Value != "" {
			u.Emails = []string{e.Email.Value}
		}
	case yaml.SequenceNode:
		if err := e.Email.Decode(&u.Emails); err != nil {
			return nil, fmt.Errorf("email: %w", err)
		}
	default:
		return nil, errors.New("email: an address or a list of addresses")
	}
	for _, a := range u.Emails {
		if addr, err := mail.ParseAddress(a); err != nil || addr.Address != a {
			return nil, fmt.Errorf("email: %q is not an address", a)
		}
	}
	for _, g := range e.Groups {
		if g == "" {
			return nil, errors.New("groups: an empty group name")
		}
		if !slices.Contains(u.Groups, g) {
			u.Groups = append(u.Groups, g)
		}
	}
	return u, nil
}

var knownFields = []string{"displayname", "password", "email", "groups", "disabled", "given_name", "middle_name",
	"family_name", "nickname", "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale",
	"phone_number", "phone_extension", "address", "extra"}

func knownField(k string) bool { return slices.Contains(knownFields, k) }

// hasKey reports whether the mapping node m has key.
func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// Lookup returns the user named name, exactly as written in the file.
func (db *Database) Lookup(name string) (*User, bool) {
	u, ok := db.users[name]
	return u, ok
}

// Names lists the usernames, sorted.
func (db *Database) Names() []string { return slices.Clone(db.names) }

// Len is the number of users.
func (db *Database) Len() int { return len(db.users) }

// dummy is checked for unknown users, so a wrong username costs what a wrong password costs.
var dummy = func() algorithm.Digest {
	d, err := crypt.NewDefaultDecoder()
	if err != nil {
		panic(err)
	}
	// the digest of a random string with Authelia's default argon2id parameters
	digest, err := d.Decode("$argon2id$v=19$m=65536,t=3,p=4$6Xh5mQ8ZXU3sYJd4v2oV1g$0Y1dC2h3xJ6mC8o9pJw7tq1lE2f8d3V0Jx0l8u4Z3bA")
	if err != nil {
		panic(err)
	}
	return digest
}()

// Verify checks a username and password. It answers the same, at about the same cost, for an
// unknown user and a wrong password; a disabled user with the right password is refused too
// (ok false, u the user, so the caller may say why in its log).
func (db *Database) Verify(name, password string) (u *User, ok bool) {
	u, found := db.users[name]
	if !found {
		dummy.Match(password)
		return nil, false
	}
	if !match(u.digest, password) {
		return u, false
	}
	return u, !u.Disabled
}

// File is a users file that is re-read when it changes. Current is safe for concurrent use.
type File struct {
	path string
	cur  atomic.Pointer[Database]

	mu   sync.Mutex // serialises Reload
	hash [sha256.Size]byte
}

// maxFileSize bounds the users file: a few hundred bytes a user, for a great many users.
const maxFileSize = 16 << 20

// maxDigestLength bounds a digest: Authelia's longest defaults are under 150 characters.
const maxDigestLength = 512

// Open reads the users file at path; it fails when the file cannot be read or parsed.
func Open(path string) (*File, error) {
	f := &File{path: path}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Current is the last good version of the file.
func (f *File) Current() *Database { return f.cur.Load() }

// Reload re-reads the file. When its content changed and parses, it becomes current and changed
// is true; when it does not parse (or cannot be read), the last good version stays current and
// the error says why.
func (f *File) Reload() (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("reading users file %s: %w", f.path, err)
	}
	if fi.Size() > maxFileSize {
		return false, fmt.Errorf("users file %s is %d bytes, more than the %d a users file may have", f.path, fi.Size(), maxFileSize)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("reading users file %s: %w", f.path, err)
	}
	sum := sha256.Sum256(data)
	if f.cur.Load() != nil && sum == f.hash {
		return false, nil
	}
	db, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", f.path, err)
	}
	f.cur.Store(db)
	f.hash = sum
	return true, nil
}

// Watch re-reads the file every interval until stop is closed, calling report after each
// reload that changed something or failed (err non-nil: the last good version stays). Polling
// works with every editor and with files replaced by rename, bind mounts and network disks.
func (f *File) Watch(interval time.Duration, stop <-chan struct{}, report func(changed bool, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			changed, err := f.Reload()
			switch {
			case err != nil && err.Error() != lastErr:
				lastErr = err.Error()
				report(false, err)
			case err == nil && changed:
				lastErr = ""
				report(true, nil)
			case err == nil:
				lastErr = ""
			}
		}
	}
}

// Cost bounds: a digest beyond them would let any request that names the user take the server's
// memory or CPU for minutes (a typo or an imported file must not do that).
const (
	maxArgon2MemoryKiB = 1 << 20 // 1 GiB
	maxArgon2Time      = 64
	maxArgon2Lanes     = 64
	maxPBKDF2Rounds    = 10_000_000
	maxBcryptCost      = 16
	maxScryptLogN      = 22
	maxScryptRP        = 256
	maxSHACryptRounds  = 10_000_000
)

// CheckCost refuses a digest whose cost parameters exceed the bounds above.
func CheckCost(digest string) error {
	if len(digest) > maxDigestLength {
		return fmt.Errorf("the digest is %d characters long (at most %d): its key or salt is far larger than any algorithm needs, and would slow every sign-in", len(digest), maxDigestLength)
	}
	parts := strings.Split(digest, "$")
	if len(parts) < 3 {
		return nil // not a modular-crypt digest; the decoder says what is wrong
	}
	id, params := parts[1], parts[2]
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	kv := func(list string) map[string]int64 {
		out := map[string]int64{}
		for _, f := range strings.Split(list, ",") {
			if k, v, ok := strings.Cut(f, "="); ok {
				out[k] = num(v)
			}
		}
		return out
	}
	over := func(what string, v, limit int64) error {
		if v > limit || v < 0 {
			return fmt.Errorf("the digest's %s (%d) is beyond what a sign-in may cost (at most %d)", what, v, limit)
		}
		return nil
	}
	switch {
	case strings.HasPrefix(id, "argon2"):
		p := kv(params)
		if strings.HasPrefix(params, "v=") && len(parts) > 3 {
			p = kv(parts[3])
		}
		return errors.Join(over("argon2 memory in KiB", p["m"], maxArgon2MemoryKiB), over("argon2 iterations", p["t"], maxArgon2Time), over("argon2 parallelism", p["p"], maxArgon2Lanes))
	case strings.HasPrefix(id, "pbkdf2"):
		return over("pbkdf2 iterations", num(params), maxPBKDF2Rounds)
	case id == "2a" || id == "2b" || id == "2y" || id == "2x" || id == "bcrypt-sha256":
		if id == "bcrypt-sha256" {
			p := kv(params)
			return over("bcrypt cost", p["r"], maxBcryptCost)
		}
		return over("bcrypt cost", num(params), maxBcryptCost)
	case id == "scrypt" || id == "7":
		p := kv(params)
		if id == "7" {
			return nil // yescrypt-style encodings: the decoder's own limits apply
		}
		return errors.Join(over("scrypt ln", p["ln"], maxScryptLogN), over("scrypt r", p["r"], maxScryptRP), over("scrypt p", p["p"], maxScryptRP))
	case id == "5" || id == "6":
		if r, ok := strings.CutPrefix(params, "rounds="); ok {
			return over("sha-crypt rounds", num(r), maxSHACryptRounds)
		}
	}
	return nil
}
