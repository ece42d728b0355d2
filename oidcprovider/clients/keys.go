package clients

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// The JWT client authentication methods (RFC 7523, OpenID Connect Core §9).
const (
	// AuthMethodClientSecretJWT is client_secret_jwt: a JWT assertion signed with the client's
	// secret (HMAC).
	AuthMethodClientSecretJWT = "client_secret_jwt"
	// AuthMethodPrivateKeyJWT is private_key_jwt: a JWT assertion signed with the client's
	// private key, verified with the public key it registered (jwks or jwks_uri).
	AuthMethodPrivateKeyJWT = "private_key_jwt"
)

var (
	// hmacAlgs are client_secret_jwt's algorithms.
	hmacAlgs = []string{"HS256", "HS384", "HS512"}
	// hmacKeyBytes is the least secret length of each HMAC algorithm (RFC 7518 §3.2: a key at
	// least as long as the hash output).
	hmacKeyBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}
	// minRSABits is the least RSA key size a client may register.
	minRSABits = 2048
)

// jwtAuth is what a client registered for JWTs it signs: its public keys (inline or at a
// jwks_uri) and, for client_secret_jwt, its secret as an HMAC key.
type jwtAuth struct {
	// keys are the inline keys (jwks), each with its kid, algorithm and use "sig".
	keys []jose.JSONWebKey
	// remote fetches and caches the jwks_uri's keys; nil without a jwks_uri.
	remote *remoteKeys
	// hmacKey is the plaintext secret of a client_secret_jwt client.
	hmacKey []byte
}

// hasKeys reports whether the client registered public keys (inline or by URI).
func (j *jwtAuth) hasKeys() bool { return len(j.keys) > 0 || j.remote != nil }

