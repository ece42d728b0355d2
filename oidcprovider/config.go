package oidcprovider

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
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
}

// ClientConfig is one registered client; see clients.Config for its fields.
type ClientConfig = clients.Config

// Default lifespans (Authelia's).
var defaultLifespans = Lifespans{
	AccessToken:   caddy.Duration(3600e9),
	AuthorizeCode: caddy.Duration(60e9),
	IDToken:       caddy.Duration(3600e9),
	RefreshToken:  caddy.Duration(5400e9),
}

// StorageConfig is the embedded Badger database: where it lives and how much memory it may use.
// In JSON it is either the directory as a string or an object with "dir" and the settings of
// store.Options.
type StorageConfig struct {
	// Dir is the database directory. One database per directory is shared by every config of
	// the process. JSON: "dir". Default: <caddy data dir>/portcullis.
	Dir string `json:"dir,omitempty"`
	// Options size the database's memory; zero values take the gateway-sized defaults.
	store.Options
}

// MarshalJSON writes the directory alone as a string when no setting is given.
func (s StorageConfig) MarshalJSON() ([]byte, error) {
	if s.Options == (store.Options{}) {
		return json.Marshal(s.Dir)
	}
	type plain StorageConfig
	return json.Marshal(plain(s))
}

// UnmarshalJSON reads a directory string or an object; unknown keys are an error.
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
