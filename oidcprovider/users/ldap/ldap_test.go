package ldap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/portcullis-auth/portcullis/internal/ldaptest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

const servicePassword = "service-secret-7Qx"

// fixture is the directory of the tests: John (spelt so), ann, a disabled account the filter
// excludes, two accounts sharing one mail address, a unicode name, and three groups (one whose
// RDN is not its name).
var fixture = ldaptest.Skeleton(servicePassword) + `dn: uid=John,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: John
cn: John Doe
sn: Doe
givenName: John
displayName: John Doe
mail: john@example.com
mail: jd@example.com
userPassword: john-password

dn: uid=ann,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: ann
cn: Ann
sn: Example
mail: ann@example.com
userPassword: ann-password

dn: uid=dis,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: dis
cn: Dis
sn: Abled
employeeType: disabled
mail: dis@example.com
userPassword: dis-password

dn: uid=twin1,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: twin1
cn: Twin
sn: One
mail: twins@example.com
userPassword: twin-password

dn: uid=twin2,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: twin2
cn: Twin
sn: Two
mail: twins@example.com
userPassword: twin-password

dn: uid=zoë,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: zoë
cn: Zoë
sn: Example
userPassword: zoe-password

dn: cn=admins,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: admins
member: uid=John,ou=people,dc=example,dc=com

dn: cn=dev,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: dev
member: uid=John,ou=people,dc=example,dc=com
member: uid=ann,ou=people,dc=example,dc=com

dn: description=operations,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: ops
description: operations
member: uid=ann,ou=people,dc=example,dc=com

dn: cn=elsewhere,dc=example,dc=com
objectClass: groupOfNames
cn: elsewhere
member: uid=ann,ou=people,dc=example,dc=com
`

// config is the tests' config for s: sign-in by username or mail, disabled accounts excluded.
func config(s *ldaptest.Server) Config {
	return Config{
		Address:            s.URL(),
		BaseDN:             ldaptest.BaseDN,
		AdditionalUsersDN:  "ou=people",
		AdditionalGroupsDN: "ou=groups",
		UsersFilter:        "(&(|({username_attribute}={input})({mail_attribute}={input}))(objectClass=person)(!(employeeType=disabled)))",
		GroupsFilter:       "(&(member={dn})(objectClass=groupOfNames))",
		User:               ldaptest.ServiceDN,
		Password:           servicePassword,
		Attributes:         Attributes{Username: "uid", GivenName: "givenName", FamilyName: "sn"},
		Timeout:            duration.Duration(2 * time.Second),
	}
}

