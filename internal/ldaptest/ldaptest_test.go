package ldaptest

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

const testLDIF = `dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=ann,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: ann
cn: Ann
sn: Example
userPassword: ann-password

dn: cn=staff,dc=example,dc=com
objectClass: groupOfNames
cn: staff
member: uid=ann,ou=people,dc=example,dc=com
`

// TestServerStartsStopsAndComesBack starts a directory, binds over ldap://, ldaps:// (verified
// against the server's CA), StartTLS and ldapi://, sees the memberOf overlay at work, changes a
// user's password as that user, stops the server (a dial fails) and starts it again (the data is
// still there).
func TestServerStartsStopsAndComesBack(t *testing.T) {
	began := time.Now()
	s := Start(t, testLDIF)
	t.Logf("started and loaded in %v", time.Since(began))

	tlsConf := &tls.Config{RootCAs: s.CAPool(), ServerName: "127.0.0.1"}
	for _, addr := range []string{s.URL(), s.TLSURL(), s.SocketURL()} {
		c, err := ldap.DialURL(addr, ldap.DialWithTLSConfig(tlsConf))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if err := c.Bind(AdminDN, AdminPassword); err != nil {
			t.Fatalf("%s: admin bind: %v", addr, err)
		}
		c.Close()
	}
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(tlsConf); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := c.Bind("uid=ann,ou=people,dc=example,dc=com", "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
	if err := c.Bind("uid=ann,ou=people,dc=example,dc=com", "ann-password"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest("uid=ann,ou=people,dc=example,dc=com", ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"memberOf"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("search: %v %v", res, err)
	}
	if got := res.Entries[0].GetAttributeValues("memberOf"); len(got) != 1 || got[0] != "cn=staff,dc=example,dc=com" {
		t.Fatalf("memberOf = %q", got)
	}
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest("", "", "ann-new")); err != nil {
		t.Fatalf("password modify as the user: %v", err)
	}
	c.Close()

	s.Stop()
	if c, err := ldap.DialURL(s.URL()); err == nil {
		c.Close()
		t.Fatal("dialled a stopped server")
	}
	began = time.Now()
	s.StartAgain()
	t.Logf("started again in %v", time.Since(began))
	c, err = ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind("uid=ann,ou=people,dc=example,dc=com", "ann-new"); err != nil {
		t.Fatalf("the changed password after a restart: %v", err)
	}
	s.Modify(t, "dn: cn=staff,dc=example,dc=com\nchangetype: modify\nreplace: member\nmember: cn=admin,dc=example,dc=com\n")
	res, err = c.Search(ldap.NewSearchRequest("uid=ann,ou=people,dc=example,dc=com", ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"memberOf"}, nil))
	if err != nil || len(res.Entries) != 1 || len(res.Entries[0].GetAttributeValues("memberOf")) != 0 {
		t.Fatalf("after Modify removed ann from staff: %v %v", res, err)
	}
}
