package oauth

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
)

// The stored form of a token record.
//
// Every token (a client_credentials access token as much as a user's code) is one record in the
// store, so its size is what a burst of tokens costs in memtables, table files and the pages the
// kernel maps for them. JSON spelled out every field name, every time and the request form twice
// over (about 580 bytes for a monitor's token); the binary form below takes about 110 (without
// the request form, which a client_credentials access token does not keep, see create). Records written as JSON by earlier versions are
// still read (they start with '{'); every record written now is binary.
//
// Layout (version 1), after the version byte:
//
//	flags            one byte, the record* bits below
//	request id       16 bytes when flagged as a UUID, else a string
//	requested at     varint Unix nanoseconds (0: the zero time)
//	client id        string
//	scopes           list; granted scopes: list unless flagged equal
//	audience         list; granted audience: list unless flagged equal
//	form             uvarint count, then per parameter: key (uvarint index+1 into formKeysKept,
//	                 or 0 and a string), uvarint value count, values (formValue)
//	session          when flagged: sessionFlags byte, subject unless flagged equal to the client
//	                 id, username, browser session, expiry count and (type, varint Unix
//	                 nanoseconds) pairs, ID token claims and headers as JSON (empty: none)
//
// A string is a uvarint length and its bytes; a list is a uvarint count and its strings.
const recordVersion1 = 0x01

// record flag bits
const (
	recordActive = 1 << iota
	recordGrantedScopesSame
	recordGrantedAudienceSame
	recordHasSession
	recordRequestIDUUID
)

// session flag bits
const (
	sessionSubjectIsClient = 1 << iota
	sessionClientCredentials
	sessionTwoFactor
)

// formValue codes: a value equal to the record's scopes or audience joined by spaces (what the
// token request's scope and audience parameters usually hold) is stored as a code.
const (
	formValueScopes   = 0
	formValueAudience = 1
	formValueString   = 2 // and up: a string of (code - 2) bytes follows
)

// tokenTypes are the expiry keys a session holds, stored as their index+1 (0: a string follows).
var tokenTypes = []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode, fosite.IDToken, fosite.PushedAuthorizeRequestContext}

// errRecord is returned for a record that cannot be decoded.
var errRecord = errors.New("malformed token record")

// marshalRecord encodes rec in the binary form.
func marshalRecord(rec *tokenRecord) ([]byte, error) {
	var flags byte
	if rec.Active {
		flags |= recordActive
	}
	if slices.Equal(rec.Scopes, rec.GrantedScopes) {
		flags |= recordGrantedScopesSame
	}
	if slices.Equal(rec.Audience, rec.GrantedAudience) {
		flags |= recordGrantedAudienceSame
	}
	if rec.Session != nil {
		flags |= recordHasSession
	}
	requestID, isUUID := parseUUID(rec.RequestID)
	if isUUID {
		flags |= recordRequestIDUUID
	}
	b := make([]byte, 0, 192)
	b = append(b, recordVersion1, flags)
	if isUUID {
		b = append(b, requestID[:]...)
	} else {
		b = appendString(b, rec.RequestID)
	}
	b, err := appendTime(b, rec.RequestedAt)
	if err != nil {
		return nil, err
	}
	b = appendString(b, rec.ClientID)
	b = appendList(b, rec.Scopes)
	if flags&recordGrantedScopesSame == 0 {
		b = appendList(b, rec.GrantedScopes)
	}
	b = appendList(b, rec.Audience)
	if flags&recordGrantedAudienceSame == 0 {
		b = appendList(b, rec.GrantedAudience)
	}
	scopes, audience := strings.Join(rec.Scopes, " "), strings.Join(rec.Audience, " ")
	b = binary.AppendUvarint(b, uint64(len(rec.Form)))
	for _, k := range slices.Sorted(maps.Keys(rec.Form)) {
		b = appendKnown(b, formKeysKept, k)
		b = binary.AppendUvarint(b, uint64(len(rec.Form[k])))
		for _, v := range rec.Form[k] {
			switch {
			case k == "scope" && v == scopes:
				b = binary.AppendUvarint(b, formValueScopes)
			case k == "audience" && v == audience:
				b = binary.AppendUvarint(b, formValueAudience)
			default:
				b = binary.AppendUvarint(b, uint64(formValueString+len(v)))
				b = append(b, v...)
			}
		}
	}
	if s := rec.Session; s != nil {
		var sf byte
		if s.Subject == rec.ClientID {
			sf |= sessionSubjectIsClient
		}
		if s.ClientCredentials {
			sf |= sessionClientCredentials
		}
		if s.TwoFactor {
			sf |= sessionTwoFactor
		}
		b = append(b, sf)
		if sf&sessionSubjectIsClient == 0 {
			b = appendString(b, s.Subject)
		}
		b = appendString(b, s.Username)
		b = appendString(b, s.BrowserSession)
		b = binary.AppendUvarint(b, uint64(len(s.ExpiresAt)))
		for _, tt := range slices.Sorted(maps.Keys(s.ExpiresAt)) {
			b = appendKnown(b, tokenTypes, tt)
			if b, err = appendTime(b, s.ExpiresAt[tt]); err != nil {
				return nil, err
			}
		}
		if b, err = appendJSON(b, s.Claims, s.Claims == nil); err != nil {
			return nil, fmt.Errorf("encoding the ID token's claims: %w", err)
		}
		if b, err = appendJSON(b, s.Headers, s.Headers == nil); err != nil {
			return nil, fmt.Errorf("encoding the ID token's headers: %w", err)
		}
	}
	return b, nil
}

