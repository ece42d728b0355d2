package postgres

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

// Config is how to reach the database. Its keys are Authelia's storage.postgres keys, so that
// import-authelia carries them over. Either DSN or the separate keys are given, not both.
type Config struct {
	// DSN is a complete connection string (postgres://user:pass@host:port/db?sslmode=…, or
	// libpq's key=value form); JSON "dsn". When set, Address, Database, Username, Password and
	// TLS must be empty.
	DSN string `json:"dsn,omitempty"`

	// Address is the server: tcp://host:port (port defaults to 5432) or unix:///dir/of/socket
	// (the socket dir/.s.PGSQL.5432; write unix:///dir/.s.PGSQL.<port> for another port); JSON
	// "address". Required unless DSN is set.
	Address string `json:"address,omitempty"`

	// Database is the database name; JSON "database". Required unless DSN is set.
	Database string `json:"database,omitempty"`

	// Schema is the schema the provider's tables live in, created when missing; JSON "schema".
	// Default: public.
	Schema string `json:"schema,omitempty"`

	// Username and Password authenticate to the server; JSON "username", "password". Use a
	// placeholder such as {env.PORTCULLIS_DB_PASSWORD} rather than the password itself.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// Timeout bounds each statement; JSON "timeout". Default: 5s.
	Timeout duration.Duration `json:"timeout,omitempty"`

	// MaxConnections is the size of the connection pool; JSON "max_connections".
	// Default: 4 × GOMAXPROCS.
	MaxConnections int `json:"max_connections,omitempty"`

	// TLS, when set, makes the connection use TLS (verified unless SkipVerify); JSON "tls".
	TLS *TLSConfig `json:"tls,omitempty"`
}

// TLSConfig is the TLS of the connection to the server, with Authelia's key names.
type TLSConfig struct {
	// ServerName is the name the server's certificate must carry; JSON "server_name". Default:
	// the host of Address.
	ServerName string `json:"server_name,omitempty"`
	// SkipVerify accepts any server certificate; JSON "skip_verify". Default: false. For tests
	// only: it gives the password to whoever answers.
	SkipVerify bool `json:"skip_verify,omitempty"`
	// MinimumVersion is the lowest TLS version, "TLS1.2" or "TLS1.3"; JSON "minimum_version".
	// Default: TLS1.2.
	MinimumVersion string `json:"minimum_version,omitempty"`
	// CertificateChain and PrivateKey are a client certificate (PEM files) for servers that ask
	// for one; JSON "certificate_chain", "private_key".
	CertificateChain string `json:"certificate_chain,omitempty"`
	PrivateKey       string `json:"private_key,omitempty"`
	// CAFile is a PEM file of the certificate authorities that may sign the server's
	// certificate; JSON "ca_file". Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`
}

// The defaults; see Config.
const (
	DefaultSchema  = "public"
	DefaultTimeout = duration.Duration(5 * time.Second)
	// DefaultPort is the server's port when Address gives none.
	DefaultPort = 5432
)

// DefaultMaxConnections is the pool size when max_connections is not set: 4 × GOMAXPROCS.
func DefaultMaxConnections() int { return 4 * runtime.GOMAXPROCS(0) }

// WithDefaults returns c with every zero field that has a default set to it: schema public,
// timeout 5s, max_connections 4 × GOMAXPROCS.
func (c Config) WithDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections()
	}
	return c
}

