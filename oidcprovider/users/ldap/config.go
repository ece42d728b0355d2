package ldap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
)

// Config is an LDAP directory of people, with the key names of Authelia's
// authentication_backend.ldap. Validate fills in the defaults of the implementation preset.
type Config struct {
	// Implementation is the kind of directory, whose defaults fill the filters and attributes
	// left empty: custom, activedirectory, rfc2307bis, freeipa, lldap or glauth; JSON
	// "implementation". Default: custom. activedirectory also sets passwords through unicodePwd
	// instead of the password-modify extended operation. The presets are Authelia's: rfc2307bis's
	// users_filter leaves out (pwdReset=TRUE), an attribute OpenLDAP knows only with the ppolicy
	// overlay loaded; without it that filter finds no one, so set users_filter.
	Implementation string `json:"implementation,omitempty"`

	// Address is the server: ldap://host[:port], ldaps://host[:port] or ldapi://<socket path,
	// URL-escaped> (ldapi:///run/slapd/ldapi is read too); JSON "address". Required.
	Address string `json:"address,omitempty"`

	// StartTLS upgrades an ldap:// connection to TLS before anything is sent; JSON "start_tls".
	// Default: false.
	StartTLS bool `json:"start_tls,omitempty"`

	// TLS is how the server's certificate is checked for ldaps:// and start_tls; JSON "tls".
	// Default: the system's roots, the address's host, TLS 1.2 at least.
	TLS *TLSConfig `json:"tls,omitempty"`

	// Timeout bounds dialling the server and each operation on it; JSON "timeout". Default: 5s.
	Timeout duration.Duration `json:"timeout,omitempty"`

	// BaseDN is the entry every search is made under; JSON "base_dn". Required.
	BaseDN string `json:"base_dn,omitempty"`

	// AdditionalUsersDN is prefixed to BaseDN for the search of users (ou=people); JSON
	// "additional_users_dn". Default: none (lldap: OU=people).
	AdditionalUsersDN string `json:"additional_users_dn,omitempty"`

	// UsersFilter finds the one user a name names; JSON "users_filter". It must contain {input}
	// (the name typed, escaped per RFC 4515), and may contain {username_attribute},
	// {mail_attribute}, {display_name_attribute}, {member_of_attribute},
	// {distinguished_name_attribute}, {date-time:generalized}, {date-time:unix} and
	// {date-time:microsoft-nt}. It should exclude disabled accounts: a user it does not find is
	// unknown, so their sessions end. Default: the implementation's (custom has none: required).
	UsersFilter string `json:"users_filter,omitempty"`

	// AdditionalGroupsDN is prefixed to BaseDN for the search of groups (ou=groups); JSON
	// "additional_groups_dn". Default: none (lldap: OU=groups).
	AdditionalGroupsDN string `json:"additional_groups_dn,omitempty"`

	// GroupsFilter finds a user's groups in group_search_mode filter; JSON "groups_filter". It
	// may contain {dn} (the user's DN), {input} and {username} (escaped), and the attribute
	// placeholders of users_filter. In group_search_mode memberof it is optional: with
	// {memberof:rdn} or {memberof:dn} the groups it finds that are among the user's member_of
	// values are the user's groups. Default: the implementation's (custom has none: required in
	// filter mode).
	GroupsFilter string `json:"groups_filter,omitempty"`

	// GroupSearchMode is filter (search groups with groups_filter) or memberof (read the user's
	// member_of attribute: each group's name is the value of its DN's first RDN when that is the
	// group_name attribute, else its group_name attribute); JSON "group_search_mode". Default:
	// filter.
	GroupSearchMode string `json:"group_search_mode,omitempty"`

	// User is the DN of the service account the searches (and password resets) bind as; JSON
	// "user". Required: unauthenticated binds are not supported.
	User string `json:"user,omitempty"`

	// Password is User's password; JSON "password". Required; write a placeholder such as
	// {env.LDAP_PASSWORD} rather than the password.
	Password string `json:"password,omitempty"`

	// Attributes names the directory's attributes; JSON "attributes". Defaults: the
	// implementation's.
	Attributes Attributes `json:"attributes,omitempty"`

	// Pooling sizes the service account's connections; JSON "pooling".
	Pooling Pooling `json:"pooling,omitempty"`

	// CacheTTL is how long a user found (groups, disabled state, password version included) is
	// reused before the directory is asked again; JSON "cache_ttl". A change in the directory (a
	// group removed, an account disabled) is seen within it. A name that finds no user is
	// remembered for at most NegativeCacheTTL. Default: DefaultCacheTTL (30s).
	CacheTTL duration.Duration `json:"cache_ttl,omitempty"`
}