// unmarshalRecord decodes a stored record, binary or (written by earlier versions) JSON.
func unmarshalRecord(data []byte, rec *tokenRecord) error {
	if len(data) > 0 && data[0] == '{' {
		*rec = tokenRecord{}
		if err := json.Unmarshal(data, rec); err != nil {
			return fmt.Errorf("%w: %w", errRecord, err)
		}
		return nil
	}
	d := recordDecoder{data: data}
	if d.byte() != recordVersion1 {
		return fmt.Errorf("%w: unknown version", errRecord)
	}
	*rec = tokenRecord{}
	flags := d.byte()
	rec.Active = flags&recordActive != 0
	if flags&recordRequestIDUUID != 0 {
		rec.RequestID = formatUUID(d.bytes(16))
	} else {
		rec.RequestID = d.string()
	}
	rec.RequestedAt = d.time()
	rec.ClientID = d.string()
	rec.Scopes = d.list()
	rec.GrantedScopes = rec.Scopes
	if flags&recordGrantedScopesSame == 0 {
		rec.GrantedScopes = d.list()
	}
	rec.Audience = d.list()
	rec.GrantedAudience = rec.Audience
	if flags&recordGrantedAudienceSame == 0 {
		rec.GrantedAudience = d.list()
	}
	if n := d.count(); n > 0 {
		scopes, audience := strings.Join(rec.Scopes, " "), strings.Join(rec.Audience, " ")
		rec.Form = make(url.Values, n)
		for range n {
			k := readKnown(&d, formKeysKept)
			values := make([]string, d.count())
			for j := range values {
				switch code := d.uvarint(); code {
				case formValueScopes:
					values[j] = scopes
				case formValueAudience:
					values[j] = audience
				default:
					values[j] = string(d.bytes(code - formValueString))
				}
			}
			rec.Form[k] = values
		}
	}
	if flags&recordHasSession != 0 {
		s := &Session{}
		sf := d.byte()
		s.ClientCredentials = sf&sessionClientCredentials != 0
		s.TwoFactor = sf&sessionTwoFactor != 0
		if sf&sessionSubjectIsClient != 0 {
			s.Subject = rec.ClientID
		} else {
			s.Subject = d.string()
		}
		s.Username = d.string()
		s.BrowserSession = d.string()
		if n := d.count(); n > 0 {
			s.ExpiresAt = make(map[fosite.TokenType]time.Time, n)
			for range n {
				tt := readKnown(&d, tokenTypes)
				s.ExpiresAt[tt] = d.time()
			}
		}
		if claims := d.bytes(d.uvarint()); len(claims) > 0 && d.err == nil {
			s.Claims = &jwt.IDTokenClaims{}
			if err := json.Unmarshal(claims, s.Claims); err != nil {
				return fmt.Errorf("%w: ID token claims: %w", errRecord, err)
			}
		}
		if headers := d.bytes(d.uvarint()); len(headers) > 0 && d.err == nil {
			s.Headers = &jwt.Headers{}
			if err := json.Unmarshal(headers, s.Headers); err != nil {
				return fmt.Errorf("%w: ID token headers: %w", errRecord, err)
			}
		}
		rec.Session = s
	}
	if d.err == nil && len(d.data) != 0 {
		return fmt.Errorf("%w: %d bytes left over", errRecord, len(d.data))
	}
	return d.err
}

