package clients

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemOf encodes a key or certificate as PEM of the given type.
func pemOf(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pubPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

var (
	testRSA, _   = rsa.GenerateKey(rand.Reader, 2048)
	testP256, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testP384, _  = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	testSmall, _ = rsa.GenerateKey(rand.Reader, 1024)
)

// jwtClient is a private_key_jwt client credentials client with the given keys.
func jwtClient(keys ...ClientKey) Config {
	return Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodPrivateKeyJWT, JWKS: keys}
}

// Each accepted PEM form loads, with the algorithm defaulted from the key.
func TestClientKeyForms(t *testing.T) {
	dir := t.TempDir()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &testP384.PublicKey, testP384)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "app.pub.pem")
	if err := os.WriteFile(file, []byte(pubPEM(t, &testP256.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := jwtClient(
		ClientKey{KeyID: "file", KeyFile: file},
		ClientKey{KeyID: "pkcs1", Key: pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&testRSA.PublicKey)), Algorithm: "PS256"},
		ClientKey{KeyID: "cert", Key: pemOf(t, "CERTIFICATE", certDER), Use: "sig"},
		ClientKey{KeyID: "rsa", Key: pubPEM(t, &testRSA.PublicKey)},
	)
	cfg.TokenEndpointAuthSigningAlg = "ES256"
	c, err := New(cfg, Lifespans{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"file": "ES256", "pkcs1": "PS256", "cert": "ES384", "rsa": "RS256"}
	for _, k := range c.jwt.keys {
		if want[k.KeyID] != k.Algorithm || k.Use != "sig" {
			t.Errorf("key %s: algorithm %s use %s, want %s sig", k.KeyID, k.Algorithm, k.Use, want[k.KeyID])
		}
	}
	if len(c.jwt.keys) != 4 {
		t.Fatalf("%d keys loaded, want 4", len(c.jwt.keys))
	}
	if got := c.Config().JWKS[0].Algorithm; got != "ES256" {
		t.Errorf("the effective config's algorithm of the file key is %q, want ES256", got)
	}
	if cfg.JWKS[0].Algorithm != "" {
		t.Error("New changed the caller's key list")
	}

	// one key: the auth signing algorithm defaults to it
	c, err = New(jwtClient(ClientKey{KeyID: "k1", KeyFile: file}), Lifespans{})
	if err != nil || c.Config().TokenEndpointAuthSigningAlg != "ES256" {
		t.Fatalf("default alg of a single ES256 key: %v %q", err, c.Config().TokenEndpointAuthSigningAlg)
	}
	// a client_secret_jwt client defaults to HS256
	c, err = New(Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: strings.Repeat("s", 32)}, Lifespans{})
	if err != nil || c.Config().TokenEndpointAuthSigningAlg != "HS256" || string(c.jwt.hmacKey) != strings.Repeat("s", 32) {
		t.Fatalf("client_secret_jwt defaults: %v", err)
	}
	// jwks_uri alone, with no fetch at New
	c, err = New(with(jwtClient(), func(c *Config) { c.JWKSURI = "http://127.0.0.1:1/jwks.json" }), Lifespans{})
	if err != nil || c.jwt.remote == nil || !c.jwt.remote.tried.IsZero() {
		t.Fatalf("jwks_uri client: %v", err)
	}
}