// schemaName is what a schema may be called: a plain SQL identifier, so that it needs no quoting
// in logs or psql and stays within PostgreSQL's 63-byte limit.
var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Validate reports the first key that is missing, malformed or out of range, naming it and the
// fix. It needs no database and reads none of the tls keys' files (Open checks that they are
// readable), so `caddy validate` works where the database cannot be reached; a dsn is parsed as
// pgx would (which reads the files its sslrootcert, sslcert and sslkey name). Zero fields with a
// default are valid.
func (c Config) Validate() error {
	const p = "storage postgres: "
	if c.DSN != "" {
		var others []string
		for _, f := range []struct {
			key string
			set bool
		}{
			{"address", c.Address != ""}, {"database", c.Database != ""}, {"username", c.Username != ""},
			{"password", c.Password != ""}, {"tls", c.TLS != nil},
		} {
			if f.set {
				others = append(others, f.key)
			}
		}
		if len(others) > 0 {
			return fmt.Errorf(p+"dsn and %s are exclusive: give either dsn or the separate keys (address, database, username, password, tls), not both", strings.Join(others, ", "))
		}
		if _, err := pgconn.ParseConfig(c.DSN); err != nil {
			// pgconn's message may quote the DSN, password included: do not repeat it
			return errors.New(p + "dsn is not a valid connection string: write postgres://user:password@host:port/database?sslmode=… or libpq's key=value form")
		}
	} else {
		if c.Address == "" {
			return errors.New(p + "address is required (tcp://host[:port] or unix:///dir/of/socket), or give dsn instead")
		}
		if _, _, _, err := parseAddress(c.Address); err != nil {
			return fmt.Errorf(p+"address %q must be tcp://host[:port] or unix:///dir: %v", c.Address, err)
		}
		if c.Database == "" {
			return errors.New(p + "database is required: the name of the database to use, or give dsn instead")
		}
	}
	if c.Schema != "" && !schemaName.MatchString(c.Schema) {
		return fmt.Errorf(p+"schema %q must be a plain identifier: a letter or underscore, then letters, digits or underscores, at most 63 in all", c.Schema)
	}
	if c.Timeout < 0 {
		return fmt.Errorf(p+"timeout must be at least 0 (0 means the default, 5s), got %s", time.Duration(c.Timeout))
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf(p+"max_connections must be at least 0 (0 means the default, 4 × GOMAXPROCS), got %d", c.MaxConnections)
	}
	if t := c.TLS; t != nil {
		if _, err := tlsVersion(t.MinimumVersion); err != nil {
			return fmt.Errorf(p+"tls minimum_version %w", err)
		}
		if (t.CertificateChain == "") != (t.PrivateKey == "") {
			return errors.New(p + "tls certificate_chain and private_key go together: give both (a client certificate) or neither")
		}
	}
	return nil
}

// tlsVersion reads minimum_version; empty means TLS 1.2.
func tlsVersion(v string) (uint16, error) {
	switch strings.ToUpper(strings.ReplaceAll(v, " ", "")) {
	case "", "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q must be TLS1.2 or TLS1.3", v)
}

// parseAddress reads address: tcp://host[:port] gives host and port (5432 when absent); unix:///dir
// gives the socket directory as host (the socket is dir/.s.PGSQL.5432, as libpq has it), and
// unix:///dir/.s.PGSQL.<port> the directory and the port of a server on another port.
func parseAddress(addr string) (host string, port uint16, unix bool, err error) {
	u, err := url.Parse(addr)
	if err != nil {
		return "", 0, false, err
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", 0, false, errors.New("it takes no user, query or fragment")
	}
	switch u.Scheme {
	case "tcp":
		if u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", 0, false, errors.New("tcp:// needs a host and no path")
		}
		host, port = u.Hostname(), DefaultPort
		if host == "" {
			return "", 0, false, errors.New("tcp:// needs a host")
		}
		if ps := u.Port(); ps != "" {
			n, err := strconv.ParseUint(ps, 10, 16)
			if err != nil || n == 0 {
				return "", 0, false, fmt.Errorf("port %q is not a number from 1 to 65535", ps)
			}
			port = uint16(n)
		}
		return host, port, false, nil
	case "unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return "", 0, false, errors.New("unix:// needs an absolute directory, as in unix:///run/postgresql")
		}
		dir, file := path.Split(path.Clean(u.Path))
		if p, ok := strings.CutPrefix(file, ".s.PGSQL."); ok {
			// the socket itself: its name carries the port
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return "", 0, false, fmt.Errorf("socket %q does not end in a port from 1 to 65535", file)
			}
			return path.Clean(dir), uint16(n), true, nil
		}
		return path.Clean(u.Path), DefaultPort, true, nil
	}
	return "", 0, false, fmt.Errorf("scheme %q is neither tcp nor unix", u.Scheme)
}

// Identity names the database and schema c designates, with the user it connects as: two
// configs with the same Identity may share one open Store (a caddy.UsagePool key). It never
// contains the password. Two spellings of one server (a host name and its address) are
// different identities, which costs a second pool and nothing else.
func (c Config) Identity() string {
	c = c.WithDefaults()
	var host, user, db string
	var port uint16
	if c.DSN != "" {
		pc, err := pgconn.ParseConfig(c.DSN)
		if err != nil {
			// Validate refuses it; anything that tells two such configs apart but holds no secret
			sum := sha256.Sum256([]byte(c.DSN))
			return "postgres-dsn:" + hex.EncodeToString(sum[:8]) + "/" + c.Schema
		}
		host, port, user, db = pc.Host, pc.Port, pc.User, pc.Database
	} else {
		h, p, _, err := parseAddress(c.Address)
		if err != nil {
			h = c.Address
		}
		host, port, user, db = h, p, c.Username, c.Database
	}
	return fmt.Sprintf("postgres://%s@%s/%s?schema=%s",
		url.PathEscape(user), net.JoinHostPort(host, strconv.Itoa(int(port))), url.PathEscape(db), url.QueryEscape(c.Schema))
}