// appendKnown appends s as its index+1 in known, or as 0 and the string itself.
func appendKnown[S ~string](b []byte, known []S, s S) []byte {
	if i := slices.Index(known, s); i >= 0 {
		return binary.AppendUvarint(b, uint64(i+1))
	}
	return appendString(binary.AppendUvarint(b, 0), string(s))
}

// readKnown reads what appendKnown wrote.
func readKnown[S ~string](d *recordDecoder, known []S) S {
	i := d.uvarint()
	switch {
	case i == 0:
		return S(d.string())
	case i <= uint64(len(known)):
		return known[i-1]
	}
	d.fail()
	return ""
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendJSON appends v as a JSON string, or an empty string when absent.
func appendJSON(b []byte, v any, absent bool) ([]byte, error) {
	if absent {
		return appendString(b, ""), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return appendString(b, string(data)), nil
}

func appendList(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, s := range list {
		b = appendString(b, s)
	}
	return b
}

// The times a record can hold: Unix nanoseconds in an int64 (years 1678 to 2262).
var (
	earliestTime = time.Unix(0, math.MinInt64)
	latestTime   = time.Unix(0, math.MaxInt64)
)

// errRecordTime is returned by marshalRecord for a time it cannot hold.
var errRecordTime = errors.New("time out of range for a token record")

func appendTime(b []byte, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return binary.AppendVarint(b, 0), nil
	}
	if t.Before(earliestTime) || t.After(latestTime) {
		return nil, fmt.Errorf("%w: %s", errRecordTime, t)
	}
	return binary.AppendVarint(b, t.UnixNano()), nil
}

// parseUUID reads a UUID in its canonical lower-case form (what fosite's request ids are), so
// that formatUUID gives back the same string.
func parseUUID(s string) (id uuid.UUID, ok bool) {
	if len(s) != 36 || strings.ToLower(s) != s {
		return id, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

func formatUUID(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	return uuid.UUID(b).String()
}

// recordDecoder reads the binary form; after the first error every read returns a zero value
// and err says what went wrong.
type recordDecoder struct {
	data []byte
	err  error
}

func (d *recordDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or out of range", errRecord)
	}
	d.data = nil
}

func (d *recordDecoder) byte() byte {
	if len(d.data) < 1 {
		d.fail()
		return 0
	}
	c := d.data[0]
	d.data = d.data[1:]
	return c
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.data = d.data[n:]
	return v
}

// count reads a number of items that follow, each of at least one byte, so it can never exceed
// what is left.
func (d *recordDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.data)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *recordDecoder) bytes(n uint64) []byte {
	if n > uint64(len(d.data)) {
		d.fail()
		return nil
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b
}

func (d *recordDecoder) string() string { return string(d.bytes(d.uvarint())) }

func (d *recordDecoder) list() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	list := make([]string, n)
	for i := range list {
		list[i] = d.string()
	}
	return list
}

func (d *recordDecoder) time() time.Time {
	v, n := binary.Varint(d.data)
	if n <= 0 {
		d.fail()
		return time.Time{}
	}
	d.data = d.data[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}
