package users

// The text surgery under the users edits: a users file's text with its YAML node positions, the
// span of a one-line scalar, the layout the file's entries follow, a new entry's text written in
// that layout, one field's value replaced or added in place, and scalars written so that YAML
// reads them back as the same strings. The checks of what an edit may do are in edit.go.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// source is a users file's text with its YAML nodes.
type source struct {
	data     []byte
	starts   []int // byte offset of each line's first byte
	eol      string
	usersKey *yaml.Node // nil when the file has no document
	users    *yaml.Node
}

func load(data []byte) (*source, error) {
	s := &source{data: data, starts: []int{0}, eol: "\n"}
	for i, b := range data {
		if b == '\n' {
			if len(s.starts) == 1 && i > 0 && data[i-1] == '\r' {
				s.eol = "\r\n"
			}
			s.starts = append(s.starts, i+1)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if doc.Kind == 0 {
		return s, nil // no document: comments and blank lines only
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("users file: no 'users:' map at the top")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "users" {
			s.usersKey, s.users = root.Content[i], root.Content[i+1]
		}
	}
	if s.usersKey == nil {
		return nil, errors.New("users file: no 'users:' map at the top")
	}
	return s, nil
}

// userKeys are the key nodes of the users map.
func (s *source) userKeys() []*yaml.Node {
	var keys []*yaml.Node
	if s.users != nil && s.users.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(s.users.Content); i += 2 {
			keys = append(keys, s.users.Content[i])
		}
	}
	return keys
}

// user finds the key and value nodes of the user named exactly name.
func (s *source) user(name string) (key, value *yaml.Node, err error) {
	if s.users != nil && s.users.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(s.users.Content); i += 2 {
			if s.users.Content[i].Value == name {
				return s.users.Content[i], s.users.Content[i+1], nil
			}
		}
	}
	for _, k := range s.userKeys() {
		if fold(k.Value) == fold(name) {
			return nil, nil, fmt.Errorf("%w %q (names are exact: did you mean %q?)", ErrNoSuchUser, name, k.Value)
		}
	}
	return nil, nil, fmt.Errorf("%w %q", ErrNoSuchUser, name)
}

// lineCount is the number of lines, the last one counted only when it has bytes.
func (s *source) lineCount() int {
	if s.starts[len(s.starts)-1] == len(s.data) {
		return len(s.starts) - 1
	}
	return len(s.starts)
}

// line is line i (0-based) without its line break.
func (s *source) line(i int) string {
	end := len(s.data)
	if i+1 < len(s.starts) {
		end = s.starts[i+1]
	}
	return strings.TrimRight(string(s.data[s.starts[i]:end]), "\r\n")
}

// offset is the byte offset of a node position (1-based line, 1-based column in characters).
func (s *source) offset(line, column int) (int, error) {
	if line < 1 || line > len(s.starts) || column < 1 {
		return 0, fmt.Errorf("%w: position %d:%d is outside the file", ErrNotEditable, line, column)
	}
	text := s.line(line - 1)
	off := 0
	for n := 1; n < column; n++ {
		if off >= len(text) {
			return 0, fmt.Errorf("%w: position %d:%d is outside its line", ErrNotEditable, line, column)
		}
		_, size := utf8.DecodeRuneInString(text[off:])
		off += size
	}
	return s.starts[line-1] + off, nil
}

// blockEnd is the 0-based index of the line after a block that starts on line from (0-based)
// and goes on until a line of content indented by column (0-based) or less, without the blank
// lines and the comments indented by column or less that end it.
func (s *source) blockEnd(from, column int) int {
	end := from + 1
	for i := from + 1; i < s.lineCount(); i++ {
		text := s.line(i)
		trimmed := strings.TrimLeft(text, " ")
		indented := len(text)-len(trimmed) > column
		switch {
		case strings.TrimSpace(text) == "":
		case strings.HasPrefix(trimmed, "#") && !indented:
		case !indented:
			return end
		default:
			end = i + 1
		}
	}
	return end
}

func (s *source) blank(i int) bool {
	return i >= 0 && i < s.lineCount() && strings.TrimSpace(s.line(i)) == ""
}