func open(t *testing.T, cfg Config, logger *zap.Logger) *Directory {
	t.Helper()
	d, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestLookup finds John by any letter case and by either mail address, always as the directory
// spells him, with his groups, mails, profile and a password version; and finds nobody for an
// unknown name, the disabled account, or a mail two accounts share.
func TestLookup(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	logs, recorded := observer.New(zap.WarnLevel)
	d := open(t, config(s), zap.New(logs))
	c := ctx(t)
	var first *users.User
	for _, name := range []string{"John", "john", "JOHN", "john@example.com", "JD@example.com"} {
		u, err := d.Lookup(c, name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", name, err)
		}
		if u.Name != "John" || u.DisplayName != "John Doe" || !slices.Equal(u.Emails, []string{"john@example.com", "jd@example.com"}) ||
			!slices.Equal(u.Groups, []string{"admins", "dev"}) || u.Disabled || u.PasswordVersion == "" ||
			u.Profile.GivenName != "John" || u.Profile.FamilyName != "Doe" {
			t.Fatalf("Lookup(%q) = %+v", name, u)
		}
		if first == nil {
			first = u
		} else if u != first {
			t.Fatalf("Lookup(%q) gave another *User for an unchanged entry", name)
		}
	}
	ann, err := d.Lookup(c, "ann")
	if err != nil || ann.DisplayName != "ann" || !slices.Equal(ann.Groups, []string{"dev", "ops"}) {
		t.Fatalf("ann = %+v, %v (the display name falls back to the username; ops is found by its cn, elsewhere is outside ou=groups)", ann, err)
	}
	if u, err := d.Lookup(c, "zoë"); err != nil || u.Name != "zoë" {
		t.Fatalf("a unicode username: %+v %v", u, err)
	}
	for _, name := range []string{"nobody", "dis", "dis@example.com", "twins@example.com", ""} {
		if u, err := d.Lookup(c, name); !errors.Is(err, users.ErrNotFound) {
			t.Errorf("Lookup(%q) = %+v, %v; want ErrNotFound", name, u, err)
		}
	}
	if recorded.FilterMessageSnippet("more than one entry").Len() == 0 {
		t.Error("a name matching two entries was not logged")
	}
	// the twins are found by username, each their own
	if u, err := d.Lookup(c, "twin2"); err != nil || u.Name != "twin2" {
		t.Fatalf("twin2: %+v %v", u, err)
	}
}

// TestFilterInjection looks up names that would widen the filter if they were not escaped
// (RFC 4515), a NUL, unicode look-alikes and an overlong name: none finds anyone.
func TestFilterInjection(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	d := open(t, config(s), nil)
	c := ctx(t)
	for _, name := range []string{
		"*", "J*", "*ohn", ")(uid=*", "john)(|(uid=*", "John)(uid=*)", "*)(objectClass=*", "(uid=*)",
		"john\x00", "jo\x00hn", "\x00", `\2a`, `John\29`, "ｊｏｈｎ", "jöhn", "John ", " John",
		"twins@example.com)(uid=twin1", "*@example.com", strings.Repeat("a", 300), "John" + strings.Repeat("*", 253),
	} {
		u, err := d.Lookup(c, name)
		if !errors.Is(err, users.ErrNotFound) {
			t.Errorf("Lookup(%q) = %+v, %v; want ErrNotFound", name, u, err)
		}
	}
	// the escaping alone keeps the filter's shape: as many terms as with a plain name
	plain := d.userFilter("x", time.Now())
	for _, name := range []string{"*", ")(uid=*", "john)(|(uid=*", "*)(objectClass=*", "a\\29", "jo\x00hn", "ｊｏｈｎ"} {
		f := d.userFilter(name, time.Now())
		_, err := goldap.CompileFilter(f)
		if err != nil || strings.Count(f, "(") != strings.Count(plain, "(") || strings.Count(f, ")") != strings.Count(plain, ")") ||
			strings.ContainsAny(f, "*\x00") {
			t.Errorf("users_filter for %q = %s (%v)", name, f, err)
		}
	}
	// the same names as passwords are wrong passwords
	john, err := d.Lookup(c, "john")
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"*", "john-password\x00", "john-passwor*", ")(uid=*"} {
		if ok, err := d.CheckPassword(c, john, pw); ok || err != nil {
			t.Errorf("CheckPassword(%q) = %v, %v", pw, ok, err)
		}
	}
}

