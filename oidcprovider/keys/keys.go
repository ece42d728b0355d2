// Package keys holds the provider's signing keys: loading them from PEM files, generating the
// default key, deriving key ids, and publishing the JWKS.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Key is a loaded private key with its JWK metadata. It is immutable.
type Key struct {
	// ID is the JWK "kid".
	ID string
	// Algorithm is the JWS algorithm the key signs with (RS256, ES256, PS256, ...).
	Algorithm string
	// Signer is the private key.
	Signer crypto.Signer
	// Retired marks a key that is kept in the JWKS, so what it signed still verifies, but
	// signs nothing new (a key being rotated out).
	Retired bool
}

var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// ParsePEM reads the first private key of a PEM document: PKCS#1, SEC 1 or PKCS#8.
func ParsePEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found (expected RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported PKCS#8 key type %T", k)
			}
			return s, nil
		}
	}
}

// New checks the key against the algorithm (defaulting it: RS256 for RSA keys, the curve's
// algorithm for EC keys) and derives the key id when kid is empty: the first 7 hex digits of the
// key's SHA-256 JWK thumbprint, "-", and the lowercase algorithm.
func New(priv crypto.Signer, alg, kid string) (*Key, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key has %d bits; use at least 2048", k.N.BitLen())
		}
		if alg == "" {
			alg = "RS256"
		}
		alg = strings.ToUpper(alg)
		if !containsFold(rsaAlgs, alg) {
			return nil, fmt.Errorf("algorithm %s does not fit an RSA key (use one of %s)", alg, strings.Join(rsaAlgs, ", "))
		}
	case *ecdsa.PrivateKey:
		want := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if want == "" {
			return nil, errors.New("EC key must use P-256, P-384 or P-521")
		}
		if alg == "" {
			alg = want
		}
		if !strings.EqualFold(alg, want) {
			return nil, fmt.Errorf("algorithm %s does not fit this EC key; its curve needs %s", alg, want)
		}
		alg = want
	default:
		return nil, fmt.Errorf("unsupported key type %T (use RSA or EC)", priv)
	}
	if kid == "" {
		tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("computing key thumbprint: %w", err)
		}
		kid = hex.EncodeToString(tp)[:7] + "-" + strings.ToLower(alg)
	}
	return &Key{ID: kid, Algorithm: alg, Signer: priv}, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Load reads a PEM key file and checks it against alg, with kid as in New.
func Load(keyFile, alg, kid string) (*Key, error) {
	if keyFile == "" {
		return nil, errors.New("key_file is required: a PEM file with the private key")
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	priv, err := ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", keyFile, err)
	}
	k, err := New(priv, alg, kid)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", keyFile, err)
	}
	return k, nil
}

// GenerateDefaultPEM makes the default RSA-2048 key, PKCS#8 PEM encoded for the store.
func GenerateDefaultPEM() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// JWKS is the public key set of keys.
func JWKS(keys []*Key) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.ID, Algorithm: k.Algorithm, Use: "sig"})
	}
	return set
}

// Algorithms lists the distinct algorithms of the keys that sign (retired keys left out), in
// order.
func Algorithms(keys []*Key) []string {
	algs := []string{}
	for _, k := range keys {
		if !k.Retired && !containsFold(algs, k.Algorithm) {
			algs = append(algs, k.Algorithm)
		}
	}
	return algs
}

// Generate makes a new private key for alg (RS256, RS384, RS512, PS256, PS384, PS512 with bits of
// 2048, 3072 or 4096; ES256, ES384, ES512 on their curves, bits ignored) and returns it PKCS#8 PEM
// encoded, with the Key the provider builds from that file (its derived key id).
func Generate(alg string, bits int) ([]byte, *Key, error) {
	alg = strings.ToUpper(alg)
	var priv crypto.Signer
	var err error
	switch {
	case containsFold(rsaAlgs, alg):
		if bits != 2048 && bits != 3072 && bits != 4096 {
			return nil, nil, fmt.Errorf("RSA keys have 2048, 3072 or 4096 bits, not %d", bits)
		}
		priv, err = rsa.GenerateKey(rand.Reader, bits)
	case alg == "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case alg == "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case alg == "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("unknown algorithm %q (use one of %s, ES256, ES384, ES512)", alg, strings.Join(rsaAlgs, ", "))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding %s key: %w", alg, err)
	}
	k, err := New(priv, alg, "")
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), k, nil
}
