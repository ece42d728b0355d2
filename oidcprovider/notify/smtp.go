package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"go.uber.org/zap"
)

// SMTP delivers messages by mail through an SMTP server, on github.com/wneessen/go-mail. Every
// Send opens its own connection, bounded as a whole by the configured timeout. It is safe for
// concurrent use.
type SMTP struct {
	cfg     SMTPConfig
	addr    smtpAddress
	sender  *mail.Address
	tls     *tls.Config
	timeout time.Duration
	subject string
	helo    string
	logger  *zap.Logger
}

var _ Notifier = (*SMTP)(nil)

func newSMTP(c SMTPConfig, logger *zap.Logger) (*SMTP, error) {
	addr, err := parseSMTPAddress(c.Address)
	if err != nil {
		return nil, err
	}
	sender, err := parseSender(c.Sender)
	if err != nil {
		return nil, err
	}
	n := &SMTP{
		cfg:     c,
		addr:    addr,
		sender:  sender,
		timeout: time.Duration(c.Timeout),
		subject: c.Subject,
		helo:    c.Identifier,
		logger:  logger,
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	if n.subject == "" {
		n.subject = DefaultSubject
	}
	if n.helo == "" {
		n.helo = DefaultIdentifier
	}
	n.tls = &tls.Config{ServerName: addr.host, MinVersion: tls.VersionTLS12}
	if t := c.TLS; t != nil {
		if t.ServerName != "" {
			n.tls.ServerName = t.ServerName
		}
		n.tls.InsecureSkipVerify = t.SkipVerify
		if v, _ := tlsVersion(t.MinimumVersion); v != 0 {
			n.tls.MinVersion = v
		}
		if v, _ := tlsVersion(t.MaximumVersion); v != 0 {
			n.tls.MaxVersion = v
		}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("notifier: smtp tls ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("notifier: smtp tls ca_file %s holds no PEM certificate", t.CAFile)
			}
			n.tls.RootCAs = pool
		}
	}
	if n.tls.InsecureSkipVerify {
		logger.Warn("notifier: smtp tls skip_verify is set: any server that answers gets the password and every code; use it only in tests")
	}
	if c.DisableRequireTLS {
		logger.Warn("notifier: smtp disable_require_tls is set: codes and reset links may cross the network in clear text")
	}
	return n, nil
}

// Address is the server's host:port.
func (n *SMTP) Address() string { return n.addr.hostPort() }

// client makes a go-mail client whose connection is closed when ctx ends, so nothing it does
// outlives ctx; stop releases that watch.
func (n *SMTP) client(ctx context.Context) (c *gomail.Client, stop func(), err error) {
	var (
		mu    sync.Mutex
		stops []func() bool
	)
	stop = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range stops {
			s()
		}
	}
	implicit := n.addr.scheme == "submissions"
	dial := func(dctx context.Context, network, address string) (net.Conn, error) {
		d := &net.Dialer{}
		var conn net.Conn
		var err error
		if implicit {
			conn, err = (&tls.Dialer{NetDialer: d, Config: n.tls}).DialContext(dctx, network, address)
		} else {
			conn, err = d.DialContext(dctx, network, address)
		}
		if err != nil {
			return nil, err
		}
		mu.Lock()
		stops = append(stops, context.AfterFunc(ctx, func() { _ = conn.Close() }))
		mu.Unlock()
		return conn, nil
	}
	policy := gomail.TLSMandatory
	switch {
	case implicit:
		policy = gomail.NoTLS // TLS is there from the first byte: no STARTTLS on top
	case n.cfg.DisableStartTLS:
		policy = gomail.NoTLS
	case n.cfg.DisableRequireTLS:
		policy = gomail.TLSOpportunistic
	}
	opts := []gomail.Option{
		gomail.WithPort(n.addr.port),
		gomail.WithTimeout(n.timeout),
		gomail.WithTLSPolicy(policy),
		gomail.WithTLSConfig(n.tls),
		gomail.WithHELO(n.helo),
		gomail.WithDialContextFunc(dial),
	}
	if n.cfg.Username != "" {
		// PLAIN and LOGIN refuse by themselves to send the password over a connection without
		// TLS (except to the loopback address).
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(n.cfg.Username),
			gomail.WithPassword(n.cfg.Password))
	}
	c, err = gomail.NewClient(n.addr.host, opts...)
	if err != nil {
		return nil, nil, n.fail(ctx, err)
	}
	return c, stop, nil
}

// fail wraps err in ErrUndeliverable with the server's address, never with the password.
func (n *SMTP) fail(ctx context.Context, err error) error {
	msg := err.Error()
	if n.cfg.Password != "" {
		msg = strings.ReplaceAll(msg, n.cfg.Password, "[password]")
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: smtp %s: no answer within the timeout (%v): %s", ErrUndeliverable, n.addr.hostPort(), n.timeout, msg)
	}
	return fmt.Errorf("%w: smtp %s: %s", ErrUndeliverable, n.addr.hostPort(), msg)
}

// bound gives ctx the notifier's timeout, unless it already ends sooner.
func (n *SMTP) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.timeout)
}

// Send renders msg and hands it to the SMTP server for to.
func (n *SMTP) Send(ctx context.Context, to Recipient, msg Message) error {
	addr, err := recipientAddress(to)
	if err != nil {
		return err
	}
	r, err := render(to, msg, !n.cfg.DisableHTMLEmails)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUndeliverable, err)
	}
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	m.FromMailAddress(n.sender)
	m.ToMailAddress(addr)
	m.Subject(oneLine(strings.ReplaceAll(n.subject, "{title}", r.Title)))
	m.SetDate()
	m.SetMessageIDWithValue(messageID(n.sender.Address))
	m.SetUserAgent("Portcullis")
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetBodyString(gomail.TypeTextPlain, r.Text)
	if r.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, r.HTML)
	}

	ctx, cancel := n.bound(ctx)
	defer cancel()
	c, stop, err := n.client(ctx)
	if err != nil {
		return err
	}
	defer stop()
	start := time.Now()
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return n.fail(ctx, err)
	}
	n.logger.Debug("mail sent", zap.String("kind", string(msg.Kind)), zap.String("server", n.addr.hostPort()),
		zap.Duration("took", time.Since(start)))
	return nil
}

// Check connects, says EHLO, sets up TLS, authenticates when a username is set and says QUIT,
// without sending any mail.
func (n *SMTP) Check(ctx context.Context) error {
	ctx, cancel := n.bound(ctx)
	defer cancel()
	c, stop, err := n.client(ctx)
	if err != nil {
		return err
	}
	defer stop()
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return n.fail(ctx, err)
	}
	if err := c.CloseWithSMTPClient(sc); err != nil {
		return n.fail(ctx, err)
	}
	return nil
}

// messageID makes a Message-ID in the sender's domain, so it names no machine.
func messageID(sender string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	domain := "portcullis.invalid"
	if i := strings.LastIndexByte(sender, '@'); i >= 0 && i < len(sender)-1 {
		domain = sender[i+1:]
	}
	return hex.EncodeToString(b[:]) + "@" + domain
}