// TestCheckPassword binds as the user: the right password passes, a wrong or empty one does not,
// a user the filter does not find is false, and the service connection keeps its identity.
func TestCheckPassword(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	d := open(t, config(s), nil)
	c := ctx(t)
	john, err := d.Lookup(c, "JOHN")
	if err != nil {
		t.Fatal(err)
	}
	for pw, want := range map[string]bool{"john-password": true, "John-password": false, "ann-password": false, "": false} {
		if ok, err := d.CheckPassword(c, john, pw); ok != want || err != nil {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	// a user the filter excludes does not sign in, even with their password
	if ok, err := d.CheckPassword(c, &users.User{Name: "dis"}, "dis-password"); ok || err != nil {
		t.Errorf("the disabled account's password: %v, %v", ok, err)
	}
	if ok, err := d.CheckPassword(c, &users.User{Name: "ghost"}, "x"); ok || err != nil {
		t.Errorf("an unknown user: %v, %v", ok, err)
	}
	for _, sl := range d.pool {
		if sl.conn == nil {
			continue
		}
		who, err := sl.conn.WhoAmI(nil)
		if err != nil || !strings.EqualFold(who.AuthzID, "dn:"+ldaptest.ServiceDN) {
			t.Fatalf("the service connection is bound as %+v, %v", who, err)
		}
	}
}

// TestSetPassword changes John's password as the service account (RFC 3062): the new one
// passes, the old one fails, and the next Lookup is a new *User with a new password version.
func TestSetPassword(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	logs, recorded := observer.New(zap.DebugLevel)
	d := open(t, config(s), zap.New(logs))
	c := ctx(t)
	before, err := d.Lookup(c, "john")
	if err != nil {
		t.Fatal(err)
	}
	// two changes within a second (modifyTimestamp's unit): each gives a new version
	versions := map[string]bool{before.PasswordVersion: true}
	var after *users.User
	for _, pw := range []string{"first-Pa55word", "new-Pa55word"} {
		if err := d.SetPassword(c, before, pw); err != nil {
			t.Fatal(err)
		}
		if after, err = d.Lookup(c, "john"); err != nil {
			t.Fatal(err)
		}
		if after == before || versions[after.PasswordVersion] || after.PasswordVersion == "" {
			t.Fatalf("after a password change: same user %v, version %q seen before (%v)", after == before, after.PasswordVersion, versions)
		}
		versions[after.PasswordVersion] = true
	}
	if ok, _ := d.CheckPassword(c, after, "new-Pa55word"); !ok {
		t.Fatal("the new password fails")
	}
	for _, old := range []string{"john-password", "first-Pa55word"} {
		if ok, _ := d.CheckPassword(c, after, old); ok {
			t.Fatalf("the old password %q passes", old)
		}
	}
	// an unknown user: not found, and no password logged
	err = d.SetPassword(c, &users.User{Name: "ghost"}, "x-Pa55word")
	if !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("an unknown user's password: %v", err)
	}
	for _, e := range recorded.All() {
		if strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), "Pa55word") {
			t.Fatalf("a password was logged: %v", e)
		}
	}
}

func TestUnicodePwd(t *testing.T) {
	got := unicodePwd("ab€")
	want := "\"\x00a\x00b\x00\xac\x20\"\x00"
	if got != want {
		t.Fatalf("unicodePwd = %q, want %q", got, want)
	}
}

// TestMemberOf reads groups from memberOf (the overlay keeps it): by the RDN when it is the
// group name attribute, by the entry otherwise, and with {memberof:rdn} in groups_filter; a group
// outside the groups base is not one.
func TestMemberOf(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	c := ctx(t)
	for _, filter := range []string{"", "(&(|{memberof:rdn})(objectClass=groupOfNames))"} {
		cfg := config(s)
		cfg.GroupSearchMode = GroupSearchModeMemberOf
		cfg.Attributes.MemberOf = "memberOf"
		cfg.GroupsFilter = filter
		d := open(t, cfg, nil)
		for name, want := range map[string][]string{"john": {"admins", "dev"}, "ann": {"dev", "ops"}, "zoë": nil} {
			u, err := d.Lookup(c, name)
			if err != nil || !slices.Equal(u.Groups, want) {
				t.Errorf("groups_filter %q: %s's groups = %v, %v; want %v", filter, name, u.Groups, err, want)
			}
		}
	}
}

