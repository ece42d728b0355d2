package oidcprovider

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Lifespans are how long each kind of token lives. A zero value takes the default.
type Lifespans struct {
	// AccessToken is the access token lifespan. JSON: "access_token". Default: 1h.
	AccessToken caddy.Duration `json:"access_token,omitempty"`
	// AuthorizeCode is the authorization code lifespan. JSON: "authorize_code". Default: 1m.
	AuthorizeCode caddy.Duration `json:"authorize_code,omitempty"`
	// IDToken is the ID token lifespan. JSON: "id_token". Default: 1h.
	IDToken caddy.Duration `json:"id_token,omitempty"`
	// RefreshToken is the refresh token lifespan. JSON: "refresh_token". Default: 90m.
	RefreshToken caddy.Duration `json:"refresh_token,omitempty"`
	// DeviceCode is how long a device code and its user code (RFC 8628, the device
	// authorization grant) wait for the person to approve at /device. JSON: "device_code".
	// Default: 10m.
	DeviceCode caddy.Duration `json:"device_code,omitempty"`
	// Custom holds named lifespan sets that a client selects with its "lifespan" option; a zero
	// value in a set falls back to the global one. JSON: "custom". Default: none.
	Custom map[string]Lifespans `json:"custom,omitempty"`
}

// SigningKey is one key the provider signs with.
type SigningKey struct {
	// KeyID is the JWK "kid". JSON: "key_id". Default: the first 7 hex digits of the key's
	// SHA-256 JWK thumbprint, "-", and the lowercase algorithm (e.g. "3f2a9c1-rs256").
	KeyID string `json:"key_id,omitempty"`
	// Algorithm is the JWS algorithm: RS256/384/512, PS256/384/512 for RSA keys (at least 2048
	// bits), ES256/384/512 for EC keys of the matching curve. JSON: "algorithm". Default: RS256 for
	// RSA keys and the curve's algorithm for EC keys.
	Algorithm string `json:"algorithm,omitempty"`
	// KeyFile is a PEM file holding the private key in PKCS#1, SEC 1 or PKCS#8 form.
	// JSON: "key_file". Required.
	KeyFile string `json:"key_file"`
	// Retired keeps the key in the JWKS, so the tokens it signed still verify, but signs nothing
	// new: the last step of a rotation, until those tokens have expired. JSON: "retired".
	// Default: false.
	Retired bool `json:"retired,omitempty"`
}

// ClientConfig is one registered client; see clients.Config for its fields.
type ClientConfig = clients.Config

// ClientKey is one public key of a client; see clients.ClientKey.
type ClientKey = clients.ClientKey

// Default lifespans (Authelia's).
var defaultLifespans = Lifespans{
	AccessToken:   caddy.Duration(3600e9),
	AuthorizeCode: caddy.Duration(60e9),
	IDToken:       caddy.Duration(3600e9),
	RefreshToken:  caddy.Duration(5400e9),
	DeviceCode:    caddy.Duration(600e9),
}

// StorageConfig is where the provider keeps its records: the embedded Badger database (the
// default, for one node) or a PostgreSQL database that several nodes share.
//
// In JSON it takes one of three forms:
//
//	"storage": "/var/lib/caddy/portcullis"                   Badger in that directory
//	"storage": {"dir": "/var/lib/…", "memtable_size": …}     Badger with settings (store.Options)
//	"storage": {"postgres": {"address": "tcp://…", …}}       PostgreSQL (postgres.Config)
//
// An object that names "postgres" together with "dir" or a Badger setting is an error.
type StorageConfig struct {
	// Dir is the Badger database directory. One database per directory is shared by every config
	// of the process. JSON: "dir". Default: <caddy data dir>/portcullis. Badger only.
	Dir string `json:"dir,omitempty"`
	// Options size the Badger database's memory; zero values take the gateway-sized defaults.
	// JSON: their own keys beside "dir" (memtable_size, num_memtables, block_cache_size,
	// index_cache_size, value_log_file_size, gc_interval). Badger only.
	store.Options
	// Postgres, when set, keeps every shared record in PostgreSQL instead of Badger, so that
	// several Caddy nodes with the same Caddyfile act as one provider. Its keys are Authelia's
	// storage.postgres keys (dsn, or address, database, schema, username, password, timeout,
	// max_connections, tls); {env.*} and {file.*} placeholders in them are resolved at start.
	// `caddy validate` checks the keys without connecting. A node does not start while its
	// database cannot be reached (the error names the database, never the password); once
	// running, it answers 503 with Retry-After while the database is away and recovers by
	// itself. A reload keeps the open pool when the database, user and schema stay the same
	// (other changed keys, the password included, take effect at the next start).
	// JSON: "postgres". Default: none (Badger).
	Postgres *postgres.Config `json:"postgres,omitempty"`
}

// badgerKeys names the JSON keys of s that only Badger takes and that are set.
func (s StorageConfig) badgerKeys() []string {
	var set []string
	add := func(name string, on bool) {
		if on {
			set = append(set, name)
		}
	}
	add("dir", s.Dir != "")
	add("memtable_size", s.MemTableSize != 0)
	add("num_memtables", s.NumMemtables != 0)
	add("block_cache_size", s.BlockCacheSize != 0)
	add("index_cache_size", s.IndexCacheSize != 0)
	add("value_log_file_size", s.ValueLogFileSize != 0)
	add("gc_interval", s.GCInterval != 0)
	return set
}

// check reports a storage that names both PostgreSQL and Badger settings.
func (s StorageConfig) check() error {
	if s.Postgres == nil {
		return nil
	}
	if set := s.badgerKeys(); len(set) > 0 {
		return fmt.Errorf("storage: \"postgres\" and %q cannot be given together: %q is a setting of the embedded Badger store; remove it, or remove \"postgres\" to keep Badger", set[0], set[0])
	}
	return nil
}

// MarshalJSON writes the Badger directory alone as a string when no setting is given.
func (s StorageConfig) MarshalJSON() ([]byte, error) {
	if s.Options == (store.Options{}) && s.Postgres == nil {
		return json.Marshal(s.Dir)
	}
	type plain StorageConfig
	return json.Marshal(plain(s))
}

// UnmarshalJSON reads a directory string or an object; unknown keys, and "postgres" together
// with a Badger key, are an error.
func (s *StorageConfig) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*s = StorageConfig{}
		return json.Unmarshal(b, &s.Dir)
	}
	type plain StorageConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := StorageConfig(p).check(); err != nil {
		return err
	}
	*s = StorageConfig(p)
	return nil
}

// ClaimsPolicy is one of the provider's claims_policies: which claims the ID tokens of the
// clients that name it carry.
type ClaimsPolicy struct {
	// IDToken lists the claims of the granted scopes the ID token carries, beside the protocol
	// claims it always has (iss, sub, aud, exp, iat, auth_time, nonce, acr, amr, azp, jti,
	// at_hash, c_hash, sid); the others are served by userinfo only. Authelia's restoring
	// example is rat, groups, email, email_verified, alt_emails, preferred_username and name.
	// JSON: "id_token". Default: none (a minimal ID token).
	IDToken []string `json:"id_token,omitempty"`
}
