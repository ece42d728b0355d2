// Package postgres is Portcullis's shared store: the store.KV and store.Changes interfaces on a
// PostgreSQL database (github.com/jackc/pgx/v5, pgxpool), so that several Caddy nodes with the same
// Caddyfile behave as one provider and one gateway.
package postgres

import (
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

// Config is how to reach the database. Its keys are Authelia's storage.postgres keys, so that
// import-authelia carries them over. Either DSN or the separate keys are given, not both.
type Config struct {
	// DSN is a complete connection string (postgres://user:pass@host:port/db?sslmode=…, or
	// libpq's key=value form); JSON "dsn". When set, Address, Database, Username, Password and
	// TLS must be empty.
	DSN string `json:"dsn,omitempty"`

	// Address is the server: tcp://host:port (port defaults to 5432) or unix:///dir/of/socket;
	// JSON "address". Required unless DSN is set.
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
