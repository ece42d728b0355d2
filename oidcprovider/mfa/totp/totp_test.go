package totp

import (
	"bytes"
	"errors"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

func config(t *testing.T, c Config) Config {
	t.Helper()
	c, err := c.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// code is what an authenticator app shows at tm, computed by pquerna/otp itself.
func code(t *testing.T, cfg Config, secret string, tm time.Time) string {
	t.Helper()
	alg, digits := cfg.opts()
	c, err := totp.GenerateCodeCustom(secret, tm, totp.ValidateOpts{Period: uint(cfg.Period / time.Second), Digits: digits, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnrolAndVerifyWithReplayProtection(t *testing.T) {
	cfg := config(t, Config{Issuer: "Home Lab"})
	e, err := Enrol(cfg, "john@example.com")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.URI)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != e.Secret || u.Query().Get("issuer") != "Home Lab" {
		t.Fatalf("URI %q", e.URI)
	}
	if img, err := png.Decode(bytes.NewReader(e.QR)); err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("QR: %v", err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 10, 0, time.UTC)
	step, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, now), now, 0)
	if err != nil || step != uint64(now.Unix())/30 {
		t.Fatalf("the current code: step %d, %v", step, err)
	}
	// the same code again, even within its period, is refused
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, now), now.Add(5*time.Second), step); !errors.Is(err, ErrReplayed) {
		t.Fatalf("a replayed code: %v", err)
	}
	// the previous step's code is within the skew but before the last used: refused
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, now.Add(-30*time.Second)), now, step); !errors.Is(err, ErrReplayed) {
		t.Fatalf("an earlier code after a later one: %v", err)
	}
	// the next step's code is accepted once
	next := now.Add(30 * time.Second)
	step2, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, next), next, step)
	if err != nil || step2 != step+1 {
		t.Fatalf("the next code: %d %v", step2, err)
	}
	// skew: a code one step old is accepted, two steps old is not
	later := next.Add(2 * time.Minute)
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, later.Add(-30*time.Second)), later, step2); err != nil {
		t.Fatalf("a code within the skew: %v", err)
	}
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, later.Add(-90*time.Second)), later, step2); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("a code outside the skew: %v", err)
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, err := Verify(cfg, e.Secret, bad, now, 0); !errors.Is(err, ErrWrongCode) {
			t.Errorf("code %q: %v", bad, err)
		}
	}
	if _, err := Verify(cfg, "not base32!", "123456", now, 0); err == nil {
		t.Error("a secret that is not base32 must be an error")
	}
}

func TestEightDigitsSHA256(t *testing.T) {
	cfg := config(t, Config{Algorithm: "sha256", Digits: 8, Period: 60 * time.Second, Skew: new(int)})
	e, err := Enrol(cfg, "jane")
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(e.URI)
	if err != nil || key.Digits() != otp.DigitsEight || key.Algorithm() != otp.AlgorithmSHA256 || key.Period() != 60 {
		t.Fatalf("URI %q: %v", e.URI, err)
	}
	now := time.Now()
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, now), now, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(cfg, e.Secret, code(t, cfg, e.Secret, now.Add(-60*time.Second)), now, 0); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("skew 0 accepted the previous step: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Algorithm: "MD5"}, "algorithm"},
		{Config{Digits: 7}, "digits"},
		{Config{Period: 10 * time.Second}, "period"},
		{Config{Period: 45500 * time.Millisecond}, "period"},
		{Config{Skew: func() *int { n := 3; return &n }()}, "skew"},
		{Config{SecretSize: 10}, "secret_size"},
	} {
		if _, err := c.cfg.WithDefaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestSealer(t *testing.T) {
	s, err := NewSealer(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal("JBSWY3DPEHPK3PXP", "totp/john/1")
	if bytes.Contains(sealed, []byte("JBSWY3DPEHPK3PXP")) {
		t.Fatal("the sealed secret holds the secret")
	}
	if got, err := s.Open(sealed, "totp/john/1"); err != nil || got != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open(sealed, "totp/jane/1"); err == nil {
		t.Fatal("a sealed secret opened for another record")
	}
	other, _ := NewSealer(bytes.Repeat([]byte("x"), 32))
	if _, err := other.Open(sealed, "totp/john/1"); err == nil {
		t.Fatal("a sealed secret opened under another provider secret")
	}
	if _, err := s.Open(sealed[:5], "totp/john/1"); err == nil {
		t.Fatal("a truncated sealed secret opened")
	}
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Fatal("a short provider secret must be refused")
	}
}
