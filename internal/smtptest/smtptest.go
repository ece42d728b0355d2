// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) inside a test process,
// on a free loopback port, that keeps every mail it receives and parses it from its MIME, so a
// test reads a code or a link from the mail a user would get, never from a hook into the sender.
// Options add STARTTLS or implicit TLS with a self-signed certificate made for the test, and
// AUTH PLAIN with a username and password.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one mail the server received.
type Mail struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO).
	To []string
	// Header is the mail's header as received.
	Header mail.Header
	// Subject is the Subject header, decoded from RFC 2047.
	Subject string
	// Text and HTML are the decoded text/plain and text/html parts ("" when absent).
	Text string
	HTML string
	// Raw is the mail as received after DATA.
	Raw []byte
	// TLS tells whether the mail came over TLS (STARTTLS or implicit).
	TLS bool
	// Username is who authenticated with AUTH ("" for nobody).
	Username string
}

type options struct {
	startTLS bool
	implicit bool
	username string
	password string
	host     string
}

// Option changes what Start starts.
type Option func(*options)

// WithStartTLS offers STARTTLS with a self-signed certificate for 127.0.0.1, ::1 and localhost
// (trust it with CertPool or CertPEM).
func WithStartTLS() Option { return func(o *options) { o.startTLS = true } }

// WithImplicitTLS speaks TLS from the first byte (submissions://), with the same certificate.
func WithImplicitTLS() Option { return func(o *options) { o.implicit = true } }

// WithAuth requires AUTH PLAIN with username and password before MAIL. Over a connection
// without TLS the server still accepts AUTH: refusing to send a password in clear text is the
// client's duty, and a test can check it does.
func WithAuth(username, password string) Option {
	return func(o *options) { o.username, o.password = username, password }
}

// WithHost listens on another loopback address than 127.0.0.1, such as 127.0.0.2, which a
// client does not take for the local machine.
func WithHost(ip string) Option { return func(o *options) { o.host = ip } }

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	srv     *smtp.Server
	ln      net.Listener
	certPEM []byte
	pool    *x509.CertPool
	opts    options

	mu      sync.Mutex
	mails   []Mail
	taken   map[int]bool
	changed chan struct{} // closed and replaced when a mail arrives
	stopped bool
}

// Start starts a server on a free 127.0.0.1 port, stopped when tb ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{taken: map[int]bool{}, changed: make(chan struct{})}
	for _, o := range opts {
		o(&s.opts)
	}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "smtptest.localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 4 << 20
	srv.MaxRecipients = 50
	srv.ErrorLog = log.New(io.Discard, "", 0)
	var tlsConfig *tls.Config
	if s.opts.startTLS || s.opts.implicit {
		cert, certPEM, err := selfSigned()
		if err != nil {
			tb.Fatalf("smtptest: making a certificate: %v", err)
		}
		s.certPEM = certPEM
		s.pool = x509.NewCertPool()
		s.pool.AppendCertsFromPEM(certPEM)
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if s.opts.startTLS {
			srv.TLSConfig = tlsConfig
		}
	}
	host := s.opts.host
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatalf("smtptest: listening: %v", err)
	}
	if s.opts.implicit {
		ln = tls.NewListener(ln, tlsConfig)
	}
	s.srv, s.ln = srv, ln
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the address the server listens on (127.0.0.1 unless WithHost).
func (s *Server) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port is the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// CertPEM is the server's self-signed certificate in PEM (nil without TLS).
func (s *Server) CertPEM() []byte { return s.certPEM }

// CertPool holds the server's certificate, for a client's RootCAs (nil without TLS).
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Stop closes the server and every connection to it; a later connection is refused.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	// Close the listener too: Serve may not have registered it with the server yet.
	_ = s.ln.Close()
	_ = s.srv.Close()
}

// Mails returns every mail received so far, in order.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// WaitFor waits up to timeout for the next mail to the address to (an envelope recipient, in
// any letter case) that an earlier WaitFor has not returned, and fails tb if none comes.
func (s *Server) WaitFor(tb testing.TB, to string, timeout time.Duration) Mail {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for i, m := range s.mails {
			if s.taken[i] {
				continue
			}
			for _, rcpt := range m.To {
				if strings.EqualFold(rcpt, to) {
					s.taken[i] = true
					s.mu.Unlock()
					return m
				}
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("smtptest: no mail to %s within %v (%d received in all)", to, timeout, len(s.Mails()))
			return Mail{}
		}
	}
}

func (s *Server) add(m Mail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s        *Server
	conn     *smtp.Conn
	username string
	from     string
	to       []string
}

func (se *session) AuthMechanisms() []string {
	if se.s.opts.username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || se.s.opts.username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if (identity != "" && identity != username) || username != se.s.opts.username || password != se.s.opts.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		se.username = username
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.opts.username != "" && se.username == "" {
		return smtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if se.s.opts.username != "" && se.username == "" {
		return smtp.ErrAuthRequired
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := Parse(raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "smtptest: " + err.Error()}
	}
	m.From, m.To, m.Username = se.from, append([]string(nil), se.to...), se.username
	_, m.TLS = se.conn.TLSConnectionState()
	se.s.add(m)
	return nil
}

func (se *session) Reset() { se.from, se.to = "", nil }

func (se *session) Logout() error { return nil }

// Parse reads a mail's header, subject and its text/plain and text/html parts, through nested
// multiparts and quoted-printable or base64 transfer encodings.
func Parse(raw []byte) (Mail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Mail{}, fmt.Errorf("reading the header: %w", err)
	}
	m := Mail{Header: msg.Header, Raw: raw}
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return Mail{}, fmt.Errorf("decoding the subject: %w", err)
	}
	if err := walk(&m, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body); err != nil {
		return Mail{}, err
	}
	return m, nil
}

func walk(m *Mail, contentType, encoding string, body io.Reader) error {
	if contentType == "" {
		contentType = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading a %s part: %w", mediaType, err)
			}
			// NextPart decodes quoted-printable itself and removes the header.
			if err := walk(m, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body) // skips line breaks
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("reading the %s part: %w", mediaType, err)
	}
	switch mediaType {
	case "text/plain":
		if m.Text == "" {
			m.Text = strings.ReplaceAll(string(b), "\r\n", "\n")
		}
	case "text/html":
		if m.HTML == "" {
			m.HTML = strings.ReplaceAll(string(b), "\r\n", "\n")
		}
	}
	return nil
}

// selfSigned makes a certificate for 127.0.0.1, ::1 and localhost, valid for a day.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}
