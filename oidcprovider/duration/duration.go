// Package duration reads the durations of Portcullis's JSON config without importing Caddy: Go's
// syntax plus Caddy's "d" for days and "w" for weeks. The store packages and the clients package
// use it, so none of them depends on Caddy for a duration.
package duration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads from JSON as caddy.Duration does (this package does not
// import Caddy): an integer of nanoseconds, or a string in Go's syntax with Caddy's "d" for days
// and, beyond Caddy, "w" for weeks ("90m", "168h", "7d", "1w"). It writes an integer of
// nanoseconds, as caddy.Duration does.
type Duration time.Duration

// UnmarshalJSON reads an integer of nanoseconds or a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errors.New("empty duration")
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := Parse(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a duration is an integer of nanoseconds or a string such as \"168h\" or \"7d\": %w", err)
	}
	*d = Duration(n)
	return nil
}

// Parse reads Go's duration syntax plus "d" (24h) and "w" (7d) units, in any
// combination: "1w", "7d", "1d12h", "90m".
func Parse(s string) (time.Duration, error) {
	in := s
	var b strings.Builder
	for len(s) > 0 {
		i := 0
		for i < len(s) && (s[i] == '.' || s[i] == '-' || s[i] == '+' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		num := s[:i]
		j := i
		for j < len(s) && !(s[j] == '.' || (s[j] >= '0' && s[j] <= '9')) {
			j++
		}
		unit := s[i:j]
		s = s[j:]
		hours := 0.0
		switch unit {
		case "d":
			hours = 24
		case "w":
			hours = 7 * 24
		default:
			b.WriteString(num + unit)
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" {
			return 0, fmt.Errorf("%q is not a duration such as 90m, 168h, 7d or 1w", in)
		}
		b.WriteString(strconv.FormatFloat(f*hours, 'f', -1, 64) + "h")
	}
	v, err := time.ParseDuration(b.String())
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90m, 168h, 7d or 1w", in)
	}
	return v, nil
}
