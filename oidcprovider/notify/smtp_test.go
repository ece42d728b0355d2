package notify

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/portcullis-auth/portcullis/internal/smtptest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

const (
	testUser     = "mailer"
	testPassword = "Sm7p-Pa55word-xyzzy"
	waitMail     = 5 * time.Second
)

// caFile writes the server's certificate where ca_file can read it.
func caFile(t *testing.T, s *smtptest.Server) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(name, s.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// submissionConfig is a notifier for s over STARTTLS with AUTH, trusting s's certificate.
func submissionConfig(t *testing.T, s *smtptest.Server) *SMTPConfig {
	return &SMTPConfig{
		Address:  fmt.Sprintf("submission://%s", s.Addr()),
		Username: testUser,
		Password: testPassword,
		Sender:   "Portcullis <auth@example.com>",
		Timeout:  duration.Duration(3 * time.Second),
		TLS:      &TLSConfig{CAFile: caFile(t, s)},
	}
}

func mustNew(t *testing.T, c *SMTPConfig) Notifier {
	t.Helper()
	n, err := New(Config{SMTP: c}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSMTPSendEachKind sends a code, a reset link and an event over submission:// (STARTTLS
// and AUTH PLAIN, the certificate checked against ca_file) and reads each from the mail the
// server received: both parts, the subject, the display name, the code or link in both parts.
func TestSMTPSendEachKind(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth(testUser, testPassword))
	n := mustNew(t, submissionConfig(t, s))
	ctx := context.Background()
	if err := n.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(s.Mails()) != 0 {
		t.Fatal("Check sent a mail")
	}
	to := Recipient{Name: "Jörg Müller", Address: "jorg@example.com"}
	link := "https://auth.example.com/reset?token=Zx9_abc&u=1"
	for _, tc := range []struct {
		msg   Message
		title string
		want  string // in both parts
	}{
		{Message{Kind: KindCode, Title: "Confirm it is you", Code: "K7P2-9XQ4", Lifespan: 5 * time.Minute, RemoteIP: "203.0.113.7"}, "Confirm it is you", "K7P2-9XQ4"},
		{Message{Kind: KindResetLink, Link: link, Lifespan: time.Hour}, "Set a new password", link},
		{Message{Kind: KindEvent, Title: "Your password was changed", Event: "Your password was changed."}, "Your password was changed", "Your password was changed."},
	} {
		t.Run(string(tc.msg.Kind), func(t *testing.T) {
			if err := n.Send(ctx, to, tc.msg); err != nil {
				t.Fatal(err)
			}
			m := s.WaitFor(t, to.Address, waitMail)
			if !m.TLS || m.Username != testUser {
				t.Fatalf("mail came with TLS %v, user %q", m.TLS, m.Username)
			}
			if m.From != "auth@example.com" || len(m.To) != 1 || m.To[0] != to.Address {
				t.Fatalf("envelope from %q to %q", m.From, m.To)
			}
			if want := "[Portcullis] " + tc.title; m.Subject != want {
				t.Fatalf("subject %q, want %q", m.Subject, want)
			}
			hto, err := m.Header.AddressList("To")
			if err != nil || len(hto) != 1 || hto[0].Name != to.Name || hto[0].Address != to.Address {
				t.Fatalf("To header %q: %v %v", m.Header.Get("To"), hto, err)
			}
			from, err := mail.ParseAddress(m.Header.Get("From"))
			if err != nil || from.Name != "Portcullis" || from.Address != "auth@example.com" {
				t.Fatalf("From header %q", m.Header.Get("From"))
			}
			if m.Header.Get("Message-Id") == "" || !strings.HasSuffix(m.Header.Get("Message-Id"), "@example.com>") || m.Header.Get("Date") == "" {
				t.Fatalf("Message-ID %q, Date %q", m.Header.Get("Message-Id"), m.Header.Get("Date"))
			}
			if m.Text == "" || m.HTML == "" {
				t.Fatalf("want a text and an HTML part, got text %d bytes, HTML %d bytes", len(m.Text), len(m.HTML))
			}
			if !strings.Contains(m.Text, tc.want) {
				t.Fatalf("text part lacks %q:\n%s", tc.want, m.Text)
			}
			if !strings.Contains(html.UnescapeString(m.HTML), tc.want) {
				t.Fatalf("HTML part lacks %q:\n%s", tc.want, m.HTML)
			}
			if !strings.Contains(m.Text, "Hello Jörg Müller,") || !strings.Contains(m.HTML, "Hello Jörg Müller,") {
				t.Fatal("the greeting lacks the name")
			}
			if strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "<link") || strings.Contains(m.HTML, "url(") {
				t.Fatalf("the HTML loads something from outside:\n%s", m.HTML)
			}
		})
	}
	// The code is in the one line a reader looks for.
	if !strings.Contains(s.Mails()[0].Text, "\n    K7P2-9XQ4\n") || !strings.Contains(s.Mails()[0].Text, "203.0.113.7") {
		t.Fatalf("code mail text:\n%s", s.Mails()[0].Text)
	}
	if got := s.Mails()[1].HTML; !strings.Contains(got, `href="https://auth.example.com/reset?token=Zx9_abc&amp;u=1"`) {
		t.Fatalf("reset link is not a working href:\n%s", got)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithImplicitTLS(), smtptest.WithAuth(testUser, testPassword))
	c := submissionConfig(t, s)
	c.Address = "submissions://" + s.Addr()
	c.Subject = "{title} (Example)"
	n := mustNew(t, c)
	if err := n.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := n.Send(context.Background(), Recipient{Address: "a@example.com"}, Message{Kind: KindCode, Code: "123456", Lifespan: time.Minute}); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "a@example.com", waitMail)
	if !m.TLS || m.Username != testUser || m.Subject != "Your one-time code (Example)" || !strings.Contains(m.Text, "123456") {
		t.Fatalf("TLS %v user %q subject %q", m.TLS, m.Username, m.Subject)
	}
}

