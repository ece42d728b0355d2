package oidcprovider

import (
	"errors"

	"github.com/ory/fosite"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

func isClosedErr(err error) bool { return errors.Is(err, store.ErrClosed) }

// isUnknownTokenErr reports a revocation of a token the provider does not know, which RFC 7009
// answers with 200.
func isUnknownTokenErr(err error) bool {
	return errors.Is(err, fosite.ErrNotFound) || errors.Is(err, fosite.ErrInactiveToken) || errors.Is(err, fosite.ErrTokenExpired)
}
