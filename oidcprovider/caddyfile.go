package oidcprovider

import (
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/portcullis-auth/portcullis/accesscontrol"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// Options of Authelia's that Portcullis will take but does not serve yet: naming one is an error
// that says so, rather than a silent no-op.
var (
	pendingProviderOptions = []string{"scopes", "enable_client_debug_messages", "discovery_signed_response_alg", "discovery_signed_response_key_id"}
	pendingClientOptions   = []string{"request_uris", "allow_multiple_auth_methods"}
)

// parseGlobalOption parses the global oidc option. Syntax:
//
//	oidc {
//		issuer <url>
//		storage [badger] [<directory>] {
//			memtable_size <size>
//			num_memtables <n>
//			block_cache_size <size>
//			index_cache_size <size>
//			value_log_file_size <size>
//			gc_interval <duration>
//		}
//		storage postgres {                # instead of Badger: one database shared by every node
//			dsn <postgres://…>            # or the keys below
//			address tcp://<host>[:<port>]|unix://<socket dir>
//			database <name>
//			schema <name>
//			username <name>
//			password <password>
//			timeout <duration>
//			max_connections <n>
//			tls {
//				server_name <name>
//				skip_verify
//				minimum_version TLS1.2|TLS1.3
//				certificate_chain <pem file>
//				private_key <pem file>
//				ca_file <pem file>
//			}
//		}
//		hmac_secret <secret>
//		users_file <path>
//		regulation {
//			max_retries <n>
//			find_time <duration>
//			ban_time <duration>
//		}
//		session {
//			name <cookie name>
//			cookie_domain <issuer's domain> [<further domain>...]
//			same_site lax|strict
//			expiration <duration>
//			inactivity <duration>
//			remember_me <duration>|-1
//			default_redirection_url <url>
//			cookie <further domain> {    # any number; unset options are the block's
//				name <cookie name>
//				same_site lax|strict
//				expiration <duration>
//				inactivity <duration>
//				remember_me <duration>|-1
//				default_redirection_url <url under the domain>
//			}
//		}
//		totp {
//			disable
//			issuer <name>
//			algorithm SHA1|SHA256|SHA512
//			digits 6|8
//			period <duration>
//			skew 0|1|2
//			secret_size <bytes>
//		}
//		webauthn {
//			disable
//			display_name <name>
//			timeout <duration>
//			user_verification discouraged|preferred|required
//			enable_passkey_login [true|false]  # default true: "Sign in with a passkey"
//		}
//		signing_key [<key_id>] {
//			algorithm <alg>
//			key_file <path>
//		}
//		lifespans {
//			access_token <duration>
//			authorize_code <duration>
//			id_token <duration>
//			refresh_token <duration>
//			custom <name> {
//				access_token <duration>
//				...
//			}
//		}
//		enforce_pkce never|public_clients_only|always
//		enable_pkce_plain_challenge [true|false]
//		minimum_parameter_entropy <length>|-1
//		require_pushed_authorization_requests [true|false]
//		authorization_policy <name> {            # repeatable; JSON authorization_policies.<name>
//			default_policy one_factor|two_factor|deny
//			rule {                               # repeatable; first match wins
//				subject <subject...>             # one line = one alternative; all on it must hold
//				networks <cidr|ip|name...>       # names from access_control's network lines
//				policy one_factor|two_factor|deny
//			}
//		}
//		claims_policy <name> {                   # repeatable; JSON claims_policies.<name>
//			id_token <claim...>
//		}
//		client <client_id> {
//			name <client_name>
//			secret <digest>
//			public [true|false]
//			scopes <scope...>
//			audience <audience...>
//			grant_types <grant...>
//			requested_audience_mode explicit|implicit
//			token_endpoint_auth_method client_secret_basic|client_secret_post|none
//			lifespan <custom lifespan name>
//			redirect_uris <uri...>
//			post_logout_redirect_uris <uri...>
//			response_types <type...>             # quote the combined ones: "code id_token"
//			response_modes form_post|query|fragment|jwt|query.jwt|fragment.jwt|form_post.jwt...
//			authorization_policy one_factor|two_factor|<authorization_policy name>
//			consent_mode auto|explicit|implicit|pre-configured
//			pre_configured_consent_duration <duration>
//			require_pushed_authorization_requests [true|false]
//			require_pkce [true|false]
//			pkce_challenge_method S256|plain
//			id_token_signed_response_alg <alg>
//			id_token_signed_response_key_id <key_id>
//			userinfo_signed_response_alg none|<alg>
//			userinfo_signed_response_key_id <key_id>
//			sector_identifier_uri <https url>
//			claims_policy <claims_policy name>
//			resource_server_for <client_id...>   # whose tokens it introspects in full
//			introspection_signed_response_alg none|<alg>
//			introspection_signed_response_key_id <key_id>
//			authorization_signed_response_alg <alg>   # JARM
//			authorization_signed_response_key_id <key_id>
//		}
//		cors {                                   # browser apps on other origins (CORS)
//			endpoints authorization|pushed-authorization-request|token|revocation|introspection|userinfo...
//			allowed_origins <scheme://host[:port]...>
//			allowed_origins_from_client_redirect_uris [true|false]
//		}
//		identity_provider <name> {               # repeatable; JSON identity_providers[]; sign in with another provider
//			type oidc|github
//			display_name <button label>
//			issuer <https url>                   # type oidc
//			client_id <id>
//			client_secret <secret>
//			scopes <scope...>
//			claim_username <claim>
//			link by_email_verified|by_username|manual
//			allowed_domains <domain...>
//			two_factor_satisfied [true|false]
//			create_users [true|false]
//		}
//		access_control {
//			default_policy bypass|one_factor|two_factor|deny
//			network <name> <cidr|ip...>
//			rule { ... }
//		}
//	}
//
// In a client block the one-line authorization_policy and claims_policy name a policy; in the
// oidc block the same words open a block that defines one. Every repeatable list option
// appends, so a long list may take several lines. Durations are Caddy's (90m, 1h, 30d), and
// pre_configured_consent_duration also takes w for weeks (1w).
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the oidc option is given twice; merge the two blocks")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: AppName, Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the oidc global option into the app.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "issuer":
			if err := oneArg(d, &a.Issuer); err != nil {
				return err
			}
		case "storage":
			if err := unmarshalStorage(d, &a.Storage); err != nil {
				return err
			}
		case "hmac_secret":
			if err := secretArg(d, &a.HMACSecret); err != nil {
				return err
			}
		case "users_file":
			if err := oneArg(d, &a.UsersFile); err != nil {
				return err
			}
		case "ldap":
			if a.LDAP != nil {
				return d.Err("ldap is given twice; merge the two blocks")
			}
			c, err := unmarshalLDAP(d)
			if err != nil {
				return err
			}
			a.LDAP = c
		case "notifier":
			if a.Notifier != nil {
				return d.Err("notifier is given twice; merge the two blocks")
			}
			c, err := unmarshalNotifier(d)
			if err != nil {
				return err
			}
			a.Notifier = c
		case "regulation":
			if a.Regulation != nil {
				return d.Err("regulation is given twice; merge the two blocks")
			}
			r, err := unmarshalRegulation(d)
			if err != nil {
				return err
			}
			a.Regulation = r
		case "session":
			if a.Session != nil {
				return d.Err("session is given twice; merge the two blocks")
			}
			s, err := unmarshalSession(d)
			if err != nil {
				return err
			}
			a.Session = s
		case "totp":
			if a.TOTP != nil {
				return d.Err("totp is given twice; merge the two blocks")
			}
			t, err := unmarshalTOTP(d)
			if err != nil {
				return err
			}
			a.TOTP = t
		case "webauthn":
			if a.WebAuthn != nil {
				return d.Err("webauthn is given twice; merge the two blocks")
			}
			w, err := unmarshalWebAuthn(d)
			if err != nil {
				return err
			}
			a.WebAuthn = w
		case "identity_validation":
			if a.IdentityValidation != nil {
				return d.Err("identity_validation is given twice; merge the two blocks")
			}
			iv, err := unmarshalIdentityValidation(d)
			if err != nil {
				return err
			}
			a.IdentityValidation = iv
		case "enforce_pkce":
			if err := oneArg(d, &a.EnforcePKCE); err != nil {
				return err
			}
		case "enable_pkce_plain_challenge":
			if err := boolArg(d, &a.EnablePKCEPlainChallenge); err != nil {
				return err
			}
		case "require_pushed_authorization_requests":
			if err := boolArg(d, &a.RequirePushedAuthorizationRequests); err != nil {
				return err
			}
		case "minimum_parameter_entropy":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("minimum_parameter_entropy: %q is not a number (a length such as 8, or -1 to turn the check off)", v)
			}
			a.MinimumParameterEntropy = n
		case "authorization_policy":
			name, p, err := unmarshalAuthorizationPolicy(d)
			if err != nil {
				return err
			}
			if a.AuthorizationPolicies == nil {
				a.AuthorizationPolicies = map[string]accesscontrol.ClientPolicyConfig{}
			}
			if _, dup := a.AuthorizationPolicies[name]; dup {
				return d.Errf("authorization_policy %s is defined twice; merge the two blocks", name)
			}
			a.AuthorizationPolicies[name] = p
		case "claims_policy":
			name, p, err := unmarshalClaimsPolicy(d)
			if err != nil {
				return err
			}
			if a.ClaimsPolicies == nil {
				a.ClaimsPolicies = map[string]ClaimsPolicy{}
			}
			if _, dup := a.ClaimsPolicies[name]; dup {
				return d.Errf("claims_policy %s is defined twice; merge the two blocks", name)
			}
			a.ClaimsPolicies[name] = p
		case "authorization_policies", "claims_policies":
			return d.Errf("%s: write one '%s <name> { … }' block per policy", opt, strings.TrimSuffix(opt, "ies")+"y")
		case "signing_key":
			k, err := unmarshalSigningKey(d)
			if err != nil {
				return err
			}
			a.SigningKeys = append(a.SigningKeys, k)
		case "lifespans":
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := unmarshalLifespans(d, &a.Lifespans, true); err != nil {
				return err
			}
		case "client":
			c, err := unmarshalClient(d)
			if err != nil {
				return err
			}
			a.Clients = append(a.Clients, c)
		case "password_reset":
			if a.PasswordReset != nil {
				return d.Err("password_reset is given twice; merge the two blocks")
			}
			pr, err := unmarshalPasswordReset(d)
			if err != nil {
				return err
			}
			a.PasswordReset = pr
		case "cors":
			if a.CORS != nil {
				return d.Err("cors is given twice; merge the two blocks")
			}
			c, err := unmarshalCORS(d)
			if err != nil {
				return err
			}
			a.CORS = c
		case "identity_provider":
			c, err := unmarshalIdentityProvider(d)
			if err != nil {
				return err
			}
			a.IdentityProviders = append(a.IdentityProviders, c)
		case "access_control":
			if a.AccessControl != nil {
				return d.Err("access_control is given twice; merge the two blocks")
			}
			ac, err := unmarshalAccessControl(d)
			if err != nil {
				return err
			}
			a.AccessControl = ac
		default:
			if slices.Contains(pendingProviderOptions, opt) {
				return d.Errf("option %q is not available yet in this release of Portcullis; remove it", opt)
			}
			return d.Errf("unknown option %q (see the README for the options of the oidc block)", opt)
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value, got another: %q", opt, d.Val())
	}
	return nil
}

