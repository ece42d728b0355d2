// Package ldap is a users.Directory on an LDAP server (OpenLDAP, Active Directory, FreeIPA,
// LLDAP, GLAuth…), configured with the keys of Authelia's authentication_backend.ldap.
//
// A user is found with users_filter by a search made as the service account (user, password),
// with the name typed escaped per RFC 4515 in place of {input}; exactly one entry must match
// (none, or more than one, is users.ErrNotFound). The user's identity (users.User.Name) is the
// directory's spelling of the username attribute, so John and john are one user. A password is
// checked by binding as the user's DN on a connection of its own, never by comparing a digest
// read from the directory. Groups come from groups_filter or the member_of attribute.
//
// A user found is cached for cache_ttl (DefaultCacheTTL, 30s), by the name typed and by the
// canonical name, so the gate's lookup on every request costs a map read; a change in the
// directory (groups, a disabled or removed account, a password changed elsewhere) is seen
// within cache_ttl. A name that finds nobody is remembered for at most NegativeCacheTTL (5s).
//
// A name must be, letter case aside, the username or a mail address of the one entry found: a
// spelling the directory's looser matching accepts (Unicode compatibility forms, insignificant
// spaces) names nobody, as does a users_filter term on another attribute.
//
// Accounts the users_filter does not find are unknown: that is how a directory's disabled
// accounts are kept out (the activedirectory, freeipa and glauth presets exclude them), and a
// session of a user who becomes unknown ends. users.User.Disabled is always false here.
//
// A directory that cannot be reached, times out or refuses the service account gives errors
// wrapping users.ErrUnavailable, never users.ErrNotFound and never a pass. Once an operation has
// spent its retries, later ones fail at once for a second (a directory that does not answer
// costs each request no more), then dial again, so service resumes within a second of the
// server's return. An outage is logged at most every 10 s, and the return once.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// maxName is the longest name looked up, in bytes; a longer one names nobody.
const maxName = 256

// maxCache is how many names the cache holds at most.
const maxCache = 10000

// Directory is a users.Directory on an LDAP server. It is safe for concurrent use.
type Directory struct {
	cfg    Config
	logger *zap.Logger
	addr   *url.URL

	tlsMu sync.Mutex
	tls   *tls.Config // read from the tls files at the first TLS dial

	usersBase, groupsBase string
	groupsBaseDN          *goldap.DN
	usersFilter           string
	groupsFilter          string
	userAttrs             []string
	timeout, opTimeout    time.Duration
	ttl, negTTL           time.Duration

	pool  []*slot
	next  atomic.Uint32
	cache cache

	closed atomic.Bool

	downUntil   atomic.Int64 // unix ns: until then operations fail at once (see downFor)
	lastDownLog atomic.Int64 // unix ns of the last log of an unreachable directory
	wasDown     atomic.Bool
}

// New validates cfg (filling in its defaults) and returns the directory. It does not connect:
// the first operation does, and Check tests the service account.
func New(cfg Config, logger *zap.Logger) (*Directory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	u, _ := parseAddress(cfg.Address)
	d := &Directory{
		cfg:       cfg,
		logger:    logger,
		addr:      u,
		usersBase: joinDN(cfg.AdditionalUsersDN, cfg.BaseDN), groupsBase: joinDN(cfg.AdditionalGroupsDN, cfg.BaseDN),
		usersFilter:  cfg.fill(cfg.UsersFilter),
		groupsFilter: cfg.fill(cfg.GroupsFilter),
		timeout:      time.Duration(cfg.Timeout),
		opTimeout:    time.Duration(cfg.Pooling.Timeout),
		ttl:          time.Duration(cfg.CacheTTL),
		negTTL:       min(NegativeCacheTTL, time.Duration(cfg.CacheTTL)),
	}
	d.cache.entries = map[string]*cached{}
	d.cache.flights = map[string]*flight{}
	var err error
	if d.groupsBaseDN, err = goldap.ParseDN(d.groupsBase); err != nil {
		return nil, fmt.Errorf("ldap: additional_groups_dn and base_dn: %w", err)
	}
	n := 1
	if cfg.Pooling.Enable {
		n = cfg.Pooling.Count
	}
	for range n {
		d.pool = append(d.pool, &slot{})
	}
	a := cfg.Attributes
	for _, attr := range slices.Concat([]string{a.Username, a.DisplayName, a.Mail, a.DistinguishedName}, versionAttrs, a.profile()) {
		if attr != "" {
			d.userAttrs = append(d.userAttrs, attr)
		}
	}
	if cfg.GroupSearchMode == GroupSearchModeMemberOf {
		d.userAttrs = append(d.userAttrs, a.MemberOf)
	}
	return d, nil
}

