package postgres

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

func TestConfigDefaults(t *testing.T) {
	d := Config{Address: "tcp://db", Database: "p"}.WithDefaults()
	if d.Schema != "public" || time.Duration(d.Timeout) != 5*time.Second || d.MaxConnections != 4*runtime.GOMAXPROCS(0) {
		t.Fatalf("defaults not applied: %+v", d)
	}
	kept := Config{Schema: "auth", Timeout: duration.Duration(time.Second), MaxConnections: 3}.WithDefaults()
	if kept.Schema != "auth" || kept.Timeout != duration.Duration(time.Second) || kept.MaxConnections != 3 {
		t.Fatalf("set fields overwritten: %+v", kept)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Address: "tcp://127.0.0.1:5432", Database: "portcullis"},
		{Address: "tcp://db.example.com", Database: "portcullis", Username: "u", Password: "p", Schema: "auth_1"},
		{Address: "tcp://[::1]:6543", Database: "portcullis"},
		{Address: "unix:///run/postgresql", Database: "portcullis"},
		{Address: "unix:///run/postgresql/.s.PGSQL.5433", Database: "portcullis"},
		{DSN: "postgres://u:p@db:5432/portcullis?sslmode=disable", Schema: "x"},
		{DSN: "host=db dbname=portcullis user=u sslmode=disable"},
		{Address: "tcp://db", Database: "d", TLS: &TLSConfig{MinimumVersion: "TLS1.3", ServerName: "db"}},
		{Address: "tcp://db", Database: "d", TLS: &TLSConfig{CertificateChain: "/nonexistent/c.pem", PrivateKey: "/nonexistent/k.pem"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []struct {
		c    Config
		want []string
	}{
		{Config{}, []string{"address is required", "dsn"}},
		{Config{Address: "db:5432", Database: "d"}, []string{`address "db:5432" must be tcp://host[:port] or unix:///dir`}},
		{Config{Address: "http://db", Database: "d"}, []string{"address", "tcp://host[:port] or unix:///dir"}},
		{Config{Address: "tcp://db:99999", Database: "d"}, []string{"address", "port"}},
		{Config{Address: "tcp://db/x", Database: "d"}, []string{"address"}},
		{Config{Address: "unix://run/postgresql", Database: "d"}, []string{"address", "unix:///run/postgresql"}},
		{Config{Address: "tcp://db"}, []string{"database is required"}},
		{Config{Address: "unix:///run/.s.PGSQL.x", Database: "d"}, []string{"address", "port"}},
		{Config{DSN: "postgres://u@db/d", Address: "tcp://db", Password: "secret"}, []string{"dsn and address, password are exclusive"}},
		{Config{DSN: "postgres://u:hunter2@db:notaport/d"}, []string{"dsn is not a valid connection string"}},
		{Config{Address: "tcp://db", Database: "d", Schema: "a-b"}, []string{"schema", "identifier"}},
		{Config{Address: "tcp://db", Database: "d", Timeout: -1}, []string{"timeout must be at least 0"}},
		{Config{Address: "tcp://db", Database: "d", MaxConnections: -1}, []string{"max_connections must be at least 0"}},
		{Config{Address: "tcp://db", Database: "d", TLS: &TLSConfig{MinimumVersion: "TLS1.1"}}, []string{"tls minimum_version", "TLS1.2 or TLS1.3"}},
		{Config{Address: "tcp://db", Database: "d", TLS: &TLSConfig{CertificateChain: "c.pem"}}, []string{"certificate_chain and private_key"}},
	} {
		err := c.c.Validate()
		if err == nil {
			t.Errorf("%+v: accepted", c.c)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q does not say %q", c.c, err, w)
			}
		}
		if !strings.HasPrefix(err.Error(), "storage postgres: ") {
			t.Errorf("%q does not name storage postgres", err)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q repeats the password", err)
		}
	}
}

func TestConfigIdentity(t *testing.T) {
	a := Config{Address: "tcp://db:5432", Database: "p", Username: "u", Password: "one"}
	b := Config{Address: "tcp://db", Database: "p", Username: "u", Password: "two", Timeout: duration.Duration(time.Second)}
	if a.Identity() != b.Identity() {
		t.Errorf("same database, default port and explicit: %q != %q", a.Identity(), b.Identity())
	}
	dsn := Config{DSN: "postgres://u:three@db:5432/p"}
	if dsn.Identity() != a.Identity() {
		t.Errorf("dsn and keys of one database: %q != %q", dsn.Identity(), a.Identity())
	}
	for _, other := range []Config{
		{Address: "tcp://db", Database: "p", Username: "u", Schema: "other"},
		{Address: "tcp://db", Database: "q", Username: "u"},
		{Address: "tcp://db2", Database: "p", Username: "u"},
		{Address: "tcp://db:5433", Database: "p", Username: "u"},
		{Address: "tcp://db", Database: "p", Username: "v"},
		{Address: "unix:///run/postgresql", Database: "p", Username: "u"},
		{Address: "unix:///run/postgresql/.s.PGSQL.5433", Database: "p", Username: "u"},
	} {
		if other.Identity() == a.Identity() {
			t.Errorf("%+v shares identity %q", other, a.Identity())
		}
	}
	for _, c := range []Config{a, b, dsn} {
		for _, pw := range []string{"one", "two", "three"} {
			if strings.Contains(c.Identity(), pw) {
				t.Errorf("identity %q contains the password", c.Identity())
			}
		}
	}
}
