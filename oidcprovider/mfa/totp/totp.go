// Package totp is the time-based one-time password second factor (RFC 6238) on
// github.com/pquerna/otp: enrolment (a secret, its otpauth:// URI and QR code), verification with
// a skew window, and replay protection (a code, or any earlier one, cannot be used twice), with
// the secret sealed at rest under a key derived from the provider's secret.
package totp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// Config is Authelia's totp block.
type Config struct {
	// Issuer names the service in authenticator apps. Default: "Portcullis".
	Issuer string
	// Algorithm is SHA1 (default, what every app supports), SHA256 or SHA512.
	Algorithm string
	// Digits is 6 (default) or 8.
	Digits int
	// Period is the time step. Default: 30s.
	Period time.Duration
	// Skew is how many steps before and after the current one are accepted (0, 1 or 2).
	// Default (nil): 1.
	Skew *int
	// SecretSize is the secret's size in bytes. Default: 32.
	SecretSize int
}

// WithDefaults fills the defaults and checks the values.
func (c Config) WithDefaults() (Config, error) {
	if c.Issuer == "" {
		c.Issuer = "Portcullis"
	}
	if c.Algorithm == "" {
		c.Algorithm = "SHA1"
	}
	c.Algorithm = strings.ToUpper(c.Algorithm)
	if c.Digits == 0 {
		c.Digits = 6
	}
	if c.Period == 0 {
		c.Period = 30 * time.Second
	}
	if c.SecretSize == 0 {
		c.SecretSize = 32
	}
	if c.Skew == nil {
		one := 1
		c.Skew = &one
	}
	switch {
	case c.Algorithm != "SHA1" && c.Algorithm != "SHA256" && c.Algorithm != "SHA512":
		return c, fmt.Errorf("totp algorithm %q: use SHA1, SHA256 or SHA512", c.Algorithm)
	case c.Digits != 6 && c.Digits != 8:
		return c, fmt.Errorf("totp digits %d: use 6 or 8", c.Digits)
	case c.Period < 15*time.Second || c.Period%time.Second != 0:
		return c, fmt.Errorf("totp period %s: use whole seconds, at least 15s", c.Period)
	case *c.Skew < 0 || *c.Skew > 2:
		return c, fmt.Errorf("totp skew %d: use 0, 1 or 2", *c.Skew)
	case c.SecretSize < 20:
		return c, fmt.Errorf("totp secret_size %d: use at least 20 bytes (RFC 4226)", c.SecretSize)
	}
	return c, nil
}

func (c Config) opts() (otp.Algorithm, otp.Digits) {
	alg := map[string]otp.Algorithm{"SHA1": otp.AlgorithmSHA1, "SHA256": otp.AlgorithmSHA256, "SHA512": otp.AlgorithmSHA512}[c.Algorithm]
	return alg, otp.Digits(c.Digits)
}

// Enrolment is a new device's secret and what an authenticator app needs to add it.
type Enrolment struct {
	// Secret is the base32 secret (no padding).
	Secret string
	// URI is the otpauth:// URI.
	URI string
	// QR is the URI as a PNG QR code.
	QR []byte
}

// Enrol makes a new secret for account.
func Enrol(cfg Config, account string) (*Enrolment, error) {
	alg, digits := cfg.opts()
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: cfg.Issuer, AccountName: account, Period: uint(cfg.Period / time.Second),
		SecretSize: uint(cfg.SecretSize), Digits: digits, Algorithm: alg,
	})
	if err != nil {
		return nil, fmt.Errorf("making a TOTP secret: %w", err)
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return nil, fmt.Errorf("drawing the QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("drawing the QR code: %w", err)
	}
	return &Enrolment{Secret: key.Secret(), URI: key.URL(), QR: buf.Bytes()}, nil
}

// ErrReplayed is a code of a time step at or before the last one used.
var ErrReplayed = errors.New("totp: this code, or a later one, was already used")

// ErrWrongCode is a code that matches no step in the window.
var ErrWrongCode = errors.New("totp: wrong code")

// Verify checks code against secret at now, accepting the steps within the skew window after
// lastStep (the step of the last accepted code; 0 for none). It returns the matched step, which
// the caller stores as the new lastStep before answering, so a code, or an earlier one, cannot be
// used twice. Every step in the window is computed and compared in constant time.
func Verify(cfg Config, secret, code string, now time.Time, lastStep uint64) (uint64, error) {
	alg, digits := cfg.opts()
	if !validSecret(secret) {
		return 0, errors.New("totp: the device's secret is not base32")
	}
	code = strings.TrimSpace(code)
	if len(code) != cfg.Digits {
		return 0, ErrWrongCode
	}
	period := uint64(cfg.Period / time.Second)
	current := uint64(now.Unix()) / period
	var matched uint64
	found := 0
	skew := 1
	if cfg.Skew != nil {
		skew = *cfg.Skew
	}
	for i := -skew; i <= skew; i++ {
		step := current + uint64(int64(i))
		want, err := hotp.GenerateCodeCustom(secret, step, hotp.ValidateOpts{Digits: digits, Algorithm: alg})
		if err != nil {
			return 0, fmt.Errorf("totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			matched, found = step, found+1
		}
	}
	switch {
	case found == 0:
		return 0, ErrWrongCode
	case matched <= lastStep:
		return 0, ErrReplayed
	}
	return matched, nil
}

// Sealer encrypts second-factor secrets at rest with AES-256-GCM under a key derived (HKDF-SHA256)
// from the provider's secret, so a copy of the store alone does not give the secrets away.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from the provider's secret.
func NewSealer(providerSecret []byte) (*Sealer, error) {
	if len(providerSecret) < 32 {
		return nil, errors.New("totp: the provider secret must have at least 32 bytes")
	}
	key, err := hkdf.Key(sha256.New, providerSecret, nil, "portcullis second-factor secrets v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts secret, bound to context (the user and device, so a sealed secret cannot be
// moved to another record).
func (s *Sealer) Seal(secret, context string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (it crashes the program instead)
	return s.aead.Seal(nonce, nonce, []byte(secret), []byte(context))
}

// Open decrypts what Seal made for the same context.
func (s *Sealer) Open(sealed []byte, context string) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("totp: sealed secret too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
	if err != nil {
		return "", errors.New("totp: the sealed secret does not open (another provider secret, or another record)")
	}
	return string(plain), nil
}

// validSecret reports a base32 secret (no padding), as Enrol makes.
func validSecret(s string) bool {
	_, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(s))
	return err == nil && len(s) > 0
}
