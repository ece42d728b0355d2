package oauth

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ory/fosite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// MaxFormBytes bounds the body of every form the provider reads: a protocol request here, and a
// portal form (the oidcprovider package bounds those with it).
const MaxFormBytes = 64 << 10

// isUnavailable reports an error that means the store cannot answer now: closed (start-up,
// reload, shutdown) or, for a shared store, its database unreachable or too slow. Such a request
// is answered 503 with Retry-After, never as the client's fault and never as a 500.
func isUnavailable(err error) bool {
	return errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrUnavailable)
}

// isUnknownTokenErr reports a revocation of a token the provider does not know, which RFC 7009
// answers with 200.
func isUnknownTokenErr(err error) bool {
	return errors.Is(err, fosite.ErrNotFound) || errors.Is(err, fosite.ErrInactiveToken) || errors.Is(err, fosite.ErrTokenExpired)
}

// WriteUnavailable answers 503 temporarily_unavailable with Retry-After while the store is not
// open (start-up, reload, shutdown) or its database cannot be reached.
func WriteUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The provider is starting, reloading or cannot reach its database; retry shortly."}`))
}

// writeJSON writes v as a JSON response (Content-Type application/json unless already set).
func writeJSON(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes an RFC 6749 §5.2 error. A store that cannot answer is a 503, never a 500; invalid_client
// is always 401 with a Basic challenge (RFC 6749 §5.2, RFC 9110 §11.6.1).
func (p *Provider) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if isUnavailable(err) {
		WriteUnavailable(w)
		return
	}
	rfc := rfcError(err)
	if rfc.CodeField >= 500 && rfc.ErrorField != fosite.ErrTemporarilyUnavailable.ErrorField {
		p.cfg.Logger.Error("oidc endpoint failed", zap.String("path", r.URL.Path), zap.Error(errors.Unwrap(err)), zap.String("debug", rfc.DebugField))
		rfc = fosite.ErrServerError.WithHint("The provider failed to handle the request; see its log.")
	} else if c := p.cfg.Logger.Check(zapcore.DebugLevel, "oidc request refused"); c != nil {
		c.Write(zap.String("path", r.URL.Path), zap.String("error", rfc.ErrorField), zap.String("description", rfc.GetDescription()))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	// the status is decided here, never written into rfc: it may be a shared error value
	// (fosite.ErrInvalidClient itself, or a package's WithHint copy) that other requests read
	status := rfc.CodeField
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="`+p.cfg.Issuer+`"`)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{rfc.ErrorField, rfc.GetDescription()})
}

// parseForm reads a bounded POST form.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fosite.ErrInvalidRequest.WithHintf("HTTP method is '%s'; this endpoint accepts POST.", r.Method)
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		return fosite.ErrInvalidRequest.WithHint("The body must be an application/x-www-form-urlencoded form of at most 64 KiB.")
	}
	return nil
}

// rfcError is err as an RFC 6749 error that this request alone reads and changes. fosite's
// GetDescription writes into the error it is called on, and the error may be a value that
// concurrent requests share (fosite.ErrInvalidClient itself, or a package-level WithHint copy),
// so every writer of an error answer works on its own copy.
func rfcError(err error) *fosite.RFC6749Error {
	own := *fosite.ErrorToRFC6749Error(err)
	return &own
}