func joinDN(prefix, base string) string {
	if prefix == "" {
		return base
	}
	return prefix + "," + base
}

// profile lists the configured profile attributes.
func (a Attributes) profile() []string {
	return []string{a.GivenName, a.FamilyName, a.MiddleName, a.Nickname, a.Gender, a.Birthdate, a.Website, a.Profile,
		a.Picture, a.ZoneInfo, a.Locale, a.PhoneNumber, a.PhoneExtension, a.StreetAddress, a.Locality, a.Region,
		a.PostalCode, a.Country}
}

// tlsConfig returns the TLS config of the connections, reading the tls files the first time (as
// storage postgres does, so caddy validate passes where the files are not; a missing file makes
// the directory unavailable, and Check says which).
func (d *Directory) tlsConfig() (*tls.Config, error) {
	d.tlsMu.Lock()
	defer d.tlsMu.Unlock()
	if d.tls != nil {
		return d.tls, nil
	}
	tc, err := buildTLS(d.cfg.TLS, d.addr.Hostname())
	if err != nil {
		return nil, err
	}
	d.tls = tc
	return tc, nil
}

func buildTLS(t *TLSConfig, host string) (*tls.Config, error) {
	if t == nil {
		t = &TLSConfig{}
	}
	minV, _ := tlsVersion(t.MinimumVersion, tls.VersionTLS12)
	maxV, _ := tlsVersion(t.MaximumVersion, 0)
	tc := &tls.Config{ServerName: t.ServerName, MinVersion: minV, MaxVersion: maxV, InsecureSkipVerify: t.SkipVerify}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: tls ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap: tls ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertificateChain != "" {
		cert, err := tls.LoadX509KeyPair(t.CertificateChain, t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("ldap: tls certificate_chain and private_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Config returns the configuration, defaults filled in.
func (d *Directory) Config() Config { return d.cfg }

// errUnavailable wraps err in users.ErrUnavailable.
func errUnavailable(what string, err error) error {
	return fmt.Errorf("%w: ldap: %s: %v", users.ErrUnavailable, what, err)
}

// ---- connections ----

// slot is one service connection of the pool.
type slot struct {
	mu   sync.Mutex
	conn *goldap.Conn
}

// dial opens a connection (TLS and StartTLS done), bounded by timeout.
func (d *Directory) dial(ctx context.Context) (*goldap.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var dialer net.Dialer
	var nc net.Conn
	var tc *tls.Config
	var err error
	if d.addr.Scheme == "ldaps" || d.cfg.StartTLS {
		if tc, err = d.tlsConfig(); err != nil {
			return nil, err
		}
	}
	switch d.addr.Scheme {
	case "ldapi":
		nc, err = dialer.DialContext(ctx, "unix", d.addr.Path)
	default:
		host := d.addr.Host
		if d.addr.Port() == "" {
			port := "389"
			if d.addr.Scheme == "ldaps" {
				port = "636"
			}
			host = net.JoinHostPort(d.addr.Hostname(), port)
		}
		nc, err = dialer.DialContext(ctx, "tcp", host)
		if err == nil && d.addr.Scheme == "ldaps" {
			tlsConn := tls.Client(nc, tc)
			if err = tlsConn.HandshakeContext(ctx); err != nil {
				nc.Close()
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			nc = tlsConn
		}
	}
	if err != nil {
		return nil, err
	}
	c := goldap.NewConn(nc, d.addr.Scheme == "ldaps")
	c.Start()
	c.SetTimeout(d.timeout)
	if d.cfg.StartTLS {
		dl, _ := ctx.Deadline()
		_ = nc.SetDeadline(dl)
		err := c.StartTLS(tc)
		_ = nc.SetDeadline(time.Time{})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS: %w", err)
		}
	}
	return c, nil
}

// serviceConn returns a connection of the pool bound as the service account, dialling it when
// the slot has none or a broken one.
func (d *Directory) serviceConn(ctx context.Context) (*goldap.Conn, *slot, error) {
	s := d.pool[int(d.next.Add(1))%len(d.pool)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && !s.conn.IsClosing() {
		return s.conn, s, nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if d.closed.Load() {
		return nil, nil, errors.New("the directory is closed")
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Bind(d.cfg.User, d.cfg.Password); err != nil {
		c.Close()
		if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			d.logger.Error("ldap: the directory refused the service account's password (check user and password)",
				zap.String("user", d.cfg.User))
		}
		return nil, nil, fmt.Errorf("binding as the service account %s: %w", d.cfg.User, err)
	}
	s.conn = c
	return c, s, nil
}

// broken closes a slot's connection after a network error, so the next use dials again.
func (s *slot) broken(c *goldap.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		s.conn = nil
	}
	c.Close()
}

// transient reports whether err is the connection's or the server's state rather than an
// answer: the operation is tried again on a new connection.
func transient(err error) bool {
	var le *goldap.Error
	if !errors.As(err, &le) {
		return true // a dial or TLS error
	}
	switch le.ResultCode {
	case goldap.ErrorNetwork, goldap.LDAPResultBusy, goldap.LDAPResultUnavailable, goldap.LDAPResultServerDown,
		goldap.LDAPResultTimeout, goldap.LDAPResultConnectError:
		return true
	}
	return false
}

// withService runs op on a service connection, on another (new) one when the connection fails,
// up to pooling retries times within pooling timeout. Its errors wrap users.ErrUnavailable.
func (d *Directory) withService(parent context.Context, what string, op func(*goldap.Conn) error) error {
	if err := d.down(); err != nil {
		return errUnavailable(what, err)
	}
	ctx, cancel := context.WithTimeout(parent, d.opTimeout)
	defer cancel()
	var last error
	for attempt := 0; attempt <= d.cfg.Pooling.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		}
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = err
			}
			break
		}
		c, s, err := d.serviceConn(ctx)
		if err != nil {
			last = err
			if !transient(err) {
				break
			}
			continue
		}
		err = op(c)
		if err == nil {
			d.reachable()
			return nil
		}
		if !transient(err) {
			d.reachable()
			d.logger.Error("ldap: the directory refused an operation", zap.String("operation", what), zap.Error(err))
			return errUnavailable(what, err)
		}
		s.broken(c)
		last = err
	}
	if err := parent.Err(); err != nil {
		return errUnavailable(what, err) // the caller left: not the directory's fault
	}
	d.unreachable(what, last)
	return errUnavailable(what, last)
}

// downFor is how long after an operation found the directory unreachable (every retry spent)
// later operations fail at once instead of waiting for the timeout again: a directory that does
// not answer costs each request at the gate no more than that, and service resumes at most
// downFor after it is back.
const downFor = time.Second

// downLogEvery bounds how often an unreachable directory is logged.
const downLogEvery = 10 * time.Second

var errRecentlyDown = errors.New("it did not answer less than a second ago")

// down is errRecentlyDown within downFor of the last time the directory was found unreachable.
func (d *Directory) down() error {
	if until := d.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return errRecentlyDown
	}
	return nil
}

