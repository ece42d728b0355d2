package oidcprovider

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/federation"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// create_users names no one by a name sign-in already finds: another user's name in another
// case, or another user's e-mail address (which a password sign-in, a reset and Remote-User
// would then take for the new user's), nor a path-like or multi-line name; nor does it give a
// new user another user's address.
func TestCreateFederatedUserCollisions(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "users.yml")
	digest, err := users.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	data := "users:\n  alice:\n    password: \"" + digest + "\"\n    email: alice@example.test\n" +
		"  off:\n    password: \"" + digest + "\"\n    disabled: true\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := users.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice@example.test", "ALICE@Example.test", "Alice", "off", "OFF", "../etc", "a\nb: c", "x: y"} {
		id := &federation.Identity{Provider: "up", Subject: "s", Username: name, Email: "mallory@evil.test", EmailVerified: true, Name: "M\nallory: x"}
		if u, err := createFederatedUser(ctx, f, id); err == nil {
			t.Errorf("create_users named someone %q: %s", name, u.Name)
		}
	}
	// a name of its own with another user's address (link manual or by_username): Remote-Email
	// and a reset would speak for alice
	id := &federation.Identity{Provider: "up", Subject: "s", Username: "mallory", Email: "Alice@example.test", EmailVerified: true}
	if u, err := createFederatedUser(ctx, f, id); err == nil {
		t.Errorf("create_users gave %s alice's address", u.Name)
	}
	after, _ := os.ReadFile(p)
	if string(after) != data {
		t.Fatalf("the users file changed:\n%s", after)
	}
	// a name of its own is created, with a display name the file can hold
	id = &federation.Identity{Provider: "up", Subject: "s", Username: "mallory", Email: "mallory@evil.test", EmailVerified: true, Name: "M\nallory: x"}
	u, err := createFederatedUser(ctx, f, id)
	if err != nil || u.Name != "mallory" {
		t.Fatalf("a new name: %v %v", u, err)
	}
	if _, err := createFederatedUser(ctx, f, id); !errors.Is(err, users.ErrUserExists) {
		t.Fatalf("the same name again: %v", err)
	}
}