// TestCacheSeesChanges: within cache_ttl a lookup is the cached *User (even with the server
// stopped); a group removed in the directory is seen after cache_ttl, as a new *User (the old
// one unchanged); a user added is found after the negative cache's time.
func TestCacheSeesChanges(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	cfg := config(s)
	cfg.CacheTTL = duration.Duration(400 * time.Millisecond)
	d := open(t, cfg, nil)
	c := ctx(t)
	u1, err := d.Lookup(c, "john")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(c, "newbie"); !errors.Is(err, users.ErrNotFound) {
		t.Fatal(err)
	}
	s.Modify(t, `dn: cn=admins,ou=groups,dc=example,dc=com
changetype: modify
replace: member
member: uid=ann,ou=people,dc=example,dc=com

dn: uid=newbie,ou=people,dc=example,dc=com
changetype: add
objectClass: inetOrgPerson
uid: newbie
cn: New
sn: Bie
userPassword: newbie-password
`)
	if u, err := d.Lookup(c, "John"); err != nil || u != u1 {
		t.Fatalf("within cache_ttl: %v %v", u, err)
	}
	if _, err := d.Lookup(c, "newbie"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("within the negative cache: %v", err)
	}
	began := time.Now()
	var u2 *users.User
	for {
		u2, err = d.Lookup(c, "john")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(u2.Groups, "admins") {
			break
		}
		if time.Since(began) > 2*time.Second {
			t.Fatalf("the removed group is still there after %v (cache_ttl 400ms)", time.Since(began))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the group removal was seen after %v (cache_ttl 400ms)", time.Since(began))
	if u2 == u1 || !slices.Equal(u1.Groups, []string{"admins", "dev"}) || !slices.Equal(u2.Groups, []string{"dev"}) {
		t.Fatalf("old %v new %v (same %v)", u1.Groups, u2.Groups, u1 == u2)
	}
	for {
		u, err := d.Lookup(c, "newbie")
		if err == nil && u.Name == "newbie" {
			break
		}
		if !errors.Is(err, users.ErrNotFound) || time.Since(began) > 2*time.Second {
			t.Fatalf("the user added, %v after: %v %v", time.Since(began), u, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// an unchanged entry stays the same *User past cache_ttl
	time.Sleep(450 * time.Millisecond)
	if u3, _ := d.Lookup(c, "john"); u3 != u2 {
		t.Fatal("an unchanged entry gave a new *User")
	}
	// within cache_ttl the gate does not need the directory
	u4, _ := d.Lookup(c, "john")
	s.Stop()
	if u, err := d.Lookup(c, "john"); err != nil || u != u4 {
		t.Fatalf("a cached user with the server stopped: %v %v", u, err)
	}
	s.StartAgain()
}

// TestDirectoryDown: with the server stopped, Lookup, CheckPassword, SetPassword and Check fail
// with ErrUnavailable (never ErrNotFound, never a pass), quickly, and the outage is logged once;
// started again, everything works within a second without a new Directory, and the return is
// logged. A server that accepts but never answers is unavailable within the pooling timeout, and
// right after that operations fail at once; a caller that gives up does not count as an outage.
func TestDirectoryDown(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	cfg := config(s)
	cfg.CacheTTL = duration.Duration(time.Millisecond)
	cfg.Pooling = Pooling{Enable: true, Count: 3}
	logs, recorded := observer.New(zap.InfoLevel)
	d := open(t, cfg, zap.New(logs))
	c := ctx(t)
	john, err := d.Lookup(c, "john")
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	time.Sleep(5 * time.Millisecond)
	began := time.Now()
	if u, err := d.Lookup(c, "john"); !errors.Is(err, users.ErrUnavailable) || errors.Is(err, users.ErrNotFound) {
		t.Fatalf("Lookup with the server down: %v, %v", u, err)
	}
	if ok, err := d.CheckPassword(c, john, "john-password"); ok || !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("CheckPassword with the server down: %v, %v", ok, err)
	}
	if err := d.SetPassword(c, john, "x-Pa55word"); !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("SetPassword with the server down: %v", err)
	}
	if err := d.Check(c); !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("Check with the server down: %v", err)
	}
	t.Logf("four operations failed in %v with the server down", time.Since(began))
	if time.Since(began) > 3*time.Second {
		t.Errorf("a refused connection took %v to report", time.Since(began))
	}
	if n := recorded.FilterMessageSnippet("cannot be reached").Len(); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	s.StartAgain()
	back := time.Now()
	for {
		_, err := d.Lookup(c, "ann")
		if err == nil {
			break
		}
		if !errors.Is(err, users.ErrUnavailable) || time.Since(back) > 3*time.Second {
			t.Fatalf("%v after the restart: %v", time.Since(back), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("lookups work again %v after the restart", time.Since(back))
	if recorded.FilterMessageSnippet("answers again").Len() != 1 {
		t.Error("the directory's return was not logged")
	}
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if u, err := d.Lookup(c, "ann"); err != nil || u.Name != "ann" {
				t.Errorf("after the restart: %v %v", u, err)
			}
		})
	}
	wg.Wait()
	if ok, err := d.CheckPassword(c, john, "john-password"); !ok || err != nil {
		t.Fatalf("CheckPassword after the restart: %v %v", ok, err)
	}

	// a server that never answers
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	cfg.Address = "ldap://" + l.Addr().String()
	cfg.Timeout = duration.Duration(200 * time.Millisecond)
	cfg.Pooling.Timeout = duration.Duration(time.Second)
	mute := open(t, cfg, nil)
	began = time.Now()
	if _, err := mute.Lookup(c, "john"); !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("a mute server: %v", err)
	}
	if took := time.Since(began); took > 1500*time.Millisecond {
		t.Fatalf("a mute server took %v (pooling timeout 1s)", took)
	}
	// right after, lookups fail at once instead of waiting for the timeout again
	began = time.Now()
	if _, err := mute.Lookup(c, "ann"); !errors.Is(err, users.ErrUnavailable) || time.Since(began) > 100*time.Millisecond {
		t.Fatalf("a lookup right after the mute server's timeout: %v in %v", err, time.Since(began))
	}
	if ok, err := mute.CheckPassword(c, john, "john-password"); ok || !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("CheckPassword right after the mute server's timeout: %v %v", ok, err)
	}
	// a caller that gives up is not an outage
	fresh := open(t, cfg, nil)
	gone, cancel := context.WithTimeout(c, 50*time.Millisecond)
	defer cancel()
	if _, err := fresh.Lookup(gone, "john"); !errors.Is(err, users.ErrUnavailable) {
		t.Fatalf("a lookup whose caller left: %v", err)
	}
	if fresh.down() != nil {
		t.Fatal("a caller that left marked the directory down")
	}
}