// TestSMTPPlain: smtp:// is refused without disable_require_tls, and works with it.
func TestSMTPPlain(t *testing.T) {
	s := smtptest.Start(t)
	c := &SMTPConfig{Address: "smtp://" + s.Addr(), Sender: "auth@example.com"}
	if _, err := New(Config{SMTP: c}, nil); err == nil || !strings.Contains(err.Error(), "disable_require_tls true") {
		t.Fatalf("smtp:// without disable_require_tls: %v", err)
	}
	c.DisableRequireTLS = true
	n := mustNew(t, c)
	if err := n.Send(context.Background(), Recipient{Address: "b@example.com"}, Message{Kind: KindEvent, Event: "A new key was added."}); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "b@example.com", waitMail)
	if m.TLS || !strings.Contains(m.Text, "A new key was added.") || m.Subject != "[Portcullis] A change to your account" {
		t.Fatalf("TLS %v subject %q text %q", m.TLS, m.Subject, m.Text)
	}
}

// TestSMTPStartTLSRequired: submission:// to a server without STARTTLS fails, unless
// disable_require_tls is set.
func TestSMTPStartTLSRequired(t *testing.T) {
	s := smtptest.Start(t)
	c := &SMTPConfig{Address: "submission://" + s.Addr(), Sender: "auth@example.com", Timeout: duration.Duration(3 * time.Second)}
	n := mustNew(t, c)
	msg := Message{Kind: KindCode, Code: "NOT-IN-CLEAR", Lifespan: time.Minute}
	err := n.Send(context.Background(), Recipient{Address: "c@example.com"}, msg)
	if !errors.Is(err, ErrUndeliverable) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send without STARTTLS: %v", err)
	}
	if err := n.Check(context.Background()); !errors.Is(err, ErrUndeliverable) {
		t.Fatalf("Check without STARTTLS: %v", err)
	}
	if len(s.Mails()) != 0 {
		t.Fatal("a mail was sent without TLS")
	}
	c.DisableRequireTLS = true
	if err := mustNew(t, c).Send(context.Background(), Recipient{Address: "c@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	if m := s.WaitFor(t, "c@example.com", waitMail); m.TLS {
		t.Fatal("TLS on a server without it?")
	}
}

