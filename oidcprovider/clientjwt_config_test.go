package oidcprovider_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// caddy validate takes the JWT client options: a public_key from a file and one inline through
// an {env.*} placeholder, and a jwks_uri, which is not fetched (its host does not exist); and
// it refuses each mistake with a message naming the client, the key and the fix.
func TestValidateClientJWT(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	pubFile := filepath.Join(dir, "app.pub.pem")
	if err := os.WriteFile(pubFile, []byte(pubPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	privFile := writeKey(t, dir, "app.key.pem", ec)
	t.Setenv("PORTCULLIS_TEST_APP_PUB", pubPEM)
	cc := func(lines ...string) string {
		return "client app {\n\tgrant_types client_credentials\n\t" + strings.Join(lines, "\n\t") + "\n}"
	}
	for _, c := range []struct{ name, caddyfile, want string }{
		{"key file and env key", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n algorithm ES256\n key_file "+pubFile+"\n}", "public_key k2 {\n key {env.PORTCULLIS_TEST_APP_PUB}\n}")), ""},
		{"jwks_uri not fetched", provider(cc("token_endpoint_auth_method private_key_jwt", "jwks_uri https://jwks.invalid/keys.json")), ""},
		{"client_secret_jwt", provider(cc("token_endpoint_auth_method client_secret_jwt", `secret "$plaintext$0123456789abcdef0123456789abcdef"`)), ""},
		{"unknown env", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n key {env.PORTCULLIS_TEST_NOT_SET}\n}")), "client app: public_key k1: key: evaluated placeholder {env.PORTCULLIS_TEST_NOT_SET} is empty"},
		{"private key file", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n key_file "+privFile+"\n}")), "client app: public_key k1: key_file " + privFile + ": this is a"},
		{"missing file", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n key_file "+dir+"/none.pem\n}")), "client app: public_key k1: key_file: open"},
		{"wrong algorithm", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n algorithm RS256\n key_file "+pubFile+"\n}")), "client app: public_key k1: algorithm RS256: an EC key on P-256 verifies ES256"},
		{"use enc", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n use enc\n key_file "+pubFile+"\n}")), `client app: public_key k1: use "enc": only sig`},
		{"key id twice", provider(cc("token_endpoint_auth_method private_key_jwt", "public_key k1 {\n key_file "+pubFile+"\n}", "public_key k1 {\n key_file "+pubFile+"\n}")), `key_id "k1" is used twice`},
		{"both key sources", provider(cc("token_endpoint_auth_method private_key_jwt", "jwks_uri https://app.example.com/jwks", "public_key k1 {\n key_file "+pubFile+"\n}")), "client app: jwks_uri: give the client's keys either inline"},
		{"http jwks_uri", provider(cc("token_endpoint_auth_method private_key_jwt", "jwks_uri http://app.example.com/jwks")), "client app: jwks_uri: \"http://app.example.com/jwks\" must use https"},
		{"digest with client_secret_jwt", provider(cc("token_endpoint_auth_method client_secret_jwt", `secret "`+seedDigest+`"`)), "client app: client_secret: client_secret_jwt signs assertions with the secret itself, which a digest cannot give back"},
		{"short secret", provider(cc("token_endpoint_auth_method client_secret_jwt", `secret "$plaintext$short"`)), "HS256 needs a secret of at least 32 bytes"},
		{"HS256 for private_key_jwt", provider(cc("token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg HS256", "public_key k1 {\n key_file "+pubFile+"\n}")), "client app: token_endpoint_auth_signing_alg: private_key_jwt takes RS256"},
		{"RS256 without an RSA key", provider(cc("token_endpoint_auth_method private_key_jwt", "token_endpoint_auth_signing_alg RS256", "public_key k1 {\n key_file "+pubFile+"\n}")), "no public_key of the client has algorithm RS256 (they have: ES256)"},
		{"signing alg with basic", provider(cc(`secret "`+seedDigest+`"`, "token_endpoint_auth_signing_alg RS256")), "only applies to token_endpoint_auth_method client_secret_jwt or private_key_jwt"},
		{"request object none", provider(cc("token_endpoint_auth_method private_key_jwt", "request_object_signing_alg none", "public_key k1 {\n key_file "+pubFile+"\n}")), "client app: request_object_signing_alg: unsigned request objects are refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validate(t, c.caddyfile)
			if c.want == "" {
				if err != nil {
					t.Fatalf("a valid config is refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}
