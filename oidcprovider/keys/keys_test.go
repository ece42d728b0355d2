package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Every algorithm the provider offers: a generated key loads back from its PEM file with the same
// algorithm and key id, signs a JWS that its published JWK verifies, and its id has the derived
// form (seven hex digits of the thumbprint and the algorithm).
func TestGenerateLoadSignVerify(t *testing.T) {
	kid := regexp.MustCompile(`^[0-9a-f]{7}-[a-z0-9]+$`)
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"} {
		t.Run(alg, func(t *testing.T) {
			pemData, k, err := Generate(strings.ToLower(alg), 2048)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm != alg || !kid.MatchString(k.ID) || !strings.HasSuffix(k.ID, "-"+strings.ToLower(alg)) {
				t.Fatalf("generated key %q with id %q", k.Algorithm, k.ID)
			}
			file := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(file, pemData, 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(file, alg, "")
			if err != nil {
				t.Fatal(err)
			}
			if loaded.ID != k.ID || loaded.Algorithm != alg {
				t.Fatalf("loaded %s/%s, generated %s/%s", loaded.ID, loaded.Algorithm, k.ID, alg)
			}

			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: loaded.Signer}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			compact, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			set := roundTrip(t, JWKS([]*Key{loaded}))
			found := set.Key(loaded.ID)
			if len(found) != 1 {
				t.Fatalf("the JWKS has %d keys with id %s", len(found), loaded.ID)
			}
			parsed, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := parsed.Verify(found[0]); err != nil || string(out) != "payload" {
				t.Fatalf("the published key does not verify the signature: %v", err)
			}
		})
	}
}

// The JWKS publishes public keys only, with kid, alg and use, and an empty set is [] not null.
func TestJWKSShape(t *testing.T) {
	_, rs, err := Generate("RS256", 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, es, err := Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(JWKS([]*Key{rs, es}))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys published", len(doc.Keys))
	}
	for i, want := range []*Key{rs, es} {
		k := doc.Keys[i]
		if k["kid"] != want.ID || k["alg"] != want.Algorithm || k["use"] != "sig" {
			t.Fatalf("key %d published as %v", i, k)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Fatalf("key %d publishes its private part %q", i, private)
			}
		}
	}
	if got := Algorithms([]*Key{rs, es, rs}); strings.Join(got, ",") != "RS256,ES256" {
		t.Fatalf("algorithms %v", got)
	}
	if empty, _ := json.Marshal(JWKS(nil)); string(empty) != `{"keys":[]}` {
		t.Fatalf("empty set %s", empty)
	}
}

// A key id given in the config is kept; the derived one is the same for the same key.
func TestKeyIDs(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(priv, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(priv, "es256", "")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.Algorithm != "ES256" || b.Algorithm != "ES256" {
		t.Fatalf("derived %s/%s and %s/%s for one key", a.ID, a.Algorithm, b.ID, b.Algorithm)
	}
	named, err := New(priv, "ES256", "main-es256")
	if err != nil || named.ID != "main-es256" {
		t.Fatalf("named key: %v %v", named, err)
	}
}

// Every PEM form the provider accepts loads: PKCS#1, SEC 1 and PKCS#8, after other blocks.
func TestParsePEMForms(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not read")})
	for name, c := range map[string]struct {
		data []byte
		want crypto.PublicKey
	}{
		"PKCS#1":                     {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey.Public()},
		"SEC 1":                      {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ecKey.Public()},
		"PKCS#8 after a certificate": {append(cert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...), ecKey.Public()},
	} {
		s, err := ParsePEM(c.data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
			t.Fatalf("%s: another key was read", name)
		}
	}
}

// Bad input is refused with an error that names the problem.
func TestBadKeys(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	big, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		err  func() error
		want string
	}{
		"RSA under 2048 bits": {func() error { _, err := New(small, "RS256", ""); return err }, "use at least 2048"},
		"RSA key, EC alg":     {func() error { _, err := New(big, "ES256", ""); return err }, "does not fit an RSA key"},
		"P-256 key, ES384":    {func() error { _, err := New(p256, "ES384", ""); return err }, "needs ES256"},
		"Ed25519":             {func() error { _, err := New(edKey, "", ""); return err }, "unsupported key type"},
		"no PEM":              {func() error { _, err := ParsePEM([]byte("hello")); return err }, "no PEM private key"},
		"no key file":         {func() error { _, err := Load("", "RS256", ""); return err }, "key_file is required"},
		"missing key file":    {func() error { _, err := Load(filepath.Join(t.TempDir(), "none.pem"), "", ""); return err }, "key_file"},
		"unknown algorithm":   {func() error { _, _, err := Generate("HS256", 2048); return err }, "unknown algorithm"},
		"odd RSA size":        {func() error { _, _, err := Generate("RS256", 1024); return err }, "2048, 3072 or 4096"},
	} {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// roundTrip publishes a set as JSON and reads it back as a relying party would.
func roundTrip(t *testing.T, set jose.JSONWebKeySet) jose.JSONWebKeySet {
	t.Helper()
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var out jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
