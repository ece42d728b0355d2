// Package audience holds Portcullis's one audience rule and the canonical form of the URL a
// request targets, so the token endpoint, the gateway's audience check and its access rules all
// compare the same thing.
//
// The rule: an audience entry authorizes a target URL when scheme and host are equal (host
// case-insensitive, without a trailing dot, default ports normalised) and the entry's path is a
// prefix of the target's path at a "/" boundary. The query of either is ignored.
package audience

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// URL is a URL reduced to what the audience rule compares. The zero value covers nothing.
type URL struct {
	scheme string // lower case
	host   string // canonical host, with ":port" unless it is the scheme's default
	path   string // escaped path, "/" when empty
}

// FromURL reduces u for the audience rule.
func FromURL(u *url.URL) URL {
	return Target(u.Scheme, u.Host, u.EscapedPath())
}

// Target builds the reduced form of a request target from its scheme, Host header (host[:port])
// and escaped path.
func Target(scheme, hostport, escapedPath string) URL {
	scheme = strings.ToLower(scheme)
	host, port := SplitHost(hostport)
	if port != "" && !((port == "443" && scheme == "https") || (port == "80" && scheme == "http")) {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		host += ":" + port
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if escapedPath == "" {
		escapedPath = "/"
	}
	return URL{scheme: scheme, host: host, path: escapedPath}
}

// String is the reduced URL, for messages.
func (u URL) String() string { return u.scheme + "://" + u.host + u.path }

// Covers reports whether the entry u authorizes target.
func (u URL) Covers(target URL) bool {
	if u.scheme == "" || u.scheme != target.scheme || u.host != target.host {
		return false
	}
	if u.path == target.path {
		return true
	}
	if !strings.HasPrefix(target.path, u.path) {
		return false
	}
	return strings.HasSuffix(u.path, "/") || target.path[len(u.path)] == '/'
}

// Matches is the audience rule on parsed URLs: entry authorizes target.
func Matches(entry, target *url.URL) bool { return FromURL(entry).Covers(FromURL(target)) }

// List is a parsed audience list; entries that are not absolute URLs are left out.
type List []URL

// ParseList keeps the entries of list that are absolute URLs, reduced for the rule.
func ParseList(list []string) List {
	out := make(List, 0, len(list))
	for _, a := range list {
		if u, err := url.Parse(a); err == nil && u.Host != "" {
			out = append(out, FromURL(u))
		}
	}
	return out
}

// Covers reports whether any entry of l authorizes target.
func (l List) Covers(target URL) bool {
	for _, u := range l {
		if u.Covers(target) {
			return true
		}
	}
	return false
}

// Allowed reports whether requested may be granted from the allowed list: an entry equal to it,
// or, for URLs, an entry that covers it under the rule.
func Allowed(allowed []string, requested string) bool {
	ru, rerr := url.Parse(requested)
	for _, a := range allowed {
		if a == requested {
			return true
		}
		if rerr != nil || ru.Host == "" {
			continue
		}
		if au, err := url.Parse(a); err == nil && au.Host != "" && Matches(au, ru) {
			return true
		}
	}
	return false
}

// ParseEntry checks an audience entry the gateway will compare against request URLs: an
// absolute http(s) URL with no query, fragment or user info.
func ParseEntry(a string) (*url.URL, error) {
	u, err := url.Parse(a)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an absolute http(s) URL such as https://secure.example.com/", a)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q may not carry a query, a fragment or user info", a)
	}
	if _, err := CheckPath(u.EscapedPath()); err != nil {
		return nil, fmt.Errorf("%q: %w", a, err)
	}
	return u, nil
}

// ParseResource checks an RFC 8707 resource indicator: an absolute URI without a fragment.
func ParseResource(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Fragment != "" {
		return fmt.Errorf("resource %q must be an absolute URI without a fragment", s)
	}
	return nil
}

// SplitHost splits a Host header value into the canonical host name (lower case, no trailing
// dot, IPv6 without brackets) and the port ("" when absent). It is the one host normalisation
// of Portcullis: the access rules compare the host, the audience rule the host and port.
func SplitHost(hostport string) (host, port string) {
	host = hostport
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			if rest := host[end+1:]; strings.HasPrefix(rest, ":") {
				port = rest[1:]
			}
			host = host[1:end]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host, port = host[:i], host[i+1:]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host), port
		}
	}
	return host, port
}

// ErrUnsafePath is why CheckPath refuses a path.
var ErrUnsafePath = errors.New("the path has a dot segment, an encoded slash or backslash, a backslash, a control character or invalid UTF-8")

// maxDecodeLayers bounds how many layers of percent-encoding CheckPath looks through.
const maxDecodeLayers = 4

// CheckPath refuses a request path that servers may read differently from each other, so that
// the access rules, the audience check and the upstream see one target. escapedPath is the path
// as sent on the wire (url.URL.EscapedPath or the request URI's path). Refused, in the path as
// sent and in every layer an upstream that decodes again would see (up to four layers:
// "%252e", "%25%32%65", …):
//   - a "." or ".." segment, also percent-encoded (%2e) and with a ";param" suffix as Java
//     servers read it ("..;x");
//   - an encoded "/" (%2f) or "\" (%5c), and a "\";
//   - a NUL and other control characters;
//   - invalid UTF-8 (overlong encodings such as %c0%ae), once decoded.
//
// It returns the decoded path when the escaped one is acceptable. It allocates only when the
// path contains a "%".
func CheckPath(escapedPath string) (string, error) {
	if !safeLayer(escapedPath) {
		return "", ErrUnsafePath
	}
	if strings.IndexByte(escapedPath, '%') < 0 {
		return escapedPath, nil
	}
	decoded, err := url.PathUnescape(escapedPath)
	if err != nil {
		return "", ErrUnsafePath
	}
	layer := decoded
	for i := 0; ; i++ {
		if !safeLayer(layer) || !utf8.ValidString(layer) {
			return "", ErrUnsafePath
		}
		if strings.IndexByte(layer, '%') < 0 {
			return decoded, nil
		}
		if i == maxDecodeLayers {
			return "", ErrUnsafePath
		}
		next, err := url.PathUnescape(layer)
		if err != nil {
			// a "%" that starts no escape (e.g. "/100%"): nothing more to decode
			return decoded, nil
		}
		layer = next
	}
}

// safeLayer checks one layer of a path: no backslash, control character or dot segment, and no
// encoded "/", "\" or NUL.
func safeLayer(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' || c < 0x20 || c == 0x7f:
			return false
		case c == '%' && i+2 < len(p):
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c", "00":
				return false
			}
		}
	}
	return !hasDotSegment(p)
}

// hasDotSegment reports a "." or ".." segment, ignoring a ";param" suffix.
func hasDotSegment(p string) bool {
	for len(p) > 0 {
		var seg string
		if i := strings.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			seg, p = p, ""
		}
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