// splice replaces data[from:to] by text.
func splice(data []byte, from, to int, text string) []byte {
	out := make([]byte, 0, len(data)-(to-from)+len(text))
	out = append(out, data[:from]...)
	out = append(out, text...)
	return append(out, data[to:]...)
}

// layout is how the file indents and writes its entries, learned from the last ones.
type layout struct {
	nameCol, fieldCol int
	blockSeq          bool
	dashOffset        int // dash column minus key column, for block sequences
	itemGap           int // item column minus dash column
	passwordStyle     yaml.Style
	blankBetween      bool
}

func (s *source) layout() layout {
	l := layout{nameCol: s.usersKey.Column - 1 + 2, blockSeq: true, itemGap: 2, passwordStyle: yaml.DoubleQuotedStyle}
	keys := s.userKeys()
	if len(keys) > 0 {
		l.nameCol = keys[0].Column - 1
	}
	step := max(l.nameCol-(s.usersKey.Column-1), 1)
	l.fieldCol = l.nameCol + step
	l.dashOffset = step
	seqSeen, fieldSeen, pwSeen := false, false, false
	for i := len(s.users.Content) - 1; i >= 1 && s.users.Kind == yaml.MappingNode; i -= 2 {
		v := s.users.Content[i]
		if v.Kind != yaml.MappingNode {
			continue
		}
		if !fieldSeen && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 {
			l.fieldCol, fieldSeen = v.Content[0].Column-1, true
			l.dashOffset = l.fieldCol - l.nameCol
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			k, val := v.Content[j], v.Content[j+1]
			if !pwSeen && k.Value == "password" && val.Kind == yaml.ScalarNode {
				if st := val.Style &^ yaml.FlowStyle; st == 0 || st == yaml.DoubleQuotedStyle || st == yaml.SingleQuotedStyle {
					l.passwordStyle, pwSeen = st, true
				}
			}
			if !seqSeen && val.Kind == yaml.SequenceNode {
				seqSeen = true
				if val.Style&yaml.FlowStyle != 0 {
					l.blockSeq = false
				} else if val.Line > k.Line {
					l.dashOffset = val.Column - k.Column
					if len(val.Content) > 0 && val.Content[0].Line == val.Line {
						l.itemGap = max(val.Content[0].Column-val.Column, 2)
					}
				}
			}
		}
	}
	if len(keys) >= 2 {
		l.blankBetween = s.blank(keys[len(keys)-1].Line - 2)
	}
	return l
}

