package users

// Editing a users file in place: the changes are made on the text (yamltext.go), located with
// yaml.v3's node positions, so every other byte (comments, blank lines, other users, key order,
// quoting) stays as it was. Each edit checks its own result twice before handing it back: the
// whole file, decoded as plain YAML, must equal the original with only the intended change, and
// Parse must accept it and see the change. An edit that cannot be made that way is refused; the
// file is not touched. EditFile (editfile.go) puts an edit's result in place atomically.

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Errors of the edits, for errors.Is.
var (
	// ErrNoSuchUser is returned for a name the file does not hold exactly.
	ErrNoSuchUser = errors.New("no such user")
	// ErrUserExists is returned when adding a name the file holds, or one that differs from one
	// it holds only in case (Parse refuses such pairs: sign-in could not tell them apart).
	ErrUserExists = errors.New("already in the file")
	// ErrInvalid is returned for a bad username, email address, group or display name.
	ErrInvalid = errors.New("invalid")
	// ErrNotEditable is returned when the entry to change is written in a way the edit cannot
	// change in place (a value spanning lines, an anchor or alias, a tag, a non-empty flow-style
	// users map for an addition); edit it by hand.
	ErrNotEditable = errors.New("cannot be edited in place")
	// ErrChanged is returned by EditFile when the file changed while it was being edited.
	ErrChanged = errors.New("the file changed while it was being edited")
)

// NewUser is a person AddUser writes.
type NewUser struct {
	// Name is the username, the entry's key.
	Name string
	// DisplayName is written as displayname when not empty.
	DisplayName string
	// Emails are written as email: one address, or a list of several.
	Emails []string
	// Groups are written as groups, duplicates dropped.
	Groups []string
	// Digest is the password digest, as go-crypt encodes it. Empty only with NoPassword.
	Digest string
	// NoPassword writes no password key: a passkey-only user, who signs in with a passkey
	// (added through an enrolment link or by the person's session) and whom no password
	// matches.
	NoPassword bool
}

// EmptyFile is what a new users file starts as; it is not a valid file until a user is added.
const EmptyFile = "users:\n"

// CheckNewUser checks that u may be added to the file data: a valid name the file does not hold
// (even in another case), valid emails, groups and display name. It does not look at u.Digest.
func CheckNewUser(data []byte, u NewUser) error {
	if err := checkName(u.Name); err != nil {
		return err
	}
	if err := checkText("display name", u.DisplayName); err != nil {
		return err
	}
	for _, a := range u.Emails {
		if addr, err := mail.ParseAddress(a); err != nil || addr.Address != a {
			return fmt.Errorf("%w email address %q (write it bare: name@example.com)", ErrInvalid, a)
		}
	}
	for _, g := range u.Groups {
		if g == "" {
			return fmt.Errorf("%w group: an empty name", ErrInvalid)
		}
		if err := checkText("group", g); err != nil {
			return err
		}
	}
	s, err := load(data)
	if err != nil {
		return err
	}
	for _, k := range s.userKeys() {
		if k.Value == u.Name {
			return fmt.Errorf("user %q is %w", u.Name, ErrUserExists)
		}
		if fold(k.Value) == fold(u.Name) {
			return fmt.Errorf("user %q is %w as %q (names that differ only in case cannot be told apart at sign-in)", u.Name, ErrUserExists, k.Value)
		}
	}
	return nil
}

// CheckUser checks that the file data holds a user named exactly name.
func CheckUser(data []byte, name string) error {
	s, err := load(data)
	if err != nil {
		return err
	}
	_, _, err = s.user(name)
	return err
}

