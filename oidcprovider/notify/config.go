package notify

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

// Defaults of the SMTP notifier.
const (
	// DefaultSubject is SMTPConfig.Subject when none is given; {title} is the message's title.
	DefaultSubject = "[Portcullis] {title}"
	// DefaultIdentifier is the name the notifier gives itself in EHLO when none is given.
	DefaultIdentifier = "localhost"
	// DefaultTimeout bounds one delivery (connect, TLS, AUTH and the mail) when none is given.
	DefaultTimeout = 5 * time.Second
)

// Config is the notifier block, with Authelia's key names: exactly one of SMTP and FileSystem.
type Config struct {
	// SMTP delivers messages by mail; JSON "smtp".
	SMTP *SMTPConfig `json:"smtp,omitempty"`
	// FileSystem appends messages to a file, for a quick start or a test; JSON "filesystem".
	FileSystem *FileSystemConfig `json:"filesystem,omitempty"`
	// DisableStartupCheck skips the check of the notifier when the provider starts (which only
	// logs a failure); JSON "disable_startup_check". Default: false.
	DisableStartupCheck bool `json:"disable_startup_check,omitempty"`
}

// SMTPConfig is how mail is handed to an SMTP server (Authelia's notifier.smtp keys).
type SMTPConfig struct {
	// Address is the server, with a scheme that says how TLS is used; JSON "address".
	// Required. submission://host:587 speaks STARTTLS (mandatory unless DisableRequireTLS),
	// submissions://host:465 speaks TLS from the first byte, smtp://host:25 is plain SMTP and
	// is refused unless DisableRequireTLS is set. The port defaults to the scheme's (587, 465,
	// 25).
	Address string `json:"address"`
	// Username authenticates to the server (AUTH, with SCRAM, PLAIN or LOGIN as the server
	// offers); JSON "username". Default: no authentication. A password is never sent over a
	// connection without TLS, except to a server on the loopback address.
	Username string `json:"username,omitempty"`
	// Password goes with Username; JSON "password". It may be a placeholder such as
	// {env.SMTP_PASSWORD}, replaced when the provider is provisioned.
	Password string `json:"password,omitempty"`
	// Sender is the From of every mail, "Name <address>" or "address"; JSON "sender".
	// Required.
	Sender string `json:"sender"`
	// Identifier is the name given in EHLO; JSON "identifier". Default: "localhost".
	Identifier string `json:"identifier,omitempty"`
	// Subject is every mail's subject, with {title} replaced by the message's title; JSON
	// "subject". Default: "[Portcullis] {title}".
	Subject string `json:"subject,omitempty"`
	// Timeout bounds one delivery or check, from the connection to QUIT; JSON "timeout".
	// Default: 5s.
	Timeout duration.Duration `json:"timeout,omitempty"`
	// TLS is the TLS of the connection; JSON "tls". Default: the server's name from Address,
	// TLS 1.2 or newer, verified against the system's roots.
	TLS *TLSConfig `json:"tls,omitempty"`
	// DisableRequireTLS allows a connection without TLS: smtp:// addresses, and
	// submission:// servers that do not offer STARTTLS; JSON "disable_require_tls". Default:
	// false. Codes and reset links then cross the network in clear text.
	DisableRequireTLS bool `json:"disable_require_tls,omitempty"`
	// DisableStartTLS never asks for STARTTLS even when the server offers it; JSON
	// "disable_starttls". Default: false. It needs DisableRequireTLS, and has no effect on
	// submissions:// (TLS from the first byte).
	DisableStartTLS bool `json:"disable_starttls,omitempty"`
	// DisableHTMLEmails sends the plain-text part alone; JSON "disable_html_emails". Default:
	// false (a plain-text and an HTML part).
	DisableHTMLEmails bool `json:"disable_html_emails,omitempty"`
}

// TLSConfig is the TLS of the connection to the SMTP server (Authelia's tls keys).
type TLSConfig struct {
	// ServerName is the name the server's certificate must carry; JSON "server_name".
	// Default: the host of Address.
	ServerName string `json:"server_name,omitempty"`
	// SkipVerify accepts any server certificate; JSON "skip_verify". Default: false. For tests
	// only: it gives the password and every code to whoever answers.
	SkipVerify bool `json:"skip_verify,omitempty"`
	// MinimumVersion is the lowest TLS version, "TLS1.2" or "TLS1.3" ("TLS1.0" and "TLS1.1"
	// for old servers); JSON "minimum_version". Default: TLS1.2.
	MinimumVersion string `json:"minimum_version,omitempty"`
	// MaximumVersion is the highest TLS version; JSON "maximum_version". Default: the newest
	// Go supports.
	MaximumVersion string `json:"maximum_version,omitempty"`
	// CAFile is a PEM file of the certificate authorities that may sign the server's
	// certificate, for a server with a private CA; JSON "ca_file". Default: the system's roots.
	// It is read by New.
	CAFile string `json:"ca_file,omitempty"`
}

