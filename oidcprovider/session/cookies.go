package session

import (
	"errors"
	"net/http"
	"slices"
	"strings"
)

// MaxCookies is how many cookies of the session cookie's name one request may carry; more is
// ErrCookies.
const MaxCookies = 4

// ErrCookies is a request whose session cookies cannot be read as one person's: the live
// sessions of two people, or more than MaxCookies cookies of the name. The gate and the portal
// answer it with 400 rather than pick one.
var ErrCookies = errors.New("session: session cookies of two people, or more than 4 session cookies")

// Pick is the one rule for reading the session cookies (called name) of a request, which the
// gate and the portal share. Every cookie of the name is read, in the order the request carries
// them (more than MaxCookies is ErrCookies), so one that speaks for no one never shadows a live
// one: a site under the cookie domain can set a cookie of our name, with a longer path so
// browsers send it first, but cannot make one that names a live session of someone else, since
// session ids are random and kept on the server. The only cookie such a site can plant to some
// effect is a live session of its own; beside the person's own session that is two people, and
// Pick answers ErrCookies rather than choose. Two live sessions of one person are that person,
// through the first. (A planted session alone cannot be told from a sign-in.)
//
// live tells who the session id speaks for (its username) and what the caller keeps of it (v),
// or ErrNoSession when it speaks for no one; any other error ends the search and is returned.
// Pick returns the id and v of the live session, or ErrNoSession when there is none. It
// allocates nothing of its own.
func Pick[T any](h http.Header, name string, live func(id string) (user string, v T, err error)) (string, T, error) {
	var (
		values [MaxCookies]string
		zero   T
	)
	n := cookieValues(h, name, values[:])
	if n > MaxCookies {
		return "", zero, ErrCookies
	}
	var (
		id, user string
		v        T
	)
	for i, c := range values[:n] {
		if c == "" || slices.Contains(values[:i], c) {
			continue
		}
		u, cv, err := live(c)
		switch {
		case errors.Is(err, ErrNoSession):
			continue
		case err != nil:
			return "", zero, err
		case id == "":
			id, user, v = c, u, cv
		case u != user:
			return "", zero, ErrCookies
		}
	}
	if id == "" {
		return "", zero, ErrNoSession
	}
	return id, v, nil
}

// Values returns the values of the cookies called name that h carries, at most MaxCookies of
// them: the sign-out ends each (Store.EndSignIn), live or lapsed.
func Values(h http.Header, name string) []string {
	var values [MaxCookies]string
	n := min(cookieValues(h, name, values[:]), MaxCookies)
	return slices.Clone(values[:n])
}

// cookieValues puts the values of the cookies called name into values, in the order the request
// carries them, and returns how many there are (which may exceed len(values)), without parsing
// every cookie of the request.
func cookieValues(h http.Header, name string, values []string) int {
	n := 0
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if k, v, ok := strings.Cut(part, "="); ok && k == name {
				if n < len(values) {
					values[n] = strings.Trim(v, `"`)
				}
				n++
			}
		}
	}
	return n
}
