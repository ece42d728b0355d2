package oidcprovider

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/users/ldap"
)

// ldapBlock is the ldap block of issue 17, one key per line.
const ldapBlock = `ldap {
	implementation custom
	address ldaps://ldap.example.com
	start_tls false
	tls {
		server_name ldap.example.com
		minimum_version TLS1.2
		maximum_version TLS1.3
		skip_verify false
		ca_file /etc/ssl/ldap-ca.pem
	}
	timeout 5s
	base_dn dc=example,dc=com
	additional_users_dn ou=people
	users_filter (&({username_attribute}={input})(objectClass=person))
	additional_groups_dn ou=groups
	groups_filter (&(member={dn})(objectClass=groupOfNames))
	group_search_mode filter
	user cn=portcullis,ou=services,dc=example,dc=com
	password {env.LDAP_PASSWORD}
	attributes {
		username uid
		display_name displayName
		mail mail
		member_of memberOf
		group_name cn
		given_name givenName
		family_name sn
	}
	pooling {
		enable
		count 5
		retries 2
		timeout 10s
	}
	cache_ttl 20s
}`

func parseLDAP(t *testing.T, src string) (*ldap.Config, error) {
	t.Helper()
	d := caddyfile.NewTestDispenser(src)
	d.Next()
	return unmarshalLDAP(d)
}

// TestUnmarshalLDAP reads the block into the Config it means (the env placeholder kept
// for provisioning), and the same JSON round-trips.
func TestUnmarshalLDAP(t *testing.T) {
	got, err := parseLDAP(t, ldapBlock)
	if err != nil {
		t.Fatal(err)
	}
	want := &ldap.Config{
		Implementation: "custom",
		Address:        "ldaps://ldap.example.com",
		TLS:            &ldap.TLSConfig{ServerName: "ldap.example.com", MinimumVersion: "TLS1.2", MaximumVersion: "TLS1.3", CAFile: "/etc/ssl/ldap-ca.pem"},
		Timeout:        duration.Duration(5 * time.Second),
		BaseDN:         "dc=example,dc=com", AdditionalUsersDN: "ou=people", AdditionalGroupsDN: "ou=groups",
		UsersFilter:     "(&({username_attribute}={input})(objectClass=person))",
		GroupsFilter:    "(&(member={dn})(objectClass=groupOfNames))",
		GroupSearchMode: "filter",
		User:            "cn=portcullis,ou=services,dc=example,dc=com",
		Password:        "{env.LDAP_PASSWORD}",
		Attributes: ldap.Attributes{Username: "uid", DisplayName: "displayName", Mail: "mail", MemberOf: "memberOf", GroupName: "cn",
			GivenName: "givenName", FamilyName: "sn"},
		Pooling:  ldap.Pooling{Enable: true, Count: 5, Retries: 2, Timeout: duration.Duration(10 * time.Second)},
		CacheTTL: duration.Duration(20 * time.Second),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	js, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back ldap.Config
	if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(&back, want) {
		t.Fatalf("JSON %s round-trips to %+v, %v", js, back, err)
	}
	for _, key := range []string{`"address":`, `"start_tls"`, `"users_filter":`, `"attributes":{"username":"uid"`, `"pooling":{"enable":true,"count":5`, `"cache_ttl":`} {
		if key == `"start_tls"` {
			if strings.Contains(string(js), key) {
				t.Errorf("start_tls false is written: %s", js)
			}
			continue
		}
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON %s lacks %s", js, key)
		}
	}

	// resolving the placeholders fills the password and leaves the filters alone
	t.Setenv("LDAP_PASSWORD", "s3cret-from-env")
	resolved, err := resolveLDAP(caddy.NewReplacer(), *got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resolved.Password != "s3cret-from-env" || resolved.UsersFilter != want.UsersFilter || got.Password != "{env.LDAP_PASSWORD}" {
		t.Fatalf("resolved: %+v", resolved)
	}
	if err := resolved.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LDAP_PASSWORD", "")
	if _, err := resolveLDAP(caddy.NewReplacer(), *got, nil); err == nil || !strings.Contains(err.Error(), "ldap: password resolved to an empty value") {
		t.Fatalf("an empty password: %v", err)
	}
	bad := *got
	bad.Address = "{vault.ldap}"
	if _, err := resolveLDAP(caddy.NewReplacer(), bad, nil); err == nil || !strings.Contains(err.Error(), "ldap: address") {
		t.Fatalf("an unknown placeholder: %v", err)
	}
	// the smallest block
	small, err := parseLDAP(t, "ldap {\n implementation lldap\n address ldap://lldap:3890\n base_dn dc=example,dc=com\n user uid=admin,ou=people,dc=example,dc=com\n password {file./run/secrets/ldap}\n start_tls\n}")
	if err != nil || small.Implementation != "lldap" || !small.StartTLS || small.Password != "{file./run/secrets/ldap}" {
		t.Fatalf("%+v %v", small, err)
	}
}

// TestUnmarshalLDAPErrors: every mistake is refused naming the key, and a password is never
// shown.
func TestUnmarshalLDAPErrors(t *testing.T) {
	for _, c := range []struct{ name, block, want string }{
		{"typo", "ldap {\n adress ldap://h\n}", `ldap: unknown option "adress" (implementation, address,`},
		{"argument", "ldap ldap://h", `ldap takes no argument, got "ldap://h"`},
		{"tls typo", "ldap {\n tls {\n skip_verfy\n }\n}", `ldap: tls: unknown option "skip_verfy"`},
		{"tls argument", "ldap {\n tls on\n}", `ldap: tls takes no argument, got "on"`},
		{"attributes typo", "ldap {\n attributes {\n usrname uid\n }\n}", `ldap: attributes: unknown option "usrname"`},
		{"attributes extra", "ldap {\n attributes {\n extra x\n }\n}", "extra is not supported"},
		{"pooling typo", "ldap {\n pooling {\n size 5\n }\n}", `ldap: pooling: unknown option "size" (enable, count, retries, timeout)`},
		{"pooling count word", "ldap {\n pooling {\n count five\n }\n}", `ldap: pooling: count: "five" must be a whole number`},
		{"timeout", "ldap {\n timeout soon\n}", `timeout: "soon" is not a duration`},
		{"cache_ttl", "ldap {\n cache_ttl -1s\n}", `cache_ttl: "-1s" must be positive`},
		{"start_tls value", "ldap {\n start_tls maybe\n}", `start_tls takes true or false, not "maybe"`},
		{"twice", "ldap {\n base_dn dc=a\n base_dn dc=b\n}", "ldap: base_dn is given twice"},
		{"old url", "ldap {\n url ldap://h\n}", "url is Authelia's old name of address"},
		{"old attribute", "ldap {\n username_attribute uid\n}", "attributes { username … }"},
		{"unsupported", "ldap {\n permit_unauthenticated_bind true\n}", "permit_unauthenticated_bind is not supported"},
		{"password in two words", "ldap {\n password S3cret two\n}", "password takes one value, got more (not shown"},
		{"no value", "ldap {\n base_dn\n}", "base_dn needs a value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseLDAP(t, c.block)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "S3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