// TLSConfig is the TLS of the connections to the server, with Authelia's key names (plus
// ca_file, as storage postgres has).
type TLSConfig struct {
	// ServerName is the name the server's certificate must carry; JSON "server_name". Default:
	// the host of Address.
	ServerName string `json:"server_name,omitempty"`
	// SkipVerify accepts any server certificate; JSON "skip_verify". Default: false. It gives
	// the service account's and the users' passwords to whoever answers: for tests only.
	SkipVerify bool `json:"skip_verify,omitempty"`
	// MinimumVersion and MaximumVersion bound the TLS version: TLS1.2 or TLS1.3; JSON
	// "minimum_version", "maximum_version". Defaults: TLS1.2, and the highest Go supports.
	MinimumVersion string `json:"minimum_version,omitempty"`
	MaximumVersion string `json:"maximum_version,omitempty"`
	// CertificateChain and PrivateKey are a client certificate (PEM files) for servers that ask
	// for one; JSON "certificate_chain", "private_key".
	CertificateChain string `json:"certificate_chain,omitempty"`
	PrivateKey       string `json:"private_key,omitempty"`
	// CAFile is a PEM file of the certificate authorities that may sign the server's
	// certificate; JSON "ca_file". Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`
}

// Attributes names the directory's attributes, as Authelia's attributes keys do. The profile
// attributes (given_name … country) fill the OpenID Connect profile claims; empty ones are not
// read.
type Attributes struct {
	// DistinguishedName is the attribute holding an entry's DN, for
	// {distinguished_name_attribute} and {memberof:dn}; JSON "distinguished_name". Default:
	// activedirectory: distinguishedName; others: none.
	DistinguishedName string `json:"distinguished_name,omitempty"`
	// Username is the attribute holding the username, whose value (the directory's spelling) is
	// the user's identity; JSON "username". Default: uid (activedirectory: sAMAccountName,
	// glauth: cn; custom: required).
	Username string `json:"username,omitempty"`
	// DisplayName is the attribute holding the name shown; JSON "display_name". Default:
	// displayName (lldap: cn, glauth: description).
	DisplayName string `json:"display_name,omitempty"`
	// Mail is the attribute holding mail addresses, the first one primary; JSON "mail".
	// Default: mail.
	Mail string `json:"mail,omitempty"`
	// MemberOf is the attribute listing the DNs of a user's groups, for group_search_mode
	// memberof; JSON "member_of". Default: memberOf (custom: none).
	MemberOf string `json:"member_of,omitempty"`
	// GroupName is the attribute holding a group's name; JSON "group_name". Default: cn.
	GroupName string `json:"group_name,omitempty"`

	// The optional profile attributes; JSON "given_name", "family_name", "middle_name",
	// "nickname", "gender", "birthdate", "website", "profile", "picture", "zoneinfo", "locale",
	// "phone_number", "phone_extension", "street_address", "locality", "region", "postal_code",
	// "country". Default: none.
	GivenName      string `json:"given_name,omitempty"`
	FamilyName     string `json:"family_name,omitempty"`
	MiddleName     string `json:"middle_name,omitempty"`
	Nickname       string `json:"nickname,omitempty"`
	Gender         string `json:"gender,omitempty"`
	Birthdate      string `json:"birthdate,omitempty"`
	Website        string `json:"website,omitempty"`
	Profile        string `json:"profile,omitempty"`
	Picture        string `json:"picture,omitempty"`
	ZoneInfo       string `json:"zoneinfo,omitempty"`
	Locale         string `json:"locale,omitempty"`
	PhoneNumber    string `json:"phone_number,omitempty"`
	PhoneExtension string `json:"phone_extension,omitempty"`
	StreetAddress  string `json:"street_address,omitempty"`
	Locality       string `json:"locality,omitempty"`
	Region         string `json:"region,omitempty"`
	PostalCode     string `json:"postal_code,omitempty"`
	Country        string `json:"country,omitempty"`
}

