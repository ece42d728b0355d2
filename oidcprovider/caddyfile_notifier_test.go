package oidcprovider

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/notify"
)

func parseNotifier(t *testing.T, input string) (*notify.Config, error) {
	t.Helper()
	d := caddyfile.NewTestDispenser(input)
	if !d.Next() || d.Val() != "notifier" {
		t.Fatalf("input does not begin with notifier: %q", input)
	}
	c, err := unmarshalNotifier(d)
	if err == nil && d.Next() {
		t.Fatalf("tokens left after the notifier block: %q", d.Val())
	}
	return c, err
}

func TestUnmarshalNotifier(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  *notify.Config
	}{
		{
			name: "smtp in full",
			input: `notifier {
				smtp {
					address submission://smtp.example.com:587
					username portcullis
					password {env.SMTP_PASSWORD}
					sender "Portcullis <auth@example.com>"
					identifier auth.example.com
					subject "[Portcullis] {title}"
					timeout 10s
					tls {
						server_name mx.example.com
						skip_verify false
						minimum_version TLS1.2
						maximum_version TLS1.3
						ca_file /etc/ssl/ca.pem
					}
					disable_require_tls false
					disable_starttls false
					disable_html_emails true
				}
				disable_startup_check
			}`,
			want: &notify.Config{
				SMTP: &notify.SMTPConfig{
					Address:    "submission://smtp.example.com:587",
					Username:   "portcullis",
					Password:   "{env.SMTP_PASSWORD}",
					Sender:     "Portcullis <auth@example.com>",
					Identifier: "auth.example.com",
					Subject:    "[Portcullis] {title}",
					Timeout:    duration.Duration(10 * time.Second),
					TLS: &notify.TLSConfig{ServerName: "mx.example.com", MinimumVersion: "TLS1.2", MaximumVersion: "TLS1.3",
						CAFile: "/etc/ssl/ca.pem"},
					DisableHTMLEmails: true,
				},
				DisableStartupCheck: true,
			},
		},
		{
			name:  "smtp plain",
			input: "notifier {\n smtp {\n address smtp://127.0.0.1:25\n sender auth@example.com\n disable_require_tls\n disable_starttls true\n }\n disable_startup_check false\n}",
			want: &notify.Config{SMTP: &notify.SMTPConfig{Address: "smtp://127.0.0.1:25", Sender: "auth@example.com",
				DisableRequireTLS: true, DisableStartTLS: true}},
		},
		{
			name:  "filesystem",
			input: "notifier {\n filesystem /var/lib/caddy/notification.txt\n}",
			want:  &notify.Config{FileSystem: &notify.FileSystemConfig{Filename: "/var/lib/caddy/notification.txt"}},
		},
		{
			name:  "filesystem block (Authelia's form)",
			input: "notifier {\n filesystem {\n filename /tmp/n.txt\n }\n}",
			want:  &notify.Config{FileSystem: &notify.FileSystemConfig{Filename: "/tmp/n.txt"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNotifier(t, tc.input)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Fatalf("got  %s\nwant %s", g, w)
			}
		})
	}
}

func TestUnmarshalNotifierErrors(t *testing.T) {
	for _, tc := range []struct {
		name, input, want string
	}{
		{"argument", "notifier smtp", "notifier takes no argument"},
		{"empty", "notifier {\n}", "notifier needs smtp"},
		{"unknown key", "notifier {\n mail x\n}", `unknown option "mail"`},
		{"both", "notifier {\n filesystem /tmp/n\n smtp {\n address submission://x\n }\n}", "keep one"},
		{"smtp twice", "notifier {\n smtp {\n }\n smtp {\n }\n}", "smtp is given twice"},
		{"smtp argument", "notifier {\n smtp submission://x\n}", "smtp takes no argument"},
		{"smtp unknown key", "notifier {\n smtp {\n host smtp.example.com\n }\n}", `smtp: unknown option "host"`},
		{"smtp tls unknown key", "notifier {\n smtp {\n tls {\n verify false\n }\n }\n}", `tls: unknown option "verify"`},
		{"smtp tls twice", "notifier {\n smtp {\n tls {\n }\n tls {\n }\n }\n}", "tls is given twice"},
		{"smtp address missing value", "notifier {\n smtp {\n address\n }\n}", "address needs a value"},
		{"smtp address two values", "notifier {\n smtp {\n address a b\n }\n}", "address takes one value"},
		{"smtp bad bool", "notifier {\n smtp {\n disable_require_tls maybe\n }\n}", "true or false"},
		{"smtp bad timeout", "notifier {\n smtp {\n timeout soon\n }\n}", "not a duration"},
		{"filesystem no file", "notifier {\n filesystem\n}", "filesystem needs a file"},
		{"filesystem two files", "notifier {\n filesystem /a /b\n}", "takes one file"},
		{"filesystem unknown key", "notifier {\n filesystem {\n path /a\n }\n}", `filesystem: unknown option "path"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseNotifier(t, tc.input)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
	// A password never appears in an error, even when written wrong.
	_, err := parseNotifier(t, "notifier {\n smtp {\n password hunter2 extra\n }\n}")
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "extra") {
		t.Fatalf("password error: %v", err)
	}
}

// TestUnmarshalNotifierThenNew: what the Caddyfile gives, once its placeholders are resolved, is
// what New accepts.
func TestUnmarshalNotifierThenNew(t *testing.T) {
	dir := t.TempDir()
	c, err := parseNotifier(t, "notifier {\n filesystem "+dir+"/notification.txt\n}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notify.New(*c, nil); err != nil {
		t.Fatal(err)
	}
	c, err = parseNotifier(t, "notifier {\n smtp {\n address smtp://smtp.example.com\n sender auth@example.com\n }\n}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notify.New(*c, nil); err == nil || !strings.Contains(err.Error(), "disable_require_tls") {
		t.Fatalf("New on plain smtp: %v", err)
	}
}
