package users

import (
	"strings"
	"testing"
	"time"
)

// TestUserWithoutPassword checks a passkey-only user: the file without a password key reads,
// and no password, not even an empty one, ever matches, at the cost of a real check.
func TestUserWithoutPassword(t *testing.T) {
	db, err := Parse([]byte("users:\n  pat:\n    displayname: Pat\n    email: pat@example.com\n    groups: [dev]\n"))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := db.Lookup("pat")
	if !ok || u.HasPassword() || u.Digest() != "" || u.DisplayName != "Pat" {
		t.Fatalf("pat: %+v", u)
	}
	f := &File{}
	for _, pw := range []string{"", "x", "$argon2id$"} {
		if u.CheckPassword(pw) {
			t.Fatalf("password %q matched", pw)
		}
		if ok, err := f.CheckPassword(t.Context(), u, pw); ok || err != nil {
			t.Fatalf("File.CheckPassword(%q) = %v, %v", pw, ok, err)
		}
		if got, ok := db.Verify("pat", pw); ok || got != u {
			t.Fatalf("Verify(%q) = %v, %v", pw, got, ok)
		}
	}
	// the same cost as the dummy check of an unknown user
	start := time.Now()
	dummy.Match("x")
	unknown := time.Since(start)
	start = time.Now()
	u.CheckPassword("x")
	if took := time.Since(start); took < unknown/3 {
		t.Fatalf("a password-less user's check took %v, an unknown user's %v: the timing tells them apart", took, unknown)
	}
}

func TestAddUserWithoutPassword(t *testing.T) {
	out, err := AddUser([]byte(EmptyFile), NewUser{Name: "pat", Emails: []string{"pat@example.com"}, NoPassword: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "password") {
		t.Fatalf("a password key was written:\n%s", out)
	}
	db, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := db.Lookup("pat"); !ok || u.HasPassword() {
		t.Fatalf("pat: %+v", u)
	}
	if _, err := AddUser([]byte(EmptyFile), NewUser{Name: "pat", NoPassword: true, Digest: "$argon2id$x"}); err == nil {
		t.Fatal("a digest and NoPassword were both accepted")
	}
	if _, err := AddUser([]byte(EmptyFile), NewUser{Name: "pat"}); err == nil {
		t.Fatal("a user without digest nor NoPassword was accepted")
	}
	// a password set later is written as a new key, and then matches
	digest, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	out, err = SetPassword(out, "pat", digest)
	if err != nil {
		t.Fatal(err)
	}
	db, err = Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := db.Lookup("pat"); !u.HasPassword() || !u.CheckPassword("correct horse battery staple") {
		t.Fatalf("after SetPassword:\n%s", out)
	}
}
