package caddyauth

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// identityHeaders are the request headers the gate sets; every client-supplied header whose name
// starts with "Remote-", "Remote_" or "Remote." is removed first.
const (
	headerUser     = "Remote-User"
	headerGroups   = "Remote-Groups"
	headerEmail    = "Remote-Email"
	headerName     = "Remote-Name"
	headerClientID = "Remote-Client-Id"
)

// isRemoteHeader reports a header name in the Remote-* family, whatever its separator and case:
// servers that allow underscores in header names, or that map '.' to '_', would read
// "Remote_User" or "Remote.User" as Remote-User.
func isRemoteHeader(k string) bool {
	if len(k) < 7 || !strings.EqualFold(k[:6], "remote") {
		return false
	}
	switch k[6] {
	case '-', '_', '.':
		return true
	}
	return false
}

// stripRemoteHeaders removes every Remote-* header the caller sent, and the request trailers of
// those names, both those declared now and those that arrive after the body; and it removes the
// Remote-* names from the Connection header, where reverse_proxy would read them as hop-by-hop
// headers and drop the identity headers the gate sets. A request without a Connection header
// (every HTTP/2 and HTTP/3 request) costs nothing more than the loop over its header names.
func stripRemoteHeaders(r *http.Request) {
	for k, vs := range r.Header {
		if isRemoteHeader(k) {
			delete(r.Header, k)
		} else if len(k) == len("Connection") && k == "Connection" {
			stripConnectionTokens(r.Header, vs)
		}
	}
	if r.Trailer == nil {
		return
	}
	for k := range r.Trailer {
		if isRemoteHeader(k) {
			delete(r.Trailer, k)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trailerFilter{ReadCloser: r.Body, r: r}
	}
}

// stripConnectionTokens removes the Remote-* names (any case, any separator) from the request's
// Connection header lines, keeping its other tokens (close, keep-alive, Upgrade, names of other
// headers); a header left with no token is removed. Net/http files every spelling of the header
// name under its canonical key, the only one reverse_proxy reads.
func stripConnectionTokens(h http.Header, lines []string) {
	found := false
	for _, line := range lines {
		for tok := range strings.SplitSeq(line, ",") {
			if isRemoteHeader(textproto.TrimString(tok)) {
				found = true
				break
			}
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, line := range lines {
		var toks []string
		for tok := range strings.SplitSeq(line, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !isRemoteHeader(tok) {
				toks = append(toks, tok)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = kept
}

// trailerFilter removes Remote-* trailers once the body has been read to its end, which is when
// net/http fills in the request's trailers.
type trailerFilter struct {
	io.ReadCloser
	r *http.Request
}

func (f *trailerFilter) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if err == io.EOF {
		for k := range f.r.Trailer {
			if isRemoteHeader(k) {
				delete(f.r.Trailer, k)
			}
		}
	}
	return n, err
}

// applyIdentity sets the upstream headers and Caddy placeholders for an allowed caller.
func applyIdentity(r *http.Request, id *identity) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id.subject.ClientID != "" {
		r.Header[headerClientID] = []string{id.subject.ClientID}
	} else if id.user == nil {
		r.Header[headerUser] = []string{id.subject.Username}
	}
	if u := id.user; u != nil {
		// the upstream learns who the caller is from the Remote-* headers, never the password
		// or the session cookie
		if id.cookie == "" && id.bearer == nil && id.strategy != nil {
			r.Header.Del(id.strategy.header)
		}
		// one allocation for the four values; each header gets a slice of it whose capacity
		// ends at its value, so an append by a later handler copies rather than overwrites
		vals := make([]string, 4)
		vals[0], vals[1], vals[2], vals[3] = u.Username, u.GroupString, u.Email, u.DisplayName
		r.Header[headerUser] = vals[0:1:1]
		if u.GroupString != "" {
			r.Header[headerGroups] = vals[1:2:2]
		}
		if u.Email != "" {
			r.Header[headerEmail] = vals[2:3:3]
		}
		r.Header[headerName] = vals[3:4:4]
	}
	if repl != nil {
		repl.Map(id.placeholderProvider())
	}
}