// TestTLS reaches the server over ldaps:// and StartTLS with its CA in tls ca_file (refused
// without it: the certificate is verified), with skip_verify, and over ldapi://. A ca_file that
// is not there is read at the first dial (New succeeds, as caddy validate must where the file is
// not), and makes the directory unavailable.
func TestTLS(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	for _, tc := range []struct {
		name     string
		address  string
		startTLS bool
		tls      *TLSConfig
		ok       bool
	}{
		{"ldaps with ca_file", s.TLSURL(), false, &TLSConfig{CAFile: ca}, true},
		{"ldaps, TLS 1.3 only", s.TLSURL(), false, &TLSConfig{CAFile: ca, MinimumVersion: "TLS1.3"}, true},
		{"ldaps with the system roots", s.TLSURL(), false, nil, false},
		{"ldaps with the wrong server_name", s.TLSURL(), false, &TLSConfig{CAFile: ca, ServerName: "ldap.example.net"}, false},
		{"ldaps with skip_verify", s.TLSURL(), false, &TLSConfig{SkipVerify: true}, true},
		{"StartTLS with ca_file", s.URL(), true, &TLSConfig{CAFile: ca}, true},
		{"StartTLS with the system roots", s.URL(), true, nil, false},
		{"ldapi", s.SocketURL(), false, nil, true},
		{"a ca_file that is not there", s.TLSURL(), false, &TLSConfig{CAFile: filepath.Join(t.TempDir(), "none.pem")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(s)
			cfg.Address, cfg.StartTLS, cfg.TLS = tc.address, tc.startTLS, tc.tls
			cfg.Pooling.Retries = 1
			d := open(t, cfg, nil)
			u, err := d.Lookup(c, "john")
			if tc.ok != (err == nil) {
				t.Fatalf("Lookup: %v %v", u, err)
			}
			if err != nil && !errors.Is(err, users.ErrUnavailable) {
				t.Fatalf("a TLS failure is not ErrUnavailable: %v", err)
			}
			if tc.ok {
				if ok, err := d.CheckPassword(c, u, "john-password"); !ok || err != nil {
					t.Fatalf("CheckPassword: %v %v", ok, err)
				}
			}
		})
	}
}

// TestCheck binds as the service account and reads base_dn; a wrong service password or a
// missing base_dn fails it, without the password in the error or the logs.
func TestCheck(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	c := ctx(t)
	if err := open(t, config(s), nil).Check(c); err != nil {
		t.Fatal(err)
	}
	logs, recorded := observer.New(zap.DebugLevel)
	cfg := config(s)
	cfg.Password = "wrong-" + servicePassword
	err := open(t, cfg, zap.New(logs)).Check(c)
	if !errors.Is(err, users.ErrUnavailable) || strings.Contains(err.Error(), servicePassword) {
		t.Fatalf("a wrong service password: %v", err)
	}
	if recorded.FilterMessageSnippet("refused the service account's password").Len() == 0 {
		t.Fatal("a refused service account was not logged")
	}
	for _, e := range recorded.All() {
		if strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), servicePassword) {
			t.Fatalf("the service password was logged: %v", e)
		}
	}
	cfg = config(s)
	cfg.BaseDN = "dc=example,dc=org"
	if err := open(t, cfg, nil).Check(c); err == nil {
		t.Fatal("a missing base_dn passed the check")
	}
}