// secretArg is oneArg for a value that may hold a secret (a password, a DSN with one, a client
// secret): its errors never quote what was written, since they are printed by caddy validate and
// logged at start.
func secretArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value, got more (not shown: it may be secret); quote a value with spaces: %s \"…\"", opt, opt)
	}
	return nil
}

// boolArg reads "<option>" (true) or "<option> true|false".
func boolArg(d *caddyfile.Dispenser, dst *bool) error {
	opt := d.Val()
	*dst = true
	if !d.NextArg() {
		return nil
	}
	v, err := strconv.ParseBool(d.Val())
	if err != nil {
		return d.Errf("%s takes true or false, not %q", opt, d.Val())
	}
	*dst = v
	if d.NextArg() {
		return d.Errf("%s takes one value, got another: %q", opt, d.Val())
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %q is not a duration such as 90s, 1m, 1h or 30d", opt, s)
	}
	if v <= 0 {
		return d.Errf("%s: %q must be positive", opt, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// sizeArg reads a byte size such as 16MiB or 8MB.
func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := humanize.ParseBytes(s)
	if err != nil || v == 0 || v > 1<<40 {
		return d.Errf("%s: %q is not a size such as 8MiB, 16MiB or 64MB", opt, s)
	}
	*dst = int64(v)
	return nil
}

// unmarshalRegulation reads 'regulation { … }'.
func unmarshalRegulation(d *caddyfile.Dispenser) (*RegulationConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	r := &RegulationConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "max_retries":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, d.Errf("regulation: max_retries: %q is not a number", v)
			}
			r.MaxRetries = &n
		case "find_time":
			if err := durationArg(d, &r.FindTime); err != nil {
				return nil, err
			}
		case "ban_time":
			if err := durationArg(d, &r.BanTime); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("regulation: unknown option %q (max_retries, find_time, ban_time)", opt)
		}
	}
	return r, nil
}

