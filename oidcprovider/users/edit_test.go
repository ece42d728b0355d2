package users

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-crypt/crypt/algorithm/argon2"
)

// cheapDigest is an argon2id digest of password with small parameters, fast enough for tests.
func cheapDigest(t *testing.T, password string) string {
	t.Helper()
	h, err := argon2.New(argon2.WithVariantName("argon2id"), argon2.WithT(1), argon2.WithM(1024), argon2.WithP(1))
	return digest(t, h, err, password)
}

// expectHunk checks that after is before with the lines removed replaced by the lines added at
// one place, every other byte the same.
func expectHunk(t *testing.T, before, after []byte, removed, added []string) {
	t.Helper()
	b := strings.SplitAfter(string(before), "\n")
	for p := 0; p+len(removed) <= len(b); p++ {
		if !slices.Equal(b[p:p+len(removed)], removed) {
			continue
		}
		want := strings.Join(b[:p], "") + strings.Join(added, "") + strings.Join(b[p+len(removed):], "")
		if want == string(after) {
			return
		}
	}
	t.Fatalf("the edit is not just -%q +%q; the file now:\n%s", removed, added, after)
}

// mustParse parses data, failing the test when Parse refuses it.
func mustParse(t *testing.T, data []byte) *Database {
	t.Helper()
	db, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse refuses the edited file: %v\n%s", err, data)
	}
	return db
}

type fixture struct {
	data    []byte
	digests map[string]string // user → digest in the file
}

// twoSpaces is an Authelia-style file: 2-space indentation, comments, blank lines between
// entries, double-quoted, single-quoted and plain values, block and flow lists.
func twoSpaces(t *testing.T) fixture {
	d := map[string]string{"john": cheapDigest(t, "pw-john"), "jane": cheapDigest(t, "pw-jane")}
	data := fmt.Sprintf(`# Users of the example site.
# Make digests with: caddy oidc hash

users:
  john:   # the admin
    displayname: "John Doe"
    password: "%s"
    email: john@example.com
    groups:
      - admins
      - dev

  jane:
    displayname: 'Jane Roe'
    password: %s     # plain, with a comment
    email: [jane@example.com, jr@example.org]
    groups: [ops]
    disabled: false

# end of users
`, d["john"], d["jane"])
	return fixture{[]byte(data), d}
}

// fourSpaces is indented by 4, with a quoted key, indentless and indented block lists, a
// flow-style entry and a last line without a line break.
func fourSpaces(t *testing.T) fixture {
	d := map[string]string{"bob": cheapDigest(t, "pw-bob"), "carol": cheapDigest(t, "pw-carol"), "dave": cheapDigest(t, "pw-dave")}
	data := fmt.Sprintf(`users:
    "bob":
        password: '%s'
        groups:
        - dev
    carol: {password: "%s", email: carol@example.com, groups: [dev]}
    # dave joined in May
    dave:
        password: "%s"
        email:
            - dave@example.com
        groups: [a, "b c"]`, d["bob"], d["carol"], d["dave"])
	return fixture{[]byte(data), d}
}

func TestAddUserFollowsTheFile(t *testing.T) {
	digest := cheapDigest(t, "pw-new")
	cases := []struct {
		name  string
		file  fixture
		user  NewUser
		added []string
		last  string // the before's last line when it gains a line break
	}{
		{
			name: "2 spaces, flow lists of the last entry, blank line between entries, plain password",
			file: twoSpaces(t),
			user: NewUser{Name: "alice", DisplayName: "Alice A.", Emails: []string{"alice@example.com"}, Groups: []string{"dev", "ops team", "dev"}, Digest: digest},
			added: []string{"\n", "  alice:\n", "    displayname: Alice A.\n", "    password: " + digest + "\n",
				"    email: alice@example.com\n", "    groups: [dev, ops team]\n"},
		},
		{
			name: "4 spaces, indented block lists, double-quoted password, no final line break",
			file: fourSpaces(t),
			user: NewUser{Name: "erin", Emails: []string{"erin@example.com", "e@example.org"}, Groups: []string{"dev"}, Digest: digest},
			added: []string{"    erin:\n", `        password: "` + digest + "\"\n", "        email:\n",
				"            - erin@example.com\n", "            - e@example.org\n", "        groups:\n", "            - dev\n"},
			last: `        groups: [a, "b c"]`,
		},
		{
			name: "names and values that need quotes",
			file: twoSpaces(t),
			user: NewUser{Name: "true", DisplayName: "Doe: John #1", Groups: []string{"[x]", "yes"}, Digest: digest},
			added: []string{"\n", "  \"true\":\n", "    displayname: \"Doe: John #1\"\n", "    password: " + digest + "\n",
				"    groups: [\"[x]\", \"yes\"]\n"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := AddUser(c.file.data, c.user)
			if err != nil {
				t.Fatal(err)
			}
			removed, added := []string(nil), c.added
			if c.last != "" {
				removed, added = []string{c.last}, append([]string{c.last + "\n"}, c.added...)
			}
			expectHunk(t, c.file.data, out, removed, added)
			db := mustParse(t, out)
			u, ok := db.Verify(c.user.Name, "pw-new")
			if !ok {
				t.Fatal("the added user cannot sign in")
			}
			if c.user.DisplayName != "" && u.DisplayName != c.user.DisplayName || !slices.Equal(u.Emails, c.user.Emails) || !slices.Equal(u.Groups, dedupe(c.user.Groups)) {
				t.Errorf("read back %+v", u)
			}
			for name := range c.file.digests {
				if _, ok := db.Verify(name, "pw-"+name); !ok {
					t.Errorf("%s can no longer sign in", name)
				}
			}
		})
	}
}

