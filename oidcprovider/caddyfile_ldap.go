package oidcprovider

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/users/ldap"
)

// ldapOptions are the keys of the ldap block, for the error on an unknown one.
const ldapOptions = "implementation, address, start_tls, tls, timeout, base_dn, additional_users_dn, users_filter, " +
	"additional_groups_dn, groups_filter, group_search_mode, user, password, attributes, pooling, cache_ttl"

// unmarshalLDAP reads 'ldap { … }' (d on the ldap token), Authelia's authentication_backend.ldap
// keys, one per line, with tls, attributes and pooling as nested blocks:
//
//	ldap {
//		implementation custom
//		address ldaps://ldap.example.com
//		start_tls false
//		tls {
//			server_name ldap.example.com
//			minimum_version TLS1.2
//			maximum_version TLS1.3
//			skip_verify false
//			ca_file /etc/ssl/ldap-ca.pem
//			certificate_chain /etc/ssl/client.pem
//			private_key /etc/ssl/client.key
//		}
//		timeout 5s
//		base_dn dc=example,dc=com
//		additional_users_dn ou=people
//		users_filter (&({username_attribute}={input})(objectClass=person))
//		additional_groups_dn ou=groups
//		groups_filter (&(member={dn})(objectClass=groupOfNames))
//		group_search_mode filter
//		user cn=portcullis,ou=services,dc=example,dc=com
//		password {env.LDAP_PASSWORD}
//		attributes {
//			username uid
//			display_name displayName
//			mail mail
//			member_of memberOf
//			group_name cn
//		}
//		pooling {
//			enable true
//			count 5
//			retries 2
//			timeout 10s
//		}
//		cache_ttl 30s
//	}
//
// Placeholders such as {env.LDAP_PASSWORD} are kept as written and resolved when the app is
// provisioned (resolveLDAP); the filters' own placeholders ({input}, {dn}, …) are the
// directory's. The values are checked then too (ldap.Config.Validate).
func unmarshalLDAP(d *caddyfile.Dispenser) (*ldap.Config, error) {
	if d.NextArg() {
		return nil, d.Errf("ldap takes no argument, got %q; its settings go in its block", d.Val())
	}
	c := new(ldap.Config)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("ldap: %s is given twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "implementation":
			err = oneArg(d, &c.Implementation)
		case "address":
			err = oneArg(d, &c.Address)
		case "start_tls":
			err = boolArg(d, &c.StartTLS)
		case "tls":
			if d.NextArg() {
				return nil, d.Errf("ldap: tls takes no argument, got %q; its settings go in its block", d.Val())
			}
			var t tlsBlock
			if err = t.unmarshal(d, "ldap", "server_name", "skip_verify", "minimum_version", "maximum_version", "certificate_chain", "private_key", "ca_file"); err == nil {
				c.TLS = &ldap.TLSConfig{ServerName: t.ServerName, SkipVerify: t.SkipVerify, MinimumVersion: t.MinimumVersion,
					MaximumVersion: t.MaximumVersion, CertificateChain: t.CertificateChain, PrivateKey: t.PrivateKey, CAFile: t.CAFile}
			}
		case "timeout":
			err = ldapDuration(d, &c.Timeout)
		case "base_dn":
			err = oneArg(d, &c.BaseDN)
		case "additional_users_dn":
			err = oneArg(d, &c.AdditionalUsersDN)
		case "users_filter":
			err = oneArg(d, &c.UsersFilter)
		case "additional_groups_dn":
			err = oneArg(d, &c.AdditionalGroupsDN)
		case "groups_filter":
			err = oneArg(d, &c.GroupsFilter)
		case "group_search_mode":
			err = oneArg(d, &c.GroupSearchMode)
		case "user":
			err = oneArg(d, &c.User)
		case "password":
			err = secretArg(d, &c.Password)
		case "attributes":
			if d.NextArg() {
				return nil, d.Errf("ldap: attributes takes no argument, got %q; its settings go in its block", d.Val())
			}
			err = unmarshalLDAPAttributes(d, &c.Attributes)
		case "pooling":
			if d.NextArg() {
				return nil, d.Errf("ldap: pooling takes no argument, got %q; its settings go in its block", d.Val())
			}
			err = unmarshalLDAPPooling(d, &c.Pooling)
		case "cache_ttl":
			err = ldapDuration(d, &c.CacheTTL)
		case "url":
			return nil, d.Err("ldap: url is Authelia's old name of address; write address ldaps://host")
		case "username_attribute", "mail_attribute", "display_name_attribute", "group_name_attribute":
			return nil, d.Errf("ldap: %s is Authelia's old form; write it in the attributes block: attributes { %s … }", opt, ldapAttributeKey(opt))
		case "permit_referrals", "permit_unauthenticated_bind", "permit_feature_detection_failure", "users_reset_filter":
			return nil, d.Errf("ldap: %s is not supported by Portcullis; remove it", opt)
		default:
			return nil, d.Errf("ldap: unknown option %q (%s)", opt, ldapOptions)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func ldapAttributeKey(old string) string {
	switch old {
	case "username_attribute":
		return "username"
	case "mail_attribute":
		return "mail"
	case "display_name_attribute":
		return "display_name"
	}
	return "group_name"
}

func ldapDuration(d *caddyfile.Dispenser, dst *duration.Duration) error {
	var v caddy.Duration
	if err := durationArg(d, &v); err != nil {
		return err
	}
	*dst = duration.Duration(v)
	return nil
}

// unmarshalLDAPAttributes reads 'attributes { … }' inside 'ldap'.
func unmarshalLDAPAttributes(d *caddyfile.Dispenser, a *ldap.Attributes) error {
	keys := map[string]*string{
		"distinguished_name": &a.DistinguishedName, "username": &a.Username, "display_name": &a.DisplayName,
		"mail": &a.Mail, "member_of": &a.MemberOf, "group_name": &a.GroupName,
		"given_name": &a.GivenName, "family_name": &a.FamilyName, "middle_name": &a.MiddleName, "nickname": &a.Nickname,
		"gender": &a.Gender, "birthdate": &a.Birthdate, "website": &a.Website, "profile": &a.Profile,
		"picture": &a.Picture, "zoneinfo": &a.ZoneInfo, "locale": &a.Locale, "phone_number": &a.PhoneNumber,
		"phone_extension": &a.PhoneExtension, "street_address": &a.StreetAddress, "locality": &a.Locality,
		"region": &a.Region, "postal_code": &a.PostalCode, "country": &a.Country,
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		dst, ok := keys[opt]
		if !ok {
			if opt == "extra" {
				return d.Err("ldap: attributes: extra is not supported by Portcullis; remove it")
			}
			return d.Errf("ldap: attributes: unknown option %q (distinguished_name, username, display_name, mail, member_of, group_name, "+
				"given_name, family_name, middle_name, nickname, gender, birthdate, website, profile, picture, zoneinfo, locale, "+
				"phone_number, phone_extension, street_address, locality, region, postal_code, country)", opt)
		}
		if err := oneArg(d, dst); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalLDAPPooling reads 'pooling { … }' inside 'ldap'.
func unmarshalLDAPPooling(d *caddyfile.Dispenser, p *ldap.Pooling) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "enable":
			err = boolArg(d, &p.Enable)
		case "count", "retries":
			var v string
			if err = oneArg(d, &v); err == nil {
				n, convErr := strconv.Atoi(v)
				if convErr != nil || n < 0 {
					return d.Errf("ldap: pooling: %s: %q must be a whole number", opt, v)
				}
				if opt == "count" {
					p.Count = n
				} else {
					p.Retries = n
				}
			}
		case "timeout":
			err = ldapDuration(d, &p.Timeout)
		default:
			return d.Errf("ldap: pooling: unknown option %q (enable, count, retries, timeout)", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// resolveLDAP replaces the placeholders ({env.*}, {file.*}) of an LDAP config in the keys that
// may hold them: address, base_dn, the additional DNs, user, password and the tls files (never in
// the filters, whose {input}, {dn}, … are the directory's). An unknown placeholder is an error
// naming its key; a password that resolves to nothing is an error too (an empty password would
// be an unauthenticated bind).
func resolveLDAP(repl *caddy.Replacer, c ldap.Config, logger *zap.Logger) (ldap.Config, error) {
	r := &placeholders{repl: repl, scope: "ldap"}
	resolve := r.resolve
	resolve("address", &c.Address)
	resolve("base_dn", &c.BaseDN)
	resolve("additional_users_dn", &c.AdditionalUsersDN)
	resolve("additional_groups_dn", &c.AdditionalGroupsDN)
	resolve("user", &c.User)
	if c.TLS != nil {
		t := *c.TLS
		resolve("tls server_name", &t.ServerName)
		resolve("tls certificate_chain", &t.CertificateChain)
		resolve("tls private_key", &t.PrivateKey)
		resolve("tls ca_file", &t.CAFile)
		c.TLS = &t
	}
	if r.err != nil {
		return c, r.err
	}
	var err error
	if c.Password != "" {
		if c.Password, err = repl.ReplaceOrErr(c.Password, false, true); err != nil {
			return c, fmt.Errorf("ldap: password: %w", err)
		}
		if c.Password == "" {
			if logger != nil {
				logger.Error("ldap: password resolved to an empty value (is its environment variable set?)")
			}
			return c, fmt.Errorf("ldap: password resolved to an empty value: set the environment variable or file it names")
		}
	}
	return c, nil
}