// AddUser appends u at the end of the users map, indented as the file's other entries are, and
// returns the new file. Nothing else changes; a file without users (EmptyFile, "users: {}",
// "users: ~" or no document at all) gets its first one.
func AddUser(data []byte, u NewUser) ([]byte, error) {
	if err := CheckNewUser(data, u); err != nil {
		return nil, err
	}
	switch {
	case u.Digest == "" && !u.NoPassword:
		return nil, fmt.Errorf("%w: no password digest for %q", ErrInvalid, u.Name)
	case u.Digest != "" && u.NoPassword:
		return nil, fmt.Errorf("%w: a password digest for %q, who is to have no password", ErrInvalid, u.Name)
	}
	u.Groups = dedupe(u.Groups)
	u.Emails = dedupe(u.Emails)
	out, err := addUser(data, u)
	if err != nil {
		return nil, fmt.Errorf("adding user %q: %w", u.Name, err)
	}
	err = verify(data, out, func(users map[string]any) error {
		entry := map[string]any{}
		if !u.NoPassword {
			entry["password"] = u.Digest
		}
		if u.DisplayName != "" {
			entry["displayname"] = u.DisplayName
		}
		switch len(u.Emails) {
		case 0:
		case 1:
			entry["email"] = u.Emails[0]
		default:
			entry["email"] = anys(u.Emails)
		}
		if len(u.Groups) > 0 {
			entry["groups"] = anys(u.Groups)
		}
		users[u.Name] = entry
		return nil
	}, func(db *Database) error {
		got, ok := db.Lookup(u.Name)
		if !ok || got.Digest() != u.Digest || !slices.Equal(got.Emails, u.Emails) || !slices.Equal(got.Groups, u.Groups) ||
			(u.DisplayName != "" && got.DisplayName != u.DisplayName) || got.Disabled {
			return errors.New("the new entry does not read back as written")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("adding user %q: %w", u.Name, err)
	}
	return out, nil
}

// SetPassword replaces the password digest of the user named name (exactly as written) and
// returns the new file: only the value of its password: key changes, in the quoting it had.
func SetPassword(data []byte, name, digest string) ([]byte, error) {
	if digest == "" {
		return nil, fmt.Errorf("%w: an empty password digest", ErrInvalid)
	}
	text := func(old *yaml.Node, flow bool) string {
		if old == nil {
			return doubleQuoted(digest)
		}
		return styled(digest, old.Style, flow)
	}
	out, err := setField(data, name, "password", text, func(n *yaml.Node) bool { return n.Value == digest })
	if err != nil {
		return nil, fmt.Errorf("setting the password of %q: %w", name, err)
	}
	err = verify(data, out, func(users map[string]any) error {
		return setGeneric(users, name, "password", digest)
	}, func(db *Database) error {
		if u, ok := db.Lookup(name); !ok || u.Digest() != digest {
			return errors.New("the new password does not read back")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("setting the password of %q: %w", name, err)
	}
	return out, nil
}

// SetDisabled sets disabled: true or false for the user named name (exactly as written) and
// returns the new file: the value changes in place, or a disabled: key is added as the entry's
// first key. When the file already says so (no key counts as enabled), data comes back as it is.
func SetDisabled(data []byte, name string, disabled bool) ([]byte, error) {
	val := strconv.FormatBool(disabled)
	same := func(n *yaml.Node) bool {
		var b bool
		return n.Kind == yaml.ScalarNode && n.Decode(&b) == nil && b == disabled
	}
	s, err := load(data)
	if err != nil {
		return nil, err
	}
	_, v, err := s.user(name)
	if err != nil {
		return nil, err
	}
	if !disabled && v.Kind == yaml.MappingNode && field(v, "disabled") == nil {
		return data, nil
	}
	out, err := setField(data, name, "disabled", func(*yaml.Node, bool) string { return val }, same)
	if err != nil {
		return nil, fmt.Errorf("setting disabled: %s for %q: %w", val, name, err)
	}
	if bytes.Equal(out, data) {
		return data, nil
	}
	err = verify(data, out, func(users map[string]any) error {
		return setGeneric(users, name, "disabled", disabled)
	}, func(db *Database) error {
		if u, ok := db.Lookup(name); !ok || u.Disabled != disabled {
			return errors.New("the new disabled value does not read back")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("setting disabled: %s for %q: %w", val, name, err)
	}
	return out, nil
}

// checkName applies Parse's rule for usernames, and refuses other control and space characters.
func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, ":/\\\x00 \t\r\n") || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) }) {
		return fmt.Errorf("%w username %q: it must be non-empty, without spaces, ':', '/', '\\', control or invisible formatting characters", ErrInvalid, name)
	}
	return nil
}

func checkText(what, v string) error {
	if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return fmt.Errorf("%w %s %q: control or invisible formatting characters, or invalid UTF-8", ErrInvalid, what, v)
	}
	if what == "group" && strings.Contains(v, ",") {
		return fmt.Errorf("%w group %q: a comma would split it in two where upstreams read Remote-Groups", ErrInvalid, v)
	}
	return nil
}

// fold folds a name as Parse does to find names sign-in could not tell apart.
func fold(name string) string { return strings.ToLower(strings.ToUpper(name)) }

func dedupe(list []string) []string {
	var out []string
	for _, v := range list {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func anys(list []string) []any {
	out := make([]any, len(list))
	for i, v := range list {
		out[i] = v
	}
	return out
}

// setGeneric sets users[name][key] in a decoded file.
func setGeneric(users map[string]any, name, key string, value any) error {
	u, ok := users[name].(map[string]any)
	if !ok {
		return fmt.Errorf("%w: the entry is not a map", ErrNotEditable)
	}
	u[key] = value
	return nil
}

// verify checks an edit: after, decoded as plain YAML, must equal before with change applied to
// its users map, and Parse must accept after and pass check.
func verify(before, after []byte, change func(users map[string]any) error, check func(*Database) error) error {
	var want, got map[string]any
	if err := yaml.Unmarshal(before, &want); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err := yaml.Unmarshal(after, &got); err != nil {
		return fmt.Errorf("%w: the edit would break the file (%v)", ErrNotEditable, err)
	}
	if want == nil {
		want = map[string]any{}
	}
	users, ok := want["users"].(map[string]any)
	if !ok {
		if want["users"] != nil {
			return fmt.Errorf("%w: users: is not a map", ErrNotEditable)
		}
		users = map[string]any{}
		want["users"] = users
	}
	if err := change(users); err != nil {
		return err
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("%w: the edit would change more than the entry; edit the file by hand", ErrNotEditable)
	}
	db, err := Parse(after)
	if err != nil {
		return fmt.Errorf("the edited file would not be accepted: %w", err)
	}
	return check(db)
}
