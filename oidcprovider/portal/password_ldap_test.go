package portal

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/ldaptest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/users/ldap"
)

const ldapServicePassword = "service-secret-9Zr"

// ldapPeople is a directory with a service account and John (a mail address, a password).
var ldapPeople = ldaptest.Skeleton(ldapServicePassword) + `dn: uid=john,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: john
cn: John Doe
sn: Doe
displayName: John Doe
mail: john@example.com
userPassword: password
`

// The password change against a real OpenLDAP: the directory's password changes (bound with the
// new one, refused with the old), and a directory that goes down on the way is the directory
// page, 503, never a 500.
func TestPasswordChangeLDAP(t *testing.T) {
	s := ldaptest.Start(t, ldapPeople)
	dir, err := ldap.New(ldap.Config{
		Address: s.URL(), BaseDN: ldaptest.BaseDN, AdditionalUsersDN: "ou=people",
		UsersFilter: "(&({username_attribute}={input})(objectClass=person))", AdditionalGroupsDN: "ou=groups",
		GroupsFilter: "(&(member={dn})(objectClass=groupOfNames))",
		User:         ldaptest.ServiceDN, Password: ldapServicePassword,
		Attributes: ldap.Attributes{Username: "uid"}, Timeout: duration.Duration(2 * time.Second),
		CacheTTL: duration.Duration(time.Hour),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	w, file := newElevationWorld(t)
	w.p.cfg.Users = dir
	w.p.cfg.CheckPassword = func(ctx context.Context, user, password, _ string) error {
		u, err := dir.Lookup(ctx, user)
		if err != nil {
			return err
		}
		if ok, err := dir.CheckPassword(ctx, u, password); err != nil {
			return err
		} else if !ok {
			return ErrBadCredentials
		}
		return nil
	}
	w.signIn()
	code := w.askCode(file, "/settings/password")
	w.do("POST", "/settings/elevate", url.Values{"code": {code}, "next": {"/settings/password"}})
	rec := w.do("POST", "/settings/password", url.Values{"current": {"password"}, "new": {"from the directory"}, "again": {"from the directory"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/settings?notice=password-changed" {
		t.Fatalf("password change on LDAP: %d %s", rec.Code, rec.Body.String())
	}
	ctx := t.Context()
	u, err := dir.Lookup(ctx, "john")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := dir.CheckPassword(ctx, u, "from the directory"); !ok {
		t.Error("the directory does not take the new password")
	}
	if ok, _ := dir.CheckPassword(ctx, u, "password"); ok {
		t.Error("the directory still takes the old password")
	}

	// the directory goes down (John is still in the directory's cache): 503, the directory page
	s.Stop()
	rec = w.do("POST", "/settings/password", url.Values{"current": {"from the directory"}, "new": {"yet another one"}, "again": {"yet another one"}})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "directory of users cannot be reached") {
		t.Fatalf("directory down: %d %s", rec.Code, rec.Body.String())
	}
}