func addUser(data []byte, u NewUser) ([]byte, error) {
	s, err := load(data)
	if err != nil {
		return nil, err
	}
	if s.usersKey == nil {
		// comments only: users: goes at the end
		if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
			data = append(slices.Clone(data), s.eol...)
		}
		if s, err = load(append(slices.Clone(data), "users:"+s.eol...)); err != nil {
			return nil, err
		}
	}
	at := 0 // byte offset the entry goes at
	switch v := s.users; {
	case v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0:
		keys := s.userKeys()
		if len(keys) == 0 {
			return nil, fmt.Errorf("%w: the users: map", ErrNotEditable)
		}
		last := keys[len(keys)-1]
		at = s.lineOffset(s.blockEnd(last.Line-1, last.Column-1))
	case v.Kind == yaml.MappingNode && len(v.Content) == 0, v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value != "":
		// users: {} or users: ~ — take the value out, keeping a comment after it
		from, err := s.offset(v.Line, v.Column)
		if err != nil {
			return nil, err
		}
		to := from + len(v.Value)
		if v.Kind == yaml.MappingNode {
			rest := string(s.data[from:])
			if !strings.HasPrefix(rest, "{") {
				return nil, fmt.Errorf("%w: the users: value", ErrNotEditable)
			}
			closing := strings.IndexByte(rest, '}')
			if closing < 0 || strings.TrimSpace(rest[1:closing]) != "" {
				return nil, fmt.Errorf("%w: the users: value", ErrNotEditable)
			}
			to = from + closing + 1
		} else if string(s.data[from:to]) != v.Value {
			return nil, fmt.Errorf("%w: the users: value", ErrNotEditable)
		}
		for from > 0 && (s.data[from-1] == ' ' || s.data[from-1] == '\t') {
			from--
		}
		if s, err = load(splice(s.data, from, to, "")); err != nil {
			return nil, err
		}
		at = s.lineOffset(s.blockEnd(s.usersKey.Line-1, s.usersKey.Column-1))
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		at = s.lineOffset(s.blockEnd(s.usersKey.Line-1, s.usersKey.Column-1))
	default:
		return nil, fmt.Errorf("%w: the users: map is written in flow style ({…}) or is not a map; write it as a block to add users with this command", ErrNotEditable)
	}
	l := s.layout()
	var b strings.Builder
	if at == len(s.data) && len(s.data) > 0 && s.data[len(s.data)-1] != '\n' {
		b.WriteString(s.eol) // the last line had no line break
	}
	if l.blankBetween {
		b.WriteString(s.eol)
	}
	pad := func(n int) string { return strings.Repeat(" ", n) }
	field := func(key, value string) { b.WriteString(pad(l.fieldCol) + key + ": " + value + s.eol) }
	list := func(key string, items []string) {
		if !l.blockSeq {
			quoted := make([]string, len(items))
			for i, it := range items {
				quoted[i] = scalarText(it, true)
			}
			field(key, "["+strings.Join(quoted, ", ")+"]")
			return
		}
		b.WriteString(pad(l.fieldCol) + key + ":" + s.eol)
		for _, it := range items {
			b.WriteString(pad(l.fieldCol+l.dashOffset) + "-" + pad(l.itemGap-1) + scalarText(it, false) + s.eol)
		}
	}
	b.WriteString(pad(l.nameCol) + scalarText(u.Name, false) + ":" + s.eol)
	if u.DisplayName != "" {
		field("displayname", scalarText(u.DisplayName, false))
	}
	if u.Digest != "" {
		field("password", styled(u.Digest, l.passwordStyle, false))
	}
	switch len(u.Emails) {
	case 0:
	case 1:
		field("email", scalarText(u.Emails[0], false))
	default:
		list("email", u.Emails)
	}
	if len(u.Groups) > 0 {
		list("groups", u.Groups)
	}
	return splice(s.data, at, at, b.String()), nil
}

// lineOffset is the byte offset of line i (0-based); past the last line, the end of the file.
func (s *source) lineOffset(i int) int {
	if i < len(s.starts) {
		return s.starts[i]
	}
	return len(s.data)
}

// field is the value node of key in the mapping m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setField sets key of the user named name, replacing the old value's text by text(old, flow)
// or adding the key, with text(nil, flow), as the entry's first one (flow tells whether the
// entry is in flow style). When same reports that the old value already says what text would,
// the data comes back as it is.
func setField(data []byte, name, key string, text func(old *yaml.Node, flow bool) string, same func(*yaml.Node) bool) ([]byte, error) {
	s, err := load(data)
	if err != nil {
		return nil, err
	}
	k, v, err := s.user(name)
	if err != nil {
		return nil, err
	}
	if k.Anchor != "" || v.Anchor != "" || v.Kind == yaml.AliasNode || (v.Style&yaml.TaggedStyle) != 0 {
		return nil, fmt.Errorf("%w: the entry has an anchor, alias or tag", ErrNotEditable)
	}
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: the entry is not a map", ErrNotEditable)
	}
	flow := v.Style&yaml.FlowStyle != 0 || s.users.Style&yaml.FlowStyle != 0
	if old := field(v, key); old != nil {
		if same(old) {
			return data, nil
		}
		from, to, err := s.scalarSpan(old, flow)
		if err != nil {
			return nil, fmt.Errorf("its %s: value: %w", key, err)
		}
		return splice(data, from, to, text(old, flow)), nil
	}
	if flow {
		at, err := s.offset(v.Line, v.Column)
		if err != nil {
			return nil, err
		}
		if at >= len(data) || data[at] != '{' || len(v.Content) == 0 {
			return nil, fmt.Errorf("%w: the entry's flow map", ErrNotEditable)
		}
		return splice(data, at+1, at+1, key+": "+text(nil, true)+", "), nil
	}
	if len(v.Content) == 0 || v.Content[0].Line <= k.Line {
		return nil, fmt.Errorf("%w: the entry's map", ErrNotEditable)
	}
	at := s.lineOffset(k.Line)
	if k.Line == len(s.starts) { // the key is on the last line, which has no line break
		return nil, fmt.Errorf("%w: the entry's map", ErrNotEditable)
	}
	line := strings.Repeat(" ", v.Content[0].Column-1) + key + ": " + text(nil, false) + s.eol
	return splice(data, at, at, line), nil
}