func TestAddUserToAFileWithoutUsers(t *testing.T) {
	digest := cheapDigest(t, "pw-first")
	u := NewUser{Name: "first", Groups: []string{"dev"}, Digest: digest}
	for _, c := range []struct{ before, after string }{
		{EmptyFile, "users:\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n"},
		{"# people\nusers: # none yet\n# the end\n", "# people\nusers: # none yet\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n# the end\n"},
		{"users: {}\n", "users:\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n"},
		{"users: ~ # nobody\n", "users: # nobody\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n"},
		{"", "users:\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n"},
		{"# only a comment", "# only a comment\nusers:\n  first:\n    password: \"" + digest + "\"\n    groups:\n      - dev\n"},
		{"users:\r\n", "users:\r\n  first:\r\n    password: \"" + digest + "\"\r\n    groups:\r\n      - dev\r\n"},
	} {
		out, err := AddUser([]byte(c.before), u)
		if err != nil {
			t.Errorf("%q: %v", c.before, err)
			continue
		}
		if string(out) != c.after {
			t.Errorf("%q became\n%q, want\n%q", c.before, out, c.after)
		}
		if db := mustParse(t, out); db.Len() != 1 {
			t.Errorf("%q: %d users", c.before, db.Len())
		}
	}
}

func TestAddUserRefuses(t *testing.T) {
	f := twoSpaces(t)
	digest := cheapDigest(t, "pw")
	for _, c := range []struct {
		u    NewUser
		want error
	}{
		{NewUser{Name: "john", Digest: digest}, ErrUserExists},
		{NewUser{Name: "JOHN", Digest: digest}, ErrUserExists},
		{NewUser{Name: "JANE", Digest: digest}, ErrUserExists},
		{NewUser{Name: "", Digest: digest}, ErrInvalid},
		{NewUser{Name: "a b", Digest: digest}, ErrInvalid},
		{NewUser{Name: "a:b", Digest: digest}, ErrInvalid},
		{NewUser{Name: "a/b", Digest: digest}, ErrInvalid},
		{NewUser{Name: "a\u0085b", Digest: digest}, ErrInvalid},
		{NewUser{Name: "x", Emails: []string{"John <john@example.com>"}, Digest: digest}, ErrInvalid},
		{NewUser{Name: "x", Groups: []string{""}, Digest: digest}, ErrInvalid},
		{NewUser{Name: "x", DisplayName: "a\nb", Digest: digest}, ErrInvalid},
		{NewUser{Name: "x"}, ErrInvalid},
		{NewUser{Name: "\u200bjohn", Digest: digest}, ErrInvalid},                        // looks like john
		{NewUser{Name: "x", DisplayName: "\u202eevil", Digest: digest}, ErrInvalid},      // right-to-left override
		{NewUser{Name: "x", Groups: []string{"admins,dev"}, Digest: digest}, ErrInvalid}, // two groups upstream
	} {
		if _, err := AddUser(f.data, c.u); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.u, err, c.want)
		}
	}
	// ſ folds to s, as Parse's check says
	sam := []byte("users:\n  sam:\n    password: \"" + digest + "\"\n")
	if _, err := AddUser(sam, NewUser{Name: "\u017fam", Digest: digest}); !errors.Is(err, ErrUserExists) {
		t.Errorf("a name folding to an existing one: %v", err)
	}
	// a digest Parse refuses is refused, and nothing is returned
	if out, err := AddUser(f.data, NewUser{Name: "x", Digest: "$plaintext$pw"}); err == nil || out != nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("a $plaintext$ password: %v", err)
	}
	// a non-empty flow-style users map cannot take a block entry
	if _, err := AddUser([]byte(`users: {john: {password: "`+digest+`"}}`), NewUser{Name: "x", Digest: digest}); !errors.Is(err, ErrNotEditable) {
		t.Errorf("a flow-style users map: %v", err)
	}
}