// unreachable records an operation that could not reach the directory, and logs it (at most
// every downLogEvery).
func (d *Directory) unreachable(what string, err error) {
	now := time.Now().UnixNano()
	d.downUntil.Store(now + int64(downFor))
	d.wasDown.Store(true)
	if last := d.lastDownLog.Load(); now-last >= int64(downLogEvery) && d.lastDownLog.CompareAndSwap(last, now) {
		d.logger.Warn("ldap: the directory cannot be reached; sign-ins and the gate answer 503 until it does",
			zap.String("operation", what), zap.String("address", d.cfg.Address), zap.Error(err))
	}
}

// reachable records an answer from the directory, logging the first after an outage.
func (d *Directory) reachable() {
	if d.wasDown.Load() && d.wasDown.CompareAndSwap(true, false) {
		d.logger.Info("ldap: the directory answers again", zap.String("address", d.cfg.Address))
	}
}

// Check binds as the service account and reads base_dn: the start-up check, whose failure the
// caller logs (the directory may come up later).
func (d *Directory) Check(ctx context.Context) error {
	return d.withService(ctx, "checking base_dn", func(c *goldap.Conn) error {
		_, err := c.Search(goldap.NewSearchRequest(d.cfg.BaseDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
			1, int(d.timeout/time.Second), false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil {
			return fmt.Errorf("reading base_dn %s: %w", d.cfg.BaseDN, err)
		}
		return nil
	})
}

// Close closes the service connections. Later operations fail.
func (d *Directory) Close() error {
	d.closed.Store(true)
	for _, s := range d.pool {
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		s.mu.Unlock()
	}
	return nil
}

// ---- lookups ----

// cached is what the cache holds for a name: a user and their DN, or users.ErrNotFound.
type cached struct {
	user    *users.User
	dn      string
	sig     string
	expires time.Time
}

type flight struct {
	done chan struct{}
	c    *cached
	err  error
}

type cache struct {
	mu      sync.RWMutex
	entries map[string]*cached
	flights map[string]*flight
}

func (c *cache) get(key string, now time.Time) *cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.entries[key]; e != nil && now.Before(e.expires) {
		return e
	}
	return nil
}

// put stores e under key; when the cache is full, the expired entries make room, and then a
// quarter of the others, whichever they are.
func (c *cache) put(key string, e *cached, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCache {
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxCache*3/4 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}

// previous returns the user last cached under key, even expired, to reuse when unchanged.
func (c *cache) previous(key string) *cached {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entries[key]
}

// forget drops every entry of the user named name.
func (c *cache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.entries {
		if k == name || (v.user != nil && v.user.Name == name) {
			delete(c.entries, k)
		}
	}
}

// Lookup implements users.Directory: the one user users_filter finds for name (a username in
// any letter case, or a mail address where the filter allows), cached for cache_ttl.
func (d *Directory) Lookup(ctx context.Context, name string) (*users.User, error) {
	e, err := d.entry(ctx, name)
	if err != nil {
		return nil, err
	}
	return e.user, nil
}

// entry is Lookup with the DN.
func (d *Directory) entry(ctx context.Context, name string) (*cached, error) {
	if !acceptable(name) {
		return nil, users.ErrNotFound
	}
	now := time.Now()
	if e := d.cache.get(name, now); e != nil {
		if e.user == nil {
			return nil, users.ErrNotFound
		}
		return e, nil
	}
	// one search per name at a time
	d.cache.mu.Lock()
	if f := d.cache.flights[name]; f != nil {
		d.cache.mu.Unlock()
		select {
		case <-f.done:
			return f.c, f.err
		case <-ctx.Done():
			return nil, errUnavailable("looking up a user", ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	d.cache.flights[name] = f
	d.cache.mu.Unlock()
	f.c, f.err = d.search(ctx, name)
	d.cache.mu.Lock()
	delete(d.cache.flights, name)
	d.cache.mu.Unlock()
	close(f.done)
	return f.c, f.err
}

// acceptable reports whether name could be a username or mail address: non-empty, at most
// maxName bytes of UTF-8 without control characters. Any other names nobody, unsearched.
func acceptable(name string) bool {
	if name == "" || len(name) > maxName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// search asks the directory for name and caches the answer (not an unavailable one).
func (d *Directory) search(ctx context.Context, name string) (*cached, error) {
	now := time.Now()
	filter := d.userFilter(name, now)
	var res *goldap.SearchResult
	err := d.withService(ctx, "searching for a user", func(c *goldap.Conn) error {
		var err error
		res, err = c.Search(goldap.NewSearchRequest(d.usersBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
			2, int(d.timeout/time.Second), false, filter, d.userAttrs, nil))
		if goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
			res, err = &goldap.SearchResult{Entries: make([]*goldap.Entry, 2)}, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	notFound := func() (*cached, error) {
		d.cache.put(name, &cached{expires: now.Add(d.negTTL)}, now)
		return nil, users.ErrNotFound
	}
	switch len(res.Entries) {
	case 0:
		return notFound()
	case 1:
	default:
		d.logger.Warn("ldap: more than one entry matches users_filter for a name; it names no one (make the username and mail attributes unique)",
			zap.String("name", name))
		return notFound()
	}
	entry := res.Entries[0]
	if !names(entry, d.cfg.Attributes, name) {
		// the directory's matching is looser than letter case (Unicode compatibility forms,
		// insignificant spaces): those spellings do not make more names for a user
		return notFound()
	}
	u, err := d.user(ctx, entry)
	if err != nil {
		if errors.Is(err, users.ErrNotFound) {
			return notFound()
		}
		return nil, err
	}
	e := &cached{user: u, dn: entry.DN, expires: now.Add(d.ttl)}
	e.sig = signature(entry.DN, u)
	// the same user as before keeps its *User (a changed one is a new one)
	for _, key := range []string{u.Name, name} {
		if old := d.cache.previous(key); old != nil && old.user != nil && old.sig == e.sig {
			e.user = old.user
			break
		}
	}
	d.cache.put(name, e, now)
	if u.Name != name {
		d.cache.put(u.Name, e, now)
	}
	return e, nil
}

// names reports whether name is, letter case aside, the entry's username or one of its mail
// addresses.
func names(e *goldap.Entry, a Attributes, name string) bool {
	for _, attr := range []string{a.Username, a.Mail} {
		if attr == "" {
			continue
		}
		for _, v := range e.GetEqualFoldAttributeValues(attr) {
			if strings.EqualFold(v, name) {
				return true
			}
		}
	}
	return false
}

// userFilter is users_filter for name: the name escaped per RFC 4515, the times filled in.
func (d *Directory) userFilter(name string, now time.Time) string {
	return dateTimes(strings.ReplaceAll(d.usersFilter, "{input}", goldap.EscapeFilter(name)), now)
}

// signature is what makes two users the same.
func signature(dn string, u *users.User) string {
	b, _ := json.Marshal([]any{dn, u.Name, u.DisplayName, u.Emails, u.Groups, u.Disabled, u.Profile, u.PasswordVersion})
	return string(b)
}

// dateTimes replaces the date-time placeholders of users_filter.
func dateTimes(filter string, now time.Time) string {
	if !strings.Contains(filter, "{date-time:") {
		return filter
	}
	now = now.UTC()
	// Microsoft NT time: 100 ns intervals since 1601-01-01
	nt := now.Unix()*10_000_000 + int64(now.Nanosecond()/100) + 116_444_736_000_000_000
	return strings.NewReplacer(
		"{date-time:generalized}", now.Format("20060102150405.0Z"),
		"{date-time:unix}", strconv.FormatInt(now.Unix(), 10),
		"{date-time:microsoft-nt}", strconv.FormatInt(nt, 10),
	).Replace(filter)
}

// user builds the user of an entry, groups included.
func (d *Directory) user(ctx context.Context, e *goldap.Entry) (*users.User, error) {
	a := d.cfg.Attributes
	name := canonicalName(e, a.Username)
	if name == "" {
		d.logger.Warn("ldap: an entry users_filter found has no username attribute; it names no one",
			zap.String("dn", e.DN), zap.String("attribute", a.Username))
		return nil, users.ErrNotFound
	}
	u := &users.User{Name: name, DisplayName: e.GetEqualFoldAttributeValue(a.DisplayName)}
	if u.DisplayName == "" {
		u.DisplayName = name
	}
	if a.Mail != "" {
		for _, m := range e.GetEqualFoldAttributeValues(a.Mail) {
			if m != "" && !slices.Contains(u.Emails, m) {
				u.Emails = append(u.Emails, m)
			}
		}
	}
	u.PasswordVersion = passwordVersion(e)
	d.fillProfile(u, e)
	groups, err := d.groups(ctx, e, name)
	if err != nil {
		return nil, err
	}
	u.Groups = groups
	return u, nil
}

// versionAttrs are the operational attributes that change when a password may have: Active
// Directory's pwdLastSet, ppolicy's pwdChangedTime, and every change's entryCSN (OpenLDAP, to the
// microsecond) and modifyTimestamp (to the second; most directories).
var versionAttrs = []string{"pwdLastSet", "pwdChangedTime", "entryCSN", "modifyTimestamp"}

// passwordVersion is the entry's DN with the versionAttrs it has: all of them, since a directory
// may keep one without updating it on every password change (pwdChangedTime without a policy,
// say), while modifyTimestamp changes with every modification. "" when it has none.
func passwordVersion(e *goldap.Entry) string {
	var b strings.Builder
	for _, attr := range versionAttrs {
		if v := e.GetEqualFoldAttributeValue(attr); v != "" {
			b.WriteString("|" + attr + "=" + v)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return e.DN + b.String()
}

// canonicalName is the username of an entry: its one value, or, when the attribute holds
// several, the one of the entry's RDN if it is among them, else the first.
func canonicalName(e *goldap.Entry, attr string) string {
	vals := e.GetEqualFoldAttributeValues(attr)
	if len(vals) == 0 {
		return ""
	}
	if len(vals) > 1 {
		if dn, err := goldap.ParseDN(e.DN); err == nil && len(dn.RDNs) > 0 {
			for _, ava := range dn.RDNs[0].Attributes {
				if strings.EqualFold(ava.Type, attr) {
					for _, v := range vals {
						if v == ava.Value {
							return v
						}
					}
				}
			}
		}
	}
	return vals[0]
}

func (d *Directory) fillProfile(u *users.User, e *goldap.Entry) {
	a := d.cfg.Attributes
	get := func(attr string) string {
		if attr == "" {
			return ""
		}
		return e.GetEqualFoldAttributeValue(attr)
	}
	p := &u.Profile
	p.GivenName, p.FamilyName, p.MiddleName, p.Nickname = get(a.GivenName), get(a.FamilyName), get(a.MiddleName), get(a.Nickname)
	p.Gender, p.Birthdate, p.Website, p.Profile = get(a.Gender), get(a.Birthdate), get(a.Website), get(a.Profile)
	p.Picture, p.ZoneInfo, p.Locale = get(a.Picture), get(a.ZoneInfo), get(a.Locale)
	p.PhoneNumber, p.PhoneExtension = get(a.PhoneNumber), get(a.PhoneExtension)
	addr := users.Address{StreetAddress: get(a.StreetAddress), Locality: get(a.Locality), Region: get(a.Region),
		PostalCode: get(a.PostalCode), Country: get(a.Country)}
	if addr != (users.Address{}) {
		p.Address = &addr
	}
}

// groups finds the names of the user's groups, sorted.
func (d *Directory) groups(ctx context.Context, e *goldap.Entry, name string) ([]string, error) {
	var names []string
	var err error
	if d.cfg.GroupSearchMode == GroupSearchModeMemberOf {
		names, err = d.memberOfGroups(ctx, e, name)
	} else {
		filter := strings.NewReplacer("{dn}", goldap.EscapeFilter(e.DN), "{username}", goldap.EscapeFilter(name),
			"{input}", goldap.EscapeFilter(name)).Replace(d.groupsFilter)
		names, err = d.searchGroups(ctx, filter, nil)
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// searchGroups searches the groups with filter, keeping, when keep is not nil, those whose DN
// keep accepts.
func (d *Directory) searchGroups(ctx context.Context, filter string, keep func(*goldap.DN) bool) ([]string, error) {
	attr := d.cfg.Attributes.GroupName
	var res *goldap.SearchResult
	err := d.withService(ctx, "searching for a user's groups", func(c *goldap.Conn) error {
		var err error
		res, err = c.Search(goldap.NewSearchRequest(d.groupsBase, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
			0, int(d.timeout/time.Second), false, filter, []string{attr}, nil))
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			res, err = &goldap.SearchResult{}, nil // no groups base, no groups
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range res.Entries {
		if keep != nil {
			dn, err := goldap.ParseDN(g.DN)
			if err != nil || !keep(dn) {
				continue
			}
		}
		if v := g.GetEqualFoldAttributeValue(attr); v != "" {
			names = append(names, v)
		}
	}
	return names, nil
}

// memberOfGroups reads the groups of group_search_mode memberof.
func (d *Directory) memberOfGroups(ctx context.Context, e *goldap.Entry, name string) ([]string, error) {
	var dns []*goldap.DN
	for _, v := range e.GetEqualFoldAttributeValues(d.cfg.Attributes.MemberOf) {
		dn, err := goldap.ParseDN(v)
		if err != nil || len(dn.RDNs) == 0 {
			continue
		}
		if d.groupsBaseDN.AncestorOfFold(dn) {
			dns = append(dns, dn)
		}
	}
	if len(dns) == 0 {
		return nil, nil
	}
	member := func(dn *goldap.DN) bool {
		for _, m := range dns {
			if m.EqualFold(dn) {
				return true
			}
		}
		return false
	}
	if strings.Contains(d.groupsFilter, "{memberof:") {
		var rdns, full strings.Builder
		for _, dn := range dns {
			rdns.WriteString("(")
			for i, ava := range dn.RDNs[0].Attributes {
				if i > 0 {
					break // a multi-valued RDN: its first value serves to find it
				}
				rdns.WriteString(ava.Type + "=" + goldap.EscapeFilter(ava.Value))
			}
			rdns.WriteString(")")
			full.WriteString("(" + d.cfg.Attributes.DistinguishedName + "=" + goldap.EscapeFilter(dn.String()) + ")")
		}
		filter := strings.NewReplacer("{memberof:rdn}", rdns.String(), "{memberof:dn}", full.String(),
			"{dn}", goldap.EscapeFilter(e.DN), "{username}", goldap.EscapeFilter(name), "{input}", goldap.EscapeFilter(name)).Replace(d.groupsFilter)
		return d.searchGroups(ctx, filter, member)
	}
	var names []string
	for _, dn := range dns {
		rdn := dn.RDNs[0].Attributes
		if len(rdn) == 1 && strings.EqualFold(rdn[0].Type, d.cfg.Attributes.GroupName) {
			names = append(names, rdn[0].Value)
			continue
		}
		// the RDN is another attribute: read the group's name from its entry
		var res *goldap.SearchResult
		err := d.withService(ctx, "reading a group", func(c *goldap.Conn) error {
			var err error
			res, err = c.Search(goldap.NewSearchRequest(dn.String(), goldap.ScopeBaseObject, goldap.NeverDerefAliases,
				1, int(d.timeout/time.Second), false, "(objectClass=*)", []string{d.cfg.Attributes.GroupName}, nil))
			if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
				res, err = &goldap.SearchResult{}, nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, g := range res.Entries {
			if v := g.GetEqualFoldAttributeValue(d.cfg.Attributes.GroupName); v != "" {
				names = append(names, v)
			}
		}
	}
	return names, nil
}

// ---- passwords ----

// CheckPassword implements users.Directory: it binds as u's DN with password on a connection of
// its own, closed afterwards. An empty password is false without a bind (an empty password
// would be an unauthenticated bind, which servers accept). A wrong password is (false, nil); a
// directory that cannot be asked is an error wrapping users.ErrUnavailable.
func (d *Directory) CheckPassword(ctx context.Context, u *users.User, password string) (bool, error) {
	if password == "" || u == nil {
		return false, nil
	}
	e, err := d.entry(ctx, u.Name)
	if errors.Is(err, users.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	const what = "binding as a user"
	if err := d.down(); err != nil {
		return false, errUnavailable(what, err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d.opTimeout)
	defer cancel()
	var last error
	for attempt := 0; attempt <= d.cfg.Pooling.Retries && ctx.Err() == nil; attempt++ {
		c, err := d.dial(ctx)
		if err != nil {
			last = err
			continue
		}
		err = c.Bind(e.dn, password)
		c.Close()
		switch {
		case err == nil:
			d.reachable()
			return true, nil
		case goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials),
			goldap.IsErrorWithCode(err, goldap.LDAPResultInappropriateAuthentication),
			goldap.IsErrorWithCode(err, goldap.LDAPResultInsufficientAccessRights),
			goldap.IsErrorWithCode(err, goldap.LDAPResultConstraintViolation),
			goldap.IsErrorWithCode(err, goldap.LDAPResultUnwillingToPerform):
			d.reachable()
			return false, nil
		case !transient(err):
			d.reachable()
			return false, errUnavailable(what, err)
		}
		last = err
	}
	if err := parent.Err(); err != nil {
		return false, errUnavailable(what, err)
	}
	if last == nil {
		last = ctx.Err()
	}
	d.unreachable(what, last)
	return false, errUnavailable(what, last)
}

// SetPassword implements users.Directory: as the service account, it sets u's password with the
// password-modify extended operation (RFC 3062), or, for implementation activedirectory, by
// replacing unicodePwd with the quoted password in UTF-16LE. The user's cache entry is dropped,
// so the next Lookup sees the new password version.
func (d *Directory) SetPassword(ctx context.Context, u *users.User, password string) error {
	if password == "" {
		return errors.New("ldap: an empty password cannot be set")
	}
	e, err := d.entry(ctx, u.Name)
	if err != nil {
		return fmt.Errorf("ldap: setting the password of %s: %w", u.Name, err)
	}
	defer d.cache.forget(u.Name)
	err = d.withService(ctx, "setting a password", func(c *goldap.Conn) error {
		if d.cfg.Implementation == ImplementationActiveDirectory {
			m := goldap.NewModifyRequest(e.dn, nil)
			m.Replace("unicodePwd", []string{unicodePwd(password)})
			return c.Modify(m)
		}
		_, err := c.PasswordModify(goldap.NewPasswordModifyRequest(e.dn, "", password))
		return err
	})
	if err != nil {
		return fmt.Errorf("ldap: setting the password of %s: %w", u.Name, err)
	}
	return nil
}

// unicodePwd is Active Directory's form of a new password: in double quotes, UTF-16LE.
func unicodePwd(password string) string {
	units := utf16.Encode([]rune("\"" + password + "\""))
	b := make([]byte, 2*len(units))
	for i, v := range units {
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	return string(b)
}

var _ users.Directory = (*Directory)(nil)