// Pooling sizes the service account's connections. They are opened when first needed, shared by
// concurrent searches, and replaced when broken.
type Pooling struct {
	// Enable keeps Count connections; JSON "enable". Default: false, which keeps one (Authelia
	// opens one per operation without a pool; one kept connection does the same work cheaper).
	Enable bool `json:"enable,omitempty"`
	// Count is the number of connections kept when Enable is set; JSON "count". Default: 5.
	Count int `json:"count,omitempty"`
	// Retries is how many more times an operation is tried on another (new) connection when its
	// connection fails; JSON "retries". Default: 2.
	Retries int `json:"retries,omitempty"`
	// Timeout bounds an operation with its retries, after which the directory counts as
	// unavailable; JSON "timeout". Default: 10s.
	Timeout duration.Duration `json:"timeout,omitempty"`
}

// The defaults; see Config.
const (
	// DefaultCacheTTL is the default cache_ttl: a change in the directory (a group removed, an
	// account disabled or removed, a password changed elsewhere) is seen within it.
	DefaultCacheTTL = 30 * time.Second
	// NegativeCacheTTL bounds how long a name that finds no user is remembered (cache_ttl when
	// shorter): a user added to the directory can sign in within it.
	NegativeCacheTTL = 5 * time.Second
	// DefaultTimeout is the default timeout.
	DefaultTimeout = 5 * time.Second
	// DefaultPoolCount, DefaultPoolRetries and DefaultPoolTimeout are pooling's defaults.
	DefaultPoolCount   = 5
	DefaultPoolRetries = 2
	DefaultPoolTimeout = 10 * time.Second
)

// The implementations.
const (
	ImplementationCustom          = "custom"
	ImplementationActiveDirectory = "activedirectory"
	ImplementationRFC2307bis      = "rfc2307bis"
	ImplementationFreeIPA         = "freeipa"
	ImplementationLLDAP           = "lldap"
	ImplementationGLAuth          = "glauth"
)

// The group search modes.
const (
	GroupSearchModeFilter   = "filter"
	GroupSearchModeMemberOf = "memberof"
)

// preset is what an implementation fills in.
type preset struct {
	usersDN, groupsDN, usersFilter, groupsFilter string
	attrs                                        Attributes
}