func TestSetPasswordChangesOneValue(t *testing.T) {
	two, four := twoSpaces(t), fourSpaces(t)
	noBreak := fixture{[]byte("users:\n  zed:\n    groups: [dev]\n    password: '" + cheapDigest(t, "pw-zed") + "'"), nil}
	noBreak.digests = map[string]string{"zed": strings.TrimSuffix(strings.SplitAfter(string(noBreak.data), "password: '")[1], "'")}
	crlf := fixture{[]byte("users:\r\n  win:\r\n    password: \"" + cheapDigest(t, "pw-win") + "\"\r\n    groups: [dev]\r\n"), nil}
	crlf.digests = map[string]string{"win": strings.Split(string(crlf.data), `"`)[1]}
	for _, c := range []struct {
		name, user string
		file       fixture
		newLine    func(d string) string // the password line after the edit
	}{
		{"double-quoted", "john", two, func(d string) string { return "    password: \"" + d + "\"\n" }},
		{"plain with a comment", "jane", two, func(d string) string { return "    password: " + d + "     # plain, with a comment\n" }},
		{"single-quoted under a quoted key", "bob", four, func(d string) string { return "        password: '" + d + "'\n" }},
		{"flow-style entry", "carol", four, func(d string) string {
			return "    carol: {password: \"" + d + "\", email: carol@example.com, groups: [dev]}\n"
		}},
		{"after a comment", "dave", four, func(d string) string { return "        password: \"" + d + "\"\n" }},
		{"on the last line, without a line break", "zed", noBreak, func(d string) string { return "    password: '" + d + "'" }},
		{"CRLF line breaks", "win", crlf, func(d string) string { return "    password: \"" + d + "\"\r\n" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			digest := cheapDigest(t, "new-"+c.user)
			out, err := SetPassword(c.file.data, c.user, digest)
			if err != nil {
				t.Fatal(err)
			}
			old := strings.ReplaceAll(c.newLine(digest), digest, c.file.digests[c.user])
			expectHunk(t, c.file.data, out, []string{old}, []string{c.newLine(digest)})
			db := mustParse(t, out)
			if _, ok := db.Verify(c.user, "new-"+c.user); !ok {
				t.Error("the new password does not work")
			}
			if _, ok := db.Verify(c.user, "pw-"+c.user); ok {
				t.Error("the old password still works")
			}
			for name := range c.file.digests {
				if _, ok := db.Verify(name, "pw-"+name); !ok && name != c.user {
					t.Errorf("%s can no longer sign in", name)
				}
			}
		})
	}
}

func TestSetPasswordRefuses(t *testing.T) {
	f := twoSpaces(t)
	digest, other := cheapDigest(t, "pw"), cheapDigest(t, "other")
	if _, err := SetPassword(f.data, "nobody", digest); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("an unknown user: %v", err)
	}
	if _, err := SetPassword(f.data, "John", digest); !errors.Is(err, ErrNoSuchUser) || !strings.Contains(err.Error(), `did you mean "john"`) {
		t.Errorf("a name in another case: %v", err)
	}
	if _, err := SetPassword(f.data, "john", "$plaintext$pw"); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("a $plaintext$ password: %v", err)
	}
	for _, file := range []string{
		"users:\n  x:\n    password: >-\n      " + digest + "\n",
		"users:\n  x:\n    password: \"" + digest[:20] + "\n      " + digest[20:] + "\"\n",
		"users:\n  x:\n    password: " + digest[:20] + "\n      " + digest[20:] + "\n",
		"users:\n  x:\n    password: &pw \"" + digest + "\"\n  y:\n    password: *pw\n",
		"users:\n  x: &u\n    password: \"" + digest + "\"\n",
		"users:\n  x:\n    password: !!str " + digest + "\n",
	} {
		if _, err := SetPassword([]byte(file), "x", other); !errors.Is(err, ErrNotEditable) {
			t.Errorf("%q: %v, want ErrNotEditable", file, err)
		}
	}
}

