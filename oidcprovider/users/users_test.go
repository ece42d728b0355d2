package users

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-crypt/crypt/algorithm"
	"github.com/go-crypt/crypt/algorithm/argon2"
	"github.com/go-crypt/crypt/algorithm/bcrypt"
	"github.com/go-crypt/crypt/algorithm/pbkdf2"
	"github.com/go-crypt/crypt/algorithm/scrypt"
	"github.com/go-crypt/crypt/algorithm/shacrypt"
)

// digest hashes password with h, failing the test on error.
func digest(t *testing.T, h algorithm.Hash, err error, password string) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	d, err := h.Hash(password)
	if err != nil {
		t.Fatal(err)
	}
	return d.Encode()
}

// Every digest kind Authelia writes verifies, with the right password only.
func TestEveryDigestKind(t *testing.T) {
	kinds := map[string]string{}
	h1, err := argon2.New(argon2.WithVariantName("argon2id"), argon2.WithT(1), argon2.WithM(8192), argon2.WithP(1))
	kinds["argon2id"] = digest(t, h1, err, "pw-argon2id")
	h2, err := scrypt.New(scrypt.WithLN(10))
	kinds["scrypt"] = digest(t, h2, err, "pw-scrypt")
	h3, err := pbkdf2.New(pbkdf2.WithVariantName("sha512"), pbkdf2.WithIterations(100000))
	kinds["pbkdf2-sha512"] = digest(t, h3, err, "pw-pbkdf2-sha512")
	h4, err := pbkdf2.New(pbkdf2.WithVariantName("sha256"), pbkdf2.WithIterations(100000))
	kinds["pbkdf2-sha256"] = digest(t, h4, err, "pw-pbkdf2-sha256")
	h5, err := bcrypt.New(bcrypt.WithIterations(10))
	kinds["bcrypt"] = digest(t, h5, err, "pw-bcrypt")
	h6, err := shacrypt.New(shacrypt.WithSHA512(), shacrypt.WithIterations(5000))
	kinds["sha512crypt"] = digest(t, h6, err, "pw-sha512crypt")

	var b strings.Builder
	b.WriteString("users:\n")
	for kind, d := range kinds {
		fmt.Fprintf(&b, "  %s:\n    displayname: User %s\n    password: %q\n    email: %s@example.com\n    groups: [dev, dev, %s]\n", kind, kind, d, kind, kind)
	}
	db, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if db.Len() != len(kinds) {
		t.Fatalf("%d users, want %d", db.Len(), len(kinds))
	}
	for kind, d := range kinds {
		if !strings.HasPrefix(d, "$") {
			t.Fatalf("%s: digest %q", kind, d)
		}
		if u, ok := db.Verify(kind, "pw-"+kind); !ok || u.Name != kind {
			t.Errorf("%s: the right password was refused", kind)
		}
		if _, ok := db.Verify(kind, "pw-"+kind+"x"); ok {
			t.Errorf("%s: a wrong password was accepted", kind)
		}
		u, _ := db.Lookup(kind)
		if u.DisplayName != "User "+kind || len(u.Emails) != 1 || u.Emails[0] != kind+"@example.com" {
			t.Errorf("%s: %+v", kind, u)
		}
		if strings.Join(u.Groups, ",") != "dev,"+kind {
			t.Errorf("%s: groups %v, want duplicates dropped", kind, u.Groups)
		}
	}
	if _, ok := db.Verify("nobody", "pw"); ok {
		t.Error("an unknown user was accepted")
	}
}

func TestProfileDisabledAndEmailList(t *testing.T) {
	h, err := pbkdf2.New(pbkdf2.WithVariantName("sha512"), pbkdf2.WithIterations(100000))
	d := digest(t, h, err, "secret")
	db, err := Parse([]byte(`users:
  jane:
    password: "` + d + `"
    email: [jane@example.com, j.doe@example.org]
    given_name: Jane
    family_name: Doe
    locale: en-GB
    address:
      locality: Leeds
      country: GB
    extra:
      team: blue
  old:
    password: "` + d + `"
    disabled: true
`))
	if err != nil {
		t.Fatal(err)
	}
	jane, _ := db.Lookup("jane")
	if jane.DisplayName != "jane" || len(jane.Emails) != 2 || jane.Emails[1] != "j.doe@example.org" ||
		jane.Profile.GivenName != "Jane" || jane.Profile.Address == nil || jane.Profile.Address.Locality != "Leeds" ||
		jane.Profile.Extra["team"] != "blue" || jane.Profile.Locale != "en-GB" {
		t.Fatalf("%+v %+v", jane, jane.Profile)
	}
	if u, ok := db.Verify("old", "secret"); ok || u == nil || !u.Disabled {
		t.Fatal("a disabled user with the right password must be refused (and named to the caller)")
	}
	if got := db.Names(); strings.Join(got, ",") != "jane,old" {
		t.Fatalf("names %v", got)
	}
}

