package oidcprovider

// What the storage postgres, ldap and notifier blocks share: their tls blocks and the
// resolution of their {env.*} and {file.*} placeholders.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// tlsBlock is what a 'tls { … }' block of storage postgres, ldap or the notifier's smtp may
// hold; each takes some of the keys (Authelia's names, plus ca_file).
type tlsBlock struct {
	ServerName, MinimumVersion, MaximumVersion, CertificateChain, PrivateKey, CAFile string
	SkipVerify                                                                       bool
}

// unmarshal reads the block (d on the tls token's line), accepting only keys; scope names the
// enclosing block in errors ("ldap", "notifier: smtp").
func (t *tlsBlock) unmarshal(d *caddyfile.Dispenser, scope string, keys ...string) error {
	fields := map[string]*string{"server_name": &t.ServerName, "minimum_version": &t.MinimumVersion,
		"maximum_version": &t.MaximumVersion, "certificate_chain": &t.CertificateChain,
		"private_key": &t.PrivateKey, "ca_file": &t.CAFile}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !slices.Contains(keys, opt) {
			return d.Errf("%s: tls: unknown option %q (%s)", scope, opt, strings.Join(keys, ", "))
		}
		var err error
		if opt == "skip_verify" {
			err = boolArg(d, &t.SkipVerify)
		} else {
			err = oneArg(d, fields[opt])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// placeholders replaces the {env.*} and {file.*} placeholders of a config's values, key by key,
// keeping the first error (naming scope and key, never the value).
type placeholders struct {
	repl  *caddy.Replacer
	scope string
	err   error
}

// resolve replaces the placeholders of *v, which key names; an empty value stays empty.
func (r *placeholders) resolve(key string, v *string) {
	if r.err != nil || *v == "" {
		return
	}
	var err error
	if *v, err = r.repl.ReplaceOrErr(*v, true, true); err != nil {
		r.err = fmt.Errorf("%s: %s: %w", r.scope, key, err)
	}
}
