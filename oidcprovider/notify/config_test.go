package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

func TestValidate(t *testing.T) {
	good := func() *SMTPConfig {
		return &SMTPConfig{Address: "submission://smtp.example.com:587", Sender: "Portcullis <auth@example.com>", Username: "u", Password: "p"}
	}
	with := func(f func(*SMTPConfig)) Config { s := good(); f(s); return Config{SMTP: s} }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid; else a part of the error
	}{
		{"smtp", Config{SMTP: good()}, ""},
		{"filesystem", Config{FileSystem: &FileSystemConfig{Filename: "/var/lib/caddy/notification.txt"}}, ""},
		{"none", Config{}, "give either smtp"},
		{"both", Config{SMTP: good(), FileSystem: &FileSystemConfig{Filename: "/x"}}, "keep one"},
		{"empty filename", Config{FileSystem: &FileSystemConfig{}}, "filesystem needs a file name"},
		{"submissions", with(func(s *SMTPConfig) { s.Address = "submissions://smtp.example.com" }), ""},
		{"no port", with(func(s *SMTPConfig) { s.Address = "submission://smtp.example.com" }), ""},
		{"ipv6", with(func(s *SMTPConfig) { s.Address = "submission://[::1]:587" }), ""},
		{"no address", with(func(s *SMTPConfig) { s.Address = "" }), "smtp address is required"},
		{"no scheme", with(func(s *SMTPConfig) { s.Address = "smtp.example.com:587" }), "submission://host:587"},
		{"bad scheme", with(func(s *SMTPConfig) { s.Address = "http://smtp.example.com" }), `scheme "http"`},
		{"user in address", with(func(s *SMTPConfig) { s.Address = "submission://u:secret@smtp.example.com" }), "put them in username and password"},
		{"path", with(func(s *SMTPConfig) { s.Address = "submission://smtp.example.com/x" }), "path"},
		{"bad port", with(func(s *SMTPConfig) { s.Address = "submission://smtp.example.com:99999" }), "port"},
		{"plain smtp", with(func(s *SMTPConfig) { s.Address = "smtp://smtp.example.com:25" }), "disable_require_tls true"},
		{"plain smtp allowed", with(func(s *SMTPConfig) { s.Address = "smtp://smtp.example.com:25"; s.DisableRequireTLS = true }), ""},
		{"starttls off alone", with(func(s *SMTPConfig) { s.DisableStartTLS = true }), "disable_require_tls true as well"},
		{"starttls off allowed", with(func(s *SMTPConfig) { s.DisableStartTLS = true; s.DisableRequireTLS = true }), ""},
		{"no sender", with(func(s *SMTPConfig) { s.Sender = "" }), "sender is required"},
		{"bad sender", with(func(s *SMTPConfig) { s.Sender = "Portcullis" }), "sender \"Portcullis\" is not a mail address"},
		{"sender newline", with(func(s *SMTPConfig) { s.Sender = "a@example.com\r\nBcc: b@example.com" }), "line break"},
		{"bare sender", with(func(s *SMTPConfig) { s.Sender = "auth@example.com" }), ""},
		{"username only", with(func(s *SMTPConfig) { s.Password = "" }), "username is given without password"},
		{"password only", with(func(s *SMTPConfig) { s.Username = "" }), "password is given without username"},
		{"no auth", with(func(s *SMTPConfig) { s.Username, s.Password = "", "" }), ""},
		{"identifier", with(func(s *SMTPConfig) { s.Identifier = "auth example" }), "identifier"},
		{"subject newline", with(func(s *SMTPConfig) { s.Subject = "a\nb" }), "subject"},
		{"timeout", with(func(s *SMTPConfig) { s.Timeout = duration.Duration(-time.Second) }), "timeout"},
		{"tls ok", with(func(s *SMTPConfig) { s.TLS = &TLSConfig{MinimumVersion: "TLS1.3", MaximumVersion: "TLS1.3"} }), ""},
		{"tls bad min", with(func(s *SMTPConfig) { s.TLS = &TLSConfig{MinimumVersion: "SSL3"} }), "minimum_version"},
		{"tls bad max", with(func(s *SMTPConfig) { s.TLS = &TLSConfig{MaximumVersion: "TLS9"} }), "maximum_version"},
		{"tls swapped", with(func(s *SMTPConfig) { s.TLS = &TLSConfig{MinimumVersion: "TLS1.3", MaximumVersion: "TLS1.2"} }), "above maximum_version"},
		{"tls max under default", with(func(s *SMTPConfig) { s.TLS = &TLSConfig{MaximumVersion: "TLS1.1"} }), "set minimum_version too"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "notifier: ") {
				t.Fatalf("error %q does not name the notifier", err)
			}
			if tc.cfg.SMTP != nil && tc.cfg.SMTP.Password != "" && strings.Contains(err.Error(), "secret") {
				t.Fatalf("error quotes a password: %v", err)
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	var c Config
	in := `{"smtp":{"address":"submission://smtp.example.com:587","username":"u","password":"p","sender":"Portcullis <auth@example.com>",
		"identifier":"auth.example.com","subject":"[Auth] {title}","timeout":"10s",
		"tls":{"server_name":"mx.example.com","skip_verify":true,"minimum_version":"TLS1.2","maximum_version":"TLS1.3"},
		"disable_require_tls":true,"disable_starttls":true,"disable_html_emails":true},"disable_startup_check":true}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	s := c.SMTP
	if s == nil || s.Address != "submission://smtp.example.com:587" || s.Username != "u" || s.Password != "p" ||
		s.Sender != "Portcullis <auth@example.com>" || s.Identifier != "auth.example.com" || s.Subject != "[Auth] {title}" ||
		time.Duration(s.Timeout) != 10*time.Second || s.TLS == nil || s.TLS.ServerName != "mx.example.com" || !s.TLS.SkipVerify ||
		s.TLS.MinimumVersion != "TLS1.2" || s.TLS.MaximumVersion != "TLS1.3" || !s.DisableRequireTLS || !s.DisableStartTLS ||
		!s.DisableHTMLEmails || !c.DisableStartupCheck {
		t.Fatalf("decoded %+v %+v", c, s)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute:                       "5 minutes",
		time.Minute:                           "1 minute",
		90 * time.Second:                      "1 minute 30 seconds",
		time.Hour:                             "1 hour",
		26 * time.Hour:                        "1 day 2 hours",
		48*time.Hour + 30*time.Minute:         "2 days 30 minutes",
		10*time.Minute + 400*time.Millisecond: "10 minutes",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	in := Config{SMTP: &SMTPConfig{Address: "submission://{env.HOST}:587", Password: "{env.PW}", Sender: "a@example.com",
		Subject: "[X] {title}", TLS: &TLSConfig{CAFile: "{env.CA}"}}}
	vals := map[string]string{"submission://{env.HOST}:587": "submission://mx.example.com:587", "{env.PW}": "pw", "{env.CA}": "/ca.pem"}
	out, err := in.Resolve(func(v string) (string, error) {
		if r, ok := vals[v]; ok {
			return r, nil
		}
		if strings.Contains(v, "{") {
			return "", errors.New("unknown placeholder")
		}
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.SMTP.Address != "submission://mx.example.com:587" || out.SMTP.Password != "pw" || out.SMTP.TLS.CAFile != "/ca.pem" || out.SMTP.Subject != "[X] {title}" {
		t.Fatalf("resolved %+v %+v", out.SMTP, out.SMTP.TLS)
	}
	if in.SMTP.Password != "{env.PW}" || in.SMTP.TLS.CAFile != "{env.CA}" {
		t.Fatal("Resolve changed its receiver")
	}
	in.SMTP.Username = "{env.NOPE}"
	if _, err := in.Resolve(func(v string) (string, error) {
		if v == "{env.NOPE}" {
			return "", errors.New("unknown placeholder")
		}
		return v, nil
	}); err == nil || !strings.Contains(err.Error(), "smtp username") {
		t.Fatalf("error %v does not name the key", err)
	}
}