// FileSystemConfig appends every message to a file instead of sending it.
type FileSystemConfig struct {
	// Filename is the file messages are appended to, created with mode 0600 if missing; JSON
	// "filename". Required. Its directory must exist (New checks it).
	Filename string `json:"filename"`
}

// Validate checks the configuration without touching the network or any file. Every error
// names the key at fault and what to write instead.
func (c *Config) Validate() error {
	switch {
	case c.SMTP == nil && c.FileSystem == nil:
		return errors.New("notifier: give either smtp { address …; sender … } or filesystem <file>")
	case c.SMTP != nil && c.FileSystem != nil:
		return errors.New("notifier: smtp and filesystem are both given; keep one (filesystem is for a quick start or tests)")
	case c.FileSystem != nil:
		return c.FileSystem.validate()
	default:
		return c.SMTP.validate()
	}
}

func (f *FileSystemConfig) validate() error {
	if strings.TrimSpace(f.Filename) == "" {
		return errors.New("notifier: filesystem needs a file name, such as /var/lib/caddy/notification.txt")
	}
	if strings.ContainsAny(f.Filename, "\x00\r\n") {
		return errors.New("notifier: filesystem: the file name holds a NUL or line break; write a plain path")
	}
	return nil
}

// smtpAddress is SMTPConfig.Address parsed.
type smtpAddress struct {
	scheme string // smtp, submission or submissions
	host   string
	port   int
}

func parseSMTPAddress(s string) (smtpAddress, error) {
	const fix = "write submission://host:587 (STARTTLS), submissions://host:465 (TLS) or smtp://host:25 (plain, with disable_require_tls true)"
	if s == "" {
		return smtpAddress{}, errors.New("notifier: smtp address is required; " + fix)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return smtpAddress{}, fmt.Errorf("notifier: smtp address %q is not a URL with a scheme and a host; %s", s, fix)
	}
	a := smtpAddress{scheme: strings.ToLower(u.Scheme), host: u.Hostname()}
	switch a.scheme {
	case "smtp":
		a.port = 25
	case "submission":
		a.port = 587
	case "submissions":
		a.port = 465
	default:
		return smtpAddress{}, fmt.Errorf("notifier: smtp address %q has the scheme %q; %s", s, u.Scheme, fix)
	}
	if u.User != nil {
		return smtpAddress{}, fmt.Errorf("notifier: smtp address holds a user name or password; put them in username and password, and the address as %s://%s", a.scheme, u.Host)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return smtpAddress{}, fmt.Errorf("notifier: smtp address %q has a path or query; write only %s://host:port", s, a.scheme)
	}
	if a.host == "" {
		return smtpAddress{}, fmt.Errorf("notifier: smtp address %q has no host; %s", s, fix)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return smtpAddress{}, fmt.Errorf("notifier: smtp address %q: the port must be a number from 1 to 65535", s)
		}
		a.port = n
	}
	return a, nil
}

func (a smtpAddress) hostPort() string {
	return net.JoinHostPort(a.host, strconv.Itoa(a.port))
}

