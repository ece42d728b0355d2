package oauth

// AssertionAudiences are the values a client assertion's aud may name (RFC 7523 §3: the
// authorization server's identity): the issuer, the token endpoint, and the other endpoints
// that authenticate clients (pushed authorization requests, introspection, revocation, device
// authorization, with
// their aliases), as a client may name the endpoint it calls.
func AssertionAudiences(issuer string) []string {
	aud := []string{issuer, issuer + "/"}
	for _, p := range []string{PathToken, PathPAR, PathIntrospection, PathIntrospectAlias, PathRevocation, PathRevokeAlias, PathDeviceAuthorization} {
		aud = append(aud, issuer+p)
	}
	return aud
}