// scalarSpan is the byte range of a one-line scalar's text in the file, checked by reading it
// back.
func (s *source) scalarSpan(n *yaml.Node, flow bool) (from, to int, err error) {
	if n.Kind != yaml.ScalarNode || n.Anchor != "" || n.Style&(yaml.TaggedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return 0, 0, fmt.Errorf("%w: a block scalar, anchor, alias or tag", ErrNotEditable)
	}
	from, err = s.offset(n.Line, n.Column)
	if err != nil {
		return 0, 0, err
	}
	lineEnd := s.lineOffset(n.Line)
	if n.Line < len(s.starts) {
		lineEnd--
	}
	rest := string(s.data[from:lineEnd])
	end := -1
	switch n.Style &^ yaml.FlowStyle {
	case yaml.DoubleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
			} else if rest[i] == '"' {
				end = i + 1
				break
			}
		}
	case yaml.SingleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					i++
					continue
				}
				end = i + 1
				break
			}
		}
	case 0:
		end = len(rest)
		for i := 0; i < len(rest); i++ {
			if rest[i] == '#' && i > 0 && (rest[i-1] == ' ' || rest[i-1] == '\t') ||
				flow && strings.IndexByte(",[]{}", rest[i]) >= 0 {
				end = i
				break
			}
		}
		end = len(strings.TrimRight(rest[:end], " \t\r"))
	}
	if end <= 0 {
		return 0, 0, fmt.Errorf("%w: the value spans lines", ErrNotEditable)
	}
	var back yaml.Node
	if err := yaml.Unmarshal([]byte(rest[:end]), &back); err != nil || back.Kind != yaml.DocumentNode ||
		back.Content[0].Kind != yaml.ScalarNode || back.Content[0].Value != n.Value ||
		(n.Style&^yaml.FlowStyle == 0 && rest[:end] != n.Value) {
		return 0, 0, fmt.Errorf("%w: the value spans lines", ErrNotEditable)
	}
	return from, from + end, nil
}

// styled writes v in the quoting style of an old value, when v can be written so.
func styled(v string, style yaml.Style, flow bool) string {
	switch style &^ yaml.FlowStyle {
	case yaml.SingleQuotedStyle:
		if !strings.ContainsFunc(v, unicode.IsControl) && utf8.ValidString(v) {
			return "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
	case 0:
		if plainSafe(v, flow) {
			return v
		}
	}
	return doubleQuoted(v)
}

// scalarText writes v plain when YAML reads it back as the same string, and double-quoted
// otherwise.
func scalarText(v string, flow bool) string {
	if plainSafe(v, flow) {
		return v
	}
	return doubleQuoted(v)
}

// plainSafe reports whether v may be written as a plain scalar and read back as the string v.
func plainSafe(v string, flow bool) bool {
	if v == "" || !utf8.ValidString(v) || strings.TrimSpace(v) != v || strings.ContainsAny(v[:1], "-?:,[]{}#&*!|>'\"%@`") ||
		strings.Contains(v, ": ") || strings.Contains(v, " #") || strings.HasSuffix(v, ":") ||
		strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == '\uFEFF' }) ||
		flow && strings.ContainsAny(v, ",[]{}") || slices.Contains(yaml11Words, strings.ToLower(v)) {
		return false
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+v), &n); err != nil || n.Kind != yaml.DocumentNode || len(n.Content[0].Content) != 2 {
		return false
	}
	val := n.Content[0].Content[1]
	return val.Kind == yaml.ScalarNode && val.Tag == "!!str" && val.Value == v
}

// yaml11Words are booleans and nulls to YAML 1.1 readers (strings to yaml.v3): quoted, so every
// reader of the file sees a string.
var yaml11Words = []string{"y", "yes", "n", "no", "on", "off", "true", "false", "null", "~"}

// doubleQuoted writes v as a YAML double-quoted scalar.
func doubleQuoted(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x10000 && (unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' '):
			fmt.Fprintf(&b, `\u%04X`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