// TestSMTPCertificateChecked: an untrusted certificate is refused; skip_verify accepts it.
func TestSMTPCertificateChecked(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS())
	c := &SMTPConfig{Address: "submission://" + s.Addr(), Sender: "auth@example.com", Timeout: duration.Duration(3 * time.Second)}
	err := mustNew(t, c).Check(context.Background())
	if !errors.Is(err, ErrUndeliverable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Check with an untrusted certificate: %v", err)
	}
	c.TLS = &TLSConfig{CAFile: caFile(t, s), ServerName: "mail.example.com"}
	if err := mustNew(t, c).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Check with the wrong server_name: %v", err)
	}
	c.TLS = &TLSConfig{SkipVerify: true}
	if err := mustNew(t, c).Check(context.Background()); err != nil {
		t.Fatalf("Check with skip_verify: %v", err)
	}
}

// TestSMTPWrongPassword: the failure wraps ErrUndeliverable and never shows the password,
// in the error or the log.
func TestSMTPWrongPassword(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth(testUser, "the-right-one"))
	core, logs := observer.New(zap.DebugLevel)
	n, err := New(Config{SMTP: submissionConfig(t, s)}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Check": n.Check(context.Background()),
		"Send":  n.Send(context.Background(), Recipient{Address: "d@example.com"}, Message{Kind: KindCode, Code: "SECRET-CODE", Lifespan: time.Minute}),
	} {
		if !errors.Is(err, ErrUndeliverable) {
			t.Fatalf("%s: %v, want ErrUndeliverable", name, err)
		}
		if strings.Contains(err.Error(), testPassword) || strings.Contains(err.Error(), "SECRET-CODE") {
			t.Fatalf("%s: the error shows a secret: %v", name, err)
		}
		if !strings.Contains(err.Error(), "535") && !strings.Contains(strings.ToLower(err.Error()), "auth") {
			t.Fatalf("%s: the error does not say authentication failed: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	for _, e := range logs.All() {
		if s := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(s, testPassword) || strings.Contains(s, "SECRET-CODE") {
			t.Fatalf("a secret in the log: %s", s)
		}
	}
	if len(s.Mails()) != 0 {
		t.Fatal("a mail went through without authentication")
	}
}

// TestSMTPNoPasswordInClear: over a connection without TLS to a server that is not this
// machine's loopback name, the password is not sent, even with disable_require_tls.
func TestSMTPNoPasswordInClear(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	ln.Close()
	s := smtptest.Start(t, smtptest.WithHost("127.0.0.2"), smtptest.WithAuth(testUser, testPassword))
	c := &SMTPConfig{Address: "smtp://" + s.Addr(), Sender: "auth@example.com", Username: testUser, Password: testPassword, DisableRequireTLS: true}
	err = mustNew(t, c).Send(context.Background(), Recipient{Address: "e@example.com"}, Message{Kind: KindEvent, Event: "x"})
	if !errors.Is(err, ErrUndeliverable) || strings.Contains(err.Error(), testPassword) || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("AUTH without TLS: %v", err)
	}
	t.Logf("Send: %v", err)
	if len(s.Mails()) != 0 {
		t.Fatal("a mail was sent")
	}
}

// TestSMTPServerDown: a stopped server makes Check and Send fail at once with a clear error.
func TestSMTPServerDown(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth(testUser, testPassword))
	n := mustNew(t, submissionConfig(t, s))
	s.Stop()
	start := time.Now()
	err := n.Check(context.Background())
	if !errors.Is(err, ErrUndeliverable) || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("Check on a stopped server: %v", err)
	}
	err = n.Send(context.Background(), Recipient{Address: "f@example.com"}, Message{Kind: KindEvent, Event: "x"})
	if !errors.Is(err, ErrUndeliverable) {
		t.Fatalf("Send on a stopped server: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	t.Logf("Send: %v", err)
}

// TestSMTPTimeout: a server that accepts the connection and never answers costs no more than
// the timeout, for Send and for Check.
func TestSMTPTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	const timeout = 700 * time.Millisecond
	c := &SMTPConfig{Address: "submission://" + ln.Addr().String(), Sender: "auth@example.com", Timeout: duration.Duration(timeout)}
	n := mustNew(t, c)
	for name, f := range map[string]func() error{
		"Send": func() error {
			return n.Send(context.Background(), Recipient{Address: "g@example.com"}, Message{Kind: KindEvent, Event: "x"})
		},
		"Check": func() error { return n.Check(context.Background()) },
	} {
		start := time.Now()
		err := f()
		took := time.Since(start)
		if !errors.Is(err, ErrUndeliverable) || !strings.Contains(err.Error(), "no answer within the timeout") {
			t.Fatalf("%s: %v", name, err)
		}
		if took < timeout/2 || took > timeout+time.Second {
			t.Fatalf("%s took %v with a timeout of %v", name, took, timeout)
		}
		t.Logf("%s: %v after %v", name, err, took.Round(time.Millisecond))
	}
	// A caller's shorter deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := n.Check(ctx); !errors.Is(err, ErrUndeliverable) || time.Since(start) > timeout/2 {
		t.Fatalf("Check with a 100ms context: %v after %v", err, time.Since(start))
	}
}