// presets are Authelia's documented defaults for each implementation.
var presets = map[string]preset{
	ImplementationCustom: {
		attrs: Attributes{DisplayName: "displayName", Mail: "mail", GroupName: "cn"},
	},
	ImplementationActiveDirectory: {
		usersFilter:  "(&(|({username_attribute}={input})({mail_attribute}={input}))(sAMAccountType=805306368)(!(userAccountControl:1.2.840.113556.1.4.803:=2))(!(pwdLastSet=0))(|(!(accountExpires=*))(accountExpires=0)(accountExpires>={date-time:microsoft-nt})))",
		groupsFilter: "(&(member={dn})(|(sAMAccountType=268435456)(sAMAccountType=536870912)))",
		attrs: Attributes{DistinguishedName: "distinguishedName", Username: "sAMAccountName", DisplayName: "displayName",
			Mail: "mail", MemberOf: "memberOf", GroupName: "cn"},
	},
	ImplementationRFC2307bis: {
		usersFilter:  "(&(|({username_attribute}={input})({mail_attribute}={input}))(|(objectClass=inetOrgPerson)(objectClass=organizationalPerson))(!(pwdReset=TRUE)))",
		groupsFilter: "(&(|(member={dn})(uniqueMember={dn}))(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=groupOfMembers)))",
		attrs:        Attributes{Username: "uid", DisplayName: "displayName", Mail: "mail", MemberOf: "memberOf", GroupName: "cn"},
	},
	ImplementationFreeIPA: {
		usersFilter:  "(&(|({username_attribute}={input})({mail_attribute}={input}))(objectClass=person)(!(nsAccountLock=TRUE))(krbPasswordExpiration>={date-time:generalized})(|(!(krbPrincipalExpiration=*))(krbPrincipalExpiration>={date-time:generalized})))",
		groupsFilter: "(&(member={dn})(objectClass=groupOfNames))",
		attrs:        Attributes{Username: "uid", DisplayName: "displayName", Mail: "mail", MemberOf: "memberOf", GroupName: "cn"},
	},
	ImplementationLLDAP: {
		usersDN:      "OU=people",
		groupsDN:     "OU=groups",
		usersFilter:  "(&(|({username_attribute}={input})({mail_attribute}={input}))(objectClass=person))",
		groupsFilter: "(&(member={dn})(objectClass=groupOfNames))",
		attrs:        Attributes{Username: "uid", DisplayName: "cn", Mail: "mail", MemberOf: "memberOf", GroupName: "cn"},
	},
	ImplementationGLAuth: {
		usersFilter:  "(&(|({username_attribute}={input})({mail_attribute}={input}))(objectClass=posixAccount)(!(accountStatus=inactive)))",
		groupsFilter: "(&(uniqueMember={dn})(objectClass=posixGroup))",
		attrs:        Attributes{Username: "cn", DisplayName: "description", Mail: "mail", MemberOf: "memberOf", GroupName: "cn"},
	},
}

