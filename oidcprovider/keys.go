package oidcprovider

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

// signingKey is a loaded private key with its JWK metadata.
type signingKey struct {
	id        string
	algorithm string
	private   crypto.Signer
}

var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// parsePrivateKeyPEM reads the first private key of a PEM document: PKCS#1, SEC 1 or PKCS#8.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
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

// newSigningKey checks the key against the algorithm (defaulting it) and derives the key id.
func newSigningKey(priv crypto.Signer, alg, kid string) (*signingKey, error) {
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
	return &signingKey{id: kid, algorithm: alg, private: priv}, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// loadSigningKey reads a configured key file.
func loadSigningKey(cfg SigningKey) (*signingKey, error) {
	if cfg.KeyFile == "" {
		return nil, errors.New("key_file is required: a PEM file with the private key")
	}
	data, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	priv, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", cfg.KeyFile, err)
	}
	k, err := newSigningKey(priv, cfg.Algorithm, cfg.KeyID)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", cfg.KeyFile, err)
	}
	return k, nil
}

// generateDefaultKeyPEM makes the default RSA-2048 key, PKCS#8 PEM encoded for the store.
func generateDefaultKeyPEM() ([]byte, error) {
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

// jwks is the public key set.
func jwks(keys []*signingKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.private.Public(), KeyID: k.id, Algorithm: k.algorithm, Use: "sig"})
	}
	return set
}