// TestSMTPHeaderInjection: line breaks in a name or title add no header and no recipient; an
// address with one is refused.
func TestSMTPHeaderInjection(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth(testUser, testPassword))
	c := submissionConfig(t, s)
	n := mustNew(t, c)
	to := Recipient{Name: "Eve\r\nBcc: evil1@example.net\r\nX-Injected: 1", Address: "eve@example.com"}
	msg := Message{Kind: KindCode, Title: "Hi\r\nBcc: evil2@example.net\nX-Injected: 2", Code: "C0DE", Lifespan: time.Minute}
	if err := n.Send(context.Background(), to, msg); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "eve@example.com", waitMail)
	if len(m.To) != 1 {
		t.Fatalf("recipients %q", m.To)
	}
	if m.Header.Get("Bcc") != "" || m.Header.Get("X-Injected") != "" {
		t.Fatalf("an injected header:\n%s", m.Raw)
	}
	for _, line := range strings.Split(string(m.Raw), "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "bcc:") || strings.HasPrefix(strings.ToLower(line), "x-injected:") {
			t.Fatalf("an injected line %q:\n%s", line, m.Raw)
		}
	}
	hto, err := m.Header.AddressList("To")
	if err != nil || len(hto) != 1 || hto[0].Address != "eve@example.com" || strings.ContainsAny(hto[0].Name, "\r\n") {
		t.Fatalf("To %q: %v", m.Header.Get("To"), err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") || !strings.HasPrefix(m.Subject, "[Portcullis] Hi Bcc:") {
		t.Fatalf("subject %q", m.Subject)
	}
	for _, addr := range []string{"eve@example.com\r\nBcc: evil3@example.net", "eve@example.com>\r\nRCPT TO:<evil4@example.net", "a@example.com, evil5@example.net", "Eve <eve@example.com>"} {
		if err := n.Send(context.Background(), Recipient{Address: addr}, msg); !errors.Is(err, ErrUndeliverable) {
			t.Fatalf("address %q: %v", addr, err)
		}
	}
	if len(s.Mails()) != 1 {
		t.Fatalf("%d mails; only the first should have gone", len(s.Mails()))
	}
	c.Sender = "Portcullis <auth@example.com>\r\nBcc: evil6@example.net"
	if _, err := New(Config{SMTP: c}, nil); err == nil {
		t.Fatal("a sender with a line break was accepted")
	}
}

func TestSMTPDisableHTML(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithStartTLS(), smtptest.WithAuth(testUser, testPassword))
	c := submissionConfig(t, s)
	c.DisableHTMLEmails = true
	if err := mustNew(t, c).Send(context.Background(), Recipient{Address: "h@example.com"}, Message{Kind: KindCode, Code: "987654", Lifespan: time.Minute}); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "h@example.com", waitMail)
	if m.HTML != "" || !strings.Contains(m.Text, "987654") || strings.Contains(string(m.Raw), "text/html") {
		t.Fatalf("HTML %q text %q", m.HTML, m.Text)
	}
}

// TestSMTPWarnsOfWeakTLS: New logs a warning for skip_verify and disable_require_tls.
func TestSMTPWarnsOfWeakTLS(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	c := &SMTPConfig{Address: "smtp://127.0.0.1:25", Sender: "a@example.com", DisableRequireTLS: true, TLS: &TLSConfig{SkipVerify: true}}
	if _, err := New(Config{SMTP: c}, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("skip_verify").Len() != 1 || logs.FilterMessageSnippet("disable_require_tls").Len() != 1 {
		t.Fatalf("warnings: %v", logs.All())
	}
}