// unmarshalSession reads 'session { … }'.
func unmarshalSession(d *caddyfile.Dispenser) (*SessionConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	s := &SessionConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "cookie_domain", "domain":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("session: %s needs a domain (the issuer's first, then any further ones)", opt)
			}
			if s.CookieDomain != "" {
				return nil, d.Errf("session: %s is given twice; list every domain on one line, the issuer's first", opt)
			}
			s.CookieDomain = args[0]
			for _, dom := range args[1:] {
				s.Cookies = append(s.Cookies, CookieConfig{Domain: dom})
			}
		case "cookie":
			var c CookieConfig
			if !d.NextArg() {
				return nil, d.Errf("session: cookie needs a domain: 'cookie example.org { … }'")
			}
			c.Domain = d.Val()
			if d.NextArg() {
				return nil, d.Errf("session: cookie takes one domain, got another: %q; give each domain a block of its own", d.Val())
			}
			for d.NextBlock(2) {
				o := cookieOptions{&c.Name, &c.SameSite, &c.Expiration, &c.Inactivity, &c.RememberMe, &c.DefaultRedirectionURL}
				if err := o.unmarshal(d, "session: cookie "+c.Domain); err != nil {
					return nil, err
				}
			}
			s.Cookies = append(s.Cookies, c)
		default:
			o := cookieOptions{&s.Name, &s.SameSite, &s.Expiration, &s.Inactivity, &s.RememberMe, &s.DefaultRedirectionURL}
			if err := o.unmarshal(d, "session"); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// cookieOptions are the options a session block and its cookie blocks share.
