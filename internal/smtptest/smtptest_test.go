package smtptest

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const rawMail = "From: Portcullis <auth@example.com>\r\n" +
	"To: Jane <jane@example.com>\r\n" +
	"Subject: =?utf-8?q?Caf=C3=A9_code?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=BOUND\r\n" +
	"\r\n" +
	"--BOUND\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Your code is 1234=\r\n5678.\r\n" +
	"--BOUND\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+WW91ciBjb2RlIGlzIDxiPjEy\r\nMzQ1Njc4PC9iPi48L3A+\r\n" +
	"--BOUND--\r\n"

// TestStartTLSAuth sends a mail over STARTTLS with AUTH PLAIN, trusting the server's
// certificate through CertPool, and reads it back parsed.
func TestStartTLSAuth(t *testing.T) {
	s := Start(t, WithStartTLS(), WithAuth("mailer", "s3cret"))
	c, err := smtp.DialStartTLS(s.Addr(), &tls.Config{RootCAs: s.CertPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("auth@example.com", nil); err == nil {
		t.Fatal("MAIL before AUTH was accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "mailer", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "mailer", "s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("auth@example.com", []string{"Jane@Example.com"}, strings.NewReader(rawMail)); err != nil {
		t.Fatal(err)
	}
	m := s.WaitFor(t, "jane@example.com", 5*time.Second)
	if m.From != "auth@example.com" || len(m.To) != 1 || !m.TLS || m.Username != "mailer" {
		t.Fatalf("envelope %q %q TLS %v user %q", m.From, m.To, m.TLS, m.Username)
	}
	if m.Subject != "Café code" || m.Header.Get("To") != "Jane <jane@example.com>" {
		t.Fatalf("subject %q, To %q", m.Subject, m.Header.Get("To"))
	}
	if m.Text != "Your code is 12345678." || m.HTML != "<p>Your code is <b>12345678</b>.</p>" {
		t.Fatalf("text %q html %q", m.Text, m.HTML)
	}
	if len(s.Mails()) != 1 {
		t.Fatalf("%d mails", len(s.Mails()))
	}
}

func TestImplicitTLSAndStop(t *testing.T) {
	s := Start(t, WithImplicitTLS())
	c, err := smtp.DialTLS(s.Addr(), &tls.Config{RootCAs: s.CertPool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: hi\r\n\r\nplain body\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()
	m := s.WaitFor(t, "b@example.com", 5*time.Second)
	if !m.TLS || m.Text != "plain body\n" || m.HTML != "" {
		t.Fatalf("TLS %v text %q html %q", m.TLS, m.Text, m.HTML)
	}
	s.Stop()
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("a stopped server still accepts connections")
	}
}