// resolveJWT checks the options of JWT client authentication and request objects
// (token_endpoint_auth_method's JWT methods, token_endpoint_auth_signing_alg, jwks, jwks_uri,
// request_object_signing_alg), fills their defaults in cfg, and loads the keys into c. The
// secret is already decoded (c.plaintext). Key files are read here; a jwks_uri is not fetched.
func resolveJWT(cfg *Config, c *Client) error {
	fail := func(opt, f string, a ...any) error { return configError(cfg.ID, opt, f, a...) }
	if cfg.JWKSURI != "" && len(cfg.JWKS) > 0 {
		return fail("jwks_uri", "give the client's keys either inline (jwks, or public_key blocks in a Caddyfile) or at jwks_uri, not both")
	}
	if cfg.JWKSURI != "" {
		if err := checkJWKSURI(cfg.JWKSURI); err != nil {
			return fail("jwks_uri", "%v", err)
		}
		c.jwt.remote = newRemoteKeys(cfg.JWKSURI)
	}
	cfg.JWKS = slices.Clone(cfg.JWKS) // defaults are filled in: the caller's list stays as it was
	for i, k := range cfg.JWKS {
		jwk, err := loadClientKey(k)
		if err != nil {
			name := k.KeyID
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return configError(cfg.ID, "public_key "+name, "%v", err)
		}
		if slices.ContainsFunc(c.jwt.keys, func(o jose.JSONWebKey) bool { return o.KeyID == jwk.KeyID }) {
			return configError(cfg.ID, "public_key "+jwk.KeyID, "key_id %q is used twice; give each key of the client its own key_id", jwk.KeyID)
		}
		cfg.JWKS[i].Algorithm, cfg.JWKS[i].Use = jwk.Algorithm, jwk.Use
		c.jwt.keys = append(c.jwt.keys, jwk)
	}

	method, alg := cfg.TokenEndpointAuthMethod, cfg.TokenEndpointAuthSigningAlg
	switch method {
	case AuthMethodClientSecretJWT:
		if alg == "" {
			alg = "HS256"
		}
		if !slices.Contains(hmacAlgs, alg) {
			return fail("token_endpoint_auth_signing_alg", "client_secret_jwt signs with the client secret, so it takes HS256, HS384 or HS512, not %q; use private_key_jwt for %s", alg, alg)
		}
		if !c.plaintext {
			return fail("client_secret", "client_secret_jwt signs assertions with the secret itself, which a digest cannot give back; give the secret as '$plaintext$<secret>' (from {env.…} or {file.…} rather than in the config file), or use private_key_jwt")
		}
		key := []byte(strings.TrimPrefix(cfg.Secret, "$plaintext$"))
		if n := hmacKeyBytes[alg]; len(key) < n {
			return fail("client_secret", "%s needs a secret of at least %d bytes (RFC 7518 §3.2); it has %d: generate one with 'caddy oidc hash --random' or 'openssl rand -hex %d'", alg, n, len(key), n)
		}
		c.jwt.hmacKey = key
	case AuthMethodPrivateKeyJWT:
		if !c.jwt.hasKeys() {
			return fail("token_endpoint_auth_method", "private_key_jwt needs the client's public keys: add 'public_key <key_id> { algorithm ES256; key_file /etc/caddy/clients/%s.pub.pem }' or 'jwks_uri https://…'", cfg.ID)
		}
		if alg == "" {
			alg = commonAlgorithm(c.jwt.keys)
		}
		if !slices.Contains(signingAlgs, alg) {
			return fail("token_endpoint_auth_signing_alg", "private_key_jwt takes %s, not %q", strings.Join(signingAlgs, ", "), alg)
		}
		if len(c.jwt.keys) > 0 && !slices.ContainsFunc(c.jwt.keys, func(k jose.JSONWebKey) bool { return k.Algorithm == alg }) {
			return fail("token_endpoint_auth_signing_alg", "no public_key of the client has algorithm %s (they have: %s); add one or set the algorithm of the keys", alg, strings.Join(keyAlgorithms(c.jwt.keys), ", "))
		}
		if cfg.Secret != "" {
			c.warnings = append(c.warnings, "client_secret is not used by private_key_jwt; remove it")
		}
	default:
		if alg != "" {
			return fail("token_endpoint_auth_signing_alg", "only applies to token_endpoint_auth_method client_secret_jwt or private_key_jwt, not %s; remove it", method)
		}
	}
	cfg.TokenEndpointAuthSigningAlg = alg

	switch ro := cfg.RequestObjectSigningAlg; {
	case ro == "":
	case ro == "none":
		return fail("request_object_signing_alg", "unsigned request objects are refused; use the algorithm of one of the client's keys, e.g. RS256 or ES256")
	case !slices.Contains(signingAlgs, ro):
		return fail("request_object_signing_alg", "unknown algorithm %q (%s)", ro, strings.Join(signingAlgs, ", "))
	case !c.jwt.hasKeys():
		return fail("request_object_signing_alg", "request objects are verified with the client's public keys: add 'public_key <key_id> { … }' or 'jwks_uri https://…'")
	case len(c.jwt.keys) > 0 && !slices.ContainsFunc(c.jwt.keys, func(k jose.JSONWebKey) bool { return k.Algorithm == ro }):
		return fail("request_object_signing_alg", "no public_key of the client has algorithm %s (they have: %s)", ro, strings.Join(keyAlgorithms(c.jwt.keys), ", "))
	}
	return nil
}

// checkJWKSURI accepts an absolute https URL, or http on a loopback host (for tests), without
// user info or fragment.
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%q must be an absolute https URL, e.g. https://app.example.com/jwks.json", s)
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		return fmt.Errorf("%q must use https (http is only allowed for localhost and loopback addresses)", s)
	case u.User != nil:
		return fmt.Errorf("%q may not carry user info; remove the part before '@'", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q may not carry a fragment; remove the part from '#'", s)
	}
	return nil
}