// Every mistake in the options of JWT client authentication is refused, naming the client, the
// option or key and the fix.
func TestClientKeyErrors(t *testing.T) {
	ec := pubPEM(t, &testP256.PublicKey)
	rsaPEM := pubPEM(t, &testRSA.PublicKey)
	ecPriv, _ := x509.MarshalECPrivateKey(testP256)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key id", jwtClient(ClientKey{Key: ec}), "client app: public_key #1: key_id is required"},
		{"twice", jwtClient(ClientKey{KeyID: "k1", Key: ec}, ClientKey{KeyID: "k1", Key: ec}), `client app: public_key k1: key_id "k1" is used twice`},
		{"use enc", jwtClient(ClientKey{KeyID: "k1", Key: ec, Use: "enc"}), `client app: public_key k1: use "enc": only sig`},
		{"neither", jwtClient(ClientKey{KeyID: "k1"}), "client app: public_key k1: give exactly one of key_file"},
		{"both", jwtClient(ClientKey{KeyID: "k1", Key: ec, KeyFile: "/x"}), "give exactly one of key_file"},
		{"missing file", jwtClient(ClientKey{KeyID: "k1", KeyFile: "/nonexistent/app.pem"}), "client app: public_key k1: key_file: open /nonexistent/app.pem"},
		{"not pem", jwtClient(ClientKey{KeyID: "k1", Key: "hello"}), "client app: public_key k1: key: no PEM public key found"},
		{"private", jwtClient(ClientKey{KeyID: "k1", Key: pemOf(t, "EC PRIVATE KEY", ecPriv)}), "this is a EC PRIVATE KEY: give the client's public key only"},
		{"small rsa", jwtClient(ClientKey{KeyID: "k1", Key: pubPEM(t, &testSmall.PublicKey)}), "the RSA key has 1024 bits; at least 2048"},
		{"ed25519", jwtClient(ClientKey{KeyID: "k1", Key: pubPEM(t, edPub)}), "ed25519.PublicKey key is not supported"},
		{"unknown alg", jwtClient(ClientKey{KeyID: "k1", Key: ec, Algorithm: "XS256"}), `client app: public_key k1: algorithm "XS256": unknown`},
		{"rsa with ES256", jwtClient(ClientKey{KeyID: "k1", Key: rsaPEM, Algorithm: "ES256"}), "client app: public_key k1: algorithm ES256: an RSA key verifies RS256"},
		{"ec with RS256", jwtClient(ClientKey{KeyID: "k1", Key: ec, Algorithm: "RS256"}), "algorithm RS256: an EC key on P-256 verifies ES256"},
		{"ec with ES384", jwtClient(ClientKey{KeyID: "k1", Key: ec, Algorithm: "ES384"}), "ES384 needs a key on P-384, this one is on P-256"},
		{"both key sources", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.JWKSURI = "https://app.example.com/jwks" }), "client app: jwks_uri: give the client's keys either inline"},
		{"jwks_uri http", with(jwtClient(), func(c *Config) { c.JWKSURI = "http://app.example.com/jwks" }), "client app: jwks_uri: \"http://app.example.com/jwks\" must use https"},
		{"jwks_uri relative", with(jwtClient(), func(c *Config) { c.JWKSURI = "/jwks" }), "must be an absolute https URL"},
		{"jwks_uri user", with(jwtClient(), func(c *Config) { c.JWKSURI = "https://u:p@app.example.com/jwks" }), "may not carry user info"},
		{"jwks_uri fragment", with(jwtClient(), func(c *Config) { c.JWKSURI = "https://app.example.com/jwks#x" }), "may not carry a fragment"},
		{"private_key_jwt without keys", jwtClient(), "client app: token_endpoint_auth_method: private_key_jwt needs the client's public keys"},
		{"private_key_jwt HS256", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.TokenEndpointAuthSigningAlg = "HS256" }), `client app: token_endpoint_auth_signing_alg: private_key_jwt takes RS256`},
		{"private_key_jwt alg without key", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.TokenEndpointAuthSigningAlg = "RS256" }), "no public_key of the client has algorithm RS256 (they have: ES256)"},
		{"client_secret_jwt RS256", Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: strings.Repeat("s", 32), TokenEndpointAuthSigningAlg: "RS256"}, "client_secret_jwt signs with the client secret, so it takes HS256, HS384 or HS512"},
		{"client_secret_jwt digest", Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: seedDigest}, "client app: client_secret: client_secret_jwt signs assertions with the secret itself, which a digest cannot give back"},
		{"client_secret_jwt no secret", Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT}, "client app: client_secret: client_secret_jwt signs assertions with the client secret"},
		{"client_secret_jwt short", Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: "$plaintext$short"}, "HS256 needs a secret of at least 32 bytes (RFC 7518 §3.2); it has 5"},
		{"client_secret_jwt HS512 short", Config{ID: "app", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: AuthMethodClientSecretJWT, Secret: strings.Repeat("s", 32), TokenEndpointAuthSigningAlg: "HS512"}, "HS512 needs a secret of at least 64 bytes"},
		{"alg with basic", with(app(), func(c *Config) { c.TokenEndpointAuthSigningAlg = "RS256" }), "client app: token_endpoint_auth_signing_alg: only applies to token_endpoint_auth_method client_secret_jwt or private_key_jwt, not client_secret_basic"},
		{"request object none", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.RequestObjectSigningAlg = "none" }), "client app: request_object_signing_alg: unsigned request objects are refused"},
		{"request object unknown", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.RequestObjectSigningAlg = "HS256" }), `request_object_signing_alg: unknown algorithm "HS256"`},
		{"request object without keys", with(app(), func(c *Config) { c.RequestObjectSigningAlg = "RS256" }), "request_object_signing_alg: request objects are verified with the client's public keys"},
		{"request object alg without key", with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.RequestObjectSigningAlg = "PS256" }), "request_object_signing_alg: no public_key of the client has algorithm PS256"},
		{"unknown method", with(app(), func(c *Config) { c.TokenEndpointAuthMethod = "tls_client_auth" }), `unknown method "tls_client_auth" (client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, none)`},
		{"public private_key_jwt", with(app(), func(c *Config) { c.Public, c.Secret, c.TokenEndpointAuthMethod = true, "", AuthMethodPrivateKeyJWT }), `a public client must use none, not "private_key_jwt"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, Lifespans{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A private_key_jwt client needs no secret and is warned about one it has; a public client may
// register keys for its request objects.
func TestPrivateKeyJWTSecret(t *testing.T) {
	ec := pubPEM(t, &testP256.PublicKey)
	c, err := New(with(jwtClient(ClientKey{KeyID: "k1", Key: ec}), func(c *Config) { c.Secret = "$plaintext$x" }), Lifespans{})
	if err != nil || len(c.Warnings()) != 1 || !strings.Contains(c.Warnings()[0], "not used by private_key_jwt") {
		t.Fatalf("a secret beside private_key_jwt: %v %v", err, c.Warnings())
	}
	pub := Config{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.example.com/cb"}, JWKS: []ClientKey{{KeyID: "k1", Key: ec}}, RequestObjectSigningAlg: "ES256"}
	if _, err := New(pub, Lifespans{}); err != nil {
		t.Fatalf("a public client with a request object key: %v", err)
	}
}