// TestNewDoesNotConnect: New with an address nothing listens on succeeds (caddy validate must
// not reach the network); the first lookup is unavailable.
func TestNewDoesNotConnect(t *testing.T) {
	d, err := New(Config{Address: "ldap://127.0.0.1:1", BaseDN: "dc=example,dc=com", User: "cn=x,dc=example,dc=com",
		Password: "p", UsersFilter: "(uid={input})", GroupsFilter: "(member={dn})", Attributes: Attributes{Username: "uid"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Lookup(context.Background(), "x"); !errors.Is(err, users.ErrUnavailable) {
		t.Fatal(err)
	}
}

// TestValidate fills the presets' defaults and refuses bad configs, naming the key.
func TestValidate(t *testing.T) {
	base := func() Config {
		return Config{Address: "ldap://ldap.example.com", BaseDN: "dc=example,dc=com", User: "cn=svc,dc=example,dc=com", Password: "p"}
	}
	ad := base()
	ad.Implementation = "activedirectory"
	if err := ad.Validate(); err != nil {
		t.Fatal(err)
	}
	if ad.Attributes.Username != "sAMAccountName" || !strings.Contains(ad.UsersFilter, "userAccountControl:1.2.840.113556.1.4.803:=2") ||
		ad.GroupSearchMode != "filter" || time.Duration(ad.Timeout) != 5*time.Second || time.Duration(ad.CacheTTL) != DefaultCacheTTL {
		t.Fatalf("activedirectory defaults: %+v", ad)
	}
	ll := base()
	ll.Implementation = "lldap"
	if err := ll.Validate(); err != nil || ll.AdditionalUsersDN != "OU=people" || ll.Attributes.DisplayName != "cn" {
		t.Fatalf("lldap defaults: %+v %v", ll, err)
	}
	for _, impl := range []string{"rfc2307bis", "freeipa", "glauth"} {
		c := base()
		c.Implementation = impl
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", impl, err)
		}
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) {}, "attributes username is required"},
		{func(c *Config) { c.Attributes.Username = "uid" }, "users_filter is required"},
		{func(c *Config) { c.Implementation = "openldap" }, "implementation \"openldap\""},
		{func(c *Config) { c.Implementation = "lldap"; c.UsersFilter = "(uid=john)" }, "users_filter must contain {input}"},
		{func(c *Config) { c.Implementation = "lldap"; c.UsersFilter = "(uid={input}" }, "users_filter: not a valid LDAP filter"},
		{func(c *Config) { c.Implementation = "lldap"; c.UsersFilter = "(uid={inptu}{input})" }, "unknown placeholder {inptu}"},
		{func(c *Config) { c.Implementation = "lldap"; c.Address = "ldap.example.com" }, "address \"ldap.example.com\""},
		{func(c *Config) { c.Implementation = "lldap"; c.Address = "ldapi://relative" }, "absolute path"},
		{func(c *Config) { c.Implementation = "lldap"; c.Address = "ldaps://h"; c.StartTLS = true }, "start_tls"},
		{func(c *Config) { c.Implementation = "lldap"; c.BaseDN = "" }, "base_dn is required"},
		{func(c *Config) { c.Implementation = "lldap"; c.BaseDN = "example.com" }, "base_dn \"example.com\""},
		{func(c *Config) { c.Implementation = "lldap"; c.User = "" }, "user is required"},
		{func(c *Config) { c.Implementation = "lldap"; c.Password = "" }, "password is required"},
		{func(c *Config) { c.UsersFilter = "(uid={input})"; c.Attributes.Username = "uid" }, "groups_filter is required"},
		{func(c *Config) { c.Implementation = "lldap"; c.GroupSearchMode = "memberOf" }, "group_search_mode \"memberOf\""},
		{func(c *Config) {
			c.Implementation = "custom"
			c.Attributes.Username = "uid"
			c.UsersFilter = "(uid={input})"
			c.GroupSearchMode = "memberof"
		}, "member_of"},
		{func(c *Config) { c.Implementation = "lldap"; c.GroupsFilter = "(|{memberof:rdn})" }, "need group_search_mode memberof"},
		{func(c *Config) { c.Implementation = "lldap"; c.TLS = &TLSConfig{MinimumVersion: "TLS1.0"} }, "tls minimum_version"},
		{func(c *Config) { c.Implementation = "lldap"; c.TLS = &TLSConfig{CertificateChain: "c.pem"} }, "private_key"},
		{func(c *Config) { c.Implementation = "lldap"; c.Pooling.Count = 1000 }, "pooling count"},
	} {
		c := base()
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ldap: ") {
			t.Errorf("%+v: error %v, want one containing %q", c, err, tc.want)
		}
	}
}