// loadClientKey reads one configured public key (inline PEM or file) and checks its options.
func loadClientKey(k ClientKey) (jose.JSONWebKey, error) {
	var jwk jose.JSONWebKey
	if k.KeyID == "" {
		return jwk, errors.New("key_id is required: the kid the client puts in its JWS headers")
	}
	switch k.Use {
	case "", "sig":
	default:
		return jwk, fmt.Errorf("use %q: only sig is accepted (the key verifies the client's signatures); remove use or set 'use sig'", k.Use)
	}
	var data []byte
	switch {
	case (k.Key == "") == (k.KeyFile == ""):
		return jwk, errors.New("give exactly one of key_file (a file holding the PEM public key or certificate) or key (the PEM itself)")
	case k.KeyFile != "":
		var err error
		if data, err = os.ReadFile(k.KeyFile); err != nil {
			return jwk, fmt.Errorf("key_file: %w", err)
		}
	default:
		data = []byte(k.Key)
	}
	pub, err := parsePublicKeyPEM(data)
	if err != nil {
		if k.KeyFile != "" {
			return jwk, fmt.Errorf("key_file %s: %w", k.KeyFile, err)
		}
		return jwk, fmt.Errorf("key: %w", err)
	}
	alg := k.Algorithm
	if alg == "" {
		alg = defaultAlgorithm(pub)
	}
	if !slices.Contains(signingAlgs, alg) {
		return jwk, fmt.Errorf("algorithm %q: unknown (%s)", alg, strings.Join(signingAlgs, ", "))
	}
	if err := fitsAlgorithm(pub, alg); err != nil {
		return jwk, fmt.Errorf("algorithm %s: %w", alg, err)
	}
	return jose.JSONWebKey{Key: pub, KeyID: k.KeyID, Algorithm: alg, Use: "sig"}, nil
}

// parsePublicKeyPEM reads the first PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block of data.
func parsePublicKeyPEM(data []byte) (any, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM public key found: give a '-----BEGIN PUBLIC KEY-----' block (openssl pkey -in key.pem -pubout), an RSA PUBLIC KEY or a CERTIFICATE")
		}
		switch b.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("reading the PUBLIC KEY: %w", err)
			}
			return checkKeyType(k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("reading the RSA PUBLIC KEY: %w", err)
			}
			return checkKeyType(k)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("reading the CERTIFICATE: %w", err)
			}
			return checkKeyType(cert.PublicKey)
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("this is a %s: give the client's public key only (openssl pkey -in key.pem -pubout), and keep the private key with the client", b.Type)
		}
	}
}

// checkKeyType accepts RSA keys of at least 2048 bits and ECDSA keys on P-256, P-384 or P-521.
func checkKeyType(k any) (any, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("the EC key's curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	return nil, fmt.Errorf("a %T key is not supported: use an RSA (RS*, PS*) or EC (ES*) key", k)
}

// defaultAlgorithm is a key's algorithm when none is configured: RS256 for RSA, the curve's for EC.
func defaultAlgorithm(k any) string {
	if ec, ok := k.(*ecdsa.PublicKey); ok {
		switch ec.Curve {
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
		return "ES256"
	}
	return "RS256"
}

// fitsAlgorithm checks that key k can verify signatures of alg.
func fitsAlgorithm(k any, alg string) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
			if k.N.BitLen() < minRSABits {
				return fmt.Errorf("the RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
			}
			return nil
		}
		return errors.New("an RSA key verifies RS256, RS384, RS512, PS256, PS384 or PS512; set one of those or give an EC key")
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if want == nil {
			return fmt.Errorf("an EC key on %s verifies %s; set that or give an RSA key", k.Curve.Params().Name, defaultAlgorithm(k))
		}
		if k.Curve != want {
			return fmt.Errorf("%s needs a key on %s, this one is on %s (its algorithm is %s)", alg, want.Params().Name, k.Curve.Params().Name, defaultAlgorithm(k))
		}
		return nil
	}
	return fmt.Errorf("a %T key cannot verify %s", k, alg)
}

// commonAlgorithm is the algorithm all keys share, or RS256.
func commonAlgorithm(keys []jose.JSONWebKey) string {
	algs := keyAlgorithms(keys)
	if len(algs) == 1 {
		return algs[0]
	}
	return "RS256"
}

// keyAlgorithms are the keys' algorithms, each once, in order.
func keyAlgorithms(keys []jose.JSONWebKey) []string {
	var algs []string
	for _, k := range keys {
		if !slices.Contains(algs, k.Algorithm) {
			algs = append(algs, k.Algorithm)
		}
	}
	return algs
}