func TestSetDisabled(t *testing.T) {
	two, four := twoSpaces(t), fourSpaces(t)
	// john has no disabled: key; it is added as his first key
	out, err := SetDisabled(two.data, "john", true)
	if err != nil {
		t.Fatal(err)
	}
	expectHunk(t, two.data, out, nil, []string{"    disabled: true\n"})
	if !strings.Contains(string(out), "  john:   # the admin\n    disabled: true\n    displayname:") {
		t.Errorf("disabled: is not john's first key:\n%s", out)
	}
	if u, _ := mustParse(t, out).Lookup("john"); !u.Disabled {
		t.Error("john is not disabled")
	}
	// and enabling him again changes the value in place
	again, err := SetDisabled(out, "john", false)
	if err != nil {
		t.Fatal(err)
	}
	expectHunk(t, out, again, []string{"    disabled: true\n"}, []string{"    disabled: false\n"})
	// jane's disabled: false changes in place
	out, err = SetDisabled(two.data, "jane", true)
	if err != nil {
		t.Fatal(err)
	}
	expectHunk(t, two.data, out, []string{"    disabled: false\n"}, []string{"    disabled: true\n"})
	if u, _ := mustParse(t, out).Lookup("jane"); !u.Disabled {
		t.Error("jane is not disabled")
	}
	// what the file already says is not written again
	for _, c := range []struct {
		user     string
		disabled bool
	}{{"jane", false}, {"john", false}} {
		if out, err := SetDisabled(two.data, c.user, c.disabled); err != nil || string(out) != string(two.data) {
			t.Errorf("%s disabled=%v: %v, the file changed", c.user, c.disabled, err)
		}
	}
	// a flow-style entry gets the key after its brace
	out, err = SetDisabled(four.data, "carol", true)
	if err != nil {
		t.Fatal(err)
	}
	line := `    carol: {password: "` + four.digests["carol"] + `", email: carol@example.com, groups: [dev]}` + "\n"
	expectHunk(t, four.data, out, []string{line}, []string{strings.Replace(line, "{", "{disabled: true, ", 1)})
	// 4 spaces, and the last entry of a file without a final line break
	out, err = SetDisabled(four.data, "dave", true)
	if err != nil {
		t.Fatal(err)
	}
	expectHunk(t, four.data, out, nil, []string{"        disabled: true\n"})
	db := mustParse(t, out)
	for name := range four.digests {
		if u, _ := db.Lookup(name); u.Disabled != (name == "dave") {
			t.Errorf("%s disabled=%v", name, u.Disabled)
		}
	}
	if _, err := SetDisabled(four.data, "Dave", true); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("a name in another case: %v", err)
	}
}

// A comment at the names' indentation inside the last entry does not end it.
func TestAddUserAfterACommentInsideTheLastEntry(t *testing.T) {
	digest := cheapDigest(t, "pw")
	before := "users:\n  jane:\n    password: \"" + digest + "\"\n  # her groups:\n    groups: [a]\n  # the end\n"
	out, err := AddUser([]byte(before), NewUser{Name: "x", Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	expectHunk(t, []byte(before), out, nil, []string{"  x:\n", "    password: \"" + digest + "\"\n"})
	if !strings.HasSuffix(string(out), "    groups: [a]\n  x:\n    password: \""+digest+"\"\n  # the end\n") {
		t.Errorf("x is not after jane's last line:\n%s", out)
	}
}

// No file makes an edit panic, and an edit that succeeds gives a file Parse accepts.
func FuzzEdit(f *testing.F) {
	d := "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$0Y1dC2h3xJ6mC8o9pJw7tq1lE2f8d3V0Jx0l8u4Z3bA"
	for _, seed := range []string{
		EmptyFile, "users: {}\n", "users: ~\n", "", "# c",
		"users:\n  x:\n    password: \"" + d + "\"\n    groups: [a]\n",
		"users:\n    x: {password: '" + d + "', disabled: false}\n    y:\n        password: " + d + " # c\n        email:\n        - a@b.c",
		"users:\r\n  x:\r\n    password: \"" + d + "\"\r\n",
	} {
		f.Add([]byte(seed), "x")
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		edits := []func() ([]byte, error){
			func() ([]byte, error) {
				return AddUser(data, NewUser{Name: name, Groups: []string{"g"}, Emails: []string{"a@b.c"}, Digest: d})
			},
			func() ([]byte, error) { return SetPassword(data, name, strings.Replace(d, "c2Fsd", "c2Fse", 1)) },
			func() ([]byte, error) { return SetDisabled(data, name, true) },
			func() ([]byte, error) { return SetDisabled(data, name, false) },
		}
		for i, edit := range edits {
			out, err := edit()
			if err != nil || string(out) == string(data) {
				continue
			}
			if _, err := Parse(out); err != nil {
				t.Errorf("edit %d of %q for %q gave a file Parse refuses: %v\n%s", i, data, name, err, out)
			}
		}
	})
}