// Validate applies the implementation's defaults to the empty fields, then checks the config.
// Every error names the key at fault and what to write. It does not reach the network.
func (c *Config) Validate() error {
	const p = "ldap: "
	if c.Implementation == "" {
		c.Implementation = ImplementationCustom
	}
	pre, ok := presets[c.Implementation]
	if !ok {
		return fmt.Errorf(p+"implementation %q is not one of custom, activedirectory, rfc2307bis, freeipa, lldap, glauth", c.Implementation)
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.AdditionalUsersDN, pre.usersDN)
	def(&c.AdditionalGroupsDN, pre.groupsDN)
	def(&c.UsersFilter, pre.usersFilter)
	def(&c.GroupsFilter, pre.groupsFilter)
	def(&c.GroupSearchMode, GroupSearchModeFilter)
	a := &c.Attributes
	def(&a.DistinguishedName, pre.attrs.DistinguishedName)
	def(&a.Username, pre.attrs.Username)
	def(&a.DisplayName, pre.attrs.DisplayName)
	def(&a.Mail, pre.attrs.Mail)
	def(&a.MemberOf, pre.attrs.MemberOf)
	def(&a.GroupName, pre.attrs.GroupName)
	if c.Timeout == 0 {
		c.Timeout = duration.Duration(DefaultTimeout)
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = duration.Duration(DefaultCacheTTL)
	}
	if c.Pooling.Count == 0 {
		c.Pooling.Count = DefaultPoolCount
	}
	if c.Pooling.Retries == 0 {
		c.Pooling.Retries = DefaultPoolRetries
	}
	if c.Pooling.Timeout == 0 {
		c.Pooling.Timeout = duration.Duration(DefaultPoolTimeout)
	}

	if c.Address == "" {
		return errors.New(p + "address is required: ldap://host, ldaps://host or ldapi://<socket path>")
	}
	if _, err := parseAddress(c.Address); err != nil {
		return fmt.Errorf(p+"address %q: %w", c.Address, err)
	}
	if c.StartTLS && strings.HasPrefix(c.Address, "ldaps://") {
		return errors.New(p + "start_tls is for an ldap:// address; ldaps:// is TLS already: remove start_tls")
	}
	if c.BaseDN == "" {
		return errors.New(p + "base_dn is required: the entry searches are made under, such as dc=example,dc=com")
	}
	for key, dn := range map[string]string{"base_dn": c.BaseDN, "additional_users_dn": c.AdditionalUsersDN, "additional_groups_dn": c.AdditionalGroupsDN, "user": c.User} {
		if dn == "" {
			continue
		}
		if _, err := goldap.ParseDN(dn); err != nil {
			return fmt.Errorf(p+"%s %q is not a distinguished name such as ou=people,dc=example,dc=com: %v", key, dn, err)
		}
	}
	if c.User == "" {
		return errors.New(p + "user is required: the DN of the service account searches bind as (unauthenticated binds are not supported)")
	}
	if c.Password == "" {
		return errors.New(p + "password is required: the service account's password, as a placeholder such as {env.LDAP_PASSWORD}")
	}
	if a.Username == "" {
		return fmt.Errorf(p+"attributes username is required with implementation %s: the attribute holding the username, such as uid", c.Implementation)
	}
	if a.GroupName == "" {
		return errors.New(p + "attributes group_name must not be empty: the attribute holding a group's name, such as cn")
	}
	if c.UsersFilter == "" {
		return fmt.Errorf(p+"users_filter is required with implementation %s, such as (&({username_attribute}={input})(objectClass=person))", c.Implementation)
	}
	if !strings.Contains(c.UsersFilter, "{input}") {
		return errors.New(p + "users_filter must contain {input}, where the name typed goes, such as (&({username_attribute}={input})(objectClass=person))")
	}
	if strings.Contains(c.UsersFilter, "{mail_attribute}") && a.Mail == "" {
		return errors.New(p + "users_filter uses {mail_attribute} but attributes mail is empty: set it (mail)")
	}
	if err := checkFilter(c.fill(c.UsersFilter), userSearchPlaceholders); err != nil {
		return fmt.Errorf(p+"users_filter: %w", err)
	}
	switch c.GroupSearchMode {
	case GroupSearchModeFilter:
		if c.GroupsFilter == "" {
			return fmt.Errorf(p+"groups_filter is required with implementation %s in group_search_mode filter, such as (&(member={dn})(objectClass=groupOfNames))", c.Implementation)
		}
		if strings.Contains(c.GroupsFilter, "{memberof:") {
			return errors.New(p + "groups_filter: {memberof:rdn} and {memberof:dn} need group_search_mode memberof")
		}
	case GroupSearchModeMemberOf:
		if a.MemberOf == "" {
			return errors.New(p + "group_search_mode memberof needs attributes member_of: the attribute listing a user's groups, such as memberOf")
		}
		if strings.Contains(c.GroupsFilter, "{memberof:dn}") && a.DistinguishedName == "" {
			return errors.New(p + "groups_filter uses {memberof:dn}, which needs attributes distinguished_name")
		}
	default:
		return fmt.Errorf(p+"group_search_mode %q is not filter or memberof", c.GroupSearchMode)
	}
	if c.GroupsFilter != "" {
		if err := checkFilter(c.fill(c.GroupsFilter), groupSearchPlaceholders); err != nil {
			return fmt.Errorf(p+"groups_filter: %w", err)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf(p+"timeout must be positive, got %s", time.Duration(c.Timeout))
	}
	if c.CacheTTL < 0 {
		return fmt.Errorf(p+"cache_ttl must be positive, got %s", time.Duration(c.CacheTTL))
	}
	if c.Pooling.Count < 0 || c.Pooling.Count > 100 {
		return fmt.Errorf(p+"pooling count must be between 1 and 100, got %d", c.Pooling.Count)
	}
	if c.Pooling.Retries < 0 || c.Pooling.Retries > 10 {
		return fmt.Errorf(p+"pooling retries must be between 0 and 10, got %d", c.Pooling.Retries)
	}
	if c.Pooling.Timeout < 0 {
		return fmt.Errorf(p+"pooling timeout must be positive, got %s", time.Duration(c.Pooling.Timeout))
	}
	if t := c.TLS; t != nil {
		if _, err := tlsVersion(t.MinimumVersion, tls.VersionTLS12); err != nil {
			return fmt.Errorf(p+"tls minimum_version %w", err)
		}
		if _, err := tlsVersion(t.MaximumVersion, 0); err != nil {
			return fmt.Errorf(p+"tls maximum_version %w", err)
		}
		if (t.CertificateChain == "") != (t.PrivateKey == "") {
			return errors.New(p + "tls certificate_chain and private_key go together: give both (a client certificate) or neither")
		}
	}
	return nil
}

// fill replaces the attribute placeholders, which are fixed by the config.
func (c *Config) fill(filter string) string {
	a := c.Attributes
	return strings.NewReplacer(
		"{username_attribute}", a.Username,
		"{mail_attribute}", a.Mail,
		"{display_name_attribute}", a.DisplayName,
		"{member_of_attribute}", a.MemberOf,
		"{distinguished_name_attribute}", a.DistinguishedName,
	).Replace(filter)
}

// The placeholders replaced at each search.
var (
	userSearchPlaceholders  = []string{"{input}", "{date-time:generalized}", "{date-time:unix}", "{date-time:microsoft-nt}"}
	groupSearchPlaceholders = []string{"{input}", "{username}", "{dn}", "{memberof:rdn}", "{memberof:dn}"}
)

// checkFilter compiles filter with sample values in place of the search placeholders, refusing
// one it does not know.
func checkFilter(filter string, known []string) error {
	sample := filter
	for _, ph := range known {
		v := "x"
		if ph == "{memberof:rdn}" || ph == "{memberof:dn}" {
			v = "(cn=x)"
		}
		sample = strings.ReplaceAll(sample, ph, v)
	}
	if i := strings.Index(sample, "{"); i >= 0 {
		if j := strings.Index(sample[i:], "}"); j > 0 {
			return fmt.Errorf("unknown placeholder %s", sample[i:i+j+1])
		}
	}
	if _, err := goldap.CompileFilter(sample); err != nil {
		return fmt.Errorf("not a valid LDAP filter (RFC 4515): %v", err)
	}
	return nil
}

// parseAddress checks an address and returns its URL.
func parseAddress(addr string) (*url.URL, error) {
	switch {
	case strings.HasPrefix(addr, "ldapi://"):
		rest := strings.TrimPrefix(addr, "ldapi://")
		host, path, _ := strings.Cut(rest, "/")
		p, err := url.PathUnescape(host)
		if err != nil {
			return nil, fmt.Errorf("the socket path is not URL-escaped: %v", err)
		}
		if p == "" {
			p = "/" + path // ldapi:///run/slapd/ldapi
		}
		if !strings.HasPrefix(p, "/") || p == "/" {
			return nil, errors.New("ldapi:// takes the absolute path of the socket, URL-escaped: ldapi://%2Frun%2Fslapd%2Fldapi")
		}
		return &url.URL{Scheme: "ldapi", Path: p}, nil
	case strings.HasPrefix(addr, "ldap://"), strings.HasPrefix(addr, "ldaps://"):
		u, err := url.Parse(addr)
		if err != nil {
			return nil, err
		}
		if u.Hostname() == "" {
			return nil, errors.New("no host: write ldap://host[:port] or ldaps://host[:port]")
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, errors.New("only scheme://host[:port] is read: remove the user, path or query")
		}
		return u, nil
	}
	return nil, errors.New("must start with ldap://, ldaps:// or ldapi://")
}

// tlsVersion reads a TLS version; empty gives def.
func tlsVersion(v string, def uint16) (uint16, error) {
	switch strings.ToUpper(strings.ReplaceAll(v, " ", "")) {
	case "":
		return def, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q must be TLS1.2 or TLS1.3", v)
}
