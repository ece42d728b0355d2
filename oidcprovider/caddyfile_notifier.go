package oidcprovider

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
)

// unmarshalNotifier reads the notifier block, d positioned on the 'notifier' token:
//
//	notifier {
//		smtp {
//			address submission://smtp.example.com:587
//			username portcullis
//			password {env.SMTP_PASSWORD}
//			sender "Portcullis <auth@example.com>"
//			identifier auth.example.com
//			subject "[Portcullis] {title}"
//			timeout 5s
//			tls {
//				server_name smtp.example.com
//				skip_verify false
//				minimum_version TLS1.2
//				maximum_version TLS1.3
//				ca_file /etc/ssl/private-ca.pem
//			}
//			disable_require_tls false
//			disable_starttls false
//			disable_html_emails false
//		}
//		filesystem /var/lib/caddy/notification.txt
//		disable_startup_check false
//	}
//
// One of smtp and filesystem. Placeholders such as {env.SMTP_PASSWORD} are kept as written, to
// be resolved when the app is provisioned (notify.Config.Resolve); the values are checked then
// too (notify.Config.Validate).
func unmarshalNotifier(d *caddyfile.Dispenser) (*notify.Config, error) {
	if d.NextArg() {
		return nil, d.Errf("notifier takes no argument, got %q; its settings go in its block: notifier { smtp { … } } or notifier { filesystem <file> }", d.Val())
	}
	c := new(notify.Config)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "smtp":
			if c.SMTP != nil {
				return nil, d.Err("notifier: smtp is given twice; merge the two blocks")
			}
			if d.NextArg() {
				return nil, d.Errf("notifier: smtp takes no argument, got %q; write smtp { address %s … }", d.Val(), d.Val())
			}
			c.SMTP, err = unmarshalNotifierSMTP(d)
		case "filesystem":
			if c.FileSystem != nil {
				return nil, d.Err("notifier: filesystem is given twice; keep one")
			}
			c.FileSystem, err = unmarshalNotifierFileSystem(d)
		case "disable_startup_check":
			err = boolArg(d, &c.DisableStartupCheck)
		default:
			return nil, d.Errf("notifier: unknown option %q (smtp, filesystem, disable_startup_check)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case c.SMTP == nil && c.FileSystem == nil:
		return nil, d.Err("notifier needs smtp { address …; sender … } or filesystem <file>")
	case c.SMTP != nil && c.FileSystem != nil:
		return nil, d.Err("notifier: smtp and filesystem are both given; keep one (filesystem is for a quick start or tests)")
	}
	return c, nil
}

// unmarshalNotifierFileSystem reads 'filesystem <file>' or Authelia's 'filesystem { filename
// <file> }'.
func unmarshalNotifierFileSystem(d *caddyfile.Dispenser) (*notify.FileSystemConfig, error) {
	f := new(notify.FileSystemConfig)
	if d.NextArg() {
		f.Filename = d.Val()
		if d.NextArg() {
			return nil, d.Errf("notifier: filesystem takes one file, got another: %q", d.Val())
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "filename":
			if f.Filename != "" {
				return nil, d.Err("notifier: filesystem: the file is given twice; write filesystem <file>")
			}
			if err := oneArg(d, &f.Filename); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("notifier: filesystem: unknown option %q (filename)", opt)
		}
	}
	if f.Filename == "" {
		return nil, d.Err("notifier: filesystem needs a file: filesystem /var/lib/caddy/notification.txt")
	}
	return f, nil
}

// unmarshalNotifierSMTP reads the block of 'smtp'.
func unmarshalNotifierSMTP(d *caddyfile.Dispenser) (*notify.SMTPConfig, error) {
	s := new(notify.SMTPConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "address":
			err = oneArg(d, &s.Address)
		case "username":
			err = oneArg(d, &s.Username)
		case "password":
			err = secretArg(d, &s.Password)
		case "sender":
			err = oneArg(d, &s.Sender)
		case "identifier":
			err = oneArg(d, &s.Identifier)
		case "subject":
			err = oneArg(d, &s.Subject)
		case "timeout":
			var v caddy.Duration
			if err = durationArg(d, &v); err == nil {
				s.Timeout = duration.Duration(v)
			}
		case "tls":
			if d.NextArg() {
				return nil, d.Errf("notifier: smtp: tls takes no argument, got %q; its settings go in its block", d.Val())
			}
			if s.TLS != nil {
				return nil, d.Err("notifier: smtp: tls is given twice")
			}
			var t tlsBlock
			if err = t.unmarshal(d, "notifier: smtp", "server_name", "skip_verify", "minimum_version", "maximum_version", "ca_file"); err == nil {
				s.TLS = &notify.TLSConfig{ServerName: t.ServerName, SkipVerify: t.SkipVerify, MinimumVersion: t.MinimumVersion,
					MaximumVersion: t.MaximumVersion, CAFile: t.CAFile}
			}
		case "disable_require_tls":
			err = boolArg(d, &s.DisableRequireTLS)
		case "disable_starttls":
			err = boolArg(d, &s.DisableStartTLS)
		case "disable_html_emails":
			err = boolArg(d, &s.DisableHTMLEmails)
		default:
			return nil, d.Errf("notifier: smtp: unknown option %q (address, username, password, sender, identifier, subject, timeout, tls, disable_require_tls, disable_starttls, disable_html_emails)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}