// Bad entries are errors naming the user and the field.
func TestErrorsNameUserAndField(t *testing.T) {
	h, err := pbkdf2.New(pbkdf2.WithVariantName("sha512"), pbkdf2.WithIterations(100000))
	d := digest(t, h, err, "secret")
	for _, c := range []struct{ name, file, want string }{
		{"no users map", "people: {}\n", "field people not found"},
		{"empty", "", "no 'users:' map"},
		{"empty password", "users:\n  john:\n    password: \"\"\n    email: john@example.com\n", `user "john" (line 2): password: empty (a digest such as caddy oidc hash prints; leave the key out`},
		{"no entry", "users:\n  john:\n", `user "john" (line 2): password: empty`},
		{"bad digest", "users:\n  john:\n    password: hunter2\n", `user "john" (line 2): password: not a digest`},
		{"plaintext", "users:\n  john:\n    password: $plaintext$hunter2\n", `user "john" (line 2): password: a $plaintext$`},
		{"typo", "users:\n  john:\n    password: \"" + d + "\"\n    grups: [admins]\n", `user "john" (line 2): unknown field "grups" (line 4)`},
		{"bad email", "users:\n  john:\n    password: \"" + d + "\"\n    email: not an address\n", `user "john" (line 2): email: "not an address" is not an address`},
		{"email map", "users:\n  john:\n    password: \"" + d + "\"\n    email: {a: b}\n", `user "john" (line 2): email: an address or a list`},
		{"empty group", "users:\n  john:\n    password: \"" + d + "\"\n    groups: [\"\"]\n", `user "john" (line 2): groups: an empty group`},
		{"bad username", "users:\n  \"jo hn\":\n    password: \"" + d + "\"\n", `user "jo hn" (line 2): the username must`},
		{"case twins", "users:\n  John:\n    password: \"" + d + "\"\n  john:\n    password: \"" + d + "\"\n", `"John" and "john" differ only in case`},
		{"argon2 memory", "users:\n  huge:\n    password: \"$argon2id$v=19$m=4294967295,t=1,p=1$dvkaVjy0nBroTWPgT2h9Fg$QVdw4WhBy3OB+4dhFqOoNY06Sm47ETwcn+a5mZgr5A4\"\n", `user "huge" (line 2): password: the digest's argon2 memory in KiB (4294967295) is beyond`},
		{"pbkdf2 rounds", "users:\n  slow:\n    password: \"$pbkdf2-sha512$2000000000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng\"\n", `pbkdf2 iterations (2000000000) is beyond`},
		{"bcrypt cost", "users:\n  slow:\n    password: \"$2b$31$abcdefghijklmnopqrstuuN1mh3GBqNuKtQNHYWGaMY4fpS7B0GVW\"\n", `bcrypt cost (31) is beyond`},
		{"long s twin", "users:\n  sam:\n    password: \"" + d + "\"\n  ſam:\n    password: \"" + d + "\"\n", `differ only in case`},
		{"disabled not a bool", "users:\n  john:\n    password: \"" + d + "\"\n    disabled: maybe\n", `user "john" (line 2)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// A changed file is re-read; a bad edit keeps the last good set and says why.
func TestReloadKeepsLastGoodSet(t *testing.T) {
	h, err := pbkdf2.New(pbkdf2.WithVariantName("sha512"), pbkdf2.WithIterations(100000))
	d := digest(t, h, err, "secret")
	path := filepath.Join(t.TempDir(), "users.yml")
	write := func(s string) {
		t.Helper()
		// replace by rename, as editors and configuration tools do
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("users:\n  john:\n    password: \"" + d + "\"\n")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := f.Reload(); changed || err != nil {
		t.Fatalf("an unchanged file: changed %v, %v", changed, err)
	}
	write("users:\n  john:\n    password: \"" + d + "\"\n  jane:\n    password: \"" + d + "\"\n")
	if changed, err := f.Reload(); !changed || err != nil || f.Current().Len() != 2 {
		t.Fatalf("an added user: changed %v, %v, %d users", changed, err, f.Current().Len())
	}
	write("users:\n  john:\n    password: broken\n")
	if changed, err := f.Reload(); changed || err == nil || !strings.Contains(err.Error(), `user "john"`) {
		t.Fatalf("a bad edit: changed %v, %v", changed, err)
	}
	if _, ok := f.Current().Verify("jane", "secret"); !ok {
		t.Fatal("a bad edit must keep the last good set")
	}

	// Watch reports the failure once and the repair
	reports := make(chan error, 10)
	stop := make(chan struct{})
	defer close(stop)
	go f.Watch(20*time.Millisecond, stop, func(changed bool, err error) { reports <- err })
	if err := <-reports; err == nil {
		t.Fatal("the watcher did not report the bad file")
	}
	write("users:\n  jim:\n    password: \"" + d + "\"\n")
	select {
	case err := <-reports:
		if err != nil {
			t.Fatalf("repair reported %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not pick up the repaired file")
	}
	if _, ok := f.Current().Verify("jim", "secret"); !ok {
		t.Fatal("the repaired file is not current")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Fatal("a missing file must fail to open")
	}
}

// An unknown user costs a digest check, like a wrong password.
func TestUnknownUserPaysADigest(t *testing.T) {
	db, err := Parse([]byte("users: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	db.Verify("nobody", "pw")
	if took := time.Since(start); took < 5*time.Millisecond {
		t.Fatalf("an unknown user answered in %s: no digest was checked", took)
	}
}

// FuzzParse: any file parses or fails with an error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("users:\n  john:\n    password: \"$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE9RXV88h1wJn5KGiHrD0YKtZaR/nCb2CJPOsKaPK0hjf.9yHxzQGZziziccp6Yng\"\n    email: [a@b.c]\n    groups: [x]\n"))
	f.Add([]byte("users: {a: {password: x, address: {country: 1}}}"))
	f.Add([]byte("users: [1, 2]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := Parse(data)
		if err == nil && db == nil {
			t.Fatal("no database and no error")
		}
	})
}

func TestFileLookupByAnySpellingOrMail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	digest := "$argon2id$v=19$m=65536,t=3,p=4$6Xh5mQ8ZXU3sYJd4v2oV1g$0Y1dC2h3xJ6mC8o9pJw7tq1lE2f8d3V0Jx0l8u4Z3bA"
	data := "users:\n  John:\n    password: \"" + digest + "\"\n    email: [john@example.com, j@example.org]\n" +
		"  jane:\n    password: \"" + digest + "\"\n    email: shared@example.com\n" +
		"  jim:\n    password: \"" + digest + "\"\n    email: shared@example.com\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"John": "John", "john": "John", "JOHN": "John", "john@example.com": "John",
		"J@Example.ORG": "John", "jane": "jane"} {
		u, err := f.Lookup(t.Context(), in)
		if err != nil || u.Name != want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"", "nobody", "shared@example.com", "nobody@example.com", "*", "jo"} {
		if u, err := f.Lookup(t.Context(), in); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, %v; want ErrNotFound (a shared address names no one)", in, u, err)
		}
	}
}

func TestFileSetPasswordWritesADigestAndRereads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	old, err := HashPassword("old-password")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("# people\nusers:\n  john:\n    password: \""+old+"\"  # keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := f.Lookup(t.Context(), "john")
	if err := f.SetPassword(t.Context(), u, "new-password-1"); err != nil {
		t.Fatal(err)
	}
	u2, _ := f.Lookup(t.Context(), "john")
	if ok, _ := f.CheckPassword(t.Context(), u2, "new-password-1"); !ok {
		t.Fatal("the new password must be right after SetPassword")
	}
	if ok, _ := f.CheckPassword(t.Context(), u2, "old-password"); ok {
		t.Fatal("the old password must be wrong after SetPassword")
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "# people") || !strings.Contains(string(data), "$argon2id$") || strings.Contains(string(data), "new-password-1") {
		t.Fatalf("the file must keep its comments and hold only a digest:\n%s", data)
	}
}