func (s *SMTPConfig) validate() error {
	addr, err := parseSMTPAddress(s.Address)
	if err != nil {
		return err
	}
	if addr.scheme == "smtp" && !s.DisableRequireTLS {
		return fmt.Errorf("notifier: smtp address %q is plain SMTP, which sends codes and reset links in clear text; use submission://%s:587 (STARTTLS) or submissions://%s:465 (TLS), or set disable_require_tls true if the server is on a network you trust",
			s.Address, addr.host, addr.host)
	}
	if s.DisableStartTLS && !s.DisableRequireTLS && addr.scheme != "submissions" {
		return errors.New("notifier: smtp disable_starttls sends mail without TLS; remove it, or set disable_require_tls true as well if that is what you want")
	}
	if s.Sender == "" {
		return errors.New(`notifier: smtp sender is required, the From of every mail, such as "Portcullis <auth@example.com>"`)
	}
	if _, err := parseSender(s.Sender); err != nil {
		return err
	}
	if (s.Username == "") != (s.Password == "") {
		if s.Username == "" {
			return errors.New("notifier: smtp password is given without username; give both, or neither for a server that needs no authentication")
		}
		return errors.New("notifier: smtp username is given without password; give both (password {env.SMTP_PASSWORD} reads it from the environment)")
	}
	if strings.ContainsAny(s.Username, "\x00\r\n") {
		return errors.New("notifier: smtp username holds a NUL or line break; remove it")
	}
	if s.Identifier != "" && (strings.ContainsAny(s.Identifier, " \t\r\n\x00") || len(s.Identifier) > 255) {
		return fmt.Errorf("notifier: smtp identifier %q must be a host name without spaces, such as auth.example.com", s.Identifier)
	}
	if strings.ContainsAny(s.Subject, "\r\n\x00") {
		return errors.New("notifier: smtp subject holds a line break; write it on one line, such as \"[Portcullis] {title}\"")
	}
	if s.Timeout < 0 {
		return errors.New("notifier: smtp timeout must be positive, such as 5s")
	}
	if s.TLS != nil {
		lo, err := tlsVersion(s.TLS.MinimumVersion)
		if err != nil {
			return fmt.Errorf("notifier: smtp tls minimum_version %w", err)
		}
		hi, err := tlsVersion(s.TLS.MaximumVersion)
		if err != nil {
			return fmt.Errorf("notifier: smtp tls maximum_version %w", err)
		}
		if lo != 0 && hi != 0 && lo > hi {
			return fmt.Errorf("notifier: smtp tls minimum_version %s is above maximum_version %s; swap them or remove one", s.TLS.MinimumVersion, s.TLS.MaximumVersion)
		}
		if hi != 0 && lo == 0 && hi < tls.VersionTLS12 {
			return fmt.Errorf("notifier: smtp tls maximum_version %s is below the default minimum_version TLS1.2; set minimum_version too", s.TLS.MaximumVersion)
		}
	}
	return nil
}

// parseSender reads "Name <address>" or "address".
func parseSender(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return nil, errors.New("notifier: smtp sender holds a line break; write \"Name <address>\" on one line")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("notifier: smtp sender %q is not a mail address; write \"Portcullis <auth@example.com>\" or auth@example.com", s)
	}
	return a, nil
}

// tlsVersion reads "TLS1.2" (also "TLS 1.2", "tls12", "1.2"); "" is 0 (the default).
func tlsVersion(s string) (uint16, error) {
	v := strings.ToUpper(strings.NewReplacer(" ", "", ".", "", "V", "").Replace(s))
	v = strings.TrimPrefix(v, "TLS")
	switch v {
	case "":
		return 0, nil
	case "10":
		return tls.VersionTLS10, nil
	case "11":
		return tls.VersionTLS11, nil
	case "12":
		return tls.VersionTLS12, nil
	case "13":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not a TLS version; write TLS1.2 or TLS1.3", s)
}

// New checks cfg and returns its notifier, without connecting to any server. A filesystem
// notifier's directory must exist; an SMTP notifier's ca_file is read here.
func New(cfg Config, logger *zap.Logger) (Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if cfg.FileSystem != nil {
		f, err := newFileSystem(*cfg.FileSystem, logger)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	s, err := newSMTP(*cfg.SMTP, logger)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkDir tells whether the directory a file goes in exists.
func checkDir(name string) error {
	dir := filepath.Dir(name)
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("notifier: filesystem: the directory %s does not exist; create it (writable by the server) or choose a file in another one", dir)
		}
		return fmt.Errorf("notifier: filesystem: the directory of %s: %w", name, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("notifier: filesystem: %s is not a directory; choose a file in a directory", dir)
	}
	return nil
}

// Resolve returns a copy of c with replace applied to every value that may hold a placeholder
// such as {env.SMTP_PASSWORD} or {file.…}: smtp address, username, password, sender,
// identifier, tls server_name and ca_file, and the filesystem file. Subject is left as it is:
// its {title} is the notifier's own. An error names the key (never the value, which may be a
// password).
func (c Config) Resolve(replace func(value string) (string, error)) (Config, error) {
	var err error
	resolve := func(key string, v *string) {
		if err != nil || *v == "" {
			return
		}
		if *v, err = replace(*v); err != nil {
			err = fmt.Errorf("notifier: %s: %w", key, err)
		}
	}
	if c.SMTP != nil {
		s := *c.SMTP
		resolve("smtp address", &s.Address)
		resolve("smtp username", &s.Username)
		resolve("smtp password", &s.Password)
		resolve("smtp sender", &s.Sender)
		resolve("smtp identifier", &s.Identifier)
		if s.TLS != nil {
			t := *s.TLS
			resolve("smtp tls server_name", &t.ServerName)
			resolve("smtp tls ca_file", &t.CAFile)
			s.TLS = &t
		}
		c.SMTP = &s
	}
	if c.FileSystem != nil {
		f := *c.FileSystem
		resolve("filesystem", &f.Filename)
		c.FileSystem = &f
	}
	return c, err
}