type cookieOptions struct {
	name, sameSite         *string
	expiration, inactivity *caddy.Duration
	rememberMe             *caddy.Duration
	defaultRedirectionURL  *string
}

// unmarshal reads the option at d into o; where names the block in errors.
func (o cookieOptions) unmarshal(d *caddyfile.Dispenser, where string) error {
	switch opt := d.Val(); opt {
	case "name":
		return oneArg(d, o.name)
	case "same_site":
		return oneArg(d, o.sameSite)
	case "expiration":
		return durationArg(d, o.expiration)
	case "inactivity":
		return durationArg(d, o.inactivity)
	case "remember_me":
		var v string
		if err := oneArg(d, &v); err != nil {
			return err
		}
		if v == "-1" || v == "off" || v == "disable" {
			*o.rememberMe = -1
			return nil
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return d.Errf("%s: remember_me: %q is not a positive duration such as 30d (or -1 to hide the box)", where, v)
		}
		*o.rememberMe = caddy.Duration(dur)
		return nil
	case "default_redirection_url":
		return oneArg(d, o.defaultRedirectionURL)
	default:
		if where == "session" {
			return d.Errf("session: unknown option %q (name, cookie_domain, cookie, same_site, expiration, inactivity, remember_me, default_redirection_url)", opt)
		}
		return d.Errf("%s: unknown option %q (name, same_site, expiration, inactivity, remember_me, default_redirection_url)", where, opt)
	}
}

// unmarshalTOTP reads 'totp { … }'.
func unmarshalTOTP(d *caddyfile.Dispenser) (*TOTPConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := &TOTPConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "disable":
			t.Disable = true
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "issuer":
			if err := oneArg(d, &t.Issuer); err != nil {
				return nil, err
			}
		case "algorithm":
			if err := oneArg(d, &t.Algorithm); err != nil {
				return nil, err
			}
		case "period":
			if err := durationArg(d, &t.Period); err != nil {
				return nil, err
			}
		case "digits", "skew", "secret_size":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, d.Errf("totp: %s: %q is not a number", opt, v)
			}
			switch opt {
			case "digits":
				t.Digits = n
			case "skew":
				t.Skew = &n
			default:
				t.SecretSize = n
			}
		default:
			return nil, d.Errf("totp: unknown option %q (disable, issuer, algorithm, digits, period, skew, secret_size)", opt)
		}
	}
	return t, nil
}

// unmarshalWebAuthn reads 'webauthn { … }'.
func unmarshalWebAuthn(d *caddyfile.Dispenser) (*WebAuthnConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	w := &WebAuthnConfig{}
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "disable":
			w.Disable = true
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "display_name":
			if err := oneArg(d, &w.DisplayName); err != nil {
				return nil, err
			}
		case "timeout":
			if err := durationArg(d, &w.Timeout); err != nil {
				return nil, err
			}
		case "user_verification":
			if err := oneArg(d, &w.UserVerification); err != nil {
				return nil, err
			}
		case "enable_passkey_login":
			if w.EnablePasskeyLogin != nil {
				return nil, d.Err("webauthn: enable_passkey_login is given twice; keep one")
			}
			var on bool
			if err := boolArg(d, &on); err != nil {
				return nil, err
			}
			w.EnablePasskeyLogin = &on
		default:
			return nil, d.Errf("webauthn: unknown option %q (disable, display_name, timeout, user_verification, enable_passkey_login)", opt)
		}
	}
	return w, nil
}