// TestDateTimes fills users_filter's time placeholders.
func TestDateTimes(t *testing.T) {
	now := time.Date(2026, 12, 2, 17, 30, 5, 0, time.UTC)
	got := dateTimes("({date-time:generalized})({date-time:unix})({date-time:microsoft-nt})", now)
	if got != "(20261202173005.0Z)(1796232605)(134407062050000000)" {
		t.Fatal(got)
	}
	if _, err := goldap.CompileFilter(dateTimes("(&(a>={date-time:generalized})(b={input}))", now)); err != nil {
		t.Fatal(err)
	}
}

// TestPresets runs the lldap and rfc2307bis presets against slapd: John is found by mail with
// his groups and the preset's display name, and rfc2307bis leaves out an account whose password
// must be reset (pwdReset, which needs the ppolicy overlay to be defined: without it OpenLDAP
// matches nobody, and users_filter must be set).
func TestPresets(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	c := ctx(t)
	for impl, display := range map[string]string{ImplementationLLDAP: "John Doe", ImplementationRFC2307bis: "John Doe"} {
		cfg := Config{Implementation: impl, Address: s.URL(), BaseDN: ldaptest.BaseDN, User: ldaptest.ServiceDN, Password: servicePassword}
		if impl == ImplementationRFC2307bis {
			cfg.AdditionalUsersDN, cfg.AdditionalGroupsDN = "ou=people", "ou=groups"
		}
		d := open(t, cfg, nil)
		u, err := d.Lookup(c, "john@example.com")
		if err != nil || u.Name != "John" || u.DisplayName != display || !slices.Equal(u.Groups, []string{"admins", "dev"}) {
			t.Fatalf("%s: %+v %v", impl, u, err)
		}
		if ok, err := d.CheckPassword(c, u, "john-password"); !ok || err != nil {
			t.Fatalf("%s: CheckPassword %v %v", impl, ok, err)
		}
	}
	s.Modify(t, "dn: uid=ann,ou=people,dc=example,dc=com\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n")
	cfg := Config{Implementation: ImplementationRFC2307bis, Address: s.URL(), BaseDN: ldaptest.BaseDN, User: ldaptest.ServiceDN,
		Password: servicePassword, AdditionalUsersDN: "ou=people", AdditionalGroupsDN: "ou=groups"}
	if u, err := open(t, cfg, nil).Lookup(c, "ann"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("rfc2307bis found ann, whose password must be reset: %+v %v", u, err)
	}
}

// TestSetPasswordActiveDirectory: implementation activedirectory sets unicodePwd with a modify
// rather than the extended operation (slapd, which has no unicodePwd, says so), and the error is
// not a pass and shows no password.
func TestSetPasswordActiveDirectory(t *testing.T) {
	s := ldaptest.Start(t, fixture)
	cfg := config(s)
	cfg.Implementation = ImplementationActiveDirectory
	d := open(t, cfg, nil)
	c := ctx(t)
	u, err := d.Lookup(c, "john")
	if err != nil {
		t.Fatal(err)
	}
	err = d.SetPassword(c, u, "ad-Pa55word")
	if err == nil || !strings.Contains(err.Error(), "unicodePwd") || strings.Contains(err.Error(), "Pa55word") {
		t.Fatalf("SetPassword on activedirectory against slapd: %v", err)
	}
	if ok, _ := d.CheckPassword(c, u, "john-password"); !ok {
		t.Fatal("the password changed")
	}
}