// unmarshalStorage reads 'storage [badger] [<dir>] [{ … }]' (Badger) or
// 'storage postgres { … }' (PostgreSQL). A relative Badger directory named postgres or badger
// is written ./postgres or ./badger.
func unmarshalStorage(d *caddyfile.Dispenser, s *StorageConfig) error {
	if d.NextArg() {
		switch d.Val() {
		case "postgres":
			if d.NextArg() {
				return d.Errf("storage postgres takes no argument, got %q; its settings go in its block (dsn, or address, database, username, password …); for a Badger directory named postgres write ./postgres", d.Val())
			}
			pg, err := unmarshalPostgres(d)
			if err != nil {
				return err
			}
			s.Postgres = pg
			return nil
		case "badger":
			if d.NextArg() {
				s.Dir = d.Val()
			}
		default:
			s.Dir = d.Val()
		}
		if d.NextArg() {
			return d.Errf("storage takes one directory, got another: %q; settings go in its block", d.Val())
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "memtable_size":
			err = sizeArg(d, &s.MemTableSize)
		case "block_cache_size":
			err = sizeArg(d, &s.BlockCacheSize)
		case "index_cache_size":
			err = sizeArg(d, &s.IndexCacheSize)
		case "value_log_file_size":
			err = sizeArg(d, &s.ValueLogFileSize)
		case "num_memtables":
			var v string
			if err = oneArg(d, &v); err == nil {
				if s.NumMemtables, err = strconv.Atoi(v); err != nil || s.NumMemtables < 1 {
					return d.Errf("num_memtables: %q must be a whole number of at least 1", v)
				}
			}
		case "gc_interval":
			var v caddy.Duration
			if err = durationArg(d, &v); err == nil {
				s.GCInterval = duration.Duration(v)
			}
		case "dsn", "address", "database", "schema", "username", "password", "timeout", "max_connections", "tls":
			return d.Errf("storage: %s is a PostgreSQL option; write 'storage postgres { %s … }' (the block of 'storage <dir>' holds Badger's settings)", opt, opt)
		default:
			return d.Errf("storage: unknown option %q (memtable_size, num_memtables, block_cache_size, index_cache_size, value_log_file_size, gc_interval)", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalPostgres reads the block of 'storage postgres { … }'. The values are checked when the
// app is provisioned (postgres.Config.Validate), after placeholders are resolved.
func unmarshalPostgres(d *caddyfile.Dispenser) (*postgres.Config, error) {
	c := new(postgres.Config)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "dsn":
			err = secretArg(d, &c.DSN)
		case "address":
			err = oneArg(d, &c.Address)
		case "database":
			err = oneArg(d, &c.Database)
		case "schema":
			err = oneArg(d, &c.Schema)
		case "username":
			err = oneArg(d, &c.Username)
		case "password":
			err = secretArg(d, &c.Password)
		case "timeout":
			var v caddy.Duration
			if err = durationArg(d, &v); err == nil {
				c.Timeout = duration.Duration(v)
			}
		case "max_connections":
			var v string
			if err = oneArg(d, &v); err == nil {
				if c.MaxConnections, err = strconv.Atoi(v); err != nil || c.MaxConnections < 1 {
					return nil, d.Errf("storage postgres: max_connections: %q must be a whole number of at least 1", v)
				}
			}
		case "tls":
			if d.NextArg() {
				return nil, d.Errf("storage postgres: tls takes no argument, got %q; its settings go in its block", d.Val())
			}
			if c.TLS != nil {
				return nil, d.Err("storage postgres: tls is given twice")
			}
			var t tlsBlock
			if err = t.unmarshal(d, "storage postgres", "server_name", "skip_verify", "minimum_version", "certificate_chain", "private_key", "ca_file"); err == nil {
				c.TLS = &postgres.TLSConfig{ServerName: t.ServerName, SkipVerify: t.SkipVerify, MinimumVersion: t.MinimumVersion,
					CertificateChain: t.CertificateChain, PrivateKey: t.PrivateKey, CAFile: t.CAFile}
			}
		case "memtable_size", "num_memtables", "block_cache_size", "index_cache_size", "value_log_file_size", "gc_interval":
			return nil, d.Errf("storage postgres: %s is a setting of the embedded Badger store, not of PostgreSQL; remove it", opt)
		default:
			return nil, d.Errf("storage postgres: unknown option %q (dsn, address, database, schema, username, password, timeout, max_connections, tls)", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func unmarshalSigningKey(d *caddyfile.Dispenser) (SigningKey, error) {
	var k SigningKey
	if d.NextArg() {
		k.KeyID = d.Val()
		if d.NextArg() {
			return k, d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "algorithm":
			if err := oneArg(d, &k.Algorithm); err != nil {
				return k, err
			}
		case "key_file":
			if err := oneArg(d, &k.KeyFile); err != nil {
				return k, err
			}
		case "retired":
			k.Retired = true
			if d.NextArg() {
				return k, d.Errf("signing_key: retired takes no argument; remove %q", d.Val())
			}
		default:
			return k, d.Errf("signing_key: unknown option %q (algorithm, key_file, retired)", d.Val())
		}
	}
	if k.KeyFile == "" {
		return k, d.Err("signing_key: key_file is required (a PEM private key); leave signing_key out to use a generated RS256 key")
	}
	return k, nil
}

func unmarshalLifespans(d *caddyfile.Dispenser, l *Lifespans, allowCustom bool) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "access_token":
			if err := durationArg(d, &l.AccessToken); err != nil {
				return err
			}
		case "authorize_code":
			if err := durationArg(d, &l.AuthorizeCode); err != nil {
				return err
			}
		case "id_token":
			if err := durationArg(d, &l.IDToken); err != nil {
				return err
			}
		case "refresh_token":
			if err := durationArg(d, &l.RefreshToken); err != nil {
				return err
			}
		case "device_code":
			if err := durationArg(d, &l.DeviceCode); err != nil {
				return err
			}
		case "custom":
			if !allowCustom {
				return d.Err("lifespans: custom sets do not nest")
			}
			if !d.NextArg() {
				return d.Err("lifespans: custom needs a name: custom <name> { access_token 2h }")
			}
			name := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			var set Lifespans
			if err := unmarshalLifespans(d, &set, false); err != nil {
				return err
			}
			if l.Custom == nil {
				l.Custom = map[string]Lifespans{}
			}
			if _, dup := l.Custom[name]; dup {
				return d.Errf("lifespans: custom %q is defined twice", name)
			}
			l.Custom[name] = set
		default:
			return d.Errf("lifespans: unknown option %q (access_token, authorize_code, id_token, refresh_token, device_code, custom)", opt)
		}
	}
	return nil
}

func unmarshalClient(d *caddyfile.Dispenser) (ClientConfig, error) {
	var c ClientConfig
	if !d.NextArg() {
		return c, d.Err("client needs its client_id: client <client_id> { … }")
	}
	c.ID = d.Val()
	if d.NextArg() {
		return c, d.Errf("client %s: unexpected argument %q; options go inside the block", c.ID, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var err error
		switch opt {
		case "name", "client_name":
			err = oneArg(d, &c.Name)
		case "secret", "client_secret":
			err = secretArg(d, &c.Secret)
		case "public":
			c.Public = true
			if d.NextArg() {
				c.Public, err = strconv.ParseBool(d.Val())
				if err != nil {
					return c, d.Errf("client %s: public takes true or false, not %q", c.ID, d.Val())
				}
			}
		case "scopes":
			c.Scopes, err = appendArgs(d, c.Scopes)
		case "audience":
			c.Audience, err = appendArgs(d, c.Audience)
		case "grant_types":
			c.GrantTypes, err = appendArgs(d, c.GrantTypes)
		case "requested_audience_mode":
			err = oneArg(d, &c.RequestedAudienceMode)
		case "token_endpoint_auth_method":
			err = oneArg(d, &c.TokenEndpointAuthMethod)
		case "lifespan":
			err = oneArg(d, &c.Lifespan)
		case "redirect_uris":
			c.RedirectURIs, err = appendArgs(d, c.RedirectURIs)
		case "post_logout_redirect_uris":
			c.PostLogoutRedirectURIs, err = appendArgs(d, c.PostLogoutRedirectURIs)
		case "response_types":
			c.ResponseTypes, err = appendArgs(d, c.ResponseTypes)
		case "response_modes":
			c.ResponseModes, err = appendArgs(d, c.ResponseModes)
		case "authorization_policy":
			err = oneArg(d, &c.AuthorizationPolicy)
		case "consent_mode":
			err = oneArg(d, &c.ConsentMode)
		case "pre_configured_consent_duration":
			var v string
			if err = oneArg(d, &v); err == nil {
				dur, perr := duration.Parse(v)
				if perr != nil || dur <= 0 {
					return c, d.Errf("client %s: pre_configured_consent_duration: %q is not a positive duration such as 1w, 7d or 168h", c.ID, v)
				}
				c.PreConfiguredConsentDuration = duration.Duration(dur)
			}
		case "require_pushed_authorization_requests":
			err = boolArg(d, &c.RequirePushedAuthorizationRequests)
		case "require_pkce":
			err = boolArg(d, &c.RequirePKCE)
		case "pkce_challenge_method":
			err = oneArg(d, &c.PKCEChallengeMethod)
		case "id_token_signed_response_alg":
			err = oneArg(d, &c.IDTokenSignedResponseAlg)
		case "id_token_signed_response_key_id":
			err = oneArg(d, &c.IDTokenSignedResponseKeyID)
		case "userinfo_signed_response_alg":
			err = oneArg(d, &c.UserinfoSignedResponseAlg)
		case "userinfo_signed_response_key_id":
			err = oneArg(d, &c.UserinfoSignedResponseKeyID)
		case "sector_identifier_uri":
			err = oneArg(d, &c.SectorIdentifierURI)
		case "claims_policy":
			err = oneArg(d, &c.ClaimsPolicy)
		case "resource_server_for":
			c.ResourceServerFor, err = appendArgs(d, c.ResourceServerFor)
		case "token_endpoint_auth_signing_alg":
			err = oneArg(d, &c.TokenEndpointAuthSigningAlg)
		case "jwks_uri":
			err = oneArg(d, &c.JWKSURI)
		case "public_key":
			var k ClientKey
			if k, err = unmarshalClientKey(d, c.ID); err == nil {
				c.JWKS = append(c.JWKS, k)
			}
		case "jwks":
			return c, d.Errf("client %s: jwks is the JSON name; in a Caddyfile give each key as public_key <key_id> { algorithm …; key_file … }", c.ID)
		case "request_object_signing_alg":
			err = oneArg(d, &c.RequestObjectSigningAlg)
		case "access_token_signed_response_alg":
			err = oneArg(d, &c.AccessTokenSignedResponseAlg)
		case "access_token_signed_response_key_id":
			err = oneArg(d, &c.AccessTokenSignedResponseKeyID)
		case "introspection_signed_response_alg":
			err = oneArg(d, &c.IntrospectionSignedResponseAlg)
		case "introspection_signed_response_key_id":
			err = oneArg(d, &c.IntrospectionSignedResponseKeyID)
		case "authorization_signed_response_alg":
			err = oneArg(d, &c.AuthorizationSignedResponseAlg)
		case "authorization_signed_response_key_id":
			err = oneArg(d, &c.AuthorizationSignedResponseKeyID)
		case "backchannel_logout_uri":
			err = oneArg(d, &c.BackchannelLogoutURI)
		case "backchannel_logout_session_required":
			err = boolArg(d, &c.BackchannelLogoutSessionRequired)
		default:
			if slices.Contains(pendingClientOptions, opt) {
				return c, d.Errf("client %s: option %q is not available yet in this release of Portcullis; remove it", c.ID, opt)
			}
			return c, d.Errf("client %s: unknown option %q (see the README's table of client options)", c.ID, opt)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// unmarshalClientKey reads 'public_key <key_id> { algorithm …; use sig; key_file … | key … }' in a
// client block.
func unmarshalClientKey(d *caddyfile.Dispenser, clientID string) (ClientKey, error) {
	var k ClientKey
	if !d.NextArg() {
		return k, d.Errf("client %s: public_key needs its key_id: public_key <key_id> { algorithm ES256; key_file /etc/caddy/clients/app.pub.pem }", clientID)
	}
	k.KeyID = d.Val()
	if d.NextArg() {
		return k, d.Errf("client %s: public_key %s: unexpected argument %q; options go inside the block", clientID, k.KeyID, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "algorithm":
			err = oneArg(d, &k.Algorithm)
		case "use":
			err = oneArg(d, &k.Use)
		case "key_file":
			err = oneArg(d, &k.KeyFile)
		case "key":
			err = oneArg(d, &k.Key)
		default:
			return k, d.Errf("client %s: public_key %s: unknown option %q (algorithm, use, key_file, key)", clientID, k.KeyID, opt)
		}
		if err != nil {
			return k, err
		}
	}
	if (k.KeyFile == "") == (k.Key == "") {
		return k, d.Errf("client %s: public_key %s: give exactly one of key_file (a PEM public key or certificate) or key", clientID, k.KeyID)
	}
	return k, nil
}

// unmarshalAuthorizationPolicy reads 'authorization_policy <name> { … }' in the oidc block.
func unmarshalAuthorizationPolicy(d *caddyfile.Dispenser) (string, accesscontrol.ClientPolicyConfig, error) {
	var p accesscontrol.ClientPolicyConfig
	if !d.NextArg() {
		return "", p, d.Err("authorization_policy needs a name: authorization_policy <name> { default_policy two_factor  rule { … } }")
	}
	name := d.Val()
	if d.NextArg() {
		return "", p, d.Errf("authorization_policy %s: unexpected argument %q; its settings go inside the block", name, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "default_policy":
			if err := oneArg(d, &p.DefaultPolicy); err != nil {
				return "", p, err
			}
		case "rule":
			if d.NextArg() {
				return "", p, d.Errf("authorization_policy %s: rule takes no argument (got %q); put its criteria inside the block", name, d.Val())
			}
			var r accesscontrol.ClientPolicyRule
			for n := d.Nesting(); d.NextBlock(n); {
				var err error
				switch crit := d.Val(); crit {
				case "policy":
					err = oneArg(d, &r.Policy)
				case "subject":
					var alt []string
					if alt, err = appendArgs(d, nil); err == nil {
						r.Subject = append(r.Subject, alt)
					}
				case "networks":
					r.Networks, err = appendArgs(d, r.Networks)
				default:
					return "", p, d.Errf("authorization_policy %s: rule: unknown criterion %q (subject, networks, policy)", name, crit)
				}
				if err != nil {
					return "", p, err
				}
			}
			p.Rules = append(p.Rules, r)
		default:
			return "", p, d.Errf("authorization_policy %s: unknown option %q (default_policy, rule)", name, opt)
		}
	}
	return name, p, nil
}

// unmarshalClaimsPolicy reads 'claims_policy <name> { id_token <claim...> }' in the oidc block.
func unmarshalClaimsPolicy(d *caddyfile.Dispenser) (string, ClaimsPolicy, error) {
	var p ClaimsPolicy
	if !d.NextArg() {
		return "", p, d.Err("claims_policy needs a name: claims_policy <name> { id_token email groups }")
	}
	name := d.Val()
	if d.NextArg() {
		return "", p, d.Errf("claims_policy %s: unexpected argument %q; write 'claims_policy %s { id_token … }'", name, d.Val(), name)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "id_token":
			var err error
			if p.IDToken, err = appendArgs(d, p.IDToken); err != nil {
				return "", p, err
			}
		default:
			return "", p, d.Errf("claims_policy %s: unknown option %q (id_token)", name, opt)
		}
	}
	return name, p, nil
}

func appendArgs(d *caddyfile.Dispenser, list []string) ([]string, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("%s needs at least one value", opt)
	}
	return append(list, args...), nil
}

func unmarshalAccessControl(d *caddyfile.Dispenser) (*accesscontrol.Config, error) {
	ac := &accesscontrol.Config{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "default_policy":
			if err := oneArg(d, &ac.DefaultPolicy); err != nil {
				return nil, err
			}
		case "network":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return nil, d.Err("access_control: network needs a name and at least one CIDR or address: network internal 10.0.0.0/8")
			}
			if ac.Networks == nil {
				ac.Networks = map[string][]string{}
			}
			if _, dup := ac.Networks[args[0]]; dup {
				return nil, d.Errf("access_control: network %q is defined twice", args[0])
			}
			ac.Networks[args[0]] = args[1:]
		case "rule":
			r, err := UnmarshalRule(d)
			if err != nil {
				return nil, err
			}
			ac.Rules = append(ac.Rules, r)
		default:
			return nil, d.Errf("access_control: unknown option %q (default_policy, network, rule)", opt)
		}
	}
	return ac, nil
}

// UnmarshalRule reads one "rule { … }" block; the dispenser is on the "rule" token. Syntax:
//
//	rule {
//		domain <host...>
//		domain_regex <regex...>
//		resources <regex...>
//		methods <method...>
//		networks <cidr|ip|name...>
//		subject <subject...>                # one line = one alternative; all on it must hold
//		query <key> [<operator>] [<value>]  # one line = one alternative of one condition
//		query {                             # one block = one alternative; all must hold
//			<key> [<operator>] [<value>]
//		}
//		policy bypass|one_factor|two_factor|deny
//	}
func UnmarshalRule(d *caddyfile.Dispenser) (accesscontrol.Rule, error) {
	var r accesscontrol.Rule
	if d.NextArg() {
		return r, d.Errf("rule takes no argument (got %q); put its criteria inside the block", d.Val())
	}
	var err error
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "domain":
			r.Domain, err = appendArgs(d, r.Domain)
		case "domain_regex":
			r.DomainRegex, err = appendArgs(d, r.DomainRegex)
		case "resources":
			r.Resources, err = appendArgs(d, r.Resources)
		case "methods":
			r.Methods, err = appendArgs(d, r.Methods)
		case "networks":
			r.Networks, err = appendArgs(d, r.Networks)
		case "subject":
			var alt []string
			alt, err = appendArgs(d, nil)
			if err == nil {
				r.Subject = append(r.Subject, alt)
			}
		case "query":
			args := d.RemainingArgs()
			if len(args) > 0 {
				c, cerr := queryCondition(d, args)
				if cerr != nil {
					return r, cerr
				}
				r.Query = append(r.Query, []accesscontrol.QueryCondition{c})
				continue
			}
			var alt []accesscontrol.QueryCondition
			for n := d.Nesting(); d.NextBlock(n); {
				c, cerr := queryCondition(d, append([]string{d.Val()}, d.RemainingArgs()...))
				if cerr != nil {
					return r, cerr
				}
				alt = append(alt, c)
			}
			if len(alt) == 0 {
				return r, d.Err("rule: query needs a condition: query <key> [<operator>] [<value>] or a block of them")
			}
			r.Query = append(r.Query, alt)
		case "policy":
			err = oneArg(d, &r.Policy)
		default:
			return r, d.Errf("rule: unknown criterion %q (domain, domain_regex, resources, methods, networks, subject, query, policy)", opt)
		}
		if err != nil {
			return r, err
		}
	}
	if r.Policy == "" {
		return r, d.Err("rule: policy is required (bypass, one_factor, two_factor or deny)")
	}
	return r, nil
}

// queryCondition reads "<key>", "<key> <value>", "<key> <operator>" or "<key> <operator> <value>".
func queryCondition(d *caddyfile.Dispenser, args []string) (accesscontrol.QueryCondition, error) {
	c := accesscontrol.QueryCondition{Key: args[0]}
	switch len(args) {
	case 1:
	case 2:
		if op := accesscontrol.NormalizeOperator(args[1]); op == "present" || op == "absent" {
			c.Operator = op
		} else {
			c.Value = args[1]
		}
	case 3:
		c.Operator = accesscontrol.NormalizeOperator(args[1])
		if c.Operator == "" {
			return c, d.Errf("rule: query %s: unknown operator %q (present, absent, equal, \"not equal\", pattern, \"not pattern\")", args[0], args[1])
		}
		c.Value = args[2]
	default:
		return c, d.Errf("rule: query %s: too many values; quote operators with spaces, e.g. \"not equal\"", args[0])
	}
	return c, nil
}
